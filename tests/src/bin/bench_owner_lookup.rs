//! CPU per ssh-session round, for bench/bench.py: both owner lookups (`procfs`, Linux's own; `listeners`, the
//! crate every macOS and Windows laptop runs) against a real ssh forward, in this one process:
//! - steady: the remembered owner still holds the socket (every round of a healthy tunnel);
//! - full: no remembered owner (a new ssh, or the first round), the whole lookup;
//! - down: nothing listens (ssh gone, or autossh reconnecting), asked every round until it is back.
//!
//! - process_table: one read of this user's ssh processes (`probes::ssh_processes::list`, what the hygiene
//!   probe reads at most once a second for every forward together), with the ssh forward among them.
//!
//! CPU is this process's user + system time (getrusage, every thread, so the blocking pool's too) divided by
//! the rounds, on a one-thread runtime as the exporter runs. Prints one JSON object per line.
//!
//! Usage: bench-owner-lookup [--rounds N]

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{free_port, Gateway, Sshd};
use probes::ssh_session::{Lookup, Outcome, Target};
use probes::Probe;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU microseconds per probe over `rounds` probes of `target` (each from `target`'s own state: a probe
/// remembers the owner it found, so a copy keeps every round the kind of round measured), checking each
/// answer with `expect`.
fn per_round(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    rounds: usize,
    expect: impl Fn(&Outcome) -> bool,
) -> f64 {
    let started = cpu_seconds();
    for _ in 0..rounds {
        let mut round = target.clone();
        let outcome = runtime.block_on(round.probe(Duration::from_secs(5)));
        assert!(expect(&outcome), "{:?}: unexpected {outcome:?}", target.lookup);
    }
    (cpu_seconds() - started) / rounds as f64 * 1e6
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rounds = 10_000usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).expect("--rounds N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().max_blocking_threads(8).enable_all().build().unwrap();
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], local_port));
    let ssh = sshd.forward(local_port, gateway.addr.port());
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    for lookup in [Lookup::Procfs, Lookup::Listeners] {
        let fresh = Target { lookup, ..Target::new(addr) };
        let found = runtime.block_on(fresh.clone().probe(Duration::from_secs(5)));
        let owner =
            found.owner().filter(|o| o.pid == ssh.pid()).unwrap_or_else(|| panic!("{lookup:?}: {found:?}")).clone();
        let remembered = Target { last_owner: Some(owner), ..fresh.clone() };
        let up = |o: &Outcome| matches!(o, Outcome::Up(owner) if owner.pid == ssh.pid());
        let steady = per_round(&runtime, &remembered, rounds, up);
        let full = per_round(&runtime, &fresh, (rounds / 20).max(10), up);
        let free = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let down = per_round(&runtime, &Target { addr: free, ..fresh.clone() }, (rounds / 10).max(10), |o| {
            *o == Outcome::NoListener
        });
        println!(
            "{{\"lookup\": \"{}\", \"steady_us\": {steady:.2}, \"full_us\": {full:.1}, \"down_us\": {down:.2}, \"processes\": {processes}, \"rounds\": {rounds}}}",
            lookup.as_str()
        );
    }
    let reads = (rounds / 20).max(10);
    let started = cpu_seconds();
    for _ in 0..reads {
        let table = probes::ssh_processes::list().expect("the process table");
        assert!(table.iter().any(|process| process.pid == ssh.pid()), "the forward's ssh is listed");
    }
    let read = (cpu_seconds() - started) / reads as f64 * 1e6;
    println!(
        "{{\"lookup\": \"process_table\", \"read_us\": {read:.1}, \"processes\": {processes}, \"rounds\": {reads}}}"
    );
}

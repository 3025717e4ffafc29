//! Detection time, for bench/bench.py: a real ssh forward to the gateway stand-in, the exporter probing it
//! every `--interval`, then the ssh process killed at a random moment; the time from the kill to the first
//! /metrics scrape that shows a failed tunnel round (polled every 2 ms). Repeated `--trials` times; prints
//! one JSON object: {"interval_s": .., "detection_s": [..]}. Needs what the end-to-end tests need (sshd).
//!
//! Usage: bench-detection [--trials N] [--interval 1s]

use std::time::{Duration, Instant};

use e2e::{free_port, Exporter, Gateway, Scrape, Sshd};

fn failed_rounds(scrape: &Scrape) -> f64 {
    scrape.value("openclaw_tunnel_up_checks_total{forward=\"t\"}")
        - scrape.value("openclaw_tunnel_up_successes_total{forward=\"t\"}")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut trials, mut interval) = (10usize, Duration::from_secs(1));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--trials" => trials = args.next().and_then(|n| n.parse().ok()).expect("--trials N"),
            "--interval" => {
                interval = args.next().and_then(|d| humantime_like(&d)).expect("--interval like 1s or 500ms")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let exporter = Exporter::start(&format!(
        "[[forward]]\nname = \"t\"\nlocal = \"127.0.0.1:{local_port}\"\nsyn_interval = \"{}ms\"\n\
         first_byte_interval = \"1h\"\ntimeout = \"{}ms\"\n[auth_probe]\nenabled = false\ninterval = \"1m\"\n",
        interval.as_millis(),
        interval.as_millis()
    ));
    let mut detection = Vec::new();
    for trial in 0..trials {
        let mut ssh = sshd.forward(local_port, gateway.addr.port());
        // Up for two whole rounds, so the kill lands at an arbitrary phase of the schedule.
        let up = |s: &Scrape| s.value("openclaw_tunnel_up_successes_total{forward=\"t\"}");
        let before = exporter.wait_for("the tunnel up", Duration::from_secs(30), |s| {
            s.value("openclaw_tunnel_ssh_session_up{forward=\"t\"}") == 1.0
        });
        let up_before = up(&before);
        exporter.wait_for("two rounds up", Duration::from_secs(30), |s| up(s) >= up_before + 2.0);
        std::thread::sleep(Duration::from_micros(fastrand(trial) % interval.as_micros() as u64));
        let failed_before = failed_rounds(&exporter.scrape());
        let killed = Instant::now();
        ssh.signal(libc::SIGKILL);
        loop {
            if failed_rounds(&exporter.scrape()) > failed_before {
                detection.push(killed.elapsed().as_secs_f64());
                break;
            }
            assert!(killed.elapsed() < interval * 10, "the kill was never seen");
            std::thread::sleep(Duration::from_millis(2));
        }
        ssh.wait_exit(Duration::from_secs(5));
        drop(ssh);
    }
    let list: Vec<String> = detection.iter().map(|d| format!("{d:.6}")).collect();
    println!("{{\"interval_s\": {}, \"detection_s\": [{}]}}", interval.as_secs_f64(), list.join(", "));
}

/// "1s", "500ms": all this tool needs.
fn humantime_like(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    text.strip_suffix('s')?.parse::<f64>().ok().map(Duration::from_secs_f64)
}

/// A spread of kill phases without a random-number dependency.
fn fastrand(seed: usize) -> u64 {
    let mut x = (seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 7
}

//! Tunnel hygiene against a real sshd and real ssh clients (issue 22): orphaned forwards (a second `ssh -N -L`
//! to a port the first one holds keeps running without `ExitOnForwardFailure`).

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(30);

fn orphans(scrape: &Scrape) -> Option<f64> {
    scrape.get("openclaw_tunnel_ssh_orphans{forward=\"t\"}")
}

fn orphan_rounds(scrape: &Scrape) -> f64 {
    scrape.get("openclaw_exporter_probe_lag_seconds_count{probe=\"ssh_hygiene\"}").unwrap_or(0.0)
}

/// `ssh -N -L` to a port the running forward already holds, with `ExitOnForwardFailure` as given.
fn second_ssh(sshd: &Sshd, local: u16, gateway: u16, exit_on_forward_failure: &str) -> Proc {
    let args: Vec<String> = sshd
        .forward_args(local, gateway)
        .into_iter()
        .map(|arg| {
            if arg == "ExitOnForwardFailure=yes" {
                format!("ExitOnForwardFailure={exit_on_forward_failure}")
            } else {
                arg
            }
        })
        .collect();
    Proc::spawn_group("second ssh", Command::new("ssh").args(args))
}

#[test]
fn a_second_ssh_to_a_held_port_is_an_orphan_until_killed_and_exit_on_forward_failure_leaves_none() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local = free_port();
    let _forward = sshd.forward(local, gateway.addr.port());
    let config = format!("{}hygiene_interval = \"1s\"\n", forward_toml("t", local));
    let exporter = Exporter::start(&config);
    exporter.wait_for("no orphan while one ssh holds the forward", T, |m| orphans(m) == Some(0.0));

    // A second tunnel to the same port: its bind fails ("Address already in use") and it keeps running.
    let mut orphan = second_ssh(&sshd, local, gateway.addr.port(), "no");
    exporter.wait_for("the second ssh counted as an orphan", T, |m| orphans(m) == Some(1.0));
    let status = exporter.status();
    let listed = &status["forwards"][0]["ssh_orphans"];
    assert_eq!(listed[0]["pid"].as_u64(), Some(u64::from(orphan.pid())), "{listed}");
    assert_eq!(listed[0]["end_with"].as_str(), Some(format!("kill {}", orphan.pid()).as_str()), "{listed}");
    assert!(listed[0]["started"].as_f64().is_some(), "{listed}");
    assert!(listed[0]["command"].as_str().unwrap_or_default().contains("ExitOnForwardFailure=no"), "{listed}");
    let (_, page) = exporter.get("/", None);
    assert!(
        page.contains(&format!("pid {}", orphan.pid())) && page.contains("Orphaned ssh"),
        "the status page lists it"
    );

    // The doctor names it with the command that ends it, and passes the layers that work.
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("exporter.toml");
    std::fs::write(&config_file, format!("[web]\nlisten = \"127.0.0.1:{}\"\n{config}", free_port())).unwrap();
    let doctor = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .arg("--config")
        .arg(&config_file)
        .arg("doctor")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(said.contains(&format!("orphaned ssh pid {}", orphan.pid())), "{said}");
    assert!(said.contains(&format!("end it with `kill {}`", orphan.pid())), "{said}");
    assert!(said.contains("ExitOnForwardFailure yes"), "{said}");
    assert!(said.contains("2 ssh owns the local forward") && said.contains("PASS"), "{said}");

    // Killed: none.
    orphan.signal(libc::SIGTERM);
    orphan.wait_exit(Duration::from_secs(10)).expect("the orphan exits");
    exporter.wait_for("no orphan once it is killed", T, |m| orphans(m) == Some(0.0));

    // With ExitOnForwardFailure=yes the second ssh exits on its failed bind, and nothing is counted.
    let mut strict = second_ssh(&sshd, local, gateway.addr.port(), "yes");
    let deadline = Instant::now() + T;
    while strict.is_running() {
        assert!(Instant::now() < deadline, "ssh with ExitOnForwardFailure=yes kept running:\n{}", strict.output());
        let scrape = exporter.scrape();
        assert_eq!(orphans(&scrape), Some(0.0), "an ssh that exits on its failed bind is no orphan");
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = strict.wait_exit(Duration::from_secs(1)).expect("exited");
    assert!(!exited.success(), "ssh reports its failed forward: {exited:?}\n{}", strict.output());
    let rounds = orphan_rounds(&exporter.scrape());
    let after = exporter.wait_for("two more orphan rounds", T, |m| orphan_rounds(m) >= rounds + 2.0);
    assert_eq!(orphans(&after), Some(0.0));
}

//! The doctor in the real-ssh harness, with each layer broken in turn: it names the first failing layer,
//! exits 10 + its number, and does not explain the layers above it.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use e2e::*;

const TOKEN: &str = "doctor-test-token";

struct Setup {
    gateway: Gateway,
    sshd: Sshd,
    ssh: Proc,
    local_port: u16,
    dir: tempfile::TempDir,
}

fn setup(gateway_args: &[&str]) -> Setup {
    let mut args = vec!["--token", TOKEN];
    args.extend_from_slice(gateway_args);
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &args);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let ssh = sshd.forward(local_port, gateway.addr.port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    Setup { gateway, sshd, ssh, local_port, dir }
}

impl Setup {
    fn config(&self, ssh_port: u16, extra: &str) -> std::path::PathBuf {
        let path = self.dir.path().join("doctor.toml");
        let text = format!(
            "[[forward]]\nname = \"mac\"\nlocal = \"127.0.0.1:{}\"\ntimeout = \"3s\"\nssh_host = \"127.0.0.1:{ssh_port}\"\n\
             remote = \"127.0.0.1:{}\"\nowner = \"platform-team\"\n\
             [auth_probe]\nenabled = true\ninterval = \"1m\"\ntoken_file = \"{}\"\n{extra}",
            self.local_port,
            self.gateway.addr.port(),
            self.dir.path().join("token").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn doctor(&self, config: &std::path::Path) -> (i32, serde_json::Value, String) {
        let run = |json: bool| {
            let mut command = Command::new(workspace_binary("openclaw-tunnel-exporter"));
            command
                .arg("doctor")
                .arg("--config")
                .arg(config)
                .env("HOME", self.dir.path())
                .env_remove("OPENCLAW_GATEWAY_TOKEN");
            if json {
                command.arg("--json");
            }
            command.output().unwrap()
        };
        let json = run(true);
        let human = run(false);
        assert_eq!(json.status.code(), human.status.code());
        let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("doctor --json prints JSON");
        (json.status.code().unwrap(), report[0].clone(), String::from_utf8_lossy(&human.stdout).into_owned())
    }
}

fn statuses(report: &serde_json::Value) -> Vec<String> {
    report["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_owned()).collect()
}

fn assert_fails_at(report: &serde_json::Value, code: i32, step: usize) {
    let statuses = statuses(report);
    assert_eq!(code, 10 + step as i32, "{report:#}");
    assert_eq!(statuses[step - 1], "fail", "{report:#}");
    assert!(
        statuses[step..].iter().all(|s| s == "not_checked"),
        "layers above the failure are not explained: {statuses:?}"
    );
    assert!(report["steps"][step - 1]["next"].is_string(), "a failure says what to do next");
}

#[test]
fn a_healthy_tunnel_passes_every_layer() {
    let s = setup(&["--readiness", "2026.9.6-standin"]);
    let (code, report, human) = s.doctor(&s.config(s.sshd.port, ""));
    println!("{human}");
    assert_eq!(code, 0, "{human}");
    assert_eq!(statuses(&report), ["pass", "pass", "pass", "pass", "pass", "pass", "pass", "skipped"], "{human}");
    assert!(human.contains("gateway 2026.9.6-standin") && human.contains("started and ready"), "{human}");
    assert!(human.contains(&format!("ssh pid {}", s.ssh.pid())), "the owning pid is evidence:\n{human}");
    assert!(human.contains("HTTP 200") && human.contains("HTTP 400"), "{human}");
}

#[test]
fn each_broken_layer_is_named_first() {
    // 1: the ssh host does not answer.
    let s = setup(&[]);
    let (code, report, _) = s.doctor(&s.config(free_port(), ""));
    assert_fails_at(&report, code, 1);

    // 4: the gateway behind a live ssh is dead.
    let mut s = setup(&[]);
    s.gateway.proc.signal(libc::SIGKILL);
    s.gateway.proc.wait_exit(Duration::from_secs(5));
    let (code, report, human) = s.doctor(&s.config(s.sshd.port, ""));
    assert_fails_at(&report, code, 4);
    println!("{human}");
    assert!(human.contains("reset") || human.contains("empty_reply"), "{human}");

    // 5: /healthz answers but the gateway is still starting, with a failing component named.
    let s = setup(&["--readiness", "2026.9.6-standin", "--starting-ms", "600000"]);
    let (code, report, human) = s.doctor(&s.config(s.sshd.port, ""));
    assert_fails_at(&report, code, 5);
    assert!(human.contains("live but starting"), "{human}");

    // 6: /healthz answers but the Control UI does not.
    let s = setup(&["--no-ui"]);
    let (code, report, _) = s.doctor(&s.config(s.sshd.port, ""));
    assert_fails_at(&report, code, 6);

    // 7: the token this machine holds is rejected.
    let s = setup(&[]);
    std::fs::write(s.dir.path().join("token"), "an-old-token").unwrap();
    let (code, report, human) = s.doctor(&s.config(s.sshd.port, ""));
    assert_fails_at(&report, code, 7);
    assert!(!human.contains("an-old-token"), "the doctor printed a token:\n{human}");

    // 8: the gateway port listens beyond loopback (a wildcard listener standing in for `bind: lan`).
    let s = setup(&[]);
    let exposed = TcpListener::bind("0.0.0.0:0").unwrap();
    let extra = format!("[[gateway]]\nname = \"mac\"\nport = {}\n", exposed.local_addr().unwrap().port());
    let (code, report, _) = s.doctor(&s.config(s.sshd.port, &extra));
    assert_fails_at(&report, code, 8);

    // 2 and 3: ssh gone: nothing owns the forward (and SYN is not explained).
    let mut s = setup(&[]);
    s.ssh.signal(libc::SIGTERM);
    s.ssh.wait_exit(Duration::from_secs(5));
    wait_refused(std::net::SocketAddr::from(([127, 0, 0, 1], s.local_port)), "ssh forward", Duration::from_secs(5));
    let (code, report, _) = s.doctor(&s.config(s.sshd.port, ""));
    assert_fails_at(&report, code, 2);
}

#[test]
fn routing_row_prints_the_table_row_from_the_config() {
    let s = setup(&[]);
    let config = s.config(s.sshd.port, "[auth]\ncurrent = \"r2\"\n[[auth.revision]]\nname = \"r2\"\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n");
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .args(["routing-row", "--header", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let lines: Vec<_> = text.lines().collect();
    assert!(lines[0].starts_with("| forward | local port |"), "{text}");
    assert_eq!(
        lines[2],
        format!("| mac | {} | - | 127.0.0.1 | {} | r2 | platform-team |", s.local_port, s.gateway.addr.port())
    );
}

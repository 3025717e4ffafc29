//! The README's quickstart block, run as written by bash against a real ssh forward to the gateway stand-in,
//! with a fresh HOME holding an ssh config that names the forward. Only what a test machine must change is
//! changed, and said here: the binary's directory goes on PATH, `init` gets the stand-in's port as
//! `--remote-port` (the real gateway's 18789 may be in use by other tests), and the web port 19789 is moved to a
//! free one through the exporter's own environment override.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use e2e::*;

fn quickstart_block() -> String {
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find("```sh\n# quickstart\n").expect("the README's quickstart block");
    let body = &readme[start + "```sh\n".len()..];
    body[..body.find("```").expect("the block ends")].to_owned()
}

#[test]
fn the_readme_quickstart_runs_against_a_real_forward() {
    // The token the laptop's CLI would use, accepted by the stand-in (the doctor checks it).
    let token = "quickstart-token-0123456789abcdef";
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &["--token", token]);
    let gw = gateway.addr.port();
    let sshd = Sshd::start(gw);
    let home = tempfile::tempdir().unwrap();
    let ssh_dir = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let known_hosts = ssh_dir.join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
    let local = free_port();
    let config = sshd.host_block("mac-ap1", &known_hosts, &[&format!("LocalForward 127.0.0.1:{local} 127.0.0.1:{gw}")]);
    std::fs::write(ssh_dir.join("config"), &config).unwrap();
    // The forward runs, as on a laptop (its own config file: ssh reads the passwd home's, not $HOME's).
    let _ssh = Proc::spawn_group(
        "ssh mac-ap1",
        Command::new("ssh").arg("-F").arg(ssh_dir.join("config")).args(["-N", "mac-ap1"]),
    );
    wait_listening(std::net::SocketAddr::from(([127, 0, 0, 1], local)), "the forward", Duration::from_secs(20));

    let web = free_port();
    let script = quickstart_block()
        .replace("init --write", &format!("init --remote-port {gw} --write"))
        .replace("127.0.0.1:19789", &format!("127.0.0.1:{web}"));
    let binary_dir = workspace_binary("openclaw-tunnel-exporter").parent().unwrap().to_owned();
    // Bounded: a failing step must not leave the test waiting on the background exporter's stdout.
    let output = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .env("HOME", home.path())
        .env("PATH", format!("{}:{}", binary_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .env("OPENCLAW_EXPORTER__WEB__LISTEN", format!("127.0.0.1:{web}"))
        .env("OPENCLAW_GATEWAY_TOKEN", token)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the quickstart failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("<h2>Forward mac-ap1</h2>"), "{stdout}");
    assert!(stdout.contains("openclaw_tunnel_up_checks_total{forward=\"mac-ap1\"}"), "{stdout}");
    assert!(stdout.contains("PASS  accepted"), "the doctor's token step: {stdout}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(!stdout.contains(token) && !stderr.contains(token), "the token reached the output");
}

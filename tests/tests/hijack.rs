//! The token goes only to our own user's ssh (issue 19): the forward's ssh dies and a process of another user
//! (`nobody`, started with `setpriv`) takes the forward's port. The exporter sees it (the hijack gauge, the
//! doctor naming the process and its user), and the canary token never reaches it from the auth probe, the
//! WebSocket handshake probe, the doctor or `evidence`, while the same probes did send it to our ssh before.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(30);

/// A listener as user `nobody` on `port` that appends every byte it is sent to `capture` and answers 200.
fn listener_of_another_user(port: u16, capture: &Path) -> Proc {
    let script = r#"
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(64)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    with open(sys.argv[2], "ab") as f:
        f.write(data + b"\n---\n")
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    except OSError:
        pass
    conn.close()
"#;
    Proc::spawn(
        "listener of nobody",
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script])
            .arg(port.to_string())
            .arg(capture),
    )
}

fn value(scrape: &Scrape, series: &str) -> f64 {
    scrape.value(series)
}

#[test]
fn a_listener_of_another_user_never_receives_the_token() {
    if !root_or_skip("a_listener_of_another_user_never_receives_the_token", "run a listener as another user") {
        return;
    }
    let canary = format!("oce-hijack-canary-{}-7c21d9", std::process::id());
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &["--token", &canary]);
    let sshd = Sshd::start(gateway.addr.port());
    let local = free_port();
    let mut ssh = sshd.forward(local, gateway.addr.port());

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::write(h.join("token"), &canary).unwrap();
    std::fs::set_permissions(h.join("token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // The capture directory: writable by nobody.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let capture = shared.path().join("capture");
    let config = format!(
        "{}ws_handshake_interval = \"1s\"\n[auth_probe]\nenabled = true\ninterval = \"1s\"\ntoken_file = \"{}\"\n",
        forward_toml("t", local),
        h.join("token").display()
    );
    let exporter = Exporter::start_with(&config, |command| {
        command.env("HOME", h).env_remove("OPENCLAW_GATEWAY_TOKEN").env_remove("OPENCLAW_STATE_DIR")
    });
    // Our own ssh holds the port: the token is sent and accepted.
    exporter.wait_for("the token accepted through our ssh", T, |m| {
        value(m, "openclaw_tunnel_forward_hijacked{forward=\"t\"}") == 0.0
            && value(m, "openclaw_gateway_auth_requests_total{forward=\"t\",channel=\"probe\",token_revision=\"unknown\"}")
                >= 1.0
            && value(
                m,
                "openclaw_gateway_auth_failures_total{forward=\"t\",channel=\"probe\",code=\"401\",token_revision=\"unknown\"}",
            ) == 0.0
    });

    // ssh dies; another user takes the port.
    ssh.signal(libc::SIGTERM);
    ssh.wait_exit(Duration::from_secs(10)).expect("ssh exits");
    wait_refused(std::net::SocketAddr::from(([127, 0, 0, 1], local)), "the forward's port", T);
    let _nobody = listener_of_another_user(local, &capture);
    wait_listening(std::net::SocketAddr::from(([127, 0, 0, 1], local)), "nobody's listener", T);
    let seen = exporter.wait_for("the hijack seen and the token withheld", T, |m| {
        value(m, "openclaw_tunnel_forward_hijacked{forward=\"t\"}") == 1.0
            && value(m, "openclaw_gateway_credential_withheld_total{forward=\"t\",probe=\"auth\"}") >= 3.0
            && value(m, "openclaw_gateway_credential_withheld_total{forward=\"t\",probe=\"ws_handshake\"}") >= 2.0
    });
    assert_eq!(value(&seen, "openclaw_tunnel_ssh_session_state{forward=\"t\",state=\"not_ssh\"}"), 1.0);
    let status = exporter.status();
    let session = &status["forwards"][0]["ssh_session"];
    assert_eq!(session["same_user"], serde_json::Value::Bool(false), "{session}");
    assert!(session["user"].as_str().unwrap_or_default().contains("uid 65534"), "{session}");

    // The doctor and evidence, with the same token sources: they name who holds the port and send nothing.
    let config_file = h.join("exporter.toml");
    std::fs::write(&config_file, format!("[web]\nlisten = \"127.0.0.1:{}\"\n{config}", free_port())).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
            .arg("--config")
            .arg(&config_file)
            .args(args)
            .env("HOME", h)
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_STATE_DIR")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, doctor) = run(&["doctor"]);
    assert!(!ok, "{doctor}");
    assert!(doctor.contains("python3") && doctor.contains("uid 65534"), "the doctor names the holder:\n{doctor}");
    assert!(doctor.contains("7 token accepted and current") && !doctor.contains("accepted (HTTP"), "{doctor}");
    let archive = h.join("evidence.tar.gz");
    let (ok, said) = run(&["evidence", "--out", archive.to_str().unwrap()]);
    assert!(ok, "{said}");

    let captured = std::fs::read(&capture).unwrap_or_default();
    let captured = String::from_utf8_lossy(&captured);
    assert!(
        captured.contains("GET "),
        "nobody's listener was reached by the probes (so the test can fail):\n{captured}"
    );
    assert!(!captured.contains(&canary), "the token reached another user's listener:\n{captured}");
}

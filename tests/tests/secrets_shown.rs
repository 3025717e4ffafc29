//! Secrets in what the exporter shows people (issue 28, item 5; issue 38, item 6): an orphaned ssh whose command
//! line carries a secret (`-o SetEnv=X=<canary>`, a ProxyCommand with `sshpass -p <canary>`, a joined
//! `-oSendEnv`, a `LocalCommand` with `curl -u`, a remote command with a Bearer header) is listed everywhere it
//! is listed (/api/status, the status page, the doctor, the evidence archive) by what identifies it alone (its
//! forwards, port, jump and destination), never the canary nor any of those options; a remote-write
//! URL carrying `?api_key=<canary>` never reaches the log or `check-config`'s output.

use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn an_orphan_s_secrets_reach_no_page_report_or_archive() {
    let canary = format!("c4nary{}x{}", std::process::id(), free_port());
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local = free_port();
    let _forward = sshd.forward(local, gateway.addr.port());
    // The second ssh reaches sshd through a ProxyCommand that carries a password argument the relay ignores
    // (bash's $0..$2), and sends a secret in SetEnv; its bind fails and it keeps running: an orphan.
    let proxy = format!(
        "ProxyCommand=bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}; cat <&3 & cat >&3' sshpass -p {canary}",
        sshd.port
    );
    let mut args: Vec<String> = sshd
        .forward_args(local, gateway.addr.port())
        .into_iter()
        .map(|arg| if arg == "ExitOnForwardFailure=yes" { "ExitOnForwardFailure=no".to_owned() } else { arg })
        .collect();
    let at = args.len() - 1;
    // A joined option, a LocalCommand (curl with a password, not run: PermitLocalCommand is off) and, after the
    // destination, a remote command carrying a Bearer header (not run: -N).
    args.splice(
        at..at,
        [
            "-o".to_owned(),
            format!("SetEnv=X={canary}"),
            "-o".to_owned(),
            proxy,
            format!("-oSendEnv=TOKEN_{canary}"),
            "-o".to_owned(),
            format!("LocalCommand=curl -u me:{canary} https://example.invalid/"),
        ],
    );
    args.extend(["curl".to_owned(), "-H".to_owned(), format!("Authorization: Bearer {canary}")]);
    let orphan = Proc::spawn_group("orphan with secrets", Command::new("ssh").args(&args));
    let config = format!("{}hygiene_interval = \"1s\"\n", forward_toml("t", local));
    let exporter = Exporter::start(&config);
    exporter.wait_for("the orphan counted", T, |m| m.get("openclaw_tunnel_ssh_orphans{forward=\"t\"}") == Some(1.0));

    let (_, api) = exporter.get("/api/status", None);
    assert!(api.contains(&format!("\"pid\":{}", orphan.pid())), "the orphan is listed: {api}");
    // What identifies it, and nothing else: its forward and destination; no option, no remote command.
    let listed = format!("-L 127.0.0.1:{local}:127.0.0.1:{}", gateway.addr.port());
    assert!(api.contains(&listed), "its forward shown: {api}");
    for hidden in ["ProxyCommand", "SetEnv", "SendEnv", "LocalCommand", "curl", "Authorization", "sshpass"] {
        assert!(!api.contains(hidden), "{hidden} shown for the orphan: {api}");
    }
    let (_, page) = exporter.get("/", None);
    for (what, text) in [("/api/status", &api), ("the status page", &page)] {
        assert!(!text.contains(&canary), "{what} shows the orphan's secret:\n{text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("exporter.toml");
    std::fs::write(&config_file, format!("[web]\nlisten = \"{}\"\n{config}", exporter.web)).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
            .arg("--config")
            .arg(&config_file)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
    };
    let doctor = run(&["doctor"]);
    assert!(doctor.contains(&format!("orphaned ssh pid {}", orphan.pid())), "{doctor}");
    assert!(!doctor.contains(&canary), "the doctor shows the orphan's secret:\n{doctor}");
    let archive = dir.path().join("evidence.tar.gz");
    let said = run(&["evidence", "--out", archive.to_str().unwrap()]);
    assert!(archive.is_file(), "{said}");
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_tool("tar", &["-xzf", archive.to_str().unwrap(), "-C", unpacked.to_str().unwrap()], dir.path());
    let api_in_archive = std::fs::read_to_string(unpacked.join("evidence/exporter/api-status.json")).unwrap();
    assert!(api_in_archive.contains(&format!("\"pid\":{}", orphan.pid())), "the archive lists it: {api_in_archive}");
    let grep = Command::new("grep").args(["-r", "-l", &canary]).arg(&unpacked).output().unwrap();
    assert!(grep.stdout.is_empty(), "the archive holds the canary in: {}", String::from_utf8_lossy(&grep.stdout));
}

#[test]
fn a_remote_write_url_s_query_reaches_neither_the_log_nor_check_config() {
    let canary = format!("k3y{}x{}", std::process::id(), free_port());
    let dir = tempfile::tempdir().unwrap();
    // A receiver that is not there: the exporter logs its failed sends, URL and all.
    let url = format!("http://127.0.0.1:{}/api/v1/write?api_key={canary}#frag{canary}", free_port());
    let remote_write = format!(
        "[remote_write]\nurl = \"{url}\"\ninterval = \"200ms\"\nqueue_dir = \"{}\"\n",
        dir.path().join("queue").display()
    );
    let exporter = Exporter::start(&format!("{}{remote_write}", forward_toml("t", free_port())));
    exporter.wait_for("a failed send retried", T, |m| {
        m.value("openclaw_exporter_remote_write_retries_total{status=\"network\"}") >= 2.0
    });
    let log = exporter.proc.output();
    assert!(log.contains("remote write: cannot send"), "the failed send is logged: {log}");
    assert!(!log.contains(&canary), "the log shows the URL's secret:\n{log}");

    for config in [
        format!("{}{remote_write}", forward_toml("t", free_port())),
        format!("{}{}", forward_toml("t", free_port()), remote_write.replace("http://", "ftp://")),
        format!(
            "{}{}",
            forward_toml("t", free_port()),
            remote_write.replace(
                "[remote_write]\n",
                &format!("[remote_write.headers]\nX-Key = \"bad\\n{canary}\"\n[remote_write]\n")
            )
        ),
    ] {
        let file = dir.path().join("check.toml");
        std::fs::write(&file, format!("[web]\nlisten = \"127.0.0.1:{}\"\n{config}", free_port())).unwrap();
        let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(!said.contains(&canary), "check-config shows the secret:\n{said}");
    }
}

//! `init` against a real ssh config and real running forwards: a Host with ProxyJump and a LocalForward to the
//! gateway's port (read through `ssh -G`), a running `ssh -J ... -L` (read from its command line), a Host whose
//! forward goes elsewhere (left out); the printed config passes check-config and, run, measures both forwards.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn init_finds_a_config_forward_behind_a_jump_and_a_running_ssh_j_forward() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let gw = gateway.addr.port();
    let mac = Sshd::start(gw);
    let bastion = Sshd::start_permitting(&format!("127.0.0.1:{}", mac.port));
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, bastion.known_hosts_line() + "\n" + &mac.known_hosts_line()).unwrap();
    let (from_config, from_process, elsewhere) = (free_port(), free_port(), free_port());
    let config = bastion.host_block("bastion", &known_hosts, &[])
        + &mac.host_block(
            "mac-ap1",
            &known_hosts,
            &["ProxyJump bastion", &format!("LocalForward 127.0.0.1:{from_config} 127.0.0.1:{gw}")],
        )
        + &mac.host_block("mac-direct", &known_hosts, &[])
        + &mac.host_block("other", &known_hosts, &[&format!("LocalForward {elsewhere} 127.0.0.1:{}", gw + 1)]);
    let config_path = dir.path().join("ssh_config");
    std::fs::write(&config_path, config).unwrap();
    let cfg = config_path.to_str().unwrap();
    // The config's forward, running (its command line has no -L: the config is what names it).
    let _config_ssh = Proc::spawn_group("ssh mac-ap1", Command::new("ssh").args(["-F", cfg, "-N", "mac-ap1"]));
    wait_listening(SocketAddr::from(([127, 0, 0, 1], from_config)), "the config's forward", T);
    // A forward only a running process knows: ssh -J with -L on its command line.
    let spec = format!("127.0.0.1:{from_process}:127.0.0.1:{gw}");
    let _running = Proc::spawn_group(
        "ssh -J -L",
        Command::new("ssh").args(["-F", cfg, "-J", "bastion", "-N", "-L", &spec, "mac-direct"]),
    );
    wait_listening(SocketAddr::from(([127, 0, 0, 1], from_process)), "the running ssh -J forward", T);

    let exporter = workspace_binary("openclaw-tunnel-exporter");
    let output =
        Command::new(&exporter).args(["init", "--ssh-config", cfg, "--remote-port", &gw.to_string()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let bastion_addr = format!("127.0.0.1:{}", bastion.port);
    let mac_addr = format!("127.0.0.1:{}", mac.port);
    for expected in [
        format!("name = \"mac-ap1\"\nlocal = \"127.0.0.1:{from_config}\"\nssh_host = \"{mac_addr}\"\njump_host = \"{bastion_addr}\"\nremote = \"127.0.0.1:{gw}\""),
        format!("name = \"mac-direct\"\nlocal = \"127.0.0.1:{from_process}\"\nssh_host = \"{mac_addr}\"\njump_host = \"{bastion_addr}\"\nremote = \"127.0.0.1:{gw}\""),
    ] {
        assert!(text.contains(&expected), "missing\n{expected}\nin\n{text}");
    }
    assert!(!text.contains(&elsewhere.to_string()), "a forward to another port was taken:\n{text}");
    assert_eq!(text.matches("[[forward]]").count(), 2, "duplicates merged, nothing else:\n{text}");
    assert!(text.contains("# from running ssh pid"), "{text}");

    // --write: the same text, checked by check-config; never over an existing file.
    let written = dir.path().join("exporter.toml");
    let write = |path: &std::path::Path| {
        Command::new(&exporter)
            .args(["init", "--ssh-config", cfg, "--remote-port", &gw.to_string(), "--write"])
            .arg(path)
            .output()
            .unwrap()
    };
    assert!(write(&written).status.success());
    let check = Command::new(&exporter).arg("check-config").arg("--config").arg(&written).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let again = write(&written);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwritten"));

    // Run on it: both forwards measured end to end.
    let running = Exporter::start(&text);
    running.wait_for("both discovered forwards up", T, |m| {
        m.get("openclaw_gateway_up{forward=\"mac-ap1\"}") == Some(1.0)
            && m.get("openclaw_gateway_up{forward=\"mac-direct\"}") == Some(1.0)
            && m.get("openclaw_tunnel_ssh_session_up{forward=\"mac-direct\"}") == Some(1.0)
    });
}

/// `init` never hands `ssh -G` a config file another user can write, and never waits forever on one: a running
/// `ssh -F /tmp/...` of this user whose config holds `Match exec "touch MARKER"` is resolved without that file
/// (the marker is never created), the same from a process of user `nobody` (not even read: not this user's
/// forward), and a config that includes a FIFO nobody writes (`ssh -G` blocks on it) ends within the timeout.
#[test]
fn init_runs_no_command_from_a_config_it_did_not_find_in_the_user_s_home_and_never_hangs() {
    if !root_or_skip("init_runs_no_command_from_a_config_it_did_not_find_in_the_user_s_home_and_never_hangs", "setpriv")
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = shared.path().join("marker");
    let evil = shared.path().join("evil_config");
    std::fs::write(&evil, format!("Match exec \"touch {}\"\n  HostName 127.0.0.1\n", marker.display())).unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o666)).unwrap();
    // A stand-in "ssh" that only idles: its command line is what init reads.
    let bin = shared.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(workspace_binary("idle"), bin.join("ssh")).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let fifo = home.path().join("fifo_config");
    run_tool("mkfifo", &[fifo.to_str().unwrap()], home.path());
    let spec = |port: u16| format!("127.0.0.1:{port}:127.0.0.1:18789");
    let evil_str = evil.to_str().unwrap();
    let (mine, theirs) = (free_port(), free_port());
    let config = home.path().join("config");
    std::fs::write(
        &config,
        format!(
            "Include {}\nHost fifo-host\n  LocalForward 127.0.0.1:{} 127.0.0.1:18789\n",
            fifo.display(),
            free_port()
        ),
    )
    .unwrap();
    let _mine = Proc::spawn(
        "ssh -F /tmp",
        Command::new(bin.join("ssh")).args(["-F", evil_str, "-N", "-L", &spec(mine), "evil-host"]),
    );
    let _theirs =
        Proc::spawn(
            "ssh -F /tmp as nobody",
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(bin.join("ssh"))
                .args(["-F", evil_str, "-N", "-L", &spec(theirs), "evil-host"]),
        );
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let mut init = Proc::spawn(
        "init",
        Command::new(workspace_binary("openclaw-tunnel-exporter"))
            .args(["init", "--ssh-config"])
            .arg(&config)
            .env("HOME", home.path()),
    );
    let status = init.wait_exit(Duration::from_secs(60)).expect("init ends (ssh -G on a FIFO is cut off)");
    let output = init.output();
    assert!(status.success(), "{output}");
    assert!(!marker.exists(), "init ran a Match exec from a config another user can write:\n{output}");
    assert!(output.contains(&format!("127.0.0.1:{mine}")), "this user's forward is still listed:\n{output}");
    assert!(
        !output.contains(&format!("127.0.0.1:{theirs}")),
        "another user's ssh is not this user's forward:\n{output}"
    );
    assert!(output.contains("no answer within"), "the FIFO config was cut off:\n{output}");
    eprintln!("init took {:?}", started.elapsed());
}

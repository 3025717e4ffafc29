//! A Windows laptop whose ssh runs inside WSL2, simulated on Linux (issue 39). Windows sees the forward's port
//! held by WSL's relay (`wslrelay.exe`, the user's own); the relay carries each connection into the VM, where the
//! user's real `ssh -L` listens on the VM's loopback and a companion exporter watches it. Here the VM is a network
//! namespace, the relay a same-user copy of a relay program named `wslrelay.exe` (tests/src/bin/
//! wsl_relay_standin.rs: the Windows side in the host's namespace, WSL's side inside the VM's, a Unix socket
//! between them), and everything runs as an ordinary account the test creates; `nobody` plays the neighbour.
//!
//! The laptop-side exporter counts the forward up and sends the auth probe's token (its 401 counted) only while
//! the companion vouches; the ssh inside killed: the token withheld, rounds down as `wsl_ssh_down`; the companion
//! gone: `wsl_companion_unreachable`; the same relay run by `nobody`: a hijack.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(40);

/// `command` run inside `net` (`ip netns exec NAME`), its program, arguments and environment kept.
fn inside(net: &TestNet, command: &Command) -> Command {
    let mut wrapped = net.command(command.get_program());
    wrapped.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// The relay program, copied as `wslrelay.exe` into `dir` (so its process is named as WSL's relay).
fn relay_program(dir: &Path) -> PathBuf {
    let copy = dir.join("wslrelay.exe");
    std::fs::copy(workspace_binary("wsl-relay-standin"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Sum every sample of `family` whose labels name the forward `wsl` and contain `with`.
fn sum_of(scrape: &Scrape, family: &str, with: &str) -> f64 {
    scrape
        .text
        .lines()
        .filter(|l| l.starts_with(family) && l.contains("forward=\"wsl\"") && l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Wait until every path in `paths` exists (the VM side's Unix sockets).
fn wait_for_sockets(paths: &[&Path], proc: &mut Proc) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !paths.iter().all(|p| p.exists()) {
        assert!(std::time::Instant::now() < deadline && proc.is_running(), "the VM side: {}", proc.output());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn forward_series(scrape: &Scrape, family: &str, extra: &str) -> f64 {
    scrape.get(&format!("{family}{{forward=\"wsl\"{extra}}}")).unwrap_or(0.0)
}

#[test]
fn a_forward_through_wsl_s_relay_is_trusted_only_while_the_companion_inside_vouches() {
    if !root_or_skip("wsl_relay::companion", "a network namespace for the VM; the test user and nobody") {
        return;
    }
    let vm = TestNet::create();
    let user = TestUser::create();
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &["--token", "the-gateway-s-own-token"]);
    let sshd = Sshd::start_listening(&format!("127.0.0.1:{}", gateway.addr.port()), &[vm.host]);
    let key = user.file(".ssh/id_ed25519", &std::fs::read(sshd.client_key()).unwrap(), 0o600);
    let known_hosts = user.file(".ssh/known_hosts", sshd.known_hosts_line_for(vm.host).as_bytes(), 0o644);
    let token_file = user.file("token", b"a-token-the-gateway-refuses", 0o600);

    // The forward's port and the companion's web port are the same numbers on both sides, as WSL relays them.
    let (port, companion_port) = (free_port(), free_port());
    let crossing = tempfile::Builder::new().prefix("oce-wsl").tempdir().unwrap();
    std::fs::set_permissions(crossing.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (forward_sock, companion_sock) = (crossing.path().join("forward.sock"), crossing.path().join("companion.sock"));
    let program = relay_program(crossing.path());
    // WSL's side, inside the VM (WSL's init runs it as root).
    let mut vm_side = Proc::spawn(
        "WSL's relay inside the VM",
        &mut inside(
            &vm,
            Command::new(&program).arg("vm").args([
                format!("{}=127.0.0.1:{port}", forward_sock.display()),
                format!("{}=127.0.0.1:{companion_port}", companion_sock.display()),
            ]),
        ),
    );
    wait_for_sockets(&[&forward_sock, &companion_sock], &mut vm_side);
    // The Windows side, as the user.
    let windows_side_args = |only_forward: bool| {
        let mut args = vec!["windows".to_owned(), format!("127.0.0.1:{port}={}", forward_sock.display())];
        if !only_forward {
            args.push(format!("127.0.0.1:{companion_port}={}", companion_sock.display()));
        }
        args
    };
    let mut windows_side =
        Proc::spawn("wslrelay.exe of the user", user.command(&program).args(windows_side_args(false)));
    windows_side.wait_listening(SocketAddr::from(([127, 0, 0, 1], companion_port)), T);

    // The user's real ssh -L inside the VM, to the sshd on the "Mac" (this host, through the VM's veth).
    let ssh_inside = |user: &TestUser| {
        let mut command = user.command("ssh");
        command
            .args(["-F", "/dev/null", "-i"])
            .arg(&key)
            .args(["-o", "IdentitiesOnly=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes"])
            .args(["-p", &sshd.port.to_string(), "-N", "-L"])
            .arg(format!("127.0.0.1:{port}:127.0.0.1:{}", gateway.addr.port()))
            .arg(format!("{}@{}", sshd.user, vm.host));
        Proc::spawn_group("ssh inside WSL2", &mut inside(&vm, &command))
    };
    let ssh = ssh_inside(&user);

    // The companion exporter inside the VM, as the user, watching the same forward.
    let companion_config = format!(
        "[auth_probe]\nenabled = false\ninterval = \"1m\"\n[[forward]]\nname = \"wsl\"\nlocal = \"127.0.0.1:{port}\"\n\
         syn_interval = \"200ms\"\n"
    );
    let companion_web = SocketAddr::from(([127, 0, 0, 1], companion_port));
    let companion = Exporter::launch(companion_web, "", &companion_config, |command| {
        command.env_remove("OPENCLAW_GATEWAY_TOKEN");
        user.wrap(command);
        *command = inside(&vm, command);
        command
    });
    // Reached from Windows through the relay, as the laptop's exporter reaches it (the relay accepts at once and
    // closes while nothing answers inside).
    let deadline = std::time::Instant::now() + T;
    while ureq::get(format!("http://{companion_web}/metrics")).call().is_err() {
        assert!(std::time::Instant::now() < deadline, "the companion never answered: {}", companion.proc.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    companion.wait_for("the ssh inside is up, as the companion sees it", T, |m| {
        m.get("openclaw_tunnel_ssh_session_up{forward=\"wsl\"}") == Some(1.0)
    });

    // The laptop's exporter on "Windows", as the user.
    let laptop_config = format!(
        "[auth_probe]\nenabled = true\ninterval = \"1s\"\ntoken_file = \"{}\"\n[[forward]]\nname = \"wsl\"\n\
         local = \"127.0.0.1:{port}\"\nsyn_interval = \"200ms\"\nwsl_companion = \"http://127.0.0.1:{companion_port}\"\n",
        token_file.display()
    );
    let laptop = Exporter::start_with(&laptop_config, |command| {
        command.env_remove("OPENCLAW_GATEWAY_TOKEN").env_remove("OPENCLAW_STATE_DIR");
        user.wrap(command);
        command
    });
    let refused = "openclaw_gateway_auth_failures_total";
    let scrape = laptop.wait_for("the forward up through the relay and the token's 401 counted", T, |m| {
        forward_series(m, "openclaw_tunnel_ssh_session_up", "") == 1.0
            && forward_series(m, "openclaw_tunnel_up_successes_total", "") > 0.0
            && sum_of(m, refused, "code=\"401\"") > 0.0
    });
    assert_eq!(forward_series(&scrape, "openclaw_tunnel_forward_hijacked", ""), 0.0);
    assert_eq!(forward_series(&scrape, "openclaw_tunnel_ssh_session_state", ",state=\"wsl_relay\""), 1.0);
    let status = laptop.status();
    let session = &status["forwards"][0]["ssh_session"];
    assert_eq!(session["state"], "wsl_relay", "{session}");
    assert_eq!(session["name"], "wslrelay.exe", "{session}");
    assert_eq!(session["pid"].as_u64(), Some(u64::from(windows_side.pid())), "{session}");
    assert_eq!(session["wsl_companion"]["said"], "vouches", "{session}");

    // The ssh inside dies; the relay still accepts on Windows. The token is withheld, rounds are down. (The
    // refused token is never sent again: the sources get another one, which the probe would send if it could.)
    ssh.signal(libc::SIGKILL);
    user.file("token", b"another-token-to-send", 0o600);
    let withheld = |m: &Scrape| forward_series(m, "openclaw_gateway_credential_withheld_total", ",probe=\"auth\"");
    let before = withheld(&laptop.scrape());
    let scrape = laptop.wait_for("rounds down as wsl_ssh_down and the token withheld", T, |m| {
        forward_series(m, "openclaw_tunnel_down_seconds_total", ",cause=\"wsl_ssh_down\"") > 0.0
            && withheld(m) > before
            && forward_series(m, "openclaw_tunnel_ssh_session_up", "") == 0.0
    });
    assert_eq!(forward_series(&scrape, "openclaw_tunnel_forward_hijacked", ""), 0.0, "our relay is no hijack");
    let sent = |m: &Scrape| sum_of(m, "openclaw_gateway_auth_requests_total", "");
    let (sent_before, withheld_before) = (sent(&scrape), withheld(&scrape));
    laptop.wait_for("two more rounds withheld", T, |m| withheld(m) >= withheld_before + 2.0);
    assert_eq!(sent(&laptop.scrape()), sent_before, "no request went out while the ssh inside was down");

    // The companion gone (WSL stopped the VM's processes): unreachable.
    drop(companion);
    laptop.wait_for("rounds down as wsl_companion_unreachable", T, |m| {
        forward_series(m, "openclaw_tunnel_down_seconds_total", ",cause=\"wsl_companion_unreachable\"") > 0.0
    });
    let status = laptop.status();
    assert_eq!(status["forwards"][0]["ssh_session"]["wsl_companion"]["said"], "unreachable", "{status}");

    // The same relay run by nobody on the forward's port: a hijack.
    windows_side.signal(libc::SIGKILL);
    let _ = windows_side.wait_exit(Duration::from_secs(5));
    let mut nobody = Command::new("setpriv");
    nobody.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&program).args(windows_side_args(true));
    let mut nobody_side = Proc::spawn("wslrelay.exe of nobody", &mut nobody);
    nobody_side.wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), T);
    laptop.wait_for("nobody's relay is a hijack", T, |m| {
        forward_series(m, "openclaw_tunnel_forward_hijacked", "") == 1.0
    });
    // As the user, nobody's process cannot be read: named by its socket's owner, never trusted.
    let status = laptop.status();
    let session = &status["forwards"][0]["ssh_session"];
    assert_eq!(session["state"], "unreadable", "{session}");
    assert!(session["detail"].as_str().is_some_and(|d| d.contains("nobody")), "{session}");
}

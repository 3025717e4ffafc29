//! The shapes a real forward takes, each looked up both ways the exporter can find a
//! listener's owner: `procfs` (Linux's own tables) and `listeners` (the crate every macOS and Windows laptop
//! runs). Real sshd and ssh throughout: a plain `-L`, `-J bastion` (a child `ssh -W` carries the hop; the
//! parent owns the listener), an IPv6 `-L [::1]:...` forward, a ControlMaster whose forward was added later
//! with `ssh -O forward` (the daemonized master owns it), and a port held by a program that is not ssh.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(15);
const LOOKUPS: [&str; 2] = ["procfs", "listeners"];

fn session_state(scrape: &Scrape, state: &str) -> Option<f64> {
    scrape.get(&format!("openclaw_tunnel_ssh_session_state{{forward=\"t\",state=\"{state}\"}}"))
}

/// Wait until the exporter sees the session up with rounds up, and return the owner it names in /status.json.
fn wait_session_up(exporter: &Exporter, lookup: &str) -> serde_json::Value {
    exporter.wait_for(&format!("{lookup}: ssh session up and rounds up"), T, |m| {
        session_state(m, "up") == Some(1.0)
            && m.get("openclaw_tunnel_ssh_session_up{forward=\"t\"}") == Some(1.0)
            && m.value("openclaw_tunnel_up_successes_total{forward=\"t\"}") >= 3.0
    });
    exporter.status()["forwards"][0]["ssh_session"].clone()
}

fn forward_at(local: SocketAddr) -> String {
    format!(
        "[[forward]]\nname = \"t\"\nlocal = \"{local}\"\nsyn_interval = \"200ms\"\nfirst_byte_interval = \"300ms\"\n\
         timeout = \"1s\"\n"
    )
}

/// The parent pid of `pid`, from /proc.
fn parent_pid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_plain_forward_is_owned_by_ssh_through_both_lookups() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let ssh = sshd.forward(local_port, gateway.addr.port());
    for lookup in LOOKUPS {
        let exporter = Exporter::start_with_lookup(lookup, &forward_toml("t", local_port));
        let owner = wait_session_up(&exporter, lookup);
        assert_eq!(owner["pid"], ssh.pid(), "{lookup}: {owner}");
        assert_eq!(owner["name"], "ssh", "{lookup}: {owner}");
        assert_eq!(owner["parent_pid"], std::process::id(), "{lookup}: the test started ssh: {owner}");
    }
}

#[test]
fn a_proxyjump_forward_is_owned_by_the_parent_ssh_not_the_hop() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let mac = Sshd::start(gateway.addr.port());
    let bastion = Sshd::start_permitting(&format!("127.0.0.1:{}", mac.port));
    let local_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, bastion.known_hosts_line() + "\n" + &mac.known_hosts_line()).unwrap();
    let forward = format!("LocalForward 127.0.0.1:{local_port} 127.0.0.1:{}", gateway.addr.port());
    let config = bastion.host_block("bastion", &known_hosts, &[])
        + &mac.host_block("mac-ap1", &known_hosts, &["ProxyJump bastion", &forward]);
    let config_path = dir.path().join("ssh_config");
    std::fs::write(&config_path, config).unwrap();
    let ssh = Proc::spawn_group("ssh -J", Command::new("ssh").arg("-F").arg(&config_path).args(["-N", "mac-ap1"]));
    wait_listening(SocketAddr::from(([127, 0, 0, 1], local_port)), "ssh -J forward", T);
    let hops: Vec<u32> = descendants(ssh.pid());
    assert!(!hops.is_empty(), "ssh -J runs its hop as a child ssh -W");

    for lookup in LOOKUPS {
        let exporter = Exporter::start_with_lookup(lookup, &forward_toml("t", local_port));
        let owner = wait_session_up(&exporter, lookup);
        assert_eq!(owner["pid"], ssh.pid(), "{lookup}: the -L parent, not the -W hop {hops:?}: {owner}");
        // The forward reaches the gateway through both hops.
        exporter.wait_for(&format!("{lookup}: gateway up through the jump"), T, |m| {
            m.get("openclaw_gateway_up{forward=\"t\"}") == Some(1.0)
        });
    }
}

#[test]
fn an_ipv6_forward_is_found_on_its_own_address() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    assert!(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "this host has no IPv6 loopback: the [::1] forward case cannot run"
    );
    let local = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, free_port()));
    let mut args = sshd.forward_args(local.port(), gateway.addr.port());
    let spec = args.iter_mut().find(|a| a.starts_with("127.0.0.1:")).unwrap();
    *spec = format!("[::1]:{}:127.0.0.1:{}", local.port(), gateway.addr.port());
    let ssh = Proc::spawn_group("ssh -L [::1]", Command::new("ssh").args(&args));
    wait_listening(local, "ssh -L [::1] forward", T);
    for lookup in LOOKUPS {
        let exporter = Exporter::start_with_lookup(lookup, &forward_at(local));
        let owner = wait_session_up(&exporter, lookup);
        assert_eq!(owner["pid"], ssh.pid(), "{lookup}: {owner}");
    }
    // The same port on IPv4 has no listener: an IPv6 forward must not be credited to a 127.0.0.1 forward.
    let exporter = Exporter::start_with_lookup("listeners", &forward_toml("t", local.port()));
    exporter.wait_for("127.0.0.1 on the [::1] forward's port: no listener", T, |m| {
        session_state(m, "no_listener") == Some(1.0)
    });
}

/// `ssh -O exit` on drop: the master is a daemon, outside any process group the test owns.
struct ControlMaster<'a> {
    socket: &'a Path,
    config: &'a Path,
}

impl Drop for ControlMaster<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(self.config)
            .arg("-S")
            .arg(self.socket)
            .args(["-O", "exit", "mac-ap1"])
            .output();
    }
}

#[test]
fn a_controlmaster_forward_added_with_o_forward_is_owned_by_the_master() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
    let config = dir.path().join("ssh_config");
    std::fs::write(&config, sshd.host_block("mac-ap1", &known_hosts, &[])).unwrap();
    let socket = dir.path().join("master.sock");
    let ssh = |args: &[&str]| {
        let output = Command::new("ssh").arg("-F").arg(&config).arg("-S").arg(&socket).args(args).output().unwrap();
        assert!(output.status.success(), "ssh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    ssh(&["-M", "-f", "-N", "mac-ap1"]);
    let _master = ControlMaster { socket: &socket, config: &config };
    let forward = format!("127.0.0.1:{local_port}:127.0.0.1:{}", gateway.addr.port());
    ssh(&["-O", "forward", "-L", &forward, "mac-ap1"]);
    wait_listening(SocketAddr::from(([127, 0, 0, 1], local_port)), "ControlMaster forward", T);

    for lookup in LOOKUPS {
        let exporter = Exporter::start_with_lookup(lookup, &forward_toml("t", local_port));
        let owner = wait_session_up(&exporter, lookup);
        let pid = owner["pid"].as_u64().unwrap() as u32;
        assert_eq!(owner["name"], "ssh", "{lookup}: {owner}");
        // The daemonized master: not the test's child (it forked away), its parent as /proc tells it.
        assert_ne!(owner["parent_pid"], std::process::id(), "{lookup}: {owner}");
        assert_eq!(owner["parent_pid"], parent_pid(pid), "{lookup}: {owner}");
    }
}

#[test]
fn a_port_held_by_a_program_that_is_not_ssh_is_not_a_session_through_both_lookups() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    for lookup in LOOKUPS {
        let exporter = Exporter::start_with_lookup(lookup, &forward_toml("t", gateway.addr.port()));
        let scrape = exporter.wait_for(&format!("{lookup}: SYN succeeds but the owner is not ssh"), T, |m| {
            m.value("openclaw_tunnel_syn_successes_total{forward=\"t\"}") >= 3.0
                && session_state(m, "not_ssh") == Some(1.0)
        });
        assert_eq!(scrape.get("openclaw_tunnel_ssh_session_up{forward=\"t\"}"), Some(0.0), "{lookup}");
        assert_eq!(scrape.value("openclaw_tunnel_up_successes_total{forward=\"t\"}"), 0.0, "{lookup}");
        let owner = exporter.status()["forwards"][0]["ssh_session"].clone();
        assert_eq!(owner["pid"], gateway.proc.pid(), "{lookup}: {owner}");
        assert_eq!(owner["name"], "gateway-standin", "{lookup}: {owner}");
    }
}

#[test]
fn a_killed_ssh_is_seen_down_and_a_new_one_up_through_the_crate_lookup() {
    // The steady state remembers the owner; when it dies and another ssh takes the port, the one-call check
    // must fail and the full lookup find the new owner.
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let first = sshd.forward(local_port, gateway.addr.port());
    let exporter = Exporter::start_with_lookup("listeners", &forward_toml("t", local_port));
    assert_eq!(wait_session_up(&exporter, "listeners")["pid"], first.pid());
    drop(first);
    exporter.wait_for("no listener once ssh is killed", T, |m| session_state(m, "no_listener") == Some(1.0));
    let second = sshd.forward(local_port, gateway.addr.port());
    assert_eq!(wait_session_up(&exporter, "listeners")["pid"], second.pid());
}

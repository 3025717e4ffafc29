//! Bind exposure with real listeners: 127.0.0.1 and ::1 (loopback), a private address on an interface of a
//! network namespace this test makes (so the host's own network is never touched), and 0.0.0.0.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(20);

fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?}");
}

/// Run `body` on a thread moved into a new network namespace with `addresses` on a veth interface (both ends
/// inside: this kernel has no dummy interfaces); the processes it starts inherit the namespace, and the
/// host's own interfaces are never changed.
fn in_a_network_namespace_with(addresses: &[&str], body: impl FnOnce() + Send + 'static) {
    let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread's namespace membership.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        run(&["ip", "link", "set", "lo", "up"]);
        run(&["ip", "link", "add", "oce0", "type", "veth", "peer", "name", "oce1"]);
        for address in &addresses {
            run(&["ip", "addr", "add", address, "dev", "oce0"]);
        }
        run(&["ip", "link", "set", "oce0", "up"]);
        run(&["ip", "link", "set", "oce1", "up"]);
        body();
    })
    .join()
    .unwrap();
}

fn sockets(scrape: &Scrape, gateway: &str, scope: &str) -> f64 {
    scrape.value(&format!("openclaw_gateway_listen_sockets{{gateway=\"{gateway}\",scope=\"{scope}\"}}"))
}

#[test]
fn listeners_are_classified_by_the_addresses_they_really_bind() {
    if !root_or_skip("exposure::listeners_are_classified", "a network namespace with a private address") {
        return;
    }
    // Everything below runs on a thread that moved into a new network namespace; the processes it starts
    // inherit that namespace. The host's interfaces are never changed.
    in_a_network_namespace_with(&["10.77.0.1/24"], || {
        let port = free_port();
        let wide_port = free_port();
        let _v4 = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let _v6 = TcpListener::bind(("::1", port)).unwrap();
        let config = format!(
            "{}[auth_probe]\nenabled = false\ninterval = \"1m\"\n\
             [[gateway]]\nname = \"mac\"\nport = {port}\ninterval = \"200ms\"\n\
             [[gateway]]\nname = \"wide\"\nport = {wide_port}\ninterval = \"200ms\"\n",
            forward_toml("t", port)
        );
        let exporter = Exporter::start(&config);
        let scrape = exporter.wait_for("loopback only", T, |m| sockets(m, "mac", "loopback") == 2.0);
        assert_eq!(sockets(&scrape, "mac", "private") + sockets(&scrape, "mac", "public"), 0.0);
        assert_eq!(scrape.get("openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"mac\"}"), Some(0.0));

        let private = TcpListener::bind(SocketAddr::from(([10, 77, 0, 1], port))).unwrap();
        let _wildcard = TcpListener::bind(("0.0.0.0", wide_port)).unwrap();
        let scrape = exporter.wait_for("the private and the wildcard listeners seen", T, |m| {
            sockets(m, "mac", "private") == 1.0 && sockets(m, "wide", "public") == 1.0
        });
        let since = scrape.value("openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"mac\"}");
        assert!(since > 1.7e9, "exposed_since {since}");
        assert!(scrape.value("openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"wide\"}") > 1.7e9);
        assert!(exporter.proc.output().contains("listens beyond loopback"), "{}", exporter.proc.output());

        drop(private);
        exporter.wait_for("back to loopback only", T, |m| {
            sockets(m, "mac", "private") == 0.0
                && m.get("openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"mac\"}") == Some(0.0)
        });
    });
}

#[test]
fn a_declared_tailnet_bind_does_not_page_and_a_lan_bind_still_does() {
    if !root_or_skip("exposure::a_declared_tailnet_bind", "a network namespace with tailnet and private addresses") {
        return;
    }
    // A Tailscale-like address (100.64/10) and a LAN one on the same interface.
    in_a_network_namespace_with(&["100.101.102.103/32", "10.77.0.1/24"], || {
        let port = free_port();
        let _loopback = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let _tailnet = TcpListener::bind(SocketAddr::from(([100, 101, 102, 103], port))).unwrap();
        let config = format!(
            "{}[[gateway]]\nname = \"mac\"\nport = {port}\ninterval = \"200ms\"\nallowed = [\"tailnet\"]\n",
            forward_toml("t", port)
        );
        let exporter = Exporter::start(&config);
        let since = "openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"mac\"}";
        let scrape = exporter.wait_for("the tailnet listener seen", T, |m| sockets(m, "mac", "tailnet") == 1.0);
        assert_eq!(scrape.get(since), Some(0.0), "a declared tailnet bind does not page");
        assert_eq!(scrape.get("openclaw_gateway_bind_allowed{gateway=\"mac\",scope=\"tailnet\"}"), Some(1.0));
        assert_eq!(scrape.get("openclaw_gateway_bind_allowed{gateway=\"mac\",scope=\"private\"}"), Some(0.0));
        let status = exporter.status();
        assert_eq!(status["gateways"][0]["allowed"], serde_json::json!(["loopback", "tailnet"]), "{status}");

        let _lan = TcpListener::bind(SocketAddr::from(([10, 77, 0, 1], port))).unwrap();
        let scrape = exporter.wait_for("the LAN listener pages", T, |m| m.get(since).is_some_and(|s| s > 1.7e9));
        assert_eq!(sockets(&scrape, "mac", "private"), 1.0);
        assert!(exporter.proc.output().contains("outside its allowed scopes"), "{}", exporter.proc.output());
    });
}

#[test]
fn exposed_since_survives_a_restart_and_a_loopback_only_round_still_resets_it() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{}[auth_probe]\nenabled = false\ninterval = \"1m\"\n[state]\nfile = \"{}\"\n\
         [[gateway]]\nname = \"wide\"\nport = {port}\ninterval = \"200ms\"\n",
        forward_toml("t", free_port()),
        state.path().join("state.json").display()
    );
    let series = "openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"wide\"}";
    let wildcard = TcpListener::bind(("0.0.0.0", port)).unwrap();
    let mut first = Exporter::start(&config);
    let since = first.wait_for("the wildcard listener seen", T, |m| m.value(series) > 0.0).value(series);
    first.proc.signal(libc::SIGTERM);
    first.proc.wait_exit(Duration::from_secs(10)).expect("the exporter stops and saves its state");

    // Restarted while still exposed: the 24 h line counts from the first sight, not from the restart.
    let mut second = Exporter::start(&config);
    let scrape = second.wait_for("the exposure read again", T, |m| sockets(m, "wide", "public") == 1.0);
    assert_eq!(scrape.value(series), since, "exposed_since restarted from zero");
    let status = second.status();
    let spell = status["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "exposed").cloned();
    let spell = spell.unwrap_or_else(|| panic!("no exposure spell in the timeline: {status}"));
    assert_eq!(spell["start"].as_f64(), Some(since), "{spell}");

    // Loopback only: reset, and a restart keeps it reset.
    drop(wildcard);
    let _loopback = TcpListener::bind(("127.0.0.1", port)).unwrap();
    second.wait_for("exposure reset", T, |m| m.get(series) == Some(0.0));
    second.proc.signal(libc::SIGTERM);
    second.proc.wait_exit(Duration::from_secs(10)).expect("the exporter stops and saves its state");
    let third = Exporter::start(&config);
    third.wait_for("loopback only after the restart", T, |m| {
        sockets(m, "wide", "loopback") == 1.0 && m.get(series) == Some(0.0)
    });
}

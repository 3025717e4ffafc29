//! The real gateway's lifecycle seen through a real ssh forward and the auth tap: the startup window (live
//! but starting, WebSocket connects closed 1013), a restart (a held WebSocket closed 1012, the restart
//! counted, the version read again), a client that gives up on a stalled tunnel (close 4000), and the
//! WebSocket handshake probe, which must leave nothing in the gateway's log.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(60);

/// Poll `/startupz` through the forward until it says `starting`, then connect through the tap with
/// `token`: the answer and the close code, or None when the window was missed (started first).
fn connect_in_starting_window(
    forward: SocketAddr,
    tap: SocketAddr,
    token: &str,
) -> Option<(ConnectAnswer, Option<u16>)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut response) = agent.get(format!("http://{forward}/startupz")).call() {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            if body.contains("\"starting\"") {
                let (client, answer) = WsClient::connect(tap, Some(token));
                if answer == ConnectAnswer::Accepted {
                    return None;
                }
                return Some((answer, client.wait_close(Duration::from_secs(10))));
            }
            if body.contains("\"started\"") {
                return None;
            }
        }
        assert!(Instant::now() < deadline, "the gateway never answered /startupz through the forward");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Scrapes `exporter` every 20 ms in the background and remembers whether one scrape showed the gateway live
/// (`gateway_up 1`) and starting at once.
struct StartingWatch {
    seen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl StartingWatch {
    fn start(web: SocketAddr) -> StartingWatch {
        let (seen, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (seen_by, stop_by) = (seen.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !stop_by.load(Ordering::Relaxed) {
                if let Ok(mut response) = ureq::get(format!("http://{web}/metrics")).call() {
                    let scrape = Scrape::parse(&response.body_mut().read_to_string().unwrap_or_default());
                    if scrape.get("openclaw_gateway_up{forward=\"mac\"}") == Some(1.0)
                        && scrape.get("openclaw_gateway_startup_state{forward=\"mac\",state=\"starting\"}") == Some(1.0)
                    {
                        seen_by.store(true, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        StartingWatch { seen, stop, thread: Some(thread) }
    }

    fn finish(mut self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.seen.load(Ordering::Relaxed)
    }
}

fn closes(scrape: &Scrape, code: &str, by: &str) -> f64 {
    scrape.value(&format!("openclaw_gateway_ws_closes_total{{forward=\"mac\",code=\"{code}\",by=\"{by}\"}}"))
}

/// Every reason of the handshake probe's failures (the metric contract's list).
const HANDSHAKE_REASONS: [&str; 7] =
    ["refused", "reset", "timeout", "upgrade_refused", "no_challenge", "closed", "local_error"];

/// All handshake probe failures, whatever the reason.
fn handshake_failures(scrape: &Scrape) -> f64 {
    HANDSHAKE_REASONS
        .iter()
        .map(|reason| {
            scrape
                .value(&format!("openclaw_gateway_ws_handshake_failures_total{{forward=\"mac\",reason=\"{reason}\"}}"))
        })
        .sum()
}

/// Lines the gateway logged for a WebSocket of this exporter's closed before `connect`.
fn probe_warnings(log: &str) -> usize {
    log.lines().filter(|l| l.contains("closed before connect") && l.contains("openclaw-tunnel-exporter")).count()
}

#[test]
fn startup_window_restart_client_give_up_and_the_handshake_probe_on_the_real_gateway() {
    let token = format!("oce-lifecycle-{}-0123456789abcdef", std::process::id());
    let mut gateway = OpenclawGateway::spawn(&token);
    let sshd = Sshd::start(gateway.addr.port());
    let forward_port = free_port();
    let forward = SocketAddr::from(([127, 0, 0, 1], forward_port));
    let _ssh = sshd.forward(forward_port, gateway.addr.port());
    let tap = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let state = tempfile::tempdir().unwrap();
    let token_file = state.path().join("gateway-token");
    std::fs::write(&token_file, &token).unwrap();
    let config = format!(
        "[[forward]]\nname = \"mac\"\nlocal = \"{forward}\"\nsyn_interval = \"200ms\"\nfirst_byte_interval = \"100ms\"\n\
         readiness_interval = \"100ms\"\nws_handshake_interval = \"500ms\"\ntimeout = \"5s\"\n\n\
         [auth]\ncurrent = \"r1\"\n[[auth.revision]]\nname = \"r1\"\n{}\n\n\
         [[auth_tap]]\nforward = \"mac\"\nlisten = \"{tap}\"\nupstream = \"{forward}\"\n\n\
         [auth_probe]\nenabled = true\ninterval = \"5s\"\ntoken_file = \"{}\"\n",
        fingerprint_line(&token),
        token_file.display()
    );
    // The exporter runs before the gateway is up, as on a laptop that wakes before the Mac's gateway.
    let exporter = Exporter::start_with(&config, |command| {
        command.env("HOME", state.path()).env_remove("OPENCLAW_GATEWAY_TOKEN").env_remove("OPENCLAW_CONFIG_PATH")
    });

    // The startup window: /healthz answers, /startupz says starting, a WebSocket connect is closed 1013.
    // It lasts about a second on this machine; a start whose window the test missed is retried (a restart).
    let mut caught = None;
    for attempt in 0..3 {
        if attempt > 0 {
            gateway.wait_ready();
            gateway.restart();
        }
        let watch = StartingWatch::start(exporter.web);
        let answer = connect_in_starting_window(forward, tap, &token);
        gateway.wait_ready();
        let seen = watch.finish();
        if let (Some(answer), true) = (answer, seen) {
            caught = Some(answer);
            break;
        }
    }
    let (answer, close) = caught.expect("three starts and never both a connect and a scrape inside the startup window");
    assert!(matches!(&answer, ConnectAnswer::Refused(code) if code == "UNAVAILABLE"), "{answer:?}");
    assert_eq!(close, Some(1013), "a connect while starting is closed 1013 'gateway starting'");

    let started = exporter.wait_for("started, ready, handshakes measured, the 1013 counted", T, |m| {
        m.get("openclaw_gateway_startup_state{forward=\"mac\",state=\"started\"}") == Some(1.0)
            && m.get("openclaw_gateway_up{forward=\"mac\"}") == Some(1.0)
            && m.value("openclaw_gateway_ws_handshake_seconds_count{forward=\"mac\"}") >= 1.0
            && closes(m, "1013", "gateway") >= 1.0
    });
    assert_eq!(closes(&started, "1013", "client"), 0.0, "the 1013 is the gateway's, not its echo");

    // The handshake probe completes connect with the token and closes 1000: nothing in the gateway's log.
    let log_before = probe_warnings(&gateway.output());
    let handshakes = started.value("openclaw_gateway_ws_handshake_seconds_count{forward=\"mac\"}");
    let later = exporter.wait_for("three more handshakes", T, |m| {
        m.value("openclaw_gateway_ws_handshake_seconds_count{forward=\"mac\"}") >= handshakes + 3.0
    });
    assert_eq!(probe_warnings(&gateway.output()), log_before, "the handshake probe left warnings in the gateway's log");
    // Handshakes failed while the gateway booted (timeouts); none once it is started.
    assert_eq!(handshake_failures(&later), handshake_failures(&started), "{}", later.text);

    // A client that heard nothing for two ticks closes 4000: counted for the client.
    let (client, answer) = WsClient::connect(tap, Some(&token));
    assert_eq!(answer, ConnectAnswer::Accepted);
    client.close(4000);
    exporter.wait_for("the client's 4000 counted by=client", T, |m| closes(m, "4000", "client") >= 1.0);

    // Restart with a WebSocket held through the tap: shutdown event, close 1012, the restart counted.
    let before = exporter.scrape();
    let (held, answer) = WsClient::connect(tap, Some(&token));
    assert_eq!(answer, ConnectAnswer::Accepted);
    let waiter = thread::spawn(move || held.wait_close(Duration::from_secs(60)));
    gateway.restart();
    assert_eq!(waiter.join().unwrap(), Some(1012), "a held WebSocket is closed 1012 on restart");
    gateway.wait_ready();
    let after = exporter.wait_for("the restart counted, the 1012 and the stop notice seen, started again", T, |m| {
        m.value("openclaw_gateway_restarts_total{forward=\"mac\"}")
            > before.value("openclaw_gateway_restarts_total{forward=\"mac\"}")
            && closes(m, "1012", "gateway") > closes(&before, "1012", "gateway")
            && m.value("openclaw_gateway_shutdown_notices_total{forward=\"mac\",kind=\"stop\"}") >= 1.0
            && m.get("openclaw_gateway_startup_state{forward=\"mac\",state=\"started\"}") == Some(1.0)
    });
    assert_eq!(after.get("openclaw_tunnel_gateway_build_info{forward=\"mac\",version=\"2026.9.6\"}"), Some(1.0));
    assert_eq!(closes(&after, "1012", "client"), 0.0);
    // A terminal stop (SIGTERM) announces no restart: the gauge stays absent.
    assert_eq!(after.get("openclaw_gateway_restart_expected_seconds{forward=\"mac\"}"), None);
}

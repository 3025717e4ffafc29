//! A local attacker who can only connect: floods of bad credentials and of idle connections, against the
//! real binary with basic auth (a bcrypt hash from htpasswd) and an auth tap in front of the gateway
//! stand-in. What must hold (issue 19, items 4 and 5):
//! - 10,000 unique wrong passwords and 2,000 never-seen tap tokens in one burst: every scrape with the right
//!   credential answers 200; every wrong password is refused once and counted (unauthorized, or
//!   auth_rate_limited past the first-sight budget); every tapped request is counted once.
//! - 2,000 idle connections to the web port and 2,000 to the tap: /metrics and a real client through the tap
//!   still answer, a connection that had already spoken survives, the excess is counted; a half-sent request
//!   head is cut at header_read_timeout.
//!
//! How long the burst delays probes is a benchmark, not an assertion here: bench/overload.py.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine;
use e2e::*;

const USER: &str = "prom";
const PASSWORD: &str = "right-horse-71c";
const GATEWAY_TOKEN: &str = "sekrit-gateway-token-overload";

/// Raise this process's descriptor limit (thousands of sockets; the stand-in inherits it).
fn raise_nofile() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(limit.rlim_cur >= 16_384, "need 16384 descriptors, the hard limit is {}", limit.rlim_max);
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// One request on `stream` (kept alive); the answer's status code.
fn exchange(stream: &mut TcpStream, request: &str) -> std::io::Result<u16> {
    stream.write_all(request.as_bytes())?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = response.parse(&buffer) {
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            let status = response.code.unwrap_or(0);
            while buffer.len() < head + length {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
    }
}

fn get_metrics(web: SocketAddr, authorization: &str) -> String {
    format!("GET /metrics HTTP/1.1\r\nHost: {web}\r\nAuthorization: {authorization}\r\n\r\n")
}

fn invoke(tap: SocketAddr, token: &str) -> String {
    format!(
        "POST /tools/invoke HTTP/1.1\r\nHost: {tap}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    )
}

/// A basic-auth web config from htpasswd (bcrypt cost 10, as a user makes it).
fn write_web_config(dir: &Path) -> String {
    let line = run_tool("htpasswd", &["-nbBC", "10", USER, PASSWORD], dir);
    let hash = line.trim().trim_start_matches(&format!("{USER}:")).to_owned();
    std::fs::write(dir.join("web.yml"), format!("basic_auth_users:\n  {USER}: '{hash}'\n")).unwrap();
    format!("config_file = \"{}\"\n", dir.join("web.yml").display())
}

/// The stand-in gateway, and the exporter probing it with a tap in front of it (registry: one argon2id
/// revision, so every never-seen token costs a verification). The tap's upstream is the stand-in itself (no
/// ssh), so the forward trusts it by name, as a gateway host trusts its `node`.
fn start(web_extra: &str) -> (Gateway, Exporter, SocketAddr) {
    start_with_tap(web_extra, "")
}

/// As [`start`], with more `[[auth_tap]]` keys.
fn start_with_tap(web_extra: &str, tap_extra: &str) -> (Gateway, Exporter, SocketAddr) {
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &["--token", GATEWAY_TOKEN]);
    let tap = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        "{}trusted_owners = [\"gateway-standin\"]\n[auth_probe]\nenabled = false\ninterval = \"1m\"\n[auth]\ncurrent = \"r1\"\n\
         [[auth.revision]]\nname = \"r1\"\n{}\n[[auth_tap]]\nforward = \"t\"\nlisten = \"{tap}\"\nupstream = \"{}\"\n{tap_extra}",
        forward_toml("t", gateway.addr.port()),
        fingerprint_line(GATEWAY_TOKEN),
        gateway.addr,
    );
    let exporter = Exporter::start_configured(web_extra, &config, |command| command);
    wait_listening(tap, "auth tap", Duration::from_secs(10));
    (gateway, exporter, tap)
}

/// A scrape with the right credential, parsed (the harness's own scrape has no basic auth).
fn scrape_authorized(web: SocketAddr) -> Scrape {
    let mut response = ureq::get(format!("http://{web}/metrics"))
        .header("Authorization", &basic(USER, PASSWORD))
        .call()
        .expect("a scrape with the right credential");
    Scrape::parse(&response.body_mut().read_to_string().unwrap())
}

fn wait_for_authorized(web: SocketAddr, what: &str, condition: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let scrape = scrape_authorized(web);
        if condition(&scrape) {
            return scrape;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn wrong_passwords_and_new_tap_tokens_in_a_burst_never_cost_a_good_scrape() {
    const WRONG_PASSWORDS: usize = 10_000;
    const TAP_TOKENS: usize = 2_000;
    const WORKERS: usize = 16;
    // Each answer past the first-sight budget waits as long as a bcrypt check takes (issue 38), so the wrong
    // passwords come over more connections than the tap's tokens, within the web's 128.
    const PASSWORD_WORKERS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, exporter, tap) = start(&write_web_config(dir.path()));
    let web = exporter.web;
    let refused = |s: &Scrape, reason: &str| {
        s.value(&format!("openclaw_exporter_web_requests_refused_total{{reason=\"{reason}\"}}"))
    };
    let before = scrape_authorized(web);
    let refused_before = refused(&before, "unauthorized") + refused(&before, "auth_rate_limited");

    // The good scraper: its own kept-alive connection, every 100 ms, for as long as the burst lasts.
    let burst_over = Arc::new(AtomicBool::new(false));
    let scraper = {
        let burst_over = burst_over.clone();
        thread::spawn(move || {
            let mut statuses = Vec::new();
            let mut stream = TcpStream::connect(web).unwrap();
            while !burst_over.load(Ordering::SeqCst) {
                let status = exchange(&mut stream, &get_metrics(web, &basic(USER, PASSWORD))).unwrap_or_else(|_| {
                    // The server may close a kept-alive connection between scrapes; Prometheus reconnects too.
                    stream = TcpStream::connect(web).unwrap();
                    exchange(&mut stream, &get_metrics(web, &basic(USER, PASSWORD))).unwrap_or(0)
                });
                statuses.push(status);
                thread::sleep(Duration::from_millis(100));
            }
            statuses
        })
    };

    let answers = Arc::new(Mutex::new(Vec::with_capacity(WRONG_PASSWORDS)));
    let workers: Vec<_> = (0..PASSWORD_WORKERS)
        .map(|worker| {
            let answers = answers.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(web).unwrap();
                for i in (worker..WRONG_PASSWORDS).step_by(PASSWORD_WORKERS) {
                    let request = get_metrics(web, &basic(USER, &format!("wrong-{i}")));
                    let status = exchange(&mut stream, &request).unwrap_or_else(|_| {
                        stream = TcpStream::connect(web).unwrap();
                        exchange(&mut stream, &request).unwrap()
                    });
                    answers.lock().unwrap().push(status);
                }
            })
        })
        .chain((0..WORKERS).map(|worker| {
            thread::spawn(move || {
                for i in (worker..TAP_TOKENS).step_by(WORKERS) {
                    let mut stream = TcpStream::connect(tap).unwrap();
                    let status = exchange(&mut stream, &invoke(tap, &format!("flood-token-{i}"))).unwrap();
                    assert_eq!(status, 401, "the gateway's answer through the tap");
                }
            })
        }))
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    burst_over.store(true, Ordering::SeqCst);
    let statuses = scraper.join().unwrap();

    assert!(statuses.len() >= 5, "only {} good scrapes during the burst", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "a good scrape was not answered 200: {statuses:?}");
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len(), WRONG_PASSWORDS);
    assert!(answers.iter().all(|s| *s == 401), "a wrong password was let in, or answered otherwise than 401");

    let after = wait_for_authorized(web, "every tapped request counted", |s| {
        s.value(r#"openclaw_gateway_auth_requests_total{forward="t",channel="http",token_revision="unknown"}"#)
            >= TAP_TOKENS as f64
    });
    assert_eq!(
        after.value(r#"openclaw_gateway_auth_requests_total{forward="t",channel="http",token_revision="unknown"}"#),
        TAP_TOKENS as f64,
        "each tapped request counted once"
    );
    assert_eq!(
        refused(&after, "unauthorized") + refused(&after, "auth_rate_limited") - refused_before,
        WRONG_PASSWORDS as f64,
        "each wrong password refused and counted once"
    );
    let limited = refused(&after, "auth_rate_limited");
    assert!(limited > 0.0, "10,000 new credentials never met the first-sight budget");
    println!(
        "{} good scrapes all 200; {limited} of {WRONG_PASSWORDS} wrong passwords past the budget (401, delayed)",
        statuses.len()
    );
}

#[test]
fn two_thousand_idle_connections_leave_metrics_and_the_tap_answering() {
    const IDLE: usize = 2_000;
    raise_nofile();
    // The tap's own head timer is longer than the flood: this test is about the limit (an established
    // connection is never closed for room); the tap's header timeout has its own test below.
    let (_gateway, exporter, tap) =
        start_with_tap("header_read_timeout = \"1s\"\n", "header_read_timeout = \"120s\"\n");
    let web = exporter.web;

    // A tap client established before the flood (a WebSocket upgraded through the tap: its head whole and its
    // upstream confirmed): it must survive it. (Half a head is not established, and may make room.)
    let (mut established, _) = tungstenite::client(format!("ws://{tap}/"), TcpStream::connect(tap).unwrap())
        .expect("upgraded through the tap");
    // A slow-loris head on the web port: cut at header_read_timeout.
    let mut slow = TcpStream::connect(web).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();

    let idle: Vec<TcpStream> =
        (0..IDLE).flat_map(|_| [TcpStream::connect(web).unwrap(), TcpStream::connect(tap).unwrap()]).collect();
    assert_eq!(idle.len(), 2 * IDLE);

    let scrape = exporter.wait_for("the excess of both floods counted", Duration::from_secs(30), |s| {
        s.value(r#"openclaw_exporter_connections_closed_total{listener="web",reason="limit_silent"}"#)
            + s.value(r#"openclaw_exporter_connections_closed_total{listener="web",reason="header_timeout"}"#)
            >= (IDLE - 128) as f64
            && s.value(r#"openclaw_exporter_connections_closed_total{listener="auth_tap",reason="limit_silent"}"#)
                >= (IDLE - 1024) as f64
    });
    assert_eq!(
        scrape.value(r#"openclaw_exporter_connections_closed_total{listener="auth_tap",reason="limit_new"}"#),
        0.0
    );

    // A real client through the tap, new, still gets the gateway's answer (400: the token is right).
    let mut client = TcpStream::connect(tap).unwrap();
    assert_eq!(exchange(&mut client, &invoke(tap, GATEWAY_TOKEN)).unwrap(), 400);
    // The established one goes on: its connect answered.
    established.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connect =
        format!(r#"{{"type":"req","id":"1","method":"connect","params":{{"auth":{{"token":"{GATEWAY_TOKEN}"}}}}}}"#);
    established.send(tungstenite::Message::text(connect)).expect("the established tap connection was cut");
    loop {
        match established.read() {
            Ok(tungstenite::Message::Text(text)) if text.contains("\"type\":\"res\"") => {
                assert!(text.contains("hello-ok"), "{text}");
                break;
            }
            Ok(_) => continue,
            Err(err) => panic!("the established tap connection was cut: {err}"),
        }
    }

    exporter.wait_for("the slow-loris head cut", Duration::from_secs(30), |s| {
        s.value(r#"openclaw_exporter_connections_closed_total{listener="web",reason="header_timeout"}"#) >= 1.0
    });
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "a half-sent head was answered");
    drop(idle);
    let log = exporter.proc.output();
    assert!(!log.contains(GATEWAY_TOKEN), "the token reached the log");
}

/// Four kept-alive connections sending only requests the guards refuse (a foreign Host) every 300 ms, with
/// `max_connections = 4`: they never become established, so every scrape still answers (issue 28, item 6;
/// measured before: 0 of 12 answered).
#[test]
fn kept_alive_connections_sending_refused_requests_never_hold_the_web_slots() {
    let (_gateway, exporter, _tap) = start("max_connections = 4\n");
    let web = exporter.web;
    let stop = Arc::new(AtomicBool::new(false));
    let refusers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(web).unwrap();
                let request = "GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n";
                let mut refused = 0;
                while !stop.load(Ordering::SeqCst) {
                    match exchange(&mut stream, request) {
                        Ok(403) => refused += 1,
                        Ok(other) => panic!("a foreign Host was answered {other}"),
                        // Evicted to make room: reconnect, as an attacker would.
                        Err(_) => stream = TcpStream::connect(web).unwrap(),
                    }
                    thread::sleep(Duration::from_millis(300));
                }
                refused
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let mut answered = 0;
    for _ in 0..12 {
        let mut stream = TcpStream::connect(web).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if exchange(&mut stream, &format!("GET /metrics HTTP/1.1\r\nHost: {web}\r\n\r\n")).ok() == Some(200) {
            answered += 1;
        }
        thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::SeqCst);
    let refused: usize = refusers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(refused >= 8, "the refused requests kept coming: {refused}");
    assert_eq!(answered, 12, "every scrape answers while refused requests hold connections");
}

/// A fresh start (no accepted credential cached) under a flood of never-seen credentials: the configured
/// user's own first-sight budget lets its scrapes in (issue 28, item 6; before: refused four times in four).
/// Twelve flooders, more than the budget's burst of 8: their first requests alone exceed it, however fast
/// bcrypt runs (with four, a slow machine's bcrypt paced them under the refill and no 429 came: seen in CI).
#[test]
fn a_flood_of_unknown_credentials_right_after_start_never_429s_the_configured_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, exporter, _tap) = start(&write_web_config(dir.path()));
    let web = exporter.web;
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..12)
        .map(|worker| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(web).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let request = get_metrics(web, &basic(&format!("guess-{worker}-{i}"), &format!("pw-{i}")));
                    if exchange(&mut stream, &request).is_err() {
                        stream = TcpStream::connect(web).unwrap();
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(web).unwrap();
        statuses.push(exchange(&mut stream, &get_metrics(web, &basic(USER, PASSWORD))).unwrap_or(0));
        thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    let limited =
        scrape_authorized(web).value(r#"openclaw_exporter_web_requests_refused_total{reason="auth_rate_limited"}"#);
    assert!(limited > 0.0, "the flood met the budget for unknown names (so the test can fail)");
    assert_eq!(statuses, [200; 4], "the configured user's scrapes");
}

/// A request on a fresh connection: its status, and its `WWW-Authenticate` and body.
fn answer(web: SocketAddr, authorization: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(web).unwrap();
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {web}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let challenge = text.lines().find(|line| line.to_ascii_lowercase().starts_with("www-authenticate")).unwrap_or("");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, format!("{challenge} | {body}"))
}

/// Issue 38, item 4: with unknown names flooding past their budget, a configured name and an unknown one, each
/// with a wrong password, get the same answer (before: 401 for the configured name, 429 for the unknown one, so
/// names could be told apart); and once the configured name is past its own budget too, still the same.
#[test]
fn a_known_and_an_unknown_name_with_a_wrong_password_get_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, exporter, _tap) = start(&write_web_config(dir.path()));
    let web = exporter.web;
    let flood = |user: &'static str| {
        let threads: Vec<_> = (0..12)
            .map(|worker| {
                thread::spawn(move || {
                    for i in 0..20 {
                        let name = if user.is_empty() { format!("guess-{worker}-{i}") } else { user.to_owned() };
                        let _ = answer(web, &basic(&name, &format!("flood-{worker}-{i}")));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    };
    let limited =
        || scrape_authorized(web).value(r#"openclaw_exporter_web_requests_refused_total{reason="auth_rate_limited"}"#);
    flood("");
    let past_unknown = limited();
    assert!(past_unknown > 0.0, "the unknown names' flood met their budget (so the test can fail)");
    let known = answer(web, &basic(USER, "wrong-known-1"));
    let unknown = answer(web, &basic("no-such-scraper", "wrong-unknown-1"));
    assert_eq!(known.0, 401);
    assert_eq!(known, unknown, "a configured name and an unknown one, the unknown names' budget spent");
    flood(USER);
    assert!(limited() > past_unknown, "the configured name's flood met its own budget");
    let known = answer(web, &basic(USER, "wrong-known-2"));
    let unknown = answer(web, &basic("no-such-scraper", "wrong-unknown-2"));
    assert_eq!(known.0, 401);
    assert_eq!(known, unknown, "both budgets spent");
}

/// Issue 38, item 4: the scraper's own credential keeps working under a flood of wrong passwords for its own
/// name from the first second after a restart (before: six threads flooding `prom:wrong-N` got the real
/// password 429 six times of six). The credential accepted before the restart is remembered in the state file
/// (a salted HMAC keyed by the configured bcrypt hash, never the password) and accepted at once.
#[test]
fn a_flood_for_the_scraper_s_own_name_right_after_a_restart_never_locks_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let web_extra = write_web_config(dir.path());
    let state = dir.path().join("state.json");
    let forwards = format!("{}[state]\nfile = \"{}\"\n", forward_toml("t", free_port()), state.display());
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut first = Exporter::launch(web, &web_extra, &forwards, |command| command);
    first.proc.wait_listening(web, Duration::from_secs(10));
    assert_eq!(answer(web, &basic(USER, PASSWORD)).0, 200, "the scraper accepted once");
    first.proc.signal(libc::SIGTERM);
    first.proc.wait_exit(Duration::from_secs(10)).expect("the exporter stops");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("web_accepted") && !saved.contains(PASSWORD), "{saved}");

    let mut second = Exporter::launch(web, &web_extra, &forwards, |command| command);
    second.proc.wait_listening(web, Duration::from_secs(10));
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..6)
        .map(|worker| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(web).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    if exchange(&mut stream, &get_metrics(web, &basic(USER, &format!("wrong-{worker}-{i}")))).is_err() {
                        stream = TcpStream::connect(web).unwrap();
                    }
                }
            })
        })
        .collect();
    // The scraper asks once a second for at least six seconds, and on until the flood has met its name's
    // budget (how fast the flood gets there depends on the machine's load: bcrypt checks pace it).
    let mut statuses = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut limited = 0.0;
    while statuses.len() < 6 || (limited == 0.0 && std::time::Instant::now() < deadline) {
        statuses.push(answer(web, &basic(USER, PASSWORD)).0);
        thread::sleep(Duration::from_secs(1));
        limited =
            scrape_authorized(web).value(r#"openclaw_exporter_web_requests_refused_total{reason="auth_rate_limited"}"#);
    }
    stop.store(true, Ordering::SeqCst);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    assert!(limited > 0.0, "the flood met the scraper's name's budget (so the test can fail)");
    let refused = statuses.iter().filter(|status| **status != 200).count();
    assert!(refused <= 1, "the scraper's own credential under the flood: {statuses:?}\n{}", second.proc.output());
}

/// Four tap connections that send one byte and go silent, at the tap's `max_connections = 4`: each is closed
/// at `header_read_timeout` (counted) and a client through the tap answers (issue 28, item 6; before: held
/// for good, no answer 20 s later).
#[test]
fn tap_connections_that_sent_one_byte_are_closed_at_the_header_timeout() {
    let (_gateway, exporter, tap) = start_with_tap("", "max_connections = 4\nheader_read_timeout = \"1s\"\n");
    let silent: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(tap).unwrap();
            stream.write_all(b"P").unwrap();
            stream
        })
        .collect();
    exporter.wait_for("the four silent tap connections closed at the header timeout", Duration::from_secs(30), |s| {
        s.value(r#"openclaw_exporter_connections_closed_total{listener="auth_tap",reason="header_timeout"}"#) >= 4.0
    });
    let mut client = TcpStream::connect(tap).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(exchange(&mut client, &invoke(tap, GATEWAY_TOKEN)).unwrap(), 400, "a client through the tap answers");
    for mut stream in silent {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0, "closed, nothing relayed");
    }
}

/// Issue 38, item 5: four clients that reconnect and pipeline 16 `GET /metrics` each, at `max_connections = 4`
/// (before: 18 of 20 scrapes failed, every slot busy for good with queued requests). Renders are coalesced, and
/// at the limit with every connection busy a new one is let in while the oldest busy one is told to close
/// after its answer: at least 18 of 20 scrapes answer.
#[test]
fn pipelined_scrapes_from_four_clients_never_lock_a_scraper_out() {
    let (_gateway, exporter, _tap) = start("max_connections = 4\n");
    let web = exporter.web;
    let stop = Arc::new(AtomicBool::new(false));
    let pipeliners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let pipelined = format!("GET /metrics HTTP/1.1\r\nHost: {web}\r\n\r\n").repeat(16);
                let mut sent = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut stream) = TcpStream::connect(web) else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                    if stream.write_all(pipelined.as_bytes()).is_ok() {
                        sent += 1;
                    }
                    let mut sink = [0u8; 64 * 1024];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                }
                sent
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let mut answered = 0;
    for _ in 0..20 {
        let scrape = match ureq::get(format!("http://{web}/metrics")).call() {
            Ok(mut response) => response.body_mut().read_to_string().map_err(|e| eprintln!("scrape body: {e}")).ok(),
            Err(e) => {
                eprintln!("scrape: {e}");
                None
            }
        };
        answered += usize::from(scrape.is_some_and(|text| text.contains("openclaw_exporter_build_info")));
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let pipelined: u32 = pipeliners.into_iter().map(|p| p.join().unwrap()).sum();
    eprintln!("{answered} of 20 scrapes answered beside four clients pipelining {pipelined} rounds of 16");
    assert!(pipelined >= 8, "the pipeliners kept coming: {pipelined} rounds of 16");
    assert!(answered >= 18, "{answered} of 20 scrapes answered beside four pipelining clients");
}

//! Traces: with `[otlp] endpoint`, every probe run is a span sent over OTLP/HTTP; the last batch is flushed
//! on SIGTERM. The collector here is a minimal OTLP/HTTP receiver the test runs: it stores each POST body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;

struct Received {
    path: String,
    body: Vec<u8>,
    at: Instant,
}

fn receiver() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if line == "\r\n" || line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    store.lock().unwrap().push(Received { path, body, at: Instant::now() });
                    let _ = writer.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (port, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn probe_runs_are_spans_and_the_last_batch_is_flushed_on_sigterm() {
    let (port, received) = receiver();
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let config = format!(
        "{}[otlp]\nendpoint = \"http://127.0.0.1:{port}/v1/traces\"\nservice_name = \"oce-trace-test\"\n",
        forward_toml("traced-fwd", gateway.addr.port())
    );
    let mut exporter = Exporter::start(&config);
    exporter.wait_for("rounds and first bytes", Duration::from_secs(20), |m| {
        m.value("openclaw_tunnel_up_checks_total{forward=\"traced-fwd\"}") >= 5.0
            && m.value("openclaw_gateway_first_byte_seconds_count{forward=\"traced-fwd\"}") >= 2.0
    });
    let stopped_at = Instant::now();
    exporter.proc.signal(libc::SIGTERM);
    let status = exporter.proc.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", exporter.proc.output());

    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "no OTLP request arrived");
    assert!(received.iter().all(|r| r.path == "/v1/traces"));
    assert!(received.iter().any(|r| r.at >= stopped_at), "the last batch was not flushed on SIGTERM");
    let all: Vec<u8> = received.iter().flat_map(|r| r.body.iter().copied()).collect();
    for needle in
        ["probe", "traced-fwd", "oce-trace-test", "syn", "first_byte", "connect_us", "first_byte_us", "outcome"]
    {
        assert!(contains(&all, needle), "no {needle:?} in the exported spans\n{}", exporter.proc.output());
    }
}

//! Traces: with `[otlp] endpoint`, every probe run is a span sent over OTLP/HTTP; the last batch is flushed
//! on SIGTERM. The collector here is a minimal OTLP/HTTP receiver the test runs (`HttpSink`): it stores each
//! POST body.

use std::time::{Duration, Instant};

use e2e::*;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn probe_runs_are_spans_and_the_last_batch_is_flushed_on_sigterm() {
    let collector = HttpSink::start();
    let port = collector.addr.port();
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

    let received = collector.received();
    assert!(!received.is_empty(), "no OTLP request arrived");
    assert!(received.iter().all(|(path, _, _)| path == "/v1/traces"));
    assert!(received.iter().any(|(_, _, at)| *at >= stopped_at), "the last batch was not flushed on SIGTERM");
    let all: Vec<u8> = received.iter().flat_map(|(_, body, _)| body.iter().copied()).collect();
    for needle in
        ["probe", "traced-fwd", "oce-trace-test", "syn", "first_byte", "connect_us", "first_byte_us", "outcome"]
    {
        assert!(contains(&all, needle), "no {needle:?} in the exported spans\n{}", exporter.proc.output());
    }
}

//! The gateway's own state through the forward, against the stand-in: startup then readiness, the version, a
//! restart no probe saw as down, the event loop, and an older gateway without the endpoints (series absent,
//! never 0). The real gateway's answers are checked in `openclaw_gateway.rs`.

use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(20);

fn forward(name: &str, port: u16) -> String {
    forward_toml(name, port) + "readiness_interval = \"200ms\"\n"
}

fn series(family: &str, name: &str, extra: &str) -> String {
    format!("{family}{{forward=\"{name}\"{extra}}}")
}

#[test]
fn startup_then_ready_then_a_restart_with_the_version_and_the_event_loop() {
    let port = free_port();
    let args = ["--readiness", "2026.9.6-standin", "--starting-ms", "3000"];
    let gateway = Gateway::start_with(port, Duration::ZERO, &args);
    let exporter = Exporter::start(&forward("g", port));
    let state = |s: &str| series("openclaw_gateway_startup_state", "g", &format!(",state=\"{s}\""));
    // Live (healthz answers) but starting: not ready, one failing component, named in /api/status.
    let starting = exporter.wait_for("starting seen while healthz answers", T, |m| {
        m.get(&state("starting")) == Some(1.0) && m.get(&series("openclaw_gateway_up", "g", "")) == Some(1.0)
    });
    assert_eq!(starting.get(&series("openclaw_gateway_ready", "g", "")), Some(0.0));
    assert_eq!(starting.get(&series("openclaw_gateway_ready_failing", "g", "")), Some(1.0));
    let status = exporter.status();
    assert_eq!(status["forwards"][0]["gateway"]["failing"][0], "plugin-reload", "{status}");
    let started = exporter.wait_for("started and ready", T, |m| {
        m.get(&state("started")) == Some(1.0) && m.get(&series("openclaw_gateway_ready", "g", "")) == Some(1.0)
    });
    assert_eq!(started.get(&state("starting")), Some(0.0));
    assert_eq!(
        started.get(&series("openclaw_tunnel_gateway_build_info", "g", ",version=\"2026.9.6-standin\"")),
        Some(1.0)
    );
    // The old name, kept one release as a deprecated alias with the same series.
    assert_eq!(started.get(&series("openclaw_gateway_build_info", "g", ",version=\"2026.9.6-standin\"")), Some(1.0));
    assert_eq!(started.get(&series("openclaw_gateway_event_loop_delay_p99_seconds", "g", "")), Some(0.0015));
    assert_eq!(started.get(&series("openclaw_gateway_event_loop_degraded", "g", "")), Some(0.0));
    let start_time = started.value(&series("openclaw_gateway_start_time_seconds", "g", ""));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - 60.0..=now).contains(&start_time), "start time {start_time} vs now {now}");
    assert_eq!(started.get(&series("openclaw_gateway_restarts_total", "g", "")), Some(0.0));
    assert!(exporter.proc.output().contains("not started or not ready"), "{}", exporter.proc.output());

    // A restart between two first-byte probes: the start time moves, a restart is counted, the new version
    // replaces the old series.
    drop(gateway);
    let _restarted = Gateway::start_with(port, Duration::ZERO, &["--readiness", "2026.9.7-standin"]);
    let after = exporter.wait_for("the restart counted", T, |m| {
        m.get(&series("openclaw_gateway_restarts_total", "g", "")) == Some(1.0)
    });
    let after =
        if after.get(&series("openclaw_tunnel_gateway_build_info", "g", ",version=\"2026.9.7-standin\"")).is_some() {
            after
        } else {
            exporter.wait_for("the new version", T, |m| {
                m.get(&series("openclaw_tunnel_gateway_build_info", "g", ",version=\"2026.9.7-standin\"")) == Some(1.0)
            })
        };
    assert_eq!(after.get(&series("openclaw_tunnel_gateway_build_info", "g", ",version=\"2026.9.6-standin\"")), None);
    assert!(after.value(&series("openclaw_gateway_start_time_seconds", "g", "")) > start_time + 2.0);
}

#[test]
fn an_older_gateway_without_the_endpoints_leaves_the_series_absent() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let exporter = Exporter::start(&forward("old", gateway.addr.port()));
    let scrape = exporter.wait_for("several readiness rounds", T, |m| {
        m.value("openclaw_gateway_probe_attempts_total{forward=\"old\"}") >= 3.0
            && m.value("openclaw_exporter_probe_lag_seconds_count{probe=\"readiness\"}") >= 5.0
    });
    assert_eq!(scrape.get(&series("openclaw_gateway_up", "old", "")), Some(1.0));
    for family in ["openclaw_gateway_ready", "openclaw_gateway_ready_failing", "openclaw_gateway_start_time_seconds"] {
        assert_eq!(scrape.get(&series(family, "old", "")), None, "{family} must be absent, not 0");
    }
    assert!(!scrape.text.contains("openclaw_gateway_startup_state{"), "no startup state series");
    assert!(!scrape.text.contains("openclaw_tunnel_gateway_build_info{"), "no build info series");
    assert!(exporter.proc.output().contains("no /startupz or /readyz"), "{}", exporter.proc.output());
}

#[test]
fn a_live_gateway_that_is_not_started_spends_down_time_as_not_started_through_a_live_tunnel() {
    let port = free_port();
    let gateway =
        Gateway::start_with(port, Duration::ZERO, &["--readiness", "2026.9.6-standin", "--starting-ms", "4000"]);
    let sshd = Sshd::start(gateway.addr.port());
    let local = free_port();
    let _ssh = sshd.forward(local, gateway.addr.port());
    let exporter = Exporter::start(&forward("g", local));
    let not_started = series("openclaw_gateway_down_seconds_total", "g", ",reason=\"not_started\"");
    let starting = exporter.wait_for("down time counted as not_started while /healthz answers", T, |m| {
        m.value(&not_started) > 0.0 && m.get(&series("openclaw_gateway_up", "g", "")) == Some(1.0)
    });
    assert_eq!(starting.value(&series("openclaw_tunnel_down_seconds_total", "g", ",cause=\"no_ssh\"")), 0.0);
    let started = exporter.wait_for("started", T, |m| {
        m.get(&series("openclaw_gateway_startup_state", "g", ",state=\"started\"")) == Some(1.0)
    });
    // Once started, no more: two seconds of rounds later the count has not moved (a round in flight may add
    // its last interval).
    std::thread::sleep(Duration::from_secs(2));
    let later = exporter.scrape();
    assert!(later.value(&not_started) <= started.value(&not_started) + 0.25, "{}", later.text);
    assert!(later.value(&not_started) <= 4.5, "more down time than the 4 s starting window: {}", later.text);
}

//! The alert rules as users run them: a real Prometheus scrapes the exporter (which probes a real ssh
//! forward), evaluates alerts/openclaw.rules.yml rendered with short windows (alerts/render.sh, not a copy),
//! and sends to a real Alertmanager, which delivers to a webhook this test runs. Plus the fleet path: an
//! agent-mode Prometheus remote-writes to a second Prometheus.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(90);

fn rendered_rules() -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../alerts/render.sh");
    let output = Command::new("bash").arg(script).args(["10s", "5s", "5s"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn prometheus_for(exporter: &Exporter, alertmanager: &Alertmanager) -> Prometheus {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['rules.yml']\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: openclaw-tunnel\n    static_configs:\n      - targets: ['{}']\n",
        alertmanager.addr, exporter.web
    );
    Prometheus::start(&config, &[("rules.yml", rendered_rules())], &[])
}

/// Wait until the webhook got a notification for `alertname` with `status` (firing or resolved).
fn wait_notification(hook: &HttpSink, alertname: &str, status: &str, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + T;
    loop {
        for (_, body, _) in hook.received() {
            let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
            for alert in message["alerts"].as_array().into_iter().flatten() {
                if alert["labels"]["alertname"] == alertname && alert["status"] == status {
                    return alert.clone();
                }
            }
        }
        assert!(Instant::now() < deadline, "no {status} {alertname} reached the webhook: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn killing_the_tunnel_pages_through_alertmanager_and_restoring_it_resolves() {
    eprintln!("tested with {} and {}", version_of("prometheus"), version_of("prometheus-alertmanager"));
    let mut chain = Chain::start();
    let hook = HttpSink::start();
    let alertmanager = Alertmanager::start(&format!("http://{}/hook", hook.addr));
    let prometheus = prometheus_for(&chain.exporter, &alertmanager);
    // Healthy first: the ratio is recorded and no page goes out.
    let deadline = Instant::now() + T;
    while prometheus.query("openclaw:tunnel_uptime:ratio5m{forward=\"t\"} == 1").is_empty() {
        assert!(Instant::now() < deadline, "no uptime ratio recorded:\n{}", prometheus.proc.output());
        std::thread::sleep(Duration::from_millis(500));
    }

    chain.ssh.signal(libc::SIGTERM);
    chain.ssh.wait_exit(Duration::from_secs(5)).expect("ssh exits");
    let alert = wait_notification(&hook, "OpenclawTunnelUptimeBelowObjective", "firing", "after killing ssh");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["forward"], "t");
    assert!(alert["annotations"]["summary"].as_str().unwrap().contains("Tunnel t uptime"), "{alert}");

    // Restore the forward on the same port: the ratio recovers and the page resolves.
    chain.ssh = chain.sshd.forward(chain.local_port, chain.gateway.addr.port());
    wait_notification(&hook, "OpenclawTunnelUptimeBelowObjective", "resolved", "after restoring ssh");
}

#[test]
fn old_revision_failures_through_the_tap_page_after_a_rotation() {
    // The stand-in accepts only the new token (r2); a client still sends the old one (r1) through the tap.
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &["--token", "tok-new-r2"]);
    let tap = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        "{}[auth_probe]\nenabled = false\ninterval = \"1m\"\n[auth]\ncurrent = \"r2\"\n\
         [[auth.revision]]\nname = \"r1\"\n{}\n[[auth.revision]]\nname = \"r2\"\n{}\n\
         [[auth_tap]]\nforward = \"t\"\nlisten = \"{tap}\"\nupstream = \"{}\"\n",
        forward_toml("t", gateway.addr.port()),
        fingerprint_line("tok-old-r1"),
        fingerprint_line("tok-new-r2"),
        gateway.addr
    );
    let exporter = Exporter::start(&config);
    let hook = HttpSink::start();
    let alertmanager = Alertmanager::start(&format!("http://{}/hook", hook.addr));
    let prometheus = prometheus_for(&exporter, &alertmanager);
    let deadline = Instant::now() + T;
    while prometheus.query("openclaw_gateway_token_revision_current{token_revision=\"r1\"} == 0").is_empty() {
        assert!(Instant::now() < deadline, "Prometheus never scraped the registry");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Let Prometheus see the zero-valued failure series first, so the first failure is an increase.
    std::thread::sleep(Duration::from_secs(3));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let invoke = |token: &str| {
        agent
            .post(format!("http://{tap}/tools/invoke"))
            .header("Authorization", format!("Bearer {token}"))
            .send("{}")
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(invoke("tok-new-r2"), 400);
    assert_eq!(invoke("tok-old-r1"), 401);
    let alert = wait_notification(&hook, "OpenclawTokenRevisionNotCurrentFailing", "firing", "after an old-token 401");
    assert_eq!(alert["labels"]["token_revision"], "r1");
    assert_eq!(alert["labels"]["severity"], "page");

    // The current revision never pages, even when it fails: the gateway moves on to a token nobody registered
    // (restarted on the same port), so r2 (still current here) now gets 401s too.
    let port = gateway.addr.port();
    drop(gateway);
    let _gateway = Gateway::start_with(port, Duration::ZERO, &["--token", "tok-unregistered-r3"]);
    assert_eq!(invoke("tok-new-r2"), 401);
    let deadline = Instant::now() + T;
    let r2_failing = "openclaw:gateway_auth_failures:increase5m{token_revision=\"r2\",code=\"401\"} > 0";
    while prometheus.query(r2_failing).is_empty() {
        assert!(Instant::now() < deadline, "the r2 failure never reached the rules:\n{}", prometheus.proc.output());
        std::thread::sleep(Duration::from_millis(250));
    }
    // Wait for two evaluations of the alerting rule after the failure became visible to it, then look.
    let seen = unix_now();
    let deadline = Instant::now() + T;
    while alert_rule_evaluated_at(&prometheus, "OpenclawTokenRevisionNotCurrentFailing") < seen + 2.0 {
        assert!(Instant::now() < deadline, "the alerting rule stopped being evaluated");
        std::thread::sleep(Duration::from_millis(250));
    }
    let r2_alerts =
        prometheus.query("ALERTS{alertname=\"OpenclawTokenRevisionNotCurrentFailing\",token_revision=\"r2\"}");
    assert!(r2_alerts.is_empty(), "the current revision's failures raised the old-revision page: {r2_alerts:?}");
    assert!(!prometheus
        .query("ALERTS{alertname=\"OpenclawTokenRevisionNotCurrentFailing\",token_revision=\"r1\"}")
        .is_empty());
    assert!(!hook
        .received()
        .iter()
        .any(|(_, body, _)| String::from_utf8_lossy(body).contains("\"token_revision\":\"r2\"")));
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// When Prometheus last evaluated the alerting rule `name` (Unix seconds), from /api/v1/rules.
fn alert_rule_evaluated_at(prometheus: &Prometheus, name: &str) -> f64 {
    let body: serde_json::Value = serde_json::from_str(
        &ureq::get(format!("http://{}/api/v1/rules?type=alert", prometheus.addr))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let rule = body["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .find(|rule| rule["name"] == name)
        .unwrap_or_else(|| panic!("no alerting rule {name}"));
    // RFC 3339 with fractional seconds, e.g. 2026-11-25T21:45:01.123456789Z.
    let stamp = rule["lastEvaluation"].as_str().unwrap_or_default();
    let output = Command::new("date").args(["-d", stamp, "+%s.%N"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0.0)
}

#[test]
fn an_agent_mode_prometheus_remote_writes_a_laptops_metrics_to_a_central_store() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let exporter = Exporter::start(&forward_toml("t", gateway.addr.port()));
    let central = Prometheus::start("global:\n  scrape_interval: 1m\n", &[], &["--web.enable-remote-write-receiver"]);
    let agent_config = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    laptop: test-laptop\n\
         scrape_configs:\n  - job_name: openclaw-tunnel\n    static_configs:\n      - targets: ['{}']\n\
         remote_write:\n  - url: 'http://{}/api/v1/write'\n",
        exporter.web, central.addr
    );
    let _agent = Prometheus::start(&agent_config, &[], &["--enable-feature=agent"]);
    let deadline = Instant::now() + T;
    loop {
        let result = central.query("openclaw_tunnel_up_checks_total{laptop=\"test-laptop\",forward=\"t\"}");
        if result
            .first()
            .and_then(|r| r["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the central store never received the series");
        std::thread::sleep(Duration::from_millis(500));
    }
}

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
    wait_notification_where(hook, alertname, status, &[], what)
}

/// As [`wait_notification`], for an alert that also has every label of `labels`.
fn wait_notification_where(
    hook: &HttpSink,
    alertname: &str,
    status: &str,
    labels: &[(&str, &str)],
    what: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + T;
    loop {
        for (_, body, _) in hook.received() {
            let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
            for alert in message["alerts"].as_array().into_iter().flatten() {
                if alert["labels"]["alertname"] == alertname
                    && alert["status"] == status
                    && labels.iter().all(|(name, value)| alert["labels"][*name] == *value)
                {
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
        "{}{}[auth_probe]\nenabled = false\ninterval = \"1m\"\n[auth]\ncurrent = \"r2\"\n\
         [[auth.revision]]\nname = \"r1\"\n{}\n[[auth.revision]]\nname = \"r2\"\n{}\n\
         [[auth_tap]]\nforward = \"t\"\nlisten = \"{tap}\"\nupstream = \"{}\"\n",
        forward_toml("t", gateway.addr.port()),
        trusting("gateway-standin"),
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

/// Wait until Prometheus has evaluated the alerting rule `name` twice after now.
fn wait_two_evaluations(prometheus: &Prometheus, name: &str) {
    let seen = unix_now();
    let deadline = Instant::now() + T;
    while alert_rule_evaluated_at(prometheus, name) < seen + 2.0 {
        assert!(Instant::now() < deadline, "the alerting rule {name} stopped being evaluated");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_reload_that_removes_a_forward_whose_ssh_is_down_ends_its_series_and_resolves_its_page() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let _ssh = sshd.forward(local_port, gateway.addr.port());
    // "gone": nothing listens on its port (its ssh is down), so OpenclawSshSessionMissing fires for it.
    let kept = forward_toml("t", local_port);
    let exporter = Exporter::start(&format!("{kept}{}", forward_toml("gone", free_port())));
    let hook = HttpSink::start();
    let alertmanager = Alertmanager::start(&format!("http://{}/hook", hook.addr));
    let prometheus = prometheus_for(&exporter, &alertmanager);
    let gone = [("forward", "gone")];
    wait_notification_where(&hook, "OpenclawSshSessionMissing", "firing", &gone, "the forward without ssh");

    exporter.rewrite_config(&kept);
    let reloaded = Instant::now();
    exporter.proc.signal(libc::SIGHUP);
    exporter.wait_for("every series of the removed forward gone", T, |s| {
        !s.text.contains("forward=\"gone\"")
            && s.text.contains("openclaw_exporter_config_reloads_total{result=\"success\"} 1")
    });
    // Prometheus marks the series stale at the first scrape without it: an instant query finds nothing at once,
    // not after its five-minute lookback (the deadline here is shorter than that).
    let deadline = Instant::now() + T;
    while !prometheus.query("openclaw_tunnel_ssh_session_up{forward=\"gone\"}").is_empty() {
        assert!(Instant::now() < deadline, "the removed forward's series never went stale in Prometheus");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(reloaded.elapsed() < Duration::from_secs(300), "only a stale marker ends a series this fast");
    wait_notification_where(&hook, "OpenclawSshSessionMissing", "resolved", &gone, "after the reload removed it");
    assert!(prometheus.query("ALERTS{alertname=\"OpenclawSshSessionMissing\",forward=\"gone\"}").is_empty());
    // The kept forward is measured on: its own series are still scraped.
    assert!(!prometheus.query("openclaw_tunnel_ssh_session_up{forward=\"t\"} == 1").is_empty());
}

#[test]
fn a_token_source_holding_an_old_revision_pages_before_any_request_and_resolves_once_replaced() {
    // The forward is the stand-in itself, not an ssh: the exporter never sends it the token (the credential
    // gate), so whatever pages here was known without a single request to the gateway.
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &["--token", "tok-r2"]);
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("gateway-token");
    std::fs::write(&token_file, "tok-r1").unwrap();
    let config = format!(
        "{}[auth_probe]\ninterval = \"1s\"\ntoken_file = \"{}\"\n\
         [auth]\ncurrent = \"r2\"\nrotated_at = \"2026-01-01T00:00:00Z\"\n\
         [[auth.revision]]\nname = \"r1\"\n{}\n[[auth.revision]]\nname = \"r2\"\n{}\n\
         [[auth.revision]]\nname = \"r3\"\n{}\n",
        forward_toml("t", gateway.addr.port()),
        token_file.display(),
        fingerprint_line("tok-r1"),
        fingerprint_line("tok-r2"),
        fingerprint_line("tok-r3"),
    );
    let exporter = Exporter::start_with(&config, |command| {
        command
            .env("HOME", home.path())
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_CONFIG_PATH")
            .env_remove("OPENCLAW_STATE_DIR")
    });
    let hook = HttpSink::start();
    let alertmanager = Alertmanager::start(&format!("http://{}/hook", hook.addr));
    let prometheus = prometheus_for(&exporter, &alertmanager);
    let r1 = [("source", "token_file"), ("token_revision", "r1")];
    let alert = wait_notification_where(&hook, "OpenclawLocalTokenRevisionOld", "firing", &r1, "token file holds r1");
    assert_eq!(alert["labels"]["severity"], "page");
    let scrape = exporter.scrape();
    assert_eq!(
        scrape.get("openclaw_gateway_token_local_revision{source=\"token_file\",token_revision=\"r1\"}"),
        Some(1.0)
    );
    let probe_requests: f64 = scrape
        .text
        .lines()
        .filter(|line| line.starts_with("openclaw_gateway_auth_requests_total{") && line.contains("channel=\"probe\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(probe_requests, 0.0, "no request reached the gateway:\n{}", scrape.text);
    assert!(scrape.value("openclaw_gateway_credential_withheld_total{forward=\"t\",probe=\"auth\"}") > 0.0);

    // The token replaced with the current revision: resolved.
    std::fs::write(&token_file, "tok-r2").unwrap();
    wait_notification_where(&hook, "OpenclawLocalTokenRevisionOld", "resolved", &r1, "token file replaced with r2");

    // A token staged for the next rotation (r3, listed after the current one) is not old: no page.
    std::fs::write(&token_file, "tok-r3").unwrap();
    let deadline = Instant::now() + T;
    while prometheus.query("openclaw_gateway_token_local_revision{token_revision=\"r3\"} == 1").is_empty() {
        assert!(Instant::now() < deadline, "Prometheus never saw the staged token:\n{}", exporter.proc.output());
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_two_evaluations(&prometheus, "OpenclawLocalTokenRevisionOld");
    let alerts = prometheus.query("ALERTS{alertname=\"OpenclawLocalTokenRevisionOld\"}");
    assert!(alerts.is_empty(), "a staged revision paged: {alerts:?}");
}

/// Every alert has its README section (when it fires and when it does not) and a promtool case in one of the
/// rule tests; a new alert cannot ship without both.
#[test]
fn every_alert_has_its_readme_section_and_a_promtool_case() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| std::fs::read_to_string(repo.join(path)).unwrap();
    let (rules, readme) = (read("alerts/openclaw.rules.yml"), read("README.md"));
    let cases = read("alerts/openclaw.rules.test.yml") + &read("alerts/uptime-patterns.test.yml");
    let alerts: std::collections::BTreeSet<&str> =
        rules.lines().filter_map(|line| line.trim().strip_prefix("- alert: ")).map(str::trim).collect();
    assert!(alerts.len() > 20, "{alerts:?}");
    for alert in alerts {
        assert!(
            readme.lines().any(|line| line == format!("#### Alert: {alert}")),
            "README.md has no section for {alert}"
        );
        assert!(cases.lines().any(|line| line.trim() == format!("alertname: {alert}")), "no promtool case for {alert}");
    }
}

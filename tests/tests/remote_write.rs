//! Remote write through an outage, against real receivers (Debian's VictoriaMetrics and Prometheus 2.42): the
//! receiver stops for two minutes, the tunnel goes down and comes back meanwhile, the exporter is killed with
//! SIGKILL and started again during the outage, then the receiver returns. Every round the exporter took is
//! in the receiver, once, with its own timestamp; the tunnel's down period shows where it happened.

use std::time::{Duration, Instant, SystemTime};

use e2e::*;

const T: Duration = Duration::from_secs(60);
/// The remote-write interval of these tests, seconds.
const INTERVAL: f64 = 0.5;
/// How long the receiver stays away: long enough for the sender's backoff to reach its cap, and for a
/// batch to hold many rounds.
const OUTAGE: Duration = Duration::from_secs(120);

fn now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The stand-in's token, which the auth probe sends (so every auth series of the fleet dashboard exists).
const TOKEN: &str = "tok-remote-write-e2e";

fn config(forward: u16, receiver: &Receiver, queue_dir: &std::path::Path, token_file: &std::path::Path) -> String {
    format!(
        "{}\n[auth]\ncurrent = \"r1\"\n[[auth.revision]]\nname = \"r0\"\n{}\n[[auth.revision]]\nname = \"r1\"\n{}\n\
         [auth_probe]\nenabled = true\ninterval = \"1s\"\ntoken_file = \"{}\"\n\
         [remote_write]\nurl = \"{}\"\ninterval = \"{}ms\"\nqueue_dir = \"{}\"\n\
         [remote_write.external_labels]\nlaptop = \"lap-e2e\"\n",
        forward_toml("t", forward),
        fingerprint_line("an-old-token-0123456789"),
        fingerprint_line(TOKEN),
        token_file.display(),
        receiver.write_url(),
        (INTERVAL * 1000.0) as u64,
        queue_dir.display()
    )
}

/// Every query of the fleet dashboard, its variables substituted, answers with data from `receiver`.
fn fleet_dashboard_has_data(receiver: &Receiver) {
    let dashboard = fleet_dashboard();
    let mut checked = 0;
    for (title, query) in panel_queries(&dashboard) {
        let query = query.replace("$__range", "10m").replace("$laptop", "lap-e2e");
        assert!(query.contains("job=~\"$job\""), "every query selects the job: {query}");
        let query = query.replace("$job", "openclaw-tunnel");
        // The receiver makes what it ingested queryable a moment later (VictoriaMetrics' cache of recent
        // rows, measured: a join of two gauges once came back empty right after the drain): wait for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while receiver.query(&query).is_empty() {
            assert!(Instant::now() < deadline, "fleet dashboard, panel {title}: no data for\n  {query}");
            std::thread::sleep(Duration::from_millis(250));
        }
        checked += 1;
    }
    let variable = &dashboard["templating"]["list"][2]["definition"];
    assert_eq!(variable, "label_values(openclaw_tunnel_up_checks_total{job=~\"$job\"}, laptop)");
    assert!(!receiver.query("count by (laptop) (openclaw_tunnel_up_checks_total)").is_empty());
    eprintln!("fleet dashboard: {checked} queries returned data");
}

fn outage_loses_nothing(engine: Engine) {
    let gateway = Gateway::start_with(free_port(), Duration::ZERO, &["--token", TOKEN]);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let mut ssh = sshd.forward(local_port, gateway.addr.port());
    let mut receiver = Receiver::start(engine);
    let queue = tempfile::tempdir().unwrap();
    let token_file = queue.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let config = config(local_port, &receiver, &queue.path().join("queue"), &token_file);
    let mut exporter = Exporter::start(&config);
    exporter.wait_for("the tunnel up", T, |m| m.get("openclaw_tunnel_ssh_session_up{forward=\"t\"}") == Some(1.0));
    let up_at = now();
    exporter.wait_for("rounds with the tunnel up acknowledged by the receiver", T, |m| {
        m.value("openclaw_exporter_remote_write_last_success_timestamp_seconds") > up_at + 1.0
    });

    // The receiver goes away.
    receiver.stop();
    let outage_start = now();
    // The tunnel goes down meanwhile.
    ssh.signal(libc::SIGTERM);
    ssh.wait_exit(Duration::from_secs(10)).expect("ssh exits");
    exporter
        .wait_for("the tunnel seen down", T, |m| m.get("openclaw_tunnel_ssh_session_up{forward=\"t\"}") == Some(0.0));
    let down_seen = now();
    exporter.wait_for("rounds queued while the receiver is away", T, |m| {
        m.value("openclaw_exporter_remote_write_oldest_queued_timestamp_seconds") > 0.0
            && m.value("openclaw_exporter_remote_write_queue_bytes") > 0.0
    });
    std::thread::sleep(Duration::from_secs(2));

    // The exporter dies without a chance to flush anything, and starts again on the same queue.
    exporter.proc.signal(libc::SIGKILL);
    exporter.proc.wait_exit(Duration::from_secs(10)).expect("the exporter dies on SIGKILL");
    let killed_at = now();
    exporter = Exporter::start(&config);
    let restarted_at = now();

    // The tunnel comes back, still during the outage.
    ssh = sshd.forward(local_port, gateway.addr.port());
    exporter
        .wait_for("the tunnel up again", T, |m| m.get("openclaw_tunnel_ssh_session_up{forward=\"t\"}") == Some(1.0));
    let up_seen = now();
    let rest = OUTAGE.as_secs_f64() - (now() - outage_start);
    std::thread::sleep(Duration::from_secs_f64(rest.max(2.0)));
    let outage_end = now();

    // The receiver returns: the queue drains, in order.
    receiver.restart();
    exporter.wait_for("the queue drained into the receiver", T, |m| {
        m.value("openclaw_exporter_remote_write_oldest_queued_timestamp_seconds") == 0.0
            && m.value("openclaw_exporter_remote_write_last_success_timestamp_seconds") > outage_end
    });
    let settled = exporter.scrape();
    assert_eq!(settled.value("openclaw_exporter_remote_write_samples_total{result=\"dropped\"}"), 0.0);
    assert_eq!(settled.value("openclaw_exporter_remote_write_samples_total{result=\"failed\"}"), 0.0);

    let selector = "openclaw_tunnel_ssh_session_up{forward=\"t\",laptop=\"lap-e2e\"}";
    let (from, to) = (outage_start - 3.0, outage_end + 1.0);
    let deadline = Instant::now() + T;
    let samples = loop {
        let samples = receiver.raw_samples(selector, from, to);
        if samples.last().is_some_and(|(at, _)| *at >= outage_end - 1.0) || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "{engine:?}: outage {outage_start:.2}..{outage_end:.2}, down seen {down_seen:.2}, killed {killed_at:.2}, \
         restarted {restarted_at:.2}, up seen {up_seen:.2}"
    );
    let timestamps: Vec<f64> = samples.iter().map(|(at, _)| *at).collect();
    assert!(timestamps.len() >= 10, "{engine:?}: too few samples over the outage: {samples:?}\n{}", receiver.output());

    // Once each, in order.
    assert!(
        timestamps.windows(2).all(|w| w[0] < w[1]),
        "{engine:?}: duplicate or out-of-order samples: {timestamps:?}"
    );
    // No gap but the one the SIGKILL made (the process was not running then).
    for pair in timestamps.windows(2) {
        let gap = pair[1] - pair[0];
        let spans_kill = pair[0] <= killed_at + 0.1 && pair[1] >= killed_at - INTERVAL - 0.1;
        let allowed = if spans_kill { restarted_at - killed_at + 2.0 * INTERVAL + 1.0 } else { 2.0 * INTERVAL + 0.5 };
        assert!(
            gap <= allowed,
            "{engine:?}: a gap of {gap:.2}s at {:.2} (kill at {killed_at:.2}): {timestamps:?}",
            pair[0]
        );
    }
    // Rounds from before the kill (queued on disk during the outage) survived it.
    assert!(
        timestamps.iter().any(|at| (outage_start..killed_at - INTERVAL).contains(at)),
        "{engine:?}: nothing queued before the SIGKILL came through: {timestamps:?}"
    );
    // The down period is where it happened: up before, down while ssh was gone, up after.
    let value_at = |t: f64| samples.iter().rev().find(|(at, _)| *at <= t).map(|(_, v)| *v);
    assert_eq!(value_at(outage_start), Some(1.0), "{samples:?}");
    // The round after the scrape that saw it down says down (a round lags a scrape by up to an interval).
    let first_after = |t: f64| samples.iter().find(|(at, _)| *at >= t).map(|(_, v)| *v);
    assert_eq!(first_after(down_seen), Some(0.0), "{samples:?}");
    assert_eq!(value_at(to), Some(1.0), "{samples:?}");
    assert!(
        samples.iter().any(|(at, v)| *v == 0.0 && *at > outage_start && *at < up_seen),
        "{engine:?}: the tunnel's down period is missing: {samples:?}"
    );
    if engine == Engine::VictoriaMetrics {
        fleet_dashboard_has_data(&receiver);
    }
    drop(ssh);
}

#[test]
fn an_outage_with_a_kill_loses_nothing_in_victoriametrics() {
    eprintln!("{}", version_of_victoria_metrics());
    outage_loses_nothing(Engine::VictoriaMetrics);
}

#[test]
fn an_outage_with_a_kill_loses_nothing_in_prometheus() {
    eprintln!("{}", version_of("prometheus"));
    outage_loses_nothing(Engine::Prometheus);
}

fn version_of_victoria_metrics() -> String {
    let output = std::process::Command::new(find_program("victoria-metrics")).arg("-version").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A receiver behind TLS that requires a client certificate and basic auth (Prometheus 2.42's web config, as a
/// team's store would be): the right settings deliver; a wrong password is a 401, which a person fixes, so the
/// rounds wait in the queue (retried with backoff, never counted failed) and arrive once the password file is
/// fixed; no client certificate fails the handshake, which is retried too.
#[test]
fn tls_with_a_client_certificate_and_basic_auth_deliver_and_a_401_waits_for_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d);
    issue_cert(d, "server", "/CN=receiver", "subjectAltName=IP:127.0.0.1");
    issue_cert(d, "laptop", "/CN=laptop", "extendedKeyUsage=clientAuth");
    let hash = run_tool("htpasswd", &["-nbBC", "10", "laptops", "right-password-7"], d);
    let web = format!(
        "tls_server_config:\n  cert_file: {0}/server.pem\n  key_file: {0}/server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {0}/ca.pem\n\
         basic_auth_users:\n  laptops: '{1}'\n",
        d.display(),
        hash.trim().trim_start_matches("laptops:")
    );
    let web_file = d.join("web.yml");
    std::fs::write(&web_file, web).unwrap();
    let web_flag = format!("--web.config.file={}", web_file.display());
    let receiver = Prometheus::start("global: {}\n", &[], &["--web.enable-remote-write-receiver", web_flag.as_str()]);
    let url = format!("https://127.0.0.1:{}/api/v1/write", receiver.addr.port());
    std::fs::write(d.join("right"), "right-password-7\n").unwrap();
    std::fs::write(d.join("wrong"), "wrong-password\n").unwrap();
    let config = |password: &str, client_cert: bool| {
        let cert = if client_cert {
            format!("cert_file = \"{0}/laptop.pem\"\nkey_file = \"{0}/laptop.key\"\n", d.display())
        } else {
            String::new()
        };
        format!(
            "{}\n[remote_write]\nurl = \"{url}\"\ninterval = \"200ms\"\nqueue_dir = \"{}\"\n\
             [remote_write.basic_auth]\nusername = \"laptops\"\npassword_file = \"{}\"\n\
             [remote_write.tls]\nca_file = \"{}/ca.pem\"\n{cert}",
            forward_toml("t", free_port()),
            d.join(format!("queue-{password}-{client_cert}")).display(),
            d.join(password).display(),
            d.display()
        )
    };
    let sent = "openclaw_exporter_remote_write_samples_total{result=\"sent\"}";
    let failed = "openclaw_exporter_remote_write_samples_total{result=\"failed\"}";

    let good = Exporter::start(&config("right", true));
    let delivered = good.wait_for("rounds delivered over mutual TLS with basic auth", T, |m| m.value(sent) > 0.0);
    assert_eq!(delivered.value(failed), 0.0);
    drop(good);

    let wrong = Exporter::start(&config("wrong", true));
    let refused = wrong.wait_for("401s retried, the rounds kept", T, |m| {
        m.value("openclaw_exporter_remote_write_retries_total{status=\"4xx\"}") >= 3.0
            && m.value("openclaw_exporter_remote_write_rounds_queued") >= 5.0
    });
    assert_eq!(refused.value(sent), 0.0);
    assert_eq!(refused.value(failed), 0.0, "a 401 is the sender's own credential: never a reason to drop");
    let waiting = refused.value("openclaw_exporter_remote_write_rounds_queued");
    // The operator fixes the password file: every waiting round goes through.
    std::fs::write(d.join("wrong"), "right-password-7\n").unwrap();
    let fixed = wrong.wait_for("the waiting rounds delivered after the fix", T, |m| {
        m.value("openclaw_exporter_remote_write_rounds_total{result=\"sent\"}") >= waiting
            && m.value("openclaw_exporter_remote_write_rounds_queued") <= 1.0
    });
    assert_eq!(fixed.value(failed), 0.0);
    assert!(!wrong.proc.output().contains("wrong-password"), "a password reached the log");
    drop(wrong);

    let no_cert = Exporter::start(&config("right", false));
    let waiting = no_cert.wait_for("rounds kept while the handshake fails", T, |m| {
        m.value("openclaw_exporter_remote_write_oldest_queued_timestamp_seconds") > 0.0
            && m.value("openclaw_exporter_remote_write_queue_bytes") > 0.0
    });
    assert_eq!(waiting.value(failed), 0.0, "a TLS failure is retried, not counted failed");
    assert_eq!(waiting.value(sent), 0.0);
}

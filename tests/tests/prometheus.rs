//! The exposition as real Prometheus tooling sees it: `promtool check metrics` on the 0.0.4 text, and a
//! real Prometheus server scraping the exporter (negotiating OpenMetrics) and answering a query.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;

#[test]
fn promtool_check_metrics_passes_on_the_0_0_4_text() {
    let chain = Chain::start();
    chain.exporter.wait_for("a first byte recorded", Duration::from_secs(20), |m| {
        m.value("openclaw_gateway_first_byte_seconds_count{forward=\"t\"}") >= 1.0
    });
    let (content_type, text) = chain.exporter.get("/metrics", None);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let output = run_with_stdin(&find_program("promtool"), &["check", "metrics"], text.as_bytes());
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");

    let (content_type, text) = chain.exporter.get("/metrics", Some("application/openmetrics-text;version=1.0.0"));
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn a_real_prometheus_scrapes_the_exporter() {
    let chain = Chain::start();
    let dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: openclaw\n    \
             static_configs:\n      - targets: ['{}']\n",
            chain.exporter.web
        ),
    )
    .unwrap();
    let prometheus = Proc::spawn(
        "prometheus",
        Command::new(find_program("prometheus"))
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
    );
    let query = "openclaw_tunnel_up_successes_total{job=\"openclaw\",forward=\"t\"}";
    let url = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = ureq::get(&url)
            .query("query", query)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&answer) {
            let value = json["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
            if value.is_some_and(|v| v >= 1.0) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "Prometheus never stored {query}: {answer}\n{}", prometheus.output());
        std::thread::sleep(Duration::from_millis(500));
    }
    // The scrape is healthy as Prometheus judges it.
    let targets = ureq::get(format!("http://127.0.0.1:{prom_port}/api/v1/targets"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(targets.contains("\"health\":\"up\""), "{targets}");
}

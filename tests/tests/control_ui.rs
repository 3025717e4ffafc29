//! The Control UI kind against the stand-in gateway: `GET /` through the forward answering HTML, then a
//! gateway whose `/healthz` answers but whose UI is gone (`--no-ui`: a 404), and `off`. The real gateway's UI
//! is checked in `openclaw_gateway.rs`.

use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(20);

fn up(forward: &str) -> String {
    format!("openclaw_gateway_control_ui_up{{forward=\"{forward}\"}}")
}

fn failures(forward: &str, reason: &str) -> String {
    format!("openclaw_gateway_control_ui_failures_total{{forward=\"{forward}\",reason=\"{reason}\"}}")
}

#[test]
fn the_control_ui_answering_then_gone_while_healthz_still_answers() {
    let port = free_port();
    let gateway = Gateway::start_with(port, Duration::ZERO, &[]);
    let exporter = Exporter::start(&(forward_toml("g", port) + "control_ui_interval = \"200ms\"\n"));
    let answering = exporter.wait_for("the Control UI answers HTML", T, |m| m.get(&up("g")) == Some(1.0));
    assert_eq!(answering.get(&failures("g", "bad_status")), Some(0.0), "every reason at zero");
    let status = exporter.status();
    assert_eq!(status["forwards"][0]["control_ui"]["ok"], true, "{status}");
    let page = exporter.get("/", Some("text/html")).1;
    assert!(page.contains("<th>Control UI</th>") && page.contains("answers HTML"), "{page}");

    // The same gateway without its UI: /healthz still answers, GET / is a 404.
    drop(gateway);
    let _no_ui = Gateway::start_with(port, Duration::ZERO, &["--no-ui"]);
    let gone = exporter.wait_for("the Control UI counted failing while the gateway is up", T, |m| {
        m.get(&up("g")) == Some(0.0)
            && m.value(&failures("g", "bad_status")) >= 1.0
            && m.get("openclaw_gateway_up{forward=\"g\"}") == Some(1.0)
    });
    assert_eq!(gone.get(&failures("g", "refused")), Some(0.0), "{}", gone.text);
    let status = exporter.status();
    let control_ui = &status["forwards"][0]["control_ui"];
    assert_eq!(control_ui["ok"], false, "{status}");
    assert!(control_ui["detail"].as_str().unwrap().contains("404"), "{control_ui}");
    let page = exporter.get("/", Some("text/html")).1;
    assert!(page.contains("<th>Control UI</th>") && page.contains(">fails<") && page.contains("404"), "{page}");
    assert!(exporter.proc.output().contains("Control UI fails through the forward"), "{}", exporter.proc.output());
}

#[test]
fn off_runs_no_probe_and_serves_no_series() {
    let (on, off) = (free_port(), free_port());
    let _gateways = (Gateway::start_with(on, Duration::ZERO, &[]), Gateway::start_with(off, Duration::ZERO, &[]));
    let config = forward_toml("on", on)
        + "control_ui_interval = \"200ms\"\n"
        + &forward_toml("off", off)
        + "control_ui_interval = \"off\"\n";
    let exporter = Exporter::start(&config);
    // Every forward's first round comes within 2 s of start; twenty rounds of the other forward's UI at 200 ms
    // put the exporter's own clock past that.
    let scrape = exporter.wait_for("twenty Control UI rounds of the other forward", T, |m| {
        m.value("openclaw_exporter_probe_lag_seconds_count{probe=\"control_ui\"}") >= 20.0
    });
    assert_eq!(scrape.get(&up("on")), Some(1.0));
    assert!(!scrape.text.contains("openclaw_gateway_control_ui_up{forward=\"off\"}"), "{}", scrape.text);
    assert!(!scrape.text.contains("control_ui_failures_total{forward=\"off\""), "no failure series for off either");
    let status = exporter.status();
    let off_status = status["forwards"].as_array().unwrap().iter().find(|f| f["forward"] == "off").unwrap();
    assert!(off_status.get("control_ui").is_none(), "{off_status}");
}

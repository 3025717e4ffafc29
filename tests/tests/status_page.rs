//! The status page in a real browser (Debian's headless Chromium): it loads with no console messages, shows
//! the states the test set up (one healthy forward through real ssh, one whose ssh is down), and a
//! screenshot of each state is written to target/e2e-artifacts/ (healthy and broken; after a sleep).

use std::path::PathBuf;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn the_status_page_shows_the_states_in_a_real_browser() {
    let chain = Chain::start();
    let dead_port = free_port();
    chain.exporter.rewrite_config(&format!(
        "{}{}",
        forward_toml("t", chain.local_port),
        forward_toml("down", dead_port)
    ));
    chain.exporter.wait_for("t up and down refused", T, |m| {
        m.get("openclaw_gateway_up{forward=\"t\"}") == Some(1.0)
            && m.get("openclaw_tunnel_ssh_session_up{forward=\"t\"}") == Some(1.0)
            && m.value("openclaw_gateway_probe_failures_total{forward=\"down\",reason=\"refused\"}") >= 1.0
            && m.get("openclaw_tunnel_ssh_session_up{forward=\"down\"}") == Some(0.0)
    });
    let url = format!("http://{}/", chain.exporter.web);

    let (dom, log) = chromium(&["--dump-dom".into(), url.clone()]);
    assert!(!log.contains("CONSOLE"), "the page logged to the console:\n{log}");
    let section = |name: &str| {
        let start = dom.find(&format!("id=\"forward-{name}\"")).unwrap_or_else(|| panic!("no section {name}:\n{dom}"));
        let end = dom[start..].find("</section>").map_or(dom.len(), |e| start + e);
        dom[start..end].to_owned()
    };
    let healthy = section("t");
    assert!(healthy.contains("ssh up") && healthy.contains("answers") && healthy.contains("connects"), "{healthy}");
    assert!(healthy.contains(&format!("pid {}", chain.ssh.pid())), "{healthy}");
    let down = section("down");
    assert!(down.contains("no_listener") && down.contains("refused") && down.contains("connection refused"), "{down}");
    assert_eq!(down.matches("class=\"s-").count() - 5, 288, "a 24 h strip of five-minute buckets");

    // The healthy forward's first bytes are drawn: a chart with a p50 path through the open bucket.
    assert!(healthy.contains("<svg class=\"chart\""), "{healthy}");
    assert!(healthy.contains("class=\"p50\" d=\"M"), "no p50 drawn for the healthy forward: {healthy}");
    // The broken one has a chart with nothing drawn (no probe answered), and its trouble in the timeline.
    assert!(down.contains("class=\"p50\" d=\"\""), "{down}");
    assert!(dom.contains("class=\"timeline\"") && dom.contains("tunnel down"), "no timeline entry:\n{dom}");
    screenshot("status-page-healthy-and-broken", &url);

    // A laptop that slept: the exporter stopped for 10 s, then on again.
    chain.exporter.proc.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(10));
    chain.exporter.proc.signal(libc::SIGCONT);
    chain.exporter.wait_for("the stall counted", T, |m| {
        m.value("openclaw_tunnel_unobserved_seconds_total{forward=\"t\"}") >= 8.0
    });
    let (dom, log) = chromium(&["--dump-dom".into(), url.clone()]);
    assert!(!log.contains("CONSOLE"), "the page logged to the console:\n{log}");
    assert!(dom.contains("asleep (not counted)"), "the sleep is not in the timeline:\n{dom}");
    assert!(dom.contains(" s</td>"), "durations in words: {dom}");
    // The script-free refresh.
    let (dom, _) = chromium(&["--dump-dom".into(), format!("{url}?refresh=30")]);
    assert!(dom.contains("http-equiv=\"refresh\" content=\"30\""), "{dom}");
    screenshot("status-page-after-sleep", &url);
}

/// A PNG of the page at `url` in target/e2e-artifacts/NAME.png.
fn screenshot(name: &str, url: &str) {
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    chromium(&[format!("--screenshot={}", shot.display()), "--window-size=1280,1400".into(), url.to_owned()]);
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes", png.len());
}

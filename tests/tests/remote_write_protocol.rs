//! Remote write's negotiation against real stores: 2.0 where the receiver reads it (the scripted receiver as a
//! 2.0 receiver in front of Debian's Prometheus 2.42, which stores what it forwards as 1.0: Debian has no 2.0
//! receiver), 1.0 where it does not, native histograms where they are stored and classic where they are not.
//! Each step down is counted, and every round the exporter took is in the store once: nothing is lost.

use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(90);

/// An exporter pushing every 300 ms through `receiver` with `extra` `[remote_write]` keys; its forward points
/// straight at a stand-in gateway (no ssh), so the first-byte histogram has observations.
fn pushing(receiver: &ScriptedReceiver, gateway: &Gateway, dir: &std::path::Path, extra: &str) -> Exporter {
    Exporter::start(&format!(
        "{}\n[remote_write]\nurl = \"{}\"\ninterval = \"300ms\"\nbatch_rounds = 2\nqueue_dir = \"{}\"\n{extra}\n\
         [remote_write.external_labels]\nlaptop = \"lap-proto\"\n",
        forward_toml("t", gateway.addr.port()),
        receiver.url(),
        dir.join("queue").display(),
    ))
}

/// Every round from the first to the one `scrape` says is next, in `store`, once each.
fn every_round_once(store: &Receiver, exporter: &Exporter) {
    let selector = format!("{ROUND_SEQUENCE}{{laptop=\"lap-proto\"}}");
    let taken = exporter.scrape().value("openclaw_exporter_remote_write_rounds_total{result=\"taken\"}") as usize;
    exporter.wait_for("the queue drained", T, |m| m.value("openclaw_exporter_remote_write_rounds_queued") == 0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let deadline = std::time::Instant::now() + T;
    let sequence = loop {
        let samples = store.raw_samples(&selector, now - 600.0, now + 1.0);
        if samples.len() >= taken || std::time::Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let numbers: Vec<u64> = sequence.iter().map(|(_, value)| *value as u64).collect();
    assert!(numbers.len() >= taken, "{} rounds stored of {taken} taken: {numbers:?}", numbers.len());
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "a round lost or stored twice: {numbers:?}");
    assert_eq!(numbers.first(), Some(&0), "the first round: {numbers:?}");
}

/// A 2.0 receiver that stores native histograms: 2.0 with native histograms, no step down.
#[test]
fn a_2_0_receiver_gets_2_0_and_native_histograms() {
    let store = Receiver::start(Engine::PrometheusNativeHistograms);
    let receiver = ScriptedReceiver::start(Some(store.write_url()));
    receiver.speak_v2(false);
    let (dir, gateway) = (tempfile::tempdir().unwrap(), Gateway::start(free_port(), Duration::ZERO));
    let exporter = pushing(&receiver, &gateway, dir.path(), "");
    exporter.wait_for("rounds delivered in 2.0", T, |m| {
        m.get("openclaw_exporter_remote_write_protocol_info{protocol=\"2.0\",histograms=\"native\"}") == Some(1.0)
            && m.value("openclaw_exporter_remote_write_rounds_total{result=\"sent\"}") >= 6.0
    });
    every_round_once(&store, &exporter);
    assert!(store.stores_native("openclaw_gateway_first_byte_seconds{laptop=\"lap-proto\"}"));
    let scrape = exporter.scrape();
    for reason in ["unsupported_media_type", "no_written_headers", "histograms_dropped", "native_histograms_disabled"] {
        assert_eq!(
            scrape.value(&format!("openclaw_exporter_remote_write_fallbacks_total{{reason=\"{reason}\"}}")),
            0.0
        );
    }
    assert!(receiver.answered().iter().all(|a| a.v2), "every request in 2.0");
}

/// A 2.0 receiver whose store has native histograms off answers "native histograms are disabled" (500): the
/// exporter keeps 2.0 with classic histograms, counted, and every round arrives once.
#[test]
fn native_histograms_disabled_steps_down_to_classic_and_loses_nothing() {
    let store = Receiver::start(Engine::Prometheus);
    let receiver = ScriptedReceiver::start(Some(store.write_url()));
    receiver.speak_v2(false);
    let (dir, gateway) = (tempfile::tempdir().unwrap(), Gateway::start(free_port(), Duration::ZERO));
    let exporter = pushing(&receiver, &gateway, dir.path(), "");
    exporter.wait_for("the step down to classic, and rounds delivered", T, |m| {
        m.value("openclaw_exporter_remote_write_fallbacks_total{reason=\"native_histograms_disabled\"}") == 1.0
            && m.get("openclaw_exporter_remote_write_protocol_info{protocol=\"2.0\",histograms=\"classic\"}")
                == Some(1.0)
            && m.value("openclaw_exporter_remote_write_rounds_total{result=\"sent\"}") >= 6.0
    });
    every_round_once(&store, &exporter);
    assert!(!store.query("openclaw_gateway_first_byte_seconds_bucket{laptop=\"lap-proto\"}").is_empty());
    assert_eq!(receiver.count(500), 1, "one 500, then classic");
}

/// A 2.0 receiver that stores no native histograms and says so in its written-headers: 2.0 with classic ones.
#[test]
fn histograms_written_short_of_sent_steps_down_to_classic_and_loses_nothing() {
    let store = Receiver::start(Engine::PrometheusNativeHistograms);
    let receiver = ScriptedReceiver::start(Some(store.write_url()));
    receiver.speak_v2(true);
    let (dir, gateway) = (tempfile::tempdir().unwrap(), Gateway::start(free_port(), Duration::ZERO));
    let exporter = pushing(&receiver, &gateway, dir.path(), "");
    exporter.wait_for("the step down to classic", T, |m| {
        m.value("openclaw_exporter_remote_write_fallbacks_total{reason=\"histograms_dropped\"}") == 1.0
            && m.value("openclaw_exporter_remote_write_rounds_total{result=\"sent\"}") >= 6.0
    });
    every_round_once(&store, &exporter);
    assert!(!store.query("openclaw_gateway_first_byte_seconds_bucket{laptop=\"lap-proto\"}").is_empty());
}

/// A receiver answering 415 to 2.0: 1.0, every round delivered once into VictoriaMetrics.
#[test]
fn a_415_to_2_0_steps_down_to_1_0_and_loses_nothing() {
    let store = Receiver::start(Engine::VictoriaMetrics);
    let receiver = ScriptedReceiver::start(Some(store.write_url()));
    receiver.refuse_v2();
    let (dir, gateway) = (tempfile::tempdir().unwrap(), Gateway::start(free_port(), Duration::ZERO));
    let exporter = pushing(&receiver, &gateway, dir.path(), "");
    exporter.wait_for("the step down to 1.0", T, |m| {
        m.value("openclaw_exporter_remote_write_fallbacks_total{reason=\"unsupported_media_type\"}") == 1.0
            && m.get("openclaw_exporter_remote_write_protocol_info{protocol=\"1.0\",histograms=\"classic\"}")
                == Some(1.0)
            && m.value("openclaw_exporter_remote_write_rounds_total{result=\"sent\"}") >= 6.0
    });
    every_round_once(&store, &exporter);
    assert_eq!(receiver.count(415), 1, "asked once");
}

/// Debian's Prometheus with native histograms off, `histograms = "native"` on 1.0 (the user's word that it
/// stores them): its 500 steps down to classic, counted, nothing lost.
#[test]
fn a_1_0_prometheus_with_native_histograms_off_steps_down_to_classic_and_loses_nothing() {
    let store = Receiver::start(Engine::Prometheus);
    let receiver = ScriptedReceiver::start(Some(store.write_url()));
    let (dir, gateway) = (tempfile::tempdir().unwrap(), Gateway::start(free_port(), Duration::ZERO));
    let exporter = pushing(&receiver, &gateway, dir.path(), "protocol = \"1.0\"\nhistograms = \"native\"");
    exporter.wait_for("the step down to classic", T, |m| {
        m.value("openclaw_exporter_remote_write_fallbacks_total{reason=\"native_histograms_disabled\"}") == 1.0
            && m.get("openclaw_exporter_remote_write_protocol_info{protocol=\"1.0\",histograms=\"classic\"}")
                == Some(1.0)
            && m.value("openclaw_exporter_remote_write_rounds_total{result=\"sent\"}") >= 6.0
    });
    every_round_once(&store, &exporter);
}

/// `/metrics` offers native histograms to a scraper that negotiates protobuf (Debian's Prometheus with native
/// histograms on), and classic text to one that does not: the same first-byte histogram, stored native by the
/// one and as `_bucket` series by the other.
#[test]
fn metrics_offers_native_histograms_to_a_protobuf_scraper_and_classic_text_to_the_rest() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let exporter = Exporter::start(&forward_toml("t", gateway.addr.port()));
    exporter.wait_for("a first byte", T, |m| m.value("openclaw_gateway_probe_attempts_total{forward=\"t\"}") > 0.0);
    let scrape_config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: openclaw-tunnel\n    static_configs:\n      - targets: ['{}']\n",
        exporter.web
    );
    let native = Prometheus::start(&scrape_config, &[], &["--enable-feature=native-histograms"]);
    let classic = Prometheus::start(&scrape_config, &[], &[]);
    let deadline = std::time::Instant::now() + T;
    let query = "openclaw_gateway_first_byte_seconds{forward=\"t\"}";
    while native.query(query).is_empty() || classic.query("openclaw_gateway_first_byte_seconds_bucket").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no scrape stored the histogram");
        std::thread::sleep(Duration::from_millis(250));
    }
    let stored = native.query(query);
    assert!(stored[0].get("histogram").is_some(), "stored native: {stored:?}");
    assert!(classic.query(query).is_empty(), "a text scraper stores no native histogram");
    let buckets = classic.query("count(openclaw_gateway_first_byte_seconds_bucket{forward=\"t\"})");
    assert_eq!(buckets[0]["value"][1], "23", "every classic bucket and +Inf: {buckets:?}");
}

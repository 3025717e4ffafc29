//! The status page at `/`: server-rendered HTML from the same [`StatusReport`] as `/api/status`, with inline
//! CSS and no script or external asset, so it works offline on a laptop without Grafana.

use std::fmt::Write;

use crate::html::esc;
use crate::kinds;
use crate::record::status::{ForwardStatus, StatusReport};
use crate::record::timeline::human_duration;
use crate::record::timeline::Event;

/// Render the page from the status report; `refresh` adds a script-free reload every that many seconds.
pub fn render(status: &StatusReport, refresh: Option<u32>) -> String {
    let mut html = String::with_capacity(64 * 1024);
    head(&mut html, &status.version, refresh);
    for forward in &status.forwards {
        forward_section(&mut html, forward, status.now);
    }
    for section in &kinds::page().sections {
        html.push_str(&section(status));
    }
    timeline_section(&mut html, &status.timeline, status.now);
    html.push_str("</body></html>\n");
    html
}

/// The document's head, its style, and the title line with the version and the machine-readable links.
fn head(html: &mut String, version: &str, refresh: Option<u32>) {
    if let Some(seconds) = refresh {
        let _ = write!(
            html,
            "<!doctype html><html lang=\"en\"><head><meta http-equiv=\"refresh\" content=\"{}\">",
            seconds.clamp(5, 3600)
        );
    } else {
        html.push_str("<!doctype html><html lang=\"en\"><head>");
    }
    html.push_str(STYLE_AND_TITLE);
    let _ = write!(
        html,
        "<p class=\"muted\">version {} · <a href=\"/metrics\">/metrics</a> · <a href=\"/api/status\">/api/status</a></p>",
        esc(version)
    );
}

/// The page's metadata, style sheet (light and dark) and heading.
const STYLE_AND_TITLE: &str = concat!(
    "<meta charset=\"utf-8\"><meta name=\"color-scheme\" content=\"light dark\">",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    "<title>openclaw-tunnel-exporter</title><style>",
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}",
    "h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse}",
    "td,th{padding:.25em .8em;text-align:left;border-bottom:1px solid #ddd}",
    ".badge{padding:.1em .5em;border-radius:.3em;color:#fff}.ok{background:#2e7d32}.bad{background:#c62828}",
    ".unknown{background:#757575}.strip{display:flex;gap:1px;margin:.4em 0 1em}",
    ".strip span{display:inline-block;width:3px;height:22px}.s-up{background:#2e7d32}.s-down{background:#c62828}",
    ".s-partly{background:#f9a825}.s-unobserved{background:#90a4ae}.s-empty{background:#e0e0e0}",
    ".legend span{display:inline-block;width:10px;height:10px;margin:0 .3em 0 1em}.muted{color:#666}",
    ".chart{display:block;margin:.4em 0;max-width:100%;height:auto;background:#fff;border:1px solid #ddd}",
    ".chart .grid{stroke:#e0e0e0;stroke-width:1}.chart text{font-size:9px;fill:#888}",
    ".chart path{fill:none;stroke-width:1.5}.chart .p50{stroke:#1565c0}.chart .p99{stroke:#ef6c00}",
    "@media (prefers-color-scheme: dark){body{color:#e0e0e0;background:#121212}td,th{border-color:#333}",
    ".muted{color:#9e9e9e}.chart{background:#1e1e1e;border-color:#333}.chart .grid{stroke:#333}",
    ".chart .p50{stroke:#64b5f6}.chart .p99{stroke:#ffb74d}.s-empty{background:#333}a{color:#90caf9}}",
    "</style></head><body><h1>openclaw-tunnel-exporter</h1>",
);

/// One forward's section: its table of rows and the sections after it, each kind's as the registry lists
/// them, in the page's order ([`kinds::page`]).
fn forward_section(html: &mut String, forward: &ForwardStatus, now: f64) {
    let name = esc(&forward.forward);
    let _ = write!(html, "<section class=\"forward\" id=\"forward-{name}\"><h2>Forward {name}</h2><table>");
    for row in &kinds::page().rows {
        html.push_str(&row(forward, now));
    }
    html.push_str("</table>");
    for section in &kinds::page().after_table {
        html.push_str(&section(forward, now));
    }
    html.push_str("</section>");
}

/// What happened in the last 24 hours, newest first.
fn timeline_section(html: &mut String, timeline: &[Event], now: f64) {
    html.push_str("<h2>What happened (last 24 h)</h2>");
    if timeline.is_empty() {
        html.push_str("<p class=\"muted\">Nothing yet: no state changed since the exporter started.</p>");
    } else {
        html.push_str(
            "<table class=\"timeline\"><tr><th>start (UTC)</th><th>end</th><th>duration</th><th>what</th><th>where</th><th></th></tr>",
        );
        for event in timeline {
            let start = crate::clock::rfc3339_seconds(event.start);
            let (end, duration) = match (event.spell, event.end) {
                (true, Some(end)) => (crate::clock::rfc3339_seconds(end), human_duration(end - event.start)),
                (true, None) => ("going on".to_owned(), human_duration(now - event.start)),
                (false, _) => ("–".to_owned(), "–".to_owned()),
            };
            let what = kinds::timeline_words(&event.kind).unwrap_or("change");
            let _ = write!(
                html,
                "<tr class=\"{}\"><td>{start}</td><td>{end}</td><td>{duration}</td><td>{what}</td><td>{}</td><td class=\"muted\">{}</td></tr>",
                esc(&event.kind),
                esc(&event.subject),
                esc(&event.detail)
            );
        }
        html.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_probes_is_escaped() {
        let (recorder, uptime) = crate::kinds::uptime::tests::recorder();
        uptime.record_outcome(
            "a",
            &Err(probes::first_byte::Failure::BadStatus {
                status: None,
                first_byte: None,
                detail: "<script>alert(1)</script>".into(),
            }),
        );
        let html = render(&recorder.status(std::time::SystemTime::now()), None);
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        let strip = &html[html.find("<div class=\"strip\"").unwrap()..];
        let strip = &strip[..strip.find("</div>").unwrap()];
        assert_eq!(
            strip.matches("<span ").count(),
            crate::kinds::uptime::ledger::BUCKETS_KEPT,
            "one cell per five-minute bucket of the day"
        );
    }
}

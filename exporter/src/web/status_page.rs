//! The status page at `/`: server-rendered HTML from the same [`StatusReport`] as `/api/status`, with inline
//! CSS and no script or external asset, so it works offline on a laptop without Grafana.

use std::fmt::Write;

use crate::record::status::StatusReport;
use crate::uptime::{Bucket, BUCKETS_KEPT, BUCKET_SECONDS};

/// Escape text for HTML element content and attribute values.
use crate::record::timeline::human_duration;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn seconds(value: Option<f64>) -> String {
    match value {
        Some(0.0) => "0 s".into(),
        Some(s) if s < 1e-3 => format!("{:.0} µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
        None => "–".into(),
    }
}

/// A bucket's class: up, down, partly, unobserved, or empty (no data).
fn bucket_class(bucket: Option<&Bucket>) -> (&'static str, String) {
    let Some(bucket) = bucket else { return ("empty", "no data".into()) };
    let (checks, up, unobserved) = (bucket.checks, bucket.successes, bucket.unobserved_seconds);
    if checks == 0 || unobserved >= BUCKET_SECONDS as f64 / 2.0 {
        return ("unobserved", format!("{unobserved:.0} s unobserved, {up}/{checks} rounds up"));
    }
    let class = match up {
        u if u == checks => "up",
        0 => "down",
        _ => "partly",
    };
    (class, format!("{up}/{checks} rounds up ({:.2}%)", up as f64 * 100.0 / checks as f64))
}

fn state_badge(ok: Option<bool>, yes: &str, no: &str) -> String {
    match ok {
        Some(true) => format!("<span class=\"badge ok\">{yes}</span>"),
        Some(false) => format!("<span class=\"badge bad\">{no}</span>"),
        None => "<span class=\"badge unknown\">unknown</span>".into(),
    }
}

/// Render the page from the status report.
pub fn render(status: &StatusReport) -> String {
    let mut html = String::with_capacity(64 * 1024);
    html.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
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
        "</style></head><body><h1>openclaw-tunnel-exporter</h1>",
    ));
    let _ = write!(
        html,
        "<p class=\"muted\">version {} · <a href=\"/metrics\">/metrics</a> · <a href=\"/api/status\">/api/status</a></p>",
        esc(&status.version)
    );
    let now = status.now as u64;
    let current_bucket = now / BUCKET_SECONDS * BUCKET_SECONDS;
    let first_bucket = current_bucket.saturating_sub((BUCKETS_KEPT as u64 - 1) * BUCKET_SECONDS);

    for forward in &status.forwards {
        let name = esc(&forward.forward);
        let _ = write!(html, "<section class=\"forward\" id=\"forward-{name}\"><h2>Forward {name}</h2>");
        let session = forward.ssh_session.as_ref();
        let session_state = session.map(|s| s.state.as_str());
        let session_badge = match session_state {
            Some("up") => state_badge(Some(true), "ssh up", ""),
            Some("unreadable") | Some("unsupported") | None => state_badge(None, "", ""),
            Some(other) => state_badge(Some(false), "", &esc(other)),
        };
        let owner = match session.and_then(|s| Some((s.pid?, s.name.as_deref()?, s.parent_name.as_deref()))) {
            Some((pid, comm, parent)) => format!("{} pid {pid}, parent {}", esc(comm), esc(parent.unwrap_or("?"))),
            None => esc(session_state.unwrap_or("not checked yet")),
        };
        let _ = write!(
            html,
            "<table><tr><th>SSH session</th><td class=\"ssh\">{session_badge}</td><td class=\"muted\">{owner}</td></tr>\
             <tr><th>SYN</th><td class=\"syn\">{}</td><td class=\"muted\">{} of {} connects succeeded</td></tr>\
             <tr><th>Gateway</th><td class=\"gateway\">{}</td><td class=\"muted\">{}</td></tr>\
             <tr><th>First byte</th><td>p50 {}</td><td class=\"muted\">p99 {} · {} samples</td></tr>\
             <tr><th>WebSocket</th><td colspan=\"2\" class=\"muted\">{}</td></tr>\
             <tr><th>Uptime</th><td>{}</td><td class=\"muted\">last completed 5-minute bucket · {} unobserved</td></tr></table>",
            state_badge(forward.syn.last_ok, "connects", "refused"),
            forward.syn.successes,
            forward.syn.attempts,
            state_badge(forward.gateway_up, "answers", "down"),
            esc(forward.last_first_byte.as_deref().unwrap_or("no probe yet")),
            seconds(forward.first_byte_seconds.p50),
            seconds(forward.first_byte_seconds.p99),
            forward.first_byte_seconds.count,
            esc(forward.last_ws_handshake.as_deref().unwrap_or("no handshake probe yet")),
            forward.uptime_ratio_last_bucket.map_or("–".into(), |r| format!("{:.2}%", r * 100.0)),
            seconds(Some(forward.unobserved_seconds)),
        );
        let buckets = &forward.buckets;
        html.push_str("<div class=\"strip\" title=\"last 24 hours, five-minute buckets\">");
        let mut start = first_bucket;
        while start <= current_bucket {
            let bucket = buckets.iter().find(|b| b.start == start);
            let (class, title) = bucket_class(bucket);
            let _ = write!(html, "<span class=\"s-{class}\" title=\"{}\"></span>", esc(&title));
            start += BUCKET_SECONDS;
        }
        html.push_str(concat!(
            "</div><div class=\"legend muted\"><span class=\"s-up\"></span>up<span class=\"s-partly\"></span>partly",
            "<span class=\"s-down\"></span>down<span class=\"s-unobserved\"></span>unobserved (asleep)",
            "<span class=\"s-empty\"></span>no data</div>"
        ));
        let failures = &forward.auth_failures;
        if !failures.is_empty() {
            html.push_str("<h3>Auth failures by token revision</h3><table class=\"auth\"><tr><th>revision</th><th>channel</th><th>code</th><th>count</th></tr>");
            for failure in failures {
                let revision = esc(&failure.token_revision);
                let mark = if failure.current { " (current)" } else { "" };
                let _ = write!(
                    html,
                    "<tr><td>{revision}{mark}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&failure.channel),
                    esc(&failure.code),
                    failure.count
                );
            }
            html.push_str("</table>");
        }
        html.push_str("</section>");
    }

    let hosts = &status.model_hosts;
    if !hosts.is_empty() {
        html.push_str("<h2>Model hosts</h2><table class=\"model-hosts\"><tr><th>model host</th><th>last probe</th><th>failures / attempts</th></tr>");
        for host in hosts {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
                esc(&host.model_host),
                esc(host.last.as_deref().unwrap_or("no probe yet")),
                host.failures,
                host.attempts
            );
        }
        html.push_str("</table>");
    }
    let gateways = &status.gateways;
    if !gateways.is_empty() {
        html.push_str("<h2>Gateway bind exposure</h2><table class=\"exposure\"><tr><th>gateway</th><th>loopback</th><th>private</th><th>public</th><th></th></tr>");
        for gateway in gateways {
            let scopes = &gateway.listen_sockets;
            let exposed = gateway.exposed_since.map(|t| t > 0.0);
            let count = |n: Option<i64>| n.map_or("–".to_owned(), |n| n.to_string());
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&gateway.gateway),
                count(scopes.loopback),
                count(scopes.private),
                count(scopes.public),
                state_badge(exposed.map(|e| !e), "loopback only", "exposed")
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>What happened (last 24 h)</h2>");
    if status.timeline.is_empty() {
        html.push_str("<p class=\"muted\">Nothing yet: no state changed since the exporter started.</p>");
    } else {
        html.push_str(
            "<table class=\"timeline\"><tr><th>start (UTC)</th><th>end</th><th>duration</th><th>what</th><th>where</th><th></th></tr>",
        );
        for event in &status.timeline {
            let start = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(event.start.max(0.0)),
            );
            let (end, duration) = match (event.spell, event.end) {
                (true, Some(end)) => (
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(end.max(0.0)),
                    )
                    .to_string(),
                    human_duration(end - event.start),
                ),
                (true, None) => ("going on".to_owned(), human_duration(status.now - event.start)),
                (false, _) => ("–".to_owned(), "–".to_owned()),
            };
            let what = match event.kind.as_str() {
                "tunnel_down" => "tunnel down",
                "gateway_down" => "gateway not answering",
                "exposed" => "gateway port exposed",
                "asleep" => "asleep (not counted)",
                "ssh_restart" => "new ssh process",
                "gateway_restart" => "gateway restarted",
                "token_rotation" => "token rotated",
                _ => "change",
            };
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
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_probes_is_escaped() {
        let recorder = crate::record::Recorder::new();
        recorder.record_first_byte(
            "a",
            &Err(probes::first_byte::Failure::BadStatus {
                status: None,
                first_byte: None,
                detail: "<script>alert(1)</script>".into(),
            }),
        );
        let html = render(&recorder.status(std::time::SystemTime::now()));
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        let strip = &html[html.find("<div class=\"strip\"").unwrap()..];
        let strip = &strip[..strip.find("</div>").unwrap()];
        assert_eq!(strip.matches("<span ").count(), BUCKETS_KEPT, "one cell per five-minute bucket of the day");
    }
}

//! The status page at `/`: server-rendered HTML from the same [`StatusReport`] as `/api/status`, with inline
//! CSS and no script or external asset, so it works offline on a laptop without Grafana.

use std::fmt::Write;

use crate::html::{esc, seconds, state_badge};
use crate::record::status::{
    ForwardStatus, GatewayStatus, ModelHostStatus, OpenclawCliUrlStatus, OptionRiskStatus, OrphanStatus, RefusalStatus,
    ResumeStatus, StatusReport,
};
use crate::record::timeline::human_duration;
use crate::record::timeline::Event;
use crate::uptime::{Bucket, BUCKETS_KEPT, BUCKET_SECONDS};

/// The orphaned ssh clients' row: shown only when there are some (a row saying "none" on every healthy
/// forward would be noise), each with its pid, age, command line and the command that ends it.
fn orphans_row(orphans: Option<&[OrphanStatus]>, now: f64) -> String {
    let Some(orphans) = orphans.filter(|orphans| !orphans.is_empty()) else { return String::new() };
    let mut row = format!(
        "<tr class=\"orphans\"><th>Orphaned ssh</th><td>{}</td><td class=\"muted\">forward this address but hold \
         nothing:<ul>",
        state_badge(Some(false), "", &format!("{} orphan{}", orphans.len(), if orphans.len() == 1 { "" } else { "s" }))
    );
    for orphan in orphans {
        let age =
            orphan.started.map_or("age unknown".into(), |started| format!("{} old", human_duration(now - started)));
        let _ = write!(
            row,
            "<li>pid {} ({age}): <code>{}</code> · end it: <code>{}</code></li>",
            orphan.pid,
            esc(&orphan.command),
            esc(&orphan.end_with)
        );
    }
    row.push_str("</ul></td></tr>");
    row
}

/// The risky ssh options' row: shown only when the forward's ssh has some, each with why and its fix.
fn option_risks_row(risks: Option<&[OptionRiskStatus]>) -> String {
    let Some(risks) = risks.filter(|risks| !risks.is_empty()) else { return String::new() };
    let mut row = format!(
        "<tr class=\"risks\"><th>ssh options</th><td>{}</td><td class=\"muted\">add to ~/.ssh/config under the \
         forward's Host:<ul>",
        state_badge(Some(false), "", &format!("{} risky", risks.len()))
    );
    for risk in risks {
        let _ = write!(
            row,
            "<li>{} ({}): <code>{}</code></li>",
            esc(&risk.option),
            esc(&risk.why),
            esc(&risk.fix.replace('\n', "; "))
        );
    }
    row.push_str("</ul></td></tr>");
    row
}

/// The CLI's URL row: which forward the openclaw CLI uses, and the mismatch when it is not this one.
fn cli_url_row(cli_url: Option<&OpenclawCliUrlStatus>) -> String {
    let Some(cli_url) = cli_url else { return String::new() };
    match (&cli_url.forward, &cli_url.problem) {
        (Some(forward), _) => format!(
            "<tr class=\"cli-url\"><th>CLI URL</th><td class=\"muted\" colspan=\"2\">{} ({}) is forward {}</td></tr>",
            esc(&cli_url.url),
            esc(&cli_url.source),
            esc(forward)
        ),
        (None, Some(problem)) => format!(
            "<tr class=\"cli-url\"><th>CLI URL</th><td>{}</td><td class=\"muted\">{}</td></tr>",
            state_badge(Some(false), "", "not measured"),
            esc(problem)
        ),
        (None, None) => String::new(),
    }
}

/// The last wake's row: how long after the first round after a gap (a sleep, a stall) the first byte through
/// the forward worked again.
fn resume_row(resume: Option<&ResumeStatus>, now: f64) -> String {
    let Some(resume) = resume else { return String::new() };
    let (badge, text) = if resume.usable {
        (
            state_badge(Some(resume.seconds <= 60.0), "quick", "slow"),
            format!("usable in {}", human_duration(resume.seconds)),
        )
    } else {
        (state_badge(Some(false), "", "unusable"), format!("not usable within {}", human_duration(resume.seconds)))
    };
    format!(
        "<tr class=\"resume\"><th>After the last wake</th><td>{badge}</td><td class=\"muted\">{text} · {} ago · \
         shorten it with ServerAliveInterval x ServerAliveCountMax and the supervisor's restart delay</td></tr>",
        human_duration((now - resume.at).max(0.0))
    )
}

/// The last refused connect's row: why the gateway refused, whose connect, how long ago, and the docs' fix.
fn refusal_row(refusal: Option<&RefusalStatus>, now: f64) -> String {
    let Some(refusal) = refusal else { return String::new() };
    let whose = if refusal.channel == "ws" { "the CLI's connect" } else { "the handshake probe's connect" };
    format!(
        "<tr class=\"refusal\"><th>Connect refused</th><td>{}</td><td class=\"muted\">{whose}, {} ago · {}</td></tr>",
        state_badge(Some(false), "", &refusal.reason),
        human_duration((now - refusal.at).max(0.0)),
        esc(&refusal.fix)
    )
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

/// The chart's geometry: one 3-pixel column per five-minute bucket, a log axis from 100 µs to 10 s.
const CHART_HEIGHT: f64 = 120.0;
const COLUMN: f64 = 3.0;
const LOG_FLOOR: f64 = -4.0;
const LOG_DECADES: f64 = 5.0;

fn chart_y(seconds: f64) -> f64 {
    let decades = (seconds.max(1e-6).log10() - LOG_FLOOR).clamp(0.0, LOG_DECADES);
    CHART_HEIGHT - decades / LOG_DECADES * CHART_HEIGHT
}

/// An SVG step path through the buckets' values (each bucket a level across its column, so a lone bucket is
/// a visible dash), broken where a bucket has none (no probe answered, asleep).
fn chart_path(points: &[(usize, Option<f64>)]) -> String {
    let mut path = String::new();
    let mut drawing = false;
    for (column, value) in points {
        match value {
            Some(seconds) => {
                let (x, y) = (*column as f64 * COLUMN, chart_y(*seconds));
                let _ = write!(path, "{}{x:.1} {y:.1} H{:.1} ", if drawing { "L" } else { "M" }, x + COLUMN);
                drawing = true;
            }
            None => drawing = false,
        }
    }
    path.trim_end().to_owned()
}

/// The last 24 h of one forward's first-byte p50 and p99 per five-minute bucket, inline SVG (no script).
fn first_byte_chart(buckets: &[Bucket], first_bucket: u64, current_bucket: u64) -> String {
    let columns = ((current_bucket - first_bucket) / BUCKET_SECONDS + 1) as usize;
    let width = columns as f64 * COLUMN;
    let (mut p50, mut p99) = (Vec::with_capacity(columns), Vec::with_capacity(columns));
    for column in 0..columns {
        let start = first_bucket + column as u64 * BUCKET_SECONDS;
        let quantiles = buckets.iter().find(|b| b.start == start).and_then(Bucket::first_byte_quantiles);
        p50.push((column, quantiles.map(|q| q.0)));
        p99.push((column, quantiles.map(|q| q.1)));
    }
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\" \
         aria-label=\"first byte p50 and p99 per five-minute bucket, last 24 hours\"><title>first byte p50 (blue) and p99 \
         (orange) per five-minute bucket, last 24 hours, log scale</title>",
        height = CHART_HEIGHT
    );
    for (seconds, label) in [(1e-3, "1 ms"), (1e-2, "10 ms"), (1e-1, "100 ms"), (1.0, "1 s")] {
        let y = chart_y(seconds);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"0\" x2=\"{width:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"2\" y=\"{:.1}\">{label}</text>",
            y - 2.0
        );
    }
    let _ = write!(
        svg,
        "<path class=\"p99\" d=\"{}\"/><path class=\"p50\" d=\"{}\"/></svg>",
        chart_path(&p99),
        chart_path(&p50)
    );
    svg
}

/// Render the page from the status report; `refresh` adds a script-free reload every that many seconds.
pub fn render(status: &StatusReport, refresh: Option<u32>) -> String {
    let mut html = String::with_capacity(64 * 1024);
    head(&mut html, &status.version, refresh);
    let now = status.now as u64;
    let current_bucket = now / BUCKET_SECONDS * BUCKET_SECONDS;
    let first_bucket = current_bucket.saturating_sub((BUCKETS_KEPT as u64 - 1) * BUCKET_SECONDS);
    for forward in &status.forwards {
        forward_section(&mut html, forward, status.now, first_bucket, current_bucket);
    }
    model_hosts_section(&mut html, &status.model_hosts);
    exposure_section(&mut html, &status.gateways);
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

/// One forward's section: its table of rows, the 24-hour strip, the first-byte chart and its auth failures.
fn forward_section(html: &mut String, forward: &ForwardStatus, now: f64, first_bucket: u64, current_bucket: u64) {
    let name = esc(&forward.forward);
    let _ = write!(html, "<section class=\"forward\" id=\"forward-{name}\"><h2>Forward {name}</h2>");
    let session = forward.ssh_session.as_ref();
    let session_state = session.map(|s| s.state.as_str());
    let session_badge = match session_state {
        Some("up") => state_badge(Some(true), "ssh up", ""),
        Some("unreadable") | Some("unsupported") | Some("unknown") | None => state_badge(None, "", ""),
        Some(other) => state_badge(Some(false), "", &esc(other)),
    };
    let owner = match session.and_then(|s| Some((s.pid?, s.name.as_deref()?, s.parent_name.as_deref()))) {
        Some((pid, comm, parent)) => {
            let user = session.and_then(|s| s.user.as_deref()).unwrap_or("an unknown user");
            format!("{} pid {pid} ({}), parent {}", esc(comm), esc(user), esc(parent.unwrap_or("?")))
        }
        None => match session.and_then(|s| s.detail.as_deref()) {
            Some(detail) => format!("{}: {}", esc(session_state.unwrap_or("")), esc(detail)),
            None => esc(session_state.unwrap_or("not checked yet")),
        },
    };
    let orphans = orphans_row(forward.ssh_orphans.as_deref(), now)
        + &option_risks_row(forward.ssh_option_risks.as_deref())
        + &cli_url_row(forward.cli_url.as_ref());
    let refusal = refusal_row(forward.last_refusal.as_ref(), now);
    let resume = resume_row(forward.last_resume.as_ref(), now);
    // The rows of the kinds that declare their own (kinds::PAGE_ROWS), in the registry's order.
    let kinds: String = crate::kinds::PAGE_ROWS.iter().map(|row| row(forward, now)).collect();
    let _ = write!(
        html,
        "<table><tr><th>SSH session</th><td class=\"ssh\">{session_badge}</td><td class=\"muted\">{owner}</td></tr>{orphans}\
         <tr><th>SYN</th><td class=\"syn\">{}</td><td class=\"muted\">{} of {} connects succeeded</td></tr>\
         <tr><th>Gateway</th><td class=\"gateway\">{}</td><td class=\"muted\">{}</td></tr>\
         <tr><th>First byte</th><td>p50 {}</td><td class=\"muted\">p99 {} · {} samples</td></tr>\
         <tr><th>WebSocket</th><td colspan=\"2\" class=\"muted\">{}</td></tr>{refusal}\
         <tr><th>Uptime</th><td>{}</td><td class=\"muted\">last completed 5-minute bucket · {} unobserved</td></tr>{resume}{kinds}</table>",
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
    html.push_str(&first_byte_chart(buckets, first_bucket, current_bucket));
    html.push_str(
        "<div class=\"legend muted\">first byte through the tunnel per five-minute bucket: \
         <b style=\"color:#1565c0\">p50</b> and <b style=\"color:#ef6c00\">p99</b>, log scale; gaps: no probe answered \
         (down or asleep). The model host's round trip is in its table below.</div>",
    );
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

/// The model hosts' table, when there are any.
fn model_hosts_section(html: &mut String, hosts: &[ModelHostStatus]) {
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
}

/// The gateways' bind exposure table, when there are any.
fn exposure_section(html: &mut String, gateways: &[GatewayStatus]) {
    if !gateways.is_empty() {
        html.push_str("<h2>Gateway bind exposure</h2><table class=\"exposure\"><tr><th>gateway</th><th>loopback</th><th>private</th><th>tailnet</th><th>public</th><th>allowed</th><th></th></tr>");
        for gateway in gateways {
            let scopes = &gateway.listen_sockets;
            let exposed = gateway.exposed_since.map(|t| t > 0.0);
            let count = |n: Option<i64>| n.map_or("–".to_owned(), |n| n.to_string());
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&gateway.gateway),
                count(scopes.loopback),
                count(scopes.private),
                count(scopes.tailnet),
                count(scopes.public),
                esc(&gateway.allowed.join(", ")),
                state_badge(exposed.map(|e| !e), "within allowed", "exposed")
            );
        }
        html.push_str("</table>");
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_steps_through_buckets_and_breaks_at_gaps() {
        let path = chart_path(&[(0, Some(1e-3)), (1, Some(1e-2)), (2, None), (3, Some(1.0))]);
        assert_eq!(path, "M0.0 96.0 H3.0 L3.0 72.0 H6.0 M9.0 24.0 H12.0");
        assert_eq!(chart_y(1e-9), CHART_HEIGHT, "below the floor sits on the axis");
        assert_eq!(chart_y(1e9), 0.0, "above the top sits on the top");
    }

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
        let html = render(&recorder.status(std::time::SystemTime::now()), None);
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        let strip = &html[html.find("<div class=\"strip\"").unwrap()..];
        let strip = &strip[..strip.find("</div>").unwrap()];
        assert_eq!(strip.matches("<span ").count(), BUCKETS_KEPT, "one cell per five-minute bucket of the day");
    }
}

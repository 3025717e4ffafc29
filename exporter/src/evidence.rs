//! `evidence`: one `.tar.gz` with what the runbook's "freeze evidence" step asks for, redacted.
//!
//! Contents: `summary.md` (the first failing layer per forward), the doctor's report (`doctor.txt`,
//! `doctor.json`), the routing rows, the running exporter's `/api/status`, `/metrics` and incident timeline
//! (`timeline.md`) (or a note that none
//! answered: the doctor's run is then the fresh probe run), `ssh -G` of each forward's host, the gateway's
//! `/startupz` and `/readyz` through each forward, and `openclaw gateway status --json` when the CLI is on PATH.
//!
//! Redaction: every token any source on this machine holds (the CLI's environment, `.env` files, `openclaw.json`,
//! the configured token file) is replaced by `<redacted>` in every file before it is archived; nothing read
//! from a token source is ever written whole.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::doctor;
use crate::token_sources;

/// The replacement of a token in the archive.
const REDACTED: &str = "<redacted>";
/// The largest page of the running exporter taken.
const MAX_PAGE: usize = 16 * 1024 * 1024;

/// One file of the archive.
struct Entry {
    name: String,
    text: String,
}

/// Gather everything, redact it, and write the archive to `out`. Returns the first failing layer's line.
pub async fn collect(config: &Config, out: &Path) -> std::io::Result<String> {
    let mut entries = Vec::new();
    let mut reports = Vec::new();
    for forward in &config.forwards {
        reports.push(doctor::run(config, forward).await);
    }
    if config.forwards.is_empty() && !config.gateways.is_empty() {
        reports.push(doctor::run_gateway_host(config).await);
    }
    entries.push(Entry { name: "doctor.txt".into(), text: reports.iter().map(doctor::Report::render).collect() });
    entries
        .push(Entry { name: "doctor.json".into(), text: serde_json::to_string_pretty(&reports).unwrap_or_default() });
    entries.push(Entry { name: "routing.md".into(), text: crate::cli::routing_rows(config, true) });

    // The running exporter, if one serves this config's address.
    let timeout = Duration::from_secs(5);
    let web = config.web.listen;
    let mut exporter_note = String::new();
    for (path, name) in [("/api/status", "exporter/api-status.json"), ("/metrics", "exporter/metrics.txt")] {
        match probes::http::get_document_bounded(web, path, timeout, MAX_PAGE).await {
            Ok((200, body)) => {
                entries.push(Entry { name: name.into(), text: String::from_utf8_lossy(&body).into_owned() })
            }
            Ok((status, _)) => exporter_note = format!("the exporter on {web} answered {path} with HTTP {status}"),
            Err(err) => {
                exporter_note =
                    format!("no exporter answered on {web} ({err}): the doctor's run above is the fresh probe run")
            }
        }
    }
    if !exporter_note.is_empty() {
        entries.push(Entry { name: "exporter/NOT-AVAILABLE.txt".into(), text: exporter_note.clone() + "\n" });
    }
    // The incident timeline, from the running exporter's report, as a table.
    let timeline = entries
        .iter()
        .find(|e| e.name == "exporter/api-status.json")
        .and_then(|e| serde_json::from_str::<crate::record::status::StatusReport>(&e.text).ok())
        .map(|status| timeline_table(&status));
    entries.push(Entry {
        name: "timeline.md".into(),
        text: timeline
            .unwrap_or_else(|| "No running exporter: no timeline (it lives in the exporter's memory).\n".into()),
    });

    for forward in &config.forwards {
        if let Some(host) = forward.ssh_host.as_ref().or(forward.jump_host.as_ref()) {
            let host = forward.ssh_host.as_ref().map_or(host.host.as_str(), |h| h.host.as_str());
            let text = match Command::new("ssh").args(["-G", host]).stdin(std::process::Stdio::null()).output() {
                Ok(output) => {
                    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
                }
                Err(err) => format!("ssh -G {host}: {err}\n"),
            };
            entries.push(Entry { name: format!("ssh-G/{}.txt", forward.name), text });
        }
        for path in ["/startupz", "/readyz"] {
            let text = match probes::http::get_document_bounded(forward.local, path, timeout, 64 * 1024).await {
                Ok((status, body)) => format!("HTTP {status}\n{}", String::from_utf8_lossy(&body)),
                Err(err) => format!("{err}\n"),
            };
            entries.push(Entry { name: format!("gateway/{}{}.txt", forward.name, path.replace('/', "-")), text });
        }
    }
    if let Some(status) = openclaw_gateway_status() {
        entries.push(Entry { name: "openclaw-gateway-status.json".into(), text: status });
    }

    let first_failure = summary_line(&reports);
    entries.insert(0, Entry { name: "summary.md".into(), text: summary(&reports, &exporter_note, &first_failure) });

    // Redact every token this machine's sources hold, in every file.
    let tokens = tokens_to_redact(config);
    for entry in &mut entries {
        for token in &tokens {
            entry.text = entry.text.replace(token.as_str(), REDACTED);
        }
    }
    write_archive(out, &entries)?;
    Ok(first_failure)
}

/// The incident timeline as a Markdown table, newest first.
fn timeline_table(status: &crate::record::status::StatusReport) -> String {
    use crate::record::timeline::human_duration;
    let mut text = String::from("| start (UTC) | duration | what | where | detail |\n|---|---|---|---|---|\n");
    for event in &status.timeline {
        let start =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs_f64(event.start.max(0.0)));
        let duration = match (event.spell, event.end) {
            (true, Some(end)) => human_duration(end - event.start),
            (true, None) => format!("{} (going on)", human_duration(status.now - event.start)),
            (false, _) => "-".into(),
        };
        text.push_str(&format!("| {start} | {duration} | {} | {} | {} |\n", event.kind, event.subject, event.detail));
    }
    if status.timeline.is_empty() {
        text.push_str("\nNothing changed since the exporter started.\n");
    }
    text
}

/// `openclaw gateway status --json`, when the CLI is on PATH (10 s at most).
fn openclaw_gateway_status() -> Option<String> {
    let mut child = Command::new("openclaw")
        .args(["gateway", "status", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Some("openclaw gateway status --json: no answer within 10 s\n".into());
            }
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    Some(text)
}

/// Every token a source on this machine holds (the ones the CLI and the exporter read), at least 4 bytes.
fn tokens_to_redact(config: &Config) -> Vec<String> {
    let settings = &config.auth_probe;
    let locations =
        token_sources::Locations::from_env(settings.openclaw_config.as_deref(), settings.token_file.as_deref());
    let mut tokens: Vec<String> = token_sources::read(&locations)
        .sources
        .iter()
        .filter_map(|source| source.token.as_ref())
        .map(|secret| String::from_utf8_lossy(secret.expose()).into_owned())
        .filter(|token| token.len() >= 4)
        .collect();
    // Longest first, so a token that contains another is replaced whole.
    tokens.sort_by_key(|t| std::cmp::Reverse(t.len()));
    tokens.dedup();
    tokens
}

/// The first failing step over every forward, as one line.
fn summary_line(reports: &[doctor::Report]) -> String {
    for report in reports {
        if let Some(step) = report.steps.iter().find(|s| s.status == doctor::Status::Fail) {
            return format!(
                "forward {}: step {} \"{}\" fails: {}",
                report.forward, step.number, step.name, step.evidence
            );
        }
    }
    "every layer passes".into()
}

fn summary(reports: &[doctor::Report], exporter_note: &str, first_failure: &str) -> String {
    let when = humantime::format_rfc3339_seconds(SystemTime::now());
    let mut text = format!(
        "# openclaw-tunnel-exporter evidence, {when}\n\n**First failing layer:** {first_failure}\n\n| forward | first failing step | next |\n|---|---|---|\n"
    );
    for report in reports {
        let failing = report.steps.iter().find(|s| s.status == doctor::Status::Fail);
        text.push_str(&format!(
            "| {} | {} | {} |\n",
            report.forward,
            failing.map_or("none".to_owned(), |s| format!("{}. {}: {}", s.number, s.name, s.evidence)),
            failing.and_then(|s| s.next.as_deref()).unwrap_or("-")
        ));
    }
    if !exporter_note.is_empty() {
        text.push_str(&format!("\nThe running exporter: {exporter_note}.\n"));
    }
    text.push_str(
        "\nFiles: doctor.txt and doctor.json (every layer), routing.md, timeline.md (what happened), exporter/ \
         (the running exporter's /api/status and /metrics), ssh-G/ (each forward's host as ssh resolves it), gateway/ (/startupz and \
         /readyz through each forward), openclaw-gateway-status.json (when the CLI is installed). Tokens from \
         every source on this machine are replaced by <redacted>.\n",
    );
    text
}

fn write_archive(out: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(out)?;
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    let mtime = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(entry.text.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_cksum();
        archive.append_data(&mut header, format!("evidence/{}", entry.name), entry.text.as_bytes())?;
    }
    archive.into_inner()?.finish()?.sync_all()
}

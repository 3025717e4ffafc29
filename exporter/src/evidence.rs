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

use probes::redact::{mask_ssh_options, secret_name};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::doctor;
use crate::token_sources;

/// The replacement of a token in the archive.
const REDACTED: &str = probes::redact::REDACTED;
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
    entries.push(Entry { name: "routing.md".into(), text: config.routing_rows(true) });

    // The running exporter, if one serves this config's address.
    let timeout = Duration::from_secs(5);
    let web = config.web.listen;
    let mut exporter_note = String::new();
    for (path, name) in [("/api/status", "exporter/api-status.json"), ("/metrics", "exporter/metrics.txt")] {
        match probes::http::get_document_bounded(&probes::route::Route::Local(web), path, timeout, MAX_PAGE).await {
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
            let args = ["-G", "--", host].map(str::to_owned);
            let text = match probes::ssh_options::run_ssh_g(&args, Duration::from_secs(10)) {
                Some(probes::spawn::Ran::Exited { stdout, stderr, .. }) => mask_ssh_options(
                    &(String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr)),
                ),
                Some(probes::spawn::Ran::TimedOut) => format!("ssh -G {host}: no answer within 10 s\n"),
                None => format!("ssh -G {host}: cannot run ssh\n"),
            };
            entries.push(Entry { name: format!("ssh-G/{}.txt", forward.name), text });
        }
        // The gateway's documents through the forward's route (a wss:// route verifies the certificate first:
        // nothing is read from an impostor).
        let route = match forward.probe_route() {
            Ok(route) => route,
            Err(err) => {
                entries.push(Entry { name: format!("gateway/{}.txt", forward.name), text: format!("{err}\n") });
                continue;
            }
        };
        for path in ["/startupz", "/readyz"] {
            let text = match probes::http::get_document_bounded(&route, path, timeout, 64 * 1024).await {
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

    // Redact every secret this machine's sources hold, in every file.
    let tokens = secrets_to_redact(config);
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
        // The status comes from whatever answers on web.listen: a time beyond reason is shown as `?`.
        let start = crate::clock::rfc3339_seconds(event.start);
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

/// The arguments `evidence` runs the CLI with: `--no-probe`, the CLI's own view of the gateway service
/// (installed, running, its config) without its connectivity probe. Without it the command probes its target,
/// and in remote mode that target is the forward's port with the token in the `connect` frame: `evidence` is
/// often run because something is wrong with that port (another user's process may hold it), so it never asks
/// the CLI to send a credential anywhere.
const OPENCLAW_STATUS_ARGS: [&str; 4] = ["gateway", "status", "--json", "--no-probe"];

/// `openclaw gateway status --json --no-probe`, when the CLI is on PATH (10 s at most; its output read while it
/// runs, at most 16 MiB kept).
fn openclaw_gateway_status() -> Option<String> {
    let mut command = Command::new("openclaw");
    command.args(OPENCLAW_STATUS_ARGS);
    match probes::spawn::run_within(&mut command, Duration::from_secs(10), 16 * 1024 * 1024)? {
        probes::spawn::Ran::Exited { stdout, .. } => Some(String::from_utf8_lossy(&stdout).into_owned()),
        probes::spawn::Ran::TimedOut => {
            Some("openclaw gateway status --json --no-probe: no answer within 10 s\n".into())
        }
    }
}

/// Every secret a source on this machine holds: the gateway tokens (every source the CLI and the exporter
/// read), secret-named values of the environment, the CLI's `.env` files and `openclaw.json` (gateway
/// passwords among them), and the remote-write bearer token and password files. At least 4 bytes each,
/// longest first (a secret that contains another is replaced whole).
fn secrets_to_redact(config: &Config) -> Vec<String> {
    let settings = &config.auth_probe;
    let locations = settings.token_locations();
    let mut secrets = tokens_to_redact(config);
    for (name, value) in std::env::vars() {
        if secret_name(&name) {
            secrets.push(value);
        }
    }
    for file in [&locations.state_env_file, &locations.gateway_env_file].into_iter().flatten() {
        if let Ok(entries) = dotenvy::from_path_iter(file) {
            secrets.extend(entries.flatten().filter(|(name, _)| secret_name(name)).map(|(_, value)| value));
        }
    }
    if let Some(json) = locations.config_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        if let Ok(value) = json5::from_str::<serde_json::Value>(&json) {
            collect_secret_values(&value, false, &mut secrets);
        }
    }
    if let Some(remote) = &config.remote_write {
        let files = remote.bearer_token_file.iter().chain(remote.basic_auth.iter().map(|(_, file)| file));
        secrets.extend(files.filter_map(|file| std::fs::read_to_string(file).ok()).map(|s| s.trim().to_owned()));
    }
    secrets.retain(|secret| secret.len() >= 4);
    secrets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    secrets.dedup();
    secrets
}

/// The string values under secret-named keys of a JSON document (a SecretRef's file it cannot read stays a
/// path, which is no secret).
fn collect_secret_values(value: &serde_json::Value, secret: bool, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) if secret => out.push(text.clone()),
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                collect_secret_values(value, secret || secret_name(key), out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_secret_values(item, secret, out)),
        _ => {}
    }
}

/// Every token a source on this machine holds (the ones the CLI and the exporter read), at least 4 bytes.
fn tokens_to_redact(config: &Config) -> Vec<String> {
    let settings = &config.auth_probe;
    let locations = settings.token_locations();
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
         /readyz through each forward), openclaw-gateway-status.json (the CLI's `gateway status --json --no-probe`, \
         when the CLI is installed: no probe, so no credential sent). Tokens from \
         every source on this machine are replaced by <redacted>.\n",
    );
    text
}

fn write_archive(out: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Readable by its owner only from the first byte: it holds what a tunnel failure looked like.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // Windows: opened with WRITE_DAC too, so its ACL is set before a byte is written.
    #[cfg(windows)]
    std::os::windows::fs::OpenOptionsExt::access_mode(&mut options, 0x4000_0000 | 0x0004_0000);
    let file = options.open(out)?;
    #[cfg(windows)]
    owner_only::restrict(&file)?;
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

/// Windows has no mode bits: the archive's DACL is replaced by a single entry, full access for this process's
/// user, protected from what the folder would pass down (a profile folder's ACL says much the same; a shared
/// folder's would not). Built for Windows in CI (`tests/cross.sh`, clippy), run on Windows only.
#[cfg(windows)]
mod owner_only {
    use std::os::windows::io::AsRawHandle;

    use windows::core::PWSTR;
    use windows::Win32::Foundation::{CloseHandle, LocalFree, ERROR_SUCCESS, GENERIC_ALL, HANDLE, HLOCAL};
    use windows::Win32::Security::Authorization::{
        SetEntriesInAclW, SetSecurityInfo, EXPLICIT_ACCESS_W, NO_MULTIPLE_TRUSTEE, SET_ACCESS, SE_FILE_OBJECT,
        TRUSTEE_IS_SID, TRUSTEE_IS_USER, TRUSTEE_W,
    };
    use windows::Win32::Security::{
        GetTokenInformation, TokenUser, ACL, DACL_SECURITY_INFORMATION, NO_INHERITANCE,
        PROTECTED_DACL_SECURITY_INFORMATION, TOKEN_QUERY, TOKEN_USER,
    };
    use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    /// Give `file` an ACL for this process's user alone.
    pub(super) fn restrict(file: &std::fs::File) -> std::io::Result<()> {
        let failed = |err: windows::core::Error| std::io::Error::other(err.to_string());
        // SAFETY: the token handle is closed on every path; the TOKEN_USER buffer is sized by the first call and
        // u64-aligned; the ACL SetEntriesInAclW allocates is freed with LocalFree; the file handle outlives the
        // call.
        unsafe {
            let mut token = HANDLE::default();
            OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token).map_err(failed)?;
            let mut len = 0u32;
            let _ = GetTokenInformation(token, TokenUser, None, 0, &mut len);
            let mut buffer = vec![0u64; (len as usize).div_ceil(8).max(1)];
            let read = GetTokenInformation(token, TokenUser, Some(buffer.as_mut_ptr().cast()), len, &mut len);
            let _ = CloseHandle(token);
            read.map_err(failed)?;
            let user = &*(buffer.as_ptr() as *const TOKEN_USER);
            let entry = EXPLICIT_ACCESS_W {
                grfAccessPermissions: GENERIC_ALL.0,
                grfAccessMode: SET_ACCESS,
                grfInheritance: NO_INHERITANCE,
                Trustee: TRUSTEE_W {
                    pMultipleTrustee: std::ptr::null_mut(),
                    MultipleTrusteeOperation: NO_MULTIPLE_TRUSTEE,
                    TrusteeForm: TRUSTEE_IS_SID,
                    TrusteeType: TRUSTEE_IS_USER,
                    ptstrName: PWSTR(user.User.Sid.0.cast()),
                },
            };
            let mut acl: *mut ACL = std::ptr::null_mut();
            let status = SetEntriesInAclW(Some(&[entry]), None, &mut acl);
            if status != ERROR_SUCCESS {
                return Err(std::io::Error::from_raw_os_error(status.0 as i32));
            }
            let status = SetSecurityInfo(
                HANDLE(file.as_raw_handle()),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                None,
                None,
                Some(acl),
                None,
            );
            let _ = LocalFree(Some(HLOCAL(acl.cast())));
            if status != ERROR_SUCCESS {
                return Err(std::io::Error::from_raw_os_error(status.0 as i32));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_options_that_run_commands_keep_their_shape_and_lose_their_secrets() {
        let text = "host mac-ap1\nhostname 127.0.0.1\nproxycommand sshpass -p hunter2-canary ssh -W %h:%p bastion\n\
                    localcommand curl --password=pw-canary -H X-Api-Token=tok-canary https://example\n\
                    setenv LANG=C DEPLOY_KEY=key-canary\n\
                    knownhostscommand fetch-keys Zk3q9Xv2Lw8Rt5Yp1Mn7Bc4\n\
                    proxycommand plink -pw plink-canary bastion\nuser alice\n";
        let masked = mask_ssh_options(text);
        for canary in
            ["hunter2-canary", "pw-canary", "tok-canary", "key-canary", "Zk3q9Xv2Lw8Rt5Yp1Mn7Bc4", "plink-canary"]
        {
            assert!(!masked.contains(canary), "{canary} kept:\n{masked}");
        }
        for kept in [
            "host mac-ap1",
            "hostname 127.0.0.1",
            "sshpass -p <redacted> ssh -W %h:%p bastion",
            "setenv LANG=<redacted>",
            "user alice",
            "https://example",
        ] {
            assert!(masked.contains(kept), "{kept} lost:\n{masked}");
        }
    }

    #[test]
    fn secret_values_are_found_under_secret_named_keys_at_any_depth() {
        let json: serde_json::Value = serde_json::json!({
            "gateway": {"auth": {"password": "gw-password"}, "remote": {"token": "gw-token", "url": "ws://x"}},
            "models": [{"apiKey": "model-key"}]
        });
        let mut found = Vec::new();
        collect_secret_values(&json, false, &mut found);
        found.sort();
        assert_eq!(found, ["gw-password", "gw-token", "model-key"]);
    }
}

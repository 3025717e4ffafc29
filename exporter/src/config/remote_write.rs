//! `[remote_write]`'s keys validated: the receiver's URL (never with a user and password in it), the files it
//! names, the external labels and headers as they go on the wire, and the queue's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::Checker;
use super::raw::RawRemoteWrite;
use super::RemoteWrite;

/// `remote_write.protocol`: the remote-write protocol to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolChoice {
    /// 1.0 only.
    V1,
    /// 2.0 only (a receiver that cannot read it is retried, never sent 1.0).
    V2,
    /// 2.0 first, 1.0 once the receiver shows it reads only 1.0 (415, or a 2xx without the written-headers).
    Auto,
}

/// `remote_write.histograms`: how histograms go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistogramChoice {
    /// Native where a 2.0 receiver's written-headers confirm they were stored; classic otherwise (a 1.0
    /// receiver cannot say: VictoriaMetrics answers 204 to native histograms and drops them).
    Auto,
    /// Native on 1.0 too (a Prometheus with native histograms on); its "native histograms are disabled" 500
    /// still steps down to classic.
    Native,
    /// Classic series always.
    Classic,
}

/// `[remote_write]`: every file named must exist; names and headers must be valid on the wire.
pub(super) fn validate_remote_write(rw: RawRemoteWrite, state_file: Option<&Path>, c: &mut Checker<'_>) -> RemoteWrite {
    let url = receiver_url(&rw.url, c);
    let max_bytes = match rw.max_bytes.parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() >= 1024 * 1024 => size.as_u64(),
        Ok(_) => {
            c.problem("remote_write.max_bytes", &rw.max_bytes, "must be at least 1MiB");
            1024 * 1024
        }
        Err(_) => {
            c.problem("remote_write.max_bytes", &rw.max_bytes, "not a size like 512MiB or 2GB");
            1024 * 1024
        }
    };
    let mut file = |key: &str, value: Option<String>| {
        value.map(|value| {
            let path = PathBuf::from(&value);
            if !path.is_file() {
                c.problem(key, &value, "no such file");
            }
            path
        })
    };
    let bearer_token_file = file("remote_write.bearer_token_file", rw.bearer_token_file);
    let basic_auth = rw.basic_auth.map(|auth| {
        let password = file("remote_write.basic_auth.password_file", Some(auth.password_file));
        (auth.username, password.expect("given"))
    });
    let (ca_file, cert_file, key_file) = match rw.tls {
        Some(tls) => (
            file("remote_write.tls.ca_file", tls.ca_file),
            file("remote_write.tls.cert_file", tls.cert_file),
            file("remote_write.tls.key_file", tls.key_file),
        ),
        None => (None, None, None),
    };
    if bearer_token_file.is_some() && basic_auth.is_some() {
        c.problem("remote_write.basic_auth", &"(set)", "give either bearer_token_file or basic_auth, not both");
    }
    let client_cert = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (cert, _) => {
            let key = if cert.is_some() { "remote_write.tls.key_file" } else { "remote_write.tls.cert_file" };
            c.problem(key, &"(unset)", "a client certificate needs both cert_file and key_file");
            None
        }
    };
    let external_labels = external_labels(rw.external_labels, c);
    let headers = headers(rw.headers, c);
    let queue_dir = match rw.queue_dir {
        Some(dir) => PathBuf::from(dir),
        None => default_queue_dir(state_file).unwrap_or_else(|| {
            c.problem(
                "remote_write.queue_dir",
                &"(unset)",
                "this user has no home or state directory to keep the queue in; set queue_dir to a directory of your own (a shared temporary directory is never used: other users could read or replace the queue)",
            );
            PathBuf::new()
        }),
    };
    if queue_dir.is_file() {
        c.problem("remote_write.queue_dir", &queue_dir.display(), "is a file; name a directory");
    }
    let min_backoff =
        c.duration("remote_write.min_backoff", &rw.min_backoff, Duration::from_millis(10), Duration::from_secs(600));
    let max_backoff =
        c.duration("remote_write.max_backoff", &rw.max_backoff, Duration::from_millis(10), Duration::from_secs(3600));
    if max_backoff < min_backoff {
        c.problem("remote_write.max_backoff", &rw.max_backoff, "must be at least remote_write.min_backoff");
    }
    RemoteWrite {
        url,
        min_backoff,
        max_backoff,
        interval: c.duration(
            "remote_write.interval",
            &rw.interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        ),
        queue_dir,
        max_bytes,
        bearer_token_file,
        basic_auth,
        ca_file,
        client_cert,
        external_labels,
        headers,
        // At most the sender's batch (240 rounds: `remote_write::MAX_BATCH_ROUNDS`).
        batch_rounds: if (1..=240).contains(&rw.batch_rounds) {
            rw.batch_rounds
        } else {
            c.problem("remote_write.batch_rounds", &rw.batch_rounds, "must be 1 to 240");
            4
        },
        protocol: match rw.protocol.as_str() {
            "1.0" => ProtocolChoice::V1,
            "2.0" => ProtocolChoice::V2,
            "auto" => ProtocolChoice::Auto,
            other => {
                c.problem("remote_write.protocol", &other, "must be \"1.0\", \"2.0\" or \"auto\"");
                ProtocolChoice::Auto
            }
        },
        histograms: match rw.histograms.as_str() {
            "auto" => HistogramChoice::Auto,
            "native" => HistogramChoice::Native,
            "classic" => HistogramChoice::Classic,
            other => {
                c.problem("remote_write.histograms", &other, "must be \"auto\", \"native\" or \"classic\"");
                HistogramChoice::Auto
            }
        },
    }
}

/// Beside the state file when there is one, else the platform's per-user state directory (Linux
/// `$XDG_STATE_HOME`, macOS `~/Library/Application Support`, Windows `%LOCALAPPDATA%`); `None` when there is
/// neither (no home directory): never the shared temporary directory.
fn default_queue_dir(state_file: Option<&Path>) -> Option<PathBuf> {
    let base = match state_file.and_then(Path::parent) {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => dirs::state_dir().or_else(dirs::data_local_dir)?.join("openclaw-tunnel-exporter"),
    };
    Some(base.join("remote-write"))
}

/// The receiver's URL: http or https with a host, and never a user and password in it (they would be logged
/// wherever the URL is, and the client never sends them).
fn receiver_url(raw: &str, c: &mut Checker<'_>) -> url::Url {
    let placeholder = || url::Url::parse("http://invalid.invalid/").expect("a valid URL");
    match url::Url::parse(raw) {
        // A user and password in the URL would be logged wherever the URL is, and the client never sends
        // them: refuse them, naming the value without them.
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            c.problem(
                "remote_write.url",
                &crate::openclaw_cli_url::redacted(url.as_str()).replacen("://", "://<user:password removed>@", 1),
                "carries a user and password; give them as remote_write.basic_auth (username, password_file)",
            );
            placeholder()
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => url,
        _ => {
            c.problem(
                "remote_write.url",
                &crate::openclaw_cli_url::redacted(raw),
                "must be an http:// or https:// URL",
            );
            placeholder()
        }
    }
}

/// The labels every pushed series carries: `job` and `instance` (this machine's name) unless the config
/// gives them, each name and value valid on the wire; sorted.
fn external_labels(raw: std::collections::BTreeMap<String, String>, c: &mut Checker<'_>) -> Vec<(String, String)> {
    let mut external_labels = vec![
        ("job".to_owned(), "openclaw-tunnel".to_owned()),
        ("instance".to_owned(), gethostname::gethostname().to_string_lossy().into_owned()),
    ];
    for (name, value) in raw {
        let key = format!("remote_write.external_labels.{name}");
        let valid_name = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
            && !name.is_empty()
            && !name.starts_with("__");
        if !valid_name {
            c.problem(&key, &name, "a label name is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __");
        } else if value.is_empty() || value.len() > 256 {
            c.problem(&key, &value, "must be 1 to 256 bytes");
        }
        external_labels.retain(|(existing, _)| *existing != name);
        external_labels.push((name, value));
    }
    external_labels.sort();
    external_labels
}

/// Extra HTTP headers: valid on the wire, and none the exporter sets itself (credentials have their own keys).
fn headers(raw: std::collections::BTreeMap<String, String>, c: &mut Checker<'_>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (name, value) in raw {
        let key = format!("remote_write.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || hyper::header::HeaderValue::from_str(&value).is_err()
        {
            // The value may be a credential: named by its key alone.
            c.problem(&key, &"<value not shown>", "not a valid HTTP header");
        } else if lower == "authorization" || lower.starts_with("content-") || lower == "host" {
            c.problem(&key, &name, "set by the exporter itself (use bearer_token_file or basic_auth for credentials)");
        }
        headers.push((name, value));
    }
    headers
}

//! The checker every section's validation writes its problems through (each names where its value came from,
//! its key and the value), and the bounds every probe interval keeps. Below the section files
//! (`validate.rs` and the sections beside their kinds' keys), which all use it and none of which it uses.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::{HostPort, Origins};

/// Collects problems while turning raw strings into typed values.
pub(super) struct Checker<'a> {
    origins: &'a Origins<'a>,
    problems: &'a mut Vec<String>,
}

impl<'a> Checker<'a> {
    /// A checker naming each key's source through `origins`, collecting into `problems`.
    pub(super) fn new(origins: &'a Origins<'a>, problems: &'a mut Vec<String>) -> Checker<'a> {
        Checker { origins, problems }
    }

    pub(super) fn problem(&mut self, key: &str, value: &dyn fmt::Display, what: &str) {
        self.problems.push(format!("{}: key `{key}` = \"{value}\": {what}", self.origins.of(key)));
    }

    pub(super) fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse::<SocketAddr>().unwrap_or_else(|err| {
            // The runbook's step 3: a name is not an address. `localhost` may resolve to ::1 first while
            // `ssh -L 127.0.0.1:...` listens on IPv4 only, so the CLI and the exporter would talk to nothing.
            let what = match value.rsplit_once(':') {
                Some((host, port)) if host.eq_ignore_ascii_case("localhost") => format!(
                    "use 127.0.0.1:{port}, not localhost: localhost may resolve to ::1 first, while ssh -L \
                     127.0.0.1:{port}:... listens on IPv4 only"
                ),
                _ => format!("not an IP:port address ({err})"),
            };
            self.problem(key, &value, &what);
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// `host` or `host:port` (port `default_port` when absent).
    pub(super) fn host_port(&mut self, key: &str, value: &str, default_port: u16) -> HostPort {
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, port.parse::<u16>().ok()),
            _ => (value, Some(default_port)),
        };
        let valid_host = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b));
        match port {
            Some(port) if valid_host && port != 0 => HostPort { host: host.to_owned(), port },
            _ => {
                self.problem(key, &value, "must be host or host:port");
                HostPort { host: value.to_owned(), port: default_port }
            }
        }
    }

    pub(super) fn loopback_addr(&mut self, key: &str, value: &str, allow_non_loopback: bool, flag: &str) -> SocketAddr {
        let addr = self.addr(key, value);
        if !addr.ip().is_loopback() && !allow_non_loopback {
            self.problem(
                key,
                &value,
                &format!("not a loopback address; set {flag} = true to listen beyond this machine"),
            );
        }
        addr
    }

    pub(super) fn duration(&mut self, key: &str, value: &str, min: Duration, max: Duration) -> Duration {
        match humantime::parse_duration(value) {
            Ok(d) if d >= min && d <= max => d,
            Ok(_) => {
                let range = format!(
                    "must be between {} and {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                );
                self.problem(key, &value, &range);
                min.max(Duration::from_secs(1))
            }
            Err(err) => {
                self.problem(key, &value, &format!("not a duration like 1s or 500ms ({err})"));
                min.max(Duration::from_secs(1))
            }
        }
    }

    pub(super) fn label(&mut self, key: &str, value: &str, seen: &mut HashSet<String>, what: &str) {
        if !is_label_safe(value) {
            self.problem(key, &value, "must be 1-64 characters of A-Z a-z 0-9 _ . -");
        } else if !seen.insert(value.to_owned()) {
            self.problem(key, &value, &format!("duplicate {what} name"));
        }
    }
}

/// The shortest interval or timeout a probe may be given.
pub(super) const PROBE_MIN: Duration = Duration::from_millis(10);
/// The longest.
pub(super) const PROBE_MAX: Duration = Duration::from_secs(3600);

/// Label values must stay short and printable whatever the config says.
fn is_label_safe(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

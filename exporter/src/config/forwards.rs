//! `[[forward]]`: each forward's road, intervals, ssh names and WSL companion, validated (the road itself in
//! [`super::route`]).

use std::collections::HashSet;
use std::time::Duration;

use super::checker::{Checker, PROBE_MAX, PROBE_MIN};
use super::raw::RawForward;
use super::Forward;

/// `[[forward]]`: the forwards, and for each whether `ws_handshake_interval` was set (its default depends on
/// `[auth_probe]`).
pub(super) fn validate_forwards(raw: Vec<RawForward>, c: &mut Checker<'_>) -> (Vec<Forward>, Vec<bool>) {
    let mut names = HashSet::new();
    let mut forwards = Vec::new();
    let mut ws_handshake_set = Vec::new();
    for (index, forward) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("forward[{index}].{field}");
        c.label(&key("name"), &forward.name, &mut names, "forward");
        let route = super::route::validate_route(&forward, index, c);
        if !forward.health_path.starts_with('/') || forward.health_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            c.problem(
                &key("health_path"),
                &forward.health_path,
                "must start with / and contain no spaces or control characters",
            );
        }
        ws_handshake_set.push(forward.ws_handshake_interval.is_some());
        let has_local = matches!(route, super::RouteConfig::Local(_));
        let intervals: Vec<(&IntervalKey, Option<Duration>)> =
            INTERVALS.iter().map(|row| (row, row.validate(&forward, index, c))).collect();
        let mut typed = Forward {
            route,
            health_path: forward.health_path,
            syn_interval: Duration::ZERO,
            first_byte_interval: Duration::ZERO,
            readiness_interval: Duration::ZERO,
            ws_handshake_interval: None,
            hygiene_interval: None,
            control_ui_interval: None,
            timeout: Duration::ZERO,
            ssh_host: forward.ssh_host.map(|host| c.host_port(&key("ssh_host"), &host, 22)),
            jump_host: forward.jump_host.map(|host| c.host_port(&key("jump_host"), &host, 22)),
            remote: c.host_port(&key("remote"), &forward.remote, 18789),
            owner: forward.owner,
            trusted_owners: forward.trusted_owners,
            wsl_companion: forward.wsl_companion.as_deref().and_then(|url| {
                let companion = wsl_companion(&key("wsl_companion"), url, c);
                if companion.is_some() && !has_local {
                    c.problem(
                        &key("wsl_companion"),
                        &url,
                        "is for an ssh forward (`local`): a direct route has no relay",
                    );
                }
                companion
            }),
            name: forward.name,
        };
        for (row, value) in intervals {
            (row.set)(&mut typed, value);
        }
        forwards.push(typed);
    }
    (forwards, ws_handshake_set)
}

/// One per-forward interval key: its raw key, its default, whether `off` turns its probe off, its bounds, where
/// the raw value is and where the typed one goes. A kind's interval is one row here.
pub(super) struct IntervalKey {
    /// The key in `[[forward]]`.
    key: &'static str,
    /// Its value when unset; `None` when another section decides (the handshake's, from `[auth_probe]`).
    default: Option<&'static str>,
    /// Whether `off` is a value (the probe does not run).
    may_be_off: bool,
    /// Its bounds.
    bounds: (Duration, Duration),
    /// The raw value, as written.
    raw: fn(&RawForward) -> Option<&str>,
    /// Where the typed value goes (`None`: off, or unset with no default).
    set: fn(&mut Forward, Option<Duration>),
}

/// Every per-forward interval key, in the order the README lists them.
pub(super) const INTERVALS: &[IntervalKey] = &[
    IntervalKey {
        key: "syn_interval",
        default: Some("1s"),
        may_be_off: false,
        bounds: (PROBE_MIN, PROBE_MAX),
        raw: |f| f.syn_interval.as_deref(),
        set: |f, d| f.syn_interval = d.unwrap_or_default(),
    },
    IntervalKey {
        key: "first_byte_interval",
        default: Some("5s"),
        may_be_off: false,
        bounds: (PROBE_MIN, PROBE_MAX),
        raw: |f| f.first_byte_interval.as_deref(),
        set: |f, d| f.first_byte_interval = d.unwrap_or_default(),
    },
    IntervalKey {
        key: "readiness_interval",
        default: Some("15s"),
        may_be_off: false,
        bounds: (PROBE_MIN, PROBE_MAX),
        raw: |f| f.readiness_interval.as_deref(),
        set: |f, d| f.readiness_interval = d.unwrap_or_default(),
    },
    // Unset: 60 s when the auth probe covers the forward, else 5 min (`config::auth`, which knows which).
    IntervalKey {
        key: "ws_handshake_interval",
        default: None,
        may_be_off: true,
        bounds: (PROBE_MIN, PROBE_MAX),
        raw: |f| f.ws_handshake_interval.as_deref(),
        set: |f, d| f.ws_handshake_interval = d,
    },
    // Orphans outlive the session that made them by hours; half a minute finds one long before its alert's 10
    // minutes and reads the process table twice a minute (one read serves every forward).
    IntervalKey {
        key: "hygiene_interval",
        default: Some("30s"),
        may_be_off: true,
        bounds: (PROBE_MIN, PROBE_MAX),
        raw: |f| f.hygiene_interval.as_deref(),
        set: |f, d| f.hygiene_interval = d,
    },
    // The Control UI breaks apart from /healthz (a gateway upgraded without its built UI assets) and is opened
    // by hand, not every few seconds: once a minute finds it long before a user does, at one page read.
    IntervalKey {
        key: "control_ui_interval",
        default: Some("1m"),
        may_be_off: true,
        bounds: (PROBE_MIN, PROBE_MAX),
        raw: |f| f.control_ui_interval.as_deref(),
        set: |f, d| f.control_ui_interval = d,
    },
    IntervalKey {
        key: "timeout",
        default: Some("3s"),
        may_be_off: false,
        bounds: (PROBE_MIN, PROBE_MAX),
        raw: |f| f.timeout.as_deref(),
        set: |f, d| f.timeout = d.unwrap_or_default(),
    },
];

impl IntervalKey {
    /// `forward`'s value of this key, checked: `None` when it is `off` (where allowed) or unset without a
    /// default. A problem names `forward[index].key` and the value.
    fn validate(&self, forward: &RawForward, index: usize, c: &mut Checker<'_>) -> Option<Duration> {
        let value = (self.raw)(forward).or(self.default)?;
        if self.may_be_off && value == "off" {
            return None;
        }
        Some(c.duration(&format!("forward[{index}].{}", self.key), value, self.bounds.0, self.bounds.1))
    }
}

/// A `wsl_companion` URL: `http://ADDRESS:PORT` with an IP address (or `localhost`) and no path, so no name is
/// resolved between the relay check and the read (the companion is reached through WSL's relay on Windows'
/// loopback, or at the VM's address).
fn wsl_companion(key: &str, url: &str, c: &mut Checker<'_>) -> Option<std::net::SocketAddr> {
    let authority = url.strip_prefix("http://").map(|rest| rest.strip_suffix('/').unwrap_or(rest));
    let parsed = authority.and_then(|authority| {
        let localhost = authority.strip_prefix("localhost:").and_then(|port| port.parse::<u16>().ok());
        match localhost {
            Some(port) => Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
            None => authority.parse::<std::net::SocketAddr>().ok(),
        }
    });
    match parsed.filter(|addr| addr.port() != 0) {
        Some(addr) => Some(addr),
        None => {
            c.problem(key, &url, "must be http://ADDRESS:PORT, the companion exporter's web address inside WSL2 (e.g. http://127.0.0.1:9465)");
            None
        }
    }
}

//! The keys of the auth kinds validated: `[[auth_tap]]`, `[auth_probe]` and `[auth]` (the revision registry).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::checker::Checker;
use super::raw::{RawAuth, RawAuthProbe, RawAuthTap, WS_HANDSHAKE_WITHOUT_TOKEN, WS_HANDSHAKE_WITH_TOKEN};
use super::*;

/// `[[auth_tap]]`: each names a configured forward and listens where no other tap, and not the web server
/// (`web_listen`), does.
pub(super) fn validate_auth_taps(
    raw: Vec<RawAuthTap>,
    forwards: &[Forward],
    web_listen: std::net::SocketAddr,
    c: &mut Checker<'_>,
) -> Vec<AuthTap> {
    let mut taps = Vec::new();
    let mut tap_listens = HashSet::new();
    for (index, tap) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("auth_tap[{index}].{field}");
        let fronted = forwards.iter().find(|forward| forward.name == tap.forward);
        if fronted.is_none() {
            c.problem(&key("forward"), &tap.forward, "names no configured [[forward]]");
        }
        let listen = c.loopback_addr(&key("listen"), &tap.listen, tap.allow_non_loopback, &key("allow_non_loopback"));
        if !tap_listens.insert(listen) {
            c.problem(&key("listen"), &tap.listen, "another auth_tap listens there");
        } else if listen == web_listen {
            c.problem(&key("listen"), &tap.listen, "web.listen is there");
        }
        let upstream = match (&tap.upstream, fronted.map(|forward| &forward.route)) {
            (Some(upstream), Some(RouteConfig::Direct(direct))) => {
                c.problem(
                    &key("upstream"),
                    upstream,
                    &format!(
                        "the forward {} is a url route ({}): the tap connects to it, TLS and pin included; remove upstream",
                        tap.forward, direct.url
                    ),
                );
                None
            }
            (Some(upstream), _) => Some(c.addr(&key("upstream"), upstream)),
            (None, _) => None,
        };
        let reached = upstream.or_else(|| fronted.and_then(Forward::local));
        if reached == Some(listen) {
            c.problem(
                &key("upstream"),
                &tap.upstream.as_deref().unwrap_or("(the forward's local)"),
                "the tap would connect to itself",
            );
        }
        if tap.max_connections == 0 {
            c.problem(&key("max_connections"), &0, "must be at least 1");
        }
        let header_read_timeout = c.duration(
            &key("header_read_timeout"),
            &tap.header_read_timeout,
            Duration::from_millis(100),
            Duration::from_secs(600),
        );
        let idle_timeout = c.duration(
            &key("idle_timeout"),
            &tap.idle_timeout,
            Duration::from_millis(100),
            Duration::from_secs(86_400),
        );
        taps.push(AuthTap {
            forward: tap.forward,
            listen,
            upstream,
            max_connections: tap.max_connections,
            header_read_timeout,
            idle_timeout,
        });
    }
    taps
}

/// `[auth_probe]`: the forwards it covers (all by default), and the WebSocket handshake's default interval of
/// each forward that did not set one (shorter when the probe may send the token).
pub(super) fn validate_auth_probe(
    raw: RawAuthProbe,
    forwards: &mut [Forward],
    ws_handshake_set: &[bool],
    c: &mut Checker<'_>,
) -> AuthProbe {
    let probed = match (raw.enabled, raw.forwards) {
        (false, _) => Vec::new(),
        (true, Some(listed)) => listed,
        (true, None) => forwards.iter().map(|f| f.name.clone()).collect(),
    };
    for (index, forward) in probed.iter().enumerate() {
        if !forwards.iter().any(|f| f.name == *forward) {
            c.problem(&format!("auth_probe.forwards[{index}]"), forward, "names no configured [[forward]]");
        }
    }
    for (forward, set) in forwards.iter_mut().zip(ws_handshake_set) {
        if !*set {
            let default =
                if probed.contains(&forward.name) { WS_HANDSHAKE_WITH_TOKEN } else { WS_HANDSHAKE_WITHOUT_TOKEN };
            forward.ws_handshake_interval = humantime::parse_duration(default).ok();
        }
    }
    AuthProbe {
        interval: c.duration("auth_probe.interval", &raw.interval, Duration::from_secs(1), Duration::from_secs(86400)),
        forwards: probed,
        token_file: raw.token_file.map(PathBuf::from),
        openclaw_config: raw.openclaw_config.map(PathBuf::from),
    }
}

/// `[auth]`: the current revision, the rotation time and the registry of revisions' hashes.
pub(super) fn validate_auth(raw: RawAuth, c: &mut Checker<'_>) -> Auth {
    use probes::auth_tap::credential;
    let mut names = HashSet::new();
    let mut registry = probes::auth_tap::Registry::new();
    for (index, revision) in raw.revision.into_iter().enumerate() {
        let key = |field: &str| format!("auth.revision[{index}].{field}");
        c.label(&key("name"), &revision.name, &mut names, "revision");
        if matches!(revision.name.as_str(), "unknown" | "none") {
            c.problem(&key("name"), &revision.name, "reserved label value");
        }
        // The values are meant to be hashes, but a token pasted by mistake must not be echoed.
        match (revision.hash, revision.sha256) {
            (Some(phc), None) => match credential::parse_hash(&phc) {
                Ok(phc) => registry.add_hashed(revision.name, phc),
                Err(err) => c.problem(&key("hash"), &"<redacted>", &format!("{err} (see `openclaw-tunnel-exporter fingerprint`)")),
            },
            (None, Some(hex)) => match credential::from_hex(&hex.to_ascii_lowercase()) {
                Some(fingerprint) => registry.add_sha256(revision.name, fingerprint),
                None => c.problem(
                    &key("sha256"),
                    &"<redacted>",
                    "must be 64 hex digits; better, replace it with the `hash = ` line `openclaw-tunnel-exporter fingerprint` prints",
                ),
            },
            (Some(_), Some(_)) => c.problem(&key("sha256"), &"<redacted>", "give hash or sha256, not both"),
            (None, None) => c.problem(&key("hash"), &"<missing>", "required (see `openclaw-tunnel-exporter fingerprint`)"),
        }
    }
    if let Some(current) = &raw.current {
        if !names.contains(current) {
            c.problem("auth.current", current, "names no [[auth.revision]]");
        }
    }
    let rotated_at = raw.rotated_at.as_ref().and_then(|text| match humantime::parse_rfc3339_weak(text) {
        Ok(at) => Some(at),
        Err(err) => {
            c.problem("auth.rotated_at", text, &format!("not an RFC 3339 time like 2026-11-20T09:00:00Z ({err})"));
            None
        }
    });
    Auth { current: raw.current, rotated_at, registry }
}

impl AuthProbe {
    /// Where the token the openclaw CLI would use is read from (its config, `token_file`, the environment):
    /// the one place every reader of the token (the auth probe, its watch, the handshake probe, the doctor)
    /// builds them.
    pub fn token_locations(&self) -> crate::token_sources::Locations {
        crate::token_sources::Locations::from_env(self.openclaw_config.as_deref(), self.token_file.as_deref())
    }

    /// Where the openclaw CLI's own config is read from (its gateway URL), with no token file.
    pub fn cli_config_locations(&self) -> crate::token_sources::Locations {
        crate::token_sources::Locations::from_env(self.openclaw_config.as_deref(), None)
    }
}

//! `[[forward]]`: each forward's road, intervals, ssh names and WSL companion, validated (the road itself in
//! [`super::route`]).

use std::collections::HashSet;

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
        forwards.push(Forward {
            route,
            health_path: forward.health_path,
            syn_interval: c.duration(&key("syn_interval"), &forward.syn_interval, PROBE_MIN, PROBE_MAX),
            first_byte_interval: c.duration(
                &key("first_byte_interval"),
                &forward.first_byte_interval,
                PROBE_MIN,
                PROBE_MAX,
            ),
            readiness_interval: c.duration(
                &key("readiness_interval"),
                &forward.readiness_interval,
                PROBE_MIN,
                PROBE_MAX,
            ),
            ws_handshake_interval: forward.ws_handshake_interval.as_deref().and_then(|value| {
                (value != "off").then(|| c.duration(&key("ws_handshake_interval"), value, PROBE_MIN, PROBE_MAX))
            }),
            hygiene_interval: (forward.hygiene_interval != "off")
                .then(|| c.duration(&key("hygiene_interval"), &forward.hygiene_interval, PROBE_MIN, PROBE_MAX)),
            control_ui_interval: (forward.control_ui_interval != "off")
                .then(|| c.duration(&key("control_ui_interval"), &forward.control_ui_interval, PROBE_MIN, PROBE_MAX)),
            timeout: c.duration(&key("timeout"), &forward.timeout, PROBE_MIN, PROBE_MAX),
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
        });
    }
    (forwards, ws_handshake_set)
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

//! A forward whose ssh runs inside WSL2 while the CLI runs on Windows: Windows sees the forward's port held by
//! WSL's relay (`wslrelay.exe`, the user's own), which carries each connection into the VM, where the ssh
//! `-L` listens on the VM's loopback. The relay outlives the VM's listener, and WSL stops an idle VM, so the
//! relay alone says nothing about the ssh behind it. A companion exporter inside WSL2 watches that ssh; this
//! module asks it ([`ask`]) and judges its answer ([`judge_companion_status`]): the forward is trusted (up, token
//! sent) only while the companion says its own user's ssh owns a forward on the same port.
//!
//! The companion's address on Windows is itself relayed, so it must be held by the same user's relay too: a
//! listener another user put there first could otherwise answer "ours" for a port it also holds.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Lookup, Outcome};

/// The largest companion answer read (its `/api/status`: one forward is a few KiB; a companion with hundreds
/// of forwards stays well under it).
pub const MAX_COMPANION_STATUS_BYTES: usize = 1024 * 1024;

/// What the companion exporter inside WSL2 says of the forward behind the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Companion {
    /// Not asked (a lookup that only names the holder).
    NotAsked,
    /// The forward has no `wsl_companion`: nothing can vouch for the ssh inside.
    NotConfigured,
    /// Its own user's ssh owns a forward on the port: the road is whole.
    Vouches {
        /// That ssh's pid inside the VM, when the companion names it.
        ssh_pid: Option<u32>,
    },
    /// It watches a forward on the port, but no ssh of its user owns it (its session state, from a fixed set).
    SshDown {
        /// The companion's session state for that forward: `no_listener`, `not_ssh`, `not_ours`, ...
        state: &'static str,
    },
    /// It watches no ssh forward on the port.
    Unwatched,
    /// It could not be read, or answered something that is not its status: why.
    Unreachable(String),
}

crate::labels!(Companion {
    Companion::NotAsked => "not_asked",
    Companion::NotConfigured => "not_configured",
    Companion::Vouches { .. } => "vouches",
    Companion::SshDown { .. } => "ssh_down",
    Companion::Unwatched => "unwatched",
    Companion::Unreachable(_) => "unreachable",
});

impl Companion {
    /// The down cause of a round through the relay (`openclaw_tunnel_down_seconds_total`'s `cause`): the ssh
    /// inside is down, or nothing says it is up.
    pub fn down_cause(&self) -> &'static str {
        match self {
            Companion::SshDown { .. } => "wsl_ssh_down",
            _ => "wsl_companion_unreachable",
        }
    }

    /// Why the forward is not trusted through the relay, for people (`None` while the companion vouches).
    pub fn why_not(&self) -> Option<String> {
        Some(match self {
            Companion::Vouches { .. } => return None,
            Companion::NotAsked => "the companion exporter inside WSL2 was not asked".into(),
            Companion::NotConfigured => "the forward's port is held by WSL's relay, and no wsl_companion is \
                                         configured to say whether the ssh inside WSL2 owns it"
                .into(),
            Companion::SshDown { state } => format!(
                "the companion exporter inside WSL2 says no ssh of its user owns the forward's port there (its \
                 session state: {state})"
            ),
            Companion::Unwatched => "the companion exporter inside WSL2 watches no ssh forward on this port".into(),
            Companion::Unreachable(why) => format!("the companion exporter inside WSL2 cannot be read: {why}"),
        })
    }
}

/// Every session state a companion may report, as this exporter names them; anything else is `other`.
const KNOWN_STATES: [&str; 7] = ["up", "no_listener", "not_ssh", "unreadable", "unsupported", "unknown", "wsl_relay"];

/// Judge a companion's `/api/status` body for the forward on `forward_port`: the first ssh forward (by its
/// `route.address`) on that port. Its session `up` with its own user's ssh vouches; any other state is the
/// ssh down; no such forward is unwatched. A body that is not a status report is unreachable, by what was
/// wrong, never by what it says (it is another process's answer).
pub fn judge_companion_status(body: &[u8], forward_port: u16) -> Companion {
    let Ok(report) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Companion::Unreachable("its answer is not JSON".into());
    };
    let Some(forwards) = report.get("forwards").and_then(serde_json::Value::as_array) else {
        return Companion::Unreachable("its answer has no forwards: not an exporter's /api/status".into());
    };
    let on_port = forwards.iter().find(|forward| {
        let route = forward.get("route");
        let transport = route.and_then(|r| r.get("transport")).and_then(serde_json::Value::as_str);
        let address = route.and_then(|r| r.get("address")).and_then(serde_json::Value::as_str);
        transport == Some("ssh")
            && address.and_then(|a| a.parse::<SocketAddr>().ok()).is_some_and(|a| a.port() == forward_port)
    });
    let Some(forward) = on_port else { return Companion::Unwatched };
    let Some(session) = forward.get("ssh_session").filter(|s| !s.is_null()) else {
        return Companion::Unreachable("it has not checked its forward's ssh session yet".into());
    };
    let state = session.get("state").and_then(serde_json::Value::as_str).unwrap_or_default();
    let same_user = session.get("same_user").and_then(serde_json::Value::as_bool);
    let pid = session.get("pid").and_then(serde_json::Value::as_u64).and_then(|pid| u32::try_from(pid).ok());
    match (state, same_user) {
        ("up", Some(true)) => Companion::Vouches { ssh_pid: pid },
        ("up", _) => Companion::SshDown { state: "not_ours" },
        (other, _) => {
            Companion::SshDown { state: KNOWN_STATES.into_iter().find(|known| *known == other).unwrap_or("other") }
        }
    }
}

/// Ask the companion at `companion` about the forward on `forward_port`, within `timeout`: its address must be
/// held by this user's WSL relay when it is a loopback one (a local listener of anyone else's could answer
/// anything), then its `/api/status`, bounded by [`MAX_COMPANION_STATUS_BYTES`]. `holder` is the companion
/// address's holder found last time: while it still holds the address, that check is one system call, as the
/// forward's own steady state is (the relay is asked every round).
pub async fn ask(
    companion: SocketAddr,
    forward_port: u16,
    lookup: Lookup,
    holder: &mut Option<super::Owner>,
    timeout: Duration,
) -> Companion {
    let deadline = tokio::time::Instant::now() + timeout;
    if companion.ip().is_loopback() {
        let target = super::Target { lookup, last_owner: holder.take(), ..super::Target::new(companion) };
        let found = tokio::task::spawn_blocking(move || {
            if !target.lookup.available() {
                return Outcome::Unsupported { detail: format!("the {} lookup runs on Linux only", lookup.as_str()) };
            }
            super::quick_lookup(&target).unwrap_or_else(|| super::full_lookup(&target))
        });
        let found = tokio::time::timeout(timeout, found).await;
        if let Ok(Ok(outcome @ Outcome::WslRelay { .. })) = &found {
            *holder = outcome.owner().cloned();
        }
        match found {
            Ok(Ok(Outcome::WslRelay { .. })) => {}
            Ok(Ok(Outcome::NoListener)) => {
                return Companion::Unreachable(format!("nothing listens on {companion} (WSL stopped, or no relay)"))
            }
            Ok(Ok(other)) => {
                return Companion::Unreachable(format!(
                    "{companion} is held by {}, not WSL's relay of this user",
                    other.holder()
                ))
            }
            Ok(Err(_)) | Err(_) => {
                return Companion::Unreachable(format!("could not tell who holds {companion} in time"))
            }
        }
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let route = crate::route::Route::Local(companion);
    match crate::http::get_document_bounded(&route, "/api/status", left, MAX_COMPANION_STATUS_BYTES).await {
        Ok((200, body)) => judge_companion_status(&body, forward_port),
        Ok((status, _)) => Companion::Unreachable(format!("{companion} answered /api/status with HTTP {status}")),
        Err(failure) => Companion::Unreachable(format!("{companion}: {failure}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    fn status(forwards: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "version": "x", "now": 1.0, "forwards": forwards })).unwrap()
    }

    fn forward(address: &str, state: &str, same_user: Option<bool>) -> serde_json::Value {
        serde_json::json!({
            "forward": "mac",
            "route": { "transport": "ssh", "address": address },
            "ssh_session": { "state": state, "pid": 4242, "name": "ssh", "same_user": same_user },
        })
    }

    #[test]
    fn the_companion_vouches_only_for_its_own_users_ssh_on_the_same_port() {
        let up = status(serde_json::json!([forward("127.0.0.1:18789", "up", Some(true))]));
        assert_eq!(judge_companion_status(&up, 18789), Companion::Vouches { ssh_pid: Some(4242) });
        assert_eq!(judge_companion_status(&up, 18790), Companion::Unwatched, "another port is not vouched for");
        let other_user = status(serde_json::json!([forward("127.0.0.1:18789", "up", Some(false))]));
        assert_eq!(judge_companion_status(&other_user, 18789), Companion::SshDown { state: "not_ours" });
        let unknown_user = status(serde_json::json!([forward("127.0.0.1:18789", "up", None)]));
        assert_eq!(judge_companion_status(&unknown_user, 18789).label(), "ssh_down");
        for state in ["no_listener", "not_ssh", "unreadable"] {
            let down = status(serde_json::json!([forward("127.0.0.1:18789", state, Some(true))]));
            assert_eq!(judge_companion_status(&down, 18789), Companion::SshDown { state }, "{state}");
        }
        // A state this exporter does not know is bounded, never echoed.
        let odd = status(serde_json::json!([forward("127.0.0.1:18789", "<script>", Some(true))]));
        assert_eq!(judge_companion_status(&odd, 18789), Companion::SshDown { state: "other" });
        // A direct route on the same port is no ssh forward.
        let direct = status(serde_json::json!([{ "route": { "transport": "ws", "address": "ws://10.0.0.2:18789" } }]));
        assert_eq!(judge_companion_status(&direct, 18789), Companion::Unwatched);
    }

    #[test]
    fn an_answer_that_is_no_status_report_is_unreachable() {
        for body in [&b"<html>"[..], b"{}", b"{\"forwards\": 7}", b""] {
            assert_eq!(judge_companion_status(body, 18789).label(), "unreachable", "{body:?}");
        }
        let unchecked = status(serde_json::json!([{ "route": { "transport": "ssh", "address": "127.0.0.1:18789" },
                                                    "ssh_session": null }]));
        assert_eq!(judge_companion_status(&unchecked, 18789).label(), "unreachable");
    }

    #[test]
    fn each_answer_has_its_down_cause_and_words() {
        assert_eq!(Companion::SshDown { state: "no_listener" }.down_cause(), "wsl_ssh_down");
        for companion in [Companion::Unwatched, Companion::Unreachable("x".into()), Companion::NotConfigured] {
            assert_eq!(companion.down_cause(), "wsl_companion_unreachable");
            assert!(companion.why_not().is_some_and(|why| why.contains("WSL")), "{companion:?}");
        }
        assert_eq!(Companion::Vouches { ssh_pid: None }.why_not(), None);
    }
}

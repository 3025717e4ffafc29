//! 401/403 by token revision: the active auth probe, the auth tap's events on real traffic, and rotation
//! (configured, or the first burst of WebSocket closes 4001).

use std::time::{Duration, SystemTime};

use probes::auth_probe::{self, Answer};
use probes::auth_tap::credential::{self};
use probes::auth_tap::{AuthEvent, AuthSink, CloseBy};
use probes::refusal::Refusal;
use probes::Label;

use super::families::{
    AuthFailureLabels, AuthRequestLabels, ForwardChannelLabels, ForwardChannelReasonLabels, ForwardCodeByLabels,
    ForwardKindLabels, ForwardLabels, RevisionLabels, SourceRevisionLabels,
};
use super::Recorder;
use crate::clock::unix_seconds;
use crate::config::Config;

/// What marks a rotation: the config's `rotated_at`, else the first WebSocket close 4001 of a burst.
#[derive(Default)]
pub struct Rotation {
    configured: bool,
    last_seen: Option<std::time::Instant>,
    /// When the current revision became current: `rotated_at`, else the first 4001 of the last burst; `None`
    /// until either is known (the rotation happened before this process started).
    at: Option<SystemTime>,
    /// The revisions listed before the current one in the registry.
    older: std::collections::HashSet<String>,
}

impl Rotation {
    /// Whether a refusal of `revision` seen at `seen` is an old revision's failure after the rotation: the
    /// event's own time against the rotation's, so a 401 a second before the switch is not one.
    fn counts_as_old(&self, revision: &str, seen: SystemTime) -> bool {
        self.older.contains(revision) && self.at.is_none_or(|at| seen >= at)
    }
}

/// The codes an old revision's failure can have (429 is a rate limit, not a refused token).
const OLD_REVISION_CODES: [&str; 2] = ["401", "403"];

/// 401, 403 and 429 as label values; other statuses are not auth failures.
fn auth_code_label(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("401"),
        403 => Some("403"),
        429 => Some("429"),
        _ => None,
    }
}

/// The auth failure codes, as label values.
pub const AUTH_CODES: [&str; 3] = ["401", "403", "429"];

/// Every auth failure series of `channels` (forward, channel) and `revisions`.
pub(crate) fn failure_series<'a>(
    channels: &'a [(String, &'static str)],
    revisions: &'a [String],
) -> impl Iterator<Item = AuthFailureLabels> + 'a {
    channels.iter().flat_map(move |(forward, channel)| {
        revisions.iter().flat_map(move |revision| {
            AUTH_CODES.into_iter().map(move |code| AuthFailureLabels {
                forward: forward.clone(),
                channel,
                code,
                token_revision: revision.clone(),
            })
        })
    })
}

/// WebSocket close codes as label values: the registered ones and the gateway's own, else `other`. A close
/// without a code is 1005 (RFC 6455: no status received).
fn ws_close_label(code: Option<u16>) -> &'static str {
    WS_CLOSE_CODES
        .iter()
        .find(|label| label.parse::<u16>().ok() == Some(code.unwrap_or(1005)))
        .copied()
        .unwrap_or("other")
}

/// Close codes with their own label value; every other code is `other`.
const WS_CLOSE_CODES: [&str; 16] = [
    "1000", "1001", "1002", "1003", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012", "1013", "4000",
    "4001", "other",
];

/// The codes whose series exist at zero for every tap, both sides (what the dashboards and alerts read).
const WS_CLOSE_PRESET: [&str; 8] = ["1000", "1001", "1006", "1008", "1012", "1013", "4000", "4001"];

impl AuthSink for Recorder {
    fn auth_event(&self, forward: &str, event: AuthEvent<'_>) {
        let m = &self.metrics;
        let forward = forward.to_owned();
        match event {
            AuthEvent::Request { channel, revision } => {
                let labels =
                    AuthRequestLabels { forward, channel: channel.as_str(), token_revision: revision.to_owned() };
                m.auth_requests.get_or_create(&labels).inc();
            }
            AuthEvent::Failure { channel, code, revision } => {
                if let Some(code) = auth_code_label(code) {
                    let token_revision = revision.to_owned();
                    let labels = AuthFailureLabels { forward, channel: channel.as_str(), code, token_revision };
                    m.auth_failures.get_or_create(&labels).inc();
                    self.count_if_old_revision(&labels, SystemTime::now());
                }
            }
            AuthEvent::ConnectRefused { reason } => self.record_connect_refusal(&forward, "ws", reason),
            AuthEvent::WsClose { code, by } => {
                if code == Some(4001) && by == CloseBy::Gateway {
                    self.mark_rotation_seen();
                }
                let labels = ForwardCodeByLabels { forward, code: ws_close_label(code), by: by.as_str() };
                m.ws_closes.get_or_create(&labels).inc();
            }
            AuthEvent::GatewayShutdown { restart_expected } => {
                let kind = if restart_expected.is_some() { "restart" } else { "stop" };
                m.shutdown_notices.get_or_create(&ForwardKindLabels { forward: forward.clone(), kind }).inc();
                let labels = ForwardLabels { forward };
                match restart_expected {
                    Some(expected) => {
                        m.restart_expected_seconds.get_or_create(&labels).set(expected.as_secs_f64());
                    }
                    None => {
                        m.restart_expected_seconds.remove(&labels);
                    }
                }
            }
            AuthEvent::OverLimit { refused_new } => {
                self.count_connection_closed("auth_tap", if refused_new { "limit_new" } else { "limit_silent" });
            }
            AuthEvent::TimedOut { idle } => {
                self.count_connection_closed("auth_tap", if idle { "idle_timeout" } else { "header_timeout" });
            }
            AuthEvent::Withheld { why } => {
                m.credential_withheld
                    .get_or_create(&super::families::ForwardProbeLabels { forward: forward.clone(), probe: "tap" })
                    .inc();
                tracing::warn!(forward = %forward, "auth tap relayed nothing (502): {why}");
            }
            AuthEvent::FirstByte { channel, elapsed } => {
                let labels = ForwardChannelLabels { forward, channel: channel.as_str() };
                m.observed_first_byte_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
            }
        }
    }
}

impl Recorder {
    /// The revisions the token sources on this machine hold now, by source kind: each set to 1, and the
    /// label sets of what they held before removed.
    pub fn set_local_revisions(&self, held: std::collections::BTreeSet<(&'static str, String)>) {
        let m = &self.metrics;
        let mut last = self.local_revisions.lock().unwrap_or_else(|p| p.into_inner());
        for (source, token_revision) in last.difference(&held) {
            m.token_local_revision.remove(&SourceRevisionLabels { source, token_revision: token_revision.clone() });
        }
        for (source, token_revision) in &held {
            m.token_local_revision
                .get_or_create(&SourceRevisionLabels { source, token_revision: token_revision.clone() })
                .set(1);
        }
        *last = held;
    }

    /// The current revision, the rotation time, and zero-valued auth series for every tapped or probed
    /// forward (so the first failure of a revision is an increase an alert can see).
    pub(super) fn apply_auth(&self, config: &Config) {
        let m = &self.metrics;
        m.token_revision_current.clear();
        m.token_revision_older.clear();
        let registry = &config.auth.registry;
        // The registry lists revisions oldest first: those before the current one are older, those after it
        // staged for a coming rotation (not old).
        let current_at = registry.names().position(|name| config.auth.current.as_deref() == Some(name));
        for (index, name) in registry.names().enumerate() {
            let labels = RevisionLabels { token_revision: name.to_owned() };
            m.token_revision_current.get_or_create(&labels).set(i64::from(Some(index) == current_at));
            m.token_revision_older.get_or_create(&labels).set(i64::from(current_at.is_some_and(|at| index < at)));
        }
        let older: std::collections::HashSet<String> =
            registry.names().take(current_at.unwrap_or(0)).map(str::to_owned).collect();
        let mut rotation = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        rotation.configured = config.auth.rotated_at.is_some();
        if let Some(at) = config.auth.rotated_at {
            m.token_rotation_timestamp.set(unix_seconds(at));
            rotation.at = Some(at);
        } else if rotation.older != older {
            // Another current revision and no configured time: the next 4001 burst will say when.
            rotation.at = None;
        }
        rotation.older = older.clone();
        drop(rotation);
        let revisions: Vec<String> =
            registry.names().chain([credential::UNKNOWN, credential::NONE]).map(str::to_owned).collect();
        let channels: Vec<(String, &'static str)> = config
            .auth_taps
            .iter()
            .flat_map(|tap| [(tap.forward.clone(), "http"), (tap.forward.clone(), "ws")])
            .chain(config.auth_probe.forwards.iter().map(|f| (f.clone(), "probe")))
            .collect();
        for tap in &config.auth_taps {
            for code in WS_CLOSE_PRESET {
                for by in [CloseBy::Gateway, CloseBy::Client] {
                    let labels = ForwardCodeByLabels { forward: tap.forward.clone(), code, by: by.as_str() };
                    m.ws_closes.get_or_create_owned(&labels);
                }
            }
            for kind in ["restart", "stop"] {
                m.shutdown_notices.get_or_create_owned(&ForwardKindLabels { forward: tap.forward.clone(), kind });
            }
        }
        // Every refusal reason at zero on every channel that can see one, so the first is an increase.
        let refusal_channels = config.auth_taps.iter().map(|tap| (tap.forward.clone(), "ws")).chain(
            config
                .forwards
                .iter()
                .filter(|f| f.ws_handshake_interval.is_some() && config.auth_probe.forwards.contains(&f.name))
                .map(|f| (f.name.clone(), "probe")),
        );
        for (forward, channel) in refusal_channels {
            for reason in Refusal::LABELS {
                let labels = ForwardChannelReasonLabels { forward: forward.clone(), channel, reason };
                m.connect_refusals.get_or_create_owned(&labels);
            }
        }
        for (forward, channel) in &channels {
            for token_revision in &revisions {
                let (forward, token_revision) = (forward.clone(), token_revision.clone());

                m.auth_requests.get_or_create_owned(&AuthRequestLabels { forward, channel, token_revision });
            }
        }
        for labels in failure_series(&channels, &revisions) {
            m.auth_failures.get_or_create_owned(&labels);
        }
        // Old-revision failures exist at zero for every older revision (so the first is an increase), and a
        // revision that is no longer older (a rollback, a new current) loses its series.
        m.old_revision_failures.retain(|labels| older.contains(&labels.token_revision));
        for labels in failure_series(&channels, &revisions) {
            if older.contains(&labels.token_revision) && OLD_REVISION_CODES.contains(&labels.code) {
                m.old_revision_failures.get_or_create_owned(&labels);
            }
        }
        let mut index = self.index();
        index.revisions = revisions;
        index.current_revision = config.auth.current.clone();
        index.auth_channels = channels;
    }

    /// The withheld-credential counter of `probe` (auth, ws_handshake, tap) on `forward` at zero.
    pub fn create_withheld_series(&self, forward: &str, probe: &'static str) {
        let labels = super::families::ForwardProbeLabels { forward: forward.to_owned(), probe };
        self.metrics.credential_withheld.get_or_create_owned(&labels);
    }

    /// Count a credential `probe` kept back on `forward` (the listener was not our own user's ssh).
    pub fn count_withheld(&self, forward: &str, probe: &'static str) {
        let labels = super::families::ForwardProbeLabels { forward: forward.to_owned(), probe };
        self.metrics.credential_withheld.get_or_create(&labels).inc();
    }

    /// Count a connect the gateway refused, on `channel` (`ws`: the CLI's through the tap; `probe`: the
    /// handshake probe's), and keep it as the forward's last refusal.
    pub fn record_connect_refusal(&self, forward: &str, channel: &'static str, reason: Refusal) {
        let labels = ForwardChannelReasonLabels { forward: forward.to_owned(), channel, reason: reason.label() };
        self.metrics.connect_refusals.get_or_create(&labels).inc();
        let at = unix_seconds(SystemTime::now());
        self.with_forward(forward, |state| {
            state.last_refusal = Some(super::status::RefusalStatus {
                reason: reason.label().to_owned(),
                channel: channel.to_owned(),
                at,
                fix: reason.fix().to_owned(),
            });
        });
    }

    /// Record one active auth probe: the request, and a failure when refused.
    pub fn record_auth_probe(&self, forward: &str, revision: &str, outcome: &auth_probe::Outcome) {
        let m = &self.metrics;
        let (forward, token_revision) = (forward.to_owned(), revision.to_owned());
        let request =
            AuthRequestLabels { forward: forward.clone(), channel: "probe", token_revision: token_revision.clone() };
        m.auth_requests.get_or_create(&request).inc();
        if let Ok(Answer::Rejected(status)) = outcome {
            if let Some(code) = auth_code_label(*status) {
                let labels = AuthFailureLabels { forward, channel: "probe", code, token_revision };
                m.auth_failures.get_or_create(&labels).inc();
                self.count_if_old_revision(&labels, SystemTime::now());
            }
        }
    }

    /// Whether every token source on this machine holds the same token.
    pub fn set_token_sources_agree(&self, forward: &str, agree: bool) {
        let labels = ForwardLabels { forward: forward.to_owned() };
        self.metrics.token_sources_agree.get_or_create(&labels).set(i64::from(agree));
    }

    /// Count `labels`' failure as an old revision's when its revision is older than the current one and it
    /// was seen at or after the rotation.
    fn count_if_old_revision(&self, labels: &AuthFailureLabels, seen: SystemTime) {
        if !OLD_REVISION_CODES.contains(&labels.code) {
            return;
        }
        let rotation = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        if rotation.counts_as_old(&labels.token_revision, seen) {
            drop(rotation);
            self.metrics.old_revision_failures.get_or_create(labels).inc();
        }
    }

    fn mark_rotation_seen(&self) {
        let mut rotation = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        // A rotation closes every open WebSocket at once: one burst of 4001s is one rotation.
        let fresh = rotation.last_seen.is_none_or(|at| at.elapsed() > Duration::from_secs(60));
        rotation.last_seen = Some(std::time::Instant::now());
        if fresh && !rotation.configured {
            let now = SystemTime::now();
            self.metrics.token_rotation_timestamp.set(unix_seconds(now));
            rotation.at = Some(now);
        }
        drop(rotation);
        if fresh {
            let detail = "the gateway closed WebSockets with 4001 (token rotated)";
            self.timeline().point("token_rotation", "", detail, unix_seconds(SystemTime::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::super::Format;
    use super::*;
    use std::time::UNIX_EPOCH;

    fn failure(token_revision: &str, code: &'static str) -> AuthFailureLabels {
        AuthFailureLabels { forward: "mac".into(), channel: "http", code, token_revision: token_revision.into() }
    }

    #[test]
    fn an_old_revisions_refusal_counts_only_at_or_after_the_rotation() {
        let recorder = Recorder::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let second = Duration::from_secs(1);
        {
            let mut rotation = recorder.rotation.lock().unwrap();
            rotation.at = Some(at);
            rotation.older = ["r1".to_owned()].into();
        }
        recorder.count_if_old_revision(&failure("r1", "401"), at - second);
        recorder.count_if_old_revision(&failure("r1", "401"), at);
        recorder.count_if_old_revision(&failure("r1", "403"), at + second);
        recorder.count_if_old_revision(&failure("r1", "429"), at + second);
        recorder.count_if_old_revision(&failure("r2", "401"), at + second);
        recorder.count_if_old_revision(&failure("r3", "401"), at + second);
        let text = recorder.encode(Format::Prometheus, at + second);
        let series = |revision: &str, code: &str| {
            format!(
                "openclaw_gateway_old_revision_failures_total{{forward=\"mac\",channel=\"http\",code=\"{code}\",token_revision=\"{revision}\"}}"
            )
        };
        assert_eq!(sample(&text, &series("r1", "401")), Some(1.0), "the refusal a second before the switch is out");
        assert_eq!(sample(&text, &series("r1", "403")), Some(1.0));
        assert_eq!(sample(&text, &series("r1", "429")), None, "a rate limit is not a refused token");
        assert_eq!(sample(&text, &series("r2", "401")), None, "the current revision is not old");
        assert_eq!(sample(&text, &series("r3", "401")), None, "a staged revision is not old");

        // No rotation time known (no rotated_at, no 4001 burst since start): the rotation was before this
        // process, so every older revision's refusal counts.
        recorder.rotation.lock().unwrap().at = None;
        recorder.count_if_old_revision(&failure("r1", "401"), at - second * 100);
        let text = recorder.encode(Format::Prometheus, at + second);
        assert_eq!(sample(&text, &series("r1", "401")), Some(2.0));
    }
}

//! The auth kind's record: 401/403 by token revision from the active auth probe and from the auth tap's events
//! on real traffic, rotation (configured, or the first burst of WebSocket closes 4001), the revisions the token
//! sources hold, connects the gateway refused (the tap's and the handshake probe's), credentials withheld from
//! a listener that is not our own ssh; `last_refusal` and `auth_failures` in each forward's `/api/status`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use probes::auth_probe::{self, Answer};
use probes::auth_tap::credential;
use probes::auth_tap::{AuthEvent, CloseBy};
use probes::refusal::Refusal;
use probes::Label;

use crate::clock::unix_seconds;
use crate::config::Config;
use crate::record::families::{
    families, label_sets, latency, FloatGauge, ForwardChannelLabels, ForwardChannelReasonLabels, ForwardCodeByLabels,
    ForwardKindLabels, ForwardLabels, ForwardProbeLabels, Latency, Subjects,
};
use crate::record::kinds::{lock, KindRecord};
use crate::record::tracked::Tracked;
use crate::record::Recorder;

label_sets! {
    /// `forward`, `channel`, `token_revision`.
    AuthRequestLabels { forward: String, channel: &'static str, token_revision: String }
    /// `forward`, `channel`, `code`, `token_revision`.
    AuthFailureLabels { forward: String, channel: &'static str, code: &'static str, token_revision: String }
    /// `token_revision`.
    RevisionLabels { token_revision: String }
    /// `source`, `token_revision`.
    SourceRevisionLabels { source: &'static str, token_revision: String }
}

families! {
/// The auth kind's families.
pub struct AuthFamilies {
    auth_requests: Tracked<AuthRequestLabels, Counter> = Tracked::default(),
        "openclaw_gateway_auth_requests", "Requests seen carrying a credential or none, by token revision (channel: http, ws from the auth tap; probe = the active auth probe)";
    auth_failures: Tracked<AuthFailureLabels, Counter> = Tracked::default(),
        "openclaw_gateway_auth_failures", "Requests refused with 401, 403 or 429, by token revision (a WebSocket AUTH_TOKEN_MISMATCH counts as 401, AUTH_RATE_LIMITED as 429)";
    connect_refusals: Tracked<ForwardChannelReasonLabels, Counter> = Tracked::default(),
        "openclaw_gateway_connect_refusals", "WebSocket connects the gateway refused, by its own reason (token_missing, token_mismatch, device_token_mismatch, scope_mismatch, pairing_required, rate_limited, protocol_mismatch, starting, other); channel: ws (the CLI's connects through the auth tap), probe (the handshake probe's)";
    old_revision_failures: Tracked<AuthFailureLabels, Counter> = Tracked::default(),
        "openclaw_gateway_old_revision_failures", "401 and 403 from a revision older than the current one, at or after the rotation time (what the old-revision page counts: a refusal just before the switch is not in it)";
    token_revision_current: Tracked<RevisionLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_token_revision_current", "1 for the revision configured as current, 0 for the others in the registry";
    token_revision_older: Tracked<RevisionLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_token_revision_older", "1 for a revision older than the current one (listed before it in the registry), 0 for the current one and those staged after it";
    token_local_revision: Tracked<SourceRevisionLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_token_local_revision", "1 for each revision a token source on this machine holds (source: env, dotenv, gateway_env, config, token_file; unknown when in no registry entry); checked once per token change";
    token_rotation_timestamp: FloatGauge = FloatGauge::default(),
        "openclaw_gateway_token_rotation_timestamp_seconds", "When the current revision became current (config, or the first WebSocket close 4001 seen)";
    ws_closes: Tracked<ForwardCodeByLabels, Counter> = Tracked::default(),
        "openclaw_gateway_ws_closes", "WebSocket closes seen by the tap, counted once per connection for the side that sent it first (by: gateway, client), by code: 1012 restart, 1013 starting, 4000 the client heard nothing for two ticks, 4001 auth rotated, 1008 policy/auth, other";
    shutdown_notices: Tracked<ForwardKindLabels, Counter> = Tracked::default(),
        "openclaw_gateway_shutdown_notices", "The gateway's shutdown events seen by the tap, by kind: restart (restartExpectedMs given), stop";
    restart_expected_seconds: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_gateway_restart_expected_seconds", "restartExpectedMs of the last shutdown event, when it announced a restart; absent after a terminal stop";
    observed_first_byte_seconds: Latency<ForwardChannelLabels> = latency(),
        "openclaw_gateway_observed_first_byte_seconds", "First-byte time of real client traffic through the auth tap (channel: http, ws)";
    token_sources_agree: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_token_sources_agree", "1 when every token source on this machine holds the same token, 0 when they disagree";
    tap_hijacked: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_tap_hijacked", "1 while another process holds an auth tap's listen address (the openclaw CLI pointed there hands it its token); the exporter keeps retrying the bind";
    credential_withheld: Tracked<ForwardProbeLabels, Counter> = Tracked::default(),
        "openclaw_gateway_credential_withheld", "Rounds (and tap connections) that did not send the gateway token because the forward's port, or the connection's far end, is not held by our user's ssh, by probe (auth, ws_handshake, tap)";
}
}

/// The current token revision changed (a point: the config's `rotated_at`, or the first close 4001).
pub const TOKEN_ROTATION: crate::record::timeline::EventKind =
    crate::record::timeline::EventKind { name: "token_rotation", words: "token rotated" };

/// The status key of a forward's last refused connect.
pub const LAST_REFUSAL_KEY: &str = "last_refusal";
/// The status key of a forward's auth failures.
pub const AUTH_FAILURES_KEY: &str = "auth_failures";

/// A connect the gateway refused: why (the `reason` label), whose connect, when, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalStatus {
    /// The `reason` label: token_missing, token_mismatch, device_token_mismatch, scope_mismatch,
    /// pairing_required, rate_limited, protocol_mismatch, starting, other.
    pub reason: String,
    /// The `channel` label: ws (the CLI's own connect, through the auth tap) or probe (the handshake probe).
    pub channel: String,
    /// When, as Unix seconds.
    pub at: f64,
    /// What the gateway's troubleshooting docs say to do.
    pub fix: String,
}

/// Auth failures of one revision, channel and code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthFailureStatus {
    /// `http`, `ws` or `probe`.
    pub channel: String,
    /// `401`, `403` or `429`.
    pub code: String,
    /// The revision's name, `unknown` or `none`.
    pub token_revision: String,
    /// How many.
    pub count: u64,
    /// Whether it is the current revision.
    pub current: bool,
}

/// Label values the status reads the failure counters with; set from each applied config.
#[derive(Default, Clone)]
struct StatusIndex {
    revisions: Vec<String>,
    current_revision: Option<String>,
    channels: Vec<(String, &'static str)>,
}

/// The auth kind's families and what its status and rotation need. Four mutexes, each held for a few
/// operations and never two at once: the rotation marker, the local revisions, the status index, the last
/// refusals.
pub struct AuthRecord {
    pub(super) families: AuthFamilies,
    rotation: Mutex<Rotation>,
    /// The (source kind, revision) pairs the token sources held at the last read.
    local_revisions: Mutex<BTreeSet<(&'static str, String)>>,
    index: Mutex<StatusIndex>,
    /// Each forward's last refused connect.
    last_refusal: Mutex<HashMap<String, RefusalStatus>>,
    /// Each tap's listener, by listen address: (the forward it fronts, its state).
    pub(super) tap_listeners: Mutex<HashMap<String, (String, super::tap_status::TapListenStatus)>>,
}

/// Registry entry (its kind's `RECORD` in `kinds::KINDS`): the record, its families registered.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    Arc::new(AuthRecord {
        families: AuthFamilies::register(registry),
        rotation: Mutex::default(),
        local_revisions: Mutex::default(),
        index: Mutex::default(),
        last_refusal: Mutex::default(),
        tap_listeners: Mutex::default(),
    })
}
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

impl AuthRecord {
    /// One of the auth tap's events on `forward` (`recorder` for what is the exporter's own: the connections it
    /// closed, the timeline's rotation point).
    pub fn tap_event(&self, recorder: &Recorder, forward: &str, event: AuthEvent<'_>) {
        let m = &self.families;
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
                    self.mark_rotation_seen(recorder);
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
                recorder.count_connection_closed("auth_tap", if refused_new { "limit_new" } else { "limit_silent" });
            }
            AuthEvent::OtherUser { admitted } => recorder.count_other_user_connection("auth_tap", admitted),
            AuthEvent::TimedOut { idle } => {
                recorder.count_connection_closed("auth_tap", if idle { "idle_timeout" } else { "header_timeout" });
            }
            // Logged by the tap's sink, once per verdict (TapSink::warn_withheld).
            AuthEvent::Withheld { .. } => {
                m.credential_withheld
                    .get_or_create(&ForwardProbeLabels { forward: forward.clone(), probe: "tap" })
                    .inc();
            }
            AuthEvent::FirstByte { channel, elapsed } => {
                let labels = ForwardChannelLabels { forward, channel: channel.as_str() };
                m.observed_first_byte_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
            }
        }
    }
}

impl AuthRecord {
    /// The revisions the token sources on this machine hold now, by source kind: each set to 1, and the
    /// label sets of what they held before removed.
    pub fn set_local_revisions(&self, held: BTreeSet<(&'static str, String)>) {
        let m = &self.families;
        let mut last = lock(&self.local_revisions);
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
    fn apply(&self, config: &Config) {
        let m = &self.families;
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
        let older: HashSet<String> = registry.names().take(current_at.unwrap_or(0)).map(str::to_owned).collect();
        let mut rotation = lock(&self.rotation);
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
        self.apply_tap_listens(config);
        *lock(&self.index) = StatusIndex { revisions, current_revision: config.auth.current.clone(), channels };
    }

    /// The withheld-credential counter of `probe` (auth, ws_handshake, tap) on `forward` at zero.
    pub fn create_withheld_series(&self, forward: &str, probe: &'static str) {
        let labels = ForwardProbeLabels { forward: forward.to_owned(), probe };
        self.families.credential_withheld.get_or_create_owned(&labels);
    }

    /// Count a credential `probe` kept back on `forward` (the listener was not our own user's ssh).
    pub fn count_withheld(&self, forward: &str, probe: &'static str) {
        let labels = ForwardProbeLabels { forward: forward.to_owned(), probe };
        self.families.credential_withheld.get_or_create(&labels).inc();
    }

    /// Count a connect the gateway refused, on `channel` (`ws`: the CLI's through the tap; `probe`: the
    /// handshake probe's), and keep it as the forward's last refusal.
    pub fn record_connect_refusal(&self, forward: &str, channel: &'static str, reason: Refusal) {
        let labels = ForwardChannelReasonLabels { forward: forward.to_owned(), channel, reason: reason.label() };
        self.families.connect_refusals.get_or_create(&labels).inc();
        let at = unix_seconds(SystemTime::now());
        let refusal = RefusalStatus {
            reason: reason.label().to_owned(),
            channel: channel.to_owned(),
            at,
            fix: reason.fix().to_owned(),
        };
        lock(&self.last_refusal).insert(forward.to_owned(), refusal);
    }

    /// Record one active auth probe: the request, and a failure when refused.
    pub fn record_auth_probe(&self, forward: &str, revision: &str, outcome: &auth_probe::Outcome) {
        let m = &self.families;
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
        self.families.token_sources_agree.get_or_create(&labels).set(i64::from(agree));
    }

    /// Count `labels`' failure as an old revision's when its revision is older than the current one and it
    /// was seen at or after the rotation.
    fn count_if_old_revision(&self, labels: &AuthFailureLabels, seen: SystemTime) {
        if !OLD_REVISION_CODES.contains(&labels.code) {
            return;
        }
        let rotation = lock(&self.rotation);
        if rotation.counts_as_old(&labels.token_revision, seen) {
            drop(rotation);
            self.families.old_revision_failures.get_or_create(labels).inc();
        }
    }

    fn mark_rotation_seen(&self, recorder: &Recorder) {
        let mut rotation = lock(&self.rotation);
        // A rotation closes every open WebSocket at once: one burst of 4001s is one rotation.
        let fresh = rotation.last_seen.is_none_or(|at| at.elapsed() > Duration::from_secs(60));
        rotation.last_seen = Some(std::time::Instant::now());
        if fresh && !rotation.configured {
            let now = SystemTime::now();
            self.families.token_rotation_timestamp.set(unix_seconds(now));
            rotation.at = Some(now);
        }
        drop(rotation);
        if fresh {
            let detail = "the gateway closed WebSockets with 4001 (token rotated)";
            recorder.timeline_point(TOKEN_ROTATION, "", detail, unix_seconds(SystemTime::now()));
        }
    }

    /// `forward`'s failure counts above zero, by revision, channel and code.
    fn failures_of(&self, forward: &str) -> Vec<AuthFailureStatus> {
        // Read under the index's lock (the counters are atomics behind the family's own lock, none of ours):
        // one forward's few series, where a copy of every revision and channel per forward was more work.
        let index = lock(&self.index);
        let channels: Vec<_> = index.channels.iter().filter(|(name, _)| name == forward).cloned().collect();
        failure_series(&channels, &index.revisions)
            .filter_map(|labels| {
                let count = self.families.auth_failures.get(&labels).map_or(0, |c| c.get());
                (count > 0).then(|| AuthFailureStatus {
                    channel: labels.channel.to_owned(),
                    code: labels.code.to_owned(),
                    current: index.current_revision.as_deref() == Some(labels.token_revision.as_str()),
                    token_revision: labels.token_revision,
                    count,
                })
            })
            .collect()
    }
}

impl KindRecord for AuthRecord {
    /// The current revision, the rotation time, and every auth series of the config's subjects at zero.
    fn apply_config(&self, config: &Config) {
        self.apply(config);
    }

    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
        lock(&self.last_refusal).retain(|forward, _| subjects.keeps(&ForwardLabels { forward: forward.clone() }));
        lock(&self.tap_listeners).retain(|_, (forward, _)| subjects.keeps(&ForwardLabels { forward: forward.clone() }));
    }

    /// `last_refusal` (null until one) and `auth_failures` (the counts above zero), as the report always had.
    fn forward_status(&self, forward: &str, _now: f64) -> serde_json::Map<String, serde_json::Value> {
        let last_refusal = lock(&self.last_refusal).get(forward).cloned();
        let failures = self.failures_of(forward);
        let taps = self.tap_listens_of(forward);
        let taps = (!taps.is_empty()).then(|| (super::tap_status::AUTH_TAPS_KEY, serde_json::to_value(taps)));
        [(LAST_REFUSAL_KEY, serde_json::to_value(last_refusal)), (AUTH_FAILURES_KEY, serde_json::to_value(failures))]
            .into_iter()
            .chain(taps)
            .filter_map(|(key, value)| Some((key.to_owned(), value.ok()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::time::UNIX_EPOCH;

    fn failure(token_revision: &str, code: &'static str) -> AuthFailureLabels {
        AuthFailureLabels { forward: "mac".into(), channel: "http", code, token_revision: token_revision.into() }
    }

    #[test]
    fn an_old_revisions_refusal_counts_only_at_or_after_the_rotation() {
        let recorder = Recorder::with_kinds(&[record], Vec::new());
        let auth = recorder.kind_record::<AuthRecord>().unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let second = Duration::from_secs(1);
        {
            let mut rotation = lock(&auth.rotation);
            rotation.at = Some(at);
            rotation.older = ["r1".to_owned()].into();
        }
        auth.count_if_old_revision(&failure("r1", "401"), at - second);
        auth.count_if_old_revision(&failure("r1", "401"), at);
        auth.count_if_old_revision(&failure("r1", "403"), at + second);
        auth.count_if_old_revision(&failure("r1", "429"), at + second);
        auth.count_if_old_revision(&failure("r2", "401"), at + second);
        auth.count_if_old_revision(&failure("r3", "401"), at + second);
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
        lock(&auth.rotation).at = None;
        auth.count_if_old_revision(&failure("r1", "401"), at - second * 100);
        let text = recorder.encode(Format::Prometheus, at + second);
        assert_eq!(sample(&text, &series("r1", "401")), Some(2.0));
    }

    #[test]
    fn a_forwards_status_holds_its_own_failures_above_zero_and_its_last_refusal() {
        let recorder = Recorder::with_kinds(&[record], Vec::new());
        let mut config = Config::load(None).unwrap();
        let mut other = config.forwards[0].clone();
        other.name = "other".into();
        config.forwards.push(other);
        config.auth_probe.forwards = config.forwards.iter().map(|f| f.name.clone()).collect();
        recorder.apply_config(&config);
        let auth = recorder.kind_record::<AuthRecord>().unwrap();
        let name = config.forwards[0].name.clone();
        auth.record_auth_probe(&name, credential::UNKNOWN, &Ok(Answer::Rejected(401)));
        auth.record_connect_refusal(&name, "probe", Refusal::TokenMismatch);
        let report = recorder.status(SystemTime::now());
        let status = |forward: &str| report.forwards.iter().find(|f| f.forward == forward).unwrap().kinds.clone();
        let ours = status(&name);
        assert_eq!(
            ours[AUTH_FAILURES_KEY],
            serde_json::json!([{ "channel": "probe", "code": "401", "token_revision": "unknown", "count": 1, "current": false }])
        );
        assert_eq!(ours[LAST_REFUSAL_KEY]["reason"], "token_mismatch");
        let theirs = status("other");
        assert_eq!(theirs[AUTH_FAILURES_KEY], serde_json::json!([]), "only the forward's own failures");
        assert_eq!(theirs[LAST_REFUSAL_KEY], serde_json::Value::Null, "the key is there, null until a refusal");
    }
}

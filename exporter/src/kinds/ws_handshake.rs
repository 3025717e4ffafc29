//! The WebSocket handshake kind, the CLI's own path through the forward: its record (the time to the
//! gateway's challenge and failures by reason, and each forward's last round in words: [`WsHandshakeRecord`],
//! in [`super::KINDS`]), its adapter (what it reads before a round, its logs, what a round records; a
//! refused connect and a withheld token go to the auth kind's record, whose counters the tap shares), and its
//! status-page row.

use super::auth::AuthRecord;
use crate::config::{AuthProbe, Forward};
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::esc;
use crate::record::families::{families, latency, ForwardLabels, ForwardReasonLabels, Latency, Subjects};
use crate::record::kinds::{lock, KindRecord};
use crate::record::status::ForwardStatus;
use crate::record::tracked::Tracked;
use crate::token_sources;
use probes::auth_tap::credential::TokenId;
use probes::ws_handshake::{self, Connect, Secret};
use probes::Label;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Its key in a forward's `/api/status` entry (null until a round).
const STATUS_KEY: &str = "last_ws_handshake";

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct WsHandshakeFamilies {
    seconds: Latency<ForwardLabels> = latency(),
        "openclaw_gateway_ws_handshake_seconds", "WebSocket upgrade sent to the gateway's first frame (connect.challenge), through the forward";
    failures: Tracked<ForwardReasonLabels, Counter> = Tracked::default(),
        "openclaw_gateway_ws_handshake_failures", "WebSocket handshake probes failed, by reason: refused, reset, timeout, upgrade_refused, no_challenge, closed, local_error";
}
}

/// The handshake's families and each forward's last round in words.
pub struct WsHandshakeRecord {
    /// Its families, registered once.
    families: WsHandshakeFamilies,
    last: Mutex<HashMap<String, String>>,
}

/// Registry entry: the record, its families registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record = WsHandshakeRecord { families: WsHandshakeFamilies::register(registry), last: Mutex::default() };
    Arc::new(record)
}

impl WsHandshakeRecord {
    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        lock(&self.last)
    }

    /// Every failure reason a route of `transport` can give, at zero for `forward`.
    fn create_series(&self, forward: &str, transport: probes::route::Transport) {
        for reason in ws_handshake::Failure::LABELS.iter().filter(|reason| transport.can_fail_by(reason)) {
            self.families.failures.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
    }

    /// One handshake through `forward`: the time to the challenge, or the failure's reason, and the status line.
    fn observe(&self, forward: &str, outcome: &ws_handshake::Outcome) {
        let line = match outcome {
            Ok(handshake) => {
                let labels = ForwardLabels { forward: forward.to_owned() };
                self.families.seconds.get_or_create(&labels).observe(handshake.elapsed.as_secs_f64());
                format!(
                    "challenge in {}, connect {}",
                    crate::record::timeline::human_duration(handshake.elapsed.as_secs_f64()),
                    handshake.connect.label()
                )
            }
            Err(failure) => {
                let labels = ForwardReasonLabels { forward: forward.to_owned(), reason: failure.label() };
                self.families.failures.get_or_create(&labels).inc();
                failure.to_string()
            }
        };
        self.last().insert(forward.to_owned(), line);
    }
}

impl KindRecord for WsHandshakeRecord {
    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
        self.last().retain(|forward, _| subjects.keeps(&ForwardLabels { forward: forward.clone() }));
    }

    /// Every forward has the key: its last round in words, null before one (or with the probe off).
    fn forward_status(&self, forward: &str, _now: f64) -> serde_json::Map<String, serde_json::Value> {
        let last = self.last().get(forward).cloned().map_or(serde_json::Value::Null, serde_json::Value::String);
        [(STATUS_KEY.to_owned(), last)].into_iter().collect()
    }
}

/// The recording of one forward's WebSocket handshake probe.
pub struct WsHandshakeKind {
    forward: Arc<Forward>,
    /// The auth kind's record: refused connects and withheld tokens (absent from a recorder built without it).
    auth: Option<Arc<AuthRecord>>,
    record: Arc<WsHandshakeRecord>,
    /// Where this machine's token is, when the auth probe covers the forward (the user chose to let the
    /// exporter send it); None: the probe closes before `connect`.
    tokens: Option<token_sources::Locations>,
    /// The probe's gate verdict when it kept the token back.
    withheld: ws_handshake::Withheld,
    /// The token sent this round.
    sent: Option<TokenId>,
    /// A token the gateway refused as missing or wrong: not sent again until the sources hold another one, as
    /// the auth probe does; the gateway delays each consecutive wrong token (0.25 s doubling to 5 s) for every
    /// client of this address, the CLI's too. Other refusals (starting, rate limited, a scope or pairing
    /// approved on the gateway, a protocol) can end without the token changing: sent again next round.
    refused: Option<TokenId>,
}

/// Registry entry: its record, and a forward's handshake probe unless its `ws_handshake_interval` is off. It
/// checks the port's owner before the token goes out, with a lookup of its own.
pub struct WsHandshake;

impl super::Kind for WsHandshake {
    type Record = WsHandshakeRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const PAGE: &'static [super::PagePart] = &[super::PagePart::Row(super::Row::Handshake, page_row)];

    fn start(start: &mut super::Start<'_>, record: &Arc<WsHandshakeRecord>) {
        for forward in start.forwards() {
            if forward.ws_handshake_interval.is_none() {
                continue;
            }
            let (route, gate) = (start.route(&forward), start.gate(&forward));
            let auth = start.recorder.kind_record();
            let (probe, kind) =
                WsHandshakeKind::new(forward, &start.config.auth_probe, auth, record.clone(), route, gate);
            start.drive(probe, kind);
        }
    }
}

impl WsHandshakeKind {
    /// Its probe and its recording, with the failure counters created at zero.
    pub fn new(
        forward: Arc<Forward>,
        auth_probe: &AuthProbe,
        auth: Option<Arc<AuthRecord>>,
        record: Arc<WsHandshakeRecord>,
        route: probes::route::Route,
        gate: probes::gate::CredentialGate,
    ) -> (ws_handshake::Target, WsHandshakeKind) {
        record.create_series(&forward.name, forward.transport());
        let tokens = auth_probe.forwards.contains(&forward.name).then(|| auth_probe.token_locations());
        if let (Some(_), Some(auth)) = (&tokens, &auth) {
            auth.create_withheld_series(&forward.name, "ws_handshake");
        }
        let withheld = ws_handshake::Withheld::default();
        let target = ws_handshake::Target {
            route,
            token: Secret::new(Vec::new()),
            gate: Some(gate),
            withheld: withheld.clone(),
        };
        (target, WsHandshakeKind { forward, auth, record, tokens, withheld, sent: None, refused: None })
    }

    fn interval_or_off(&self) -> Duration {
        // The task is only spawned with an interval; this default is never used for scheduling.
        self.forward.ws_handshake_interval.unwrap_or(Duration::from_secs(300))
    }
}

impl Adapter for WsHandshakeKind {
    type Probe = ws_handshake::Target;
    /// The failure reason, or the reason the connect was refused; None while handshakes reach the challenge
    /// and their connect is not refused.
    type State = Option<&'static str>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.interval_or_off())
    }

    async fn before_round(&mut self, probe: &mut ws_handshake::Target) -> bool {
        if let Some(locations) = self.tokens.clone() {
            let tokens = tokio::task::spawn_blocking(move || token_sources::read(&locations)).await.unwrap_or_default();
            // The token goes only to our own user's ssh: the probe's gate checks the connection right before
            // `connect`; otherwise the handshake stops at the challenge, which proves the path as far as it
            // can without a credential.
            let token = tokens.effective().and_then(|s| s.token.clone());
            let id = token.as_ref().map(|t| TokenId::of(t.expose()));
            self.sent = id.filter(|id| self.refused != Some(*id));
            probe.token = match (token, self.sent) {
                (Some(token), Some(_)) => token,
                _ => Secret::new(Vec::new()),
            };
        }
        true
    }

    fn handle(&mut self, _round: Round, outcome: &ws_handshake::Outcome) -> &'static str {
        let name = &self.forward.name;
        if let Some(why) = self.withheld.take() {
            if let Some(auth) = &self.auth {
                auth.count_withheld(name, "ws_handshake");
            }
            tracing::debug!(forward = %self.forward.name, "handshake without the token: {why}");
        }
        match outcome {
            Ok(ws_handshake::Handshake { connect: Connect::Refused(reason), .. }) => {
                if let Some(auth) = &self.auth {
                    auth.record_connect_refusal(name, "probe", *reason);
                }
                if matches!(reason, probes::refusal::Refusal::TokenMismatch | probes::refusal::Refusal::TokenMissing) {
                    self.refused = self.sent;
                }
            }
            Ok(ws_handshake::Handshake { connect: Connect::Accepted, .. }) => self.refused = None,
            _ => {}
        }
        self.record.observe(name, outcome);
        outcome.as_ref().err().map_or("ok", Label::label)
    }

    fn annotate(&self, outcome: &ws_handshake::Outcome, fields: &mut SpanFields) {
        if let Ok(handshake) = outcome {
            fields.first_byte_us = Some(handshake.elapsed.as_micros() as u64);
        }
    }

    fn state(&self, outcome: &ws_handshake::Outcome) -> Option<&'static str> {
        match outcome {
            Ok(ws_handshake::Handshake { connect: Connect::Refused(reason), .. }) => Some(reason.label()),
            Ok(_) => None,
            Err(failure) => Some(failure.label()),
        }
    }

    fn log_change(&self, outcome: &ws_handshake::Outcome) {
        let forward = self.forward.name.as_str();
        match outcome {
            Ok(ws_handshake::Handshake { connect: Connect::Refused(reason), .. }) => tracing::warn!(
                forward,
                reason = reason.label(),
                "WebSocket handshakes reach the gateway's challenge, but it refuses this machine's connect: {}",
                reason.fix()
            ),
            Ok(handshake) => {
                tracing::info!(forward, elapsed = ?handshake.elapsed, connect = handshake.connect.label(), "WebSocket handshakes reach the gateway's challenge")
            }
            Err(failure) => {
                tracing::warn!(forward, reason = failure.label(), error = %failure, "WebSocket handshake probe failing")
            }
        }
    }
}

/// Its row on the status page (at `Row::Handshake` in its entry's `PAGE`): the last handshake in words.
fn page_row(forward: &ForwardStatus, _now: f64) -> String {
    format!(
        "<tr><th>WebSocket</th><td colspan=\"2\" class=\"muted\">{}</td></tr>",
        esc(forward.kinds.get(STATUS_KEY).and_then(serde_json::Value::as_str).unwrap_or("no handshake probe yet"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{Format, Recorder};
    use serde::Deserialize;
    use std::time::SystemTime;

    #[test]
    fn a_round_records_the_time_to_the_challenge_or_the_failure_and_the_status_line() {
        let recorder = Arc::new(Recorder::with_kinds(&[record, crate::kinds::auth::record], Vec::new()));
        let config = crate::config::Config::load(None).unwrap();
        recorder.apply_config(&config);
        let forward = Arc::new(config.forwards[0].clone());
        let name = forward.name.clone();
        let route = forward.probe_route().unwrap();
        let gate = probes::gate::CredentialGate::for_route(&route, probes::ssh_session::Target::new, vec![]);
        let mut auth_probe = config.auth_probe.clone();
        auth_probe.forwards.clear();
        let own = recorder.kind_record::<WsHandshakeRecord>().unwrap();
        let (target, mut recording) =
            WsHandshakeKind::new(forward.clone(), &auth_probe, recorder.kind_record(), own, route, gate);
        assert_eq!(target.route.local(), forward.local());
        let round = Round { wall: SystemTime::now(), boot: Duration::ZERO };
        let answered: ws_handshake::Outcome =
            Ok(ws_handshake::Handshake { elapsed: Duration::from_millis(3), connect: Connect::NotSent });
        assert_eq!(recording.handle(round, &answered), "ok");
        assert_eq!(recording.handle(round, &Err(ws_handshake::Failure::NoChallenge)), "no_challenge");
        let mut fields = SpanFields::default();
        recording.annotate(&answered, &mut fields);
        assert_eq!(fields.first_byte_us, Some(3000));

        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        let failures = |reason: &str| {
            format!("openclaw_gateway_ws_handshake_failures_total{{forward=\"{name}\",reason=\"{reason}\"}}")
        };
        assert_eq!(sample(&text, &failures("no_challenge")), Some(1.0));
        assert_eq!(sample(&text, &failures("refused")), Some(0.0), "every reason exists at zero");
        let count = format!("openclaw_gateway_ws_handshake_seconds_count{{forward=\"{name}\"}}");
        assert_eq!(sample(&text, &count), Some(1.0));
        // Without the auth probe covering the forward, no token source is read and nothing is withheld.
        assert!(!text.contains("openclaw_gateway_credential_withheld_total{"), "{text}");
        // A refused connect counts its reason on the probe's channel and is the forward's last refusal.
        let refused: ws_handshake::Outcome = Ok(ws_handshake::Handshake {
            elapsed: Duration::from_millis(3),
            connect: Connect::Refused(probes::refusal::Refusal::ScopeMismatch),
        });
        assert_eq!(recording.handle(round, &refused), "ok");
        assert_eq!(recording.state(&refused), Some("scope_mismatch"));
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        let refusals = format!(
            "openclaw_gateway_connect_refusals_total{{forward=\"{name}\",channel=\"probe\",reason=\"scope_mismatch\"}}"
        );
        assert_eq!(sample(&text, &refusals), Some(1.0), "{text}");
        let status = recorder.status(SystemTime::now());
        let refusal = status.forwards.iter().find(|f| f.forward == name).unwrap().kinds["last_refusal"].clone();
        let refusal = crate::kinds::auth::RefusalStatus::deserialize(refusal).unwrap();
        assert_eq!((refusal.reason.as_str(), refusal.channel.as_str()), ("scope_mismatch", "probe"));
        assert!(refusal.fix.contains("re-pair"), "{}", refusal.fix);
        assert_eq!(recording.handle(round, &Err(ws_handshake::Failure::NoChallenge)), "no_challenge");
        let status = recorder.status(SystemTime::now());
        let line = status.forwards.iter().find(|f| f.forward == name).unwrap().kinds[STATUS_KEY].clone();
        assert!(
            line.as_str().is_some_and(|l| !l.contains("challenge in")),
            "the last round (a failure) is what the status shows: {line}"
        );
    }
}

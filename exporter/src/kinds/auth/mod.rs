//! The auth kind, 401/403 by token revision: its record ([`record::AuthRecord`], in [`super::KINDS`]: the
//! active auth probe's requests and failures, the auth tap's events through [`record::TapSink`], rotation, the
//! token sources' revisions, refused connects and withheld tokens, which the handshake kind and the tap share;
//! `last_refusal` and `auth_failures` in each forward's `/api/status`), its adapter ([`AuthProbeKind`]: the
//! token to send each round, its logs), the token sources' own schedule ([`TokenSourcesWatch`]), its row and
//! section on the status page, and its doctor step ([`DOCTOR_STEP`], step 7).

mod doctor;
pub mod record;
mod tap;
mod tap_status;

pub use doctor::DOCTOR_STEP;
pub use record::{record, AuthFailureStatus, AuthRecord, RefusalStatus, TOKEN_ROTATION};
pub use tap::{page_rows as tap_rows, TapHolder, TapSink};

use crate::config::{AuthProbe, Forward};
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, state_badge};
use crate::record::status::ForwardStatus;
use crate::record::timeline::human_duration;
use crate::token_sources;
use probes::auth_probe::{self, Answer, Secret};
use probes::auth_tap::credential::{self, Credential, TokenId};
use probes::auth_tap::Registry;
use probes::Label;
use serde::Deserialize;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// The recording of one forward's active auth probe: it also picks the token to send each round.
pub struct AuthProbeKind {
    forward: Arc<Forward>,
    settings: Arc<AuthProbe>,
    registry: Arc<Registry>,
    record: Arc<AuthRecord>,
    locations: token_sources::Locations,
    /// The token the gateway refused: not sent again until the sources hold another one.
    refused: Option<TokenId>,
    /// The token sent this round.
    sent: Option<TokenId>,
    /// The revision of the token sent this round.
    revision: String,
    /// The last note about the token sources, so each is logged once.
    last_note: String,
}

/// Registry entry: its record, the active auth probe on each forward it covers (it checks the port's owner
/// before the token goes out, with a lookup of its own), and the token sources' watch.
pub struct Auth;

impl super::Kind for Auth {
    type Record = AuthRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const PAGE: &'static [super::PagePart] = &[
        super::PagePart::Row(super::Row::Tap, tap_rows),
        super::PagePart::Row(super::Row::Refusal, refusal_row),
        super::PagePart::AfterTable(super::AfterTable::AuthFailures, failures_section),
    ];
    const DOCTOR: &'static [crate::checkup::DoctorPart] =
        &[crate::checkup::DoctorPart::Step(crate::checkup::Layer::Auth, DOCTOR_STEP)];
    const TIMELINE: &'static [crate::record::timeline::EventKind] = &[TOKEN_ROTATION];

    /// The auth probe of each forward it covers, and the token sources' own schedule whenever it covers one.
    fn start(start: &mut super::Start<'_>, record: &Arc<AuthRecord>) {
        for forward in start.forwards() {
            if !start.config.auth_probe.forwards.contains(&forward.name) {
                continue;
            }
            let (route, gate) = (start.route(&forward), start.gate(&forward));
            let settings = Arc::new(start.config.auth_probe.clone());
            let registry = start.auth_registry.clone();
            let (probe, kind) = AuthProbeKind::new(forward, settings, registry, record.clone(), route, gate);
            start.drive(probe, kind);
        }
        if start.config.auth_probe.forwards.is_empty() {
            return;
        }
        let watch = TokenSourcesWatch::new(&start.config.auth_probe, start.auth_registry.clone(), record.clone());
        let cancel = start.cancel();
        start.spawn(watch.run(cancel));
    }
}

impl AuthProbeKind {
    /// Its probe (a token is chosen each round) and its recording.
    pub fn new(
        forward: Arc<Forward>,
        settings: Arc<AuthProbe>,
        registry: Arc<Registry>,
        record: Arc<AuthRecord>,
        route: probes::route::Route,
        gate: probes::gate::CredentialGate,
    ) -> (auth_probe::Target, AuthProbeKind) {
        record.create_withheld_series(&forward.name, "auth");
        // The gate runs inside the probe's round: after its permit, and again on the connected stream before
        // the token is written.
        let locations = settings.token_locations();
        // Windows: files inherit the profile directory's ACL (the user only), and there are no mode bits to read.
        #[cfg(unix)]
        if let Some(path) = &settings.token_file {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "the token file is readable by group or others: chmod 600 it");
                }
            }
        }
        let target = auth_probe::Target { route, token: Secret::new(Vec::new()), gate: Some(gate) };
        let recording = AuthProbeKind {
            forward,
            settings,
            registry,
            record,
            locations,
            refused: None,
            sent: None,
            revision: credential::NONE.to_owned(),
            last_note: String::new(),
        };
        (target, recording)
    }

    /// Log `text` unless the last note stood for the same `verdict` (a withheld token's kind and holder: its
    /// words may carry figures that vary from round to round).
    fn note_once(&mut self, verdict: &str, text: String, warn: bool) {
        if verdict != self.last_note {
            if warn {
                tracing::warn!(forward = %self.forward.name, "{text}");
            } else {
                tracing::info!(forward = %self.forward.name, "{text}");
            }
            verdict.clone_into(&mut self.last_note);
        }
    }

    fn note(&mut self, text: String, warn: bool) {
        self.note_once(&text.clone(), text, warn);
    }
}

impl Adapter for AuthProbeKind {
    type Probe = auth_probe::Target;
    /// The answer's label (accepted, rejected) or the failure's.
    type State = &'static str;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.settings.interval)
    }

    async fn before_round(&mut self, probe: &mut auth_probe::Target) -> bool {
        // The gauges of what each source holds are the watch's ([`TokenSourcesWatch`]); this read only picks the
        // token to send now.
        let locations = self.locations.clone();
        let tokens = tokio::task::spawn_blocking(move || token_sources::read(&locations)).await.unwrap_or_default();
        let Some(token) = tokens.effective().and_then(|s| s.token.clone()) else {
            self.note("no gateway token found in any source; auth probe idle".into(), false);
            return false;
        };
        let id = TokenId::of(token.expose());
        if self.refused == Some(id) {
            return false;
        }
        // Verified on the registry's own thread (argon2id, once per token change), never the probes' thread.
        self.revision = self.registry.revision_of(&Credential::token(token.expose())).await;
        self.sent = Some(id);
        probe.token = token;
        true
    }

    fn handle(&mut self, _round: Round, outcome: &auth_probe::Outcome) -> &'static str {
        // The token goes only to our own user's ssh: the probe's gate withheld it, so nothing was sent.
        if let Err(auth_probe::Failure::Withheld { why, verdict }) = outcome {
            self.record.count_withheld(&self.forward.name, "auth");
            self.note_once(&format!("withheld:{verdict}"), format!("token withheld: {why}"), true);
            return self.state(outcome);
        }
        self.record.record_auth_probe(&self.forward.name, &self.revision, outcome);
        match outcome {
            Ok(Answer::Rejected(_)) => self.refused = self.sent,
            Ok(Answer::Accepted(_)) => self.refused = None,
            Err(_) => {}
        }
        self.state(outcome)
    }

    fn annotate(&self, _outcome: &auth_probe::Outcome, fields: &mut SpanFields) {
        fields.token_revision = Some(self.revision.clone());
    }

    fn state(&self, outcome: &auth_probe::Outcome) -> &'static str {
        match outcome {
            Ok(answer) => answer.label(),
            Err(failure) => failure.label(),
        }
    }

    fn log_change(&self, outcome: &auth_probe::Outcome) {
        let (forward, revision) = (&self.forward.name, &self.revision);
        match outcome {
            Ok(Answer::Rejected(status)) => {
                tracing::warn!(forward = %forward, "the gateway rejects this machine's token (revision {revision}, HTTP {status}); not retried until a token source changes")
            }
            Ok(Answer::Accepted(_)) => {
                tracing::info!(forward = %forward, "the gateway accepts this machine's token (revision {revision})")
            }
            Err(failure) => tracing::info!(forward = %forward, "auth probe could not reach the gateway: {failure}"),
        }
    }
}

/// How often the token sources are read for their gauges, whatever the auth probe's interval: a rotation shows
/// as the new local revision within this long even with `[auth_probe] interval = "1h"`.
pub const TOKEN_SOURCES_EVERY: Duration = Duration::from_secs(10);

/// Reads the token sources on a schedule of its own and keeps `token_local_revision` and each probed
/// forward's `token_sources_agree` current. A read is a few small files; the argon2id check that names a
/// token's revision runs only when what the sources hold changed.
pub struct TokenSourcesWatch {
    locations: token_sources::Locations,
    registry: Arc<Registry>,
    record: Arc<AuthRecord>,
    /// The forwards the auth probe runs on: each gets the agreement gauge.
    forwards: Vec<String>,
    /// What the sources held at the last read: names, kinds, token identities and why a source was
    /// unresolvable. Tokens themselves are never kept here.
    last: Option<Vec<SourceSeen>>,
}

/// One source as a read saw it: its name, kind, token identity and why it was unresolvable.
type SourceSeen = (String, &'static str, Option<TokenId>, Option<String>);

impl TokenSourcesWatch {
    /// A watch of the sources `settings` names, for `forwards`.
    pub fn new(settings: &AuthProbe, registry: Arc<Registry>, record: Arc<AuthRecord>) -> Self {
        let locations = settings.token_locations();
        TokenSourcesWatch { locations, registry, record, forwards: settings.forwards.clone(), last: None }
    }

    /// Read the sources within [`crate::driver::FIRST_ROUND_WITHIN`] of start, then every
    /// [`TOKEN_SOURCES_EVERY`], until `cancel` fires.
    pub async fn run(mut self, cancel: tokio_util::sync::CancellationToken) {
        let mut ticker = crate::driver::Ticker::jittered(TOKEN_SOURCES_EVERY);
        while ticker.tick(&cancel).await.is_some() {
            let locations = self.locations.clone();
            let tokens = tokio::task::spawn_blocking(move || token_sources::read(&locations)).await.unwrap_or_default();
            self.read(&tokens).await;
        }
    }

    /// Take one read of the sources: when it differs from the last, set the gauges and log what changed.
    async fn read(&mut self, tokens: &token_sources::Tokens) {
        let seen: Vec<SourceSeen> = tokens
            .sources
            .iter()
            .map(|s| {
                (s.name.clone(), s.kind, s.token.as_ref().map(|t| TokenId::of(t.expose())), s.unresolvable.clone())
            })
            .collect();
        if self.last.as_ref() == Some(&seen) {
            return;
        }
        self.last = Some(seen);
        for forward in &self.forwards {
            self.record.set_token_sources_agree(forward, tokens.agree());
        }
        if !tokens.agree() {
            let effective = tokens.effective().map(|s| s.name.as_str()).unwrap_or("none");
            let different = tokens.disagreeing().join(", ");
            tracing::warn!("token sources disagree: the CLI uses {effective}; different: {different}");
        }
        for source in tokens.sources.iter().filter(|s| s.unresolvable.is_some()) {
            tracing::debug!(source = %source.name, why = source.unresolvable.as_deref().unwrap_or(""), "token source unresolvable");
        }
        // Which revision each source holds (the registry caches by token identity, so argon2id runs once per
        // token it has not seen).
        let mut held = std::collections::BTreeSet::new();
        for source in &tokens.sources {
            if let Some(token) = &source.token {
                held.insert((source.kind, self.registry.revision_of(&Credential::token(token.expose())).await));
            }
        }
        self.record.set_local_revisions(held);
    }
}

// Its row and section on the status page (at their places in `Auth::PAGE`).

/// The last refused connect's row: why the gateway refused, whose connect, how long ago, and the docs' fix.
fn refusal_row(forward: &ForwardStatus, now: f64) -> String {
    let refusal = forward.kinds.get(record::LAST_REFUSAL_KEY).and_then(|v| RefusalStatus::deserialize(v).ok());
    let Some(refusal) = refusal else { return String::new() };
    let whose = if refusal.channel == "ws" { "the CLI's connect" } else { "the handshake probe's connect" };
    format!(
        "<tr class=\"refusal\"><th>Connect refused</th><td>{}</td><td class=\"muted\">{whose}, {} ago · {}</td></tr>",
        state_badge(Some(false), "", &refusal.reason),
        human_duration((now - refusal.at).max(0.0)),
        esc(&refusal.fix)
    )
}

/// The auth failures by token revision, channel and code, when there are any.
fn failures_section(forward: &ForwardStatus, _now: f64) -> String {
    let mut html = String::new();
    let failures = forward
        .kinds
        .get(record::AUTH_FAILURES_KEY)
        .and_then(|v| Vec::<AuthFailureStatus>::deserialize(v).ok())
        .unwrap_or_default();
    if !failures.is_empty() {
        html.push_str("<h3>Auth failures by token revision</h3><table class=\"auth\"><tr><th>revision</th><th>channel</th><th>code</th><th>count</th></tr>");
        for failure in &failures {
            let revision = esc(&failure.token_revision);
            let mark = if failure.current { " (current)" } else { "" };
            let _ = write!(
                html,
                "<tr><td>{revision}{mark}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&failure.channel),
                esc(&failure.code),
                failure.count
            );
        }
        html.push_str("</table>");
    }
    html
}

//! The recorder: the one place that turns probe outcomes into metrics, uptime buckets and latency
//! histograms.
//!
//! Probe tasks hand it typed outcomes; nothing else writes a metric. It outlives config reloads (the
//! scheduler's tasks are replaced, the recorder is not), so counters never reset while the process lives.
//! Counters and histograms are the prometheus-client atomics; the per-forward ledger and hdrhistograms sit
//! behind one mutex, held only for a few arithmetic operations.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use probes::auth_tap::{credential, AuthEvent, AuthSink};
use probes::{first_byte, ssh_session, syn};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::clock::unix_seconds;
use crate::config::Config;
use crate::uptime::Ledger;

/// Histogram bucket bounds in seconds: a 1-2.5-5 ladder from 25 us (a loopback connect) to 100 s
/// (beyond any probe timeout the config accepts short of an hour... and what no probe should ever take).
pub const LATENCY_BUCKETS: [f64; 22] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0,
];

/// The exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Prometheus,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    forward: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardReasonLabels {
    forward: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardStateLabels {
    forward: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthRequestLabels {
    forward: String,
    channel: &'static str,
    token_revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthFailureLabels {
    forward: String,
    channel: &'static str,
    code: &'static str,
    token_revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    token_revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardCodeLabels {
    forward: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardChannelLabels {
    forward: String,
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelHostLabels {
    model_host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelHostPhaseLabels {
    model_host: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelHostReasonLabels {
    model_host: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    gateway: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayScopeLabels {
    gateway: String,
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

struct Metrics {
    syn_attempts: Family<ForwardLabels, Counter>,
    syn_successes: Family<ForwardLabels, Counter>,
    connect_seconds: Family<ForwardLabels, Histogram, fn() -> Histogram>,
    ssh_session_up: Family<ForwardLabels, Gauge>,
    ssh_session_state: Family<ForwardStateLabels, Gauge>,
    up_checks: Family<ForwardLabels, Counter>,
    up_successes: Family<ForwardLabels, Counter>,
    uptime_ratio: Family<ForwardLabels, FloatGauge>,
    unobserved_seconds: Family<ForwardLabels, FloatCounter>,
    first_byte_seconds: Family<ForwardLabels, Histogram, fn() -> Histogram>,
    gateway_probe_attempts: Family<ForwardLabels, Counter>,
    gateway_probe_failures: Family<ForwardReasonLabels, Counter>,
    gateway_up: Family<ForwardLabels, Gauge>,
    config_reloads: Family<ResultLabels, Counter>,
    probe_lag_seconds: Family<ProbeLabels, Histogram, fn() -> Histogram>,
    auth_requests: Family<AuthRequestLabels, Counter>,
    auth_failures: Family<AuthFailureLabels, Counter>,
    token_revision_current: Family<RevisionLabels, Gauge>,
    token_rotation_timestamp: FloatGauge,
    ws_closes: Family<ForwardCodeLabels, Counter>,
    observed_first_byte_seconds: Family<ForwardChannelLabels, Histogram, fn() -> Histogram>,
    token_sources_agree: Family<ForwardLabels, Gauge>,
    model_host_first_byte_seconds: Family<ModelHostLabels, Histogram, fn() -> Histogram>,
    model_host_phase_seconds: Family<ModelHostPhaseLabels, Histogram, fn() -> Histogram>,
    model_host_probe_attempts: Family<ModelHostLabels, Counter>,
    model_host_probe_failures: Family<ModelHostReasonLabels, Counter>,
    objective_tunnel_uptime_ratio: Family<ForwardLabels, FloatGauge>,
    objective_first_byte_seconds: Family<ForwardLabels, FloatGauge>,
    objective_model_host_first_byte_seconds: Family<ModelHostLabels, FloatGauge>,
    listen_sockets: Family<GatewayScopeLabels, Gauge>,
    exposed_since: Family<GatewayLabels, FloatGauge>,
}

/// What the status JSON shows of one forward, beyond the metrics.
struct ForwardState {
    ledger: Ledger,
    /// First-byte times of successful probes, microseconds, for exact quantiles on the status endpoint.
    /// Auto-resizing, u32 counts: it covers only the range actually seen (a loopback gateway's first bytes
    /// need ~16 KiB, where fixed bounds up to the longest timeout took 160 KiB per forward).
    first_byte_us: hdrhistogram::Histogram<u32>,
    session: Option<ssh_session::Outcome>,
    last_syn_ok: Option<bool>,
    last_first_byte: Option<String>,
}

impl ForwardState {
    fn new() -> Self {
        ForwardState {
            ledger: Ledger::default(),
            first_byte_us: hdrhistogram::Histogram::new(3).expect("3 significant figures is a valid precision"),
            session: None,
            last_syn_ok: None,
            last_first_byte: None,
        }
    }
}

/// Records probe outcomes; see the module documentation.
pub struct Recorder {
    registry: Registry,
    metrics: Metrics,
    forwards: Mutex<HashMap<String, ForwardState>>,
    rotation: Mutex<Rotation>,
    /// What the status page lists, from the config: label values to read the metric families with.
    index: Mutex<StatusIndex>,
}

/// Label values the status page reads metrics with; set from each applied config.
#[derive(Default)]
struct StatusIndex {
    revisions: Vec<String>,
    current_revision: Option<String>,
    auth_channels: Vec<(String, &'static str)>,
    model_hosts: Vec<String>,
    gateways: Vec<String>,
    last_model_host: HashMap<String, String>,
}

/// What marks a rotation: the config's `rotated_at`, else the first WebSocket close 4001 of a burst.
#[derive(Default)]
struct Rotation {
    configured: bool,
    last_seen: Option<std::time::Instant>,
}

/// 401, 403 and 429 as label values; other statuses are not auth failures.
fn auth_code_label(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("401"),
        403 => Some("403"),
        429 => Some("429"),
        _ => None,
    }
}

/// WebSocket close codes as label values: the registered ones and the gateway's own, else `other`.
fn ws_close_label(code: u16) -> &'static str {
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1006 => "1006",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1010 => "1010",
        1011 => "1011",
        1012 => "1012",
        1013 => "1013",
        4001 => "4001",
        _ => "other",
    }
}

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
                    let labels = AuthFailureLabels {
                        forward,
                        channel: channel.as_str(),
                        code,
                        token_revision: revision.to_owned(),
                    };
                    m.auth_failures.get_or_create(&labels).inc();
                }
            }
            AuthEvent::WsClose { code } => {
                if code == 4001 {
                    self.mark_rotation_seen();
                }
                m.ws_closes.get_or_create(&ForwardCodeLabels { forward, code: ws_close_label(code) }).inc();
            }
            AuthEvent::FirstByte { channel, elapsed } => {
                let labels = ForwardChannelLabels { forward, channel: channel.as_str() };
                m.observed_first_byte_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
            }
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder with every metric family registered and no forwards yet.
    pub fn new() -> Self {
        let metrics = Metrics {
            syn_attempts: Family::default(),
            syn_successes: Family::default(),
            connect_seconds: Family::new_with_constructor(latency_histogram),
            ssh_session_up: Family::default(),
            ssh_session_state: Family::default(),
            up_checks: Family::default(),
            up_successes: Family::default(),
            uptime_ratio: Family::default(),
            unobserved_seconds: Family::default(),
            first_byte_seconds: Family::new_with_constructor(latency_histogram),
            gateway_probe_attempts: Family::default(),
            gateway_probe_failures: Family::default(),
            gateway_up: Family::default(),
            config_reloads: Family::default(),
            probe_lag_seconds: Family::new_with_constructor(latency_histogram),
            auth_requests: Family::default(),
            auth_failures: Family::default(),
            token_revision_current: Family::default(),
            token_rotation_timestamp: FloatGauge::default(),
            ws_closes: Family::default(),
            observed_first_byte_seconds: Family::new_with_constructor(latency_histogram),
            token_sources_agree: Family::default(),
            model_host_first_byte_seconds: Family::new_with_constructor(latency_histogram),
            model_host_phase_seconds: Family::new_with_constructor(latency_histogram),
            model_host_probe_attempts: Family::default(),
            model_host_probe_failures: Family::default(),
            objective_tunnel_uptime_ratio: Family::default(),
            objective_first_byte_seconds: Family::default(),
            objective_model_host_first_byte_seconds: Family::default(),
            listen_sockets: Family::default(),
            exposed_since: Family::default(),
        };
        let mut registry = Registry::default();
        let m = &metrics;
        let r = &mut registry;
        r.register(
            "openclaw_tunnel_syn_attempts",
            "TCP connects tried to the forward's local address",
            m.syn_attempts.clone(),
        );
        r.register(
            "openclaw_tunnel_syn_successes",
            "TCP connects to the forward's local address that connected",
            m.syn_successes.clone(),
        );
        r.register(
            "openclaw_tunnel_connect_seconds",
            "Local connect time of successful SYN probes (proves only the local ssh listener)",
            m.connect_seconds.clone(),
        );
        r.register("openclaw_tunnel_ssh_session_up", "1 when an ssh process (or autossh's ssh child) owns the local listener; absent while the owner cannot be read", m.ssh_session_up.clone());
        r.register(
            "openclaw_tunnel_ssh_session_state",
            "1 for the current state of the listener's owner: up, no_listener, not_ssh, unreadable, unsupported",
            m.ssh_session_state.clone(),
        );
        r.register("openclaw_tunnel_up_checks", "Probe rounds in which the tunnel was observed", m.up_checks.clone());
        r.register(
            "openclaw_tunnel_up_successes",
            "Probe rounds with the SSH session up and SYN success (the uptime numerator)",
            m.up_successes.clone(),
        );
        r.register(
            "openclaw_tunnel_uptime_ratio",
            "Uptime of the last completed wall-clock five-minute bucket; absent until one completes",
            m.uptime_ratio.clone(),
        );
        r.register(
            "openclaw_tunnel_unobserved_seconds",
            "Time no probe round could run (machine asleep, process stalled); not counted as down",
            m.unobserved_seconds.clone(),
        );
        r.register(
            "openclaw_gateway_first_byte_seconds",
            "Request written to first response byte, GET health path through the forward",
            m.first_byte_seconds.clone(),
        );
        r.register("openclaw_gateway_probe_attempts", "First-byte probes tried", m.gateway_probe_attempts.clone());
        r.register(
            "openclaw_gateway_probe_failures",
            "First-byte probes failed, by reason: refused, reset, empty_reply, timeout, bad_status, local_error (the exporter's own: never the gateway's)",
            m.gateway_probe_failures.clone(),
        );
        r.register(
            "openclaw_gateway_up",
            "1 when the last first-byte probe got a 2xx from the gateway",
            m.gateway_up.clone(),
        );
        r.register(
            "openclaw_exporter_config_reloads",
            "Configuration reloads by result: success, failure",
            m.config_reloads.clone(),
        );
        r.register(
            "openclaw_exporter_probe_lag_seconds",
            "How late a scheduled probe started",
            m.probe_lag_seconds.clone(),
        );
        r.register("openclaw_gateway_auth_requests", "Requests seen carrying a credential or none, by token revision (channel: http, ws from the auth tap; probe = the active auth probe)", m.auth_requests.clone());
        r.register("openclaw_gateway_auth_failures", "Requests refused with 401, 403 or 429, by token revision (a WebSocket AUTH_TOKEN_MISMATCH counts as 401, AUTH_RATE_LIMITED as 429)", m.auth_failures.clone());
        r.register(
            "openclaw_gateway_token_revision_current",
            "1 for the revision configured as current, 0 for the others in the registry",
            m.token_revision_current.clone(),
        );
        r.register(
            "openclaw_gateway_token_rotation_timestamp_seconds",
            "When the current revision became current (config, or the first WebSocket close 4001 seen)",
            m.token_rotation_timestamp.clone(),
        );
        r.register("openclaw_gateway_ws_closes", "WebSocket closes sent by the gateway, by code (4001 auth rotated, 1008 policy/auth, 1012 restart; other = any code outside the known set)", m.ws_closes.clone());
        r.register(
            "openclaw_gateway_observed_first_byte_seconds",
            "First-byte time of real client traffic through the auth tap (channel: http, ws)",
            m.observed_first_byte_seconds.clone(),
        );
        r.register(
            "openclaw_gateway_token_sources_agree",
            "1 when every token source on this machine holds the same token, 0 when they disagree",
            m.token_sources_agree.clone(),
        );
        r.register(
            "openclaw_model_host_first_byte_seconds",
            "Request written to first response byte from the model API",
            m.model_host_first_byte_seconds.clone(),
        );
        r.register(
            "openclaw_model_host_phase_seconds",
            "Model API probe phases: dns, connect, tls",
            m.model_host_phase_seconds.clone(),
        );
        r.register("openclaw_model_host_probe_attempts", "Model API probes tried", m.model_host_probe_attempts.clone());
        r.register(
            "openclaw_model_host_probe_failures",
            "Model API probes failed, by reason: dns, refused, timeout, tls, reset, bad_status",
            m.model_host_probe_failures.clone(),
        );
        r.register(
            "openclaw_objective_tunnel_uptime_ratio",
            "Tunnel uptime objective",
            m.objective_tunnel_uptime_ratio.clone(),
        );
        r.register(
            "openclaw_objective_first_byte_seconds",
            "First-byte latency objective through the forward",
            m.objective_first_byte_seconds.clone(),
        );
        r.register(
            "openclaw_objective_model_host_first_byte_seconds",
            "Model API first-byte latency objective",
            m.objective_model_host_first_byte_seconds.clone(),
        );
        r.register(
            "openclaw_gateway_listen_sockets",
            "Listening sockets on the gateway port by scope: loopback, private, public (0.0.0.0 and :: are public)",
            m.listen_sockets.clone(),
        );
        r.register(
            "openclaw_gateway_exposed_since_timestamp_seconds",
            "When a non-loopback listener on the gateway port was first seen; 0 when loopback only",
            m.exposed_since.clone(),
        );
        r.register(
            "openclaw_exporter_build",
            "Build information",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        for result in ["success", "failure"] {
            metrics.config_reloads.get_or_create_owned(&ResultLabels { result });
        }
        Recorder {
            registry,
            metrics,
            forwards: Mutex::new(HashMap::new()),
            rotation: Mutex::default(),
            index: Mutex::default(),
        }
    }

    /// Create a forward's series at zero, so counters exist (and `rate()` works) before the first probe.
    pub fn register_forward(&self, forward: &str) {
        let m = &self.metrics;
        let labels = ForwardLabels { forward: forward.to_owned() };
        for family in [&m.syn_attempts, &m.syn_successes, &m.up_checks, &m.up_successes, &m.gateway_probe_attempts] {
            family.get_or_create_owned(&labels);
        }
        m.unobserved_seconds.get_or_create_owned(&labels);
        for reason in first_byte::Failure::REASONS {
            m.gateway_probe_failures.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
        self.lock().entry(forward.to_owned()).or_insert_with(ForwardState::new);
    }

    /// Record one tunnel round: a SYN probe and an SSH session probe run together. Returns whether the
    /// round counts as up.
    ///
    /// Up = SSH session up AND SYN success. When the listener's owner cannot be read, the session is
    /// unknown, not down: the round then rests on SYN alone.
    pub fn record_tunnel_round(
        &self,
        forward: &str,
        at: SystemTime,
        syn: &syn::Outcome,
        session: &ssh_session::Outcome,
    ) -> bool {
        let m = &self.metrics;
        let labels = ForwardLabels { forward: forward.to_owned() };
        m.syn_attempts.get_or_create(&labels).inc();
        if let Ok(connected) = syn {
            m.syn_successes.get_or_create(&labels).inc();
            m.connect_seconds.get_or_create(&labels).observe(connected.connect.as_secs_f64());
        }
        let session_known =
            !matches!(session, ssh_session::Outcome::Unreadable { .. } | ssh_session::Outcome::Unsupported { .. });
        let session_ok = matches!(session, ssh_session::Outcome::Up(_)) || !session_known;
        let up = session_ok && syn.is_ok();
        m.up_checks.get_or_create(&labels).inc();
        if up {
            m.up_successes.get_or_create(&labels).inc();
        }
        let mut forwards = self.lock();
        if !forwards.contains_key(forward) {
            forwards.insert(forward.to_owned(), ForwardState::new());
        }
        let Some(state) = forwards.get_mut(forward) else { return up };
        state.ledger.record_round(unix_seconds(at), up);
        state.last_syn_ok = Some(syn.is_ok());
        // The session gauges change only with the session's state: set them then, not every round (a round
        // is otherwise a handful of atomic adds, and these were most of its allocations).
        if state.session.as_ref().map(ssh_session::Outcome::state) != Some(session.state()) {
            if session_known {
                let session_up = matches!(session, ssh_session::Outcome::Up(_));
                m.ssh_session_up.get_or_create(&labels).set(i64::from(session_up));
            } else {
                m.ssh_session_up.remove(&labels);
            }
            for state_name in ssh_session::Outcome::STATES {
                let value = i64::from(state_name == session.state());
                m.ssh_session_state
                    .get_or_create(&ForwardStateLabels { forward: forward.to_owned(), state: state_name })
                    .set(value);
            }
        }
        if state.session.as_ref() != Some(session) {
            state.session = Some(session.clone());
        }
        up
    }

    /// Record `[from, to)` as time no round could observe.
    pub fn record_unobserved(&self, forward: &str, from: SystemTime, to: SystemTime) {
        let seconds = to.duration_since(from).unwrap_or_default().as_secs_f64();
        let labels = ForwardLabels { forward: forward.to_owned() };
        self.metrics.unobserved_seconds.get_or_create(&labels).inc_by(seconds);
        let mut forwards = self.lock();
        let state = forwards.entry(forward.to_owned()).or_insert_with(ForwardState::new);
        state.ledger.record_unobserved(unix_seconds(from), unix_seconds(to));
    }

    /// Record one first-byte probe.
    pub fn record_first_byte(&self, forward: &str, outcome: &first_byte::Outcome) {
        let m = &self.metrics;
        let labels = ForwardLabels { forward: forward.to_owned() };
        m.gateway_probe_attempts.get_or_create(&labels).inc();
        let first_byte = match outcome {
            Ok(response) => Some(response.first_byte),
            Err(first_byte::Failure::BadStatus { first_byte, .. }) => *first_byte,
            Err(_) => None,
        };
        if let Some(first_byte) = first_byte {
            m.first_byte_seconds.get_or_create(&labels).observe(first_byte.as_secs_f64());
        }
        if let Err(failure) = outcome {
            let reason = failure.reason();
            m.gateway_probe_failures.get_or_create(&ForwardReasonLabels { forward: forward.to_owned(), reason }).inc();
        }
        // A local error (the exporter out of descriptors or ports) says nothing about the gateway: its gauge
        // keeps the last answer the gateway gave.
        if !matches!(outcome, Err(first_byte::Failure::LocalError { .. })) {
            m.gateway_up.get_or_create(&labels).set(i64::from(outcome.is_ok()));
        }
        let mut forwards = self.lock();
        let state = forwards.entry(forward.to_owned()).or_insert_with(ForwardState::new);
        if let Ok(response) = outcome {
            // record() grows the auto-resizing histogram; saturating_record() would clamp to its current range.
            let micros = response.first_byte.as_micros().clamp(1, u64::MAX as u128) as u64;
            if state.first_byte_us.record(micros).is_err() {
                state.first_byte_us.saturating_record(micros);
            }
        }
        state.last_first_byte = Some(match outcome {
            Ok(response) => format!("HTTP {} in {:?}", response.status, response.first_byte),
            Err(failure) => failure.to_string(),
        });
    }

    /// Record how late a scheduled probe started.
    pub fn record_probe_lag(&self, probe: &'static str, lag: Duration) {
        self.metrics.probe_lag_seconds.get_or_create(&ProbeLabels { probe }).observe(lag.as_secs_f64());
    }

    /// Apply what the configuration says directly: objectives, the current revision, the rotation time,
    /// and zero-valued auth series (so the first failure of a revision is an increase an alert can see).
    pub fn apply_config(&self, config: &Config) {
        let m = &self.metrics;
        let objectives = &config.objectives;
        for forward in &config.forwards {
            let labels = ForwardLabels { forward: forward.name.clone() };
            m.objective_tunnel_uptime_ratio.get_or_create(&labels).set(objectives.tunnel_uptime_ratio);
            m.objective_first_byte_seconds.get_or_create(&labels).set(objectives.first_byte.as_secs_f64());
        }
        for host in &config.model_hosts {
            let labels = ModelHostLabels { model_host: host.name.clone() };
            m.objective_model_host_first_byte_seconds
                .get_or_create(&labels)
                .set(objectives.model_host_first_byte.as_secs_f64());
            m.model_host_probe_attempts.get_or_create_owned(&labels);
            for reason in probes::model_host::Failure::REASONS {
                m.model_host_probe_failures
                    .get_or_create_owned(&ModelHostReasonLabels { model_host: host.name.clone(), reason });
            }
        }
        m.token_revision_current.clear();
        let registry = &config.auth.registry;
        for name in registry.names() {
            let current = config.auth.current.as_deref() == Some(name);
            m.token_revision_current
                .get_or_create(&RevisionLabels { token_revision: name.to_owned() })
                .set(i64::from(current));
        }
        let mut rotation = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        rotation.configured = config.auth.rotated_at.is_some();
        if let Some(at) = config.auth.rotated_at {
            m.token_rotation_timestamp.set(unix_seconds(at));
        }
        drop(rotation);
        let revisions: Vec<&str> = registry.names().chain([credential::UNKNOWN, credential::NONE]).collect();
        let channels = config
            .auth_taps
            .iter()
            .flat_map(|tap| [(tap.forward.as_str(), "http"), (tap.forward.as_str(), "ws")])
            .chain(config.auth_probe.forwards.iter().map(|f| (f.as_str(), "probe")));
        let channels: Vec<(String, &'static str)> = channels.map(|(f, c)| (f.to_owned(), c)).collect();
        for tap in &config.auth_taps {
            for code in ["1000", "1001", "1006", "1008", "1011", "1012", "4001"] {
                m.ws_closes.get_or_create_owned(&ForwardCodeLabels { forward: tap.forward.clone(), code });
            }
        }
        {
            let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            index.revisions = revisions.iter().map(|r| (*r).to_owned()).collect();
            index.current_revision = config.auth.current.clone();
            index.auth_channels = channels.clone();
            index.model_hosts = config.model_hosts.iter().map(|h| h.name.clone()).collect();
            index.gateways = config.gateways.iter().map(|g| g.name.clone()).collect();
        }
        for (forward, channel) in channels {
            let forward = forward.as_str();
            for revision in &revisions {
                let token_revision = (*revision).to_owned();
                m.auth_requests.get_or_create_owned(&AuthRequestLabels {
                    forward: forward.to_owned(),
                    channel,
                    token_revision: token_revision.clone(),
                });
                for code in ["401", "403", "429"] {
                    m.auth_failures.get_or_create_owned(&AuthFailureLabels {
                        forward: forward.to_owned(),
                        channel,
                        code,
                        token_revision: token_revision.clone(),
                    });
                }
            }
        }
    }

    /// Record one active auth probe: the request, and a failure when refused.
    pub fn record_auth_probe(&self, forward: &str, revision: &str, outcome: &probes::auth_probe::Outcome) {
        let m = &self.metrics;
        m.auth_requests
            .get_or_create(&AuthRequestLabels {
                forward: forward.to_owned(),
                channel: "probe",
                token_revision: revision.to_owned(),
            })
            .inc();
        if let Ok(probes::auth_probe::Answer::Rejected(status)) = outcome {
            if let Some(code) = auth_code_label(*status) {
                m.auth_failures
                    .get_or_create(&AuthFailureLabels {
                        forward: forward.to_owned(),
                        channel: "probe",
                        code,
                        token_revision: revision.to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Whether every token source on this machine holds the same token.
    pub fn set_token_sources_agree(&self, forward: &str, agree: bool) {
        self.metrics
            .token_sources_agree
            .get_or_create(&ForwardLabels { forward: forward.to_owned() })
            .set(i64::from(agree));
    }

    /// Record one model-host probe.
    pub fn record_model_host(&self, name: &str, outcome: &probes::model_host::Outcome) {
        let m = &self.metrics;
        let labels = ModelHostLabels { model_host: name.to_owned() };
        m.model_host_probe_attempts.get_or_create(&labels).inc();
        let summary = match outcome {
            Ok(response) => format!("HTTP {} in {:?}", response.status, response.first_byte),
            Err(failure) => failure.to_string(),
        };
        self.index.lock().unwrap_or_else(|p| p.into_inner()).last_model_host.insert(name.to_owned(), summary);
        let phases = match outcome {
            Ok(response) => &response.phases,
            Err(failure) => &failure.phases,
        };
        for (phase, duration) in phases.iter() {
            m.model_host_phase_seconds
                .get_or_create(&ModelHostPhaseLabels { model_host: name.to_owned(), phase })
                .observe(duration.as_secs_f64());
        }
        match outcome {
            Ok(response) => {
                m.model_host_first_byte_seconds.get_or_create(&labels).observe(response.first_byte.as_secs_f64())
            }
            Err(failure) => {
                if let Some(first_byte) = failure.first_byte {
                    m.model_host_first_byte_seconds.get_or_create(&labels).observe(first_byte.as_secs_f64());
                }
                m.model_host_probe_failures
                    .get_or_create(&ModelHostReasonLabels {
                        model_host: name.to_owned(),
                        reason: failure.reason.as_str(),
                    })
                    .inc();
            }
        }
    }

    /// Record one read of a gateway port's listeners. Returns true when the exposure changed (for the log).
    pub fn record_exposure(&self, gateway: &str, exposure: &probes::exposure::Exposure, now: SystemTime) -> bool {
        let m = &self.metrics;
        for scope in probes::exposure::Scope::ALL {
            let labels = GatewayScopeLabels { gateway: gateway.to_owned(), scope: scope.as_str() };
            m.listen_sockets.get_or_create(&labels).set(exposure.count(scope) as i64);
        }
        let since = m.exposed_since.get_or_create(&GatewayLabels { gateway: gateway.to_owned() });
        let was_exposed = since.get() > 0.0;
        match (was_exposed, exposure.exposed()) {
            (false, true) => {
                since.set(unix_seconds(now));
                true
            }
            (true, false) => {
                since.set(0.0);
                true
            }
            _ => false,
        }
    }

    /// Count a configuration reload.
    pub fn record_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.metrics.config_reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Render every metric in `format`, bringing the uptime ratios up to `now` first.
    pub fn encode(&self, format: Format, now: SystemTime) -> String {
        self.refresh_uptime_ratios(now);
        let mut text = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry),
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry),
        };
        encoded.expect("writing to a String cannot fail");
        text
    }

    /// Everything the status page shows, as JSON (also served at /api/status): per forward the session,
    /// SYN and gateway state, first-byte quantiles, the 24 h of buckets and auth failures by revision; model
    /// hosts; gateway exposure.
    pub fn status(&self, now: SystemTime) -> serde_json::Value {
        let m = &self.metrics;
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let forwards = self.lock();
        let mut names: Vec<_> = forwards.keys().collect();
        names.sort();
        let counter = |family: &Family<ForwardLabels, Counter>, forward: &str| {
            family.get(&ForwardLabels { forward: forward.to_owned() }).map_or(0, |c| c.get())
        };
        let forwards_json: Vec<_> = names
            .into_iter()
            .map(|name| {
                let state = &forwards[name];
                let labels = ForwardLabels { forward: name.clone() };
                let quantile = |q: f64| {
                    (!state.first_byte_us.is_empty()).then(|| state.first_byte_us.value_at_quantile(q) as f64 / 1e6)
                };
                let mut auth_failures = Vec::new();
                for (forward, channel) in index.auth_channels.iter().filter(|(f, _)| f == name) {
                    for revision in &index.revisions {
                        for code in ["401", "403", "429"] {
                            let labels = AuthFailureLabels {
                                forward: forward.clone(),
                                channel,
                                code,
                                token_revision: revision.clone(),
                            };
                            let count = m.auth_failures.get(&labels).map_or(0, |c| c.get());
                            if count > 0 {
                                auth_failures.push(json!({
                                    "channel": channel, "code": code, "token_revision": revision, "count": count,
                                    "current": index.current_revision.as_deref() == Some(revision.as_str()),
                                }));
                            }
                        }
                    }
                }
                json!({
                    "forward": name,
                    "ssh_session": state.session.as_ref().map(session_json),
                    "syn": { "attempts": counter(&m.syn_attempts, name), "successes": counter(&m.syn_successes, name), "last_ok": state.last_syn_ok },
                    "rounds": { "checks": counter(&m.up_checks, name), "up": counter(&m.up_successes, name) },
                    "gateway_up": m.gateway_up.get(&labels).map(|g| g.get() == 1),
                    "last_first_byte": state.last_first_byte,
                    "first_byte_seconds": {
                        "count": state.first_byte_us.len(),
                        "p50": quantile(0.5), "p90": quantile(0.9), "p99": quantile(0.99), "max": quantile(1.0),
                    },
                    "unobserved_seconds": m.unobserved_seconds.get(&labels).map_or(0.0, |c| c.get()),
                    "uptime_ratio_last_bucket": state.ledger.last_completed_ratio(unix_seconds(now)),
                    "buckets": state.ledger.buckets().collect::<Vec<_>>(),
                    "auth_failures": auth_failures,
                })
            })
            .collect();
        let model_hosts: Vec<_> = index
            .model_hosts
            .iter()
            .map(|name| {
                let labels = ModelHostLabels { model_host: name.clone() };
                let failures: u64 = probes::model_host::Failure::REASONS
                    .iter()
                    .map(|reason| {
                        let labels = ModelHostReasonLabels { model_host: name.clone(), reason };
                        m.model_host_probe_failures.get(&labels).map_or(0, |c| c.get())
                    })
                    .sum();
                json!({
                    "model_host": name,
                    "attempts": m.model_host_probe_attempts.get(&labels).map_or(0, |c| c.get()),
                    "failures": failures,
                    "last": index.last_model_host.get(name),
                })
            })
            .collect();
        let gateways: Vec<_> = index
            .gateways
            .iter()
            .map(|name| {
                let mut scopes = serde_json::Map::new();
                for scope in probes::exposure::Scope::ALL {
                    let labels = GatewayScopeLabels { gateway: name.clone(), scope: scope.as_str() };
                    scopes.insert(scope.as_str().into(), json!(m.listen_sockets.get(&labels).map(|g| g.get())));
                }
                let since = m.exposed_since.get(&GatewayLabels { gateway: name.clone() }).map(|g| g.get());
                json!({ "gateway": name, "listen_sockets": scopes, "exposed_since": since })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "now": unix_seconds(now),
            "forwards": forwards_json,
            "model_hosts": model_hosts,
            "gateways": gateways,
        })
    }

    /// The uptime buckets of every forward, for the state file.
    pub fn save_buckets(&self) -> serde_json::Value {
        let forwards = self.lock();
        let saved: serde_json::Map<String, serde_json::Value> = forwards
            .iter()
            .map(|(name, state)| (name.clone(), json!(state.ledger.buckets().collect::<Vec<_>>())))
            .collect();
        json!({ "version": 1, "forwards": saved })
    }

    /// Restore buckets saved by [`Recorder::save_buckets`]; returns how many forwards were restored.
    pub fn restore_buckets(&self, saved: &serde_json::Value) -> Result<usize, String> {
        if saved["version"] != 1 {
            return Err(format!("unknown state version {}", saved["version"]));
        }
        let forwards = saved["forwards"].as_object().ok_or("no forwards object")?;
        let mut parsed = Vec::new();
        for (name, buckets) in forwards {
            let buckets: Vec<crate::uptime::Bucket> =
                serde_json::from_value(buckets.clone()).map_err(|e| format!("forward {name}: {e}"))?;
            parsed.push((name.clone(), buckets));
        }
        let mut states = self.lock();
        let restored = parsed.len();
        for (name, buckets) in parsed {
            states.entry(name).or_insert_with(ForwardState::new).ledger = Ledger::from_buckets(buckets);
        }
        Ok(restored)
    }

    fn mark_rotation_seen(&self) {
        let mut rotation = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        // A rotation closes every open WebSocket at once: one burst of 4001s is one rotation.
        let fresh = rotation.last_seen.is_none_or(|at| at.elapsed() > std::time::Duration::from_secs(60));
        rotation.last_seen = Some(std::time::Instant::now());
        if fresh && !rotation.configured {
            self.metrics.token_rotation_timestamp.set(unix_seconds(SystemTime::now()));
        }
    }

    fn refresh_uptime_ratios(&self, now: SystemTime) {
        let now = unix_seconds(now);
        let forwards = self.lock();
        for (name, state) in forwards.iter() {
            let labels = ForwardLabels { forward: name.clone() };
            match state.ledger.last_completed_ratio(now) {
                Some(ratio) => {
                    self.metrics.uptime_ratio.get_or_create(&labels).set(ratio);
                }
                None => {
                    self.metrics.uptime_ratio.remove(&labels);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ForwardState>> {
        // A panic while holding the lock cannot leave the ledger half-written in a way worth losing all
        // metrics over: keep serving.
        self.forwards.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn session_json(session: &ssh_session::Outcome) -> serde_json::Value {
    let owner = session.owner();
    json!({
        "state": session.state(),
        "pid": owner.map(|o| o.pid),
        "name": owner.map(|o| o.name.clone()),
        "parent_pid": owner.map(|o| o.parent_pid),
        "parent_name": owner.and_then(|o| o.parent_name.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn owner(name: &str) -> ssh_session::Owner {
        ssh_session::Owner {
            pid: 42,
            name: name.into(),
            parent_pid: 1,
            parent_name: Some("autossh".into()),
            socket_inode: 7,
            socket_fd: 3,
        }
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_round_is_up_only_with_ssh_and_syn() {
        let recorder = Recorder::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let syn_ok: syn::Outcome = Ok(syn::Connected { connect: Duration::from_micros(30) });
        let up = ssh_session::Outcome::Up(owner("ssh"));
        assert!(recorder.record_tunnel_round("a", t0, &syn_ok, &up));
        assert!(!recorder.record_tunnel_round("a", t0, &Err(syn::Failure::Refused), &up));
        assert!(!recorder.record_tunnel_round("a", t0, &syn_ok, &ssh_session::Outcome::NotSsh(owner("python3"))));
        let unreadable = ssh_session::Outcome::Unreadable { detail: "x".into() };
        assert!(recorder.record_tunnel_round("a", t0, &syn_ok, &unreadable));

        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(300));
        assert_eq!(sample(&text, "openclaw_tunnel_up_checks_total{forward=\"a\"}"), Some(4.0));
        assert_eq!(sample(&text, "openclaw_tunnel_up_successes_total{forward=\"a\"}"), Some(2.0));
        assert_eq!(sample(&text, "openclaw_tunnel_syn_attempts_total{forward=\"a\"}"), Some(4.0));
        assert_eq!(sample(&text, "openclaw_tunnel_syn_successes_total{forward=\"a\"}"), Some(3.0));
        assert_eq!(sample(&text, "openclaw_tunnel_uptime_ratio{forward=\"a\"}"), Some(0.5));
        // Unreadable is not down: the session gauge is withdrawn, the state says why.
        assert_eq!(sample(&text, "openclaw_tunnel_ssh_session_up{forward=\"a\"}"), None);
        assert_eq!(sample(&text, "openclaw_tunnel_ssh_session_state{forward=\"a\",state=\"unreadable\"}"), Some(1.0));
        // 30 us connects resolve between the 25 us and 50 us bounds.
        assert_eq!(sample(&text, "openclaw_tunnel_connect_seconds_bucket{forward=\"a\",le=\"2.5e-05\"}"), Some(0.0));
        assert_eq!(sample(&text, "openclaw_tunnel_connect_seconds_bucket{forward=\"a\",le=\"5e-05\"}"), Some(3.0));
    }

    #[test]
    fn first_byte_failures_count_by_reason_and_gateway_up_follows_the_last_probe() {
        let recorder = Recorder::new();
        recorder.register_forward("a");
        let ok: first_byte::Outcome = Ok(first_byte::Response {
            connect: Duration::ZERO,
            first_byte: Duration::from_millis(2),
            status: 200,
            content_type: None,
        });
        recorder.record_first_byte("a", &ok);
        recorder.record_first_byte("a", &Err(first_byte::Failure::EmptyReply { elapsed: Duration::ZERO }));
        let text = recorder.encode(Format::OpenMetrics, SystemTime::now());
        assert_eq!(sample(&text, "openclaw_gateway_probe_attempts_total{forward=\"a\"}"), Some(2.0));
        assert_eq!(
            sample(&text, "openclaw_gateway_probe_failures_total{forward=\"a\",reason=\"empty_reply\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "openclaw_gateway_probe_failures_total{forward=\"a\",reason=\"timeout\"}"), Some(0.0));
        assert_eq!(sample(&text, "openclaw_gateway_up{forward=\"a\"}"), Some(0.0));
        assert_eq!(sample(&text, "openclaw_gateway_first_byte_seconds_count{forward=\"a\"}"), Some(1.0));
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("openclaw_exporter_build_info{version="));
        // The status quantiles come from the auto-resizing hdrhistogram: 25 ms, beyond its initial range, must
        // read as 25 ms, not clamped.
        let slow: first_byte::Outcome = Ok(first_byte::Response {
            connect: Duration::ZERO,
            first_byte: Duration::from_millis(25),
            status: 200,
            content_type: None,
        });
        recorder.record_first_byte("a", &slow);
        let quantiles = &recorder.status(SystemTime::now())["forwards"][0]["first_byte_seconds"];
        let (p50, max) = (quantiles["p50"].as_f64().unwrap(), quantiles["max"].as_f64().unwrap());
        assert!((p50 - 0.002).abs() < 0.000_01 && (max - 0.025).abs() < 0.000_05, "{quantiles}");
    }
}

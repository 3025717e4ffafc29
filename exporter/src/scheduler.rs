//! The scheduler: one task per probe per forward, each on its own interval.
//!
//! - Each task starts at a random phase within its interval (jitter), so many forwards do not probe in
//!   lock-step, then keeps a fixed period; a late tick is recorded as `openclaw_exporter_probe_lag_seconds`.
//! - A probe's timeout is the forward's `timeout` capped at the probe's interval, so rounds never overlap;
//!   the probe future is also wrapped in a hard timeout, so a probe that hangs ends as a timeout.
//! - A semaphore bounds how many probes run at once across all forwards.
//! - Gaps between tunnel rounds are measured on a clock that counts suspend (see [`crate::clock`]); a gap
//!   much longer than the interval is recorded as unobserved time, neither up nor down.
//!
//! Tasks stop when their generation's cancellation token fires: on shutdown, or on a reload, which starts
//! a new generation with the new config while the recorder carries on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use probes::{first_byte, ssh_session, syn};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::Instrument;

use crate::clock;
use crate::config::{AuthProbe, Config, Forward, Gateway, ModelHost};
use crate::recorder::Recorder;
use crate::token_sources;
use probes::auth_tap::credential::{Credential, TokenId};
use probes::auth_tap::Registry;

/// A margin past a probe's own timeout before the hard timeout cuts it off.
const HARD_TIMEOUT_MARGIN: Duration = Duration::from_millis(250);

/// Why a configuration's generation could not be prepared. Nothing of the running generation is touched
/// by a failed preparation.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A tap's listen address is taken (by another process, or not bindable here).
    #[error("auth_tap[{index}].listen = \"{listen}\": cannot listen: {source}")]
    TapListen { index: usize, listen: SocketAddr, source: std::io::Error },
    /// A model host's CA file does not load.
    #[error("model_host[{index}].ca_file: {source}")]
    CaFile { index: usize, source: probes::model_host::TlsConfigError },
}

/// A configuration ready to run: its tap listeners bound (or handed over from the running generation) and
/// its TLS settings loaded. Starting it cannot fail, so a reload prepares first and stops the running
/// generation only once the new one is sure to start.
pub struct Prepared {
    config: Config,
    taps: Vec<(crate::config::AuthTap, std::net::TcpListener)>,
    model_hosts: Vec<(Arc<ModelHost>, probes::model_host::Target)>,
}

/// The running probe tasks of one configuration.
pub struct Generation {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    /// A second handle on each tap's listening socket, by address: a reload that keeps the address hands
    /// the same socket to the next generation, so the port never closes (no connection is refused).
    tap_sockets: Vec<(SocketAddr, std::net::TcpListener)>,
}

impl Prepared {
    /// Bind what `config` listens on and load what it reads, reusing the sockets of `running` for
    /// addresses it already listens on. Fails, having changed nothing, when a listener cannot bind or a
    /// CA file does not load.
    pub fn new(config: &Config, running: Option<&Generation>) -> Result<Prepared, StartError> {
        let mut taps = Vec::new();
        for (index, tap) in config.auth_taps.iter().enumerate() {
            let handed_over = running
                .and_then(|generation| generation.tap_sockets.iter().find(|(addr, _)| *addr == tap.listen))
                .map(|(_, socket)| socket.try_clone());
            let listener = match handed_over {
                Some(clone) => clone,
                None => std::net::TcpListener::bind(tap.listen),
            }
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| StartError::TapListen { index, listen: tap.listen, source })?;
            taps.push((tap.clone(), listener));
        }
        let mut model_hosts = Vec::new();
        for (index, host) in config.model_hosts.iter().enumerate() {
            let tls = match host.url.scheme() {
                "https" => Some(
                    probes::model_host::tls_config(host.ca_file.as_deref())
                        .map_err(|source| StartError::CaFile { index, source })?,
                ),
                _ => None,
            };
            let target = probes::model_host::Target {
                host: host.url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned(),
                port: host.url.port_or_known_default().unwrap_or(443),
                path: match host.url.query() {
                    Some(query) => format!("{}?{query}", host.url.path()),
                    None => host.url.path().to_owned(),
                },
                tls,
            };
            model_hosts.push((Arc::new(host.clone()), target));
        }
        Ok(Prepared { config: config.clone(), taps, model_hosts })
    }
}

impl Generation {
    /// Start every probe task and auth tap of `prepared`, recording into `recorder`. Tasks stop when
    /// `parent` is cancelled or [`Generation::stop`] is called.
    pub fn start(prepared: Prepared, recorder: Arc<Recorder>, parent: &CancellationToken) -> Generation {
        let Prepared { config, taps, model_hosts } = prepared;
        recorder.apply_config(&config);
        let cancel = parent.child_token();
        let permits = Arc::new(Semaphore::new(config.scheduler.max_concurrent_probes));
        let ctx = TaskContext {
            recorder: recorder.clone(),
            permits,
            cancel: cancel.clone(),
            owner_lookup: config.scheduler.owner_lookup,
        };
        let mut tasks = JoinSet::new();
        for forward in &config.forwards {
            recorder.register_forward(&forward.name);
            let forward = Arc::new(forward.clone());
            tasks.spawn(tunnel_rounds(forward.clone(), ctx.clone()));
            tasks.spawn(first_byte_probes(forward.clone(), ctx.clone()));
            if config.auth_probe.forwards.contains(&forward.name) {
                tasks.spawn(auth_probes(
                    forward,
                    Arc::new(config.auth_probe.clone()),
                    Arc::new(config.auth.registry.clone()),
                    ctx.clone(),
                ));
            }
        }
        for gateway in &config.gateways {
            tasks.spawn(exposure_checks(Arc::new(gateway.clone()), ctx.clone()));
        }
        for (host, target) in model_hosts {
            tasks.spawn(model_host_probes(host, target, ctx.clone()));
        }
        let registry = Arc::new(config.auth.registry.clone());
        let mut tap_sockets = Vec::new();
        for (tap, listener) in taps {
            let accepting = match listener.try_clone().and_then(tokio::net::TcpListener::from_std) {
                Ok(accepting) => accepting,
                // Out of descriptors between prepare and start: the tap's socket stays bound (kept below),
                // so clients queue rather than get refused, and the next reload retries.
                Err(err) => {
                    tracing::error!(listen = %tap.listen, error = %err, "auth tap cannot accept");
                    tap_sockets.push((tap.listen, listener));
                    continue;
                }
            };
            let tap_config = probes::auth_tap::TapConfig {
                forward: tap.forward.clone(),
                upstream: tap.upstream,
                registry: registry.clone(),
                connect_timeout: Duration::from_secs(10),
            };
            tracing::info!(listen = %tap.listen, upstream = %tap.upstream, forward = %tap.forward, "auth tap listening");
            let sink: Arc<dyn probes::auth_tap::AuthSink> = recorder.clone();
            // Only the accept loop belongs to the generation: a relayed connection runs to its end.
            tasks.spawn(probes::auth_tap::serve(accepting, tap_config, sink));
            tap_sockets.push((tap.listen, listener));
        }
        Generation { cancel, tasks, tap_sockets }
    }

    /// Stop every task now. A probe in flight is dropped; the recorder is written only between awaits, so
    /// no round is ever half-recorded. Connections a tap already accepted carry on to their end.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[derive(Clone)]
struct TaskContext {
    recorder: Arc<Recorder>,
    permits: Arc<Semaphore>,
    cancel: CancellationToken,
    /// How a listener's owner is found (`[scheduler] owner_lookup`).
    owner_lookup: ssh_session::Lookup,
}

/// A fixed-period ticker that starts at a random phase and skips ticks missed during a stall.
struct Ticker {
    period: Duration,
    next: Instant,
}

impl Ticker {
    fn jittered(period: Duration) -> Self {
        let phase = period.mul_f64(rand::random::<f64>());
        Ticker { period, next: Instant::now() + phase }
    }

    /// Wait for the next tick; returns its scheduled instant, or None when cancelled.
    async fn tick(&mut self, cancel: &CancellationToken) -> Option<Instant> {
        tokio::select! {
            _ = cancel.cancelled() => None,
            _ = tokio::time::sleep_until(self.next) => {
                let scheduled = self.next;
                self.next += self.period;
                let now = Instant::now();
                if self.next <= now {
                    // Stalled for more than a period: run once now, then resume the schedule from here.
                    self.next = now + self.period;
                }
                Some(scheduled)
            }
        }
    }
}

/// Wait for a permit, record the lag from `scheduled`, and return the permit.
async fn start_probe(
    ctx: &TaskContext,
    probe: &'static str,
    scheduled: Instant,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let permit = tokio::select! {
        _ = ctx.cancel.cancelled() => return None,
        permit = ctx.permits.clone().acquire_owned() => permit.ok()?,
    };
    ctx.recorder.record_probe_lag(probe, Instant::now().saturating_duration_since(scheduled));
    Some(permit)
}

async fn tunnel_rounds(forward: Arc<Forward>, ctx: TaskContext) {
    let interval = forward.syn_interval;
    let timeout = forward.timeout.min(interval);
    let mut ticker = Ticker::jittered(interval);
    let mut last_round_boot: Option<Duration> = None;
    let mut session_target = ssh_session::Target { addr: forward.local, last_owner: None, lookup: ctx.owner_lookup };
    let syn_target = syn::Target { addr: forward.local };
    let mut last_session: Option<ssh_session::Outcome> = None;

    while let Some(scheduled) = ticker.tick(&ctx.cancel).await {
        let Some(_permit) = start_probe(&ctx, "syn", scheduled).await else {
            break;
        };
        let now_boot = clock::since_boot();
        let now_wall = SystemTime::now();
        if let Some(previous) = last_round_boot {
            let gap = now_boot.saturating_sub(previous);
            // A round normally follows the last by one interval (plus scheduling noise); anything beyond
            // half an interval more is time the process could not observe.
            if gap > interval + interval / 2 {
                let unobserved = gap - interval;
                tracing::warn!(forward = %forward.name, unobserved = ?unobserved, "probe loop stalled (suspend or stop); counting the gap as unobserved");
                ctx.recorder.record_unobserved(&forward.name, now_wall - unobserved, now_wall);
            }
        }
        last_round_boot = Some(now_boot);

        let hard = timeout + HARD_TIMEOUT_MARGIN;
        // TRACE level: the OTLP layer takes every probe span whatever its level, while the log filter (default
        // info) skips them, so without OTLP a round builds no span at all (the log layer would otherwise
        // format every span's fields, every round, for nothing).
        let span = tracing::trace_span!(
            "probe",
            probe = "syn",
            forward = %forward.name,
            outcome = Empty,
            syn = Empty,
            connect_us = Empty,
            ssh_session = Empty
        );
        let (syn_outcome, session) = async {
            tokio::join!(
                async {
                    tokio::time::timeout(hard, syn::probe(&syn_target, timeout))
                        .await
                        .unwrap_or(Err(syn::Failure::Timeout))
                },
                async {
                    tokio::time::timeout(hard, ssh_session::probe(&session_target, timeout))
                        .await
                        .unwrap_or_else(|_| ssh_session::Outcome::Unreadable { detail: "lookup hung".into() })
                },
            )
        }
        .instrument(span.clone())
        .await;
        let up = ctx.recorder.record_tunnel_round(&forward.name, now_wall, &syn_outcome, &session);
        span.record("outcome", if up { "up" } else { "down" });
        span.record("ssh_session", session.state());
        match &syn_outcome {
            Ok(connected) => {
                span.record("syn", "ok");
                span.record("connect_us", connected.connect.as_micros() as u64);
            }
            Err(failure) => {
                span.record("syn", failure.reason());
            }
        }
        drop(span);
        if last_session.as_ref() != Some(&session) {
            log_session_change(&forward.name, &session);
        }
        session_target.last_owner = session.owner().cloned();
        last_session = Some(session);
    }
}

fn log_session_change(forward: &str, session: &ssh_session::Outcome) {
    match session {
        ssh_session::Outcome::Up(owner) => tracing::info!(
            forward, pid = owner.pid, parent_pid = owner.parent_pid, parent = %owner.parent_name.as_deref().unwrap_or("?"),
            "ssh session up: ssh owns the forward's listener"
        ),
        ssh_session::Outcome::NotSsh(owner) => tracing::warn!(
            forward, pid = owner.pid, name = %owner.name, parent = %owner.parent_name.as_deref().unwrap_or("?"),
            "the forward's port is held by a process that is not ssh"
        ),
        ssh_session::Outcome::NoListener => {
            tracing::warn!(forward, "no process listens on the forward's address: ssh is down or reconnecting")
        }
        ssh_session::Outcome::Unreadable { detail } => tracing::warn!(
            forward, detail = %detail, "cannot read which process owns the forward's listener; session state unknown (not counted as down)"
        ),
        ssh_session::Outcome::Unsupported { detail } => {
            tracing::warn!(forward, detail = %detail, "cannot check the ssh session on this system")
        }
    }
}

async fn first_byte_probes(forward: Arc<Forward>, ctx: TaskContext) {
    let interval = forward.first_byte_interval;
    let timeout = forward.timeout.min(interval);
    let target = first_byte::Target { addr: forward.local, path: forward.health_path.clone() };
    let mut ticker = Ticker::jittered(interval);
    let mut last_reason: Option<&'static str> = None;
    while let Some(scheduled) = ticker.tick(&ctx.cancel).await {
        let Some(_permit) = start_probe(&ctx, "first_byte", scheduled).await else {
            break;
        };
        let span = tracing::trace_span!(
            "probe",
            probe = "first_byte",
            forward = %forward.name,
            outcome = Empty,
            first_byte_us = Empty,
            status = Empty
        );
        let outcome = tokio::time::timeout(timeout + HARD_TIMEOUT_MARGIN, first_byte::probe(&target, timeout))
            .instrument(span.clone())
            .await
            .unwrap_or(Err(first_byte::Failure::Timeout));
        ctx.recorder.record_first_byte(&forward.name, &outcome);
        match &outcome {
            Ok(response) => {
                span.record("outcome", "ok");
                span.record("first_byte_us", response.first_byte.as_micros() as u64);
                span.record("status", response.status);
            }
            Err(failure) => {
                span.record("outcome", failure.reason());
            }
        }
        drop(span);
        let reason = outcome.as_ref().err().map(|failure| failure.reason());
        if reason != last_reason {
            match &outcome {
                Ok(response) => {
                    tracing::info!(forward = %forward.name, first_byte = ?response.first_byte, "gateway answers through the forward")
                }
                Err(failure) => {
                    tracing::warn!(forward = %forward.name, reason = failure.reason(), error = %failure, "gateway first-byte probe failing")
                }
            }
            last_reason = reason;
        }
    }
}

async fn model_host_probes(host: Arc<ModelHost>, target: probes::model_host::Target, ctx: TaskContext) {
    let mut ticker = Ticker::jittered(host.interval);
    let timeout = host.timeout.min(host.interval);
    let mut last_reason: Option<&'static str> = None;
    while let Some(scheduled) = ticker.tick(&ctx.cancel).await {
        let Some(_permit) = start_probe(&ctx, "model_host", scheduled).await else { break };
        let span = tracing::trace_span!(
            "probe",
            probe = "model_host",
            model_host = %host.name,
            outcome = Empty,
            dns_us = Empty,
            connect_us = Empty,
            tls_us = Empty,
            first_byte_us = Empty
        );
        let outcome = tokio::time::timeout(timeout + HARD_TIMEOUT_MARGIN, probes::model_host::probe(&target, timeout))
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| {
                Err(probes::model_host::Failure {
                    reason: probes::model_host::Reason::Timeout,
                    phases: Default::default(),
                    first_byte: None,
                    detail: "hard timeout".into(),
                })
            });
        ctx.recorder.record_model_host(&host.name, &outcome);
        let (phases, first_byte) = match &outcome {
            Ok(response) => (&response.phases, Some(response.first_byte)),
            Err(failure) => (&failure.phases, failure.first_byte),
        };
        span.record("outcome", outcome.as_ref().err().map_or("ok", |f| f.reason.as_str()));
        for (phase, duration) in phases.iter() {
            let field = match phase {
                "dns" => "dns_us",
                "connect" => "connect_us",
                _ => "tls_us",
            };
            span.record(field, duration.as_micros() as u64);
        }
        if let Some(first_byte) = first_byte {
            span.record("first_byte_us", first_byte.as_micros() as u64);
        }
        drop(span);
        let reason = outcome.as_ref().err().map(|f| f.reason.as_str());
        if reason != last_reason {
            match &outcome {
                Ok(r) => {
                    tracing::info!(model_host = %host.name, status = r.status, first_byte = ?r.first_byte, "model host answers")
                }
                Err(f) => {
                    tracing::warn!(model_host = %host.name, reason = f.reason.as_str(), error = %f.detail, "model host probe failing")
                }
            }
            last_reason = reason;
        }
    }
}

async fn auth_probes(forward: Arc<Forward>, settings: Arc<AuthProbe>, registry: Arc<Registry>, ctx: TaskContext) {
    let mut ticker = Ticker::jittered(settings.interval);
    let timeout = forward.timeout.min(settings.interval);
    let locations =
        token_sources::Locations::from_env(settings.openclaw_config.as_deref(), settings.token_file.as_deref());
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
    // The fingerprint of a token the gateway refused: not sent again until the sources hold another one.
    let mut refused: Option<TokenId> = None;
    let mut last_note = String::new();
    let mut note = |text: String, warn: bool| {
        if text != last_note {
            if warn {
                tracing::warn!(forward = %forward.name, "{text}");
            } else {
                tracing::info!(forward = %forward.name, "{text}");
            }
            last_note = text;
        }
    };
    while let Some(scheduled) = ticker.tick(&ctx.cancel).await {
        let tokens = tokio::task::spawn_blocking({
            let locations = locations.clone();
            move || token_sources::read(&locations)
        })
        .await
        .unwrap_or_default();
        ctx.recorder.set_token_sources_agree(&forward.name, tokens.agree());
        if !tokens.agree() {
            let effective = tokens.effective().map(|s| s.name.as_str()).unwrap_or("none");
            note(
                format!(
                    "token sources disagree: the CLI uses {effective}; different: {}",
                    tokens.disagreeing().join(", ")
                ),
                true,
            );
        }
        for source in tokens.sources.iter().filter(|s| s.unresolvable.is_some()) {
            tracing::debug!(forward = %forward.name, source = %source.name, why = source.unresolvable.as_deref().unwrap_or(""), "token source unresolvable");
        }
        let Some(token) = tokens.effective().and_then(|s| s.token.clone()) else {
            note("no gateway token found in any source; auth probe idle".into(), false);
            continue;
        };
        let credential = Credential::token(token.expose());
        let fingerprint = TokenId::of(token.expose());
        if refused == Some(fingerprint) {
            continue;
        }
        let Some(_permit) = start_probe(&ctx, "auth", scheduled).await else { break };
        let target = probes::auth_probe::Target { addr: forward.local, token };
        let revision = registry.revision(&credential).to_owned();
        let span = tracing::trace_span!("probe", probe = "auth", forward = %forward.name, token_revision = %revision, outcome = Empty);
        let outcome = tokio::time::timeout(timeout + HARD_TIMEOUT_MARGIN, probes::auth_probe::probe(&target, timeout))
            .instrument(span.clone())
            .await
            .unwrap_or(Err(first_byte::Failure::Timeout));
        span.record(
            "outcome",
            match &outcome {
                Ok(probes::auth_probe::Answer::Accepted(_)) => "accepted",
                Ok(probes::auth_probe::Answer::Rejected(_)) => "rejected",
                Err(failure) => failure.reason(),
            },
        );
        drop(span);
        ctx.recorder.record_auth_probe(&forward.name, &revision, &outcome);
        match outcome {
            Ok(probes::auth_probe::Answer::Rejected(status)) => {
                refused = Some(fingerprint);
                note(format!("the gateway rejects this machine's token (revision {revision}, HTTP {status}); not retried until a token source changes"), true);
            }
            Ok(probes::auth_probe::Answer::Accepted(_)) => {
                refused = None;
                note(format!("the gateway accepts this machine's token (revision {revision})"), false);
            }
            Err(failure) => note(format!("auth probe could not reach the gateway: {failure}"), false),
        }
    }
}

async fn exposure_checks(gateway: Arc<Gateway>, ctx: TaskContext) {
    let mut ticker = Ticker::jittered(gateway.interval);
    let target = probes::exposure::Target { port: gateway.port };
    let mut failing = false;
    while let Some(scheduled) = ticker.tick(&ctx.cancel).await {
        let Some(_permit) = start_probe(&ctx, "exposure", scheduled).await else { break };
        let span = tracing::trace_span!("probe", probe = "exposure", gateway = %gateway.name, outcome = Empty, loopback = Empty, private = Empty, public = Empty);
        let outcome = probes::exposure::probe(&target, gateway.interval.min(Duration::from_secs(5)))
            .instrument(span.clone())
            .await;
        match &outcome {
            Ok(exposure) => {
                span.record("outcome", if exposure.exposed() { "exposed" } else { "loopback_only" });
                for scope in probes::exposure::Scope::ALL {
                    span.record(scope.as_str(), exposure.count(scope) as u64);
                }
            }
            Err(_) => {
                span.record("outcome", "error");
            }
        }
        drop(span);
        match outcome {
            Ok(exposure) => {
                failing = false;
                if ctx.recorder.record_exposure(&gateway.name, &exposure, SystemTime::now()) {
                    let listeners: Vec<String> = exposure.listeners.iter().map(ToString::to_string).collect();
                    if exposure.exposed() {
                        tracing::warn!(gateway = %gateway.name, port = gateway.port, listeners = %listeners.join(" "), "the gateway port listens beyond loopback");
                    } else {
                        tracing::info!(gateway = %gateway.name, port = gateway.port, listeners = %listeners.join(" "), "the gateway port is loopback only again");
                    }
                }
            }
            Err(failure) if !failing => {
                failing = true;
                tracing::warn!(gateway = %gateway.name, error = %failure, "cannot check the gateway's bind exposure");
            }
            Err(_) => {}
        }
    }
}

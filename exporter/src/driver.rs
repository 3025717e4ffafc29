//! The one loop every scheduled probe runs in: a jittered ticker, a permit from the shared semaphore, the
//! lag recorded, the probe under a hard timeout inside a trace span, the outcome handed to the probe
//! kind's adapter, and a log line once per change.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use probes::Probe;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::Instrument;

use crate::clock;
use crate::record::Recorder;

/// Declares the probe span's fields once: the struct an adapter fills in [`Adapter::annotate`], and the span
/// built with every one of them, so a field an adapter sets can never be missing from the span (tracing drops
/// a `record` of an undeclared field silently).
macro_rules! span_fields {
    ($($(#[doc = $doc:literal])* $name:ident: $type:ty),+ $(,)?) => {
        /// The probe span's fields beyond `probe`, the subject and `outcome`: what an adapter may annotate.
        #[derive(Debug, Default)]
        pub struct SpanFields {
            $($(#[doc = $doc])* pub $name: Option<$type>,)+
        }

        impl SpanFields {
            fn record_into(&self, span: &tracing::Span) {
                $(if let Some(value) = &self.$name {
                    span.record(stringify!($name), value);
                })+
            }
        }

        /// The span of one round of `kind`, at TRACE level (see [`drive`]).
        fn probe_span(kind: &'static str) -> tracing::Span {
            tracing::trace_span!(
                "probe",
                probe = kind,
                forward = Empty,
                model_host = Empty,
                gateway = Empty,
                cli = Empty,
                outcome = Empty,
                $($name = Empty,)+
            )
        }
    };
}

span_fields! {
    /// The SYN's result: `ok` or its failure's label.
    syn: &'static str,
    /// The ssh session state's label.
    ssh_session: &'static str,
    /// TCP connect time, microseconds.
    connect_us: u64,
    /// DNS lookup time, microseconds.
    dns_us: u64,
    /// TLS handshake time, microseconds.
    tls_us: u64,
    /// Request written to first byte, microseconds.
    first_byte_us: u64,
    /// The HTTP status.
    status: u16,
    /// The token revision sent.
    token_revision: String,
    /// Listening sockets on loopback.
    loopback: u64,
    /// Listening sockets on private addresses.
    private: u64,
    /// Listening sockets on tailnet addresses.
    tailnet: u64,
    /// Listening sockets on public addresses and wildcards.
    public: u64,
    /// Orphaned ssh clients of the forward.
    orphans: u64,
}

impl SpanFields {
    /// An HTTP probe's answer (first byte, Control UI): its first-byte time and status.
    pub fn http_answer(&mut self, response: &probes::http::Response) {
        self.first_byte_us = Some(response.first_byte.as_micros() as u64);
        self.status = Some(response.status);
    }
}

/// A margin past a probe's own timeout before the hard timeout cuts it off.
const HARD_TIMEOUT_MARGIN: Duration = Duration::from_millis(250);

/// What every task of a generation shares.
#[derive(Clone)]
pub struct TaskContext {
    /// Where outcomes go.
    pub recorder: Arc<Recorder>,
    /// Bounds how many probes run at once.
    pub permits: Arc<Semaphore>,
    /// Fires when the generation stops.
    pub cancel: CancellationToken,
}

/// When a round ran.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Wall-clock time at its start.
    pub wall: SystemTime,
    /// The sleep-counting clock at its start (see [`crate::clock`]).
    pub boot: Duration,
}

/// When and for what a kind's probe runs: the span's subject, the interval and the timeout, one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule<'a> {
    /// The subject's span field and name: `("forward", "laptop")`, `("model_host", ...)`, `("gateway", ...)`,
    /// `("cli", "openclaw")` (one of the span's subject fields, declared in `probe_span`).
    pub subject: (&'static str, &'a str),
    /// How often the probe runs.
    pub interval: Duration,
    /// How long one run may take, as configured ([`Schedule::round_timeout`] caps it).
    pub timeout: Duration,
}

impl<'a> Schedule<'a> {
    /// A forward's probe every `interval`, within the forward's own timeout.
    pub fn forward(forward: &'a crate::config::Forward, interval: Duration) -> Self {
        Schedule { subject: ("forward", &forward.name), interval, timeout: forward.timeout }
    }

    /// A read of the openclaw CLI's own files every `interval`: a file read, so five seconds is a hung disk,
    /// not a slow one.
    pub fn openclaw_cli_files(interval: Duration) -> Schedule<'static> {
        Schedule { subject: ("cli", "openclaw"), interval, timeout: Duration::from_secs(5) }
    }

    /// How long one run may take: the timeout, at most the interval, so rounds never overlap. The one place
    /// the cap is written.
    pub fn round_timeout(&self) -> Duration {
        self.timeout.min(self.interval)
    }
}

/// What the driver needs of a probe kind's adapter: its schedule, where its outcomes go, and
/// what to say about them.
pub trait Adapter: Send + 'static {
    /// The probe it records.
    type Probe: Probe;
    /// What a change is judged by; a log line is written when it differs from the last round's.
    type State: PartialEq + Send;

    /// What the probe runs for, how often, and how long a run may take, as one value.
    fn schedule(&self) -> Schedule<'_>;
    /// Before each round, before its permit: prepare the probe; false skips the round. The auth probe
    /// reads the token sources here and skips while there is no token to send.
    fn before_round(&mut self, _probe: &mut Self::Probe) -> impl std::future::Future<Output = bool> + Send {
        async { true }
    }
    /// Record one outcome. Returns the outcome's label for the span (`ok`, a reason, a state).
    fn handle(&mut self, round: Round, outcome: &<Self::Probe as Probe>::Outcome) -> &'static str;
    /// Set the span's fields beyond `outcome` (timings, status): only fields [`SpanFields`] declares.
    fn annotate(&self, _outcome: &<Self::Probe as Probe>::Outcome, _fields: &mut SpanFields) {}
    /// The state a change is judged by.
    fn state(&self, outcome: &<Self::Probe as Probe>::Outcome) -> Self::State;
    /// Say what changed (called once per change of [`Adapter::state`]).
    fn log_change(&self, outcome: &<Self::Probe as Probe>::Outcome);
}

/// Run `probe` on `recording`'s schedule until the generation stops.
pub async fn drive<R: Adapter>(mut probe: R::Probe, mut kind: R, ctx: TaskContext) {
    let schedule = kind.schedule();
    let (interval, timeout) = (schedule.interval, schedule.round_timeout());
    let mut ticker = Ticker::jittered(interval);
    let mut last_state: Option<R::State> = None;
    while let Some(scheduled) = ticker.tick(&ctx.cancel).await {
        if !kind.before_round(&mut probe).await {
            continue;
        }
        let permit = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            permit = ctx.permits.clone().acquire_owned() => permit,
        };
        let Ok(_permit) = permit else { break };
        ctx.recorder.record_probe_lag(R::Probe::KIND, Instant::now().saturating_duration_since(scheduled));
        let round = Round { wall: SystemTime::now(), boot: clock::since_boot() };
        // TRACE level: the OTLP layer takes every probe span whatever its level, while the log filter (default
        // info) skips them, so without OTLP a round builds no span at all (the log layer would otherwise
        // format every span's fields, every round, for nothing). The fields are every kind's, declared once
        // (`span_fields!`).
        let span = probe_span(R::Probe::KIND);
        let (field, name) = kind.schedule().subject;
        span.record(field, name);
        let outcome = tokio::time::timeout(timeout + HARD_TIMEOUT_MARGIN, probe.probe(timeout))
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| probes::CutOff.into());
        let label = kind.handle(round, &outcome);
        span.record("outcome", label);
        let mut fields = SpanFields::default();
        kind.annotate(&outcome, &mut fields);
        fields.record_into(&span);
        drop(span);
        let state = kind.state(&outcome);
        if last_state.as_ref() != Some(&state) {
            kind.log_change(&outcome);
            last_state = Some(state);
        }
    }
}

/// Every probe's first round comes within this long of start or reload: a row of the status page or a gauge
/// must not wait a whole interval (30 s for the hygiene probe, an hour for an auth probe set so) to appear.
pub const FIRST_ROUND_WITHIN: Duration = Duration::from_secs(2);

/// A fixed-period ticker whose first tick comes at a random moment of [`FIRST_ROUND_WITHIN`] (or of the period
/// when that is shorter), then every period; ticks missed during a stall are skipped.
pub(crate) struct Ticker {
    period: Duration,
    next: Instant,
}

impl Ticker {
    /// Many forwards do not probe in lock-step: each starts at a random phase of the first-round window.
    pub(crate) fn jittered(period: Duration) -> Self {
        let phase = period.min(FIRST_ROUND_WITHIN).mul_f64(rand::random::<f64>());
        Ticker { period, next: Instant::now() + phase }
    }

    /// Wait for the next tick; returns its scheduled instant, or None when cancelled.
    pub(crate) async fn tick(&mut self, cancel: &CancellationToken) -> Option<Instant> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::sync::Mutex;

    /// What the fake probe answers.
    #[derive(Debug, Clone, PartialEq)]
    enum Answer {
        Done,
        Cut,
    }

    impl From<probes::CutOff> for Answer {
        fn from(_: probes::CutOff) -> Self {
            Answer::Cut
        }
    }

    /// A probe that takes a scripted time per round and remembers the timeout it was given.
    struct Scripted {
        delays: Vec<Duration>,
        timeouts: Arc<Mutex<Vec<Duration>>>,
    }

    impl Probe for Scripted {
        const KIND: &'static str = "scripted";
        type Outcome = Answer;

        async fn probe(&mut self, timeout: Duration) -> Answer {
            self.timeouts.lock().unwrap().push(timeout);
            let delay = if self.delays.is_empty() { Duration::ZERO } else { self.delays.remove(0) };
            tokio::time::sleep(delay).await;
            Answer::Done
        }
    }

    /// A recording that keeps what it was handed and stops the generation after `rounds` rounds.
    struct Kept {
        outcomes: Arc<Mutex<Vec<Answer>>>,
        changes: Arc<Mutex<Vec<Answer>>>,
        rounds: usize,
        cancel: CancellationToken,
    }

    impl Adapter for Kept {
        type Probe = Scripted;
        type State = Answer;

        fn schedule(&self) -> Schedule<'_> {
            // The timeout configured longer than the interval: the driver caps it.
            Schedule { subject: ("forward", "t"), interval: Duration::from_secs(1), timeout: Duration::from_secs(5) }
        }
        fn handle(&mut self, _round: Round, outcome: &Answer) -> &'static str {
            let mut outcomes = self.outcomes.lock().unwrap();
            outcomes.push(outcome.clone());
            if outcomes.len() == self.rounds {
                self.cancel.cancel();
            }
            "ok"
        }
        fn state(&self, outcome: &Answer) -> Answer {
            outcome.clone()
        }
        fn log_change(&self, outcome: &Answer) {
            self.changes.lock().unwrap().push(outcome.clone());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_past_its_capped_timeout_is_cut_off_lag_is_recorded_and_a_change_is_said_once() {
        let recorder = Arc::new(Recorder::new());
        let cancel = CancellationToken::new();
        let ctx =
            TaskContext { recorder: recorder.clone(), permits: Arc::new(Semaphore::new(1)), cancel: cancel.clone() };
        let timeouts = Arc::default();
        let second = Duration::from_secs(1);
        // Round 3 hangs for 30 s: the hard timeout (the capped 1 s + the margin) ends it.
        let probe =
            Scripted { delays: vec![Duration::ZERO, Duration::ZERO, second * 30], timeouts: Arc::clone(&timeouts) };
        let (outcomes, changes) = (Arc::default(), Arc::default());
        let recording =
            Kept { outcomes: Arc::clone(&outcomes), changes: Arc::clone(&changes), rounds: 5, cancel: cancel.clone() };
        drive(probe, recording, ctx).await;

        let outcomes = outcomes.lock().unwrap().clone();
        assert_eq!(outcomes, [Answer::Done, Answer::Done, Answer::Cut, Answer::Done, Answer::Done]);
        assert!(timeouts.lock().unwrap().iter().all(|t| *t == second), "the probe got the interval as timeout");
        // Said once per change: the first state, the cut-off, the recovery.
        assert_eq!(changes.lock().unwrap().clone(), [Answer::Done, Answer::Cut, Answer::Done]);
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        let lag = sample(&text, "openclaw_exporter_probe_lag_seconds_count{probe=\"scripted\"}");
        assert_eq!(lag, Some(5.0), "one lag sample per round");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_round_comes_within_seconds_whatever_the_interval() {
        let cancel = CancellationToken::new();
        for period in [Duration::from_millis(500), Duration::from_secs(30), Duration::from_secs(3600)] {
            for _ in 0..20 {
                let start = Instant::now();
                let mut ticker = Ticker::jittered(period);
                let first = ticker.tick(&cancel).await.unwrap();
                assert!(first - start <= FIRST_ROUND_WITHIN.min(period), "{period:?}: first after {:?}", first - start);
                let second = ticker.tick(&cancel).await.unwrap();
                assert_eq!(second - first, period, "then on its interval");
            }
        }
    }
}

//! First-byte probes through a forward: the end-to-end KPI (latency histogram, failures by reason,
//! `gateway_up`), the exact quantiles the status report shows, the gateway's down time through a live forward
//! and the end of the wait for usable.

use std::time::{Duration, SystemTime};

use probes::{first_byte, Label};

use super::UptimeRecord;
use crate::clock::unix_seconds;
use crate::record::families::{ForwardLabels, ForwardReasonLabels};
use crate::record::Recorder;

/// First-byte failures that are never the gateway's: `refused` is the local listener gone (the tunnel's
/// down time, even when the last tunnel round has not seen it yet), `local_error` the exporter's own, `dns`
/// and `tls` a direct route's name and handshake (its tunnel rounds' down time, by their own causes).
pub(crate) const NOT_THE_GATEWAY: [&str; 4] = ["refused", "local_error", "dns", "tls"];

/// The down reason of a round whose first byte came while `/startupz` said starting or draining.
pub(crate) const NOT_STARTED: &str = "not_started";

/// When a first-byte round ran, and what else it needs: wall time and the sleep-counting clock at its
/// start, the time it stands for, and whether the gateway said it had not started.
#[derive(Debug, Clone, Copy)]
pub struct FirstByteRound {
    /// Wall-clock time at its start.
    pub at: SystemTime,
    /// The sleep-counting clock at its start ([`crate::clock::since_boot`]).
    pub boot: Duration,
    /// The time since the last round, capped at one interval (a longer gap was unobserved, not down).
    pub observed: Duration,
    /// The readiness kind's last answer was starting or draining: a good first byte is still down time as
    /// [`NOT_STARTED`] (live but not started: `/healthz` answers while the CLI's connects are closed 1013).
    pub not_started: bool,
}

impl UptimeRecord {
    /// One first-byte round of `forward`, everything it records: the probe's series and quantiles, the end of
    /// a wait for usable (a good answer), the gateway's down time through a live forward by reason, and its
    /// spell on the timeline (`recorder`'s), opened or closed.
    pub fn record_first_byte(
        &self,
        recorder: &Recorder,
        forward: &str,
        round: FirstByteRound,
        outcome: &first_byte::Outcome,
    ) {
        self.record_outcome(forward, outcome);
        if outcome.is_ok() {
            self.record_usable(forward, round.boot);
        }
        let down = match outcome {
            Err(failure) => self.record_gateway_down(recorder, forward, failure.label(), round.observed),
            Ok(_) if round.not_started => self.record_gateway_down(recorder, forward, NOT_STARTED, round.observed),
            Ok(_) => false,
        };
        self.gateway_down_spell(recorder, forward, down, round.at);
    }

    /// `forward`'s first-byte counters at zero: attempts, good ones, failures (those a route of `transport`
    /// can give) and down time by reason.
    pub fn create_first_byte_series(&self, forward: &str, transport: probes::route::Transport) {
        let m = &self.families;
        m.gateway_probe_attempts.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
        m.first_byte_good.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
        for reason in probes::http::reasons_of(transport) {
            m.gateway_probe_failures.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
        for reason in first_byte::Failure::LABELS.iter().filter(|r| !NOT_THE_GATEWAY.contains(r)).chain([&NOT_STARTED])
        {
            m.gateway_down_seconds.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
    }

    /// Whether the last first-byte round left a gateway-down spell open: kept in the record, not in the
    /// adapter, so a reload (a new generation of the adapter) closes the spell its predecessor opened. The
    /// timeline's lock only when a spell may close, not on every healthy round.
    fn gateway_down_spell(&self, recorder: &Recorder, forward: &str, down: bool, at: SystemTime) {
        let was_open = self.with_forward(forward, |state| std::mem::replace(&mut state.gateway_down_open, down));
        if was_open && !down {
            recorder.timeline_over(super::GATEWAY_DOWN, forward, unix_seconds(at));
        }
    }

    /// Count `seconds` of a failed first-byte round as gateway down time, when the forward was live (its
    /// last tunnel round up) and the reason is one a gateway can cause.
    /// Returns whether it was counted (and a timeline spell is open).
    fn record_gateway_down(&self, recorder: &Recorder, forward: &str, reason: &'static str, seconds: Duration) -> bool {
        if NOT_THE_GATEWAY.contains(&reason) {
            return false;
        }
        let live = self.with_forward(forward, |state| state.last_round_up == Some(true));
        if live {
            recorder.timeline_spell(super::GATEWAY_DOWN, forward, reason, unix_seconds(SystemTime::now()));
            let labels = ForwardReasonLabels { forward: forward.to_owned(), reason };
            self.families.gateway_down_seconds.get_or_create(&labels).inc_by(seconds.as_secs_f64());
        }
        live
    }

    /// Record one first-byte probe's series, quantiles and last answer.
    pub(crate) fn record_outcome(&self, forward: &str, outcome: &first_byte::Outcome) {
        let m = &self.families;
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
            let reason = failure.label();
            m.gateway_probe_failures.get_or_create(&ForwardReasonLabels { forward: forward.to_owned(), reason }).inc();
        }
        // A local error (the exporter out of descriptors or ports) says nothing about the gateway: its gauge
        // keeps the last answer the gateway gave.
        if !matches!(outcome, Err(first_byte::Failure::LocalError { .. })) {
            m.gateway_up.get_or_create(&labels).set(i64::from(outcome.is_ok()));
        }
        let good = self.with_forward(forward, |state| {
            if let Ok(response) = outcome {
                // record() grows the auto-resizing histogram; saturating_record() would clamp to its range.
                let micros = response.first_byte.as_micros().clamp(1, u64::MAX as u128) as u64;
                if state.first_byte_us.record(micros).is_err() {
                    state.first_byte_us.saturating_record(micros);
                }
                state.ledger.record_first_byte(unix_seconds(SystemTime::now()), response.first_byte.as_secs_f64());
            }
            state.last_first_byte = Some(match outcome {
                Ok(response) => format!(
                    "HTTP {} in {}",
                    response.status,
                    crate::record::timeline::human_duration(response.first_byte.as_secs_f64())
                ),
                Err(failure) => failure.to_string(),
            });
            outcome.as_ref().is_ok_and(|response| response.first_byte <= state.first_byte_objective)
        });
        if good {
            m.first_byte_good.get_or_create(&labels).inc();
        }
    }
}

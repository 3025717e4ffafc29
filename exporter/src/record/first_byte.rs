//! First-byte probes through a forward: the end-to-end KPI (latency histogram, failures by reason,
//! `gateway_up`) and the exact quantiles the status report shows.

use std::time::{Duration, SystemTime};

use probes::{first_byte, Label};

use super::families::{ForwardLabels, ForwardReasonLabels};
use super::Recorder;
use crate::clock::unix_seconds;

/// First-byte failures that are never the gateway's: `refused` is the local listener gone (the tunnel's
/// down time, even when the last tunnel round has not seen it yet), `local_error` the exporter's own.
pub(crate) const NOT_THE_GATEWAY: [&str; 2] = ["refused", "local_error"];

/// The down reason of a round whose first byte came while `/startupz` said starting or draining.
pub(crate) const NOT_STARTED: &str = "not_started";

impl Recorder {
    /// `forward`'s first-byte counters at zero: attempts, good ones, failures and down time by reason.
    pub fn create_first_byte_series(&self, forward: &str) {
        let m = &self.metrics;
        m.gateway_probe_attempts.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
        m.first_byte_good.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
        for reason in first_byte::Failure::LABELS {
            m.gateway_probe_failures.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
        for reason in first_byte::Failure::LABELS.iter().filter(|r| !NOT_THE_GATEWAY.contains(r)).chain([&NOT_STARTED])
        {
            m.gateway_down_seconds.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
    }

    /// Whether the last first-byte round left a gateway-down spell open: kept in the recorder, beside the
    /// timeline, so a reload (a new generation of the recording) closes the spell its predecessor opened. The
    /// timeline's lock only when a spell may close, not on every healthy round.
    pub fn gateway_down_spell(&self, forward: &str, down: bool, at: SystemTime) {
        let was_open = self.with_forward(forward, |state| std::mem::replace(&mut state.gateway_down_open, down));
        if was_open && !down {
            self.timeline().over("gateway_down", forward, unix_seconds(at));
        }
    }

    /// Count `seconds` of a failed first-byte round as gateway down time, when the forward was live (its
    /// last tunnel round up) and the reason is one a gateway can cause.
    /// Returns whether it was counted (and a timeline spell is open).
    pub fn record_gateway_down(&self, forward: &str, reason: &'static str, seconds: Duration) -> bool {
        if NOT_THE_GATEWAY.contains(&reason) {
            return false;
        }
        let live = self.with_forward(forward, |state| state.last_round_up == Some(true));
        if live {
            self.timeline().spell("gateway_down", forward, reason, unix_seconds(SystemTime::now()));
            let labels = ForwardReasonLabels { forward: forward.to_owned(), reason };
            self.metrics.gateway_down_seconds.get_or_create(&labels).inc_by(seconds.as_secs_f64());
        }
        live
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

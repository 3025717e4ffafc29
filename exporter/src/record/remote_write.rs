//! Remote write's own account, written through these methods: samples by result, rejected batches, retries by
//! status class, queue errors by operation, the last success and the round sequence number.

use super::families::{OpLabels, ProtocolLabels, ReasonLabels, ResultLabels, StatusClassLabels, StatusLabels};
use super::Recorder;

/// Why remote write's negotiation stepped down (`openclaw_exporter_remote_write_fallbacks_total{reason}`).
pub const FALLBACK_REASONS: [&str; 4] =
    ["unsupported_media_type", "no_written_headers", "histograms_dropped", "native_histograms_disabled"];

impl Recorder {
    /// Remote write's counters at zero: each sample result, the rejecting statuses, `retry_classes`, each
    /// queue operation.
    pub fn create_remote_write_series(&self, retry_classes: &[&'static str]) {
        let m = &self.metrics;
        for result in ["sent", "dropped", "failed"] {
            m.remote_write_samples.get_or_create_owned(&ResultLabels { result });
        }
        for status in [400, 409, 422] {
            m.remote_write_rejected.get_or_create_owned(&StatusLabels { status });
        }
        for status in retry_classes {
            m.remote_write_retries.get_or_create_owned(&StatusClassLabels { status });
        }
        for op in ["append", "ack", "read", "open", "acked"] {
            m.remote_write_queue_errors.get_or_create_owned(&OpLabels { op });
        }
        for reason in FALLBACK_REASONS {
            m.remote_write_fallbacks.get_or_create_owned(&ReasonLabels { reason });
        }
    }

    /// The protocol and histograms remote write sends now: the info series names them alone.
    pub fn set_remote_write_protocol(&self, protocol: &'static str, histograms: &'static str) {
        let family = &self.metrics.remote_write_protocol;
        family.clear();
        family.get_or_create(&ProtocolLabels { protocol, histograms }).set(1);
    }

    /// Count a negotiation step down, by `reason` (one of [`FALLBACK_REASONS`]).
    pub fn count_remote_write_fallback(&self, reason: &'static str) {
        self.metrics.remote_write_fallbacks.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Count `bytes` of request bodies the receiver acknowledged.
    pub fn count_remote_write_bytes(&self, bytes: u64) {
        self.metrics.remote_write_bytes.inc_by(bytes);
    }

    /// Count a queue error of `op` (append, ack, read, open, acked).
    pub fn count_remote_write_queue_error(&self, op: &'static str) {
        self.metrics.remote_write_queue_errors.get_or_create(&OpLabels { op }).inc();
    }

    /// Count `samples` by `result` (sent, dropped, failed).
    pub fn count_remote_write_samples(&self, result: &'static str, samples: u64) {
        self.metrics.remote_write_samples.get_or_create(&ResultLabels { result }).inc_by(samples);
    }

    /// Count a retry by its status class (3xx, 4xx, 5xx, 413, network, local).
    pub fn count_remote_write_retry(&self, status: &'static str) {
        self.metrics.remote_write_retries.get_or_create(&StatusClassLabels { status }).inc();
    }

    /// Count a batch the receiver will never take, by its status.
    pub fn count_remote_write_rejected(&self, status: u16) {
        self.metrics.remote_write_rejected.get_or_create(&StatusLabels { status }).inc();
    }

    /// When the receiver last acknowledged a batch, Unix seconds.
    pub fn set_remote_write_last_success(&self, unix_seconds: f64) {
        self.metrics.remote_write_last_success.set(unix_seconds);
    }

    /// The sequence number the next round gets.
    pub fn set_remote_write_round_sequence(&self, next: i64) {
        self.metrics.remote_write_round_sequence.set(next);
    }
}

//! Model-host probes (gateway host -> model API): first byte and phases apart from the tunnel, so a slow
//! answer can be put on the model's egress rather than the forward.

use probes::model_host::{self, Reason};
use probes::Label;

use super::families::{ModelHostLabels, ModelHostPhaseLabels, ModelHostReasonLabels};
use super::Recorder;
use crate::config::Config;

impl Recorder {
    /// Create each configured model host's series at zero and set its objective.
    pub(super) fn apply_model_hosts(&self, config: &Config) {
        let m = &self.metrics;
        for host in &config.model_hosts {
            let labels = ModelHostLabels { model_host: host.name.clone() };
            m.objective_model_host_first_byte_seconds
                .get_or_create(&labels)
                .set(config.objectives.model_host_first_byte.as_secs_f64());
            m.model_host_probe_attempts.get_or_create_owned(&labels);
            for reason in Reason::LABELS {
                m.model_host_probe_failures
                    .get_or_create_owned(&ModelHostReasonLabels { model_host: host.name.clone(), reason });
            }
        }
    }

    /// Record one model-host probe.
    pub fn record_model_host(&self, name: &str, outcome: &model_host::Outcome) {
        let m = &self.metrics;
        let labels = ModelHostLabels { model_host: name.to_owned() };
        m.model_host_probe_attempts.get_or_create(&labels).inc();
        let summary = match outcome {
            Ok(response) => format!(
                "HTTP {} in {}",
                response.status,
                crate::record::timeline::human_duration(response.first_byte.as_secs_f64())
            ),
            Err(failure) => failure.to_string(),
        };
        self.index().last_model_host.insert(name.to_owned(), summary);
        let phases = match outcome {
            Ok(response) => &response.phases,
            Err(failure) => &failure.phases,
        };
        for (phase, duration) in phases.iter() {
            m.model_host_phase_seconds
                .get_or_create(&ModelHostPhaseLabels { model_host: name.to_owned(), phase })
                .observe(duration.as_secs_f64());
        }
        let first_byte = match outcome {
            Ok(response) => Some(response.first_byte),
            Err(failure) => failure.first_byte,
        };
        if let Some(first_byte) = first_byte {
            m.model_host_first_byte_seconds.get_or_create(&labels).observe(first_byte.as_secs_f64());
        }
        if let Err(failure) = outcome {
            let labels = ModelHostReasonLabels { model_host: name.to_owned(), reason: failure.label() };
            m.model_host_probe_failures.get_or_create(&labels).inc();
        }
    }
}

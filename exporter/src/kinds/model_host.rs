//! The adapter of the model host probe kind: its target, interval and timeout, what it does before a round, its logs, and what it records (through the recorder's API in [`crate::record::model_host`]).

use crate::config::ModelHost;
use crate::driver::{Recording, Round, SpanFields};
use crate::record::Recorder;
use probes::model_host::{self, Reason};
use probes::Label;
use std::sync::Arc;
use std::time::Duration;

/// The recording of one model host's probes.
pub struct ModelHostRecording {
    host: Arc<ModelHost>,
    recorder: Arc<Recorder>,
}

/// The probe of `host`: its address and path from the URL, and its TLS settings (CA file loaded) for https.
/// Fallible, so a generation builds it while preparing, before the running one stops.
pub fn target(host: &ModelHost) -> Result<model_host::Target, model_host::TlsConfigError> {
    let tls = match host.url.scheme() {
        "https" => Some(model_host::tls_config(host.ca_file.as_deref())?),
        _ => None,
    };
    Ok(model_host::Target {
        host: host.url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned(),
        port: host.url.port_or_known_default().unwrap_or(443),
        path: match host.url.query() {
            Some(query) => format!("{}?{query}", host.url.path()),
            None => host.url.path().to_owned(),
        },
        tls,
    })
}

impl ModelHostRecording {
    /// The recording of `host`'s probes (its series are created at zero by [`Recorder::apply_config`]).
    pub fn new(host: Arc<ModelHost>, recorder: Arc<Recorder>) -> ModelHostRecording {
        ModelHostRecording { host, recorder }
    }
}

impl Recording for ModelHostRecording {
    type Probe = model_host::Target;
    /// The failure reason; None while the model API answers.
    type State = Option<Reason>;

    fn subject(&self) -> (&'static str, &str) {
        ("model_host", &self.host.name)
    }

    fn interval(&self) -> Duration {
        self.host.interval
    }

    fn timeout(&self) -> Duration {
        self.host.timeout
    }

    fn record(&mut self, _round: Round, outcome: &model_host::Outcome) -> &'static str {
        self.recorder.record_model_host(&self.host.name, outcome);
        outcome.as_ref().err().map_or("ok", Label::label)
    }

    fn annotate(&self, outcome: &model_host::Outcome, fields: &mut SpanFields) {
        let (phases, first_byte) = match outcome {
            Ok(response) => (&response.phases, Some(response.first_byte)),
            Err(failure) => (&failure.phases, failure.first_byte),
        };
        for (phase, duration) in phases.iter() {
            let field = match phase {
                "dns" => &mut fields.dns_us,
                "connect" => &mut fields.connect_us,
                _ => &mut fields.tls_us,
            };
            *field = Some(duration.as_micros() as u64);
        }
        fields.first_byte_us = first_byte.map(|first_byte| first_byte.as_micros() as u64);
    }

    fn state(&self, outcome: &model_host::Outcome) -> Option<Reason> {
        outcome.as_ref().err().map(|failure| failure.reason)
    }

    fn log_change(&self, outcome: &model_host::Outcome) {
        match outcome {
            Ok(r) => {
                tracing::info!(model_host = %self.host.name, status = r.status, first_byte = ?r.first_byte, "model host answers")
            }
            Err(f) => {
                tracing::warn!(model_host = %self.host.name, reason = f.label(), error = %f.detail, "model host probe failing")
            }
        }
    }
}

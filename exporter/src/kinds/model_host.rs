//! The adapter of the model host probe kind: its target, interval and timeout, what it does before a round, its logs, and what it records (through the recorder's API in [`crate::record::model_host`]).

use crate::config::ModelHost;
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::esc;
use crate::record::status::{ModelHostStatus, StatusReport};
use crate::record::Recorder;
use probes::model_host::{self, Reason};
use probes::Label;
use std::fmt::Write;
use std::sync::Arc;

/// The recording of one model host's probes.
pub struct ModelHostKind {
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

/// Registry entry: each `[[model_host]]`, its target prepared (CA files loaded) before the generation started.
pub fn start(start: &mut super::Start<'_>) {
    for (host, target) in std::mem::take(&mut start.model_hosts) {
        let kind = ModelHostKind::new(host, start.recorder.clone());
        start.drive(target, kind);
    }
}

impl ModelHostKind {
    /// The recording of `host`'s probes (its series are created at zero by [`Recorder::apply_config`]).
    pub fn new(host: Arc<ModelHost>, recorder: Arc<Recorder>) -> ModelHostKind {
        ModelHostKind { host, recorder }
    }
}

impl Adapter for ModelHostKind {
    type Probe = model_host::Target;
    /// The failure reason; None while the model API answers.
    type State = Option<Reason>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule { subject: ("model_host", &self.host.name), interval: self.host.interval, timeout: self.host.timeout }
    }

    fn handle(&mut self, _round: Round, outcome: &model_host::Outcome) -> &'static str {
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

/// Its section on the status page (listed in `kinds::PAGE_SECTIONS`).
pub fn page_section(status: &StatusReport) -> String {
    let mut html = String::new();
    model_hosts_section(&mut html, &status.model_hosts);
    html
}

/// The model hosts' table, when there are any.
fn model_hosts_section(html: &mut String, hosts: &[ModelHostStatus]) {
    if !hosts.is_empty() {
        html.push_str("<h2>Model hosts</h2><table class=\"model-hosts\"><tr><th>model host</th><th>last probe</th><th>failures / attempts</th></tr>");
        for host in hosts {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
                esc(&host.model_host),
                esc(host.last.as_deref().unwrap_or("no probe yet")),
                host.failures,
                host.attempts
            );
        }
        html.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::time::Duration;
    use std::time::SystemTime;

    fn host(url: &str) -> ModelHost {
        ModelHost {
            name: "m".into(),
            url: url::Url::parse(url).unwrap(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }

    #[test]
    fn the_target_comes_from_the_url() {
        let target = target(&host("http://[::1]:8080/v1/models?limit=1")).unwrap();
        assert_eq!((target.host.as_str(), target.port, target.path.as_str()), ("::1", 8080, "/v1/models?limit=1"));
        assert!(target.tls.is_none());
        let target = target_or_panic("https://api.example.com/v1");
        assert_eq!((target.port, target.tls.is_some()), (443, true));
        let missing = ModelHost { ca_file: Some("/nonexistent/ca.pem".into()), ..host("https://api.example.com/") };
        assert!(super::target(&missing).is_err(), "a CA file that does not load fails the preparation");
    }

    fn target_or_panic(url: &str) -> model_host::Target {
        target(&host(url)).unwrap()
    }

    #[test]
    fn a_round_records_attempts_phases_first_byte_and_the_failure_reason() {
        let recorder = Arc::new(Recorder::new());
        let mut recording = ModelHostKind::new(Arc::new(host("https://api.example.com/")), recorder.clone());
        let round = Round { wall: SystemTime::now(), boot: Duration::ZERO };
        let phases = model_host::Phases {
            dns: Some(Duration::from_millis(1)),
            connect: Some(Duration::from_millis(2)),
            tls: None,
        };
        let ok: model_host::Outcome =
            Ok(model_host::Response { phases: phases.clone(), first_byte: Duration::from_millis(30), status: 200 });
        assert_eq!(recording.handle(round, &ok), "ok");
        let failed: model_host::Outcome = Err(model_host::Failure {
            reason: Reason::Tls,
            phases,
            first_byte: None,
            detail: "certificate expired".into(),
        });
        assert_eq!(recording.handle(round, &failed), "tls");
        assert_eq!(recording.state(&failed), Some(Reason::Tls));
        let mut fields = SpanFields::default();
        recording.annotate(&ok, &mut fields);
        assert_eq!(
            (fields.dns_us, fields.connect_us, fields.tls_us, fields.first_byte_us),
            (Some(1000), Some(2000), None, Some(30_000))
        );

        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert_eq!(sample(&text, "openclaw_model_host_probe_attempts_total{model_host=\"m\"}"), Some(2.0));
        assert_eq!(
            sample(&text, "openclaw_model_host_probe_failures_total{model_host=\"m\",reason=\"tls\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "openclaw_model_host_first_byte_seconds_count{model_host=\"m\"}"), Some(1.0));
        assert_eq!(sample(&text, "openclaw_model_host_phase_seconds_count{model_host=\"m\",phase=\"dns\"}"), Some(2.0));
    }
}

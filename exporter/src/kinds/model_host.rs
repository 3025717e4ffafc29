//! The model-host kind (gateway host -> model API: first byte and phases apart from the tunnel, so a slow
//! answer can be put on the model's egress rather than the forward): its record (its families, and
//! `model_hosts` at the top of `/api/status`: [`ModelHostRecord`], in [`super::KINDS`]), its target and
//! adapter, and its section on the status page.

use crate::config::{Config, ModelHost};
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::esc;
use crate::record::families::Subjects;
use crate::record::families::{
    families, latency, Latency, ModelHostLabels, ModelHostPhaseLabels, ModelHostReasonLabels,
};
use crate::record::kinds::{lock, KindRecord};
use crate::record::status::StatusReport;
use crate::record::tracked::Tracked;
use probes::model_host::{self, Reason};
use probes::Label;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// One model host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelHostStatus {
    /// Its name.
    pub model_host: String,
    /// Probes tried.
    pub attempts: u64,
    /// Probes failed.
    pub failures: u64,
    /// The last probe, in words.
    pub last: Option<String>,
}

/// Its key at the top of `/api/status`: every configured model host, in the config's order.
const STATUS_KEY: &str = "model_hosts";

/// The configured model hosts' names and each one's last probe in words.
#[derive(Default)]
struct Hosts {
    names: Vec<String>,
    last: HashMap<String, String>,
}

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct ModelHostFamilies {
    first_byte: Latency<ModelHostLabels> = latency(),
        "openclaw_model_host_first_byte_seconds", "Request written to first response byte from the model API";
    phases: Latency<ModelHostPhaseLabels> = latency(),
        "openclaw_model_host_phase_seconds", "Model API probe phases: dns, connect, tls";
    attempts: Tracked<ModelHostLabels, Counter> = Tracked::default(),
        "openclaw_model_host_probe_attempts", "Model API probes tried";
    failures: Tracked<ModelHostReasonLabels, Counter> = Tracked::default(),
        "openclaw_model_host_probe_failures", "Model API probes failed, by reason: dns, refused, timeout, tls, reset, bad_status";
}
}

/// The model-host kind's families and what the status report says of each host.
pub struct ModelHostRecord {
    /// Its families, registered once.
    families: ModelHostFamilies,
    hosts: Mutex<Hosts>,
}

/// Registry entry: the record, its families registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record = ModelHostRecord { families: ModelHostFamilies::register(registry), hosts: Mutex::default() };
    Arc::new(record)
}

impl ModelHostRecord {
    fn hosts(&self) -> std::sync::MutexGuard<'_, Hosts> {
        lock(&self.hosts)
    }

    /// Record one model-host probe.
    fn observe(&self, name: &str, outcome: &model_host::Outcome) {
        let labels = ModelHostLabels { model_host: name.to_owned() };
        self.families.attempts.get_or_create(&labels).inc();
        let summary = match outcome {
            Ok(response) => format!(
                "HTTP {} in {}",
                response.status,
                crate::record::timeline::human_duration(response.first_byte.as_secs_f64())
            ),
            Err(failure) => failure.to_string(),
        };
        self.hosts().last.insert(name.to_owned(), summary);
        let phases = match outcome {
            Ok(response) => &response.phases,
            Err(failure) => &failure.phases,
        };
        for (phase, duration) in phases.iter() {
            let labels = ModelHostPhaseLabels { model_host: name.to_owned(), phase };
            self.families.phases.get_or_create(&labels).observe(duration.as_secs_f64());
        }
        let first_byte = match outcome {
            Ok(response) => Some(response.first_byte),
            Err(failure) => failure.first_byte,
        };
        if let Some(first_byte) = first_byte {
            self.families.first_byte.get_or_create(&labels).observe(first_byte.as_secs_f64());
        }
        if let Err(failure) = outcome {
            let labels = ModelHostReasonLabels { model_host: name.to_owned(), reason: failure.label() };
            self.families.failures.get_or_create(&labels).inc();
        }
    }
}

impl KindRecord for ModelHostRecord {
    /// Each configured model host's counters at zero, and the names the status report lists.
    fn apply_config(&self, config: &Config) {
        for host in &config.model_hosts {
            self.families.attempts.get_or_create_owned(&ModelHostLabels { model_host: host.name.clone() });
            for reason in Reason::LABELS {
                self.families
                    .failures
                    .get_or_create_owned(&ModelHostReasonLabels { model_host: host.name.clone(), reason });
            }
        }
        let mut hosts = self.hosts();
        hosts.names = config.model_hosts.iter().map(|host| host.name.clone()).collect();
        let names = hosts.names.clone();
        hosts.last.retain(|host, _| names.contains(host));
    }

    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
    }

    /// Every configured model host: its attempts, failures and last probe.
    fn report_status(&self) -> serde_json::Map<String, serde_json::Value> {
        let hosts = self.hosts();
        let statuses: Vec<ModelHostStatus> = hosts
            .names
            .iter()
            .map(|name| {
                let failures = Reason::LABELS
                    .iter()
                    .map(|reason| {
                        let labels = ModelHostReasonLabels { model_host: name.clone(), reason };
                        self.families.failures.get(&labels).map_or(0, |c| c.get())
                    })
                    .sum();
                let labels = ModelHostLabels { model_host: name.clone() };
                ModelHostStatus {
                    model_host: name.clone(),
                    attempts: self.families.attempts.get(&labels).map_or(0, |c| c.get()),
                    failures,
                    last: hosts.last.get(name).cloned(),
                }
            })
            .collect();
        let value = serde_json::to_value(statuses).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
        [(STATUS_KEY.to_owned(), value)].into_iter().collect()
    }
}

/// The recording of one model host's probes.
pub struct ModelHostKind {
    host: Arc<ModelHost>,
    record: Arc<ModelHostRecord>,
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

/// Each `[[model_host]]` with its target (CA files loaded): what [`super::prepare`] loads before a generation
/// starts, so a CA file that does not load fails the start or reload, naming its key, and the running
/// generation goes on.
pub fn prepare(config: &Config) -> Result<Vec<(Arc<ModelHost>, model_host::Target)>, super::PrepareError> {
    let mut prepared = Vec::new();
    for (index, host) in config.model_hosts.iter().enumerate() {
        let target = target(host).map_err(|source| super::PrepareError::CaFile { index, source })?;
        prepared.push((Arc::new(host.clone()), target));
    }
    Ok(prepared)
}

/// Registry entry: each `[[model_host]]`, its target prepared (CA files loaded) before the generation started.
pub struct ModelHosts;

impl super::Kind for ModelHosts {
    type Record = ModelHostRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const PAGE: &'static [super::PagePart] = &[super::PagePart::Section(super::Section::ModelHosts, page_section)];

    fn start(start: &mut super::Start<'_>, record: &Arc<ModelHostRecord>) {
        for (host, target) in std::mem::take(&mut start.model_hosts) {
            let kind = ModelHostKind::new(host, record.clone());
            start.drive(target, kind);
        }
    }
}

impl ModelHostKind {
    /// The recording of `host`'s probes (its series are created at zero when the config is applied).
    pub fn new(host: Arc<ModelHost>, record: Arc<ModelHostRecord>) -> ModelHostKind {
        ModelHostKind { host, record }
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
        self.record.observe(&self.host.name, outcome);
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

/// Its section on the status page (at `Section::ModelHosts` in its entry's `PAGE`).
fn page_section(status: &StatusReport) -> String {
    let hosts: Vec<ModelHostStatus> =
        status.kinds.get(STATUS_KEY).cloned().and_then(|value| serde_json::from_value(value).ok()).unwrap_or_default();
    model_hosts_section(&hosts)
}

/// The model hosts' table, when there are any.
fn model_hosts_section(hosts: &[ModelHostStatus]) -> String {
    let mut html = String::new();
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
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{Format, Recorder};
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

    #[test]
    fn preparing_names_the_model_host_whose_ca_file_does_not_load() {
        let garbage = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(garbage.path(), "not a certificate").unwrap();
        let mut config = Config::load(None).unwrap();
        config.model_hosts = vec![
            host("http://127.0.0.1:9/"),
            ModelHost { ca_file: Some(garbage.path().into()), ..host("https://api.example.com/") },
        ];
        let Err(error) = crate::kinds::prepare(&config) else { panic!("a CA file that does not load is prepared") };
        assert!(error.to_string().starts_with("model_host[1].ca_file: "), "{error}");
        config.model_hosts.truncate(1);
        assert!(crate::kinds::prepare(&config).is_ok());
    }

    fn target_or_panic(url: &str) -> model_host::Target {
        target(&host(url)).unwrap()
    }

    #[test]
    fn a_round_records_attempts_phases_first_byte_and_the_failure_reason() {
        let recorder = Arc::new(Recorder::with_kinds(&[record], Vec::new()));
        let mut config = Config::load(None).unwrap();
        config.model_hosts = vec![host("https://api.example.com/")];
        recorder.apply_config(&config);
        let own = recorder.kind_record::<ModelHostRecord>().unwrap();
        let mut recording = ModelHostKind::new(Arc::new(host("https://api.example.com/")), own);
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
        let report = recorder.status(SystemTime::now());
        let hosts = &report.kinds[STATUS_KEY];
        assert_eq!((hosts[0]["attempts"].as_u64(), hosts[0]["failures"].as_u64()), (Some(2), Some(1)), "{hosts}");
        assert!(page_section(&report).contains("certificate expired"));
    }
}

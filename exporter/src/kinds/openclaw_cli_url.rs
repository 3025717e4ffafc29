//! The CLI-URL kind: one per configuration (not per forward), it reads the gateway URL this machine's
//! `openclaw` CLI uses ([`crate::openclaw_cli_url`]) every `[scheduler] cli_url_interval` (30 s: a person edits
//! those files by hand; one small file read a round) and records, for each forward, whether that URL is its
//! address, in its own record ([`OpenclawCliUrlRecord`], in [`super::KINDS`]); its row on the status page.

use crate::checkup::Notes;
use crate::config::Config;
use crate::driver::{Adapter, Round, Schedule};
use crate::html::{esc, state_badge};
use crate::openclaw_cli_url::{self, CliAddress, Finding, OpenclawCliUrl};
use crate::record::families::{families, ForwardLabels, Subjects};
use crate::record::kinds::{lock, KindRecord};
use crate::record::status::ForwardStatus;
use crate::record::tracked::Tracked;
use crate::token_sources::Locations;
use probes::{CutOff, Probe};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The gateway URL the openclaw CLI uses, and which forward it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenclawCliUrlStatus {
    /// The URL.
    pub url: String,
    /// Where the CLI reads it.
    pub source: String,
    /// The forward whose address it is, when it is one.
    pub forward: Option<String>,
    /// The mismatch in words, with what to write instead.
    pub problem: Option<String>,
}

/// Its key in a forward's `/api/status` entry (null while the URL is unknown).
const STATUS_KEY: &str = "cli_url";

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct CliUrlFamilies {
    matches: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_cli_url_matches", "1 when the openclaw CLI's gateway URL (OPENCLAW_GATEWAY_URL, gateway.remote.url in remote mode, 127.0.0.1:gateway.port in local mode) is this forward's address in a plain scheme, 0 when it is not; absent while the CLI's config cannot be read";
}
}

/// The CLI-URL kind's gauge and what each forward's status says of the URL.
pub struct OpenclawCliUrlRecord {
    /// Its families, registered once.
    families: CliUrlFamilies,
    status: Mutex<HashMap<String, OpenclawCliUrlStatus>>,
}

/// Registry entry: the record, its family registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record = OpenclawCliUrlRecord { families: CliUrlFamilies::register(registry), status: Mutex::default() };
    Arc::new(record)
}

impl OpenclawCliUrlRecord {
    fn status(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenclawCliUrlStatus>> {
        lock(&self.status)
    }

    /// The CLI's URL against `forwards`: each forward's gauge 1 when the URL is its address, else 0; every
    /// gauge removed when the URL cannot be known (the CLI's config unreadable).
    fn observe(&self, forwards: &[&str], cli_url: Option<&OpenclawCliUrlStatus>) {
        let mut status = self.status();
        for forward in forwards {
            let labels = ForwardLabels { forward: (*forward).to_owned() };
            match cli_url {
                Some(cli_url) => {
                    let matches = cli_url.forward.as_deref() == Some(*forward);
                    self.families.matches.get_or_create(&labels).set(i64::from(matches));
                    status.insert((*forward).to_owned(), cli_url.clone());
                }
                None => {
                    self.families.matches.remove(&labels);
                    status.remove(*forward);
                }
            }
        }
    }
}

impl KindRecord for OpenclawCliUrlRecord {
    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
        self.status().retain(|forward, _| subjects.keeps(&ForwardLabels { forward: forward.clone() }));
    }

    /// Every forward has the key: the URL and what it is to this forward, null while unknown.
    fn forward_status(&self, forward: &str, _now: f64) -> serde_json::Map<String, serde_json::Value> {
        let status = self.status().get(forward).and_then(|status| serde_json::to_value(status).ok());
        [(STATUS_KEY.to_owned(), status.unwrap_or(serde_json::Value::Null))].into_iter().collect()
    }
}

/// Reads the CLI's URL (its files, off the runtime's threads).
pub struct OpenclawCliUrlProbe {
    /// `[auth_probe] openclaw_config`, when set (else `$OPENCLAW_CONFIG_PATH` or `~/.openclaw/openclaw.json`).
    config_override: Option<PathBuf>,
}

/// What one read found: the CLI's URL, or why it cannot be known.
pub struct OpenclawCliUrlRead(pub Result<OpenclawCliUrl, String>);

impl From<CutOff> for OpenclawCliUrlRead {
    fn from(_: CutOff) -> Self {
        OpenclawCliUrlRead(Err("reading the CLI's config hung".into()))
    }
}

impl Probe for OpenclawCliUrlProbe {
    const KIND: &'static str = "cli_url";
    type Outcome = OpenclawCliUrlRead;

    async fn probe(&mut self, _timeout: Duration) -> OpenclawCliUrlRead {
        let config_override = self.config_override.clone();
        let read = tokio::task::spawn_blocking(move || {
            openclaw_cli_url::read(&Locations::from_env(config_override.as_deref(), None))
        });
        OpenclawCliUrlRead(
            read.await.unwrap_or_else(|join_error| Err(format!("reading the CLI's config: {join_error}"))),
        )
    }
}

/// The recording of the CLI-URL check.
pub struct OpenclawCliUrlKind {
    forwards: Vec<(String, CliAddress)>,
    interval: Duration,
    record: Arc<OpenclawCliUrlRecord>,
}

/// Registry entry: the CLI's URL against every forward, once per configuration with forwards, unless
/// `[scheduler] cli_url_interval` is off.
pub struct CliUrl;

impl super::Kind for CliUrl {
    type Record = OpenclawCliUrlRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const PAGE: &'static [super::PagePart] = &[super::PagePart::Row(super::Row::CliUrl, page_row)];
    const DOCTOR: &'static [crate::checkup::DoctorPart] =
        &[crate::checkup::DoctorPart::Notes(crate::checkup::Layer::Syn, DOCTOR_NOTES)];

    fn start(start: &mut super::Start<'_>, record: &Arc<OpenclawCliUrlRecord>) {
        let Some(interval) = start.config.scheduler.cli_url_interval.filter(|_| !start.config.forwards.is_empty())
        else {
            return;
        };
        let (probe, kind) = OpenclawCliUrlKind::new(start.config, interval, record.clone());
        start.drive(probe, kind);
    }
}

impl OpenclawCliUrlKind {
    /// Its probe and its recording, for every forward of `config`.
    pub fn new(
        config: &Config,
        interval: Duration,
        record: Arc<OpenclawCliUrlRecord>,
    ) -> (OpenclawCliUrlProbe, OpenclawCliUrlKind) {
        // Taps' listen addresses first: a CLI pointed at a tap uses the forward the tap fronts.
        let forwards = config.cli_addresses().into_iter().map(|(name, address)| (name.to_owned(), address)).collect();
        let probe = OpenclawCliUrlProbe { config_override: config.auth_probe.openclaw_config.clone() };
        (probe, OpenclawCliUrlKind { forwards, interval, record })
    }

    fn judge(&self, cli: &OpenclawCliUrl) -> Finding {
        let forwards: Vec<(&str, CliAddress)> =
            self.forwards.iter().map(|(name, address)| (name.as_str(), address.clone())).collect();
        openclaw_cli_url::judge(&cli.url, &forwards)
    }
}

/// What the status report says of the CLI's URL.
pub fn cli_url_status(cli: &OpenclawCliUrl, finding: &Finding) -> OpenclawCliUrlStatus {
    OpenclawCliUrlStatus {
        url: cli.url.clone(),
        source: cli.source.clone(),
        forward: finding.matched().map(str::to_owned),
        problem: finding.explain(cli),
    }
}

impl Adapter for OpenclawCliUrlKind {
    type Probe = OpenclawCliUrlProbe;
    /// The URL and its finding (or why unknown): a change of either is logged once.
    type State = Result<(OpenclawCliUrl, Finding), String>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::openclaw_cli_files(self.interval)
    }

    fn handle(&mut self, _round: Round, OpenclawCliUrlRead(read): &OpenclawCliUrlRead) -> &'static str {
        let names: Vec<&str> = self.forwards.iter().map(|(name, _)| name.as_str()).collect();
        match read {
            Ok(cli) => {
                let finding = self.judge(cli);
                self.record.observe(&names, Some(&cli_url_status(cli, &finding)));
                if finding.matched().is_some() {
                    "matches"
                } else {
                    "mismatch"
                }
            }
            Err(_) => {
                self.record.observe(&names, None);
                "unknown"
            }
        }
    }

    fn state(&self, OpenclawCliUrlRead(read): &OpenclawCliUrlRead) -> Self::State {
        read.clone().map(|cli| {
            let finding = self.judge(&cli);
            (cli, finding)
        })
    }

    fn log_change(&self, OpenclawCliUrlRead(read): &OpenclawCliUrlRead) {
        match read {
            Ok(cli) => match self.judge(cli).explain(cli) {
                None => {
                    tracing::info!(url = %cli.url, source = %cli.source, "the openclaw CLI's gateway URL is a measured forward")
                }
                Some(problem) => tracing::warn!(url = %cli.url, source = %cli.source, "{problem}"),
            },
            Err(why) => tracing::warn!(error = %why, "the openclaw CLI's gateway URL cannot be known"),
        }
    }
}

/// Its row on the status page (at `Row::CliUrl` in its entry's `PAGE`).
fn page_row(forward: &ForwardStatus, _now: f64) -> String {
    let status = forward.kinds.get(STATUS_KEY).cloned().and_then(|value| serde_json::from_value(value).ok());
    cli_url_row(status.as_ref())
}

/// The CLI's URL row: which forward the openclaw CLI uses, and the mismatch when it is not this one.
fn cli_url_row(cli_url: Option<&OpenclawCliUrlStatus>) -> String {
    let Some(cli_url) = cli_url else { return String::new() };
    match (&cli_url.forward, &cli_url.problem) {
        (Some(forward), _) => format!(
            "<tr class=\"cli-url\"><th>CLI URL</th><td class=\"muted\" colspan=\"2\">{} ({}) is forward {}</td></tr>",
            esc(&cli_url.url),
            esc(&cli_url.source),
            esc(forward)
        ),
        (None, Some(problem)) => format!(
            "<tr class=\"cli-url\"><th>CLI URL</th><td>{}</td><td class=\"muted\">{}</td></tr>",
            state_badge(Some(false), "", "not measured"),
            esc(problem)
        ),
        (None, None) => String::new(),
    }
}

/// Its note for the doctor's step 3 (`doctor`): whether the openclaw CLI on this machine talks to this forward: its URL read as the CLI reads it, judged
/// against every configured forward. A note when it does not (localhost, another port, TLS, another forward).
const DOCTOR_NOTES: Notes = |c| {
    let notes = doctor_notes(c.config, c.forward);
    c.notes.extend(notes);
    Box::pin(std::future::ready(()))
};

fn doctor_notes(config: &Config, forward: &crate::config::Forward) -> Vec<String> {
    let locations = config.auth_probe.cli_config_locations();
    let cli = match crate::openclaw_cli_url::read(&locations) {
        Ok(cli) => cli,
        Err(why) => return vec![format!("the openclaw CLI's gateway URL cannot be known: {why}")],
    };
    let finding = crate::openclaw_cli_url::judge(&cli.url, &config.cli_addresses());
    match (finding.matched(), finding.explain(&cli)) {
        (Some(name), _) if name == forward.name => Vec::new(),
        (Some(name), _) => {
            vec![format!("the openclaw CLI uses forward {name} ({} from {}), not this one", cli.url, cli.source)]
        }
        (None, problem) => problem.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{Format, Recorder};
    use std::time::SystemTime;

    #[test]
    fn each_forward_says_whether_the_url_is_its_own_and_unknown_is_no_series() {
        let recorder = Recorder::with_kinds(&[record], Vec::new());
        let mut config = crate::config::Config::load(None).unwrap();
        let mut other = config.forwards[0].clone();
        other.name = "other".into();
        config.forwards.push(other);
        recorder.apply_config(&config);
        let own = recorder.kind_record::<OpenclawCliUrlRecord>().unwrap();
        let matched = OpenclawCliUrlStatus {
            url: "ws://127.0.0.1:18789".into(),
            source: "OPENCLAW_GATEWAY_URL".into(),
            forward: Some("default".into()),
            problem: None,
        };
        own.observe(&["default", "other"], Some(&matched));
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        let series = |forward: &str| format!("openclaw_gateway_cli_url_matches{{forward=\"{forward}\"}}");
        assert_eq!(sample(&text, &series("default")), Some(1.0));
        assert_eq!(sample(&text, &series("other")), Some(0.0));
        let report = recorder.status(SystemTime::now());
        let other = report.forwards.iter().find(|f| f.forward == "other").unwrap();
        assert_eq!(other.kinds[STATUS_KEY]["forward"], "default", "every forward shows the URL and whose it is");
        assert!(page_row(other, report.now).contains("is forward default"));

        own.observe(&["default", "other"], None);
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert_eq!(sample(&text, &series("default")), None, "unknown is not a mismatch");
        let report = recorder.status(SystemTime::now());
        assert!(report.forwards.iter().all(|f| f.kinds[STATUS_KEY].is_null()));
    }
}

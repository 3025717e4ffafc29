//! The adapter of the CLI-version reader: one per configuration, it finds the `openclaw` CLI this machine
//! runs and reads its package's version ([`probes::openclaw_cli_version`]) once a minute (a read only when the
//! package file changed: a `brew upgrade` shows within a minute), and records `openclaw_cli_build_info` and
//! `cli_version` in `/api/status` in its own record ([`OpenclawCliVersionRecord`], in [`super::KINDS`]).

use crate::checkup::{Checkup, Notes};
use crate::config::Config;
use crate::driver::{Adapter, Round, Schedule};
use crate::record::families::{families, VersionLabels};
use crate::record::kinds::{lock, KindRecord};
use crate::record::tracked::Tracked;
use probes::openclaw_cli_version::{self, Failure, Found};
use probes::Label;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Its key at the top of `/api/status` (null while no CLI is found).
const STATUS_KEY: &str = "cli_version";

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct CliVersionFamilies {
    build_info: Tracked<VersionLabels, Gauge> = Tracked::default(),
        "openclaw_cli_build_info", "1, labelled with the version of the openclaw CLI this machine runs (its package.json, never run); absent when none is found";
}
}

/// The CLI's version: its one series, and the version it names.
pub struct OpenclawCliVersionRecord {
    /// Its families, registered once.
    families: CliVersionFamilies,
    version: Mutex<Option<String>>,
}

/// Registry entry: the record, its family registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record =
        OpenclawCliVersionRecord { families: CliVersionFamilies::register(registry), version: Mutex::default() };
    Arc::new(record)
}

impl OpenclawCliVersionRecord {
    /// One series, the old one removed when the version changes; none when no CLI is found.
    fn observe(&self, version: Option<&str>) {
        let mut current = lock(&self.version);
        if current.as_deref() == version {
            return;
        }
        if let Some(old) = current.take() {
            self.families.build_info.remove(&VersionLabels { version: old });
        }
        if let Some(version) = version {
            self.families.build_info.get_or_create(&VersionLabels { version: version.to_owned() }).set(1);
        }
        *current = version.map(str::to_owned);
    }
}

impl KindRecord for OpenclawCliVersionRecord {
    /// No subject label: a reload keeps the series (the CLI is the machine's, not a forward's).
    fn retain_subjects(&self, subjects: &crate::record::families::Subjects) {
        self.families.retain_subjects(subjects);
    }

    fn report_status(&self) -> serde_json::Map<String, serde_json::Value> {
        let version = lock(&self.version).clone();
        [(STATUS_KEY.to_owned(), version.map_or(serde_json::Value::Null, serde_json::Value::String))]
            .into_iter()
            .collect()
    }
}

/// How often the CLI is looked for: a package upgrade shows within this long.
pub const OPENCLAW_CLI_VERSION_EVERY: Duration = Duration::from_secs(60);

/// The recording of the CLI-version reader.
pub struct OpenclawCliVersionKind {
    record: Arc<OpenclawCliVersionRecord>,
}

/// Registry entry: the CLI's version wherever the CLI is used, a laptop with forwards (the gateway host runs
/// its own).
pub struct CliVersion;

impl super::Kind for CliVersion {
    type Record = OpenclawCliVersionRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const DOCTOR: &'static [crate::checkup::DoctorPart] =
        &[crate::checkup::DoctorPart::Notes(crate::checkup::Layer::Readiness, DOCTOR_NOTES)];

    fn start(start: &mut super::Start<'_>, record: &Arc<OpenclawCliVersionRecord>) {
        if start.config.forwards.is_empty() {
            return;
        }
        let (probe, kind) = OpenclawCliVersionKind::new(start.config, record.clone());
        start.drive(probe, kind);
    }
}

impl OpenclawCliVersionKind {
    /// Its probe (the process's PATH and home, and `[cli] path`) and its recording.
    pub fn new(
        config: &Config,
        record: Arc<OpenclawCliVersionRecord>,
    ) -> (openclaw_cli_version::Target, OpenclawCliVersionKind) {
        (openclaw_cli_version::Target::from_env(config.cli_path.clone()), OpenclawCliVersionKind { record })
    }
}

impl Adapter for OpenclawCliVersionKind {
    type Probe = openclaw_cli_version::Target;
    /// The version found, or why none: a change is logged once.
    type State = Result<String, &'static str>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::openclaw_cli_files(OPENCLAW_CLI_VERSION_EVERY)
    }

    fn handle(&mut self, _round: Round, outcome: &openclaw_cli_version::Outcome) -> &'static str {
        self.record.observe(outcome.as_ref().ok().map(|found| found.version.as_str()));
        outcome.as_ref().err().map_or("ok", Label::label)
    }

    fn state(&self, outcome: &openclaw_cli_version::Outcome) -> Self::State {
        outcome.as_ref().map(|found| found.version.clone()).map_err(Label::label)
    }

    fn log_change(&self, outcome: &openclaw_cli_version::Outcome) {
        match outcome {
            Ok(Found { version, executable, package_json }) => tracing::info!(
                version = %version,
                executable = %executable.display(),
                package = %package_json.display(),
                "the openclaw CLI this machine runs"
            ),
            Err(failure @ Failure::NotFound { .. }) => {
                tracing::info!("no openclaw CLI found ({failure}): openclaw_cli_build_info is absent; set [cli] path")
            }
            Err(failure) => tracing::warn!("the openclaw CLI's version cannot be read: {failure}"),
        }
    }
}

/// Its note for the doctor's step 5: the openclaw CLI's version beside the gateway's, when they differ, and
/// which one to upgrade.
const DOCTOR_NOTES: Notes = |c| Box::pin(add_doctor_notes(c));

async fn add_doctor_notes(checkup: &mut Checkup<'_>) {
    let config = checkup.config;
    let notes = doctor_notes(config, checkup.readiness().await).await;
    checkup.notes.extend(notes);
}

async fn doctor_notes(config: &Config, read: &probes::readiness::Outcome) -> Vec<String> {
    let Ok(probes::readiness::Readiness {
        startup: Some(probes::readiness::Startup { version: Some(gateway), .. }),
        ..
    }) = read
    else {
        return Vec::new();
    };
    let mut target = probes::openclaw_cli_version::Target::from_env(config.cli_path.clone());
    let Ok(Ok(cli)) = tokio::task::spawn_blocking(move || target.read()).await else { return Vec::new() };
    if cli.version == *gateway {
        return Vec::new();
    }
    let upgrade = match version_order(&cli.version, gateway) {
        std::cmp::Ordering::Less => {
            format!("upgrade the CLI here (`npm i -g openclaw@{gateway}`, or `brew upgrade openclaw`)")
        }
        _ => "upgrade the gateway on its host (`npm i -g openclaw@latest`, then restart it)".to_owned(),
    };
    vec![format!(
        "versions differ: the openclaw CLI here is {} ({}), the gateway {gateway}; a protocol bump between them refuses the CLI's connects (close 1002): {upgrade}",
        cli.version,
        cli.executable.display()
    )]
}

/// Order two versions by their numeric fields (`2026.10.0` after `2026.9.6`); a pre-release tail is ignored.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let fields = |v: &str| -> Vec<u64> {
        v.split(['-', '+']).next().unwrap_or_default().split('.').map(|f| f.parse().unwrap_or(0)).collect()
    };
    fields(a).cmp(&fields(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{Format, Recorder};
    use std::path::PathBuf;
    use std::time::SystemTime;

    #[test]
    fn versions_order_by_their_numbers_not_their_text() {
        use std::cmp::Ordering;
        assert_eq!(version_order("2026.5.1", "2026.9.6"), Ordering::Less);
        assert_eq!(version_order("2026.10.0", "2026.9.6"), Ordering::Greater);
        assert_eq!(version_order("2026.9.6-beta.1", "2026.9.6"), Ordering::Equal);
    }

    #[test]
    fn the_version_is_one_series_that_moves_and_goes_when_the_cli_does() {
        let recorder = Arc::new(Recorder::with_kinds(&[record], Vec::new()));
        let mut recording = OpenclawCliVersionKind { record: recorder.kind_record().unwrap() };
        let round = Round { wall: SystemTime::now(), boot: Duration::ZERO };
        let found = |version: &str| -> openclaw_cli_version::Outcome {
            Ok(Found {
                executable: PathBuf::from("/x/openclaw"),
                package_json: PathBuf::from("/x/package.json"),
                version: version.into(),
            })
        };
        let series = |v: &str| format!("openclaw_cli_build_info{{version=\"{v}\"}}");
        assert_eq!(recording.handle(round, &found("2026.5.1")), "ok");
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert_eq!(sample(&text, &series("2026.5.1")), Some(1.0));
        recording.handle(round, &found("2026.9.6"));
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert_eq!(sample(&text, &series("2026.9.6")), Some(1.0));
        assert_eq!(sample(&text, &series("2026.5.1")), None, "the old version's series goes");
        assert_eq!(recorder.status(SystemTime::now()).kinds[STATUS_KEY], "2026.9.6");
        let gone: openclaw_cli_version::Outcome = Err(Failure::NotFound { looked: "PATH".into() });
        assert_eq!(recording.handle(round, &gone), "not_found");
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert!(!text.contains("openclaw_cli_build_info{"), "{text}");
        assert!(recorder.status(SystemTime::now()).kinds[STATUS_KEY].is_null(), "no CLI: null, as before one is found");
    }
}

//! The adapter of the CLI-version reader: one per configuration, it finds the `openclaw` CLI this machine
//! runs and reads its package's version ([`probes::openclaw_cli_version`]) once a minute (a read only when the
//! package file changed: a `brew upgrade` shows within a minute), and records `openclaw_cli_build_info`
//! through [`Recorder::record_cli_version`].

use crate::config::Config;
use crate::driver::{Adapter, Round, Schedule};
use crate::record::Recorder;
use probes::openclaw_cli_version::{self, Failure, Found};
use probes::Label;
use std::sync::Arc;
use std::time::Duration;

/// How often the CLI is looked for: a package upgrade shows within this long.
pub const OPENCLAW_CLI_VERSION_EVERY: Duration = Duration::from_secs(60);

/// The recording of the CLI-version reader.
pub struct OpenclawCliVersionKind {
    recorder: Arc<Recorder>,
}

/// Registry entry: the CLI's version wherever the CLI is used, a laptop with forwards (the gateway host runs
/// its own).
pub fn start(start: &mut super::Start<'_>) {
    if start.config.forwards.is_empty() {
        return;
    }
    let (probe, kind) = OpenclawCliVersionKind::new(start.config, start.recorder.clone());
    start.drive(probe, kind);
}

impl OpenclawCliVersionKind {
    /// Its probe (the process's PATH and home, and `[cli] path`) and its recording.
    pub fn new(config: &Config, recorder: Arc<Recorder>) -> (openclaw_cli_version::Target, OpenclawCliVersionKind) {
        (openclaw_cli_version::Target::from_env(config.cli_path.clone()), OpenclawCliVersionKind { recorder })
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
        self.recorder.record_cli_version(outcome.as_ref().ok().map(|found| found.version.as_str()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::path::PathBuf;
    use std::time::SystemTime;

    #[test]
    fn the_version_is_one_series_that_moves_and_goes_when_the_cli_does() {
        let recorder = Arc::new(Recorder::new());
        let mut recording = OpenclawCliVersionKind { recorder: recorder.clone() };
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
        assert_eq!(recorder.status(SystemTime::now()).cli_version.as_deref(), Some("2026.9.6"));
        let gone: openclaw_cli_version::Outcome = Err(Failure::NotFound { looked: "PATH".into() });
        assert_eq!(recording.handle(round, &gone), "not_found");
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert!(!text.contains("openclaw_cli_build_info{"), "{text}");
    }
}

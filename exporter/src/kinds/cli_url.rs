//! The adapter of the CLI-URL check: one per configuration (not per forward), it reads the gateway URL this
//! machine's `openclaw` CLI uses ([`crate::cli_url`]) every `[scheduler] cli_url_interval` (30 s: a person
//! edits those files by hand; one small file read a round) and records, for each forward, whether that URL
//! is its address (through the recorder's API in [`crate::record::tunnel`]).

use crate::cli_url::{self, CliUrl, Finding};
use crate::config::Config;
use crate::driver::{Recording, Round};
use crate::record::status::CliUrlStatus;
use crate::record::Recorder;
use crate::token_sources::Locations;
use probes::{CutOff, Probe};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Reads the CLI's URL (its files, off the runtime's threads).
pub struct CliUrlProbe {
    /// `[auth_probe] openclaw_config`, when set (else `$OPENCLAW_CONFIG_PATH` or `~/.openclaw/openclaw.json`).
    config_override: Option<PathBuf>,
}

/// What one read found: the CLI's URL, or why it cannot be known.
pub struct CliUrlRead(pub Result<CliUrl, String>);

impl From<CutOff> for CliUrlRead {
    fn from(_: CutOff) -> Self {
        CliUrlRead(Err("reading the CLI's config hung".into()))
    }
}

impl Probe for CliUrlProbe {
    const KIND: &'static str = "cli_url";
    type Outcome = CliUrlRead;

    async fn probe(&mut self, _timeout: Duration) -> CliUrlRead {
        let config_override = self.config_override.clone();
        let read =
            tokio::task::spawn_blocking(move || cli_url::read(&Locations::from_env(config_override.as_deref(), None)));
        CliUrlRead(read.await.unwrap_or_else(|join_error| Err(format!("reading the CLI's config: {join_error}"))))
    }
}

/// The recording of the CLI-URL check.
pub struct CliUrlRecording {
    forwards: Vec<(String, SocketAddr)>,
    interval: Duration,
    recorder: Arc<Recorder>,
}

impl CliUrlRecording {
    /// Its probe and its recording, for every forward of `config`.
    pub fn new(config: &Config, interval: Duration, recorder: Arc<Recorder>) -> (CliUrlProbe, CliUrlRecording) {
        // Taps' listen addresses first: a CLI pointed at a tap uses the forward the tap fronts.
        let forwards = config.cli_addresses().into_iter().map(|(name, addr)| (name.to_owned(), addr)).collect();
        let probe = CliUrlProbe { config_override: config.auth_probe.openclaw_config.clone() };
        (probe, CliUrlRecording { forwards, interval, recorder })
    }

    fn judge(&self, cli: &CliUrl) -> Finding {
        let forwards: Vec<(&str, SocketAddr)> =
            self.forwards.iter().map(|(name, local)| (name.as_str(), *local)).collect();
        cli_url::judge(&cli.url, &forwards)
    }
}

/// What the status report says of the CLI's URL.
pub fn cli_url_status(cli: &CliUrl, finding: &Finding) -> CliUrlStatus {
    CliUrlStatus {
        url: cli.url.clone(),
        source: cli.source.clone(),
        forward: finding.matched().map(str::to_owned),
        problem: finding.explain(cli),
    }
}

impl Recording for CliUrlRecording {
    type Probe = CliUrlProbe;
    /// The URL and its finding (or why unknown): a change of either is logged once.
    type State = Result<(CliUrl, Finding), String>;

    fn subject(&self) -> (&'static str, &str) {
        ("cli", "openclaw")
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    /// A file read: five seconds is a hung disk, not a slow one.
    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn record(&mut self, _round: Round, CliUrlRead(read): &CliUrlRead) -> &'static str {
        let names: Vec<&str> = self.forwards.iter().map(|(name, _)| name.as_str()).collect();
        match read {
            Ok(cli) => {
                let finding = self.judge(cli);
                self.recorder.record_cli_url(&names, Some(&cli_url_status(cli, &finding)));
                if finding.matched().is_some() {
                    "matches"
                } else {
                    "mismatch"
                }
            }
            Err(_) => {
                self.recorder.record_cli_url(&names, None);
                "unknown"
            }
        }
    }

    fn state(&self, CliUrlRead(read): &CliUrlRead) -> Self::State {
        read.clone().map(|cli| {
            let finding = self.judge(&cli);
            (cli, finding)
        })
    }

    fn log_change(&self, CliUrlRead(read): &CliUrlRead) {
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

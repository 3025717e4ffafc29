//! The adapter of the CLI-URL check: one per configuration (not per forward), it reads the gateway URL this
//! machine's `openclaw` CLI uses ([`crate::cli_url`]) every `[scheduler] cli_url_interval` (30 s: a person
//! edits those files by hand; one small file read a round) and records, for each forward, whether that URL
//! is its address (through the recorder's API in [`crate::record::tunnel`]).

use crate::config::Config;
use crate::driver::{Adapter, Round, Schedule};
use crate::html::{esc, state_badge};
use crate::openclaw_cli_url::{self, Finding, OpenclawCliUrl};
use crate::record::status::ForwardStatus;
use crate::record::status::OpenclawCliUrlStatus;
use crate::record::Recorder;
use crate::token_sources::Locations;
use probes::{CutOff, Probe};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    forwards: Vec<(String, SocketAddr)>,
    interval: Duration,
    recorder: Arc<Recorder>,
}

/// Registry entry: the CLI's URL against every forward, once per configuration with forwards, unless
/// `[scheduler] cli_url_interval` is off.
pub fn start(start: &mut super::Start<'_>) {
    let Some(interval) = start.config.scheduler.cli_url_interval.filter(|_| !start.config.forwards.is_empty()) else {
        return;
    };
    let (probe, kind) = OpenclawCliUrlKind::new(start.config, interval, start.recorder.clone());
    start.drive(probe, kind);
}

impl OpenclawCliUrlKind {
    /// Its probe and its recording, for every forward of `config`.
    pub fn new(
        config: &Config,
        interval: Duration,
        recorder: Arc<Recorder>,
    ) -> (OpenclawCliUrlProbe, OpenclawCliUrlKind) {
        // Taps' listen addresses first: a CLI pointed at a tap uses the forward the tap fronts.
        let forwards = config.cli_addresses().into_iter().map(|(name, addr)| (name.to_owned(), addr)).collect();
        let probe = OpenclawCliUrlProbe { config_override: config.auth_probe.openclaw_config.clone() };
        (probe, OpenclawCliUrlKind { forwards, interval, recorder })
    }

    fn judge(&self, cli: &OpenclawCliUrl) -> Finding {
        let forwards: Vec<(&str, SocketAddr)> =
            self.forwards.iter().map(|(name, local)| (name.as_str(), *local)).collect();
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

/// Its row on the status page (listed in `kinds::FORWARD_ROWS`).
pub fn page_row(forward: &ForwardStatus, _now: f64) -> String {
    cli_url_row(forward.cli_url.as_ref())
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

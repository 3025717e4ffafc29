//! Bind exposure of a gateway port (host side): listening sockets by scope, and since when the port has
//! listened beyond loopback.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use probes::exposure::{self, Scope};
use probes::Label;

use super::families::{GatewayLabels, GatewayScopeLabels};
use super::Recorder;
use crate::clock::unix_seconds;
use crate::config::Gateway;
use crate::schedule::driver::{Recording, Round};

/// The recording of one gateway port's exposure checks.
pub struct ExposureRecording {
    gateway: Arc<Gateway>,
    recorder: Arc<Recorder>,
}

impl ExposureRecording {
    /// Its probe and its recording.
    pub fn new(gateway: Arc<Gateway>, recorder: Arc<Recorder>) -> (exposure::Target, ExposureRecording) {
        (exposure::Target { port: gateway.port }, ExposureRecording { gateway, recorder })
    }
}

impl Recording for ExposureRecording {
    type Probe = exposure::Target;
    /// Exposed or not; or why the table could not be read.
    type State = Result<bool, &'static str>;

    fn subject(&self) -> (&'static str, &str) {
        ("gateway", &self.gateway.name)
    }

    fn interval(&self) -> Duration {
        self.gateway.interval
    }

    /// A table read is milliseconds; five seconds is a hung read, not a slow one.
    fn timeout(&self) -> Duration {
        self.gateway.interval.min(Duration::from_secs(5))
    }

    fn record(&mut self, round: Round, outcome: &exposure::Outcome) -> &'static str {
        match outcome {
            Ok(found) => {
                self.recorder.record_exposure(&self.gateway.name, found, round.wall);
                if found.exposed() {
                    "exposed"
                } else {
                    "loopback_only"
                }
            }
            Err(failure) => failure.label(),
        }
    }

    fn annotate(&self, outcome: &exposure::Outcome, span: &tracing::Span) {
        if let Ok(found) = outcome {
            for scope in Scope::ALL {
                span.record(scope.label(), found.count(scope) as u64);
            }
        }
    }

    fn state(&self, outcome: &exposure::Outcome) -> Result<bool, &'static str> {
        outcome.as_ref().map(exposure::Exposure::exposed).map_err(Label::label)
    }

    fn log_change(&self, outcome: &exposure::Outcome) {
        let (gateway, port) = (&self.gateway.name, self.gateway.port);
        match outcome {
            Ok(found) => {
                let listeners: Vec<String> = found.listeners.iter().map(ToString::to_string).collect();
                if found.exposed() {
                    tracing::warn!(gateway = %gateway, port, listeners = %listeners.join(" "), "the gateway port listens beyond loopback");
                } else {
                    tracing::info!(gateway = %gateway, port, listeners = %listeners.join(" "), "the gateway port is loopback only");
                }
            }
            Err(failure) => {
                tracing::warn!(gateway = %gateway, error = %failure, "cannot check the gateway's bind exposure")
            }
        }
    }
}

impl Recorder {
    /// Since when each configured gateway has listened beyond loopback (exposed ones only), for the state file.
    pub fn saved_exposures(&self) -> Vec<(String, f64)> {
        let gateways = self.index().gateways.clone();
        gateways
            .into_iter()
            .filter_map(|gateway| {
                let since = self.metrics.exposed_since.get(&GatewayLabels { gateway: gateway.clone() })?.get();
                (since > 0.0).then_some((gateway, since))
            })
            .collect()
    }

    /// Restore a gateway's exposure from the state file: the 24 h red line counts from `since`, and the
    /// timeline's spell is open from then. A loopback-only round after the restart resets both.
    pub fn restore_exposure(&self, gateway: &str, since: f64) {
        self.metrics.exposed_since.get_or_create(&GatewayLabels { gateway: gateway.to_owned() }).set(since);
        self.timeline().spell(
            "exposed",
            gateway,
            "the gateway port listens beyond loopback (since before a restart)",
            since,
        );
    }

    /// Record one read of a gateway port's listeners.
    pub fn record_exposure(&self, gateway: &str, found: &exposure::Exposure, now: SystemTime) {
        let m = &self.metrics;
        for scope in Scope::ALL {
            let labels = GatewayScopeLabels { gateway: gateway.to_owned(), scope: scope.label() };
            m.listen_sockets.get_or_create(&labels).set(found.count(scope) as i64);
        }
        let since = m.exposed_since.get_or_create(&GatewayLabels { gateway: gateway.to_owned() });
        let changed = match (since.get() > 0.0, found.exposed()) {
            (false, true) => {
                since.set(unix_seconds(now));
                true
            }
            (true, false) => {
                since.set(0.0);
                true
            }
            _ => false,
        };
        drop(since);
        if changed {
            let mut timeline = self.timeline();
            if found.exposed() {
                let detail = format!(
                    "the gateway port listens beyond loopback: {} private, {} public",
                    found.count(Scope::Private),
                    found.count(Scope::Public)
                );
                timeline.spell("exposed", gateway, &detail, unix_seconds(now));
            } else {
                timeline.over("exposed", gateway, unix_seconds(now));
            }
        }
    }
}

//! The adapter of the readiness probe kind: its target, interval and timeout, what it does before a round, its logs, and what it records (through the recorder's API in [`crate::record::readiness`]).

use crate::config::Forward;
use crate::driver::{Adapter, Round, Schedule};
use crate::record::readiness::*;
use crate::record::Recorder;
use probes::readiness::{self, Readiness, StartupState};
use probes::Label;
use std::sync::Arc;

/// The recording of one forward's startup and readiness probes.
pub struct ReadinessKind {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
}

/// Registry entry: every forward has its readiness probe.
pub fn start(start: &mut super::Start<'_>, forward: &Arc<Forward>) {
    let (probe, kind) = ReadinessKind::new(forward.clone(), start.recorder.clone());
    start.drive(probe, kind);
}

impl ReadinessKind {
    /// Its probe and its recording.
    pub fn new(forward: Arc<Forward>, recorder: Arc<Recorder>) -> (readiness::Target, ReadinessKind) {
        recorder.create_readiness_series(&forward.name);
        let target = readiness::Target { addr: forward.local };
        (target, ReadinessKind { forward, recorder })
    }
}

impl Adapter for ReadinessKind {
    type Probe = readiness::Target;
    /// What the status report shows; a change of it is logged.
    type State = Option<GatewayState>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.forward.readiness_interval)
    }

    fn handle(&mut self, round: Round, outcome: &readiness::Outcome) -> &'static str {
        // A failed read (the forward down) says nothing new about the gateway: the gauges keep their values,
        // and the first-byte probe reports the path.
        let Ok(found) = outcome else { return outcome.as_ref().err().map_or("ok", Label::label) };
        let state = self.state(outcome);
        self.recorder.record_readiness(&self.forward.name, found, round.wall, state);
        match (&found.startup, &found.ready) {
            (Some(startup), _) if startup.state != StartupState::Started => startup.state.label(),
            (_, Some(ready)) if !ready.ready => "not_ready",
            (None, None) => "no_endpoint",
            _ => "ready",
        }
    }

    fn state(&self, outcome: &readiness::Outcome) -> Option<GatewayState> {
        let Readiness { startup, ready } = outcome.as_ref().ok()?;
        Some(GatewayState {
            startup: startup.as_ref().map(|s| s.state.label().to_owned()),
            version: startup.as_ref().and_then(|s| s.version.clone()),
            ready: ready.as_ref().map(|r| r.ready),
            failing: ready.as_ref().map(|r| r.failing.clone()).unwrap_or_default(),
        })
    }

    fn log_change(&self, outcome: &readiness::Outcome) {
        let forward = self.forward.name.as_str();
        match self.state(outcome) {
            None => {}
            Some(GatewayState { startup: None, ready: None, .. }) => {
                tracing::info!(
                    forward,
                    "the gateway has no /startupz or /readyz (an older build): readiness not measured"
                )
            }
            Some(state) if state.startup.as_deref().is_none_or(|s| s == "started") && state.ready != Some(false) => {
                tracing::info!(
                    forward,
                    version = state.version.as_deref().unwrap_or("?"),
                    "the gateway is started and ready"
                )
            }
            Some(state) => tracing::warn!(
                forward,
                startup = state.startup.as_deref().unwrap_or("?"),
                ready = ?state.ready,
                failing = %state.failing.join(", "),
                "the gateway is live but not started or not ready"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::time::{Duration, SystemTime};

    fn found(state: StartupState, version: &str, uptime_s: u64, ready: bool) -> readiness::Outcome {
        Ok(Readiness {
            startup: Some(readiness::Startup {
                state,
                version: Some(version.into()),
                uptime: Some(Duration::from_secs(uptime_s)),
            }),
            ready: Some(readiness::Ready { ready, failing: Vec::new(), failing_count: 0, event_loop: None }),
        })
    }

    #[test]
    fn a_start_time_that_moves_is_a_restart_and_the_version_series_follows_the_gateway() {
        let recorder = Arc::new(Recorder::new());
        let forward = Arc::new(crate::config::Config::load(None).unwrap().forwards[0].clone());
        let name = forward.name.clone();
        let (_, mut recording) = ReadinessKind::new(forward, recorder.clone());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = |after: u64| Round { wall: t0 + Duration::from_secs(after), boot: Duration::ZERO };
        assert_eq!(recording.handle(round(0), &found(StartupState::Started, "2026.9.6", 100, true)), "ready");
        // Ten seconds later, uptime ten seconds more (within the tolerance): the same process.
        assert_eq!(recording.handle(round(10), &found(StartupState::Started, "2026.9.6", 111, true)), "ready");
        // Restarted with a new version, starting: a restart, the version series replaced.
        assert_eq!(recording.handle(round(20), &found(StartupState::Starting, "2026.9.7", 1, false)), "starting");

        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(30));
        assert_eq!(sample(&text, &format!("openclaw_gateway_restarts_total{{forward=\"{name}\"}}")), Some(1.0));
        for family in ["openclaw_tunnel_gateway_build_info", "openclaw_gateway_build_info"] {
            let version = |v: &str| format!("{family}{{forward=\"{name}\",version=\"{v}\"}}");
            assert_eq!(sample(&text, &version("2026.9.7")), Some(1.0), "{family}");
            assert_eq!(sample(&text, &version("2026.9.6")), None, "{family}: the old version's series is removed");
        }
        let state = |s: &str| format!("openclaw_gateway_startup_state{{forward=\"{name}\",state=\"{s}\"}}");
        assert_eq!((sample(&text, &state("starting")), sample(&text, &state("started"))), (Some(1.0), Some(0.0)));
        // A failed read says nothing new: the gauges keep their values.
        let failed: readiness::Outcome = Err(probes::http::Failure::Refused);
        assert_eq!(recording.handle(round(30), &failed), "refused");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(40));
        assert_eq!(sample(&text, &state("starting")), Some(1.0));
    }
}

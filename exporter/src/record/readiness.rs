//! The gateway's own state through the forward: startup state, readiness and failing components, version,
//! start time and restarts, and its event loop (what `/healthz`, and so `openclaw_gateway_up`, does not say).

use std::time::SystemTime;

use probes::readiness::{self, Readiness, StartupState};
use probes::Label;

use super::families::{ForwardLabels, ForwardStateLabels, ForwardVersionLabels};
use super::Recorder;
use crate::clock::unix_seconds;

/// A start time that moves by more than this is a restart; less is the jitter of two uptime readings.
const RESTART_TOLERANCE_SECONDS: f64 = 2.0;

/// What the status report shows of the gateway behind a forward.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GatewayState {
    /// `starting`, `draining` or `started`; None on a gateway without `/startupz`.
    pub startup: Option<String>,
    /// The gateway's version, when it says.
    pub version: Option<String>,
    /// Ready, per `/readyz`; None without it.
    pub ready: Option<bool>,
    /// The failing components `/readyz` names (bounded).
    pub failing: Vec<String>,
}

impl Recorder {
    /// The restart counter at zero, so the first restart is an increase.
    pub fn create_readiness_series(&self, forward: &str) {
        self.metrics.gateway_restarts.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
    }

    /// One read of `/startupz` and `/readyz` through `forward` at `now`: the startup state, version, start time
    /// (a move is a restart, counted and put on the timeline), readiness and event loop; `state` is what the
    /// status report shows.
    pub fn record_readiness(&self, forward: &str, found: &Readiness, now: SystemTime, state: Option<GatewayState>) {
        self.record_startup(forward, found.startup.as_ref(), now);
        self.record_ready(forward, found.ready.as_ref());
        self.with_forward(forward, |forward| forward.gateway = state);
    }

    fn record_startup(&self, name: &str, startup: Option<&readiness::Startup>, now: SystemTime) {
        let m = &self.metrics;
        let name = &name.to_owned();
        let (last_version, last_started_at) =
            self.with_forward(name, |state| (state.gateway_version.clone(), state.gateway_started_at));
        let labels = ForwardLabels { forward: name.clone() };
        for state in StartupState::LABELS {
            let labels = ForwardStateLabels { forward: name.clone(), state };
            match startup {
                Some(startup) => {
                    m.startup_state.get_or_create(&labels).set(i64::from(*state == startup.state.label()));
                }
                None => {
                    m.startup_state.remove(&labels);
                }
            }
        }
        let version = startup.and_then(|s| s.version.clone());
        if version != last_version {
            // The new name and, for one release, the old one (the gateway's own plugin publishes it too).
            for family in [&m.gateway_build_info, &m.gateway_build_info_deprecated] {
                if let Some(old) = &last_version {
                    family.remove(&ForwardVersionLabels { forward: name.clone(), version: old.clone() });
                }
                if let Some(new) = &version {
                    family.get_or_create(&ForwardVersionLabels { forward: name.clone(), version: new.clone() }).set(1);
                }
            }
        }
        match startup.and_then(|s| s.uptime) {
            Some(uptime) => {
                let started_at = unix_seconds(now) - uptime.as_secs_f64();
                if last_started_at.is_some_and(|last| (started_at - last).abs() > RESTART_TOLERANCE_SECONDS) {
                    m.gateway_restarts.get_or_create(&labels).inc();
                    let shown = version.as_deref().unwrap_or("?");
                    self.timeline().point("gateway_restart", name, &format!("version {shown}"), started_at);
                    tracing::warn!(forward = %name, version = shown, "the gateway restarted");
                }
                self.with_forward(name, |state| state.gateway_started_at = Some(started_at));
                m.gateway_start_time.get_or_create(&labels).set(started_at);
            }
            None => {
                m.gateway_start_time.remove(&labels);
            }
        }
        self.with_forward(name, |state| state.gateway_version = version);
    }

    fn record_ready(&self, name: &str, ready: Option<&readiness::Ready>) {
        let m = &self.metrics;
        let labels = ForwardLabels { forward: name.to_owned() };
        let Some(ready) = ready else {
            m.ready.remove(&labels);
            m.ready_failing.remove(&labels);
            self.record_event_loop(name, None);
            return;
        };
        m.ready.get_or_create(&labels).set(i64::from(ready.ready));
        m.ready_failing.get_or_create(&labels).set(ready.failing_count as i64);
        self.record_event_loop(name, ready.event_loop.as_ref());
    }

    fn record_event_loop(&self, name: &str, event_loop: Option<&readiness::EventLoop>) {
        let m = &self.metrics;
        let labels = ForwardLabels { forward: name.to_owned() };
        match event_loop {
            Some(event_loop) => {
                m.event_loop_delay_p99.get_or_create(&labels).set(event_loop.delay_p99.as_secs_f64());
                m.event_loop_utilization.get_or_create(&labels).set(event_loop.utilization);
                m.event_loop_degraded.get_or_create(&labels).set(i64::from(event_loop.degraded));
            }
            None => {
                m.event_loop_delay_p99.remove(&labels);
                m.event_loop_utilization.remove(&labels);
                m.event_loop_degraded.remove(&labels);
            }
        }
    }
}

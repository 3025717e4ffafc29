//! The readiness kind: the gateway's own state through the forward (`/startupz`, `/readyz`): startup state,
//! readiness and failing components, version, start time and restarts, and its event loop (what `/healthz`,
//! and so `openclaw_gateway_up`, does not say). Its record ([`ReadinessRecord`], in [`super::KINDS`]: its
//! families, each forward's `gateway` in `/api/status`, the restart points on the timeline, and whether the
//! gateway is started, which the first-byte kind asks), and its adapter.

use crate::checkup::{Checkup, DoctorStep, Verdict};
use crate::clock::unix_seconds;
use crate::config::Forward;
use crate::driver::{Adapter, Round, Schedule};
use crate::record::families::{
    families, FloatGauge, ForwardLabels, ForwardStateLabels, ForwardVersionLabels, Subjects,
};
use crate::record::kinds::{lock, KindRecord};
use crate::record::tracked::Tracked;
use crate::record::Recorder;
use probes::readiness::{self, Readiness, StartupState};
use probes::Label;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A start time that moves by more than this is a restart; less is the jitter of two uptime readings.
const RESTART_TOLERANCE_SECONDS: f64 = 2.0;

/// Its key in a forward's `/api/status` entry (null until a read).
const STATUS_KEY: &str = "gateway";

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

/// What the record remembers of a forward's gateway between reads (kept across reloads).
#[derive(Default)]
struct Memory {
    /// What the status report shows.
    state: Option<GatewayState>,
    /// The version last exported, so its series can be removed when it changes.
    version: Option<String>,
    /// The start time last seen, Unix seconds (a move is a restart).
    started_at: Option<f64>,
}

/// The gateway restarted (a point: its start time moved), its version the detail.
pub const GATEWAY_RESTART: crate::record::timeline::EventKind =
    crate::record::timeline::EventKind { name: "gateway_restart", words: "gateway restarted" };

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct ReadinessFamilies {
    startup_state: Tracked<ForwardStateLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_startup_state", "1 for the gateway's current startup state (/startupz): starting, draining, started; absent on gateways without /startupz";
    ready: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_ready", "1 when /readyz says ready; absent on gateways without /readyz";
    ready_failing: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_ready_failing", "How many components /readyz names as failing (the names are in /api/status and the log)";
    gateway_build_info: Tracked<ForwardVersionLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_gateway_build_info", "1, labelled with the gateway's version from /startupz read through the forward; one series per forward";
    gateway_build_info_deprecated: Tracked<ForwardVersionLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_build_info", "DEPRECATED, removed in the next release: use openclaw_tunnel_gateway_build_info (the gateway's diagnostics-prometheus plugin publishes this name with other labels)";
    gateway_start_time: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_gateway_start_time_seconds", "When the gateway process started (now minus its uptime), Unix seconds";
    gateway_restarts: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_gateway_restarts", "Gateway restarts: its start time moved (counted even when no probe saw it down)";
    event_loop_delay_p99: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_gateway_event_loop_delay_p99_seconds", "The gateway's event-loop delay p99 (/readyz eventLoop)";
    event_loop_utilization: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_gateway_event_loop_utilization", "The gateway's event-loop utilization, 0..1 (/readyz eventLoop)";
    event_loop_degraded: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_event_loop_degraded", "1 when the gateway says its event loop is degraded (/readyz eventLoop)";
}
}

/// The readiness kind's families and what it remembers per forward.
pub struct ReadinessRecord {
    /// Its families, registered once.
    families: ReadinessFamilies,
    memory: Mutex<HashMap<String, Memory>>,
}

/// Registry entry: the record, its families registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record = ReadinessRecord { families: ReadinessFamilies::register(registry), memory: Mutex::default() };
    Arc::new(record)
}

impl ReadinessRecord {
    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Memory>> {
        lock(&self.memory)
    }

    /// The restart counter at zero, so the first restart is an increase.
    fn create_series(&self, forward: &str) {
        self.families.gateway_restarts.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
    }

    /// Whether `/startupz` last said the gateway behind `forward` is starting or draining.
    pub fn not_started(&self, forward: &str) -> bool {
        let memory = self.memory();
        let startup = memory.get(forward).and_then(|m| m.state.as_ref()).and_then(|g| g.startup.as_deref());
        startup.is_some_and(|startup| startup != "started")
    }

    /// One read of `/startupz` and `/readyz` through `forward` at `now`: the startup state, version, start time
    /// (a move is a restart, counted and put on `recorder`'s timeline), readiness and event loop; `state` is
    /// what the status report shows.
    fn observe(
        &self,
        recorder: &Recorder,
        forward: &str,
        found: &Readiness,
        now: SystemTime,
        state: Option<GatewayState>,
    ) {
        self.record_startup(recorder, forward, found.startup.as_ref(), now);
        self.record_ready(forward, found.ready.as_ref());
        self.memory().entry(forward.to_owned()).or_default().state = state;
    }

    fn record_startup(&self, recorder: &Recorder, name: &str, startup: Option<&readiness::Startup>, now: SystemTime) {
        let name = &name.to_owned();
        let (last_version, last_started_at) = {
            let memory = self.memory();
            let last = memory.get(name);
            (last.and_then(|m| m.version.clone()), last.and_then(|m| m.started_at))
        };
        let labels = ForwardLabels { forward: name.clone() };
        for state in StartupState::LABELS {
            let labels = ForwardStateLabels { forward: name.clone(), state };
            match startup {
                Some(startup) => {
                    self.families.startup_state.get_or_create(&labels).set(i64::from(*state == startup.state.label()));
                }
                None => {
                    self.families.startup_state.remove(&labels);
                }
            }
        }
        let version = startup.and_then(|s| s.version.clone());
        if version != last_version {
            // The new name and, for one release, the old one (the gateway's own plugin publishes it too).
            for family in [&self.families.gateway_build_info, &self.families.gateway_build_info_deprecated] {
                if let Some(old) = &last_version {
                    family.remove(&ForwardVersionLabels { forward: name.clone(), version: old.clone() });
                }
                if let Some(new) = &version {
                    family.get_or_create(&ForwardVersionLabels { forward: name.clone(), version: new.clone() }).set(1);
                }
            }
        }
        let mut started_at_now = last_started_at;
        match startup.and_then(|s| s.uptime) {
            Some(uptime) => {
                let started_at = unix_seconds(now) - uptime.as_secs_f64();
                if last_started_at.is_some_and(|last| (started_at - last).abs() > RESTART_TOLERANCE_SECONDS) {
                    self.families.gateway_restarts.get_or_create(&labels).inc();
                    let shown = version.as_deref().unwrap_or("?");
                    recorder.timeline_point(GATEWAY_RESTART, name, &format!("version {shown}"), started_at);
                    tracing::warn!(forward = %name, version = shown, "the gateway restarted");
                }
                started_at_now = Some(started_at);
                self.families.gateway_start_time.get_or_create(&labels).set(started_at);
            }
            None => {
                self.families.gateway_start_time.remove(&labels);
            }
        }
        let mut memory = self.memory();
        let memory = memory.entry(name.clone()).or_default();
        memory.started_at = started_at_now;
        memory.version = version;
    }

    fn record_ready(&self, name: &str, ready: Option<&readiness::Ready>) {
        let labels = ForwardLabels { forward: name.to_owned() };
        let Some(ready) = ready else {
            self.families.ready.remove(&labels);
            self.families.ready_failing.remove(&labels);
            self.record_event_loop(name, None);
            return;
        };
        self.families.ready.get_or_create(&labels).set(i64::from(ready.ready));
        self.families.ready_failing.get_or_create(&labels).set(ready.failing_count as i64);
        self.record_event_loop(name, ready.event_loop.as_ref());
    }

    fn record_event_loop(&self, name: &str, event_loop: Option<&readiness::EventLoop>) {
        let labels = ForwardLabels { forward: name.to_owned() };
        match event_loop {
            Some(event_loop) => {
                self.families.event_loop_delay_p99.get_or_create(&labels).set(event_loop.delay_p99.as_secs_f64());
                self.families.event_loop_utilization.get_or_create(&labels).set(event_loop.utilization);
                self.families.event_loop_degraded.get_or_create(&labels).set(i64::from(event_loop.degraded));
            }
            None => {
                self.families.event_loop_delay_p99.remove(&labels);
                self.families.event_loop_utilization.remove(&labels);
                self.families.event_loop_degraded.remove(&labels);
            }
        }
    }
}

impl KindRecord for ReadinessRecord {
    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
        self.memory().retain(|forward, _| subjects.keeps(&ForwardLabels { forward: forward.clone() }));
    }

    /// Every forward has the key: the gateway's state, null before a read.
    fn forward_status(&self, forward: &str, _now: f64) -> serde_json::Map<String, serde_json::Value> {
        let state = self.memory().get(forward).and_then(|m| m.state.clone());
        let value = state.and_then(|state| serde_json::to_value(state).ok()).unwrap_or(serde_json::Value::Null);
        [(STATUS_KEY.to_owned(), value)].into_iter().collect()
    }
}

/// The recording of one forward's startup and readiness probes.
pub struct ReadinessKind {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
    record: Arc<ReadinessRecord>,
}

/// Registry entry: every forward has its readiness probe.
pub struct GatewayReadiness;

impl super::Kind for GatewayReadiness {
    type Record = ReadinessRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const DOCTOR: &'static [crate::checkup::DoctorPart] =
        &[crate::checkup::DoctorPart::Step(crate::checkup::Layer::Readiness, DOCTOR_STEP)];
    const TIMELINE: &'static [crate::record::timeline::EventKind] = &[GATEWAY_RESTART];

    fn start(start: &mut super::Start<'_>, record: &Arc<ReadinessRecord>) {
        for forward in start.forwards() {
            let route = start.route(&forward);
            let (probe, kind) = ReadinessKind::new(forward, start.recorder.clone(), record.clone(), route);
            start.drive(probe, kind);
        }
    }
}

impl ReadinessKind {
    /// Its probe and its recording.
    pub fn new(
        forward: Arc<Forward>,
        recorder: Arc<Recorder>,
        record: Arc<ReadinessRecord>,
        route: probes::route::Route,
    ) -> (readiness::Target, ReadinessKind) {
        record.create_series(&forward.name);
        let target = readiness::Target { route };
        (target, ReadinessKind { forward, recorder, record })
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
        self.record.observe(&self.recorder, &self.forward.name, found, round.wall, state);
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

/// The doctor's step 5: the gateway says it started and is ready.
const DOCTOR_STEP: DoctorStep = DoctorStep::new("gateway started and ready", |c| Box::pin(doctor_check(c)));

async fn doctor_check(checkup: &mut Checkup<'_>) -> Verdict {
    use probes::readiness::Startup;
    let found = match checkup.readiness().await {
        Ok(found) => found,
        Err(failure) => {
            return Verdict::fail(format!("/startupz: {failure}"), "the gateway stopped answering: rerun the doctor")
        }
    };
    let uptime = |startup: &Startup| startup.uptime.map_or(String::new(), |u| format!(", up {} s", u.as_secs()));
    match (&found.startup, &found.ready) {
        (None, None) => Verdict::skipped("the gateway has no /startupz or /readyz (a build older than mid-2026)".into()),
        (Some(startup), _) if startup.state != StartupState::Started => Verdict::fail(
            format!("live but {}{}", startup.state.label(), uptime(startup)),
            "the gateway is still starting (WebSocket connects get close 1013) or draining: wait, then rerun; if it stays, read its log on the host",
        ),
        (_, Some(ready)) if !ready.ready => Verdict::fail(
            format!("started but not ready; failing: {}", if ready.failing.is_empty() { "(none named)".to_owned() } else { ready.failing.join(", ") }),
            "a gateway component is failing: fix the one named (its log on the host says why)",
        ),
        (startup, _) => Verdict::pass(format!(
            "started and ready{}{}",
            startup.as_ref().and_then(|s| s.version.as_deref()).map_or(String::new(), |v| format!(", version {v}")),
            startup.as_ref().map_or(String::new(), uptime)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::time::Duration;

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
        let recorder = Arc::new(Recorder::with_kinds(&[record], Vec::new()));
        let forward = Arc::new(crate::config::Config::load(None).unwrap().forwards[0].clone());
        let name = forward.name.clone();
        let own = recorder.kind_record::<ReadinessRecord>().unwrap();
        let route = forward.probe_route().unwrap();
        let (_, mut recording) = ReadinessKind::new(forward, recorder.clone(), own.clone(), route);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = |after: u64| Round { wall: t0 + Duration::from_secs(after), boot: Duration::ZERO };
        assert_eq!(recording.handle(round(0), &found(StartupState::Started, "2026.9.6", 100, true)), "ready");
        // Ten seconds later, uptime ten seconds more (within the tolerance): the same process.
        assert_eq!(recording.handle(round(10), &found(StartupState::Started, "2026.9.6", 111, true)), "ready");
        // Restarted with a new version, starting: a restart, the version series replaced.
        assert_eq!(recording.handle(round(20), &found(StartupState::Starting, "2026.9.7", 1, false)), "starting");

        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(30));
        assert_eq!(sample(&text, &format!("openclaw_gateway_restarts_total{{forward=\"{name}\"}}")), Some(1.0));
        assert!(own.not_started(&name), "starting: the first-byte kind counts its down time as not_started");
        let report = recorder.status(SystemTime::now());
        assert!(report.timeline.iter().any(|e| e.kind == "gateway_restart" && e.detail == "version 2026.9.7"));
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

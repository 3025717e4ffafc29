//! The first byte probe kind: its adapter (schedule, logs, one call per round into the uptime record it keeps
//! with the tunnel kind, [`super::uptime::first_bytes`]), its rows on the status page, and the doctor's step 4.

use super::uptime::first_bytes::FirstByteRound;
use super::uptime::UptimeRecord;
use crate::checkup::{ms, Checkup, DoctorStep, Verdict};
use crate::config::Forward;
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, seconds, state_badge};
use crate::record::status::ForwardStatus;
use crate::record::Recorder;
use probes::{first_byte, Label};
use std::sync::Arc;
use std::time::Duration;

/// The recording of one forward's first-byte probes.
pub struct FirstByteKind {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
    uptime: Arc<UptimeRecord>,
    /// The readiness kind's record: whether the gateway says it is started (live but not started is down
    /// time as `not_started`).
    readiness: Option<Arc<super::readiness::ReadinessRecord>>,
    /// The sleep-counting clock at the last round: a failed round stands for the time since it, capped at
    /// one interval (a longer gap was unobserved, not down).
    last_round: Option<Duration>,
}

/// Registry entry: every forward has its first-byte probe.
pub fn start(start: &mut super::Start<'_>, forward: &Arc<Forward>, uptime: Arc<UptimeRecord>) {
    let (probe, kind) = FirstByteKind::new(forward.clone(), start.recorder.clone(), uptime, start.route(forward));
    start.drive(probe, kind);
}

impl FirstByteKind {
    /// Its probe and its recording, with the attempt and failure counters created at zero.
    pub fn new(
        forward: Arc<Forward>,
        recorder: Arc<Recorder>,
        uptime: Arc<UptimeRecord>,
        route: probes::route::Route,
    ) -> (first_byte::Target, FirstByteKind) {
        uptime.create_first_byte_series(&forward.name, forward.transport());
        let target = first_byte::Target { route, path: forward.health_path.clone() };
        let readiness = recorder.kind_record::<super::readiness::ReadinessRecord>();
        (target, FirstByteKind { forward, recorder, uptime, readiness, last_round: None })
    }
}

impl Adapter for FirstByteKind {
    type Probe = first_byte::Target;
    /// The failure reason; None while the gateway answers.
    type State = Option<&'static str>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.forward.first_byte_interval)
    }

    fn handle(&mut self, round: Round, outcome: &first_byte::Outcome) -> &'static str {
        let interval = self.forward.first_byte_interval;
        let observed = self.last_round.map_or(interval, |previous| round.boot.saturating_sub(previous).min(interval));
        self.last_round = Some(round.boot);
        let name = &self.forward.name;
        // Live but not started: /healthz answers while the CLI's connects are closed 1013 (asked only of a good
        // answer: a failure is down time by its own reason).
        let not_started =
            outcome.is_ok() && self.readiness.as_ref().is_some_and(|readiness| readiness.not_started(name));
        let round = FirstByteRound { at: round.wall, boot: round.boot, observed, not_started };
        self.uptime.record_first_byte(&self.recorder, name, round, outcome);
        outcome.as_ref().err().map_or("ok", Label::label)
    }

    fn annotate(&self, outcome: &first_byte::Outcome, fields: &mut SpanFields) {
        if let Ok(response) = outcome {
            fields.http_answer(response);
        }
    }

    fn state(&self, outcome: &first_byte::Outcome) -> Option<&'static str> {
        outcome.as_ref().err().map(Label::label)
    }

    fn log_change(&self, outcome: &first_byte::Outcome) {
        match outcome {
            Ok(response) => {
                tracing::info!(forward = %self.forward.name, first_byte = ?response.first_byte, "gateway answers through the forward")
            }
            Err(failure) => {
                tracing::warn!(forward = %self.forward.name, reason = failure.label(), error = %failure, "gateway first-byte probe failing")
            }
        }
    }
}

/// Its rows on the status page (at `Row::FirstByte` in the tunnel's entry, `Uptime::PAGE`): the gateway's last answer through the
/// forward, then the first byte's quantiles.
pub fn page_rows(forward: &ForwardStatus, _now: f64) -> String {
    let uptime = forward.part::<crate::kinds::uptime::status::UptimeStatus>();
    let (quantiles, last) = (&uptime.first_byte_seconds, uptime.last_first_byte.as_deref());
    format!(
        "<tr><th>Gateway</th><td class=\"gateway\">{}</td><td class=\"muted\">{}</td></tr>\
         <tr><th>First byte</th><td>p50 {}</td><td class=\"muted\">p99 {} · {} samples</td></tr>",
        state_badge(uptime.gateway_up, "answers", "down"),
        esc(last.unwrap_or("no probe yet")),
        seconds(quantiles.p50),
        seconds(quantiles.p99),
        quantiles.count,
    )
}

/// The doctor's step 4: a first byte through the forward (and the gateway's version from `/startupz`, read
/// once here for the next step to judge).
pub const DOCTOR_STEP: DoctorStep = DoctorStep::new("gateway first byte (/healthz)", |c| Box::pin(doctor_check(c)));

async fn doctor_check(checkup: &mut Checkup<'_>) -> Verdict {
    use probes::readiness::{Readiness, Startup};
    use probes::Probe;
    let forward = checkup.forward;
    let mut target = first_byte::Target { route: checkup.route(), path: forward.health_path.clone() };
    match target.probe(checkup.timeout).await {
        Ok(response) => {
            let version = match checkup.readiness().await {
                Ok(Readiness { startup: Some(Startup { version: Some(version), .. }), .. }) => {
                    format!(", gateway {version}")
                }
                _ => String::new(),
            };
            Verdict::pass(format!(
                "GET {} -> HTTP {} first byte in {}{version}",
                forward.health_path,
                response.status,
                ms(response.first_byte)
            ))
        }
        Err(failure) => {
            let next = match failure.label() {
                "reset" | "empty_reply" => {
                    "ssh is up but the far side refused: is the gateway running on the host (`openclaw gateway status` there)?"
                }
                "timeout" => {
                    "the path is silently dead or the gateway hung; if ssh exits soon (ServerAlive), it is the path"
                }
                "refused" => "the forward stopped listening: restart the tunnel",
                "local_error" => {
                    "this machine could not open the connection (out of file descriptors, buffers or local ports): not the gateway; check `ulimit -n` and what holds sockets here"
                }
                _ => "something answers that is not a healthy gateway: check what listens on the host's gateway port",
            };
            Verdict::fail(format!("GET {} -> {failure} ({})", forward.health_path, failure.label()), next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use probes::first_byte;
    use std::time::SystemTime;

    fn answered(first_byte: Duration) -> first_byte::Outcome {
        Ok(first_byte::Response { connect: Duration::ZERO, first_byte, status: 200, content_type: None })
    }

    #[test]
    fn failures_count_by_reason_and_gateway_up_follows_the_last_probe() {
        let (recorder, uptime) = crate::kinds::uptime::tests::recorder();
        let forward = Arc::new(crate::config::Config::load(None).unwrap().forwards[0].clone());
        let name = forward.name.clone();
        let route = forward.probe_route().unwrap();
        let (_, mut kind) = FirstByteKind::new(forward, recorder.clone(), uptime, route);
        let mut rounds = (1..).map(|at| Round { wall: SystemTime::now(), boot: Duration::from_secs(at) });
        kind.handle(rounds.next().unwrap(), &answered(Duration::from_millis(2)));
        kind.handle(rounds.next().unwrap(), &Err(first_byte::Failure::EmptyReply { elapsed: Duration::ZERO }));
        let text = recorder.encode(Format::OpenMetrics, SystemTime::now());
        let series = |family: &str, extra: &str| format!("{family}{{forward=\"{name}\"{extra}}}");
        assert_eq!(sample(&text, &series("openclaw_gateway_probe_attempts_total", "")), Some(2.0));
        assert_eq!(
            sample(&text, &series("openclaw_gateway_probe_failures_total", ",reason=\"empty_reply\"")),
            Some(1.0)
        );
        assert_eq!(sample(&text, &series("openclaw_gateway_probe_failures_total", ",reason=\"timeout\"")), Some(0.0));
        assert_eq!(sample(&text, &series("openclaw_gateway_up", "")), Some(0.0));
        assert_eq!(sample(&text, &series("openclaw_gateway_first_byte_seconds_count", "")), Some(1.0));
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("openclaw_exporter_build_info{version="));
        // The status quantiles come from the auto-resizing hdrhistogram: 25 ms, beyond its initial range, must
        // read as 25 ms, not clamped.
        kind.handle(rounds.next().unwrap(), &answered(Duration::from_millis(25)));
        let quantiles = recorder.status(SystemTime::now()).forwards[0]
            .part::<crate::kinds::uptime::status::UptimeStatus>()
            .first_byte_seconds
            .clone();
        let (p50, max) = (quantiles.p50.unwrap(), quantiles.max.unwrap());
        assert!((p50 - 0.002).abs() < 0.000_01 && (max - 0.025).abs() < 0.000_05, "{quantiles:?}");
    }
}

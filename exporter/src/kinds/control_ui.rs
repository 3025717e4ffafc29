//! The Control UI kind, whole in this file: each forward's `GET /` through the tunnel must answer the
//! gateway's Control UI as HTML ([`probes::control_ui`]). It breaks apart from `/healthz` (a gateway upgraded
//! without its built UI assets answers health and 404s the page), and the doctor's step 6 only sees it when
//! someone runs the doctor. Everything the rest of the exporter needs from it is declared here: its families
//! and status ([`ControlUiRecord`]) and its round ([`ControlUiKind`]), together in its registry entry
//! ([`ControlUi`], in [`super::KINDS`]), and its status-page row (`page_row`, at `Row::ControlUi` in its entry's `PAGE`).
//! Its config key is the forward's `control_ui_interval` (`config/raw.rs`: default 1 minute, `off` to skip).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::checkup::{ms, Checkup, DoctorStep, Verdict};
use crate::config::Forward;
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html;
use crate::record::families::{families, ForwardLabels, ForwardReasonLabels, Subjects};
use crate::record::kinds::{lock, KindRecord};
use crate::record::status::ForwardStatus;
use crate::record::tracked::Tracked;
use probes::control_ui::{self, Failure};
use probes::Label;

/// Its key in a forward's `/api/status` entry.
const STATUS_KEY: &str = "control_ui";

/// The last Control UI round of a forward, as `/api/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlUiStatus {
    /// Whether `GET /` answered 200 with HTML.
    pub ok: bool,
    /// The answer (status, first byte) or the failure, in words.
    pub detail: String,
    /// When, Unix seconds.
    pub at: f64,
}

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct ControlUiFamilies {
    up: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_control_ui_up", "1 when the last GET / through the forward answered the gateway's Control UI (200, text/html)";
    failures: Tracked<ForwardReasonLabels, Counter> = Tracked::default(),
        "openclaw_gateway_control_ui_failures", "Control UI probes (GET / through the forward) failed, by reason: refused, reset, empty_reply, timeout, bad_status (not 200 HTML: the UI's assets missing), local_error";
}
}

/// The Control UI's families and each forward's last round.
pub struct ControlUiRecord {
    /// Its families, registered once.
    families: ControlUiFamilies,
    last: Mutex<HashMap<String, ControlUiStatus>>,
}

/// Registry entry: the record, its families registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record = ControlUiRecord { families: ControlUiFamilies::register(registry), last: Mutex::default() };
    Arc::new(record)
}

impl ControlUiRecord {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ControlUiStatus>> {
        lock(&self.last)
    }

    /// Every failure reason a route of `transport` can give, at zero for `forward`, so a first failure is a
    /// rate.
    fn create_series(&self, forward: &str, transport: probes::route::Transport) {
        for reason in Failure::LABELS.iter().filter(|reason| transport.can_fail_by(reason)) {
            self.families.failures.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
    }

    /// Record one round's `outcome` for `forward`.
    fn observe(&self, forward: &str, outcome: &control_ui::Outcome, at: SystemTime) {
        let labels = ForwardLabels { forward: forward.to_owned() };
        self.families.up.get_or_create(&labels).set(i64::from(outcome.is_ok()));
        let detail = match outcome {
            Ok(response) => format!(
                "HTTP {} {} in {}",
                response.status,
                response.content_type.as_deref().unwrap_or(""),
                html::seconds(Some(response.first_byte.as_secs_f64()))
            ),
            Err(failure) => {
                let reason = failure.label();
                self.families
                    .failures
                    .get_or_create(&ForwardReasonLabels { forward: forward.to_owned(), reason })
                    .inc();
                format!("{reason}: {failure}")
            }
        };
        let at = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.lock().insert(forward.to_owned(), ControlUiStatus { ok: outcome.is_ok(), detail, at });
    }
}

impl KindRecord for ControlUiRecord {
    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
        let forwards: Vec<String> = self.lock().keys().cloned().collect();
        for forward in forwards {
            if !subjects.keeps(&ForwardLabels { forward: forward.clone() }) {
                self.lock().remove(&forward);
            }
        }
    }

    /// `control_ui`, once the forward has had a round.
    fn forward_status(&self, forward: &str, _now: f64) -> serde_json::Map<String, serde_json::Value> {
        let status = self.lock().get(forward).cloned();
        status
            .and_then(|status| serde_json::to_value(status).ok())
            .map(|value| (STATUS_KEY.to_owned(), value))
            .into_iter()
            .collect()
    }
}

/// Its row in a forward's table on the status page, once it has run.
fn page_row(forward: &ForwardStatus, _now: f64) -> String {
    let Some(status) = forward.kinds.get(STATUS_KEY).and_then(|value| ControlUiStatus::deserialize(value).ok()) else {
        return String::new();
    };
    format!(
        "<tr><th>Control UI</th><td class=\"control-ui\">{}</td><td class=\"muted\">{}</td></tr>",
        html::state_badge(Some(status.ok), "answers HTML", "fails"),
        html::esc(&status.detail)
    )
}

/// The recording of one forward's Control UI probes.
pub struct ControlUiKind {
    forward: Arc<Forward>,
    /// The forward's `control_ui_interval`, as its start found it set.
    interval: Duration,
    record: Arc<ControlUiRecord>,
}

/// Registry entry: its record, and a forward's Control UI probe unless its `control_ui_interval` is off.
pub struct ControlUi;

impl super::Kind for ControlUi {
    type Record = ControlUiRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const PAGE: &'static [super::PagePart] = &[super::PagePart::Row(super::Row::ControlUi, page_row)];
    const DOCTOR: &'static [crate::checkup::DoctorPart] =
        &[crate::checkup::DoctorPart::Step(crate::checkup::Layer::ControlUi, DOCTOR_STEP)];

    fn start(start: &mut super::Start<'_>, record: &Arc<ControlUiRecord>) {
        for forward in start.forwards() {
            let Some(interval) = forward.control_ui_interval else { continue };
            record.create_series(&forward.name, forward.transport());
            let probe = control_ui::Target { route: start.route(&forward) };
            start.drive(probe, ControlUiKind { forward, interval, record: record.clone() });
        }
    }
}

impl Adapter for ControlUiKind {
    type Probe = control_ui::Target;
    /// The failure reason; None while the UI answers.
    type State = Option<&'static str>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.interval)
    }

    fn handle(&mut self, round: Round, outcome: &control_ui::Outcome) -> &'static str {
        self.record.observe(&self.forward.name, outcome, round.wall);
        outcome.as_ref().err().map_or("ok", Label::label)
    }

    fn annotate(&self, outcome: &control_ui::Outcome, fields: &mut SpanFields) {
        if let Ok(response) = outcome {
            fields.http_answer(response);
        }
    }

    fn state(&self, outcome: &control_ui::Outcome) -> Option<&'static str> {
        outcome.as_ref().err().map(Label::label)
    }

    fn log_change(&self, outcome: &control_ui::Outcome) {
        match outcome {
            Ok(_) => {
                tracing::info!(forward = %self.forward.name, "the gateway's Control UI answers through the forward")
            }
            Err(failure) => tracing::warn!(
                forward = %self.forward.name,
                reason = failure.label(),
                error = %failure,
                "the gateway's Control UI fails through the forward (GET / is not 200 HTML): /healthz may still answer"
            ),
        }
    }
}

/// The doctor's step 6: `GET /` through the forward answers the Control UI's HTML.
const DOCTOR_STEP: DoctorStep = DoctorStep::new("Control UI answers HTML", |c| Box::pin(doctor_check(c)));

async fn doctor_check(checkup: &mut Checkup<'_>) -> Verdict {
    use probes::Probe;
    match (control_ui::Target { route: checkup.route() }).probe(checkup.timeout).await {
        Ok(page) => Verdict::pass(format!("GET / -> HTTP {} text/html in {}", page.status, ms(page.first_byte))),
        Err(failure) => Verdict::fail(
            format!("GET / -> {failure}"),
            "the gateway answers /healthz but not its Control UI: check the gateway's logs and version on the host",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{Format, Recorder};
    use std::time::Duration;

    fn recorder() -> Arc<Recorder> {
        Arc::new(Recorder::with_kinds(&[record], Vec::new()))
    }

    #[test]
    fn the_gauge_follows_the_last_round_failures_count_by_reason_and_the_status_says_why() {
        let recorder = recorder();
        let config = crate::config::Config::load(None).unwrap();
        recorder.apply_config(&config);
        let forward = Arc::new(config.forwards[0].clone());
        let name = forward.name.clone();
        let record = recorder.kind_record::<ControlUiRecord>().expect("built with the kind's record");
        record.create_series(&name, probes::route::Transport::Ssh);
        let mut kind = ControlUiKind { forward: forward.clone(), interval: Duration::from_secs(60), record };
        let round = Round { wall: SystemTime::now(), boot: Duration::ZERO };
        let html = control_ui::Response {
            connect: Duration::ZERO,
            first_byte: Duration::from_millis(3),
            status: 200,
            content_type: Some("text/html".into()),
        };
        let series = |family: &str, extra: &str| format!("{family}{{forward=\"{name}\"{extra}}}");
        assert_eq!(kind.handle(round, &Ok(html)), "ok");
        let text = recorder.encode(Format::OpenMetrics, SystemTime::now());
        assert_eq!(sample(&text, &series("openclaw_gateway_control_ui_up", "")), Some(1.0));
        let reason = |r: &str| series("openclaw_gateway_control_ui_failures_total", &format!(",reason=\"{r}\""));
        assert_eq!(sample(&text, &reason("bad_status")), Some(0.0), "every reason at zero before a failure");

        let missing = Failure::BadStatus {
            status: Some(404),
            first_byte: Some(Duration::from_millis(2)),
            detail: "HTTP 404 with Content-Type text/plain".into(),
        };
        assert_eq!(kind.handle(round, &Err(missing)), "bad_status");
        let text = recorder.encode(Format::OpenMetrics, SystemTime::now());
        assert_eq!(sample(&text, &series("openclaw_gateway_control_ui_up", "")), Some(0.0));
        assert_eq!(sample(&text, &reason("bad_status")), Some(1.0));

        // /api/status carries it under its key, and the page's row reads it back.
        let report = recorder.status(SystemTime::now());
        let status = &report.forwards[0].kinds[STATUS_KEY];
        assert_eq!(status["ok"], false);
        assert!(status["detail"].as_str().unwrap().contains("404"), "{status}");
        let row = page_row(&report.forwards[0], report.now);
        assert!(row.contains("Control UI") && row.contains("fails") && row.contains("404"), "{row}");

        // A reload without the forward removes its series and its status.
        let mut config = config;
        config.forwards.clear();
        recorder.apply_config(&config);
        let text = recorder.encode(Format::OpenMetrics, SystemTime::now());
        assert!(!text.contains("openclaw_gateway_control_ui_up{"), "{text}");
        assert!(!text.contains("openclaw_gateway_control_ui_failures_total{"), "{text}");
    }
}

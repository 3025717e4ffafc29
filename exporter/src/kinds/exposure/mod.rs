//! The bind-exposure kind (host side): each `[[gateway]]` port's listening sockets by scope, and since when it
//! has listened beyond its allowed scopes. Its record ([`ExposureRecord`], in [`super::KINDS`]: its three
//! families, `gateways` at the top of `/api/status`, `exposed_since` in the state file so the 24 h red line
//! survives a restart, the `exposed` spell in the timeline), its adapter, and its section on the status page.

use crate::checkup::{DoctorStep, Verdict};
use crate::clock::unix_seconds;
use crate::config::{Config, Gateway};
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, state_badge};
use crate::record::families::{
    families, FloatGauge, GatewayEndpointLabels, GatewayLabels, GatewayScopeLabels, Subjects,
};
use crate::record::kinds::{lock, KindRecord};
use crate::record::status::StatusReport;
use crate::record::tracked::Tracked;
use crate::record::Recorder;
use probes::exposure::{self, Endpoint, Scope};
use probes::Label;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod endpoint;
pub use endpoint::EndpointStatus;

/// One gateway port's exposure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Its name.
    pub gateway: String,
    /// Listening sockets by scope, once read.
    pub listen_sockets: ScopeCounts,
    /// When a listener outside its allowed scopes was first seen (0 while none), once read.
    pub exposed_since: Option<f64>,
    /// The scopes its listeners may bind without paging (loopback always).
    #[serde(default)]
    pub allowed: Vec<String>,
    /// What holds the port, once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointStatus>,
}

/// Listening sockets by scope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopeCounts {
    /// On loopback addresses.
    pub loopback: Option<i64>,
    /// On private addresses.
    pub private: Option<i64>,
    /// On tailnet addresses.
    #[serde(default)]
    pub tailnet: Option<i64>,
    /// On public addresses and wildcards.
    pub public: Option<i64>,
}

/// Its key at the top of `/api/status`: every configured gateway, in the config's order.
const STATUS_KEY: &str = "gateways";
/// Its key in the state file: `{"gateway": unix seconds}` of the exposed ones.
const SAVED_KEY: &str = "exposed_since";
/// Its spell in the incident timeline: the port listens outside its allowed scopes.
pub const EXPOSED: crate::record::timeline::EventKind =
    crate::record::timeline::EventKind { name: "exposed", words: "gateway port exposed" };

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct ExposureFamilies {
    listen_sockets: Tracked<GatewayScopeLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_listen_sockets", "Listening sockets on the gateway port by scope: loopback, private, tailnet (100.64/10, fd7a:115c:a1e0::/48), public (0.0.0.0 and :: are public)";
    bind_allowed: Tracked<GatewayScopeLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_bind_allowed", "1 for each scope the gateway's listeners may bind without paging ([[gateway]] allowed; loopback always), 0 for the others: the team's declared bind intent";
    endpoint: Tracked<GatewayEndpointLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_endpoint", "1 for what holds the gateway port, 0 for the others: host_process (the gateway on the host), container_port (docker-proxy, dockerd, Docker Desktop, a rootless forwarder), nat (no listener, yet the port answers), closed, unknown (a holder this user cannot read)";
    exposed_since: Tracked<GatewayLabels, FloatGauge> = Tracked::default(),
        "openclaw_gateway_exposed_since_timestamp_seconds", "When a listener outside the gateway's allowed scopes (loopback unless [[gateway]] allowed says more) was first seen; 0 while there is none";
}
}

/// The exposure kind's families and the configured gateways' names.
pub struct ExposureRecord {
    /// Its families, registered once.
    families: ExposureFamilies,
    gateways: Mutex<Vec<String>>,
    endpoints: Mutex<HashMap<String, EndpointStatus>>,
}

/// Registry entry: the record, its families registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record = ExposureRecord {
        families: ExposureFamilies::register(registry),

        gateways: Mutex::default(),
        endpoints: Mutex::default(),
    };
    Arc::new(record)
}

impl ExposureRecord {
    fn gateways(&self) -> Vec<String> {
        lock(&self.gateways).clone()
    }

    /// Record one read of a gateway port's listeners, judged against the scopes its team `allowed`; a start or
    /// end of exposure is a spell in `recorder`'s timeline.
    fn observe(
        &self,
        recorder: &Recorder,
        gateway: &str,
        found: &exposure::Exposure,
        (port, allowed): (u16, &[Scope]),
        now: SystemTime,
    ) {
        let endpoint = EndpointStatus::of(found, port);
        for label in Endpoint::LABELS {
            let labels = GatewayEndpointLabels { gateway: gateway.to_owned(), endpoint: label };
            self.families.endpoint.get_or_create(&labels).set(i64::from(*label == endpoint.kind));
        }
        lock(&self.endpoints).insert(gateway.to_owned(), endpoint);
        for scope in Scope::ALL {
            let labels = GatewayScopeLabels { gateway: gateway.to_owned(), scope: scope.label() };
            self.families.listen_sockets.get_or_create(&labels).set(found.count(scope) as i64);
            let is_allowed = scope == Scope::Loopback || allowed.contains(&scope);
            self.families.bind_allowed.get_or_create(&labels).set(i64::from(is_allowed));
        }
        let outside = found.outside(allowed);
        let since = self.families.exposed_since.get_or_create(&GatewayLabels { gateway: gateway.to_owned() });
        let changed = match (since.get() > 0.0, !outside.is_empty()) {
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
            if !outside.is_empty() {
                let listeners: Vec<String> = outside.iter().map(ToString::to_string).collect();
                let detail = format!("the gateway port listens outside its allowed scopes: {}", listeners.join(" "));
                recorder.timeline_spell(EXPOSED, gateway, &detail, unix_seconds(now));
            } else {
                recorder.timeline_over(EXPOSED, gateway, unix_seconds(now));
            }
        }
    }
}

impl KindRecord for ExposureRecord {
    /// The gateways the status report lists.
    fn apply_config(&self, config: &Config) {
        *lock(&self.gateways) = config.gateways.iter().map(|gateway| gateway.name.clone()).collect();
    }

    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
        lock(&self.endpoints).retain(|gateway, _| subjects.keeps_value("gateway", gateway));
    }

    /// Since when each configured gateway has listened beyond loopback (exposed ones only).
    fn save(&self) -> serde_json::Map<String, serde_json::Value> {
        let exposed: serde_json::Map<String, serde_json::Value> = self
            .gateways()
            .into_iter()
            .filter_map(|gateway| {
                let since = self.families.exposed_since.get(&GatewayLabels { gateway: gateway.clone() })?.get();
                (since > 0.0).then(|| (gateway, serde_json::Value::from(since)))
            })
            .collect();
        [(SAVED_KEY.to_owned(), serde_json::Value::Object(exposed))].into_iter().collect()
    }

    /// A gateway's exposure from the state file: the 24 h red line counts from its start, and the timeline's
    /// spell is open from then; a loopback-only round after the restart resets both. A start that is not a
    /// plausible time (beyond year 9999, not a number) is damage: logged and ignored.
    fn restore(&self, recorder: &Recorder, saved: &serde_json::Map<String, serde_json::Value>) {
        let Some(exposed) = saved.get(SAVED_KEY).and_then(serde_json::Value::as_object) else { return };
        for (gateway, since) in exposed {
            let since = since.as_f64().unwrap_or(f64::NAN);
            if since != 0.0 && !crate::clock::plausible_unix_seconds(since) {
                tracing::warn!(gateway = %gateway, exposed_since = since, "the state file holds an impossible exposure start; ignored");
            } else if since > 0.0 {
                self.families.exposed_since.get_or_create(&GatewayLabels { gateway: gateway.clone() }).set(since);
                let detail = "the gateway port listens beyond loopback (since before a restart)";
                recorder.timeline_spell(EXPOSED, gateway, detail, since);
            }
        }
    }

    /// Every configured gateway port: its listeners by scope, its allowed scopes, and since when it is exposed.
    fn report_status(&self) -> serde_json::Map<String, serde_json::Value> {
        let statuses: Vec<GatewayStatus> = self
            .gateways()
            .into_iter()
            .map(|name| {
                let scope = |scope: Scope| {
                    let labels = GatewayScopeLabels { gateway: name.clone(), scope: scope.label() };
                    self.families.listen_sockets.get(&labels).map(|g| g.get())
                };
                GatewayStatus {
                    listen_sockets: ScopeCounts {
                        loopback: scope(Scope::Loopback),
                        private: scope(Scope::Private),
                        tailnet: scope(Scope::Tailnet),
                        public: scope(Scope::Public),
                    },
                    allowed: Scope::ALL
                        .into_iter()
                        .filter(|scope| {
                            let labels = GatewayScopeLabels { gateway: name.clone(), scope: scope.label() };
                            self.families.bind_allowed.get(&labels).is_some_and(|g| g.get() == 1)
                        })
                        .map(|scope| scope.label().to_owned())
                        .collect(),
                    exposed_since: self
                        .families
                        .exposed_since
                        .get(&GatewayLabels { gateway: name.clone() })
                        .map(|g| g.get()),
                    endpoint: lock(&self.endpoints).get(&name).cloned(),
                    gateway: name,
                }
            })
            .collect();
        let value = serde_json::to_value(statuses).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
        [(STATUS_KEY.to_owned(), value)].into_iter().collect()
    }
}

/// The recording of one gateway port's exposure checks.
pub struct ExposureKind {
    gateway: Arc<Gateway>,
    recorder: Arc<Recorder>,
    record: Arc<ExposureRecord>,
}

/// Registry entry: each `[[gateway]]`'s bind exposure.
pub struct Exposure;

impl super::Kind for Exposure {
    type Record = ExposureRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const PAGE: &'static [super::PagePart] = &[super::PagePart::Section(super::Section::Exposure, page_section)];
    const DOCTOR: &'static [crate::checkup::DoctorPart] =
        &[crate::checkup::DoctorPart::Step(crate::checkup::Layer::Exposure, DOCTOR_STEP)];
    const TIMELINE: &'static [crate::record::timeline::EventKind] = &[EXPOSED];

    fn start(start: &mut super::Start<'_>, record: &Arc<ExposureRecord>) {
        for gateway in &start.config.gateways {
            let (probe, kind) = ExposureKind::new(Arc::new(gateway.clone()), start.recorder.clone(), record.clone());
            start.drive(probe, kind);
        }
    }
}

impl ExposureKind {
    /// Its probe and its recording.
    pub fn new(
        gateway: Arc<Gateway>,
        recorder: Arc<Recorder>,
        record: Arc<ExposureRecord>,
    ) -> (exposure::Target, ExposureKind) {
        let target = exposure::Target::new(gateway.port, gateway.docker_socket.clone());
        (target, ExposureKind { gateway, recorder, record })
    }
}

impl Adapter for ExposureKind {
    type Probe = exposure::Target;
    /// Exposed or not, and what holds the port; or why the table could not be read.
    type State = Result<(bool, String), &'static str>;

    fn schedule(&self) -> Schedule<'_> {
        // A table read is milliseconds; five seconds is a hung read, not a slow one.
        Schedule {
            subject: ("gateway", &self.gateway.name),
            interval: self.gateway.interval,
            timeout: Duration::from_secs(5),
        }
    }

    fn handle(&mut self, round: Round, outcome: &exposure::Outcome) -> &'static str {
        match outcome {
            Ok(found) => {
                let (port, allowed) = (self.gateway.port, self.gateway.allowed.as_slice());
                self.record.observe(&self.recorder, &self.gateway.name, found, (port, allowed), round.wall);
                if !found.outside(&self.gateway.allowed).is_empty() {
                    "exposed"
                } else if found.exposed() {
                    "within_allowed"
                } else {
                    "loopback_only"
                }
            }
            Err(failure) => failure.label(),
        }
    }

    fn annotate(&self, outcome: &exposure::Outcome, fields: &mut SpanFields) {
        if let Ok(found) = outcome {
            fields.loopback = Some(found.count(Scope::Loopback) as u64);
            fields.private = Some(found.count(Scope::Private) as u64);
            fields.tailnet = Some(found.count(Scope::Tailnet) as u64);
            fields.public = Some(found.count(Scope::Public) as u64);
        }
    }

    fn state(&self, outcome: &exposure::Outcome) -> Result<(bool, String), &'static str> {
        outcome
            .as_ref()
            .map(|found| (!found.outside(&self.gateway.allowed).is_empty(), found.endpoint().describe()))
            .map_err(Label::label)
    }

    fn log_change(&self, outcome: &exposure::Outcome) {
        let (gateway, port) = (&self.gateway.name, self.gateway.port);
        match outcome {
            Ok(found) => {
                let listeners: Vec<String> = found.listeners.iter().map(ToString::to_string).collect();
                let allowed: Vec<&str> = self.gateway.allowed.iter().map(|scope| scope.label()).collect();
                let outside: Vec<String> =
                    found.outside(&self.gateway.allowed).iter().map(ToString::to_string).collect();
                let held_by = found.endpoint().describe();
                if !outside.is_empty() {
                    tracing::warn!(gateway = %gateway, port, listeners = %listeners.join(" "), outside = %outside.join(" "), allowed = %allowed.join(","), held_by = %held_by, "the gateway port listens beyond loopback, outside its allowed scopes");
                } else {
                    tracing::info!(gateway = %gateway, port, listeners = %listeners.join(" "), allowed = %allowed.join(","), held_by = %held_by, "the gateway port listens only within its allowed scopes");
                }
            }
            Err(failure) => {
                tracing::warn!(gateway = %gateway, error = %failure, "cannot check the gateway's bind exposure")
            }
        }
    }
}

/// Its section on the status page (at `Section::Exposure` in its entry's `PAGE`).
fn page_section(status: &StatusReport) -> String {
    let gateways: Vec<GatewayStatus> =
        status.kinds.get(STATUS_KEY).cloned().and_then(|value| serde_json::from_value(value).ok()).unwrap_or_default();
    exposure_section(&gateways)
}

/// The gateways' bind exposure table, when there are any.
fn exposure_section(gateways: &[GatewayStatus]) -> String {
    let mut html = String::new();
    if !gateways.is_empty() {
        html.push_str("<h2>Gateway bind exposure</h2><table class=\"exposure\"><tr><th>gateway</th><th>loopback</th><th>private</th><th>tailnet</th><th>public</th><th>allowed</th><th></th><th>held by</th></tr>");
        for gateway in gateways {
            let scopes = &gateway.listen_sockets;
            let exposed = gateway.exposed_since.map(|t| t > 0.0);
            let count = |n: Option<i64>| n.map_or("–".to_owned(), |n| n.to_string());
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"endpoint muted\">{}</td></tr>",
                esc(&gateway.gateway),
                count(scopes.loopback),
                count(scopes.private),
                count(scopes.tailnet),
                count(scopes.public),
                esc(&gateway.allowed.join(", ")),
                state_badge(exposed.map(|e| !e), "within allowed", "exposed"),
                gateway.endpoint.as_ref().map_or("–".to_owned(), |e| {
                    let containers = if e.containers.is_empty() {
                        String::new()
                    } else {
                        format!(" · container {}", esc(&e.containers.join(", ")))
                    };
                    format!("{}{containers}<br>{}", esc(&e.described), esc(&e.logs))
                })
            );
        }
        html.push_str("</table>");
    }
    html
}

/// The doctor's step 8, the bind-exposure red line: every `[[gateway]]` listens only where the team allows. On
/// the gateway host (no forward) it is the whole list.
const DOCTOR_STEP: DoctorStep = DoctorStep {
    name: "gateway bound to loopback only",
    check: |c| Box::pin(loopback_only(c.config, c.timeout)),
    on_gateway_host: Some(|config| Box::pin(on_gateway_host(config))),
};

/// The gateway host's check: within the shortest gateway interval, 3 s at most.
async fn on_gateway_host(config: &Config) -> Verdict {
    let timeout =
        config.gateways.iter().map(|g| g.interval).min().unwrap_or(Duration::from_secs(3)).min(Duration::from_secs(3));
    loopback_only(config, timeout).await
}

async fn loopback_only(config: &Config, timeout: Duration) -> Verdict {
    use probes::Probe;
    if config.gateways.is_empty() {
        return Verdict::skipped("no [[gateway]] configured (run the doctor on the gateway host with one)".into());
    }
    let mut evidence = Vec::new();
    let mut outside_allowed = Vec::new();
    for gateway in &config.gateways {
        match exposure::Target::new(gateway.port, gateway.docker_socket.clone()).probe(timeout).await {
            Ok(found) => {
                outside_allowed.extend(found.outside(&gateway.allowed).iter().map(ToString::to_string));
                let listeners: Vec<String> = found.listeners.iter().map(ToString::to_string).collect();
                let allowed: Vec<&str> = gateway.allowed.iter().map(|scope| scope.label()).collect();
                let endpoint = EndpointStatus::of(&found, gateway.port);
                let containers = match (&endpoint.containers[..], &endpoint.docker_error) {
                    ([], Some(why)) => format!("; the Docker Engine could not name the container: {why}"),
                    ([], None) => String::new(),
                    (names, _) => format!("; the Docker Engine names the container {}", names.join(", ")),
                };
                evidence.push(format!(
                    "{} port {}: {} (allowed: {}); held by {}{containers}; logs: {}",
                    gateway.name,
                    gateway.port,
                    listeners.join(" "),
                    allowed.join(", "),
                    endpoint.described,
                    endpoint.logs
                ));
            }
            Err(failure) => {
                return Verdict::fail(
                    format!("{}: {failure}", gateway.name),
                    "run the doctor as a user who can read the socket table",
                )
            }
        }
    }
    if !outside_allowed.is_empty() {
        Verdict::fail(
            format!("{}; outside the allowed scopes: {}", evidence.join("; "), outside_allowed.join(" ")),
            "the gateway listens beyond loopback where the team has not declared it: set gateway.bind = \"loopback\" in openclaw.json and restart it (status reports the configured bind, not the real one), or declare the scope in [[gateway]] allowed (private, tailnet, public)",
        )
    } else {
        Verdict::pass(evidence.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;

    #[test]
    fn a_round_records_listeners_by_scope_and_when_the_port_was_first_exposed() {
        let recorder = Arc::new(Recorder::with_kinds(&[record], Vec::new()));
        let own = recorder.kind_record::<ExposureRecord>().unwrap();
        let gateway = Arc::new(Gateway {
            name: "g".into(),
            port: 18789,
            interval: Duration::from_secs(1),
            allowed: vec![Scope::Loopback, Scope::Tailnet],
            docker_socket: None,
        });
        let (target, mut recording) = ExposureKind::new(gateway, recorder.clone(), own);
        assert_eq!(target.port, 18789);
        let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = |at| Round { wall: at, boot: Duration::ZERO };
        let loopback =
            Ok(exposure::Exposure { listeners: vec!["127.0.0.1:18789".parse().unwrap()], ..Default::default() });
        let exposed = Ok(exposure::Exposure {
            listeners: vec!["127.0.0.1:18789".parse().unwrap(), "0.0.0.0:18789".parse().unwrap()],
            ..Default::default()
        });
        assert_eq!(recording.handle(round(t0), &loopback), "loopback_only");
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(10)), &exposed), "exposed");
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(20)), &exposed), "exposed");
        assert_eq!(recording.state(&exposed).map(|(exposed, _)| exposed), Ok(true));
        let mut fields = SpanFields::default();
        recording.annotate(&exposed, &mut fields);
        assert_eq!(
            (fields.loopback, fields.private, fields.tailnet, fields.public),
            (Some(1), Some(0), Some(0), Some(1))
        );

        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(30));
        assert_eq!(sample(&text, "openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"public\"}"), Some(1.0));
        assert_eq!(sample(&text, "openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"loopback\"}"), Some(1.0));
        let since = "openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"g\"}";
        assert_eq!(sample(&text, since), Some(1_800_000_010.0), "the first exposed round, not the last");
        // Loopback only again: the red line resets.
        recording.handle(round(t0 + Duration::from_secs(40)), &loopback);
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(50));
        assert_eq!(sample(&text, since), Some(0.0));
        // A tailnet listener is declared: counted, exported as allowed, and no red line.
        let tailnet = Ok(exposure::Exposure {
            listeners: vec!["127.0.0.1:18789".parse().unwrap(), "100.100.1.1:18789".parse().unwrap()],
            ..Default::default()
        });
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(60)), &tailnet), "within_allowed");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(70));
        assert_eq!(sample(&text, since), Some(0.0));
        assert_eq!(sample(&text, "openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"tailnet\"}"), Some(1.0));
        assert_eq!(sample(&text, "openclaw_gateway_bind_allowed{gateway=\"g\",scope=\"tailnet\"}"), Some(1.0));
        assert_eq!(sample(&text, "openclaw_gateway_bind_allowed{gateway=\"g\",scope=\"private\"}"), Some(0.0));
        // A LAN listener is not: it pages.
        let lan = Ok(exposure::Exposure { listeners: vec!["10.0.0.5:18789".parse().unwrap()], ..Default::default() });
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(80)), &lan), "exposed");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(90));
        assert_eq!(sample(&text, since), Some(1_800_000_080.0));
    }

    #[test]
    fn a_saved_exposure_comes_back_and_a_damaged_one_is_skipped_alone() {
        let recorder = Recorder::with_kinds(&[record], Vec::new());
        let mut config = crate::config::Config::load(None).unwrap();
        config.gateways = ["g", "h", "i"]
            .map(|name| Gateway {
                name: name.into(),
                port: 18789,
                interval: Duration::from_secs(1),
                allowed: vec![],
                docker_socket: None,
            })
            .to_vec();
        recorder.apply_config(&config);
        let saved = serde_json::json!({ "exposed_since": { "g": 1_800_000_000.0, "h": 1e300, "i": "a word" } });
        recorder.restore_kinds(saved.as_object().unwrap());
        let text = recorder.encode(Format::Prometheus, std::time::SystemTime::now());
        let since = |g: &str| format!("openclaw_gateway_exposed_since_timestamp_seconds{{gateway=\"{g}\"}}");
        assert_eq!(sample(&text, &since("g")), Some(1_800_000_000.0));
        assert_eq!(sample(&text, &since("h")), None, "an impossible start is ignored");
        assert_eq!(sample(&text, &since("i")), None, "a start that is not a number is ignored");
        let report = recorder.status(std::time::SystemTime::now());
        assert!(report.timeline.iter().any(|e| e.kind == "exposed" && e.subject == "g" && e.end.is_none()));
        // Saved again: the one exposure, under the same key.
        assert_eq!(recorder.saved_kinds()["exposed_since"], serde_json::json!({ "g": 1_800_000_000.0 }));
    }
}

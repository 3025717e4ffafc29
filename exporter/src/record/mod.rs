//! The recorder: the data probe outcomes become (metrics, uptime buckets, latency histograms, the timeline)
//! and the API every writer uses.
//!
//! The adapters in [`crate::kinds`] hand it typed outcomes through its methods, or keep their own record
//! ([`kinds::KindRecord`]) the recorder is built with ([`Recorder::with_kinds`]); `remote_write` writes its own
//! metrics through it too, and its queue's account is a collector the recorder is built with
//! ([`Recorder::with_collectors`]). It outlives config reloads (a generation's tasks are replaced, the
//! recorder is not), so counters never reset while the process lives. Counters and histograms are the
//! prometheus-client atomics. Two mutexes, each held only for a few operations and never two at once: the
//! per-forward state (ledger, hdrhistogram, last outcomes) and the incident [`timeline`]; each kind record
//! keeps its own for its last outcomes. The status report copies what it needs under each in turn and builds
//! the report with none held.
//!
//! - [`families`]: the label sets and the table of metric families (its `families!` and `label_sets!` serve a
//!   kind's own record too); [`tracked`]: a family that remembers its label sets, so a reload removes what the
//!   config no longer has.
//! - the uptime KPI's two kinds, whose outcomes the ledger joins: [`tunnel`] (SYN + ssh session rounds, the
//!   uptime ledger), [`first_byte`] (and [`resume`], the wait for usable after a gap).
//! - [`kinds`]: what a kind that keeps its own families and status gives the recorder (every other kind does:
//!   readiness, hygiene, CLI URL, CLI version, handshake, model host, exposure, Control UI, auth; their writes
//!   are in their kind files).
//! - [`status`]: the typed status report `/api/status` and the status page both read; [`timeline`]: what
//!   happened, with start, end and duration.

pub mod families;
pub mod first_byte;
pub mod kinds;
pub mod remote_write;
pub mod resume;
pub mod status;
pub mod timeline;
pub mod tracked;
pub mod tunnel;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::clock::unix_seconds;
use crate::config::Config;
use crate::uptime::Ledger;
use families::{ForwardLabels, ListenerReasonLabels, Metrics, ProbeLabels, ResultLabels};

/// The exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Prometheus,
}

/// What the status report shows of one forward, beyond the metrics.
pub(crate) struct ForwardState {
    pub(crate) ledger: Ledger,
    /// First-byte times of successful probes, microseconds, for exact quantiles in the status report.
    /// Auto-resizing, u32 counts: it covers only the range actually seen (a loopback gateway's first bytes
    /// need ~16 KiB, where fixed bounds up to the longest timeout took 160 KiB per forward).
    pub(crate) first_byte_us: hdrhistogram::Histogram<u32>,
    pub(crate) session: Option<probes::ssh_session::Outcome>,
    /// The pid of the last ssh seen owning the listener, to count owner changes.
    pub(crate) last_owner_pid: Option<u32>,
    pub(crate) last_syn_ok: Option<bool>,
    /// The sleep-counting clock at the last tunnel round, to find the time no round could run.
    pub(crate) last_round_boot: Option<Duration>,
    /// The hijack gauge's last value (set only on a change: a round stays a handful of atomic adds).
    pub(crate) last_hijacked: Option<Option<bool>>,
    /// Whether the last tunnel round was up (session up or unknown, and SYN success).
    pub(crate) last_round_up: Option<bool>,
    pub(crate) last_first_byte: Option<String>,
    /// The first-byte objective (a good probe answers within it).
    pub(crate) first_byte_objective: Duration,
    /// The wait for usable after the last gap, while open.
    pub(crate) resume: resume::Resume,
    /// The last wait observed.
    pub(crate) last_resume: Option<status::ResumeStatus>,
    /// A gateway-down spell was opened (or continued) by the last first-byte round: kept here, not in the
    /// generation, so the spell closes on the first healthy round after a reload.
    pub(crate) gateway_down_open: bool,
}

impl ForwardState {
    fn new() -> Self {
        ForwardState {
            ledger: Ledger::default(),
            first_byte_us: hdrhistogram::Histogram::new(3).expect("3 significant figures is a valid precision"),
            session: None,
            last_owner_pid: None,
            last_syn_ok: None,
            last_round_up: None,
            last_round_boot: None,
            last_hijacked: None,
            last_first_byte: None,
            first_byte_objective: Duration::MAX,
            resume: resume::Resume::default(),
            last_resume: None,
            gateway_down_open: false,
        }
    }
}

/// Why the exporter closed a connection on its own, by listener: the label values of
/// `openclaw_exporter_connections_closed_total`, created at zero.
pub const CONNECTION_CLOSE_REASONS: [(&str, &[&str]); 2] = [
    ("web", &["limit_new", "limit_silent", "header_timeout", "idle_timeout"]),
    ("auth_tap", &["limit_new", "limit_silent"]),
];

/// Records probe outcomes; see the module documentation.
pub struct Recorder {
    registry: Registry,
    metrics: Metrics,
    forwards: Mutex<HashMap<String, ForwardState>>,
    /// The incident timeline (never locked with another of the recorder's mutexes held).
    pub(crate) timeline: Mutex<timeline::Timeline>,
    /// The families and status the kinds that keep their own declare ([`kinds::KindRecord`]).
    kind_records: kinds::KindRecords,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder with every metric family registered and no forwards yet.
    pub fn new() -> Self {
        Self::with_collectors(Vec::new())
    }

    /// As [`Recorder::new`], with `collectors` registered too: a reader of the registry that keeps metrics of
    /// its own (the remote-write queue's account) adds them here, so one scrape shows everything.
    pub fn with_collectors(collectors: Vec<Box<dyn prometheus_client::collector::Collector>>) -> Self {
        Self::with_kinds(&[], collectors)
    }

    /// As [`Recorder::with_collectors`], with the records of the kinds that keep their own families
    /// (`kinds::RECORDS`): their families registered after the recorder's own.
    pub fn with_kinds(
        records: &[kinds::NewKindRecord],
        collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
    ) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        registry.register(
            "openclaw_exporter_build",
            "Build information",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        for result in ["success", "failure"] {
            metrics.config_reloads.get_or_create_owned(&ResultLabels { result });
        }
        for (listener, reasons) in CONNECTION_CLOSE_REASONS {
            for reason in reasons {
                metrics.connections_closed.get_or_create_owned(&ListenerReasonLabels { listener, reason });
            }
        }
        let kind_records = kinds::KindRecords::register(records, &mut registry);
        for collector in collectors {
            registry.register_collector(collector);
        }
        Recorder { kind_records, registry, metrics, forwards: Mutex::new(HashMap::new()), timeline: Mutex::default() }
    }

    /// Apply what the configuration says directly: objectives, zero-valued series of its model hosts,
    /// the auth registry and rotation, and the label values the status report reads.
    pub fn apply_config(&self, config: &Config) {
        let m = &self.metrics;
        let objectives = &config.objectives;
        for forward in &config.forwards {
            let labels = ForwardLabels { forward: forward.name.clone() };
            m.objective_tunnel_uptime_ratio.get_or_create(&labels).set(objectives.tunnel_uptime_ratio);
            m.objective_first_byte_seconds.get_or_create(&labels).set(objectives.first_byte.as_secs_f64());
            let restarts = i64::from(objectives.gateway_restarts_per_hour);
            m.objective_gateway_restarts_per_hour.get_or_create(&labels).set(restarts);
            let delay = objectives.gateway_event_loop_delay.as_secs_f64();
            m.objective_gateway_event_loop_delay_seconds.get_or_create(&labels).set(delay);
            let stalls = i64::from(objectives.tunnel_stalls_per_hour);
            m.objective_tunnel_stalls_per_hour.get_or_create(&labels).set(stalls);
            m.objective_first_byte_ratio.get_or_create(&labels).set(objectives.first_byte_ratio);
            m.objective_ssh_restarts_per_hour.get_or_create(&labels).set(i64::from(objectives.ssh_restarts_per_hour));
            self.with_forward(&forward.name, |state| state.first_byte_objective = objectives.first_byte);
        }
        m.objective_window_seconds.set(objectives.window.as_secs_f64());
        self.forget_removed(config);
        for host in &config.model_hosts {
            let labels = families::ModelHostLabels { model_host: host.name.clone() };
            let objective = config.objectives.model_host_first_byte.as_secs_f64();
            m.objective_model_host_first_byte_seconds.get_or_create(&labels).set(objective);
        }
        self.kind_records.apply_config(config);
    }

    /// Count a connection the exporter closed on its own (`listener`, `reason` from
    /// [`CONNECTION_CLOSE_REASONS`]).
    pub fn count_connection_closed(&self, listener: &'static str, reason: &'static str) {
        self.metrics.connections_closed.get_or_create(&ListenerReasonLabels { listener, reason }).inc();
    }

    /// The web server's refusal counter at zero for each of `reasons`.
    pub fn create_web_refusal_series(&self, reasons: &[&'static str]) {
        for reason in reasons {
            self.metrics.web_requests_refused.get_or_create_owned(&families::ReasonLabels { reason });
        }
    }

    /// Count a request the web server refused, by `reason` (the guard's fixed set).
    pub fn count_web_refused(&self, reason: &'static str) {
        self.metrics.web_requests_refused.get_or_create(&families::ReasonLabels { reason }).inc();
    }

    /// Remove every series, and the status page's state, of a forward, model host, gateway or token revision
    /// `config` no longer has: their alerts resolve, and one that comes back starts from zero.
    fn forget_removed(&self, config: &Config) {
        let names = |names: Vec<&str>| names.into_iter().map(str::to_owned).collect();
        let revisions = config
            .auth
            .registry
            .names()
            .chain([probes::auth_tap::credential::UNKNOWN, probes::auth_tap::credential::NONE]);
        let subjects = families::Subjects {
            kept: vec![
                ("forward", names(config.forwards.iter().map(|f| f.name.as_str()).collect())),
                ("model_host", names(config.model_hosts.iter().map(|h| h.name.as_str()).collect())),
                ("gateway", names(config.gateways.iter().map(|g| g.name.as_str()).collect())),
                ("token_revision", names(revisions.collect())),
            ],
        };
        self.metrics.retain_subjects(&subjects);
        self.kind_records.retain_subjects(&subjects);
        let removed: Vec<String> =
            self.forwards().keys().filter(|name| !config.forwards.iter().any(|f| f.name == **name)).cloned().collect();
        self.forwards().retain(|name, _| !removed.contains(name));
        // A removed forward's open spells end with it.
        let now = unix_seconds(SystemTime::now());
        let mut timeline = self.timeline();
        for name in &removed {
            for kind in ["tunnel_down", "gateway_down"] {
                timeline.over(kind, name, now);
            }
        }
    }

    /// Record how late a scheduled probe started.
    pub fn record_probe_lag(&self, probe: &'static str, lag: Duration) {
        self.metrics.probe_lag_seconds.get_or_create(&ProbeLabels { probe }).observe(lag.as_secs_f64());
    }

    /// Count a configuration reload.
    pub fn record_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.metrics.config_reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Render every metric in `format`, bringing the uptime ratios up to `now` first.
    pub fn encode(&self, format: Format, now: SystemTime) -> String {
        self.refresh_uptime_ratios(now);
        let mut text = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry),
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry),
        };
        encoded.expect("writing to a String cannot fail");
        text
    }

    /// Open (or keep open) a spell of `kind` for `subject` in the incident timeline, from `at`.
    pub fn timeline_spell(&self, kind: &str, subject: &str, detail: &str, at: f64) {
        self.timeline().spell(kind, subject, detail, at);
    }

    /// Put a point event of `kind` for `subject` at `at` on the incident timeline.
    pub fn timeline_point(&self, kind: &str, subject: &str, detail: &str, at: f64) {
        self.timeline().point(kind, subject, detail, at);
    }

    /// End the open spell of `kind` for `subject` at `at`, if there is one.
    pub fn timeline_over(&self, kind: &str, subject: &str, at: f64) {
        self.timeline().over(kind, subject, at);
    }

    /// What the kinds' records keep across a restart, by key (the state file's).
    pub fn saved_kinds(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.kind_records.save()
    }

    /// Hand a state file's keys to the kinds' records, each taking its own.
    pub fn restore_kinds(&self, saved: &serde_json::Map<String, serde_json::Value>) {
        self.kind_records.restore(self, saved);
    }

    /// The record of the kind of type `T` (its own families and status), when the recorder was built with it.
    pub fn kind_record<T: kinds::KindRecord>(&self) -> Option<std::sync::Arc<T>> {
        self.kind_records.get()
    }

    /// The registry every family is in.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn refresh_uptime_ratios(&self, now: SystemTime) {
        let now = unix_seconds(now);
        let forwards = self.forwards();
        for (name, state) in forwards.iter() {
            let labels = ForwardLabels { forward: name.clone() };
            match state.ledger.last_completed_ratio(now) {
                Some(ratio) => {
                    self.metrics.uptime_ratio.get_or_create(&labels).set(ratio);
                }
                None => {
                    self.metrics.uptime_ratio.remove(&labels);
                }
            }
        }
    }

    /// The per-forward state. A panic while holding the lock cannot leave the ledger half-written in a
    /// way worth losing all metrics over: keep serving.
    fn forwards(&self) -> MutexGuard<'_, HashMap<String, ForwardState>> {
        self.forwards.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state of `forward`, created when first seen.
    fn with_forward<T>(&self, forward: &str, f: impl FnOnce(&mut ForwardState) -> T) -> T {
        let mut forwards = self.forwards();
        if !forwards.contains_key(forward) {
            forwards.insert(forward.to_owned(), ForwardState::new());
        }
        f(forwards.get_mut(forward).expect("inserted above"))
    }

    /// The timeline, for one change.
    fn timeline(&self) -> MutexGuard<'_, timeline::Timeline> {
        self.timeline.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Recorder {
    /// Every series, as Prometheus protobuf families (the uptime ratios refreshed first, as for a scrape).
    pub fn metric_families(
        &self,
        now: SystemTime,
    ) -> Vec<prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily> {
        self.refresh_uptime_ratios(now);
        prometheus_client::encoding::prometheus_protobuf::encode(self.registry())
            .expect("encoding to protobuf values cannot fail")
    }

    /// The remote-write queue's size and its oldest round (the sender's own metrics, written through here).
    pub(crate) fn set_remote_write_queue(&self, bytes: u64, oldest_ms: Option<i64>) {
        let m = &self.metrics;
        m.remote_write_queue_bytes.set(bytes as i64);
        m.remote_write_oldest_queued.set(oldest_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// The value of `series` in an exposition.
    pub fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

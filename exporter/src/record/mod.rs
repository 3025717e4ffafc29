//! The recorder: where probe outcomes become data (the metric registry, the incident timeline, the status
//! report) and the API every writer uses.
//!
//! Each kind in [`crate::kinds`] keeps its own record ([`kinds::KindRecord`]: its families and what it shows
//! of a forward) and the recorder is built with them ([`Recorder::with_kinds`]): it registers their families,
//! prunes them on reload, brings them up to date before a scrape, and puts their status into `/api/status`
//! and their keys into the state file, naming no kind. Its own families are what belongs to no kind: the
//! objectives, reloads, probe lag, the web guard's refusals and closes, and remote write's (written through
//! [`remote_write`]; the queue's account is a collector the recorder is built with,
//! [`Recorder::with_collectors`]). It outlives config reloads (a generation's tasks are replaced, the recorder
//! is not), so counters never reset while the process lives. Counters and histograms are the
//! prometheus-client atomics. Two mutexes of its own, the configured forwards' names and the incident
//! [`timeline`], each held only for a few operations and never with another; each record keeps its own for
//! its state. The status report copies what it needs
//! under each in turn and builds the report with none held.
//!
//! - [`families`]: the label sets and the table of metric families (its `families!` and `label_sets!` serve a
//!   kind's own record too); [`tracked`]: a family that remembers its label sets, so a reload removes what the
//!   config no longer has.
//! - [`kinds`]: what a kind's record gives the recorder.
//! - [`status`]: the status report `/api/status` and the status page both read; [`timeline`]: what
//!   happened, with start, end and duration.

pub mod families;
pub mod kinds;
mod lag;
pub mod remote_write;
pub mod status;
pub mod timeline;
pub mod tracked;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::clock::unix_seconds;
use crate::config::Config;
use families::{ForwardLabels, ListenerReasonLabels, Metrics, ProbeLabels, ResultLabels};

/// The exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Prometheus,
}

/// Why the exporter closed a connection on its own, by listener: the label values of
/// `openclaw_exporter_connections_closed_total`, created at zero.
pub const CONNECTION_CLOSE_REASONS: [(&str, &[&str]); 2] = [
    ("web", &["limit_new", "limit_silent", "limit_busy", "header_timeout", "idle_timeout"]),
    ("auth_tap", &["limit_new", "limit_silent"]),
];

/// Records probe outcomes; see the module documentation.
pub struct Recorder {
    registry: Registry,
    metrics: Metrics,
    /// The forwards of the configuration applied last, by name: each has an entry in the status report.
    configured: Mutex<std::collections::BTreeSet<String>>,
    /// The incident timeline (never locked with another of the recorder's mutexes held).
    pub(crate) timeline: Mutex<timeline::Timeline>,
    /// The kinds' records: their families and status ([`kinds::KindRecord`]).
    kind_records: kinds::KindRecords,
    /// The web's credentials accepted before a restart: kept in the state file with the rest.
    remembered_credentials: Arc<crate::web_security::Remembered>,
    /// Each kind's recent probe lags, for its p99.
    lag_window: lag::LagWindow,
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

    /// As [`Recorder::with_collectors`], with the kinds' records
    /// (its kind's `RECORD` in `kinds::KINDS`): their families registered after the recorder's own.
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
        for result in ["admitted", "refused"] {
            let labels = families::ListenerResultLabels { listener: "auth_tap", result };
            metrics.other_user_connections.get_or_create_owned(&labels);
        }
        for listener in ["web", "auth_tap"] {
            for reason in crate::listen::BindFailure::LABELS {
                metrics.listen_failures.get_or_create_owned(&ListenerReasonLabels { listener, reason });
            }
        }
        let kind_records = kinds::KindRecords::register(records, &mut registry);
        for collector in collectors {
            registry.register_collector(collector);
        }
        Recorder {
            kind_records,
            registry,
            metrics,
            configured: Mutex::default(),
            timeline: Mutex::default(),
            remembered_credentials: Arc::default(),
            lag_window: lag::LagWindow::default(),
        }
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
        }
        m.objective_window_seconds.set(objectives.window.as_secs_f64());
        *kinds::lock(&self.configured) = config.forwards.iter().map(|forward| forward.name.clone()).collect();
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

    /// Count a connection from another user's process to `listener`, admitted within their quota or refused.
    pub fn count_other_user_connection(&self, listener: &'static str, admitted: bool) {
        let result = if admitted { "admitted" } else { "refused" };
        self.metrics.other_user_connections.get_or_create(&families::ListenerResultLabels { listener, result }).inc();
    }

    /// Count a failed bind of `listener`'s address (`web`, `auth_tap`), by its reason.
    pub fn count_listen_failure(&self, listener: &'static str, reason: crate::listen::BindFailure) {
        let labels = ListenerReasonLabels { listener, reason: reason.label() };
        self.metrics.listen_failures.get_or_create(&labels).inc();
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
        self.kind_records.retain_subjects(self, &subjects);
    }

    /// Record how late a scheduled probe started.
    pub fn record_probe_lag(&self, probe: &'static str, lag: Duration) {
        self.metrics.probe_lag_seconds.get_or_create(&ProbeLabels { probe }).observe(lag.as_secs_f64());
        self.lag_window.observe(probe, lag.as_secs_f64(), std::time::Instant::now());
    }

    /// Bring each kind's lag p99 up to now.
    fn update_lag_p99(&self) {
        for (probe, p99) in self.lag_window.p99s(std::time::Instant::now()) {
            self.metrics.probe_lag_p99_seconds.get_or_create(&ProbeLabels { probe }).set(p99);
        }
    }

    /// Count a configuration reload.
    pub fn record_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.metrics.config_reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Render every metric in `format`, the kinds' records brought up to `now` first (the uptime ratios).
    pub fn encode(&self, format: Format, now: SystemTime) -> String {
        self.kind_records.before_encode(unix_seconds(now));
        self.update_lag_p99();
        let mut text = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry),
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry),
        };
        encoded.expect("writing to a String cannot fail");
        text
    }

    /// Open (or keep open) a spell of `kind` for `subject` in the incident timeline, from `at`.
    pub fn timeline_spell(&self, kind: timeline::EventKind, subject: &str, detail: &str, at: f64) {
        self.timeline().spell(kind.name, subject, detail, at);
    }

    /// Put a point event of `kind` for `subject` at `at` on the incident timeline.
    pub fn timeline_point(&self, kind: timeline::EventKind, subject: &str, detail: &str, at: f64) {
        self.timeline().point(kind.name, subject, detail, at);
    }

    /// Put a spell already over (asleep from `start` to `end`) on the incident timeline.
    pub fn timeline_closed(&self, kind: timeline::EventKind, subject: &str, detail: &str, start: f64, end: f64) {
        self.timeline().closed(kind.name, subject, detail, start, end);
    }

    /// End the open spell of `kind` for `subject` at `at`, if there is one.
    pub fn timeline_over(&self, kind: timeline::EventKind, subject: &str, at: f64) {
        self.timeline().over(kind.name, subject, at);
    }

    /// What the kinds' records keep across a restart, by key (the state file's).
    pub fn saved_kinds(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let mut saved = self.kind_records.save();
        let remembered = self.remembered_credentials.save();
        if remembered.as_object().is_some_and(|entries| !entries.is_empty()) {
            saved.insert(crate::web_security::REMEMBERED_STATE_KEY.to_owned(), remembered);
        }
        saved
    }

    /// Hand a state file's keys to the kinds' records, each taking its own (and the web's remembered
    /// credentials theirs).
    pub fn restore_kinds(&self, saved: &serde_json::Map<String, serde_json::Value>) {
        self.kind_records.restore(self, saved);
        if let Some(remembered) = saved.get(crate::web_security::REMEMBERED_STATE_KEY) {
            self.remembered_credentials.restore(remembered);
        }
    }

    /// The web's credentials accepted before a restart ([`crate::web_security::Remembered`]).
    pub fn remembered_credentials(&self) -> &Arc<crate::web_security::Remembered> {
        &self.remembered_credentials
    }

    /// The record of the kind of type `T` (its own families and status), when the recorder was built with it.
    pub fn kind_record<T: kinds::KindRecord>(&self) -> Option<std::sync::Arc<T>> {
        self.kind_records.get()
    }

    /// The registry every family is in.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The timeline, for one change.
    fn timeline(&self) -> MutexGuard<'_, timeline::Timeline> {
        self.timeline.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Recorder {
    /// Every series, as Prometheus protobuf families (the kinds' records brought up to `now` first, as for a
    /// scrape).
    pub fn metric_families(
        &self,
        now: SystemTime,
    ) -> Vec<prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily> {
        self.kind_records.before_encode(unix_seconds(now));
        self.update_lag_p99();
        prometheus_client::encoding::prometheus_protobuf::encode(self.registry())
            .expect("encoding to protobuf values cannot fail")
    }

    /// Every family in the Prometheus protobuf exposition (`io.prometheus.client.MetricFamily`, each
    /// length-delimited): histograms with their native buckets beside the classic ones.
    pub fn encode_protobuf(&self, now: SystemTime) -> Vec<u8> {
        use prost::Message;
        let mut body = Vec::with_capacity(16 * 1024);
        for family in self.metric_families(now) {
            family.encode_length_delimited(&mut body).expect("a Vec grows");
        }
        body
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

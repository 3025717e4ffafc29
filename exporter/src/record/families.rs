//! The metric families: their label sets and one table that declares, constructs and registers each
//! family (name, help, type), so a family is one line, never three places kept in step.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::tracked::Tracked;

/// Histogram bucket bounds in seconds: a 1-2.5-5 ladder from 25 us (a loopback connect) to 250 s
/// (beyond any probe timeout the config accepts short of an hour, and what no probe should ever take).
pub const LATENCY_BUCKETS: [f64; 22] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0,
];

/// Declare label sets: `Name { field: Type, ... }` each (a kind's own record declares its own with it).
macro_rules! label_sets {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* } )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Debug, Hash, PartialEq, Eq, ::prometheus_client::encoding::EncodeLabelSet)]
            pub struct $name { $(pub $field: $ty),* }

            impl $crate::record::families::LabelValues for $name {
                fn value_of(&self, key: &str) -> Option<&str> {
                    $( if key == stringify!($field) {
                        return $crate::record::families::LabelText::text(&self.$field);
                    } )*
                    None
                }
            }
        )*
    };
}
pub(crate) use label_sets;

/// A label set's values by label name: what a reload reads to find the series of a removed subject.
pub trait LabelValues {
    /// The value of label `key`, when the set has it and it is text.
    fn value_of(&self, key: &str) -> Option<&str>;
}

/// A label value as text, where it can name a subject.
pub trait LabelText {
    /// The value, when it is text.
    fn text(&self) -> Option<&str>;
}

impl LabelText for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl LabelText for &'static str {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl LabelText for u16 {
    fn text(&self) -> Option<&str> {
        None
    }
}

/// The subjects a config has, by the label that names them; a series naming any other goes on reload.
#[derive(Debug, Default)]
pub struct Subjects {
    /// `(label, kept values)`: forward, model_host, gateway, token_revision.
    pub kept: Vec<(&'static str, HashSet<String>)>,
}

impl Subjects {
    /// Whether a series of `labels` stays: every subject label it has names a subject the config keeps.
    pub fn keeps(&self, labels: &impl LabelValues) -> bool {
        self.kept.iter().all(|(key, values)| labels.value_of(key).is_none_or(|value| values.contains(value)))
    }

    /// Whether `value` of subject label `label` stays (a label the config does not name subjects by does).
    pub fn keeps_value(&self, label: &str, value: &str) -> bool {
        self.kept.iter().all(|(key, values)| *key != label || values.contains(value))
    }
}

/// A registered metric: what the registry holds, and how a reload prunes it.
pub trait Registered {
    /// The handle the registry encodes.
    type Metric: prometheus_client::registry::Metric;
    /// That handle (sharing the values).
    fn registered(&self) -> Self::Metric;
    /// Remove the series of subjects not in `subjects` (nothing, for a metric without labels).
    fn retain_subjects(&self, subjects: &Subjects);
}

impl<S, M, C> Registered for Tracked<S, M, C>
where
    S: LabelValues + Clone + std::hash::Hash + Eq,
    Family<S, M, C>: prometheus_client::registry::Metric + Clone,
    C: MetricConstructor<M>,
{
    type Metric = Family<S, M, C>;

    fn registered(&self) -> Self::Metric {
        self.family().clone()
    }

    fn retain_subjects(&self, subjects: &Subjects) {
        self.retain(|labels| subjects.keeps(labels));
    }
}

impl<N, A> Registered for Gauge<N, A>
where
    Gauge<N, A>: prometheus_client::registry::Metric + Clone,
{
    type Metric = Gauge<N, A>;

    fn registered(&self) -> Self::Metric {
        self.clone()
    }

    fn retain_subjects(&self, _: &Subjects) {}
}

impl<N, A> Registered for Counter<N, A>
where
    Counter<N, A>: prometheus_client::registry::Metric + Clone,
{
    type Metric = Counter<N, A>;

    fn registered(&self) -> Self::Metric {
        self.clone()
    }

    fn retain_subjects(&self, _: &Subjects) {}
}

label_sets! {
    /// `forward`.
    ForwardLabels { forward: String }
    /// `forward`, `reason`.
    ForwardReasonLabels { forward: String, reason: &'static str }
    /// `forward`, `cause`.
    ForwardCauseLabels { forward: String, cause: &'static str }
    /// `forward`, `state`.
    ForwardStateLabels { forward: String, state: &'static str }
    /// `forward`, `option` (a risky ssh setting).
    ForwardOptionLabels { forward: String, option: &'static str }
    /// `forward`, `code`, `by`.
    ForwardCodeByLabels { forward: String, code: &'static str, by: &'static str }
    /// `forward`, `kind`.
    ForwardKindLabels { forward: String, kind: &'static str }
    /// `forward`, `channel`.
    ForwardChannelLabels { forward: String, channel: &'static str }
    /// `forward`, `channel`, `reason`.
    ForwardChannelReasonLabels { forward: String, channel: &'static str, reason: &'static str }
    /// `forward`, `version`.
    ForwardVersionLabels { forward: String, version: String }
    /// `version`.
    VersionLabels { version: String }
    /// `model_host`.
    ModelHostLabels { model_host: String }
    /// `model_host`, `phase`.
    ModelHostPhaseLabels { model_host: String, phase: &'static str }
    /// `model_host`, `reason`.
    ModelHostReasonLabels { model_host: String, reason: &'static str }
    /// `gateway`.
    GatewayLabels { gateway: String }
    /// `gateway`, `scope`.
    GatewayScopeLabels { gateway: String, scope: &'static str }
    /// `gateway`, `endpoint`.
    GatewayEndpointLabels { gateway: String, endpoint: &'static str }
    /// `probe`.
    ProbeLabels { probe: &'static str }
    /// `result`.
    ResultLabels { result: &'static str }
    /// `status` (an HTTP status: only 400, 409, 413 and 422 ever reach it).
    StatusLabels { status: u16 }
    /// `status`: an HTTP status class (3xx, 4xx, 5xx) or network, local.
    StatusClassLabels { status: &'static str }
    /// `op`: a queue operation (append, ack, read).
    OpLabels { op: &'static str }
    /// `reason`.
    ReasonLabels { reason: &'static str }
    /// `forward`, `probe`.
    ForwardProbeLabels { forward: String, probe: &'static str }
    /// `listener`, `reason`.
    ListenerReasonLabels { listener: &'static str, reason: &'static str }
    /// `listener`, `result`.
    ListenerResultLabels { listener: &'static str, result: &'static str }
    /// `forward`, `result`.
    ForwardResultLabels { forward: String, result: &'static str }
    /// `protocol` (1.0, 2.0), `histograms` (native, classic).
    ProtocolLabels { protocol: &'static str, histograms: &'static str }
    /// `forward`, `transport`.
    ForwardTransportLabels { forward: String, transport: &'static str }
}

/// A gauge holding a float.
pub type FloatGauge = Gauge<f64, AtomicU64>;
/// A counter holding a float.
pub type FloatCounter = Counter<f64, AtomicU64>;
/// A histogram family over [`LATENCY_BUCKETS`].
pub type Latency<L> = Tracked<L, Histogram, fn() -> Histogram>;

/// A latency family over [`LATENCY_BUCKETS`], empty.
pub fn latency<L: Clone + std::hash::Hash + Eq>() -> Latency<L> {
    Tracked::new_with_constructor(|| Histogram::new_classic_and_native(LATENCY_BUCKETS, native_latency()))
}

/// The native buckets every latency histogram keeps beside its classic ones (served to a scraper that
/// negotiates protobuf, and pushed where the receiver stores them): schema 3, each bucket 9% wider than the
/// last (client_golang's default factor 1.1), at most 100 buckets (a probe's latencies span three decades at
/// most: 25 us to 30 s is 20 doublings, 160 buckets at schema 3; past 100 the resolution halves).
pub fn native_latency() -> prometheus_client::metrics::histogram::NativeHistogramConfig {
    prometheus_client::metrics::histogram::NativeHistogramConfig::new(1.1).max_buckets(100)
}

/// A table: `struct Name { field: Type = constructor, "name", "help"; ... }` declares each field, builds it and
/// registers it (the recorder's [`Metrics`]; a kind's own record declares its families with it too).
macro_rules! families {
    ($(#[$doc:meta])* $vis:vis struct $table:ident {
        $( $field:ident: $ty:ty = $ctor:expr, $name:literal, $help:literal; )*
    }) => {
        $(#[$doc])*
        $vis struct $table { $( #[doc = $help] pub $field: $ty, )* }

        impl $table {
            /// Build every family and register it in `registry`.
            pub fn register(registry: &mut ::prometheus_client::registry::Registry) -> $table {
                let table = $table { $( $field: $ctor, )* };
                $(
                    let registered = $crate::record::families::Registered::registered(&table.$field);
                    #[cfg(test)]
                    $crate::record::families::names_for_tests::note(
                        $name,
                        ::prometheus_client::encoding::EncodeMetric::metric_type(&registered),
                    );
                    registry.register($name, $help, registered);
                )*
                table
            }

            /// Remove every series of a forward, model host, gateway or revision `subjects` does not keep.
            pub fn retain_subjects(&self, subjects: &$crate::record::families::Subjects) {
                $( $crate::record::families::Registered::retain_subjects(&self.$field, subjects); )*
            }
        }
    };
}
pub(crate) use families;

/// Every family name a `families!` table registered in this process, as the exposition names it (`_total` on a
/// counter): what a test checks a list of families against (an empty family has no descriptor on `/metrics`).
#[cfg(test)]
pub(crate) mod names_for_tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    static NAMES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

    /// Note `name`, of `kind`.
    pub fn note(name: &str, kind: prometheus_client::metrics::MetricType) {
        let name = match kind {
            prometheus_client::metrics::MetricType::Counter => format!("{name}_total"),
            _ => name.to_owned(),
        };
        NAMES.lock().unwrap().insert(name);
    }

    /// Every name noted so far.
    pub fn all() -> BTreeSet<String> {
        NAMES.lock().unwrap().clone()
    }
}

families! {
/// Every metric family the recorder itself keeps (the kinds' own records keep theirs).
pub struct Metrics {
    config_reloads: Tracked<ResultLabels, Counter> = Tracked::default(),
        "openclaw_exporter_config_reloads", "Configuration reloads by result: success, failure";
    probe_lag_seconds: Latency<ProbeLabels> = latency(),
        "openclaw_exporter_probe_lag_seconds", "How late a scheduled probe started";
    probe_lag_p99_seconds: Tracked<ProbeLabels, FloatGauge> = Tracked::default(),
        "openclaw_exporter_probe_lag_p99_seconds", "The 99th percentile of how late each kind's scheduled probes started over the last 5 minutes (0: none late, or none ran)";
    objective_tunnel_uptime_ratio: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_objective_tunnel_uptime_ratio", "Tunnel uptime objective";
    objective_first_byte_seconds: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_objective_first_byte_seconds", "First-byte latency objective through the forward";
    objective_model_host_first_byte_seconds: Tracked<ModelHostLabels, FloatGauge> = Tracked::default(),
        "openclaw_objective_model_host_first_byte_seconds", "Model API first-byte latency objective";
    objective_gateway_restarts_per_hour: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_objective_gateway_restarts_per_hour", "Gateway restarts per hour above which the restart alert pages";
    objective_ssh_restarts_per_hour: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_objective_ssh_restarts_per_hour", "New ssh owners of the forward per hour above which the restart-storm alert warns";
    objective_first_byte_ratio: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_objective_first_byte_ratio", "The share of first-byte probes that must answer within the first-byte objective";
    objective_window_seconds: FloatGauge = FloatGauge::default(),
        "openclaw_objective_window_seconds", "The error-budget window the burn-rate alerts are scaled to";
    objective_tunnel_stalls_per_hour: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_objective_tunnel_stalls_per_hour", "Client closes 4000 (heard nothing for two ticks) per hour above which the stall alert warns";
    objective_gateway_event_loop_delay_seconds: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_objective_gateway_event_loop_delay_seconds", "The gateway's event-loop delay p99 above which the saturation alert warns";
    remote_write_samples: Tracked<ResultLabels, Counter> = Tracked::default(),
        "openclaw_exporter_remote_write_samples", "Remote-write samples by result: sent (acknowledged), dropped (not written, over max_bytes or corrupt), failed (refused for good: 400, 409, 422)";
    remote_write_rejected: Tracked<StatusLabels, Counter> = Tracked::default(),
        "openclaw_exporter_remote_write_rejected_batches", "Remote-write batches the receiver refused for good (400, 409, 422), dropped, by status";
    remote_write_retries: Tracked<StatusClassLabels, Counter> = Tracked::default(),
        "openclaw_exporter_remote_write_retries", "Remote-write sends retried, by the answer's status class (3xx, 4xx, 5xx) or network (no answer), local (a credential file unreadable)";
    remote_write_queue_errors: Tracked<OpLabels, Counter> = Tracked::default(),
        "openclaw_exporter_remote_write_queue_errors", "Remote-write queue operations that failed: append (the round is counted dropped), ack, read and open (retried with backoff), acked (the acknowledgement file was damaged at open: its rounds are sent again)";
    connections_closed: Tracked<ListenerReasonLabels, Counter> = Tracked::default(),
        "openclaw_exporter_connections_closed", "Connections the exporter closed on its own, by listener (web, auth_tap) and reason: limit_new (at max_connections with every open connection active: the new one), limit_silent (at max_connections: the oldest not yet established, to make room), limit_busy (web: at max_connections with every connection busy, the oldest told to close once its answer is out while the new one comes in), header_timeout (web: no full request head within header_read_timeout), idle_timeout (web: nothing either way for idle_timeout)";
    other_user_connections: Tracked<ListenerResultLabels, Counter> = Tracked::default(),
        "openclaw_exporter_other_user_connections", "Connections to a listener from another user's process (Linux: the client socket's uid), by listener (auth_tap) and result: admitted (within their own small quota, never the user's own slots), refused (past it)";
    listen_failures: Tracked<ListenerReasonLabels, Counter> = Tracked::default(),
        "openclaw_exporter_listen_failures", "Binds of a listen address that failed, by listener (web, auth_tap) and reason: in_use (another socket holds it), unavailable (not this machine's address), denied, other; each is retried (250 ms doubling to 2 s) while the rest of the exporter runs";
    web_requests_refused: Tracked<ReasonLabels, Counter> = Tracked::default(),
        "openclaw_exporter_web_requests_refused", "Web requests refused by reason: foreign_host (a Host that is not this machine: DNS rebinding), lifecycle_off (POST /-/reload without [web] enable_lifecycle), cross_site (a browser's cross-site request to a lifecycle endpoint), unauthorized (basic auth missing or wrong), auth_rate_limited (too many never-seen credentials at once: answered 401, as late as a check takes, so it cannot be told from a wrong password)";
    remote_write_round_sequence: Gauge = Gauge::default(),
        "openclaw_exporter_remote_write_round_sequence", "The queue sequence number of the round being taken (in each pushed round: its own, so a receiver can count lost rounds)";
    remote_write_queue_bytes: Gauge = Gauge::default(),
        "openclaw_exporter_remote_write_queue_bytes", "Bytes of rounds waiting in the on-disk remote-write queue";
    remote_write_last_success: FloatGauge = FloatGauge::default(),
        "openclaw_exporter_remote_write_last_success_timestamp_seconds", "When the receiver last acknowledged a batch (0: never, in this process)";
    remote_write_protocol: Tracked<ProtocolLabels, Gauge> = Tracked::default(),
        "openclaw_exporter_remote_write_protocol_info", "The remote-write protocol (1.0, 2.0) and histograms (native, classic) the exporter sends the receiver now, by negotiation (remote_write.protocol and histograms)";
    remote_write_fallbacks: Tracked<ReasonLabels, Counter> = Tracked::default(),
        "openclaw_exporter_remote_write_fallbacks", "Remote-write negotiation steps down, by reason: unsupported_media_type (415 or 400 to 2.0), no_written_headers (2xx to 2.0 without the written-headers: a 1.0 receiver, nothing written), histograms_dropped (written-headers count fewer histograms than sent), native_histograms_disabled (the receiver's 500); the batch is sent again, nothing lost";
    remote_write_bytes: Counter = Counter::default(),
        "openclaw_exporter_remote_write_bytes", "Compressed request bytes the receiver acknowledged (bodies, without HTTP headers)";
    remote_write_oldest_queued: FloatGauge = FloatGauge::default(),
        "openclaw_exporter_remote_write_oldest_queued_timestamp_seconds", "The timestamp of the oldest round still waiting (0 when the queue is empty)";
}
}

//! The Prometheus remote-write 1.0 messages (prost derive, field numbers from `prompb/remote.proto` and
//! `prompb/types.proto`), and the conversion of the registry's Prometheus protobuf model into one queued round.
//!
//! A queued round is a 1.0 `WriteRequest` holding everything any protocol may send ([`from_metric_families`]):
//! every pushed family's series, a histogram both as its classic series (`_bucket{le}`, `_sum`, `_count`) and as
//! one native sample, and each family's type (the request's metadata). The sender keeps what the receiver takes
//! ([`super::wire`]): classic or native histograms, 1.0 or 2.0. Protobuf repeated fields merge by
//! concatenation: two encoded `WriteRequest`s written back to back decode as one holding both.

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pm;

/// `prometheus.WriteRequest`: the series and their families' metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series of this request.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Each family's type (the queue keeps it for 2.0's metadata and to tell a histogram's series apart; a 1.0
    /// request is sent without it).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples (or native histogram samples) in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `__name__` and the rest, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples (a series holds these or samples, never both).
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// The label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`: a family's name and type (help and unit are not sent: bytes every round).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// The type, `prometheus.MetricMetadata.MetricType`: [`COUNTER`], [`GAUGE`], [`HISTOGRAM`], [`INFO`].
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family's name as its series are named (a counter's with `_total`, a histogram's bare).
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
}

/// `MetricType.COUNTER` (the same number in 2.0's `Metadata.MetricType`).
pub const COUNTER: i32 = 1;
/// `MetricType.GAUGE`.
pub const GAUGE: i32 = 2;
/// `MetricType.HISTOGRAM`.
pub const HISTOGRAM: i32 = 3;
/// `MetricType.INFO`.
pub const INFO: i32 = 6;

/// A native histogram sample, `prometheus.Histogram` (1.0) and `io.prometheus.write.v2.Histogram` (2.0) alike:
/// the same fields under the same numbers. Integer counts only (the exporter's histograms count rounds).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// The count of observations (`count_int` of the `count` oneof; 0 is 0 either way).
    #[prost(uint64, tag = "1")]
    pub count_int: u64,
    /// The sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// The bucket schema (base-2 exponential: -4..=8).
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// The zero bucket's breadth.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// The zero bucket's count (`zero_count_int`).
    #[prost(uint64, tag = "6")]
    pub zero_count_int: u64,
    /// Spans of negative buckets.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Their counts, each as the delta from the previous bucket's.
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Spans of positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Their counts, each as the delta from the previous bucket's.
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `BucketSpan`: `length` consecutive buckets, `offset` after the previous span (or from index 0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// The gap before this span.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// How many buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// Whether `histogram` has the latency families' classic buckets ([`crate::record::families::LATENCY_BUCKETS`]).
fn is_latency(histogram: &pm::Histogram) -> bool {
    let bounds = &crate::record::families::LATENCY_BUCKETS;
    histogram.bucket.len() == bounds.len() + 1
        && histogram.bucket.iter().zip(bounds.iter()).all(|(bucket, bound)| bucket.upper_bound == *bound)
}

/// The remote-write type of a family of the registry's model.
fn metric_type(family: &pm::MetricFamily) -> i32 {
    match pm::MetricType::try_from(family.r#type) {
        Ok(pm::MetricType::Counter) => COUNTER,
        Ok(pm::MetricType::Histogram | pm::MetricType::GaugeHistogram) => HISTOGRAM,
        _ if family.name.ends_with("_info") => INFO,
        _ => GAUGE,
    }
}

/// A native histogram sample from the model's histogram, when it has native buckets (a schema's spans, or the
/// no-op span of one with no observation yet).
fn native(histogram: &pm::Histogram, timestamp_ms: i64) -> Option<Histogram> {
    if histogram.positive_span.is_empty() && histogram.negative_span.is_empty() && histogram.zero_threshold == 0.0 {
        return None;
    }
    let spans = |spans: &[pm::BucketSpan]| {
        spans.iter().map(|span| BucketSpan { offset: span.offset, length: span.length }).collect::<Vec<_>>()
    };
    Some(Histogram {
        count_int: histogram.sample_count,
        sum: histogram.sample_sum,
        schema: histogram.schema,
        zero_threshold: histogram.zero_threshold,
        zero_count_int: histogram.zero_count,
        negative_spans: spans(&histogram.negative_span),
        negative_deltas: histogram.negative_delta.clone(),
        positive_spans: spans(&histogram.positive_span),
        positive_deltas: histogram.positive_delta.clone(),
        timestamp: timestamp_ms,
    })
}

/// Every sample of `families` at `timestamp_ms`, as one queued round with `extra` labels (the external labels)
/// added; a metric's own label wins over an external one of the same name. prometheus-client's Prometheus
/// protobuf model already names them as the text exposition does (`_total`, `_info`) and keeps histogram
/// buckets cumulative; a histogram becomes `_bucket{le}`, `_sum` and `_count`, and, when it keeps native
/// buckets too, one native sample under its bare name.
pub fn from_metric_families(
    families: &[pm::MetricFamily],
    extra: &[(String, String)],
    timestamp_ms: i64,
) -> WriteRequest {
    let mut timeseries = Vec::new();
    let mut metadata = Vec::new();
    for family in families {
        metadata.push(MetricMetadata { r#type: metric_type(family), metric_family_name: family.name.clone() });
        for metric in &family.metric {
            let labels = |suffix: &str, more: Option<(&str, String)>| {
                let mut labels: Vec<Label> = metric
                    .label
                    .iter()
                    .map(|l| Label { name: l.name.clone(), value: l.value.clone() })
                    .chain(more.map(|(name, value)| Label { name: name.to_owned(), value }))
                    .chain(extra.iter().map(|(name, value)| Label { name: name.clone(), value: value.clone() }))
                    .collect();
                labels.push(Label { name: "__name__".into(), value: format!("{}{suffix}", family.name) });
                // Stable: for a name given twice, the metric's own label (earlier) is kept.
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                labels.dedup_by(|later, earlier| later.name == earlier.name);
                labels
            };
            let mut push = |suffix: &str, more: Option<(&str, String)>, value: f64| {
                let samples = vec![Sample { value, timestamp: timestamp_ms }];
                timeseries.push(TimeSeries { labels: labels(suffix, more), samples, histograms: Vec::new() });
            };
            if let Some(counter) = &metric.counter {
                push("", None, counter.value);
            } else if let Some(gauge) = &metric.gauge {
                push("", None, gauge.value);
            } else if let Some(untyped) = &metric.untyped {
                push("", None, untyped.value);
            } else if let Some(histogram) = &metric.histogram {
                let latency = is_latency(histogram);
                for bucket in
                    histogram.bucket.iter().filter(|b| !latency || super::push::pushed_latency_bucket(b.upper_bound))
                {
                    let le =
                        if bucket.upper_bound >= f64::MAX { "+Inf".to_owned() } else { bucket.upper_bound.to_string() };
                    push("_bucket", Some(("le", le)), bucket.cumulative_count as f64);
                }
                push("_sum", None, histogram.sample_sum);
                push("_count", None, histogram.sample_count as f64);
                if let Some(native) = native(histogram, timestamp_ms) {
                    timeseries.push(TimeSeries {
                        labels: labels("", None),
                        samples: Vec::new(),
                        histograms: vec![native],
                    });
                }
            }
        }
    }
    WriteRequest { timeseries, metadata }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn names(request: &WriteRequest) -> Vec<String> {
        request
            .timeseries
            .iter()
            .map(|ts| ts.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect::<Vec<_>>().join(","))
            .collect()
    }

    #[test]
    fn counters_histograms_and_info_are_named_as_the_text_exposition_names_them() {
        let mut registry = Registry::default();
        let counter: Family<Vec<(String, String)>, Counter> = Family::default();
        counter.get_or_create(&vec![("forward".into(), "mac".into())]).inc_by(3);
        registry.register("oce_rounds", "rounds", counter);
        let histogram = Histogram::new([0.1, 1.0]);
        histogram.observe(0.25);
        histogram.observe(0.5);
        histogram.observe(5.0);
        registry.register("oce_latency_seconds", "latency", histogram);
        registry.register(
            "oce_build",
            "build",
            prometheus_client::metrics::info::Info::new(vec![("version".to_owned(), "1.2.3".to_owned())]),
        );
        let families = prometheus_client::encoding::prometheus_protobuf::encode(&registry).unwrap();
        // An external label joins every series, except those that carry the name themselves.
        let extra = [("laptop".to_owned(), "lap-1".to_owned()), ("forward".to_owned(), "not-this".to_owned())];
        let request = from_metric_families(&families, &extra, 1_700_000_000_000);
        assert_eq!(
            names(&request),
            [
                "__name__=oce_rounds_total,forward=mac,laptop=lap-1",
                "__name__=oce_latency_seconds_bucket,forward=not-this,laptop=lap-1,le=0.1",
                "__name__=oce_latency_seconds_bucket,forward=not-this,laptop=lap-1,le=1",
                "__name__=oce_latency_seconds_bucket,forward=not-this,laptop=lap-1,le=+Inf",
                "__name__=oce_latency_seconds_sum,forward=not-this,laptop=lap-1",
                "__name__=oce_latency_seconds_count,forward=not-this,laptop=lap-1",
                "__name__=oce_build_info,forward=not-this,laptop=lap-1,version=1.2.3",
            ]
        );
        let values: Vec<f64> = request.timeseries.iter().map(|ts| ts.samples[0].value).collect();
        assert_eq!(values, [3.0, 0.0, 2.0, 3.0, 5.75, 3.0, 1.0]);
        assert!(request.timeseries.iter().all(|ts| ts.samples[0].timestamp == 1_700_000_000_000));
    }

    #[test]
    fn two_encoded_requests_back_to_back_decode_as_one() {
        use prost::Message;
        let one = |name: &str, ts: i64| WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label { name: "__name__".into(), value: name.into() }],
                samples: vec![Sample { value: 1.0, timestamp: ts }],
                histograms: Vec::new(),
            }],
            metadata: Vec::new(),
        };
        let mut bytes = one("a", 1).encode_to_vec();
        bytes.extend(one("b", 2).encode_to_vec());
        let merged = WriteRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(merged.timeseries.len(), 2);
        assert_eq!(merged.timeseries[1].samples[0].timestamp, 2);
    }
}

//! The Prometheus remote-write 1.0 messages (prost derive, field numbers from `prompb/remote.proto` and
//! `prompb/types.proto`), and the conversion of the registry's Prometheus protobuf model into them.
//!
//! Protobuf repeated fields merge by concatenation: two encoded `WriteRequest`s written back to back decode as
//! one holding both series lists. The queue keeps one encoded request per sampling round and a batch is the
//! concatenation of rounds, with no decoding.

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pm;

/// `prometheus.WriteRequest`: only the series (metadata is optional in 1.0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series of this request.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `__name__` and the rest, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
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

/// Every sample of `families` at `timestamp_ms`, as remote-write series with `extra` labels (the external
/// labels) added; a metric's own label wins over an external one of the same name. prometheus-client's
/// Prometheus protobuf model already names them as the text exposition does (`_total`, `_info`) and keeps
/// histogram buckets cumulative; histograms become `_bucket{le}`, `_sum` and `_count`.
pub fn from_metric_families(
    families: &[pm::MetricFamily],
    extra: &[(String, String)],
    timestamp_ms: i64,
) -> WriteRequest {
    let mut timeseries = Vec::new();
    for family in families {
        for metric in &family.metric {
            let mut push = |suffix: &str, more: Option<(&str, String)>, value: f64| {
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
                timeseries.push(TimeSeries { labels, samples: vec![Sample { value, timestamp: timestamp_ms }] });
            };
            if let Some(counter) = &metric.counter {
                push("", None, counter.value);
            } else if let Some(gauge) = &metric.gauge {
                push("", None, gauge.value);
            } else if let Some(untyped) = &metric.untyped {
                push("", None, untyped.value);
            } else if let Some(histogram) = &metric.histogram {
                for bucket in &histogram.bucket {
                    let le =
                        if bucket.upper_bound >= f64::MAX { "+Inf".to_owned() } else { bucket.upper_bound.to_string() };
                    push("_bucket", Some(("le", le)), bucket.cumulative_count as f64);
                }
                push("_sum", None, histogram.sample_sum);
                push("_count", None, histogram.sample_count as f64);
            }
        }
    }
    WriteRequest { timeseries }
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
            }],
        };
        let mut bytes = one("a", 1).encode_to_vec();
        bytes.extend(one("b", 2).encode_to_vec());
        let merged = WriteRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(merged.timeseries.len(), 2);
        assert_eq!(merged.timeseries[1].samples[0].timestamp, 2);
    }
}

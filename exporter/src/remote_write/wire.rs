//! What a batch of queued rounds becomes on the wire for the receiver's protocol ([`Wire`]): remote write 1.0
//! (`prometheus.WriteRequest`) or 2.0 (`io.prometheus.write.v2.Request`: every string once in a symbols table,
//! each series' type in its metadata), histograms classic (`_bucket{le}`, `_sum`, `_count`) or native (one
//! sample of sparse exponential buckets). A queued round holds both forms ([`super::proto`]), so the choice is
//! the sender's at send time and a fallback loses nothing already queued.
//!
//! Measured on a healthy laptop (one forward through a real ssh forward, the default probes, the auth probe;
//! `tests/tests/remote_write_cost.rs`): see the README's remote-write cost table.

use std::collections::{HashMap, HashSet};

use prost::Message;

use super::proto::{self, Histogram, MetricMetadata, TimeSeries, WriteRequest};

/// The remote-write protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// 1.0: `application/x-protobuf`, `X-Prometheus-Remote-Write-Version: 0.1.0`.
    V1,
    /// 2.0: `application/x-protobuf;proto=io.prometheus.write.v2.Request`, version `2.0.0`.
    V2,
}

impl Protocol {
    /// As `openclaw_exporter_remote_write_protocol_info{protocol}` and the config name it.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::V1 => "1.0",
            Protocol::V2 => "2.0",
        }
    }

    /// The request's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::V1 => "application/x-protobuf",
            Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The request's `X-Prometheus-Remote-Write-Version`.
    pub fn version(self) -> &'static str {
        match self {
            Protocol::V1 => "0.1.0",
            Protocol::V2 => "2.0.0",
        }
    }
}

/// What a request carries: its protocol, and whether histograms go native (else classic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wire {
    /// The protocol.
    pub protocol: Protocol,
    /// Native histograms (one sample each) instead of their classic series.
    pub native: bool,
}

impl Wire {
    /// As `openclaw_exporter_remote_write_protocol_info{histograms}` names it.
    pub fn histograms_label(self) -> &'static str {
        if self.native {
            "native"
        } else {
            "classic"
        }
    }
}

/// A request body built for a [`Wire`], and how many native histograms it holds (to compare with a 2.0
/// receiver's written-headers).
pub struct Body {
    /// The snappy-compressed message.
    pub bytes: bytes::Bytes,
    /// Native histogram samples in it.
    pub histograms: u64,
}

/// One request's body for `wire` from queued rounds (each a snappy-compressed [`WriteRequest`], in order).
pub fn body(rounds: &[&[u8]], wire: Wire) -> Result<Body, snap::Error> {
    let mut decoder = snap::raw::Decoder::new();
    let mut merged = Vec::new();
    for round in rounds {
        merged.extend(decoder.decompress_vec(round)?);
    }
    // A queued round is always a message this build or an earlier one wrote (its CRC checked): a decode error
    // is damage the CRC missed, reported as the decompressor's.
    let request = WriteRequest::decode(merged.as_slice()).map_err(|_| snap::Error::Header)?;
    let (series, types) = keep(request, wire.native);
    let histograms = series.iter().map(|s| s.histograms.len() as u64).sum();
    let message = match wire.protocol {
        Protocol::V1 => WriteRequest { timeseries: series, metadata: Vec::new() }.encode_to_vec(),
        Protocol::V2 => v2::request(series, &types).encode_to_vec(),
    };
    let bytes = bytes::Bytes::from(snap::raw::Encoder::new().compress_vec(&message)?);
    Ok(Body { bytes, histograms })
}

/// The series `native` keeps: a histogram's native sample and not its classic series, or the reverse; and each
/// series name's type, from the rounds' metadata.
fn keep(request: WriteRequest, native: bool) -> (Vec<TimeSeries>, HashMap<String, i32>) {
    let types = types(&request.metadata);
    // The histograms that have a native sample: their classic series go when sending native.
    let with_native: HashSet<String> = request
        .timeseries
        .iter()
        .filter(|series| !series.histograms.is_empty())
        .filter_map(|series| name(series).map(str::to_owned))
        .collect();
    let series = request
        .timeseries
        .into_iter()
        .filter(|series| {
            if !series.histograms.is_empty() {
                return native;
            }
            let Some(name) = name(series) else { return true };
            let classic_part = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .is_some_and(|family| with_native.contains(family) && types.get(family) == Some(&proto::HISTOGRAM));
            !(native && classic_part)
        })
        .collect();
    (series, types)
}

/// Each series name's type: a family's own name, and a histogram's `_bucket`, `_sum` and `_count`.
fn types(metadata: &[MetricMetadata]) -> HashMap<String, i32> {
    let mut types = HashMap::new();
    for family in metadata {
        if family.r#type == proto::HISTOGRAM {
            for suffix in ["_bucket", "_sum", "_count"] {
                types.insert(format!("{}{suffix}", family.metric_family_name), family.r#type);
            }
        }
        types.insert(family.metric_family_name.clone(), family.r#type);
    }
    types
}

fn name(series: &TimeSeries) -> Option<&str> {
    series.labels.iter().find(|l| l.name == "__name__").map(|l| l.value.as_str())
}

/// The remote-write 2.0 messages (`prompb/io/prometheus/write/v2/types.proto`: `Request` keeps fields 1-3
/// reserved, so a 1.0 receiver reads a 2.0 body as an empty 1.0 request) and the conversion into them.
mod v2 {
    use super::*;

    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// Every string of the request once; the first is "".
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// The series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `io.prometheus.write.v2.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Label name and value pairs as indexes into the symbols, sorted by name.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<proto::Sample>,
        /// Native histogram samples.
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        /// Its type.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
    }

    /// `io.prometheus.write.v2.Metadata`: the type alone (help and unit refs 0, the empty symbol).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// `MetricType` (the same numbers as 1.0's).
        #[prost(int32, tag = "1")]
        pub r#type: i32,
    }

    /// The 2.0 request for `series`, typed by `types`.
    pub fn request(series: Vec<super::TimeSeries>, types: &HashMap<String, i32>) -> Request {
        let mut symbols = vec![String::new()];
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut intern = |text: &str| -> u32 {
            if text.is_empty() {
                return 0;
            }
            if let Some(&at) = index.get(text) {
                return at;
            }
            let at = symbols.len() as u32;
            symbols.push(text.to_owned());
            index.insert(text.to_owned(), at);
            at
        };
        let timeseries = series
            .into_iter()
            .map(|series| {
                let r#type = name(&series).and_then(|name| types.get(name)).copied().unwrap_or(0);
                let labels_refs =
                    series.labels.iter().flat_map(|label| [intern(&label.name), intern(&label.value)]).collect();
                TimeSeries {
                    labels_refs,
                    samples: series.samples,
                    histograms: series.histograms,
                    metadata: Some(Metadata { r#type }),
                }
            })
            .collect();
        Request { symbols, timeseries }
    }

    /// A series as a receiver reads it: its labels, samples, histograms and type.
    #[cfg(test)]
    pub type Decoded = (Vec<(String, String)>, usize, usize, i32);

    /// The 2.0 request back into 1.0's shape (tests: a receiver's view).
    #[cfg(test)]
    pub fn decode(bytes: &[u8]) -> Vec<Decoded> {
        let request = Request::decode(bytes).unwrap();
        request
            .timeseries
            .iter()
            .map(|series| {
                let labels = series
                    .labels_refs
                    .chunks(2)
                    .map(|pair| (request.symbols[pair[0] as usize].clone(), request.symbols[pair[1] as usize].clone()))
                    .collect();
                let r#type = series.metadata.as_ref().map_or(0, |m| m.r#type);
                (labels, series.samples.len(), series.histograms.len(), r#type)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram as Observed;
    use prometheus_client::metrics::histogram::NativeHistogramConfig;
    use prometheus_client::registry::Registry;

    /// One round of a counter and a histogram kept in both forms, queued as the sampler queues it.
    fn queued_round(timestamp_ms: i64) -> Vec<u8> {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc_by(3);
        registry.register("oce_rounds", "rounds", counter);
        let histogram = Observed::new_classic_and_native([0.1, 1.0], NativeHistogramConfig::with_schema(2));
        for value in [0.05, 0.25, 0.5, 5.0] {
            histogram.observe(value);
        }
        registry.register("oce_latency_seconds", "latency", histogram);
        let families = prometheus_client::encoding::prometheus_protobuf::encode(&registry).unwrap();
        let extra = [("laptop".to_owned(), "lap-1".to_owned())];
        let round = proto::from_metric_families(&families, &extra, timestamp_ms);
        snap::raw::Encoder::new().compress_vec(&round.encode_to_vec()).unwrap()
    }

    fn names_v1(body: &Body) -> Vec<String> {
        let raw = snap::raw::Decoder::new().decompress_vec(&body.bytes).unwrap();
        let request = WriteRequest::decode(raw.as_slice()).unwrap();
        assert!(request.metadata.is_empty(), "a 1.0 request goes without the queue's metadata");
        request.timeseries.iter().map(|s| name(s).unwrap().to_owned()).collect()
    }

    #[test]
    fn classic_1_0_sends_a_histogram_s_classic_series_alone() {
        let round = queued_round(1_000);
        let body = body(&[&round], Wire { protocol: Protocol::V1, native: false }).unwrap();
        let names = names_v1(&body);
        assert_eq!(names.iter().filter(|n| n.ends_with("_bucket")).count(), 3, "{names:?}");
        assert!(names.contains(&"oce_latency_seconds_sum".to_owned()) && names.contains(&"oce_rounds_total".into()));
        assert_eq!(body.histograms, 0);
    }

    #[test]
    fn native_1_0_sends_one_native_sample_instead_of_the_classic_series() {
        let round = queued_round(1_000);
        let body = body(&[&round], Wire { protocol: Protocol::V1, native: true }).unwrap();
        assert_eq!(names_v1(&body), ["oce_rounds_total", "oce_latency_seconds"]);
        assert_eq!(body.histograms, 1);
        let raw = snap::raw::Decoder::new().decompress_vec(&body.bytes).unwrap();
        let native = &WriteRequest::decode(raw.as_slice()).unwrap().timeseries[1].histograms[0];
        assert_eq!((native.count_int, native.sum, native.schema), (4, 5.8, 2));
        let counted: i64 = native
            .positive_deltas
            .iter()
            .scan(0, |count, delta| {
                *count += delta;
                Some(*count)
            })
            .sum();
        assert_eq!(counted, 4, "every observation in a positive bucket");
        assert_eq!(native.timestamp, 1_000);
    }

    #[test]
    fn a_2_0_request_interns_every_string_and_types_every_series() {
        let rounds = [queued_round(1_000), queued_round(2_000)];
        let refs: Vec<&[u8]> = rounds.iter().map(Vec::as_slice).collect();
        let body = body(&refs, Wire { protocol: Protocol::V2, native: true }).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body.bytes).unwrap();
        let series = v2::decode(&raw);
        let seen: Vec<(String, usize, usize, i32)> = series
            .iter()
            .map(|(labels, samples, histograms, t)| (labels[0].1.clone(), *samples, *histograms, *t))
            .collect();
        assert_eq!(
            seen,
            [
                ("oce_rounds_total".to_owned(), 1, 0, proto::COUNTER),
                ("oce_latency_seconds".to_owned(), 0, 1, proto::HISTOGRAM),
                ("oce_rounds_total".to_owned(), 1, 0, proto::COUNTER),
                ("oce_latency_seconds".to_owned(), 0, 1, proto::HISTOGRAM),
            ]
        );
        assert_eq!(
            series[0].0,
            [("__name__".to_owned(), "oce_rounds_total".to_owned()), ("laptop".into(), "lap-1".into())]
        );
        let request = v2::Request::decode(raw.as_slice()).unwrap();
        assert_eq!(request.symbols[0], "");
        let unique: HashSet<&String> = request.symbols.iter().collect();
        assert_eq!(unique.len(), request.symbols.len(), "every string once");
        assert_eq!(body.histograms, 2);
        // A 1.0 receiver reading it finds no series (fields 1-3 are reserved in 2.0's Request).
        assert!(WriteRequest::decode(raw.as_slice()).unwrap().timeseries.is_empty());
    }

    #[test]
    fn classic_2_0_types_a_histogram_s_classic_series_as_a_histogram() {
        let round = queued_round(1_000);
        let body = body(&[&round], Wire { protocol: Protocol::V2, native: false }).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body.bytes).unwrap();
        let types: Vec<(String, i32)> = v2::decode(&raw).into_iter().map(|(l, _, _, t)| (l[0].1.clone(), t)).collect();
        assert!(types.contains(&("oce_latency_seconds_bucket".to_owned(), proto::HISTOGRAM)), "{types:?}");
        assert!(types.iter().all(|(name, _)| name != "oce_latency_seconds"), "no native sample: {types:?}");
    }
}

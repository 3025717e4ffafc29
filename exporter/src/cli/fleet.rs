//! `simulate-fleet` (hidden, for bench/fleet.py): one process sending `laptops` label sets through the same
//! code a laptop's exporter uses (the registry's series for the given config, `proto`, snappy, `client`), so a
//! receiver's cost per laptop and the sender's CPU per sample can be measured on one machine.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prost::Message;

use crate::config::Config;
use crate::record::Recorder;
use crate::remote_write::client::{Client, Endpoint};
use crate::remote_write::proto;
use crate::remote_write::wire::{self, Protocol, Wire};

/// The wire the simulated laptops send in.
const V1_CLASSIC: Wire = Wire { protocol: Protocol::V1, native: false };

/// What one simulation did.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// Laptops simulated.
    pub laptops: usize,
    /// Rounds per laptop.
    pub rounds: usize,
    /// Series per round (the config's).
    pub series_per_round: usize,
    /// Bytes of one round as the queue stores it (snappy-compressed protobuf).
    pub bytes_per_round: usize,
    /// Samples acknowledged.
    pub samples: u64,
    /// Requests sent (one per laptop per batch of rounds).
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// This process's CPU seconds (user + system).
    pub cpu_seconds: f64,
}

/// What to simulate.
#[derive(Debug, Clone, clap::Args)]
pub struct Fleet {
    /// The receiver's remote-write URL.
    #[arg(long)]
    pub url: url::Url,
    /// How many laptops.
    #[arg(long, default_value_t = 1000)]
    pub laptops: usize,
    /// Rounds per laptop (timestamps ending now).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// The simulated interval between rounds.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Rounds per request (a queue's batch).
    #[arg(long, default_value_t = 1)]
    pub rounds_per_request: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Run the config's probes this long first, so the series sent are a running laptop's.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
}

/// Send the fleet's rounds; see [`Fleet`].
pub async fn simulate(config: &Config, fleet: &Fleet) -> Report {
    let Fleet { url, laptops, rounds, interval, rounds_per_request, connections, warmup } = fleet.clone();
    // The series a laptop really sends: the config's probes run for `warmup` (against whatever the config
    // points at), then stop; their registry is what every simulated laptop sends.
    let queues = Arc::new(crate::remote_write::QueueSlot::default());
    let recorder = Arc::new(Recorder::with_kinds(&crate::kinds::records(), vec![Box::new(queues.collector())]));
    let mut without_remote_write = config.clone();
    without_remote_write.remote_write = None;
    match crate::schedule::Prepared::new(&without_remote_write, None, &queues) {
        Ok(prepared) => {
            let root = tokio_util::sync::CancellationToken::new();
            let generation = crate::schedule::Generation::start(prepared, recorder.clone(), &root);
            tokio::time::sleep(warmup).await;
            generation.stop().await;
        }
        Err(err) => tracing::warn!("simulate-fleet: the config's probes cannot start ({err}); sending its bare series"),
    }
    let mut families = recorder.metric_families(SystemTime::now());
    families.retain(|family| crate::remote_write::push::pushed(&family.name));
    let families = Arc::new(families);
    let sample_round = proto::from_metric_families(&families, &[("laptop".to_owned(), "laptop-0000".to_owned())], 0);
    let series_per_round = sample_round.timeseries.len();
    let bytes_per_round = snap::raw::Encoder::new().compress_vec(&sample_round.encode_to_vec()).map_or(0, |b| b.len());
    let end_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let start_ms = end_ms - (rounds as i64) * interval.as_millis() as i64;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (samples, requests, failures) = (
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..connections.max(1) {
        let (families, url) = (families.clone(), url.clone());
        let (samples, requests, failures) = (samples.clone(), requests.clone(), failures.clone());
        tasks.spawn(async move {
            let endpoint = Endpoint { url, tls: None, bearer_token_file: None, basic_auth: None, headers: Vec::new() };
            let mut client = Client::new(endpoint);
            let mut encoder = snap::raw::Encoder::new();
            for first in (0..rounds).step_by(rounds_per_request.max(1)) {
                for laptop in (connection..laptops).step_by(connections.max(1)) {
                    let name = format!("laptop-{laptop:04}");
                    let labels = [
                        ("instance".to_owned(), name.clone()),
                        ("job".to_owned(), "openclaw-tunnel".to_owned()),
                        ("laptop".to_owned(), name),
                    ];
                    let mut body = Vec::new();
                    let mut in_batch = 0u64;
                    for round in first..(first + rounds_per_request).min(rounds) {
                        let at = start_ms + round as i64 * interval.as_millis() as i64;
                        let request = proto::from_metric_families(&families, &labels, at);
                        in_batch += request.timeseries.len() as u64;
                        request.encode(&mut body).expect("a Vec grows");
                    }
                    let Ok(compressed) = encoder.compress_vec(&body) else { continue };
                    // As a laptop sends to a 1.0 receiver that stores no native histograms (VictoriaMetrics).
                    let Ok(sent) = wire::body(&[compressed.as_slice()], V1_CLASSIC) else { continue };
                    requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match client.send(sent.bytes, Protocol::V1, Duration::from_secs(30)).await {
                        Ok(_) => {
                            samples.fetch_add(in_batch, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(err) => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!("simulate-fleet: {err}");
                        }
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Report {
        laptops,
        rounds,
        series_per_round,
        bytes_per_round,
        samples: samples.load(std::sync::atomic::Ordering::Relaxed),
        requests: requests.load(std::sync::atomic::Ordering::Relaxed),
        failures: failures.load(std::sync::atomic::Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu_before,
    }
}

/// This process's user + system CPU time.
fn cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage writes into the zeroed struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return seconds(usage.ru_utime) + seconds(usage.ru_stime);
        }
    }
    0.0
}

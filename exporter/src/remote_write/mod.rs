//! Remote write: the exporter pushes its own samples to a Prometheus remote-write 1.0 receiver
//! (VictoriaMetrics, Prometheus with `--web.enable-remote-write-receiver`, Mimir, Thanos Receive).
//!
//! Two loops in one task. The sampler takes every series of the registry every `interval`, on the
//! exporter's own clock (so a laptop offline or asleep between wake-ups still records what it saw), and
//! appends the round to the durable [`queue`]. The sender sends the oldest rounds in order, in batches,
//! and acknowledges them on a 2xx; 429, 5xx and network errors are retried with exponential backoff and
//! jitter, any other 4xx is counted with its status and skipped. [`proto`] holds the messages, [`client`]
//! the HTTP client.
//!
//! The queue outlives generations (it sits in the recorder): a reload reuses it when `queue_dir` stays,
//! and its lock keeps two generations from writing one directory at once.

pub mod client;
pub mod fleet;
pub mod proto;
pub mod queue;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_seconds;
use crate::config::RemoteWrite;
use crate::record::families::{ResultLabels, StatusLabels};
use crate::record::Recorder;
use client::{Client, Endpoint, SendError};
use queue::Queue;

/// At most this many rounds per request (4 minutes at 1 s; an hour at the default 15 s).
const MAX_BATCH_ROUNDS: usize = 240;
/// About this much compressed payload per request.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// One request may take this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Backoff between failed sends: from the first to the cap, doubling, with +-50% jitter. The cap bounds how
/// long a receiver that came back waits for a laptop's backlog (Prometheus's own remote write caps at 5 s;
/// a thousand laptops retrying every 30 s are 33 requests a second).
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The process's queue: opened once per directory and shared by the generations that use it.
#[derive(Default)]
pub struct QueueSlot(Mutex<Option<(PathBuf, Queue)>>);

impl QueueSlot {
    /// Run `f` on the queue of `dir` (opening it first when it is another or none), on the blocking pool.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        dir: PathBuf,
        max_bytes: u64,
        f: impl FnOnce(&mut Queue) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let slot = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.0.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_none_or(|(open, _)| *open != dir) {
                *guard = None;
                let queue = Queue::open(&dir, max_bytes)?;
                if queue.repaired > 0 {
                    tracing::warn!(dir = %dir.display(), bytes = queue.repaired, "remote-write queue: cut a torn record at a segment's end (a crash while writing)");
                }
                *guard = Some((dir, queue));
            }
            let (_, queue) = guard.as_mut().expect("opened above");
            f(queue)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }
}

/// Run remote write until `cancel`.
pub async fn run(settings: RemoteWrite, recorder: Arc<Recorder>, cancel: CancellationToken) {
    let m = &recorder.metrics;
    for result in ["sent", "dropped", "failed"] {
        m.remote_write_samples.get_or_create_owned(&ResultLabels { result });
    }
    let tls = match settings.url.scheme() {
        "https" => {
            let client = settings.client_cert.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
            match probes::model_host::tls_client_config(settings.ca_file.as_deref(), client) {
                Ok(tls) => Some(tls),
                Err(err) => {
                    tracing::error!("remote_write.tls: {err}; remote write is off until the config is fixed");
                    return;
                }
            }
        }
        _ => None,
    };
    let endpoint = Endpoint {
        url: settings.url.clone(),
        tls,
        bearer_token_file: settings.bearer_token_file.clone(),
        basic_auth: settings.basic_auth.clone(),
        headers: settings.headers.clone(),
    };
    let appended = Arc::new(tokio::sync::Notify::new());
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = sample(&settings, &recorder, &appended) => {}
        _ = send(&settings, &recorder, Client::new(endpoint), &appended) => {}
    }
}

/// Take a round every interval and queue it.
async fn sample(settings: &RemoteWrite, recorder: &Arc<Recorder>, appended: &tokio::sync::Notify) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = SystemTime::now();
        let request =
            proto::from_metric_families(&recorder.metric_families(now), &settings.external_labels, now_ms(now));
        let samples = request.timeseries.len() as u32;
        let payload = match snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!("remote write: compressing a round: {err}");
                continue;
            }
        };
        let timestamp = now_ms(now);
        let appended_round = recorder
            .remote_queue
            .with(settings.queue_dir.clone(), settings.max_bytes, move |queue| {
                let dropped = queue.append(&payload, timestamp, samples)?;
                Ok((dropped, queue.queued_bytes(), queue.oldest_timestamp_ms()))
            })
            .await;
        match appended_round {
            Ok((dropped, bytes, oldest)) => {
                if dropped.samples > 0 {
                    tracing::warn!(
                        samples = dropped.samples,
                        "remote-write queue over max_bytes: dropped the oldest rounds"
                    );
                    recorder
                        .metrics
                        .remote_write_samples
                        .get_or_create(&ResultLabels { result: "dropped" })
                        .inc_by(dropped.samples);
                }
                recorder.set_remote_write_queue(bytes, oldest);
                appended.notify_one();
            }
            Err(err) => {
                tracing::error!(dir = %settings.queue_dir.display(), "remote-write queue: {err}; this round is not kept");
            }
        }
    }
}

/// Send queued rounds, oldest first, until the queue is empty; then wait for the next round.
async fn send(settings: &RemoteWrite, recorder: &Arc<Recorder>, mut client: Client, appended: &tokio::sync::Notify) {
    let mut backoff = BACKOFF_FIRST;
    let mut failing = false;
    loop {
        let batch = recorder
            .remote_queue
            .with(settings.queue_dir.clone(), settings.max_bytes, |queue| queue.peek(MAX_BATCH_ROUNDS, MAX_BATCH_BYTES))
            .await;
        let (rounds, unreadable) = match batch {
            Ok(batch) => batch,
            Err(err) => {
                tracing::error!(dir = %settings.queue_dir.display(), "remote-write queue: {err}");
                tokio::time::sleep(settings.interval).await;
                continue;
            }
        };
        if unreadable > 0 {
            tracing::warn!(
                rounds = unreadable,
                "remote-write queue: rounds that no longer read back whole were skipped"
            );
        }
        let Some((last, _)) = rounds.last() else {
            appended.notified().await;
            continue;
        };
        let next = last.seq + 1;
        let samples: u64 = rounds.iter().map(|(info, _)| u64::from(info.samples)).sum();
        let body = match batch_body(&rounds) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!("remote write: a queued round does not decompress ({err}); skipped");
                acknowledge(settings, recorder, next).await;
                continue;
            }
        };
        match client.send(body, SEND_TIMEOUT).await {
            Ok(()) => {
                if failing {
                    tracing::info!(url = %settings.url, "remote write: the receiver takes samples again");
                    failing = false;
                }
                backoff = BACKOFF_FIRST;
                let m = &recorder.metrics;
                m.remote_write_samples.get_or_create(&ResultLabels { result: "sent" }).inc_by(samples);
                m.remote_write_last_success.set(unix_seconds(SystemTime::now()));
                acknowledge(settings, recorder, next).await;
            }
            Err(SendError::Rejected { status, detail }) => {
                tracing::warn!(url = %settings.url, status, detail = %detail, samples, "remote write: the receiver rejected a batch; not retried");
                let m = &recorder.metrics;
                m.remote_write_samples.get_or_create(&ResultLabels { result: "failed" }).inc_by(samples);
                m.remote_write_rejected.get_or_create(&StatusLabels { status }).inc();
                acknowledge(settings, recorder, next).await;
            }
            Err(SendError::Retry(why)) => {
                if !failing {
                    tracing::warn!(url = %settings.url, "remote write: cannot send ({why}); samples wait in the queue");
                    failing = true;
                }
                let jitter = 0.5 + rand::random::<f64>();
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

async fn acknowledge(settings: &RemoteWrite, recorder: &Arc<Recorder>, next: u64) {
    let acked = recorder
        .remote_queue
        .with(settings.queue_dir.clone(), settings.max_bytes, move |queue| {
            queue.ack(next)?;
            Ok((queue.queued_bytes(), queue.oldest_timestamp_ms()))
        })
        .await;
    match acked {
        Ok((bytes, oldest)) => recorder.set_remote_write_queue(bytes, oldest),
        Err(err) => tracing::error!(dir = %settings.queue_dir.display(), "remote-write queue: acknowledging: {err}"),
    }
}

/// One request's body: the rounds' `WriteRequest`s back to back (protobuf merges them), snappy-compressed.
fn batch_body(rounds: &[queue::Round]) -> Result<Bytes, snap::Error> {
    if let [(_, only)] = rounds {
        return Ok(Bytes::copy_from_slice(only));
    }
    let mut decoder = snap::raw::Decoder::new();
    let mut merged = Vec::new();
    for (_, payload) in rounds {
        merged.extend(decoder.decompress_vec(payload)?);
    }
    Ok(Bytes::from(snap::raw::Encoder::new().compress_vec(&merged)?))
}

fn now_ms(now: SystemTime) -> i64 {
    now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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

    fn set_remote_write_queue(&self, bytes: u64, oldest_ms: Option<i64>) {
        let m = &self.metrics;
        m.remote_write_queue_bytes.set(bytes as i64);
        m.remote_write_oldest_queued.set(oldest_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    }
}

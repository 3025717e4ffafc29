//! Remote write: the exporter pushes its own samples to a Prometheus remote-write receiver, 2.0 or 1.0
//! (VictoriaMetrics, Prometheus with `--web.enable-remote-write-receiver`, Mimir, Thanos Receive).
//!
//! Two loops in one task. The sampler takes every pushed series ([`push`]) every `interval`, on the
//! exporter's own clock (so a laptop offline or asleep between wake-ups still records what it saw), and
//! appends the round to the durable [`queue`]. The sender ([`send`]) sends the oldest rounds in order, in
//! batches, in the wire the receiver takes ([`wire`], [`negotiate`]), and
//! acknowledges them on a 2xx. Every other answer a person, a proxy or time can fix (3xx, 401, 403, 404, 407,
//! 408, 425, 429, 5xx, network errors) is retried with exponential backoff and jitter, honouring
//! `Retry-After`; 413 sends the batch in halves, and a single round refused with 413 (a proxy's body limit, a
//! setting a person fixes) waits and is retried like a 401; the batch size grows back after successes. Only
//! 400, 409 and 422 (a payload the receiver will never take) drop a batch, counted. [`proto`] holds the
//! 1.0 messages and the queued round, [`client`] the HTTP client.
//!
//! A queue that cannot be opened (another exporter holds it, a directory that is not the user's, a disk
//! error) never stops the exporter: the probes and the web server run on, remote write retries the open with
//! backoff (`queue_errors_total{op="open"}`), and each round taken meanwhile is counted dropped (`io_error`).
//!
//! [`slot`] holds the process's open queue across generations and the round account that `/metrics` serves.

pub mod client;
pub mod negotiate;
pub mod proto;
pub mod push;
pub mod queue;
mod send;
pub mod slot;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::config::RemoteWrite;
use crate::record::Recorder;
use client::{Client, Endpoint};
use queue::DropReason;
use slot::{count, Shared};
pub use slot::{OpenQueue, QueueSlot};

/// At most this many rounds per request (4 minutes at 1 s; an hour at the default 15 s).
const MAX_BATCH_ROUNDS: usize = 240;
/// About this much compressed payload per request.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// One request may take this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured: a receiver (or a proxy in front of it) asking for an hour would stop a
/// laptop's history for an hour; five minutes is what Grafana Agent and vmagent cap theirs near.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// Run remote write on `open` until `cancel`.
pub async fn run(
    settings: RemoteWrite,
    recorder: Arc<Recorder>,
    open: Result<Arc<OpenQueue>, queue::OpenError>,
    slot: Arc<QueueSlot>,
    cancel: CancellationToken,
) {
    recorder.create_remote_write_series(&RETRY_CLASSES);
    let open = match open {
        Ok(open) => open,
        Err(err) => match open_with_backoff(&settings, &recorder, &slot, err, &cancel).await {
            Some(open) => {
                slot.install(&open);
                open
            }
            None => return,
        },
    };
    if open.found_acked_problem() {
        recorder.count_remote_write_queue_error("acked");
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
    let shared = Shared::new(open, &slot);
    let appended = Arc::new(tokio::sync::Notify::new());
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = sample(&settings, &recorder, &shared, &appended) => {}
        _ = send::send(&settings, &recorder, &shared, Client::new(endpoint), &appended, &slot.remembered) => {}
    }
}

/// The answer classes of `retries_total{status}`: 413 apart (a single round a proxy's body limit refuses), and
/// `2xx_unread` (a 2xx to a forced 2.0 request with no written-headers: nothing was written).
const RETRY_CLASSES: [&str; 7] = ["3xx", "4xx", "413", "5xx", "2xx_unread", "network", "local"];

/// Open the queue until it opens (or `cancel`): with backoff, each failure counted (`op="open"`) and logged
/// when it changes; meanwhile each round taken is counted dropped, since there is nowhere to keep it.
async fn open_with_backoff(
    settings: &RemoteWrite,
    recorder: &Recorder,
    slot: &Arc<QueueSlot>,
    first: queue::OpenError,
    cancel: &CancellationToken,
) -> Option<Arc<OpenQueue>> {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = settings.min_backoff;
    let mut failure = Some(first);
    let mut logged = String::new();
    loop {
        if let Some(err) = failure.take() {
            recorder.count_remote_write_queue_error("open");
            let message = err.to_string();
            if message != logged {
                tracing::error!("remote-write queue: cannot open ({message}); the exporter probes and serves on, remote write retries with backoff and counts each round meanwhile dropped (io_error)");
                logged = message;
            }
        }
        let wait = backoff.mul_f64(0.5 + rand::random::<f64>());
        backoff = (backoff * 2).min(settings.max_backoff);
        let retry = tokio::time::sleep(wait);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = ticker.tick() => slot.drop_unqueued_round(),
                _ = &mut retry => break,
            }
        }
        let (opening, settings) = (slot.clone(), settings.clone());
        match tokio::task::spawn_blocking(move || opening.prepare(&settings)).await {
            Ok(Ok(open)) => {
                tracing::info!("remote-write queue: opened; remote write goes on");
                return Some(open);
            }
            Ok(Err(err)) => failure = Some(err),
            Err(join) => tracing::error!("remote-write queue: opening: {join}"),
        }
    }
}

/// Take a round every interval and queue it. The round is encoded under the queue's lock, so it carries its
/// own sequence number (`openclaw_exporter_remote_write_round_sequence`): a receiver can tell a lost round
/// from a gap in time.
async fn sample(settings: &RemoteWrite, recorder: &Arc<Recorder>, shared: &Shared, appended: &tokio::sync::Notify) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let round_recorder = recorder.clone();
        let labels = settings.external_labels.clone();
        let result = shared
            .with(move |queue, account| {
                round_recorder.set_remote_write_round_sequence(queue.next_seq() as i64);
                let now = SystemTime::now();
                let mut families = round_recorder.metric_families(now);
                families.retain(|family| push::pushed(&family.name));
                let request = proto::from_metric_families(&families, &labels, now_ms(now));
                let samples = request.timeseries.len() as u32;
                let appended = snap::raw::Encoder::new()
                    .compress_vec(&request.encode_to_vec())
                    .map_err(std::io::Error::other)
                    .and_then(|payload| queue.append(&payload, now_ms(now), samples));
                let losses = count(queue, account, |account| {
                    account.taken += 1;
                    if let Err(err) = &appended {
                        account.drop_rounds(DropReason::of(err), 1);
                    }
                });
                Ok((appended, samples, losses, queue.queued_bytes(), queue.oldest_timestamp_ms()))
            })
            .await;
        if let Ok((_, _, losses, _, _)) = &result {
            log_losses(recorder, losses);
        }
        match result {
            Ok((Ok(_), _, _, bytes, oldest)) => {
                recorder.set_remote_write_queue(bytes, oldest);
                appended.notify_one();
            }
            Ok((Err(err), samples, _, bytes, oldest)) => {
                recorder.count_remote_write_queue_error("append");
                recorder.count_remote_write_samples("dropped", u64::from(samples));
                let reason = DropReason::of(&err).label();
                tracing::error!(dir = %settings.queue_dir.display(), reason, "remote-write queue: {err}; this round is not kept (counted dropped), the next is tried");
                recorder.set_remote_write_queue(bytes, oldest);
            }
            Err(err) => tracing::error!("remote write: taking a round: {err}"),
        }
    }
}

/// Log what left the queue unsent (already in the account) and count its samples dropped.
fn log_losses(recorder: &Recorder, losses: &queue::Losses) {
    if losses.over_max_bytes.rounds > 0 {
        tracing::warn!(
            rounds = losses.over_max_bytes.rounds,
            "remote-write queue over max_bytes: dropped the oldest rounds"
        );
    }
    if losses.missing.rounds > 0 {
        tracing::warn!(
            rounds = losses.missing.rounds,
            "remote-write queue: a segment file is gone; its rounds are counted dropped (missing)"
        );
    }
    let samples: u64 = losses.each().iter().map(|(_, loss)| loss.samples).sum();
    if samples > 0 {
        recorder.count_remote_write_samples("dropped", samples);
    }
}

/// How a batch left the queue.
#[derive(Clone, Copy)]
enum Settled {
    Sent,
    Dropped(DropReason),
}

/// A queue operation that failed (`op` for `queue_errors_total`): counted every time, logged once until the queue
/// works again (`failing`); the caller waits with the backoff and tries again.
fn queue_failed(
    recorder: &Recorder,
    settings: &RemoteWrite,
    op: &'static str,
    what: &str,
    err: &dyn std::fmt::Display,
    failing: &mut bool,
) {
    recorder.count_remote_write_queue_error(op);
    if !*failing {
        tracing::error!(dir = %settings.queue_dir.display(), "remote-write queue: {what} ({err}); retried with backoff");
        *failing = true;
    }
}

/// The next batch to send, at most `limits` (rounds, bytes): a pending acknowledgement is written first
/// (sending on would only grow what a crash sends twice), then the queue is read; what it found damaged or
/// vanished is logged and counted. None after a queue error, counted and logged once while it lasts: the
/// caller waits its backoff and tries again.
async fn next_batch(
    settings: &RemoteWrite,
    recorder: &Arc<Recorder>,
    shared: &Shared,
    (max_rounds, max_bytes): (usize, usize),
    queue_failing: &mut bool,
) -> Option<Vec<queue::Round>> {
    let persisted = shared.with(|queue, _| queue.persist_ack()).await;
    if let Err(err) = persisted {
        let what = "cannot write the acknowledgement; nothing is sent meanwhile";
        queue_failed(recorder, settings, "ack", what, &err, queue_failing);
        return None;
    }
    let batch = shared
        .with(move |queue, account| {
            let peeked = queue.peek(max_rounds, max_bytes)?;
            let losses = count(queue, account, |_| {});
            Ok((peeked, losses))
        })
        .await;
    let peeked = match batch {
        Ok((peeked, losses)) => {
            log_losses(recorder, &losses);
            peeked
        }
        Err(err) => {
            queue_failed(recorder, settings, "read", "cannot read", &err, queue_failing);
            return None;
        }
    };
    if *queue_failing {
        tracing::info!(dir = %settings.queue_dir.display(), "remote-write queue: reads and writes again");
        *queue_failing = false;
    }
    for damage in &peeked.corrupt {
        tracing::warn!(segment = %damage.segment.display(), offset = damage.offset, "remote-write queue: a round no longer reads back whole; counted dropped (corrupt)");
    }
    for vanished in &peeked.vanished {
        tracing::warn!(segment = %vanished.display(), "remote-write queue: a segment file vanished (deleted by a cleanup tool or a person); its rounds are counted dropped (missing), the rest go on");
    }
    Some(peeked.rounds)
}

/// Take the rounds before `next` out of the queue, counted as `how`; the acknowledgement reaches the disk
/// at the top of the send loop.
async fn settle(shared: &Shared, recorder: &Arc<Recorder>, next: u64, how: Settled) {
    let settled = shared
        .with(move |queue, account| {
            let acked = queue.ack(next);
            count(queue, account, |account| match how {
                Settled::Sent => account.sent += acked.rounds,
                Settled::Dropped(reason) => account.drop_rounds(reason, acked.rounds),
            });
            Ok((acked, queue.queued_bytes(), queue.oldest_timestamp_ms()))
        })
        .await;
    if let Ok((acked, bytes, oldest)) = settled {
        if let Settled::Sent = how {
            recorder.count_remote_write_samples("sent", acked.samples);
        }
        recorder.set_remote_write_queue(bytes, oldest);
    }
}

fn now_ms(now: SystemTime) -> i64 {
    now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

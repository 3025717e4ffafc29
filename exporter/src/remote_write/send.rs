//! The sender: queued rounds, oldest first, in batches, in the wire the receiver takes ([`super::negotiate`]).
//! A batch's body is built on the blocking pool (decompressing, re-encoding and compressing up to a day of
//! rounds is milliseconds of CPU that must not run on the probes' runtime thread, where it would land inside a
//! timed window).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::client::{Client, SendError};
use super::negotiate::{Negotiation, Remembered, Verdict};
use super::queue::DropReason;
use super::slot::Shared;
use super::wire::{self, Wire};
use super::{next_batch, settle, Settled, MAX_BATCH_BYTES, MAX_BATCH_ROUNDS, RETRY_AFTER_CAP, SEND_TIMEOUT};
use crate::clock::unix_seconds;
use crate::config::RemoteWrite;
use crate::record::Recorder;

/// The send loop's state between batches.
struct Sender<'a> {
    settings: &'a RemoteWrite,
    recorder: &'a Arc<Recorder>,
    shared: &'a Shared,
    /// The current wait after a failure; it doubles (with jitter) up to `max_backoff`.
    backoff: Duration,
    /// What the log last said was wrong with sending (logged once per change, not per attempt).
    failing: Option<String>,
    /// A 413 halves these; each acknowledged batch doubles them back (a proxy's limit may be raised, and a
    /// backlog of small rounds should not go one by one forever).
    max_rounds: usize,
    max_bytes: usize,
}

/// One batch as sent: where the queue resumes after it, its rounds, queued bytes and samples.
struct Batch {
    next: u64,
    rounds: usize,
    payload: usize,
    samples: u64,
}

/// Send queued rounds, oldest first, until the queue is empty; then wait for the next round.
pub(super) async fn send(
    settings: &RemoteWrite,
    recorder: &Arc<Recorder>,
    shared: &Shared,
    mut client: Client,
    appended: &tokio::sync::Notify,
    remembered: &Remembered,
) {
    let receiver = settings.url.as_str();
    let mut negotiation = Negotiation::new(settings.protocol, settings.histograms).resume(remembered.get(receiver));
    announce(recorder, negotiation.wire());
    let mut sender = Sender {
        settings,
        recorder,
        shared,
        backoff: settings.min_backoff,
        failing: None,
        max_rounds: MAX_BATCH_ROUNDS,
        max_bytes: MAX_BATCH_BYTES,
    };
    let mut queue_failing = false;
    loop {
        if let Some(wait) = batch_wait(settings, shared).await {
            tokio::time::sleep(wait).await;
        }
        let limits = (sender.max_rounds, sender.max_bytes);
        let Some(rounds) = next_batch(settings, recorder, shared, limits, &mut queue_failing).await else {
            let wait = sender.pause(Duration::ZERO);
            tokio::time::sleep(wait).await;
            continue;
        };
        let Some((last, _)) = rounds.last() else {
            appended.notified().await;
            continue;
        };
        let batch = Batch {
            next: last.seq + 1,
            rounds: rounds.len(),
            payload: rounds.iter().map(|(info, _)| info.payload_len()).sum(),
            samples: rounds.iter().map(|(info, _)| u64::from(info.samples)).sum(),
        };
        let wire = negotiation.wire();
        let Some(body) = sender.build(rounds, wire, batch.next).await else { continue };
        let (body_bytes, histograms) = (body.bytes.len() as u64, body.histograms);
        let result = client.send(body.bytes, wire.protocol, SEND_TIMEOUT).await;
        let verdict = match &result {
            Ok(written) => negotiation.on_success(histograms, *written),
            Err(SendError::Retry { status, detail, .. } | SendError::Rejected { status, detail }) => {
                negotiation.on_error(*status, detail, histograms)
            }
            Err(SendError::TooLarge { detail }) => negotiation.on_error(413, detail, histograms),
            Err(_) => Verdict::AsUsual,
        };
        let wait = match (result, verdict) {
            (_, Verdict::SendAgain(reason)) => {
                recorder.count_remote_write_fallback(reason);
                remembered.set(receiver, negotiation.wire());
                announce(recorder, negotiation.wire());
                tracing::warn!(url = %redacted(settings), reason, from = ?wire, to = ?negotiation.wire(), "remote write: the receiver does not take what was sent; the same rounds go again in what it takes (remembered for a day)");
                None
            }
            (Ok(_), Verdict::NotRead) => {
                recorder.count_remote_write_retry("2xx_unread");
                let why = "2xx without written-headers";
                Some(sender.fail(why, Duration::ZERO, |_| {
                    tracing::error!(url = %redacted(settings), "remote write: the receiver answered a 2.0 request with 2xx but no X-Prometheus-Remote-Write-Samples-Written: it did not read it (a 1.0 receiver takes a 2.0 body as an empty request); set remote_write.protocol to \"auto\" or \"1.0\"; the rounds wait in the queue");
                }))
            }
            (Ok(_), _) => {
                sender.delivered(&batch, body_bytes).await;
                None
            }
            (Err(err), _) => sender.failed(err, &batch).await,
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Sender<'_> {
    /// The next wait after a failure, at least `at_least` (a `Retry-After`), with jitter; the backoff doubles.
    fn pause(&mut self, at_least: Duration) -> Duration {
        let wait = self.backoff.mul_f64(0.5 + rand::random::<f64>()).max(at_least);
        self.backoff = (self.backoff * 2).min(self.settings.max_backoff);
        wait
    }

    /// A failure `why`: logged by `log` when it differs from the last one; the wait before the next attempt.
    fn fail(&mut self, why: &str, at_least: Duration, log: impl FnOnce(&str)) -> Duration {
        if self.failing.as_deref() != Some(why) {
            log(why);
        }
        self.failing = Some(why.to_owned());
        self.pause(at_least)
    }

    /// The body of `rounds` for `wire`, built on the blocking pool; None after a round that does not decode
    /// (dropped, counted `corrupt`, up to `next`) or a build that did not finish (after a pause).
    async fn build(&mut self, rounds: Vec<super::queue::Round>, wire: Wire, next: u64) -> Option<wire::Body> {
        let built = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = rounds.iter().map(|(_, payload)| payload.as_slice()).collect();
            wire::body(&refs, wire)
        })
        .await;
        match built {
            Ok(Ok(body)) => Some(body),
            Ok(Err(err)) => {
                tracing::error!("remote write: a queued round does not decode ({err}); counted dropped (corrupt)");
                settle(self.shared, self.recorder, next, Settled::Dropped(DropReason::Corrupt)).await;
                None
            }
            Err(join) => {
                tracing::error!("remote write: building a request: {join}");
                let wait = self.pause(Duration::ZERO);
                tokio::time::sleep(wait).await;
                None
            }
        }
    }

    /// `batch` acknowledged: the backoff and batch size reset, the rounds settled sent.
    async fn delivered(&mut self, batch: &Batch, body_bytes: u64) {
        if self.failing.take().is_some() {
            tracing::info!(url = %redacted(self.settings), "remote write: the receiver takes samples again");
        }
        self.backoff = self.settings.min_backoff;
        self.max_rounds = (self.max_rounds * 2).min(MAX_BATCH_ROUNDS);
        self.max_bytes = self.max_bytes.saturating_mul(2).min(MAX_BATCH_BYTES);
        self.recorder.set_remote_write_last_success(unix_seconds(SystemTime::now()));
        self.recorder.count_remote_write_bytes(body_bytes);
        settle(self.shared, self.recorder, batch.next, Settled::Sent).await;
    }

    /// `batch` not acknowledged for `err`: split (413), dropped (400, 409, 422, counted) or retried after the
    /// returned wait (everything a person, a proxy or time can fix).
    async fn failed(&mut self, err: SendError, batch: &Batch) -> Option<Duration> {
        let url = redacted(self.settings);
        match err {
            SendError::TooLarge { detail } if batch.rounds > 1 => {
                self.max_rounds = (batch.rounds / 2).max(1);
                self.max_bytes = (batch.payload / 2).max(1);
                tracing::warn!(url = %url, rounds = batch.rounds, bytes = batch.payload, detail = %detail, "remote write: the receiver says the batch is too large (413); sending it in halves");
                None
            }
            SendError::TooLarge { detail } => {
                // One round is too large for a proxy's (or the receiver's) body limit: a setting a person fixes,
                // so it waits and is retried, as vmagent does, never dropped.
                self.recorder.count_remote_write_retry("413");
                let samples = batch.samples;
                Some(self.fail("HTTP 413 (one round)", Duration::ZERO, |_| {
                    tracing::error!(url = %url, detail = %detail, samples, "remote write: the receiver refuses even a single round as too large (413): raise its (or its proxy's) body limit; the round waits in the queue and is retried");
                }))
            }
            SendError::Rejected { status, detail } => {
                tracing::warn!(url = %url, status, detail = %detail, rounds = batch.rounds, "remote write: the receiver will never take this batch; dropped, counted");
                self.recorder.count_remote_write_rejected(status);
                self.recorder.count_remote_write_samples("failed", batch.samples);
                settle(self.shared, self.recorder, batch.next, Settled::Dropped(DropReason::Rejected)).await;
                None
            }
            SendError::Retry { status, detail, retry_after, location } => {
                let class = match status {
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                self.recorder.count_remote_write_retry(class);
                let at_least = retry_after.unwrap_or_default().min(RETRY_AFTER_CAP);
                Some(self.fail(&format!("HTTP {status}"), at_least, |_| match &location {
                    Some(location) => {
                        tracing::warn!(url = %url, status, location = %location, "remote write: the receiver redirects (not followed: fix remote_write.url); samples wait in the queue")
                    }
                    None => {
                        tracing::warn!(url = %url, status, detail = %detail, retry_after = ?retry_after, "remote write: the receiver does not take samples now; they wait in the queue and are retried")
                    }
                }))
            }
            err @ (SendError::Network(_) | SendError::Local(_)) => {
                let class = if matches!(err, SendError::Local(_)) { "local" } else { "network" };
                self.recorder.count_remote_write_retry(class);
                Some(self.fail(class, Duration::ZERO, |_| {
                    tracing::warn!(url = %url, "remote write: cannot send ({err}); samples wait in the queue");
                }))
            }
        }
    }
}

/// How long to wait before the next batch, so it carries `batch_rounds` rounds: until the oldest unsent round is
/// `batch_rounds - 1` intervals old (a backlog, or a queue that cannot be read, goes at once; an empty queue
/// waits for its next round in the loop).
async fn batch_wait(settings: &RemoteWrite, shared: &Shared) -> Option<Duration> {
    let gather = settings.interval * settings.batch_rounds.saturating_sub(1);
    if gather.is_zero() {
        return None;
    }
    let oldest_ms = shared.with(|queue, _| Ok(queue.oldest_timestamp_ms())).await.ok()??;
    let age_ms = super::now_ms(SystemTime::now()).saturating_sub(oldest_ms).max(0) as u128;
    // A little past the last round's tick, so it is queued when the batch is read.
    let due = gather.as_millis() + (settings.interval.as_millis() / 4).min(250);
    (age_ms < due).then(|| Duration::from_millis((due - age_ms) as u64))
}

/// The receiver's URL for the log, without a user or password.
fn redacted(settings: &RemoteWrite) -> String {
    crate::openclaw_cli_url::redacted(settings.url.as_str())
}

/// `openclaw_exporter_remote_write_protocol_info` for `wire`.
fn announce(recorder: &Recorder, wire: Wire) {
    recorder.set_remote_write_protocol(wire.protocol.label(), wire.histograms_label());
}

//! The process's remote-write queue and its round account.
//!
//! Every round is accounted for in one [`Account`], updated under the queue's lock and served by one
//! collector, so a scrape always sees `taken == sent + dropped + left + queued` exactly.
//!
//! The queue outlives generations (the recorder's [`QueueSlot`] keeps it): a reload that keeps `queue_dir`
//! reuses it, one that changes it opens (and locks) the new directory before the running generation stops.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::queue::{DropReason, Losses, OpenError, Queue};
use crate::config::RemoteWrite;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where every round went, since the process started. `taken` counts the rounds this process took and those
/// it found queued (left by the last run) or damaged on disk when it opened the queue.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Account {
    /// Rounds taken (or found queued at open).
    pub taken: u64,
    /// Rounds the receiver acknowledged.
    pub sent: u64,
    /// Rounds dropped, by [`DropReason`] (in the order of [`DropReason::ALL`]).
    pub dropped: [u64; 6],
    /// Rounds left in a queue directory a reload stopped using (sent when an exporter uses it again).
    pub left: u64,
    /// Rounds in the queue now.
    pub queued: u64,
    /// A queue was ever opened (the families are served from then on).
    pub active: bool,
}

impl Account {
    /// Count `rounds` dropped for `reason`.
    pub fn drop_rounds(&mut self, reason: DropReason, rounds: u64) {
        let index = DropReason::ALL.iter().position(|r| *r == reason).expect("listed");
        self.dropped[index] += rounds;
    }

    /// Count what left a queue unsent.
    pub fn drop_losses(&mut self, losses: &Losses) {
        for (reason, loss) in losses.each() {
            self.drop_rounds(reason, loss.rounds);
        }
    }

    /// Rounds dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[DropReason::ALL.iter().position(|r| *r == reason).expect("listed")]
    }
}

/// Serves [`Account`] as `openclaw_exporter_remote_write_rounds_total{result, reason}` and
/// `openclaw_exporter_remote_write_rounds_queued`, from one snapshot.
#[derive(Debug)]
pub struct AccountCollector(Arc<Mutex<Account>>);

impl Collector for AccountCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let account = lock(&self.0).clone();
        if !account.active {
            return Ok(());
        }
        let rounds = [("taken", None, account.taken), ("sent", None, account.sent), ("left", None, account.left)]
            .into_iter()
            .chain(DropReason::ALL.iter().map(|r| ("dropped", Some(r.label()), account.dropped(*r))));
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "openclaw_exporter_remote_write_rounds",
            "Remote-write rounds by result: taken (by this process, or found queued at start), sent (acknowledged), \
             dropped (reason: over_max_bytes, disk_full, io_error, corrupt, missing, rejected), left (in a queue_dir a reload \
             stopped using); taken = sent + dropped + left + queued",
            None,
            counter.metric_type(),
        )?;
        for (result, reason, value) in rounds {
            let counter = ConstCounter::new(value);
            match reason {
                None => counter.encode(family.encode_family(&[("result", result)])?)?,
                Some(reason) => counter.encode(family.encode_family(&[("result", result), ("reason", reason)])?)?,
            }
        }
        let queued = ConstGauge::new(account.queued as i64);
        queued.encode(encoder.encode_descriptor(
            "openclaw_exporter_remote_write_rounds_queued",
            "Remote-write rounds waiting in the on-disk queue",
            None,
            queued.metric_type(),
        )?)
    }
}

/// A queue open in this process.
pub struct OpenQueue {
    dir: PathBuf,
    queue: Mutex<Queue>,
}

impl OpenQueue {
    /// Whether opening found the acknowledgement file damaged (its rounds are sent again).
    pub fn found_acked_problem(&self) -> bool {
        lock(&self.queue).found_at_open.acked_problem.is_some()
    }
}

/// The process's queue: opened (and locked) once per directory and shared by the generations that use it,
/// with the process's round account.
#[derive(Default)]
pub struct QueueSlot {
    current: Mutex<Option<Arc<OpenQueue>>>,
    account: Arc<Mutex<Account>>,
    /// The wire each receiver stepped down to (kept across reloads).
    pub remembered: super::negotiate::Remembered,
}

impl QueueSlot {
    /// The queue `settings` name: the one open when it is the same directory, else opened (and locked) now.
    /// Fails, having changed nothing, when the directory is another exporter's or cannot be read.
    pub fn prepare(&self, settings: &RemoteWrite) -> Result<Arc<OpenQueue>, OpenError> {
        if let Some(open) = lock(&self.current).as_ref().filter(|open| open.dir == settings.queue_dir) {
            lock(&open.queue).set_max_bytes(settings.max_bytes);
            return Ok(open.clone());
        }
        let queue = Queue::open(&settings.queue_dir, settings.max_bytes)?;
        let found = &queue.found_at_open;
        for damage in &found.damage {
            if damage.torn {
                tracing::warn!(segment = %damage.segment.display(), offset = damage.offset, bytes = damage.bytes, "remote-write queue: cut a torn record at a segment's end (a write that never returned)");
            } else {
                tracing::warn!(segment = %damage.segment.display(), offset = damage.offset, bytes = damage.bytes, rounds = damage.rounds, "remote-write queue: damaged bytes skipped; their rounds are counted dropped (corrupt)");
            }
        }
        for (segment, moved) in &found.quarantined {
            tracing::warn!(segment = %segment.display(), moved_to = %moved.display(), "remote-write queue: a damaged segment was moved aside; its readable rounds are queued under its name");
        }
        if found.missing > 0 {
            tracing::warn!(dir = %settings.queue_dir.display(), rounds = found.missing, "remote-write queue: segment files are gone; their rounds are counted dropped (missing)");
        }
        if let Some(problem) = &found.acked_problem {
            tracing::warn!(file = %settings.queue_dir.join("acked").display(), problem = %problem, "remote-write queue: the acknowledgement file is not usable; every queued round is sent again (at least once, none lost)");
        }
        Ok(Arc::new(OpenQueue { dir: settings.queue_dir.clone(), queue: Mutex::new(queue) }))
    }

    /// Make `open` the process's queue (a generation starts). When it replaces another, that one's rounds are
    /// counted `left`; a newly opened queue's rounds are counted taken, and its damaged ones dropped.
    pub fn install(&self, open: &Arc<OpenQueue>) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, open)) {
            return;
        }
        let queue = lock(&open.queue);
        let previous = current.take();
        let previous_queued = previous.as_ref().map_or(0, |p| lock(&p.queue).queued_rounds());
        let mut account = lock(&self.account);
        account.left += previous_queued;
        let (corrupt, missing) = (queue.found_at_open.corrupt(), queue.found_at_open.missing);
        account.taken += queue.queued_rounds() + corrupt + missing;
        account.drop_rounds(DropReason::Corrupt, corrupt);
        account.drop_rounds(DropReason::Missing, missing);
        account.queued = queue.queued_rounds();
        account.active = true;
        drop(account);
        drop(queue);
        *current = Some(open.clone());
    }

    /// A round taken while no queue could be opened: counted taken and dropped (`io_error`), so the account
    /// (and the rule on rounds taken but not sent) sees remote write stalled.
    pub fn drop_unqueued_round(&self) {
        let mut account = lock(&self.account);
        account.active = true;
        account.taken += 1;
        account.drop_rounds(DropReason::IoError, 1);
    }

    /// The collector serving the account.
    /// Mark the account active, as a remote write that started does (tests: its families are served).
    #[cfg(test)]
    pub fn activate_for_test(&self) {
        lock(&self.account).active = true;
    }

    pub fn collector(&self) -> AccountCollector {
        AccountCollector(self.account.clone())
    }
}

/// The queue and the account, for one operation on the blocking pool.
#[derive(Clone)]
pub(super) struct Shared {
    open: Arc<OpenQueue>,
    account: Arc<Mutex<Account>>,
}

/// Change the account and its `queued` together, in one critical section (so a scrape never sees half).
/// The queue's lock is held by the caller: the order is always queue, then account, and the account is never
/// held while the registry is encoded (its collector takes it).
/// What left the queue unsent meanwhile (a vanished file, `max_bytes`, a damaged record) is counted here too,
/// and returned for the samples counter and the log.
pub(super) fn count(queue: &mut Queue, account: &Mutex<Account>, f: impl FnOnce(&mut Account)) -> Losses {
    let losses = queue.take_losses();
    let mut account = lock(account);
    f(&mut account);
    account.drop_losses(&losses);
    account.queued = queue.queued_rounds();
    losses
}

impl Shared {
    /// The queue `open`, with `slot`'s account.
    pub(super) fn new(open: Arc<OpenQueue>, slot: &QueueSlot) -> Shared {
        Shared { open, account: slot.account.clone() }
    }

    /// Run `f` on the queue, locked, on the blocking pool: queue I/O (fsync) never runs on the probes' thread.
    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Queue, &Mutex<Account>) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut queue = lock(&shared.open.queue);
            f(&mut queue, &shared.account)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }
}

//! The uptime ledger: tunnel rounds in five-minute buckets aligned to the wall clock.
//!
//! Each round is up or down; time in which no round could run (suspend, SIGSTOP, a stalled runtime) is
//! unobserved, and counts as neither. A bucket's ratio is up rounds over observed rounds, so an hour asleep
//! neither lowers nor raises uptime. 24 hours of buckets are kept.

use std::collections::VecDeque;

/// Width of one bucket, in seconds.
pub const BUCKET_SECONDS: u64 = 300;
/// How many buckets are kept: 24 hours.
pub const BUCKETS_KEPT: usize = 24 * 3600 / BUCKET_SECONDS as usize;

/// One five-minute bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    /// Bucket start, Unix seconds, a multiple of 300.
    pub start: u64,
    /// Rounds observed.
    pub checks: u64,
    /// Rounds up (SSH session up and SYN success).
    pub successes: u64,
    /// Seconds in this bucket no round could observe.
    pub unobserved_seconds: f64,
    /// First-byte p50 of the bucket's successful probes, seconds, once the bucket is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_p50: Option<f64>,
    /// First-byte p99, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_p99: Option<f64>,
    /// The open bucket's first-byte samples (at most [`MAX_SAMPLES`]); folded into the quantiles and dropped
    /// when the next bucket starts, so only one bucket per forward holds samples.
    #[serde(skip)]
    samples: Vec<f32>,
}

/// First-byte samples kept for the open bucket: 60 at the default 5 s interval; at very short intervals the
/// first 4,096 of the bucket stand for it (16 KiB).
pub const MAX_SAMPLES: usize = 4096;

impl Bucket {
    /// Up rounds over observed rounds; None when nothing was observed.
    pub fn ratio(&self) -> Option<f64> {
        (self.checks > 0).then(|| self.successes as f64 / self.checks as f64)
    }
}

/// The buckets of one forward, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    buckets: VecDeque<Bucket>,
}

impl Ledger {
    /// A ledger from saved buckets (a state file): sorted, deduplicated, only the last day kept.
    pub fn from_buckets(mut buckets: Vec<Bucket>) -> Self {
        buckets.sort_by_key(|b| b.start);
        buckets.dedup_by_key(|b| b.start);
        buckets.retain(|b| b.start % BUCKET_SECONDS == 0);
        let skip = buckets.len().saturating_sub(BUCKETS_KEPT);
        Ledger { buckets: buckets.into_iter().skip(skip).collect() }
    }

    /// Count one round observed at `at` (Unix seconds).
    pub fn record_round(&mut self, at: f64, up: bool) {
        if let Some(bucket) = self.bucket_at(at) {
            bucket.checks += 1;
            bucket.successes += u64::from(up);
        }
    }

    /// One successful first-byte probe at `at` took `seconds`.
    pub fn record_first_byte(&mut self, at: f64, seconds: f64) {
        if let Some(bucket) = self.bucket_at(at) {
            if bucket.samples.len() < MAX_SAMPLES {
                bucket.samples.push(seconds as f32);
            }
            if bucket.first_byte_p50.is_some() {
                // A late sample in a folded bucket (a wall-clock step back): fold again.
                bucket.fold();
            }
        }
    }

    /// Count `[from, to)` (Unix seconds) as unobserved, split across the buckets it spans.
    pub fn record_unobserved(&mut self, from: f64, to: f64) {
        let mut start = from;
        while start < to {
            let bucket_end = ((start / BUCKET_SECONDS as f64).floor() + 1.0) * BUCKET_SECONDS as f64;
            let end = bucket_end.min(to);
            if let Some(bucket) = self.bucket_at(start) {
                bucket.unobserved_seconds += end - start;
            }
            start = end;
        }
    }

    /// The ratio of the last bucket that ended at or before `now`, if it observed anything.
    pub fn last_completed_ratio(&self, now: f64) -> Option<f64> {
        let previous_start = bucket_start(now).checked_sub(BUCKET_SECONDS)?;
        self.buckets.iter().rev().find(|b| b.start == previous_start)?.ratio()
    }

    /// All kept buckets, oldest first.
    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter()
    }

    /// The bucket holding `at`, created if needed; None for a time older than the kept day.
    fn bucket_at(&mut self, at: f64) -> Option<&mut Bucket> {
        let start = bucket_start(at);
        let full = self.buckets.len() >= BUCKETS_KEPT;
        if full && self.buckets.front().is_some_and(|oldest| start < oldest.start) {
            return None;
        }
        // Rounds arrive in time order except across a wall-clock step back, so search from the newest end.
        let index = match self.buckets.iter().rposition(|b| b.start <= start) {
            Some(i) if self.buckets[i].start == start => i,
            Some(i) => {
                self.buckets.insert(i + 1, Bucket::new(start));
                i + 1
            }
            None => {
                self.buckets.push_front(Bucket::new(start));
                0
            }
        };
        // A new newest bucket (once per five minutes): every bucket before it is over, fold its samples.
        let newest = self.buckets.len() - 1;
        if index == newest && self.buckets[newest].checks == 0 && self.buckets[newest].samples.is_empty() {
            for bucket in self.buckets.iter_mut().take(newest).filter(|b| !b.samples.is_empty()) {
                bucket.fold();
            }
        }
        if self.buckets.len() > BUCKETS_KEPT {
            self.buckets.pop_front();
            return self.buckets.get_mut(index - 1);
        }
        self.buckets.get_mut(index)
    }
}

impl Bucket {
    fn new(start: u64) -> Self {
        Bucket {
            start,
            checks: 0,
            successes: 0,
            unobserved_seconds: 0.0,
            first_byte_p50: None,
            first_byte_p99: None,
            samples: Vec::new(),
        }
    }

    /// The bucket's first-byte (p50, p99): folded ones, or the open bucket's samples so far.
    pub fn first_byte_quantiles(&self) -> Option<(f64, f64)> {
        match (self.first_byte_p50, self.first_byte_p99) {
            (Some(p50), Some(p99)) if self.samples.is_empty() => Some((p50, p99)),
            _ => quantiles(&self.samples),
        }
    }

    fn fold(&mut self) {
        if let Some((p50, p99)) = quantiles(&self.samples) {
            self.first_byte_p50 = Some(p50);
            self.first_byte_p99 = Some(p99);
        }
        self.samples = Vec::new();
    }
}

/// Nearest-rank p50 and p99 of `samples`.
fn quantiles(samples: &[f32]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f32::total_cmp);
    let rank = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1] as f64;
    Some((rank(0.5), rank(0.99)))
}

fn bucket_start(at: f64) -> u64 {
    (at.max(0.0) as u64 / BUCKET_SECONDS) * BUCKET_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_800_000_000.0; // a multiple of 300

    #[test]
    fn the_ratio_is_absent_until_a_bucket_completes() {
        let mut ledger = Ledger::default();
        ledger.record_round(T0 + 10.0, true);
        assert_eq!(ledger.last_completed_ratio(T0 + 299.0), None);
        assert_eq!(ledger.last_completed_ratio(T0 + 300.0), Some(1.0));
    }

    #[test]
    fn rounds_land_in_wall_aligned_buckets() {
        let mut ledger = Ledger::default();
        for s in 0..300 {
            ledger.record_round(T0 + s as f64, s % 100 != 0);
        }
        ledger.record_round(T0 + 300.0, false);
        assert_eq!(ledger.last_completed_ratio(T0 + 301.0), Some(297.0 / 300.0));
        let starts: Vec<_> = ledger.buckets().map(|b| b.start).collect();
        assert_eq!(starts, [T0 as u64, T0 as u64 + 300]);
    }

    #[test]
    fn unobserved_time_is_split_across_buckets_and_is_not_down() {
        let mut ledger = Ledger::default();
        ledger.record_round(T0 + 1.0, true);
        ledger.record_unobserved(T0 + 2.0, T0 + 900.0);
        ledger.record_round(T0 + 900.0, true);
        let unobserved: Vec<_> = ledger.buckets().map(|b| b.unobserved_seconds).collect();
        assert_eq!(unobserved, [298.0, 300.0, 300.0, 0.0]);
        assert_eq!(ledger.last_completed_ratio(T0 + 300.0), Some(1.0));
        // A bucket wholly asleep has no ratio: unobserved, not down.
        assert_eq!(ledger.last_completed_ratio(T0 + 600.0), None);
    }

    #[test]
    fn a_bucket_keeps_its_first_byte_quantiles_once_over_and_drops_its_samples() {
        let mut ledger = Ledger::default();
        for i in 1..=100 {
            ledger.record_round(T0 + i as f64, true);
            ledger.record_first_byte(T0 + i as f64, i as f64 / 1000.0);
        }
        let open = ledger.buckets().next().unwrap().clone();
        assert_eq!(open.first_byte_quantiles(), Some((0.05f32 as f64, 0.099f32 as f64)));
        assert_eq!(open.first_byte_p50, None, "not folded while open");
        ledger.record_round(T0 + 300.0, true);
        let over = ledger.buckets().next().unwrap();
        assert_eq!((over.first_byte_p50, over.first_byte_p99), (Some(0.05f32 as f64), Some(0.099f32 as f64)));
        assert!(over.samples.is_empty(), "an ended bucket holds no samples");
        let saved: Bucket = serde_json::from_str(&serde_json::to_string(over).unwrap()).unwrap();
        assert_eq!(saved.first_byte_quantiles(), over.first_byte_quantiles(), "the quantiles survive the state file");
        let bucket = ledger.buckets().nth(1).unwrap();
        assert_eq!(bucket.first_byte_quantiles(), None, "no probe answered in it");
    }

    #[test]
    fn only_a_day_is_kept() {
        let mut ledger = Ledger::default();
        for i in 0..(BUCKETS_KEPT + 10) {
            ledger.record_round(T0 + (i as u64 * BUCKET_SECONDS) as f64, true);
        }
        assert_eq!(ledger.buckets().count(), BUCKETS_KEPT);
        assert_eq!(ledger.buckets().next().unwrap().start, T0 as u64 + 10 * BUCKET_SECONDS);
    }

    #[test]
    fn a_step_back_in_wall_time_finds_the_older_bucket() {
        let mut ledger = Ledger::default();
        ledger.record_round(T0 + 310.0, true);
        ledger.record_round(T0 + 10.0, false);
        let starts: Vec<_> = ledger.buckets().map(|b| (b.start, b.checks)).collect();
        assert_eq!(starts, [(T0 as u64, 1), (T0 as u64 + 300, 1)]);
    }
}

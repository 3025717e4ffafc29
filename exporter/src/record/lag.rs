//! The exporter's own probe lag as one figure per kind: the p99 of how late each kind's rounds started over the
//! last five minutes ([`LagWindow`]), for `openclaw_exporter_probe_lag_p99_seconds`. The classic histogram
//! (`openclaw_exporter_probe_lag_seconds`) stays on `/metrics` for a scraper; remote write pushes the p99 alone
//! (9 series a round instead of 225: a dashboard panel and the bench read the p99, nothing reads the buckets).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the p99 covers.
pub const WINDOW: Duration = Duration::from_secs(300);
/// At most this many rounds kept per kind (a kind probing every second fills five minutes with 300): the
/// memory is bounded whatever the schedule.
const KEPT: usize = 1024;

/// Each kind's recent lags, newest last.
#[derive(Default)]
pub struct LagWindow {
    kinds: Mutex<HashMap<&'static str, VecDeque<(Instant, f64)>>>,
}

impl LagWindow {
    /// Keep one round's `lag` of `probe`, seen `at` (a push under a lock: nothing is computed on the
    /// probes' path).
    pub fn observe(&self, probe: &'static str, lag: f64, at: Instant) {
        let mut kinds = self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rounds = kinds.entry(probe).or_default();
        if rounds.len() == KEPT {
            rounds.pop_front();
        }
        rounds.push_back((at, lag));
    }

    /// Each kind's p99 over the rounds of the last [`WINDOW`] before `now` (nearest rank); a kind with no round in
    /// the window is 0 (nothing started late).
    pub fn p99s(&self, now: Instant) -> Vec<(&'static str, f64)> {
        let mut kinds = self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kinds
            .iter_mut()
            .map(|(probe, rounds)| {
                while rounds.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW) {
                    rounds.pop_front();
                }
                let mut lags: Vec<f64> = rounds.iter().map(|(_, lag)| *lag).collect();
                (*probe, p99(&mut lags))
            })
            .collect()
    }
}

/// The nearest-rank 99th percentile of `values` (0 when empty).
fn p99(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((values.len() as f64) * 0.99).ceil() as usize;
    let index = rank.clamp(1, values.len()) - 1;
    *values.select_nth_unstable_by(index, f64::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_is_of_the_last_five_minutes_each_kind_apart() {
        let window = LagWindow::default();
        let start = Instant::now();
        // An old burst of lateness, then 100 rounds of which one is late.
        window.observe("syn", 9.0, start);
        for i in 0..100 {
            let lag = if i == 50 { 0.5 } else { 0.001 };
            window.observe("syn", lag, start + WINDOW + Duration::from_secs(1 + i));
        }
        window.observe("auth", 0.2, start + WINDOW);
        let now = start + WINDOW + Duration::from_secs(101);
        let p99s: HashMap<_, _> = window.p99s(now).into_iter().collect();
        assert_eq!(p99s["syn"], 0.001, "one late round in 100 is the 100th percentile, not the 99th");
        assert_eq!(p99s["auth"], 0.2);
        window.observe("syn", 0.5, now);
        let p99s: HashMap<_, _> = window.p99s(now).into_iter().collect();
        assert_eq!(p99s["syn"], 0.5, "two late rounds in 101 reach the 99th");
        let later: HashMap<_, _> = window.p99s(now + WINDOW + Duration::from_secs(1)).into_iter().collect();
        assert_eq!(later["auth"], 0.0, "no round in the window: nothing late");
    }

    #[test]
    fn a_kind_keeps_at_most_its_bound() {
        let window = LagWindow::default();
        let now = Instant::now();
        for _ in 0..(KEPT + 10) {
            window.observe("syn", 0.0, now);
        }
        assert_eq!(window.kinds.lock().unwrap()["syn"].len(), KEPT);
    }
}

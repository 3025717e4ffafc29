//! The incident timeline: every change of state worth telling a person about, with its start, end and
//! duration, for `/api/status` and the status page. Bounded: the last 24 h, at most [`MAX_EVENTS`] events.
//!
//! Spells have a start and (once over) an end: the tunnel down (with its cause), the gateway down (with its
//! reason), the gateway port exposed, the laptop asleep. Points have a start only: a new ssh owner (with its
//! pid), a gateway restart (with its version), a token rotation. Every text is built from fixed words and
//! values the exporter measured (pids, versions of a validated shape, reason labels), never from a peer's bytes.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The most events kept (the oldest go first).
pub const MAX_EVENTS: usize = 500;
/// How long an event is kept after it ended.
pub const KEEP_SECONDS: f64 = 24.0 * 3600.0;

/// A kind of timeline event, declared by the kind that writes it: its name (the `kind` of its entries in
/// `/api/status`) and its words on the status page (the kind's entry lists it in `TIMELINE`, for the page: `kinds::timeline_words`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind {
    /// The `kind` value of its entries.
    pub name: &'static str,
    /// What the status page calls it.
    pub words: &'static str,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What: `tunnel_down`, `gateway_down`, `exposed`, `asleep`, `ssh_restart`, `gateway_restart`,
    /// `token_rotation`.
    pub kind: String,
    /// The forward or gateway it concerns (empty for the whole exporter).
    pub subject: String,
    /// The details, in words.
    pub detail: String,
    /// Unix seconds.
    pub start: f64,
    /// Unix seconds; None while the spell goes on, and for points.
    pub end: Option<f64>,
    /// Whether it is a spell (has or will have an end).
    pub spell: bool,
}

impl Event {
    fn new(kind: &str, subject: &str, detail: &str, start: f64, end: Option<f64>, spell: bool) -> Event {
        Event { kind: kind.into(), subject: subject.into(), detail: detail.into(), start, end, spell }
    }
}

/// The timeline.
#[derive(Debug, Default)]
pub struct Timeline {
    events: VecDeque<Event>,
}

impl Timeline {
    /// A spell of `kind` for `subject` is going on at `at` with `detail`: opened unless one is open already
    /// (a changed detail, a new cause, closes the old spell and opens another).
    pub fn spell(&mut self, kind: &str, subject: &str, detail: &str, at: f64) {
        if let Some(open) = self.open_mut(kind, subject) {
            if open.detail == detail {
                return;
            }
            open.end = Some(at);
        }
        self.push(Event::new(kind, subject, detail, at, None, true));
    }

    /// The spell of `kind` for `subject`, if open, is over at `at`.
    pub fn over(&mut self, kind: &str, subject: &str, at: f64) {
        if let Some(open) = self.open_mut(kind, subject) {
            open.end = Some(at);
        }
    }

    /// A spell already over (asleep from `start` to `end`).
    pub fn closed(&mut self, kind: &str, subject: &str, detail: &str, start: f64, end: f64) {
        self.push(Event::new(kind, subject, detail, start, Some(end), true));
    }

    /// Something that happened at `at`.
    pub fn point(&mut self, kind: &str, subject: &str, detail: &str, at: f64) {
        self.push(Event::new(kind, subject, detail, at, None, false));
    }

    fn open_mut(&mut self, kind: &str, subject: &str) -> Option<&mut Event> {
        self.events.iter_mut().rev().find(|e| e.spell && e.end.is_none() && e.kind == kind && e.subject == subject)
    }

    fn push(&mut self, event: Event) {
        let now = event.start;
        self.events.push_back(event);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.retain(|e| e.end.map_or(e.spell || now - e.start < KEEP_SECONDS, |end| now - end < KEEP_SECONDS));
    }

    /// The events, newest first.
    pub fn newest_first(&self) -> Vec<Event> {
        self.events.iter().rev().cloned().collect()
    }
}

/// A duration for people: "6.7 ms", "42 s", "3 min 12 s", "2 h 5 min", "3 d 4 h".
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".into();
    }
    if seconds < 1e-3 {
        return format!("{:.0} µs", seconds * 1e6);
    }
    if seconds < 1.0 {
        let ms = seconds * 1e3;
        return if ms < 10.0 { format!("{ms:.1} ms") } else { format!("{ms:.0} ms") };
    }
    if seconds < 60.0 {
        return if seconds < 10.0 { format!("{seconds:.1} s") } else { format!("{seconds:.0} s") };
    }
    let whole = seconds.round() as u64;
    let (d, h, m, s) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60, whole % 60);
    match (d, h) {
        (0, 0) if s == 0 => format!("{m} min"),
        (0, 0) => format!("{m} min {s} s"),
        (0, _) if m == 0 => format!("{h} h"),
        (0, _) => format!("{h} h {m} min"),
        _ if h == 0 => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_open_once_change_cause_and_close() {
        let mut t = Timeline::default();
        t.spell("tunnel_down", "mac", "no_ssh", 100.0);
        t.spell("tunnel_down", "mac", "no_ssh", 101.0);
        t.spell("tunnel_down", "mac", "syn_failed", 105.0);
        t.over("tunnel_down", "mac", 110.0);
        t.point("ssh_restart", "mac", "ssh pid 42", 110.0);
        let events = t.newest_first();
        assert_eq!(events.len(), 3);
        assert_eq!((events[2].start, events[2].end, events[2].detail.as_str()), (100.0, Some(105.0), "no_ssh"));
        assert_eq!((events[1].start, events[1].end, events[1].detail.as_str()), (105.0, Some(110.0), "syn_failed"));
        assert_eq!(events[0].kind, "ssh_restart");
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut t = Timeline::default();
        for i in 0..(MAX_EVENTS + 50) {
            t.point("ssh_restart", "mac", "x", i as f64);
        }
        assert_eq!(t.newest_first().len(), MAX_EVENTS);
        t.point("ssh_restart", "mac", "late", 2.0 * KEEP_SECONDS);
        assert_eq!(t.newest_first().len(), 1, "a day later only the new one is left");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(0.0067214), "6.7 ms");
        assert_eq!(human_duration(0.25), "250 ms");
        assert_eq!(human_duration(42.0), "42 s");
        assert_eq!(human_duration(192.0), "3 min 12 s");
        assert_eq!(human_duration(7500.0), "2 h 5 min");
        assert_eq!(human_duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 4 h");
        assert_eq!(human_duration(0.000_025), "25 µs");
    }
}

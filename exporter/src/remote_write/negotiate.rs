//! Which [`Wire`] the sender speaks to its receiver, and when it steps down ([`Negotiation`]): the decision is
//! pure (an answer in, a verdict out), unit-tested here; the send loop acts on it.
//!
//! `protocol = "auto"` starts with 2.0 and steps down to 1.0 when the receiver shows it reads only 1.0: a 415 or
//! a 400 (the spec's answers of a 1.x receiver to a content type it does not read),
//! or a 2xx without `X-Prometheus-Remote-Write-Samples-Written` (measured: Prometheus 2.42 and VictoriaMetrics
//! 1.79 both answer a 2.0 body with 204 and write nothing, since 2.0's `Request` keeps 1.0's field numbers
//! reserved). Histograms go native where the receiver proves it stores them (a 2.0 receiver's
//! `-Histograms-Written`), or where the user says so (`histograms = "native"`); they step down to classic on a
//! 2.0 answer counting fewer histograms written than sent, or on "native histograms are disabled" (the 500 a
//! Prometheus with them off answers, measured on 2.42). Every step down sends the same batch again, at once:
//! nothing was written (or, on histograms dropped, only float samples the store takes again as duplicates of the
//! same value), so nothing is lost. The choice is remembered per receiver ([`Remembered`]) for a day, then 2.0
//! and native are tried again (a receiver may have been upgraded).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::wire::{Protocol, Wire};
use crate::config::{HistogramChoice, ProtocolChoice};

/// How long a step down is remembered for a receiver before the better wire is tried again.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(24 * 3600);

/// What a 2xx answer said it wrote (2.0's written-headers; None when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// `X-Prometheus-Remote-Write-Samples-Written`.
    pub samples: Option<u64>,
    /// `X-Prometheus-Remote-Write-Histograms-Written`.
    pub histograms: Option<u64>,
}

/// What to do with a batch after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered: acknowledge it.
    Delivered,
    /// Not (all) written in this wire: send it again at once in the new one, counted by `reason`.
    SendAgain(&'static str),
    /// A 2xx that wrote nothing, to a forced 2.0: retried with backoff until a person changes the protocol.
    NotRead,
    /// Handle the answer as the protocol does (retry, split, reject).
    AsUsual,
}

/// The negotiation with one receiver.
#[derive(Debug, Clone)]
pub struct Negotiation {
    protocol: ProtocolChoice,
    histograms: HistogramChoice,
    wire: Wire,
}

impl Negotiation {
    /// The best wire `protocol` and `histograms` allow.
    pub fn new(protocol: ProtocolChoice, histograms: HistogramChoice) -> Negotiation {
        let v2 = protocol != ProtocolChoice::V1;
        let native = match histograms {
            HistogramChoice::Classic => false,
            HistogramChoice::Native => true,
            // Native only where a 2.0 receiver can say it stored them.
            HistogramChoice::Auto => v2,
        };
        let wire = Wire { protocol: if v2 { Protocol::V2 } else { Protocol::V1 }, native };
        Negotiation { protocol, histograms, wire }
    }

    /// Start from `remembered` (a wire this receiver stepped down to), when it is one this choice allows.
    pub fn resume(mut self, remembered: Option<Wire>) -> Negotiation {
        if let Some(wire) = remembered {
            let best = self.wire;
            let protocol_ok = wire.protocol == best.protocol || self.protocol == ProtocolChoice::Auto;
            if protocol_ok && (!wire.native || best.native) {
                self.wire = wire;
            }
        }
        self
    }

    /// The wire to send in now.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// A 2xx answer to a batch of `histograms` native samples, which said `written`.
    pub fn on_success(&mut self, histograms: u64, written: Written) -> Verdict {
        if self.wire.protocol != Protocol::V2 {
            return Verdict::Delivered;
        }
        if written.samples.is_none() && written.histograms.is_none() {
            if self.protocol == ProtocolChoice::V2 {
                return Verdict::NotRead;
            }
            self.step_to_1_0();
            return Verdict::SendAgain("no_written_headers");
        }
        if self.wire.native && histograms > 0 && written.histograms.unwrap_or(0) < histograms {
            self.wire.native = false;
            return Verdict::SendAgain("histograms_dropped");
        }
        Verdict::Delivered
    }

    /// A non-2xx answer `status` with the start of its body, to a batch of `histograms` native samples.
    pub fn on_error(&mut self, status: u16, detail: &str, histograms: u64) -> Verdict {
        // The spec has a 1.0 receiver answer a content type it does not read with 400 or 415: either steps
        // down (a 2.0 receiver's 400 for a bad sample costs a day of 1.0, never the batch).
        if matches!(status, 400 | 415) && self.wire.protocol == Protocol::V2 && self.protocol == ProtocolChoice::Auto {
            self.step_to_1_0();
            return Verdict::SendAgain("unsupported_media_type");
        }
        let disabled = detail.to_ascii_lowercase().contains("native histograms are disabled");
        if self.wire.native && histograms > 0 && disabled {
            self.wire.native = false;
            return Verdict::SendAgain("native_histograms_disabled");
        }
        Verdict::AsUsual
    }

    /// 1.0, histograms native only where the user said so (a 1.0 receiver cannot say what it stored).
    fn step_to_1_0(&mut self) {
        self.wire =
            Wire { protocol: Protocol::V1, native: self.wire.native && self.histograms == HistogramChoice::Native };
    }
}

/// The wire each receiver stepped down to, and when (kept by the process across reloads).
#[derive(Default)]
pub struct Remembered {
    by_receiver: Mutex<HashMap<String, (Wire, Instant)>>,
}

impl Remembered {
    /// What `receiver` stepped down to within [`REMEMBERED_FOR`].
    pub fn get(&self, receiver: &str) -> Option<Wire> {
        let by_receiver = self.by_receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by_receiver.get(receiver).filter(|(_, at)| at.elapsed() < REMEMBERED_FOR).map(|(wire, _)| *wire)
    }

    /// Remember that `receiver` takes `wire`.
    pub fn set(&self, receiver: &str, wire: Wire) {
        let mut by_receiver = self.by_receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by_receiver.insert(receiver.to_owned(), (wire, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_CLASSIC: Wire = Wire { protocol: Protocol::V1, native: false };
    const V1_NATIVE: Wire = Wire { protocol: Protocol::V1, native: true };
    const V2_CLASSIC: Wire = Wire { protocol: Protocol::V2, native: false };
    const V2_NATIVE: Wire = Wire { protocol: Protocol::V2, native: true };
    const HEADERS: Written = Written { samples: Some(10), histograms: Some(3) };

    fn auto() -> Negotiation {
        Negotiation::new(ProtocolChoice::Auto, HistogramChoice::Auto)
    }

    #[test]
    fn auto_starts_with_2_0_native_and_stays_while_the_receiver_writes_everything() {
        let mut n = auto();
        assert_eq!(n.wire(), V2_NATIVE);
        assert_eq!(n.on_success(3, HEADERS), Verdict::Delivered);
        assert_eq!(n.wire(), V2_NATIVE);
    }

    #[test]
    fn a_1_0_receiver_s_empty_2xx_or_its_415_steps_down_to_1_0_classic_and_sends_again() {
        let mut n = auto();
        assert_eq!(n.on_success(3, Written::default()), Verdict::SendAgain("no_written_headers"));
        assert_eq!(n.wire(), V1_CLASSIC, "auto histograms are native only where a receiver says it stored them");
        assert_eq!(n.on_success(3, Written::default()), Verdict::Delivered, "1.0 has no written-headers");
        let mut n = auto();
        assert_eq!(n.on_error(415, "unsupported", 3), Verdict::SendAgain("unsupported_media_type"));
        assert_eq!(n.wire(), V1_CLASSIC);
        assert_eq!(n.on_error(415, "unsupported", 0), Verdict::AsUsual, "a 415 to 1.0 is a person's to fix");
        let mut n = auto();
        assert_eq!(n.on_error(400, "bad", 3), Verdict::SendAgain("unsupported_media_type"), "never dropped in 2.0");
        assert_eq!(n.on_error(400, "bad", 0), Verdict::AsUsual, "a 400 to 1.0 drops the batch, counted");
    }

    #[test]
    fn histograms_native_by_choice_stay_native_on_1_0_until_the_receiver_says_they_are_disabled() {
        let mut n = Negotiation::new(ProtocolChoice::Auto, HistogramChoice::Native);
        assert_eq!(n.on_success(3, Written::default()), Verdict::SendAgain("no_written_headers"));
        assert_eq!(n.wire(), V1_NATIVE);
        let answer = "native histograms are disabled";
        assert_eq!(n.on_error(500, answer, 3), Verdict::SendAgain("native_histograms_disabled"));
        assert_eq!(n.wire(), V1_CLASSIC);
        assert_eq!(n.on_error(500, answer, 0), Verdict::AsUsual, "a classic batch's 500 is retried as any 5xx");
    }

    #[test]
    fn a_2_0_receiver_that_drops_histograms_keeps_2_0_with_classic_ones() {
        let mut n = auto();
        let fewer = Written { samples: Some(10), histograms: Some(0) };
        assert_eq!(n.on_success(3, fewer), Verdict::SendAgain("histograms_dropped"));
        assert_eq!(n.wire(), V2_CLASSIC);
        assert_eq!(n.on_success(0, Written { samples: Some(40), histograms: Some(0) }), Verdict::Delivered);
        let mut n = auto();
        assert_eq!(
            n.on_error(500, "Native Histograms Are Disabled", 3),
            Verdict::SendAgain("native_histograms_disabled")
        );
        assert_eq!(n.wire(), V2_CLASSIC);
    }

    #[test]
    fn forced_protocols_never_switch_and_a_forced_2_0_never_takes_an_empty_2xx_for_delivered() {
        let mut n = Negotiation::new(ProtocolChoice::V2, HistogramChoice::Auto);
        assert_eq!(n.on_success(3, Written::default()), Verdict::NotRead);
        assert_eq!(n.on_error(415, "", 3), Verdict::AsUsual);
        assert_eq!(n.wire(), V2_NATIVE);
        let mut n = Negotiation::new(ProtocolChoice::V1, HistogramChoice::Auto);
        assert_eq!(n.wire(), V1_CLASSIC);
        assert_eq!(n.on_success(0, Written::default()), Verdict::Delivered);
        assert_eq!(Negotiation::new(ProtocolChoice::V2, HistogramChoice::Classic).wire(), V2_CLASSIC);
    }

    #[test]
    fn a_remembered_step_down_is_resumed_only_where_the_choice_allows_it() {
        assert_eq!(auto().resume(Some(V1_CLASSIC)).wire(), V1_CLASSIC);
        let classic = Negotiation::new(ProtocolChoice::Auto, HistogramChoice::Classic);
        assert_eq!(classic.resume(Some(V1_NATIVE)).wire(), V2_CLASSIC, "never native against the choice");
        let forced = Negotiation::new(ProtocolChoice::V2, HistogramChoice::Auto);
        assert_eq!(forced.resume(Some(V1_CLASSIC)).wire(), V2_NATIVE, "never 1.0 against the choice");
        let remembered = Remembered::default();
        remembered.set("http://a/", V1_CLASSIC);
        assert_eq!(remembered.get("http://a/"), Some(V1_CLASSIC));
        assert_eq!(remembered.get("http://b/"), None);
    }
}

//! Wake-to-usable: after every gap counted unobserved (the laptop asleep, the process stopped), how long
//! from the first round after it until a first byte through the forward succeeds again
//! (`openclaw_tunnel_resume_seconds`). After a sleep the forward's ssh is often dead (NAT forgot it) and comes
//! back only when ServerAliveInterval x ServerAliveCountMax has passed and its supervisor restarts it: this
//! is the figure that shows what that costs, so it can be tuned.

use std::time::{Duration, SystemTime};

use super::status::ResumeStatus;
use super::UptimeRecord;
use crate::clock::unix_seconds;
use crate::record::families::ForwardLabels;

/// The histogram's buckets, seconds.
pub const RESUME_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The longest a resume is waited for; a wait past it is observed then, as it stands (above the last bucket).
pub const RESUME_GIVE_UP: Duration = Duration::from_secs(600);

/// One forward's wait for usable, on the sleep-counting clock ([`crate::clock::since_boot`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Resume {
    /// The first round after the last gap, while no good first byte has come since.
    since: Option<Duration>,
}

impl Resume {
    /// The round at `boot` is the first after a gap: the wait starts (a wait still open is superseded: it
    /// never became usable between two sleeps, and its time was mostly asleep).
    pub(crate) fn gap_ended(&mut self, boot: Duration) {
        self.since = Some(boot);
    }

    /// A good first byte at `boot`: the seconds waited, once per gap.
    pub(crate) fn usable(&mut self, boot: Duration) -> Option<f64> {
        self.since.take().map(|since| boot.saturating_sub(since).as_secs_f64())
    }

    /// A round at `boot`: once the wait is past [`RESUME_GIVE_UP`], its seconds (more than the last bucket),
    /// once.
    pub(crate) fn give_up(&mut self, boot: Duration) -> Option<f64> {
        let waited = boot.saturating_sub(self.since?);
        (waited > RESUME_GIVE_UP).then(|| {
            self.since = None;
            waited.as_secs_f64()
        })
    }
}

impl UptimeRecord {
    /// A good first byte through `forward` at `boot`: when it ends a wait after a gap, observe it.
    pub(super) fn record_usable(&self, forward: &str, boot: Duration) {
        let waited = self.with_forward(forward, |state| state.resume.usable(boot));
        if let Some(seconds) = waited {
            self.observe_resume(forward, seconds, true);
        }
    }

    /// Observe one wait, and keep it as the forward's last (usable: it ended in a good first byte).
    pub(super) fn observe_resume(&self, forward: &str, seconds: f64, usable: bool) {
        let labels = ForwardLabels { forward: forward.to_owned() };
        self.families.resume_seconds.get_or_create(&labels).observe(seconds);
        let at = unix_seconds(SystemTime::now());
        self.with_forward(forward, |state| state.last_resume = Some(ResumeStatus { seconds, at, usable }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_wait_ends_at_the_first_good_first_byte_once() {
        let mut resume = Resume::default();
        assert_eq!(resume.usable(S(5)), None, "no gap, nothing to observe");
        resume.gap_ended(S(100));
        assert_eq!(resume.give_up(S(400)), None);
        assert_eq!(resume.usable(S(104)), Some(4.0));
        assert_eq!(resume.usable(S(105)), None, "once per gap");
    }

    #[test]
    fn a_forward_never_back_is_observed_past_600_seconds_on_a_clock_we_control() {
        let (recorder, uptime) = super::super::tests::recorder();
        let mut resume = Resume::default();
        resume.gap_ended(S(1000));
        assert_eq!(resume.give_up(S(1600)), None, "600 s is still waited");
        let waited = resume.give_up(S(1601)).expect("given up past 600 s");
        assert_eq!(waited, 601.0);
        assert_eq!(resume.usable(S(1700)), None, "observed once, not again at the late first byte");
        uptime.observe_resume("mac", waited, false);
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert_eq!(
            sample(&text, "openclaw_tunnel_resume_seconds_bucket{forward=\"mac\",le=\"600\"}"),
            Some(0.0),
            "{text}"
        );
        assert_eq!(sample(&text, "openclaw_tunnel_resume_seconds_bucket{forward=\"mac\",le=\"+Inf\"}"), Some(1.0));
        let status = recorder.status(SystemTime::now());
        let mac = status.forwards.iter().find(|f| f.forward == "mac").unwrap();
        let last = mac.part::<super::super::status::UptimeStatus>().last_resume.clone().unwrap();
        assert!(!last.usable && last.seconds > 600.0, "{last:?}");
    }
}

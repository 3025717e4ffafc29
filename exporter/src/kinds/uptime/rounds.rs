//! Tunnel rounds: a SYN probe and an ssh session probe run together, the uptime KPI's numerator and
//! denominator, the session gauges, and time no round could observe (the laptop asleep).

use std::time::{Duration, SystemTime};

use probes::{ssh_session, syn, Label};

use super::UptimeRecord;
use crate::clock::unix_seconds;
use crate::record::families::{
    ForwardCauseLabels, ForwardLabels, ForwardReasonLabels, ForwardResultLabels, ForwardStateLabels,
};
use crate::record::timeline::EventKind;
use crate::record::Recorder;

/// The shortest unobserved gap the timeline shows, seconds.
const ASLEEP_IN_TIMELINE: f64 = 5.0;

/// When a tunnel round ran: wall time and the sleep-counting clock at its start, and the forward's interval.
#[derive(Debug, Clone, Copy)]
pub struct TunnelRound {
    /// Wall-clock time at its start.
    pub at: SystemTime,
    /// The sleep-counting clock at its start ([`crate::clock::since_boot`]).
    pub boot: Duration,
    /// The forward's `syn_interval`.
    pub interval: Duration,
}

/// What every tunnel round records, whatever its route ([`UptimeRecord::record_round`]).
pub(super) struct RoundFacts {
    /// Wall-clock time at its start.
    pub(super) at: SystemTime,
    /// The sleep-counting clock at its start.
    pub(super) boot: Duration,
    /// Whether the connect succeeded.
    pub(super) connected: bool,
    /// Its time, when known (a `wss://` round whose TLS failed connected in a time it does not report).
    pub(super) connect_time: Option<Duration>,
    /// Whether the round was up.
    pub(super) up: bool,
    /// Why it was down (its `cause`), for the timeline.
    pub(super) cause: &'static str,
}

/// What a tunnel round came to, for the adapter's span and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelVerdict {
    /// `up`, `down` or `unobserved` (the exporter's own shortage).
    pub label: &'static str,
    /// The time before this round no round could run (asleep, stopped), when there was such a gap.
    pub stalled: Option<Duration>,
}

/// Why a tunnel round observed nothing (the `reason` label of `openclaw_tunnel_unobserved_rounds_total`):
/// the exporter's own shortage (out of descriptors or local ports) made its SYN fail before the forward
/// was asked.
pub const UNOBSERVED_REASONS: [&str; 1] = ["local_error"];

/// Why a down round was down (the `cause` label): no ssh owns the listener (not running, or reconnecting),
/// another program holds the port, or the listener is ssh's (or unknown) but the SYN failed.
pub const DOWN_CAUSES: [&str; 3] = ["no_ssh", "not_ssh", "syn_failed"];

/// An ssh forward's causes when its ssh may run inside WSL2 behind WSL's relay (`wsl_companion` set): also the
/// companion could not be read (or watches no forward on the port), or it says no ssh of its owns the port.
pub const THROUGH_WSL_DOWN_CAUSES: [&str; 5] =
    ["no_ssh", "not_ssh", "syn_failed", "wsl_companion_unreachable", "wsl_ssh_down"];

pub(crate) fn down_cause(session: &ssh_session::Outcome) -> &'static str {
    match session {
        ssh_session::Outcome::NoListener => "no_ssh",
        ssh_session::Outcome::NotSsh(_) => "not_ssh",
        ssh_session::Outcome::WslRelay { companion, .. } if !session_up(session) => companion.down_cause(),
        _ => "syn_failed",
    }
}

/// Whether the round's session is up: our user's ssh owns the listener, or this user's WSL relay holds it
/// and the companion inside says its own ssh owns the port there.
pub(crate) fn session_up(session: &ssh_session::Outcome) -> bool {
    use probes::ssh_session::wsl::Companion;
    matches!(
        session,
        ssh_session::Outcome::Up(_) | ssh_session::Outcome::WslRelay { companion: Companion::Vouches { .. }, .. }
    )
}

/// The `result` label of `openclaw_tunnel_owner_lookups_total`.
pub const OWNER_LOOKUP_RESULTS: [&str; 3] = ["ours", "not_ours", "unknown"];

/// A lookup's result label: `unknown` when it did not answer (or the OS cannot tell), `ours` when it found
/// a trusted owner holding every candidate listener, `not_ours` otherwise.
pub(crate) fn owner_lookup_result(session: &ssh_session::Outcome, also_trusted: &[String]) -> &'static str {
    match session {
        ssh_session::Outcome::Unknown { .. } | ssh_session::Outcome::Unsupported { .. } => "unknown",
        _ => match session.trust(also_trusted) {
            ssh_session::Trust::Ours(_) => "ours",
            ssh_session::Trust::NotOurs(_) => "not_ours",
        },
    }
}

impl UptimeRecord {
    /// Count one owner lookup of a tunnel round by its result.
    fn count_owner_lookup(&self, forward: &str, session: &ssh_session::Outcome, also_trusted: &[String]) {
        let result = owner_lookup_result(session, also_trusted);
        self.families.owner_lookups.get_or_create(&ForwardResultLabels { forward: forward.to_owned(), result }).inc();
    }

    /// Whether the forward's port is held by what must not get the token (absent when the lookup cannot tell).
    fn set_forward_hijacked(&self, forward: &str, hijacked: Option<bool>) {
        let labels = ForwardLabels { forward: forward.to_owned() };
        match hijacked {
            Some(hijacked) => {
                self.families.forward_hijacked.get_or_create(&labels).set(i64::from(hijacked));
            }
            None => {
                self.families.forward_hijacked.remove(&labels);
            }
        }
    }

    /// The counters every road's rounds keep, at zero for `forward` (so `rate()` works before the first round):
    /// connects, rounds, time unobserved, the wait for usable, unobserved rounds, down time by `causes`.
    pub(super) fn create_round_series(&self, forward: &str, causes: &[&'static str]) {
        let m = &self.families;
        let labels = ForwardLabels { forward: forward.to_owned() };
        for family in [&m.syn_attempts, &m.syn_successes, &m.up_checks, &m.up_successes] {
            family.get_or_create_owned(&labels);
        }
        m.unobserved_seconds.get_or_create_owned(&labels);
        // Every bucket at zero: the dashboard's quantiles and the resume alert see the forward before its first wake.
        m.resume_seconds.get_or_create_owned(&labels);
        for reason in UNOBSERVED_REASONS {
            m.unobserved_rounds.get_or_create_owned(&ForwardReasonLabels { forward: forward.to_owned(), reason });
        }
        for cause in causes {
            m.tunnel_down_seconds.get_or_create_owned(&ForwardCauseLabels { forward: forward.to_owned(), cause });
        }
    }

    /// `forward`'s tunnel counters at zero (so `rate()` works before the first round), down time by each of
    /// `causes`, and its state.
    pub fn create_tunnel_series(&self, forward: &str, causes: &[&'static str]) {
        self.create_round_series(forward, causes);
        let m = &self.families;
        m.ssh_session_changes.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
        for result in OWNER_LOOKUP_RESULTS {
            m.owner_lookups.get_or_create_owned(&ForwardResultLabels { forward: forward.to_owned(), result });
        }
        // A new generation starts its rounds afresh: the time between the last generation's last round and this
        // one's first (a reload) is neither observed nor a stall, and the hijack gauge is set by its first round.
        self.with_forward(forward, |state| {
            state.last_round_boot = None;
            state.last_hijacked = None;
        });
    }

    /// One tunnel round of `forward`, everything it records: the time since the last round (a gap beyond 1.5
    /// intervals counted unobserved, and the wait for usable started), the exporter's own shortage
    /// (unobserved, not down), the owner lookup's result, the hijack gauge (set on a change; unknown keeps it),
    /// the SYN and session series, and the down time by cause. Returns what the adapter logs.
    pub fn record_tunnel(
        &self,
        recorder: &Recorder,
        forward: &str,
        round: TunnelRound,
        trusted_owners: &[String],
        syn: &syn::Outcome,
        session: &ssh_session::Outcome,
    ) -> TunnelVerdict {
        let TunnelRound { at, boot, .. } = round;
        let (observed, stalled) = self.since_last_round(recorder, forward, round);
        if let Err(failure @ syn::Failure::LocalError(_)) = syn {
            // The exporter's own shortage: the forward was never asked. Neither up nor down: unobserved.
            self.record_round_unobserved(forward, failure.label());
            return TunnelVerdict { label: "unobserved", stalled };
        }
        self.count_owner_lookup(forward, session, trusted_owners);
        // Unknown (a lookup that timed out or was cut off) is not hijacked: the gauge keeps its last value.
        let hijacked = session.hijacked(trusted_owners);
        if !matches!(session, ssh_session::Outcome::Unknown { .. }) {
            let changed = self.with_forward(forward, |state| state.last_hijacked.replace(hijacked) != Some(hijacked));
            if changed {
                self.set_forward_hijacked(forward, hijacked);
            }
        }
        let label = if self.record_tunnel_round(recorder, forward, at, boot, syn, session) {
            "up"
        } else {
            self.record_tunnel_down(forward, down_cause(session), observed);
            "down"
        };
        TunnelVerdict { label, stalled }
    }

    /// The time since `forward`'s last tunnel round (of any route): the time this round stands for (since the
    /// last one, but never the unobserved part of a gap), and the gap, when there was one, counted unobserved.
    pub(super) fn since_last_round(
        &self,
        recorder: &Recorder,
        forward: &str,
        round: TunnelRound,
    ) -> (Duration, Option<Duration>) {
        let TunnelRound { at, boot, interval } = round;
        let previous = self.with_forward(forward, |state| state.last_round_boot.replace(boot));
        let observed = previous.map_or(interval, |previous| boot.saturating_sub(previous).min(interval));
        let mut stalled = None;
        if let Some(previous) = previous {
            let gap = boot.saturating_sub(previous);
            // A round normally follows the last by one interval (plus scheduling noise); anything beyond
            // half an interval more is time the process could not observe.
            if gap > interval + interval / 2 {
                let unobserved = gap - interval;
                self.record_unobserved(recorder, forward, at - unobserved, at, boot);
                stalled = Some(unobserved);
            }
        }
        (observed, stalled)
    }

    /// Count a tunnel round that observed nothing of the forward, by `reason` (one of
    /// [`UNOBSERVED_REASONS`]).
    pub(super) fn record_round_unobserved(&self, forward: &str, reason: &'static str) {
        let labels = ForwardReasonLabels { forward: forward.to_owned(), reason };
        self.families.unobserved_rounds.get_or_create(&labels).inc();
    }

    /// Count `seconds` of a down round against its cause.
    pub(super) fn record_tunnel_down(&self, forward: &str, cause: &'static str, seconds: Duration) {
        let labels = ForwardCauseLabels { forward: forward.to_owned(), cause };
        self.families.tunnel_down_seconds.get_or_create(&labels).inc_by(seconds.as_secs_f64());
    }

    /// Record one tunnel round: a SYN probe and an SSH session probe run together. Returns whether the
    /// round counts as up.
    ///
    /// Up = SSH session up AND SYN success. When the listener's owner cannot be read, the session is
    /// unknown, not down: the round then rests on SYN alone.
    fn record_tunnel_round(
        &self,
        recorder: &Recorder,
        forward: &str,
        at: SystemTime,
        boot: Duration,
        syn: &syn::Outcome,
        session: &ssh_session::Outcome,
    ) -> bool {
        let m = &self.families;
        let labels = ForwardLabels { forward: forward.to_owned() };
        let session_known = !matches!(
            session,
            ssh_session::Outcome::Unreadable { .. }
                | ssh_session::Outcome::Unsupported { .. }
                | ssh_session::Outcome::Unknown { .. }
        );
        let session_ok = session_up(session) || !session_known;
        let up = session_ok && syn.is_ok();
        let connect_time = syn.as_ref().ok().map(|connected| connected.connect);
        let facts = RoundFacts { at, boot, connected: syn.is_ok(), connect_time, up, cause: down_cause(session) };
        self.record_round(recorder, forward, facts, |state| {
            // The session gauges change only with the session's state (and, through WSL's relay, whether its
            // companion vouches): set them then, not every round (a round is otherwise a handful of atomic adds,
            // and these were most of its allocations).
            let was = state.session.as_ref().map(|was| (was.label(), session_up(was)));
            if was != Some((session.label(), session_up(session))) {
                if session_known {
                    m.ssh_session_up.get_or_create(&labels).set(i64::from(session_up(session)));
                } else {
                    m.ssh_session_up.remove(&labels);
                }
                for state_name in ssh_session::Outcome::LABELS {
                    let value = i64::from(*state_name == session.label());
                    m.ssh_session_state
                        .get_or_create(&ForwardStateLabels { forward: forward.to_owned(), state: state_name })
                        .set(value);
                }
            }
            let mut new_owner = None;
            if let ssh_session::Outcome::Up(owner) = session {
                // A new owner (autossh restarting ssh, a respawn, a manual restart), even across a down spell.
                if state.last_owner_pid.is_some_and(|pid| pid != owner.pid) {
                    m.ssh_session_changes.get_or_create(&labels).inc();
                    new_owner = Some(format!(
                        "ssh pid {} (parent {} pid {})",
                        owner.pid,
                        owner.parent_name.as_deref().unwrap_or("?"),
                        owner.parent_pid
                    ));
                }
                state.last_owner_pid = Some(owner.pid);
            }
            if state.session.as_ref() != Some(session) {
                state.session = Some(session.clone());
            }
            new_owner.map(|owner| (super::SSH_RESTART, owner))
        })
    }

    /// What every tunnel round records, whatever its route: the connect's counts, the uptime numerator and
    /// denominator, the ledger, the end of a wait for usable given up, and the tunnel's spell on the timeline.
    /// `in_state` adds the route's own facts under the forward's lock and may return a point for the timeline.
    /// Returns whether the round was up.
    pub(super) fn record_round(
        &self,
        recorder: &Recorder,
        forward: &str,
        facts: RoundFacts,
        in_state: impl FnOnce(&mut super::ForwardState) -> Option<(EventKind, String)>,
    ) -> bool {
        let RoundFacts { at, boot, connected, connect_time, up, cause } = facts;
        let m = &self.families;
        let labels = ForwardLabels { forward: forward.to_owned() };
        m.syn_attempts.get_or_create(&labels).inc();
        if connected {
            m.syn_successes.get_or_create(&labels).inc();
        }
        if let Some(connect) = connect_time {
            m.connect_seconds.get_or_create(&labels).observe(connect.as_secs_f64());
        }
        m.up_checks.get_or_create(&labels).inc();
        if up {
            m.up_successes.get_or_create(&labels).inc();
        }
        let (was_up, point, gave_up) = self.with_forward(forward, |state| {
            let was_up = state.last_round_up;
            let gave_up = state.resume.give_up(boot);
            state.ledger.record_round(unix_seconds(at), up);
            state.last_syn_ok = Some(connected);
            state.last_round_up = Some(up);
            (was_up, in_state(state), gave_up)
        });
        if let Some(seconds) = gave_up {
            self.observe_resume(forward, seconds, false);
        }
        // The timeline, after the per-forward state is released (never two of the recorder's locks at once).
        let at = unix_seconds(at);
        if was_up != Some(up) || !up {
            if up {
                recorder.timeline_over(super::TUNNEL_DOWN, forward, at);
            } else {
                recorder.timeline_spell(super::TUNNEL_DOWN, forward, cause, at);
            }
        }
        if let Some((kind, what)) = point {
            recorder.timeline_point(kind, forward, &what, at);
        }
        up
    }

    /// Record `[from, to)` as time no round could observe; the round at `boot` (the first after the gap)
    /// starts the wait for usable ([`super::resume`]).
    fn record_unobserved(&self, recorder: &Recorder, forward: &str, from: SystemTime, to: SystemTime, boot: Duration) {
        let seconds = to.duration_since(from).unwrap_or_default().as_secs_f64();
        let labels = ForwardLabels { forward: forward.to_owned() };
        self.families.unobserved_seconds.get_or_create(&labels).inc_by(seconds);
        self.with_forward(forward, |state| {
            state.ledger.record_unobserved(unix_seconds(from), unix_seconds(to));
            state.resume.gap_ended(boot);
        });
        // The timeline tells people of sleeps, not of the scheduling hiccups a loaded machine makes (the metric
        // counts both).
        let (from, to) = (unix_seconds(from), unix_seconds(to));
        if to - from >= ASLEEP_IN_TIMELINE {
            recorder.timeline_closed(super::ASLEEP, forward, "no round could run (asleep or stopped)", from, to);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::time::UNIX_EPOCH;

    pub(crate) fn owner(name: &str) -> ssh_session::Owner {
        ssh_session::Owner {
            pid: 42,
            name: name.into(),
            parent_pid: 1,
            parent_name: Some("autossh".into()),
            socket_inode: 7,
            socket_fd: 3,
            uid: Some(1000),
            same_user: Some(true),
            user_name: None,
        }
    }

    /// Through WSL's relay: up only while the companion vouches, and the session gauge follows what it says
    /// even while the state label stays `wsl_relay`; a down round by the companion's cause.
    #[test]
    fn a_round_through_wsl_s_relay_is_up_only_while_the_companion_vouches() {
        use ssh_session::wsl::Companion;
        let (recorder, uptime) = super::super::tests::recorder();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let syn_ok: syn::Outcome = Ok(syn::Connected { connect: Duration::from_micros(30) });
        let relay = |companion| ssh_session::Outcome::WslRelay { relay: owner("wslrelay.exe"), companion };
        let gauge =
            |t| sample(&recorder.encode(Format::Prometheus, t), "openclaw_tunnel_ssh_session_up{forward=\"a\"}");
        let vouched = relay(Companion::Vouches { ssh_pid: Some(9) });
        assert!(uptime.record_tunnel_round(&recorder, "a", t0, Duration::ZERO, &syn_ok, &vouched));
        assert_eq!(gauge(t0), Some(1.0));
        let down = relay(Companion::SshDown { state: "no_listener" });
        assert!(!uptime.record_tunnel_round(&recorder, "a", t0, Duration::ZERO, &syn_ok, &down));
        assert_eq!(gauge(t0), Some(0.0), "the gauge follows the companion, the state label unchanged");
        assert_eq!(down_cause(&down), "wsl_ssh_down");
        assert_eq!(down_cause(&relay(Companion::Unreachable("refused".into()))), "wsl_companion_unreachable");
        assert_eq!(down_cause(&relay(Companion::NotConfigured)), "wsl_companion_unreachable");
        assert_eq!(down_cause(&vouched), "syn_failed", "vouched, yet the connect failed");
        let text = recorder.encode(Format::Prometheus, t0);
        assert_eq!(sample(&text, "openclaw_tunnel_ssh_session_state{forward=\"a\",state=\"wsl_relay\"}"), Some(1.0));
    }

    #[test]
    fn a_round_is_up_only_with_ssh_and_syn() {
        let (recorder, uptime) = super::super::tests::recorder();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let syn_ok: syn::Outcome = Ok(syn::Connected { connect: Duration::from_micros(30) });
        let up = ssh_session::Outcome::Up(owner("ssh"));
        assert!(uptime.record_tunnel_round(&recorder, "a", t0, Duration::ZERO, &syn_ok, &up));
        let refused = Err(syn::Failure::Refused);
        assert!(!uptime.record_tunnel_round(&recorder, "a", t0, Duration::ZERO, &refused, &up));
        assert!(!uptime.record_tunnel_round(
            &recorder,
            "a",
            t0,
            Duration::ZERO,
            &syn_ok,
            &ssh_session::Outcome::NotSsh(owner("python3"))
        ));
        let unreadable = ssh_session::Outcome::Unreadable { detail: "x".into() };
        assert!(uptime.record_tunnel_round(&recorder, "a", t0, Duration::ZERO, &syn_ok, &unreadable));

        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(300));
        assert_eq!(sample(&text, "openclaw_tunnel_up_checks_total{forward=\"a\"}"), Some(4.0));
        assert_eq!(sample(&text, "openclaw_tunnel_up_successes_total{forward=\"a\"}"), Some(2.0));
        assert_eq!(sample(&text, "openclaw_tunnel_syn_attempts_total{forward=\"a\"}"), Some(4.0));
        assert_eq!(sample(&text, "openclaw_tunnel_syn_successes_total{forward=\"a\"}"), Some(3.0));
        assert_eq!(sample(&text, "openclaw_tunnel_uptime_ratio{forward=\"a\"}"), Some(0.5));
        // Unreadable is not down: the session gauge is withdrawn, the state says why.
        assert_eq!(sample(&text, "openclaw_tunnel_ssh_session_up{forward=\"a\"}"), None);
        assert_eq!(sample(&text, "openclaw_tunnel_ssh_session_state{forward=\"a\",state=\"unreadable\"}"), Some(1.0));
        // 30 us connects resolve between the 25 us and 50 us bounds.
        assert_eq!(sample(&text, "openclaw_tunnel_connect_seconds_bucket{forward=\"a\",le=\"2.5e-05\"}"), Some(0.0));
        assert_eq!(sample(&text, "openclaw_tunnel_connect_seconds_bucket{forward=\"a\",le=\"5e-05\"}"), Some(3.0));
    }
}

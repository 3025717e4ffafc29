//! The adapter of the tunnel probe kind: its target, interval and timeout, what it does before a round, its logs, and what it records (through the recorder's API in [`crate::record::tunnel`]).

use crate::config::Forward;
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::record::tunnel::*;
use crate::record::Recorder;
use probes::{ssh_session, syn, Label, Probe};
use std::sync::Arc;
use std::time::Duration;

/// The ssh session check of `forward` (the tunnel's, and each token sender's own gate), sharing this
/// generation's process walk through `index`.
pub fn session_target(
    forward: &Forward,
    lookup: ssh_session::Lookup,
    index: &ssh_session::OwnerIndex,
) -> ssh_session::Target {
    ssh_session::Target { addr: forward.local, last_owner: None, lookup, index: index.clone() }
}

/// One tunnel round's probes: the SYN probe and the ssh session probe, run together.
pub struct TunnelProbe {
    /// The connect to the forward's listener.
    pub syn: syn::Target,
    /// Who owns that listener (remembers the last owner between rounds).
    pub session: ssh_session::Target,
}

/// What one tunnel round found.
pub struct TunnelOutcome {
    /// The connect.
    pub syn: syn::Outcome,
    /// The listener's owner.
    pub session: ssh_session::Outcome,
}

impl From<probes::CutOff> for TunnelOutcome {
    fn from(cut_off: probes::CutOff) -> Self {
        TunnelOutcome { syn: cut_off.into(), session: cut_off.into() }
    }
}

impl Probe for TunnelProbe {
    /// The lag histogram's label for tunnel rounds, as before rounds were one probe.
    const KIND: &'static str = "syn";
    type Outcome = TunnelOutcome;

    async fn probe(&mut self, timeout: Duration) -> TunnelOutcome {
        let (syn, session) = tokio::join!(self.syn.probe(timeout), self.session.probe(timeout));
        TunnelOutcome { syn, session }
    }
}

/// The recording of one forward's tunnel rounds.
pub struct TunnelKind {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
}

/// Registry entry: every forward has its tunnel rounds.
pub fn start(start: &mut super::Start<'_>, forward: &Arc<Forward>) {
    let session = start.session_target(forward);
    let (probe, kind) = TunnelKind::new(forward.clone(), start.recorder.clone(), session);
    start.drive(probe, kind);
}

impl TunnelKind {
    /// Its probe and its recording, with the forward's counters created at zero (so `rate()` works before
    /// the first round).
    pub fn new(
        forward: Arc<Forward>,
        recorder: Arc<Recorder>,
        session: ssh_session::Target,
    ) -> (TunnelProbe, TunnelKind) {
        recorder.create_tunnel_series(&forward.name);
        let probe = TunnelProbe { syn: syn::Target { addr: forward.local }, session };
        (probe, TunnelKind { forward, recorder })
    }
}

impl Adapter for TunnelKind {
    type Probe = TunnelProbe;
    /// The session's outcome: a new owner (autossh's restart) is a change, a steady one is not.
    type State = ssh_session::Outcome;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.forward.syn_interval)
    }

    fn handle(&mut self, round: Round, TunnelOutcome { syn, session }: &TunnelOutcome) -> &'static str {
        let round = TunnelRound { at: round.wall, boot: round.boot, interval: self.forward.syn_interval };
        let verdict =
            self.recorder.record_tunnel(&self.forward.name, round, &self.forward.trusted_owners, syn, session);
        if let Some(unobserved) = verdict.stalled {
            tracing::warn!(forward = %self.forward.name, unobserved = ?unobserved, "probe loop stalled (suspend or stop); counting the gap as unobserved");
        }
        verdict.label
    }

    fn annotate(&self, TunnelOutcome { syn, session }: &TunnelOutcome, fields: &mut SpanFields) {
        fields.ssh_session = Some(session.label());
        match syn {
            Ok(connected) => {
                fields.syn = Some("ok");
                fields.connect_us = Some(connected.connect.as_micros() as u64);
            }
            Err(failure) => fields.syn = Some(failure.label()),
        }
    }

    fn state(&self, outcome: &TunnelOutcome) -> ssh_session::Outcome {
        outcome.session.clone()
    }

    fn log_change(&self, TunnelOutcome { session, .. }: &TunnelOutcome) {
        let forward = self.forward.name.as_str();
        match session {
            ssh_session::Outcome::Up(owner) => tracing::info!(
                forward, pid = owner.pid, parent_pid = owner.parent_pid, parent = %owner.parent_name.as_deref().unwrap_or("?"),
                "ssh session up: ssh owns the forward's listener"
            ),
            ssh_session::Outcome::NotSsh(owner) => tracing::warn!(
                forward, pid = owner.pid, name = %owner.name, parent = %owner.parent_name.as_deref().unwrap_or("?"),
                "the forward's port is held by a process that is not ssh"
            ),
            ssh_session::Outcome::NoListener => {
                tracing::warn!(forward, "no process listens on the forward's address: ssh is down or reconnecting")
            }
            ssh_session::Outcome::Unreadable { detail } => tracing::warn!(
                forward, detail = %detail, "cannot read which process owns the forward's listener; session state unknown (not counted as down)"
            ),
            ssh_session::Outcome::Unsupported { detail } => {
                tracing::warn!(forward, detail = %detail, "cannot check the ssh session on this system")
            }
            ssh_session::Outcome::Unknown { detail } => tracing::warn!(
                forward, detail = %detail, "could not tell who owns the forward's listener this round; the token is withheld, the hijack gauge unchanged"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::tunnel::tests::owner;
    use crate::record::Format;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_round_whose_syn_failed_for_the_exporters_own_shortage_is_neither_up_nor_down() {
        let recorder = std::sync::Arc::new(Recorder::new());
        let forward = std::sync::Arc::new(crate::config::Config::load(None).unwrap().forwards[0].clone());
        let session = ssh_session::Target::new(forward.local);
        let (_, mut tunnel) = TunnelKind::new(forward.clone(), recorder.clone(), session);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = Round { wall: t0, boot: Duration::from_secs(10) };
        let outcome = TunnelOutcome {
            syn: Err(syn::Failure::LocalError(std::io::ErrorKind::AddrNotAvailable)),
            session: ssh_session::Outcome::Up(owner("ssh")),
        };
        assert_eq!(tunnel.handle(round, &outcome), "unobserved");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(1));
        let name = &forward.name;
        assert_eq!(sample(&text, &format!("openclaw_tunnel_up_checks_total{{forward=\"{name}\"}}")), Some(0.0));
        let unobserved =
            format!("openclaw_tunnel_unobserved_rounds_total{{forward=\"{name}\",reason=\"local_error\"}}");
        assert_eq!(sample(&text, &unobserved), Some(1.0));
        for cause in DOWN_CAUSES {
            let down = format!("openclaw_tunnel_down_seconds_total{{forward=\"{name}\",cause=\"{cause}\"}}");
            assert_eq!(sample(&text, &down), Some(0.0), "{cause}");
        }
    }

    #[test]
    fn a_lookup_that_could_not_tell_leaves_the_hijack_gauge_as_it_was_and_counts_unknown() {
        let recorder = std::sync::Arc::new(Recorder::new());
        let forward = std::sync::Arc::new(crate::config::Config::load(None).unwrap().forwards[0].clone());
        let (_, mut tunnel) =
            TunnelKind::new(forward.clone(), recorder.clone(), ssh_session::Target::new(forward.local));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let name = &forward.name;
        let hijacked = format!("openclaw_tunnel_forward_hijacked{{forward=\"{name}\"}}");
        let lookups =
            |result: &str| format!("openclaw_tunnel_owner_lookups_total{{forward=\"{name}\",result=\"{result}\"}}");
        let mut at = 10;
        let mut round = |session: ssh_session::Outcome| {
            at += 1;
            let round = Round { wall: t0 + Duration::from_secs(at), boot: Duration::from_secs(at) };
            let syn = Ok(syn::Connected { connect: Duration::from_micros(30) });
            tunnel.handle(round, &TunnelOutcome { syn, session });
            recorder.encode(Format::Prometheus, t0 + Duration::from_secs(at))
        };
        let unknown = || ssh_session::Outcome::Unknown { detail: "socket table lookup timed out".into() };
        // Before anything is known: absent, and an unknown round does not invent a value.
        let text = round(unknown());
        assert_eq!(sample(&text, &hijacked), None, "{text}");
        let mut foreign = owner("python3");
        foreign.same_user = Some(false);
        let text = round(ssh_session::Outcome::NotSsh(foreign));
        assert_eq!(sample(&text, &hijacked), Some(1.0));
        // A lookup that timed out says nothing new: still 1 (not cleared, not raised).
        let text = round(unknown());
        assert_eq!(sample(&text, &hijacked), Some(1.0));
        let text = round(ssh_session::Outcome::Up(owner("ssh")));
        assert_eq!(sample(&text, &hijacked), Some(0.0));
        let text = round(unknown());
        assert_eq!(sample(&text, &hijacked), Some(0.0), "unknown is not hijacked");
        assert_eq!(sample(&text, &lookups("unknown")), Some(3.0));
        assert_eq!(sample(&text, &lookups("not_ours")), Some(1.0));
        assert_eq!(sample(&text, &lookups("ours")), Some(1.0));
        // And the token is withheld while unknown.
        assert!(matches!(unknown().trust(&[]), ssh_session::Trust::NotOurs(why) if why.contains("could not tell")));
    }
}

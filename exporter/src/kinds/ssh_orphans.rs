//! The adapter of the orphan probe kind: its target (the forward's owner lookup and the generation's shared
//! process table), interval and timeout, its logs, and what it records (through the recorder's API in
//! [`crate::record::tunnel`]).

use crate::clock::unix_seconds;
use crate::config::Forward;
use crate::driver::{Recording, Round, SpanFields};
use crate::record::status::OrphanStatus;
use crate::record::Recorder;
use probes::{ssh_orphans, ssh_session, Label};
use std::sync::Arc;
use std::time::Duration;

/// The recording of one forward's orphan checks.
pub struct OrphansRecording {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
}

impl OrphansRecording {
    /// Its probe (a lookup of its own, sharing the generation's process walk through `session`, and the
    /// generation's process table) and its recording.
    pub fn new(
        forward: Arc<Forward>,
        recorder: Arc<Recorder>,
        session: ssh_session::Target,
        table: &ssh_orphans::ProcessTable,
    ) -> (ssh_orphans::Target, OrphansRecording) {
        let target = ssh_orphans::Target { addr: forward.local, session, table: table.clone() };
        (target, OrphansRecording { forward, recorder })
    }
}

/// The command that ends `pid` on this OS.
pub fn end_command(pid: u32) -> String {
    if cfg!(windows) {
        format!("taskkill /PID {pid}")
    } else {
        format!("kill {pid}")
    }
}

/// What the status report and the doctor say of one orphan.
pub fn orphan_status(orphan: &ssh_orphans::Orphan) -> OrphanStatus {
    OrphanStatus {
        pid: orphan.pid,
        started: orphan.started.map(unix_seconds),
        command: orphan.command.clone(),
        end_with: end_command(orphan.pid),
    }
}

impl Recording for OrphansRecording {
    type Probe = ssh_orphans::Target;
    /// The orphans' pids, or why they are unknown: a new orphan or one gone is a change.
    type State = Result<Vec<u32>, &'static str>;

    fn subject(&self) -> (&'static str, &str) {
        ("forward", &self.forward.name)
    }

    fn interval(&self) -> Duration {
        self.forward.orphan_interval.unwrap_or(Duration::from_secs(30))
    }

    fn timeout(&self) -> Duration {
        self.forward.timeout
    }

    fn record(&mut self, _round: Round, outcome: &ssh_orphans::Outcome) -> &'static str {
        let orphans = outcome.orphans().map(|orphans| orphans.iter().map(orphan_status).collect());
        self.recorder.record_orphans(&self.forward.name, orphans);
        outcome.label()
    }

    fn annotate(&self, outcome: &ssh_orphans::Outcome, fields: &mut SpanFields) {
        fields.orphans = outcome.orphans().map(|orphans| orphans.len() as u64);
    }

    fn state(&self, outcome: &ssh_orphans::Outcome) -> Result<Vec<u32>, &'static str> {
        outcome.orphans().map(|orphans| orphans.iter().map(|orphan| orphan.pid).collect()).ok_or(outcome.label())
    }

    fn log_change(&self, outcome: &ssh_orphans::Outcome) {
        let forward = self.forward.name.as_str();
        match outcome {
            ssh_orphans::Outcome::Counted { orphans, .. } if orphans.is_empty() => {
                tracing::info!(forward, "no orphaned ssh forwards this forward's address")
            }
            ssh_orphans::Outcome::Counted { owner_pid, orphans } => {
                let pids: Vec<String> = orphans.iter().map(|orphan| orphan.pid.to_string()).collect();
                tracing::warn!(
                    forward, local = %self.forward.local, owner_pid = ?owner_pid, pids = %pids.join(" "),
                    end_with = %end_command(orphans[0].pid),
                    "ssh clients forward this address but do not own its listener (orphans: each forwards nothing)"
                )
            }
            ssh_orphans::Outcome::OwnerUnknown { detail } => {
                tracing::warn!(forward, detail = %detail, "orphaned ssh forwards not counted: the listener's owner is unknown")
            }
            ssh_orphans::Outcome::Unsupported { detail } => {
                tracing::info!(forward, detail = %detail, "orphaned ssh forwards cannot be counted on this system")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn orphans_are_counted_listed_and_unknown_is_no_series() {
        let recorder = Arc::new(Recorder::new());
        let forward = Arc::new(crate::config::Config::load(None).unwrap().forwards[0].clone());
        let session = ssh_session::Target::new(forward.local);
        let (_, mut recording) =
            OrphansRecording::new(forward.clone(), recorder.clone(), session, &ssh_orphans::ProcessTable::default());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = Round { wall: t0, boot: Duration::from_secs(10) };
        let orphan = ssh_orphans::Orphan {
            pid: 4242,
            started: Some(t0 - Duration::from_secs(600)),
            command: "ssh -N -L 18789:127.0.0.1:18789 mac".into(),
        };
        let series = format!("openclaw_tunnel_ssh_orphans{{forward=\"{}\"}}", forward.name);
        let counted = ssh_orphans::Outcome::Counted { owner_pid: Some(1), orphans: vec![orphan] };
        assert_eq!(recording.record(round, &counted), "counted");
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &series), Some(1.0));
        let status = recorder.status(SystemTime::now());
        let listed = status.forwards[0].ssh_orphans.as_ref().expect("listed");
        assert_eq!(listed[0].pid, 4242);
        assert_eq!(listed[0].started, Some(1_800_000_000.0 - 600.0));
        assert_eq!(listed[0].end_with, end_command(4242));
        assert_eq!(recording.state(&counted), Ok(vec![4242]));

        let unknown = ssh_orphans::Outcome::OwnerUnknown { detail: "x".into() };
        assert_eq!(recording.record(round, &unknown), "owner_unknown");
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &series), None, "unknown is not zero");
        assert!(recorder.status(SystemTime::now()).forwards[0].ssh_orphans.is_none());

        let none = ssh_orphans::Outcome::Counted { owner_pid: Some(1), orphans: vec![] };
        recording.record(round, &none);
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &series), Some(0.0));
    }
}

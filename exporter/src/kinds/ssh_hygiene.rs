//! The adapter of the ssh hygiene probe kind (orphans, and the owner's risky options): its target (the
//! forward's owner lookup and the generation's shared process table), interval and timeout, its logs, and
//! what it records (through the recorder's API in [`crate::record::tunnel`]).

use crate::clock::unix_seconds;
use crate::config::Forward;
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, state_badge};
use crate::record::status::OrphanStatus;
use crate::record::status::{ForwardStatus, OptionRiskStatus};
use crate::record::timeline::human_duration;
use crate::record::Recorder;
use probes::{ssh_hygiene, ssh_session, Label};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// The recording of one forward's hygiene checks.
pub struct HygieneKind {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
}

/// Registry entry: a forward's hygiene probe, unless its `hygiene_interval` is off.
pub fn start(start: &mut super::Start<'_>, forward: &Arc<Forward>) {
    if forward.hygiene_interval.is_none() {
        return;
    }
    let session = start.session_target(forward);
    let (probe, kind) = HygieneKind::new(forward.clone(), start.recorder.clone(), session, start.process_table);
    start.drive(probe, kind);
}

impl HygieneKind {
    /// Its probe (a lookup of its own, sharing the generation's process walk through `session`, and the
    /// generation's process table) and its recording.
    pub fn new(
        forward: Arc<Forward>,
        recorder: Arc<Recorder>,
        session: ssh_session::Target,
        table: &ssh_hygiene::ProcessTable,
    ) -> (ssh_hygiene::Target, HygieneKind) {
        let target = ssh_hygiene::Target::new(forward.local, session, table.clone());
        (target, HygieneKind { forward, recorder })
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
pub fn orphan_status(orphan: &ssh_hygiene::Orphan) -> OrphanStatus {
    OrphanStatus {
        pid: orphan.pid,
        started: orphan.started.map(unix_seconds),
        command: orphan.command.clone(),
        end_with: end_command(orphan.pid),
    }
}

impl Adapter for HygieneKind {
    type Probe = ssh_hygiene::Target;
    /// The orphans' pids (or why they are unknown) and the owner's risky options (None while unknown): a
    /// new orphan, one gone, or a new set of risks is a change.
    type State = (Result<Vec<u32>, &'static str>, Option<Vec<&'static str>>);

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.forward.hygiene_interval.unwrap_or(Duration::from_secs(30)))
    }

    fn handle(&mut self, _round: Round, outcome: &ssh_hygiene::Outcome) -> &'static str {
        let orphans = outcome.orphans().map(|orphans| orphans.iter().map(orphan_status).collect());
        self.recorder.record_orphans(&self.forward.name, orphans);
        let risks = match outcome {
            ssh_hygiene::Outcome::Counted { options: Ok(risks), .. } => Some(risks.as_slice()),
            _ => None,
        };
        self.recorder.record_option_risks(&self.forward.name, risks);
        outcome.label()
    }

    fn annotate(&self, outcome: &ssh_hygiene::Outcome, fields: &mut SpanFields) {
        fields.orphans = outcome.orphans().map(|orphans| orphans.len() as u64);
    }

    fn state(&self, outcome: &ssh_hygiene::Outcome) -> Self::State {
        let orphans =
            outcome.orphans().map(|orphans| orphans.iter().map(|orphan| orphan.pid).collect()).ok_or(outcome.label());
        let risks = match outcome {
            ssh_hygiene::Outcome::Counted { options: Ok(risks), .. } => {
                Some(risks.iter().map(|risk| risk.label()).collect())
            }
            _ => None,
        };
        (orphans, risks)
    }

    fn log_change(&self, outcome: &ssh_hygiene::Outcome) {
        let forward = self.forward.name.as_str();
        if let ssh_hygiene::Outcome::Counted { owner_pid, options, .. } = outcome {
            match options {
                Ok(risks) if risks.is_empty() => {
                    tracing::info!(forward, owner_pid = ?owner_pid, "the forward's ssh runs with no risky option")
                }
                Ok(risks) => {
                    let labels: Vec<&str> = risks.iter().map(|risk| risk.label()).collect();
                    let fixes: Vec<&str> = risks.iter().map(|risk| risk.fix()).collect();
                    tracing::warn!(
                        forward, owner_pid = ?owner_pid, options = %labels.join(" "), fix = %fixes.join("; ").replace('\n', "; "),
                        "the forward's ssh runs with options that make a dead path look alive (add the fix to ~/.ssh/config under its Host)"
                    )
                }
                Err(detail) => tracing::info!(forward, detail = %detail, "the forward's ssh options are unknown"),
            }
        }
        match outcome {
            ssh_hygiene::Outcome::Counted { orphans, .. } if orphans.is_empty() => {
                tracing::info!(forward, "no orphaned ssh forwards this forward's address")
            }
            ssh_hygiene::Outcome::Counted { owner_pid, orphans, .. } => {
                let pids: Vec<String> = orphans.iter().map(|orphan| orphan.pid.to_string()).collect();
                tracing::warn!(
                    forward, local = %self.forward.local, owner_pid = ?owner_pid, pids = %pids.join(" "),
                    end_with = %end_command(orphans[0].pid),
                    "ssh clients forward this address but do not own its listener (orphans: each forwards nothing)"
                )
            }
            ssh_hygiene::Outcome::OwnerUnknown { detail } => {
                tracing::warn!(forward, detail = %detail, "orphaned ssh forwards not counted: the listener's owner is unknown")
            }
            ssh_hygiene::Outcome::Unsupported { detail } => {
                tracing::info!(forward, detail = %detail, "orphaned ssh forwards cannot be counted on this system")
            }
        }
    }
}

// Its rows on the status page (listed in `kinds::FORWARD_ROWS`): orphans, then the owner's risky options.

/// Its rows: each shown only when it has something to say.
pub fn page_rows(forward: &ForwardStatus, now: f64) -> String {
    orphans_row(forward.ssh_orphans.as_deref(), now) + &option_risks_row(forward.ssh_option_risks.as_deref())
}

/// The orphaned ssh clients' row: shown only when there are some (a row saying "none" on every healthy
/// forward would be noise), each with its pid, age, command line and the command that ends it.
fn orphans_row(orphans: Option<&[OrphanStatus]>, now: f64) -> String {
    let Some(orphans) = orphans.filter(|orphans| !orphans.is_empty()) else { return String::new() };
    let mut row = format!(
        "<tr class=\"orphans\"><th>Orphaned ssh</th><td>{}</td><td class=\"muted\">forward this address but hold \
         nothing:<ul>",
        state_badge(Some(false), "", &format!("{} orphan{}", orphans.len(), if orphans.len() == 1 { "" } else { "s" }))
    );
    for orphan in orphans {
        let age =
            orphan.started.map_or("age unknown".into(), |started| format!("{} old", human_duration(now - started)));
        let _ = write!(
            row,
            "<li>pid {} ({age}): <code>{}</code> · end it: <code>{}</code></li>",
            orphan.pid,
            esc(&orphan.command),
            esc(&orphan.end_with)
        );
    }
    row.push_str("</ul></td></tr>");
    row
}

/// The risky ssh options' row: shown only when the forward's ssh has some, each with why and its fix.
fn option_risks_row(risks: Option<&[OptionRiskStatus]>) -> String {
    let Some(risks) = risks.filter(|risks| !risks.is_empty()) else { return String::new() };
    let mut row = format!(
        "<tr class=\"risks\"><th>ssh options</th><td>{}</td><td class=\"muted\">add to ~/.ssh/config under the \
         forward's Host:<ul>",
        state_badge(Some(false), "", &format!("{} risky", risks.len()))
    );
    for risk in risks {
        let _ = write!(
            row,
            "<li>{} ({}): <code>{}</code></li>",
            esc(&risk.option),
            esc(&risk.why),
            esc(&risk.fix.replace('\n', "; "))
        );
    }
    row.push_str("</ul></td></tr>");
    row
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
            HygieneKind::new(forward.clone(), recorder.clone(), session, &ssh_hygiene::ProcessTable::default());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = Round { wall: t0, boot: Duration::from_secs(10) };
        let orphan = ssh_hygiene::Orphan {
            pid: 4242,
            started: Some(t0 - Duration::from_secs(600)),
            command: "ssh -N -L 18789:127.0.0.1:18789 mac".into(),
        };
        let series = format!("openclaw_tunnel_ssh_orphans{{forward=\"{}\"}}", forward.name);
        let counted = ssh_hygiene::Outcome::Counted {
            owner_pid: Some(1),
            orphans: vec![orphan],
            options: Ok(vec![probes::ssh_options::Risk::ServerAliveOff]),
            dead_path_after: None,
        };
        assert_eq!(recording.handle(round, &counted), "counted");
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &series), Some(1.0));
        let status = recorder.status(SystemTime::now());
        let listed = status.forwards[0].ssh_orphans.as_ref().expect("listed");
        assert_eq!(listed[0].pid, 4242);
        assert_eq!(listed[0].started, Some(1_800_000_000.0 - 600.0));
        assert_eq!(listed[0].end_with, end_command(4242));
        assert_eq!(recording.state(&counted), (Ok(vec![4242]), Some(vec!["server_alive_off"])));
        let risk = |option: &str| {
            format!("openclaw_tunnel_ssh_option_risk{{forward=\"{}\",option=\"{option}\"}}", forward.name)
        };
        let text = recorder.encode(Format::Prometheus, t0);
        assert_eq!(sample(&text, &risk("server_alive_off")), Some(1.0));
        assert_eq!(sample(&text, &risk("exit_on_forward_failure_off")), Some(0.0));
        let listed = &recorder.status(SystemTime::now()).forwards[0].ssh_option_risks.clone().expect("known");
        assert_eq!(listed[0].fix, "ServerAliveInterval 15\nServerAliveCountMax 3");

        let unknown = ssh_hygiene::Outcome::OwnerUnknown { detail: "x".into() };
        assert_eq!(recording.handle(round, &unknown), "owner_unknown");
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &series), None, "unknown is not zero");
        assert!(recorder.status(SystemTime::now()).forwards[0].ssh_orphans.is_none());
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &risk("server_alive_off")), None);

        let none = ssh_hygiene::Outcome::Counted {
            owner_pid: Some(1),
            orphans: vec![],
            options: Ok(vec![]),
            dead_path_after: None,
        };
        recording.handle(round, &none);
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &series), Some(0.0));
    }
}

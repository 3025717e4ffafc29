//! `openclaw-tunnel-exporter doctor`: the three-minute self-rescue list, layer by layer from the network up,
//! each step with pass/fail, its evidence and the next thing to do. It stops explaining at the first failing
//! layer: prove the tunnel alive before debugging the gateway.
//!
//! The steps are the kinds' ([`crate::kinds::doctor`]: each layer's check from the kind that measures it, and
//! the notes other kinds add there); this module walks them, numbers them and renders the report.
//!
//! Exit codes: 0 all passed; 11-18 the number of the first failing step plus 10; 2 a configuration error.

use serde::Serialize;

pub use crate::checkup::Status;
use crate::checkup::{Checkup, ListedStep};
use crate::config::{Config, Forward};
use crate::kinds;

/// One step of the list.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 1-based position; the exit code of a failure is 10 + this.
    pub number: u8,
    /// What is checked.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was seen: figures, the owning pid, the status code.
    pub evidence: String,
    /// What to do next, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Hygiene found beside the verdict, each with its fix (orphaned ssh clients): they do not fail a step
    /// that works, so the exit code stays the first broken layer's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The doctor's findings for one forward.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The forward checked.
    pub forward: String,
    /// Its local address, or its URL.
    pub local: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// 0 when every step passed or was skipped, else 10 + the first failing step's number.
    pub fn exit_code(&self) -> u8 {
        self.steps.iter().find(|s| s.status == Status::Fail).map_or(0, |s| 10 + s.number)
    }

    /// The human rendering.
    pub fn render(&self) -> String {
        let mut out = format!("doctor: forward {} ({})\n", self.forward, self.local);
        for step in &self.steps {
            let status = match step.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skipped => "skip",
                Status::NotChecked => "----",
            };
            out.push_str(&format!("  {} {:<34} {status}  {}\n", step.number, step.name, step.evidence));
            if let Some(next) = &step.next {
                out.push_str(&format!("      next: {next}\n"));
            }
            for note in &step.notes {
                out.push_str(&format!("      note: {note}\n"));
            }
        }
        out
    }
}

/// Run every step for `forward`.
pub async fn run(config: &Config, forward: &Forward) -> Report {
    walk(kinds::doctor(), Checkup::new(config, forward)).await
}

/// Walk `list` for the checkup's forward: each step's notes, then its check; after a failure, the steps above
/// it not checked; a failing step's `next` behind what its notes said must come first.
async fn walk(list: &[ListedStep], mut checkup: Checkup<'_>) -> Report {
    let forward = checkup.forward;
    let mut steps = Vec::new();
    let mut failed = false;
    for (index, step) in list.iter().enumerate() {
        let number = index as u8 + 1;
        let (name, check) = step.for_forward(forward);
        if failed {
            steps.push(Step {
                number,
                name,
                status: Status::NotChecked,
                evidence: "not checked: a layer below failed".into(),
                next: None,
                notes: Vec::new(),
            });
            continue;
        }
        for add_notes in &step.notes {
            add_notes(&mut checkup).await;
        }
        let verdict = check(&mut checkup).await;
        let (notes, before_next) = (std::mem::take(&mut checkup.notes), checkup.before_next.take());
        failed = verdict.status == Status::Fail;
        let next = match (failed, before_next) {
            (true, Some(first)) => verdict.next.map(|next| format!("{first}; then {next}")),
            _ => verdict.next,
        };
        steps.push(Step { number, name, status: verdict.status, evidence: verdict.evidence, next, notes });
    }
    Report { forward: forward.name.clone(), local: forward.address(), steps }
}

/// The gateway host's own list (a config with `forward = []` and a [[gateway]]): the steps a gateway host can
/// check on its own (the bind exposure), numbered as in a forward's list.
pub async fn run_gateway_host(config: &Config) -> Report {
    let mut steps = Vec::new();
    for (index, listed) in kinds::doctor().iter().enumerate() {
        if let Some(check) = listed.step.on_gateway_host {
            let verdict = check(config).await;
            steps.push(Step {
                number: index as u8 + 1,
                name: listed.step.name,
                status: verdict.status,
                evidence: verdict.evidence,
                next: verdict.next,
                notes: Vec::new(),
            });
        }
    }
    Report { forward: "(gateway host)".into(), local: "-".into(), steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkup::{self, DoctorPart, DoctorStep, Layer, Notes, Verdict};

    const ORPHANS: Notes = |c| {
        c.notes.push("an orphan".into());
        c.before_next = Some("end the orphans first");
        Box::pin(std::future::ready(()))
    };

    /// Four layers declared out of order, with notes at two of them: the list puts them in the layers' order.
    fn list() -> Vec<ListedStep> {
        checkup::list(&[
            DoctorPart::Step(
                Layer::Readiness,
                DoctorStep::new("above", |_| Box::pin(async { Verdict::pass("never run".into()) })),
            ),
            DoctorPart::Notes(Layer::SshHost, ORPHANS),
            DoctorPart::Step(
                Layer::SshHost,
                DoctorStep::new("passes", |_| Box::pin(async { Verdict::pass("fine".into()) })),
            ),
            DoctorPart::Step(
                Layer::Session,
                DoctorStep::new("skipped", |_| Box::pin(async { Verdict::skipped("nothing here".into()) })),
            ),
            DoctorPart::Step(
                Layer::Syn,
                DoctorStep::new("fails", |_| Box::pin(async { Verdict::fail("broken".into(), "fix it") })),
            ),
            DoctorPart::Notes(Layer::Syn, ORPHANS),
        ])
    }

    #[tokio::test]
    async fn a_walk_numbers_the_steps_stops_at_the_first_failure_and_puts_what_notes_ask_first() {
        let config = Config::load(None).unwrap();
        let report = walk(&list(), Checkup::new(&config, &config.forwards[0])).await;
        let seen: Vec<_> = report.steps.iter().map(|s| (s.number, s.name, s.status, s.next.as_deref())).collect();
        assert_eq!(
            seen,
            [
                (1, "passes", Status::Pass, None),
                (2, "skipped", Status::Skipped, None),
                (3, "fails", Status::Fail, Some("end the orphans first; then fix it")),
                (4, "above", Status::NotChecked, None),
            ]
        );
        assert_eq!(report.steps[0].notes, ["an orphan"], "a passing step keeps its notes, its next untouched");
        assert!(report.steps[1].notes.is_empty(), "notes belong to the step that took them");
        assert_eq!(report.exit_code(), 13);
        assert_eq!(report.steps[3].evidence, "not checked: a layer below failed");
    }

    #[test]
    fn the_kinds_list_keeps_the_layers_numbered_as_the_exit_codes_say() {
        let names: Vec<_> = kinds::doctor().iter().map(|listed| listed.step.name).collect();
        assert_eq!(
            names,
            [
                "ssh host reachable",
                "ssh owns the local forward",
                "SYN to the local forward",
                "gateway first byte (/healthz)",
                "gateway started and ready",
                "Control UI answers HTML",
                "token accepted and current",
                "gateway bound to loopback only",
            ],
            "the doctor's exit codes (10 + a step's number) are its API: a new layer goes where it belongs and the README says so"
        );
        let host_steps: Vec<_> =
            kinds::doctor().iter().filter(|listed| listed.step.on_gateway_host.is_some()).collect();
        assert_eq!(host_steps.len(), 1, "a gateway host checks the bind exposure alone");
    }
}

//! The ssh hygiene kind (orphans, and the owner's risky options): its record (the two gauges and each
//! forward's lists: [`HygieneRecord`], in [`super::KINDS`]), its adapter (its target: the forward's owner
//! lookup and the generation's shared process table; its logs), and its rows on the status page.

use crate::checkup::{Checkup, Notes};
use crate::clock::unix_seconds;
use crate::config::Forward;
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, state_badge};
use crate::record::families::{families, ForwardLabels, ForwardOptionLabels, Subjects};
use crate::record::kinds::{lock, KindRecord};
use crate::record::status::ForwardStatus;
use crate::record::timeline::human_duration;
use crate::record::tracked::Tracked;
use probes::Probe;
use probes::{ssh_hygiene, ssh_session, Label};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An ssh client that forwards the forward's address but does not own its listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrphanStatus {
    /// Its pid.
    pub pid: u32,
    /// When it started, Unix seconds, when the OS says.
    pub started: Option<f64>,
    /// Its command line (a plink password replaced).
    pub command: String,
    /// The command that ends it (`kill PID`, `taskkill /PID PID` on Windows).
    pub end_with: String,
}

/// A risky ssh option the forward's ssh runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionRiskStatus {
    /// The `option` label: server_alive_off, exit_on_forward_failure_off, connect_timeout_unset,
    /// strict_host_key_checking_off.
    pub option: String,
    /// Why it matters.
    pub why: String,
    /// The `~/.ssh/config` lines that remove it.
    pub fix: String,
}

/// Each forward's orphans and risky options, as `/api/status` shows them: None while unknown.
#[derive(Default)]
struct Lists {
    orphans: Option<Vec<OrphanStatus>>,
    option_risks: Option<Vec<OptionRiskStatus>>,
}

families! {
/// Its families, each declared once: field, type, name and help (labels are the type's).
pub struct HygieneFamilies {
    orphans: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_ssh_orphans", "This user's ssh clients whose command line forwards the forward's local address but that do not own its listener (a failed bind left running without ExitOnForwardFailure): each forwards nothing, pids in /api/status";
    option_risk: Tracked<ForwardOptionLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_ssh_option_risk", "1 when the ssh owning the forward runs with the option (ssh -G of its own command line, once per new owner): server_alive_off (ServerAliveInterval 0), exit_on_forward_failure_off, connect_timeout_unset, strict_host_key_checking_off; absent while unknown";
}
}

/// The hygiene kind's families and each forward's lists.
pub struct HygieneRecord {
    /// Its families, registered once.
    families: HygieneFamilies,
    lists: Mutex<HashMap<String, Lists>>,
}

/// Registry entry: the record, its families registered once.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    let record = HygieneRecord { families: HygieneFamilies::register(registry), lists: Mutex::default() };
    Arc::new(record)
}

impl HygieneRecord {
    fn lists(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lists>> {
        lock(&self.lists)
    }

    /// The forward's orphaned ssh clients: counted (the gauge and the status report), or `None` when they
    /// cannot be known (the gauge removed: unknown is not zero).
    fn record_orphans(&self, forward: &str, orphans: Option<Vec<OrphanStatus>>) {
        let labels = ForwardLabels { forward: forward.to_owned() };
        match &orphans {
            Some(orphans) => {
                self.families.orphans.get_or_create(&labels).set(orphans.len() as i64);
            }
            None => {
                self.families.orphans.remove(&labels);
            }
        }
        self.lists().entry(forward.to_owned()).or_default().orphans = orphans;
    }

    /// The risky options the forward's ssh runs with: each option's gauge 0 or 1, or every one removed when
    /// they are unknown (no ssh of this user owns the listener, `ssh -G` failed).
    fn record_option_risks(&self, forward: &str, risks: Option<&[probes::ssh_options::Risk]>) {
        for risk in probes::ssh_options::Risk::ALL {
            let labels = ForwardOptionLabels { forward: forward.to_owned(), option: risk.label() };
            match risks {
                Some(risks) => {
                    self.families.option_risk.get_or_create(&labels).set(i64::from(risks.contains(&risk)));
                }
                None => {
                    self.families.option_risk.remove(&labels);
                }
            }
        }
        let status = risks.map(|risks| {
            risks
                .iter()
                .map(|risk| OptionRiskStatus {
                    option: risk.label().to_owned(),
                    why: risk.why().to_owned(),
                    fix: risk.fix().to_owned(),
                })
                .collect()
        });
        self.lists().entry(forward.to_owned()).or_default().option_risks = status;
    }
}

impl KindRecord for HygieneRecord {
    /// A forward that is not an ssh forward (a reload turned it into a direct route) has no ssh hygiene: what
    /// it had goes, so its series are absent, not stale.
    fn apply_config(&self, config: &crate::config::Config) {
        let direct: Vec<&str> =
            config.forwards.iter().filter(|f| f.local().is_none()).map(|f| f.name.as_str()).collect();
        if direct.is_empty() {
            return;
        }
        self.families.orphans.retain(|labels| !direct.contains(&labels.forward.as_str()));
        self.families.option_risk.retain(|labels| !direct.contains(&labels.forward.as_str()));
        self.lists().retain(|forward, _| !direct.contains(&forward.as_str()));
    }

    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
        self.lists().retain(|forward, _| subjects.keeps(&ForwardLabels { forward: forward.clone() }));
    }

    /// Every forward has both keys, null while unknown.
    fn forward_status(&self, forward: &str, _now: f64) -> serde_json::Map<String, serde_json::Value> {
        let lists = self.lists();
        let lists = lists.get(forward);
        let value = |list: Option<serde_json::Value>| list.unwrap_or(serde_json::Value::Null);
        let orphans = lists.and_then(|l| l.orphans.as_ref()).and_then(|o| serde_json::to_value(o).ok());
        let risks = lists.and_then(|l| l.option_risks.as_ref()).and_then(|r| serde_json::to_value(r).ok());
        [(ORPHANS_KEY.to_owned(), value(orphans)), (RISKS_KEY.to_owned(), value(risks))].into_iter().collect()
    }
}

/// Its keys in a forward's `/api/status` entry.
const ORPHANS_KEY: &str = "ssh_orphans";
const RISKS_KEY: &str = "ssh_option_risks";

/// The recording of one forward's hygiene checks.
pub struct HygieneKind {
    forward: Arc<Forward>,
    /// The forward's `hygiene_interval`, as its start found it set.
    interval: Duration,
    record: Arc<HygieneRecord>,
}

/// Registry entry: its record, and an ssh forward's hygiene probe unless its `hygiene_interval` is off. A route
/// without ssh has no ssh to audit: no task, no series.
pub struct SshHygiene;

impl super::Kind for SshHygiene {
    type Record = HygieneRecord;
    const RECORD: crate::record::kinds::NewKindRecord = record;
    const PAGE: &'static [super::PagePart] = &[super::PagePart::Row(super::Row::Hygiene, page_rows)];
    const DOCTOR: &'static [crate::checkup::DoctorPart] =
        &[crate::checkup::DoctorPart::Notes(crate::checkup::Layer::Session, DOCTOR_NOTES)];

    fn start(start: &mut super::Start<'_>, record: &Arc<HygieneRecord>) {
        for forward in start.forwards() {
            let (Some(interval), Some(local)) = (forward.hygiene_interval, forward.local()) else { continue };
            let session = start.session_target(local);
            let (probe, kind) = HygieneKind::new(forward, interval, record.clone(), session, start.process_table);
            start.drive(probe, kind);
        }
    }
}

impl HygieneKind {
    /// Its probe (a lookup of its own, sharing the generation's process walk through `session`, and the
    /// generation's process table) and its recording.
    pub fn new(
        forward: Arc<Forward>,
        interval: Duration,
        record: Arc<HygieneRecord>,
        session: ssh_session::Target,
        table: &ssh_hygiene::ProcessTable,
    ) -> (ssh_hygiene::Target, HygieneKind) {
        let target = ssh_hygiene::Target::new(session.addr, session, table.clone());
        (target, HygieneKind { forward, interval, record })
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
        Schedule::forward(&self.forward, self.interval)
    }

    fn handle(&mut self, _round: Round, outcome: &ssh_hygiene::Outcome) -> &'static str {
        let orphans = outcome.orphans().map(|orphans| orphans.iter().map(orphan_status).collect());
        self.record.record_orphans(&self.forward.name, orphans);
        let risks = match outcome {
            ssh_hygiene::Outcome::Counted { options: Ok(risks), .. } => Some(risks.as_slice()),
            _ => None,
        };
        self.record.record_option_risks(&self.forward.name, risks);
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
                    forward, local = %self.forward.address(), owner_pid = ?owner_pid, pids = %pids.join(" "),
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

// Its rows on the status page (at `Row::Hygiene` in its entry's `PAGE`): orphans, then the owner's risky options.

/// Its rows: each shown only when it has something to say.
fn page_rows(forward: &ForwardStatus, now: f64) -> String {
    fn list<T: serde::de::DeserializeOwned>(forward: &ForwardStatus, key: &str) -> Option<Vec<T>> {
        forward.kinds.get(key).cloned().and_then(|value| serde_json::from_value(value).ok())
    }
    let orphans: Option<Vec<OrphanStatus>> = list(forward, ORPHANS_KEY);
    let risks: Option<Vec<OptionRiskStatus>> = list(forward, RISKS_KEY);
    orphans_row(orphans.as_deref(), now) + &option_risks_row(risks.as_deref())
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

/// The dead-path detection beyond which the doctor says what it costs after a wake: the shipped ssh_config's
/// ServerAliveInterval 15 x ServerAliveCountMax 3.
const SLOW_DEAD_PATH: Duration = Duration::from_secs(45);

/// Its notes for the doctor's step 2, the forward's ssh hygiene: the risky options its ssh runs with, each with
/// the `~/.ssh/config` lines that fix it; its dead-path time when slow; this user's ssh clients that forward its
/// address but do not own its listener, each with its age, command line and the command that ends it, and how
/// to keep more from appearing. With orphans, the step's next action says to end them first.
const DOCTOR_NOTES: Notes = |c| Box::pin(add_doctor_notes(c));

async fn add_doctor_notes(checkup: &mut Checkup<'_>) {
    let (notes, orphans_found) =
        doctor_notes(checkup.forward, checkup.config.scheduler.owner_lookup, checkup.timeout).await;
    checkup.notes.extend(notes);
    if orphans_found {
        checkup.before_next = Some("end the orphaned ssh clients below first");
    }
}

async fn doctor_notes(forward: &Forward, lookup: ssh_session::Lookup, timeout: Duration) -> (Vec<String>, bool) {
    let Some(local) = forward.local() else { return (Vec::new(), false) };
    let session = ssh_session::Target { lookup, ..ssh_session::Target::new(local) };
    let mut target = ssh_hygiene::Target::new(local, session, Default::default());
    let outcome = target.probe(timeout).await;
    let mut notes = Vec::new();
    if let ssh_hygiene::Outcome::Counted { options: Ok(risks), .. } = &outcome {
        for risk in risks {
            notes.push(format!(
                "the forward's ssh runs with {} ({}): add to ~/.ssh/config under its Host: {}",
                risk.label(),
                risk.why(),
                risk.fix().replace('\n', "; ")
            ));
        }
    }
    if let ssh_hygiene::Outcome::Counted { dead_path_after: Some(after), .. } = &outcome {
        if *after > SLOW_DEAD_PATH {
            notes.push(format!(
                "after a wake this ssh notices its dead path only after ServerAliveInterval x ServerAliveCountMax = {} s, \
                 and its supervisor's restart delay comes on top (autossh AUTOSSH_POLL, launchd ThrottleInterval, \
                 systemd RestartSec): openclaw_tunnel_resume_seconds measures the sum; ServerAliveInterval 15 and \
                 ServerAliveCountMax 3 (45 s) in ~/.ssh/config under its Host shorten it",
                after.as_secs()
            ));
        }
    }
    let Some(orphans) = outcome.orphans().filter(|orphans| !orphans.is_empty()) else { return (notes, false) };
    let now = std::time::SystemTime::now();
    notes.extend(orphans.iter().map(|orphan| {
        let status = orphan_status(orphan);
        let age = orphan
            .started
            .and_then(|started| now.duration_since(started).ok())
            .map_or("age unknown".into(), |age| format!("started {} ago", human_duration(age.as_secs_f64())));
        format!(
            "orphaned ssh pid {} ({age}) forwards {} but holds nothing: `{}`; end it with `{}`",
            orphan.pid, local, status.command, status.end_with
        )
    }));
    notes.push(
        "an ssh whose -L bind fails keeps running unless `ExitOnForwardFailure yes` is set (in ~/.ssh/config \
         under the forward's Host, or -o ExitOnForwardFailure=yes): set it so a second tunnel exits instead"
            .into(),
    );
    (notes, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{Format, Recorder};
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn orphans_are_counted_listed_and_unknown_is_no_series() {
        let recorder = Arc::new(Recorder::with_kinds(&[record], Vec::new()));
        let config = crate::config::Config::load(None).unwrap();
        recorder.apply_config(&config);
        let forward = Arc::new(config.forwards[0].clone());
        let session = ssh_session::Target::new(forward.local().unwrap());
        let own = recorder.kind_record::<HygieneRecord>().unwrap();
        let (_, mut recording) = HygieneKind::new(
            forward.clone(),
            Duration::from_secs(30),
            own,
            session,
            &ssh_hygiene::ProcessTable::default(),
        );
        let listed = |key: &str| recorder.status(SystemTime::now()).forwards[0].kinds[key].clone();
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
        let orphans: Vec<OrphanStatus> = serde_json::from_value(listed(ORPHANS_KEY)).expect("listed");
        assert_eq!(orphans[0].pid, 4242);
        assert_eq!(orphans[0].started, Some(1_800_000_000.0 - 600.0));
        assert_eq!(orphans[0].end_with, end_command(4242));
        assert_eq!(recording.state(&counted), (Ok(vec![4242]), Some(vec!["server_alive_off"])));
        let risk = |option: &str| {
            format!("openclaw_tunnel_ssh_option_risk{{forward=\"{}\",option=\"{option}\"}}", forward.name)
        };
        let text = recorder.encode(Format::Prometheus, t0);
        assert_eq!(sample(&text, &risk("server_alive_off")), Some(1.0));
        assert_eq!(sample(&text, &risk("exit_on_forward_failure_off")), Some(0.0));
        let risks: Vec<OptionRiskStatus> = serde_json::from_value(listed(RISKS_KEY)).expect("known");
        assert_eq!(risks[0].fix, "ServerAliveInterval 15\nServerAliveCountMax 3");

        let unknown = ssh_hygiene::Outcome::OwnerUnknown { detail: "x".into() };
        assert_eq!(recording.handle(round, &unknown), "owner_unknown");
        assert_eq!(sample(&recorder.encode(Format::Prometheus, t0), &series), None, "unknown is not zero");
        assert!(listed(ORPHANS_KEY).is_null(), "unknown is null, as before a count");
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

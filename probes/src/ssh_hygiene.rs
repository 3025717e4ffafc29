//! The hygiene of a forward's ssh: its orphans (this user's ssh clients whose command line forwards the
//! forward's local address but that do not own its listener) and the risky options its owner runs with.
//!
//! ssh that cannot bind its `-L` listener prints "Address already in use" and keeps running unless
//! `ExitOnForwardFailure yes` is set: a live session that forwards nothing. Repeated launches leave them
//! behind (one laptop in OpenClaw's tracker had ten after two days), and the next `ssh -L` a person starts
//! silently becomes one. The probe asks the forward's listener for its owner (the ssh session probe, one
//! system call in the steady state) and reads this user's ssh processes from the process table
//! ([`crate::ssh_processes`], no process spawned, one read shared by every forward within
//! [`TABLE_MAX_AGE`]); every ssh forwarding the address that is not the owner is an orphan.
//!
//! A forward written in the ssh config (`LocalForward` under a `Host`, started as `ssh -N mac`) is on no command
//! line: for each of this user's ssh processes that names a destination but no forward of its own, `ssh -G` of
//! its own command line ([`ssh_options::resolve`]: its vetted `-F`, `--` before the host, a 5 s bound) says
//! which forwards its config gives it ([`ConfigForwards`]): one call per distinct command line, kept until that
//! line is gone from the table, at most [`SSH_G_PER_MINUTE`] calls a minute.
//!
//! When the owner changes, its own command line (from the same table) is resolved once with `ssh -G`
//! ([`crate::ssh_options`]): the options that make a dead path look alive. Never again for the same owner.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::ssh_options::{self, Risk};
use crate::ssh_processes::{self, SshProcess};
use crate::ssh_session;

/// How long one read of the process table serves every forward: the owner lookup's own period (its /proc
/// walk is shared for a second), so a thousand forwards read the table once per round, not a thousand times.
pub const TABLE_MAX_AGE: Duration = Duration::from_secs(1);

/// The last read of this user's ssh processes, shared by the targets holding a clone.
#[derive(Clone, Default)]
pub struct ProcessTable {
    last: Arc<Mutex<Option<Read>>>,
    /// The forwards each command line's ssh config gives it, shared likewise.
    pub config_forwards: ConfigForwards,
}

/// The most `ssh -G` calls [`ConfigForwards`] makes in a minute: a process table full of new command lines
/// costs a handful of spawns a minute, never one per process per round.
pub const SSH_G_PER_MINUTE: usize = 6;

/// The bound of one `ssh -G` for a command line's forwards.
pub const SSH_G_TIMEOUT: Duration = Duration::from_secs(5);

/// The forwards that ssh processes get from their ssh config, by command line, from `ssh -G`.
#[derive(Clone, Default)]
pub struct ConfigForwards {
    state: Arc<Mutex<ConfigForwardsState>>,
}

#[derive(Default)]
struct ConfigForwardsState {
    /// Each command line resolved, and the listen addresses its config forwards (none when `ssh -G` failed or
    /// its `-F` was refused: not asked again while the line runs); or when its call started, while it runs (a
    /// call cut off by the round's hard timeout is tried again once that is past).
    by_argv: std::collections::HashMap<Vec<String>, Result<Vec<SocketAddr>, Instant>>,
    /// When the calls of the last minute were made.
    calls: std::collections::VecDeque<Instant>,
}

impl std::fmt::Debug for ConfigForwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigForwards")
    }
}

impl ConfigForwards {
    /// Whether `process` is one whose forwards may come only from its config: ssh (not plink), a destination,
    /// no `-L` or `-o LocalForward=` of its own.
    fn wanted(process: &SshProcess) -> bool {
        process.argv.first().is_some_and(|argv0| ssh_processes::program_name(argv0) == "ssh")
            && ssh_processes::parse_command(&process.argv).is_some_and(|found| found.local_forwards.is_empty())
    }

    /// The config-given listen addresses of each process of `processes` that has them, by pid. Command lines
    /// not yet resolved are resolved now, within the minute's budget (the rest next round); those gone from
    /// `processes` are forgotten.
    pub async fn of(
        &self,
        processes: &[SshProcess],
        timeout: Duration,
    ) -> std::collections::HashMap<u32, Vec<SocketAddr>> {
        let wanted: Vec<&SshProcess> = processes.iter().filter(|p| Self::wanted(p)).collect();
        let todo: Vec<Vec<String>> = {
            let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.by_argv.retain(|argv, _| wanted.iter().any(|p| &p.argv == argv));
            let now = Instant::now();
            state.calls.retain(|at| now.duration_since(*at) < Duration::from_secs(60));
            let budget = SSH_G_PER_MINUTE.saturating_sub(state.calls.len());
            let mut todo: Vec<Vec<String>> = Vec::new();
            for process in &wanted {
                let due = match state.by_argv.get(&process.argv) {
                    None => true,
                    Some(Ok(_)) => false,
                    Some(Err(started)) => now.duration_since(*started) > SSH_G_TIMEOUT * 2,
                };
                if todo.len() < budget && due {
                    // Taken: another forward's round meanwhile sees none yet rather than calling ssh -G again.
                    state.by_argv.insert(process.argv.clone(), Err(now));
                    todo.push(process.argv.clone());
                }
            }
            state.calls.extend(std::iter::repeat_n(now, todo.len()));
            todo
        };
        let mut resolved = Vec::with_capacity(todo.len());
        for argv in todo {
            let listens = ssh_options::resolve(&argv, timeout.min(SSH_G_TIMEOUT))
                .await
                .map(|text| ssh_options::local_listens_of_ssh_g(&text))
                .unwrap_or_default();
            resolved.push((argv, Ok(listens)));
        }
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.by_argv.extend(resolved);
        wanted
            .iter()
            .filter_map(|p| match state.by_argv.get(&p.argv) {
                Some(Ok(listens)) if !listens.is_empty() => Some((p.pid, listens.clone())),
                _ => None,
            })
            .collect()
    }
}

/// One read of the table: the processes, or why they cannot be read here.
type TableRead = Result<Vec<SshProcess>, String>;
/// When the table was read, and what it said.
type Read = (Instant, Arc<TableRead>);

impl std::fmt::Debug for ProcessTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessTable")
    }
}

impl ProcessTable {
    /// The table, read again when the last read is older than [`TABLE_MAX_AGE`] (blocking: run it off the
    /// runtime's threads).
    fn read(&self) -> Arc<TableRead> {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, table)) = last.as_ref().filter(|(when, _)| when.elapsed() < TABLE_MAX_AGE) {
            return table.clone();
        }
        let table = Arc::new(ssh_processes::list());
        *last = Some((Instant::now(), table.clone()));
        table
    }
}

/// The forward whose orphans are counted.
#[derive(Debug, Clone)]
pub struct Target {
    /// The forward's local address.
    pub addr: SocketAddr,
    /// Its owner lookup (remembers the owner, so the steady state is one system call).
    pub session: ssh_session::Target,
    /// The process table, shared with the other forwards of the same configuration.
    pub table: ProcessTable,
    /// The owner whose options were last resolved, and what they were: resolved again only for a new owner.
    pub audited: Option<(u32, Result<ssh_options::Audit, String>)>,
}

impl Target {
    /// A target with nothing remembered.
    pub fn new(addr: SocketAddr, session: ssh_session::Target, table: ProcessTable) -> Target {
        Target { addr, session, table, audited: None }
    }
}

/// The risky options the listener's owner runs with, or why they are unknown (no ssh of this user owns the
/// listener, plink, `ssh -G` failed).
pub type Options = Result<Vec<Risk>, String>;

/// One ssh that forwards the address but does not hold its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its pid.
    pub pid: u32,
    /// When it started, when the OS says.
    pub started: Option<SystemTime>,
    /// What identifies it ([`crate::ssh_processes::SshProcess::identity`]): its program, forwards, `-p`, `-J`
    /// and destination; nothing else of its command line.
    pub command: String,
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The ssh processes forwarding the address that do not own its listener (none: an empty list).
    Counted {
        /// The listener's owner, when something listens.
        owner_pid: Option<u32>,
        /// The orphans, by pid.
        orphans: Vec<Orphan>,
        /// The owner's risky options.
        options: Options,
        /// How long the owner takes to notice a dead path (`ServerAliveInterval` x `ServerAliveCountMax`),
        /// when its options were read and keepalives are on.
        dead_path_after: Option<Duration>,
    },
    /// The listener's owner could not be read, so which ssh holds it is unknown.
    OwnerUnknown {
        /// Why, for the log.
        detail: String,
    },
    /// This user's processes' command lines cannot be read here.
    Unsupported {
        /// Why, for the log.
        detail: String,
    },
}

crate::labels!(Outcome {
    Outcome::Counted { .. } => "counted",
    Outcome::OwnerUnknown { .. } => "owner_unknown",
    Outcome::Unsupported { .. } => "unsupported",
});

impl Outcome {
    /// The orphans, when counted.
    pub fn orphans(&self) -> Option<&[Orphan]> {
        match self {
            Outcome::Counted { orphans, .. } => Some(orphans),
            _ => None,
        }
    }
}

impl From<crate::CutOff> for Outcome {
    fn from(_: crate::CutOff) -> Self {
        Outcome::OwnerUnknown { detail: "the lookup hung".into() }
    }
}

impl crate::Probe for Target {
    const KIND: &'static str = "ssh_hygiene";
    type Outcome = Outcome;

    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let owner_pid = match self.session.probe(timeout).await {
            ssh_session::Outcome::Up(owner) | ssh_session::Outcome::NotSsh(owner) => Some(owner.pid),
            ssh_session::Outcome::NoListener => None,
            // The ssh runs inside WSL2: its options and orphans are the companion exporter's there to read.
            ssh_session::Outcome::WslRelay { .. } => {
                return Outcome::OwnerUnknown {
                    detail: "WSL's relay holds the listener: the ssh runs inside WSL2, where its companion audits it"
                        .into(),
                }
            }
            ssh_session::Outcome::Unreadable { detail }
            | ssh_session::Outcome::Unsupported { detail }
            | ssh_session::Outcome::Unknown { detail } => return Outcome::OwnerUnknown { detail },
        };
        let table = self.table.clone();
        let read = tokio::task::spawn_blocking(move || table.read());
        let table = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(table)) => table,
            Ok(Err(join_error)) => return Outcome::Unsupported { detail: format!("process table: {join_error}") },
            Err(_) => return Outcome::OwnerUnknown { detail: "reading the process table timed out".into() },
        };
        let processes = match table.as_ref() {
            Ok(processes) => processes,
            Err(detail) => return Outcome::Unsupported { detail: detail.clone() },
        };
        let from_config = self.table.config_forwards.of(processes, timeout).await;
        let orphans = orphans_of(processes, self.addr, owner_pid, &from_config);
        let owner = owner_pid.and_then(|pid| processes.iter().find(|process| process.pid == pid));
        let audit = match owner {
            None => Err("no ssh of this user owns the listener".to_owned()),
            Some(owner) => match &self.audited {
                Some((pid, audit)) if *pid == owner.pid => audit.clone(),
                _ => {
                    let audit = ssh_options::audit(&owner.argv, timeout).await;
                    self.audited = Some((owner.pid, audit.clone()));
                    audit
                }
            },
        };
        let dead_path_after = audit.as_ref().ok().and_then(|audit| audit.dead_path_after);
        Outcome::Counted { owner_pid, orphans, options: audit.map(|audit| audit.risks), dead_path_after }
    }
}

/// The processes forwarding `addr` other than its listener's owner, by pid.
/// `from_config`: the listen addresses each process's ssh config gives it, by pid ([`ConfigForwards::of`]).
pub fn orphans_of(
    processes: &[SshProcess],
    addr: SocketAddr,
    owner_pid: Option<u32>,
    from_config: &std::collections::HashMap<u32, Vec<SocketAddr>>,
) -> Vec<Orphan> {
    let forwards = |process: &SshProcess| {
        process.forwards(addr)
            || from_config
                .get(&process.pid)
                .is_some_and(|listens| listens.iter().any(|listen| ssh_processes::listen_covers(*listen, addr)))
    };
    let mut orphans: Vec<Orphan> = processes
        .iter()
        .filter(|process| Some(process.pid) != owner_pid && forwards(process))
        .map(|process| Orphan { pid: process.pid, started: process.started, command: process.identity() })
        .collect();
    orphans.sort_by_key(|orphan| orphan.pid);
    orphans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, line: &str) -> SshProcess {
        SshProcess { pid, started: None, argv: line.split_whitespace().map(str::to_owned).collect() }
    }

    #[test]
    fn every_ssh_forwarding_the_address_but_the_owner_is_an_orphan() {
        let local: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        let table = [
            process(30, "ssh -N -L 18789:127.0.0.1:18789 mac"),
            process(10, "ssh -N -L 127.0.0.1:18789:127.0.0.1:18789 mac"),
            process(20, "ssh -N -L 18790:127.0.0.1:18789 mac"),
            process(40, "ssh mac uptime"),
        ];
        let pids = |orphans: Vec<Orphan>| orphans.iter().map(|o| o.pid).collect::<Vec<_>>();
        let none = std::collections::HashMap::new();
        assert_eq!(pids(orphans_of(&table, local, Some(10), &none)), [30]);
        assert_eq!(pids(orphans_of(&table, local, Some(30), &none)), [10]);
        assert_eq!(pids(orphans_of(&table, local, None, &none)), [10, 30], "nothing listens: both forward nothing");
        assert_eq!(pids(orphans_of(&table, local, Some(99), &none)), [10, 30], "another program holds the port");
        assert!(orphans_of(&table[..1], local, Some(30), &none).is_empty());
        // `ssh -N mac` whose config gives it the forward (LocalForward under Host mac) counts as a -L does.
        let from_config = std::collections::HashMap::from([(40, vec!["127.0.0.1:18789".parse().unwrap()])]);
        assert_eq!(pids(orphans_of(&table, local, Some(10), &from_config)), [30, 40]);
        let elsewhere = std::collections::HashMap::from([(40, vec!["127.0.0.1:9999".parse().unwrap()])]);
        assert_eq!(pids(orphans_of(&table, local, Some(10), &elsewhere)), [30]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn config_forwards_come_from_ssh_g_once_per_line_within_the_minutes_budget() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ssh_config");
        let mut text = String::new();
        for n in 0..8 {
            text.push_str(&format!("Host mac{n}\n  LocalForward 127.0.0.1:{} 127.0.0.1:18789\n", 28000 + n));
        }
        std::fs::write(&config, text).unwrap();
        let cfg = config.to_str().unwrap();
        let processes: Vec<SshProcess> = (0..8).map(|n| process(100 + n, &format!("ssh -F {cfg} -N mac{n}"))).collect();
        let forwards = ConfigForwards::default();
        let first = forwards.of(&processes, Duration::from_secs(5)).await;
        assert_eq!(first.len(), SSH_G_PER_MINUTE, "six lines resolved this minute, the rest later: {first:?}");
        assert_eq!(first[&100], vec!["127.0.0.1:28000".parse::<SocketAddr>().unwrap()]);
        // Asked again: nothing new is spawned (the minute's budget is spent), what was resolved is kept.
        let again = forwards.of(&processes, Duration::from_secs(5)).await;
        assert_eq!(again, first);
        assert_eq!(forwards.state.lock().unwrap().calls.len(), SSH_G_PER_MINUTE);
        // A line gone from the table is forgotten.
        let _ = forwards.of(&processes[..1], Duration::from_secs(5)).await;
        assert_eq!(forwards.state.lock().unwrap().by_argv.len(), 1);
    }

    #[test]
    fn only_ssh_command_lines_with_a_destination_and_no_forward_of_their_own_are_resolved() {
        for (line, wanted) in [
            ("ssh -N mac", true),
            ("/usr/bin/ssh -F /home/me/.ssh/other -N mac", true),
            ("ssh -N -L 18789:127.0.0.1:18789 mac", false),
            ("plink -N mac", false),
            ("ssh -V", false),
        ] {
            assert_eq!(ConfigForwards::wanted(&process(1, line)), wanted, "{line}");
        }
        let option = ["ssh", "-o", "LocalForward=18789 127.0.0.1:18789", "-N", "mac"].map(str::to_owned).to_vec();
        assert!(
            !ConfigForwards::wanted(&SshProcess { pid: 1, started: None, argv: option }),
            "-o LocalForward is its own"
        );
    }

    #[tokio::test]
    async fn a_listener_of_this_process_with_no_ssh_around_has_no_orphans() {
        use crate::Probe;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut target = Target::new(addr, ssh_session::Target::new(addr), ProcessTable::default());
        let outcome = target.probe(Duration::from_secs(5)).await;
        if cfg!(any(target_os = "linux", target_os = "macos")) {
            let options = Err("no ssh of this user owns the listener".to_owned());
            let expected = Outcome::Counted {
                owner_pid: Some(std::process::id()),
                orphans: vec![],
                options,
                dead_path_after: None,
            };
            assert_eq!(outcome, expected);
        }
    }
}

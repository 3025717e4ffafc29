//! SSH session probe: which process owns the forward's local listener, and is it an ssh client?
//!
//! A SYN success proves only that *something* listens. This probe finds the listening socket's owner, by one
//! of two lookups ([`Lookup`]):
//! - [`Lookup::Procfs`] (Linux only, its default): a LISTEN-only sock_diag dump ([`crate::socket_table`];
//!   /proc/net/tcp{,6} as the fallback) gives the socket inode, and the process whose /proc/PID/fd links to
//!   `socket:[INODE]` owns it (one walk of /proc shared by every lookup within a second).
//! - [`Lookup::Listeners`] (the default on macOS and Windows, selectable on Linux): the `listeners` crate reads
//!   the OS's socket and process tables (libproc on macOS, the IP Helper table on Windows, /proc on Linux)
//!   and `os` adds the parent and the one-call steady-state check.
//!
//! Either way the steady state costs one system call: the remembered owner is asked whether it still holds
//! the listening socket (Linux: readlink of its fd; macOS: `proc_pidfdinfo` of its fd; Windows: the listener
//! table, which carries each socket's pid). Only a change of owner runs the full lookup, on a blocking thread.
//! No process is spawned. What a lookup found is judged by [`decide`], the same code on every OS: which
//! listener serves the address, whether the owner is an ssh client (`ssh`, `ssh.exe`, `plink`), its parent.
//!
//! Reading another user's process needs the same uid or privilege (CAP_SYS_PTRACE, root on macOS). When the
//! listener exists but no readable process owns it, the outcome is [`Outcome::Unreadable`]: unknown, never
//! "down".

pub mod decide;
mod gate;
mod os;
mod portable;
#[cfg(target_os = "linux")]
mod procfs_lookup;
pub mod wsl;

use std::net::SocketAddr;
use std::time::Duration;

pub use decide::{is_ssh_client, is_wsl_relay};
pub use gate::{far_end_is_ours, Trust};

/// How the owner of a listener is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// Linux's own tables: sock_diag netlink and /proc (the `procfs` crate). Linux only.
    Procfs,
    /// The `listeners` crate (libproc on macOS, IP Helper on Windows, /proc on Linux) plus one OS call for
    /// the steady state: the path every macOS and Windows laptop runs, and a selectable one on Linux.
    Listeners,
}

impl Lookup {
    /// Every lookup, in the order the config names them.
    pub const ALL: [Lookup; 2] = [Lookup::Procfs, Lookup::Listeners];

    /// The lookup this OS uses unless told otherwise: procfs on Linux, listeners elsewhere.
    pub const fn platform_default() -> Lookup {
        if cfg!(target_os = "linux") {
            Lookup::Procfs
        } else {
            Lookup::Listeners
        }
    }

    /// True when this lookup can run on this OS.
    pub const fn available(self) -> bool {
        match self {
            Lookup::Procfs => cfg!(target_os = "linux"),
            Lookup::Listeners => true,
        }
    }

    /// The config value naming this lookup.
    pub const fn as_str(self) -> &'static str {
        match self {
            Lookup::Procfs => "procfs",
            Lookup::Listeners => "listeners",
        }
    }
}

/// The listener to look up, and what the task that probes it remembers.
#[derive(Debug, Clone)]
pub struct Target {
    /// The ssh -L listener, e.g. 127.0.0.1:18789.
    pub addr: SocketAddr,
    /// The owner found last time (each probe sets it). While it still holds the listening socket, nothing
    /// has changed and one system call is the whole probe; otherwise it is checked first, before all
    /// processes.
    pub last_owner: Option<Owner>,
    /// Which lookup finds a new owner.
    pub lookup: Lookup,
    /// The process walk shared by the targets given the same index (see [`OwnerIndex`]).
    pub index: OwnerIndex,
    /// When every listener on the port that could take the connection was last read (a dump of the port's
    /// listening sockets, every user's). In between, the Linux steady state asks the kernel only which listener
    /// takes the connection now (one exact lookup, no walk of anyone's listeners): [`SURVEY_EVERY`].
    pub last_survey: Option<std::time::Instant>,
    /// The companion exporter inside WSL2 that says whether its ssh owns this forward (`wsl_companion`), asked
    /// whenever this user's WSL relay holds the listener ([`wsl`]).
    pub wsl_companion: Option<SocketAddr>,
    /// The WSL relay that held the companion's address last time (its steady state: one system call).
    pub wsl_companion_holder: Option<Owner>,
}

/// How often the steady state reads every candidate listener of the port, not only the one that takes the
/// connection: a newcomer less specific than the owner's bind (which takes no connection while the owner
/// holds its own) is reported within this long. The dump walks every user's listeners in the kernel
/// (issue 38: 19,000 of another user's cost 1-2 ms a dump), so it runs this often, not every round.
pub const SURVEY_EVERY: Duration = Duration::from_secs(5);

impl Target {
    /// A target with no remembered owner and an index of its own, looked up the platform's default way.
    pub fn new(addr: SocketAddr) -> Target {
        Target {
            addr,
            last_owner: None,
            lookup: Lookup::platform_default(),
            index: OwnerIndex::default(),
            last_survey: None,
            wsl_companion: None,
            wsl_companion_holder: None,
        }
    }

    /// Whether this run reads every candidate listener (none read yet, or the last read is [`SURVEY_EVERY`] old).
    pub(crate) fn survey_due(&self) -> bool {
        self.last_survey.is_none_or(|at| at.elapsed() >= SURVEY_EVERY)
    }
}

/// The last walk of every process's sockets (Linux's procfs lookup), shared by the targets that hold a
/// clone: at start, or when a restarted ssh holds many forwards, each forward would otherwise walk every
/// process's fds on its own (quadratic; the scale benchmark's 1,000 forwards took seconds). The exporter
/// gives one to all the forwards of a configuration; elsewhere it is empty.
#[derive(Clone, Default)]
pub struct OwnerIndex {
    #[cfg(target_os = "linux")]
    walk: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<procfs_lookup::SocketIndex>>>>,
}

impl std::fmt::Debug for OwnerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerIndex")
    }
}

/// A process that owns the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`comm` on Linux, `proc_name` on macOS, the image name on Windows), e.g. `ssh`.
    pub name: String,
    /// Its parent's pid.
    pub parent_pid: u32,
    /// Its parent's command name, e.g. `autossh`, when readable.
    pub parent_name: Option<String>,
    /// The listening socket's inode (Linux; 0 where the platform has none).
    pub socket_inode: u64,
    /// The owner's fd number for that socket (Linux, macOS; -1 where the platform has none).
    pub socket_fd: i32,
    /// The uid it runs as (Unix; `None` on Windows or when unreadable).
    pub uid: Option<u32>,
    /// Whether it runs as the exporter's own user (the uid on Unix, the token's user SID on Windows); `None`
    /// when that cannot be read.
    pub same_user: Option<bool>,
    /// The name of the user it runs as, when the system's user database names the uid.
    pub user_name: Option<String>,
}

impl Owner {
    /// True when the owner is an ssh client (run directly, by autossh, launchd, systemd or a service alike).
    pub fn is_ssh(&self) -> bool {
        decide::is_ssh_client(&self.name)
    }

    /// Who it runs as, for people: `nobody (uid 65534), another user`, `uid 1000, this user`, `another
    /// user`, `an unknown user`.
    pub fn user(&self) -> String {
        let named = |uid: u32| match &self.user_name {
            Some(name) => format!("{name} (uid {uid})"),
            None => format!("uid {uid}"),
        };
        match (self.uid, self.same_user) {
            (Some(uid), Some(true)) => format!("{}, this user", named(uid)),
            (Some(uid), _) => format!("{}, another user", named(uid)),
            (None, Some(true)) => "this user".into(),
            (None, Some(false)) => "another user".into(),
            (None, None) => "an unknown user".into(),
        }
    }

    /// The owner found by a lookup, with who it runs as read from the OS: the one place every lookup
    /// (procfs, the portable one) builds an owner.
    pub(crate) fn found(found: Found) -> Owner {
        let (uid, same_user) = os::user_of(found.pid);
        let user_name = uid.and_then(user_name);
        let Found { pid, name, parent_pid, parent_name, socket_inode, socket_fd } = found;
        Owner { pid, name, parent_pid, parent_name, socket_inode, socket_fd, uid, same_user, user_name }
    }
}

/// The name the system's user database gives `uid` (Unix; `None` on Windows, which has no uids).
pub fn user_name(uid: u32) -> Option<String> {
    #[cfg(unix)]
    {
        uzers::get_user_by_uid(uid).map(|user| user.name().to_string_lossy().into_owned())
    }
    #[cfg(not(unix))]
    {
        let _ = uid;
        None
    }
}

/// `nobody (uid 65534)`, or `uid 65534` when the user database has no name for it.
pub fn describe_uid(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// What a lookup learned about a listener's owning process, before its user is read.
pub(crate) struct Found {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: Option<String>,
    pub(crate) socket_inode: u64,
    pub(crate) socket_fd: i32,
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An ssh process owns the listener.
    Up(Owner),
    /// Nothing listens on the address.
    NoListener,
    /// Something other than ssh owns the listener.
    NotSsh(Owner),
    /// This user's WSL relay holds the listener (Windows, with the ssh inside WSL2): the session is up only
    /// while the companion exporter inside says its own ssh owns the forward ([`wsl`]).
    WslRelay {
        /// The relay process.
        relay: Owner,
        /// What the companion said this round.
        companion: wsl::Companion,
    },
    /// A listener exists but its owner could not be read (another user's process, no privilege).
    Unreadable {
        /// Why, for the log.
        detail: String,
    },
    /// The socket tables could not be read at all on this platform.
    Unsupported {
        /// Why, for the log.
        detail: String,
    },
    /// The lookup did not answer in time (timed out, or the round was cut off): nothing is known this round.
    Unknown {
        /// Why, for the log.
        detail: String,
    },
}

crate::labels!(Outcome {
    Outcome::Up(_) => "up",
    Outcome::NoListener => "no_listener",
    Outcome::NotSsh(_) => "not_ssh",
    Outcome::WslRelay { .. } => "wsl_relay",
    Outcome::Unreadable { .. } => "unreadable",
    Outcome::Unsupported { .. } => "unsupported",
    Outcome::Unknown { .. } => "unknown",
});

impl Outcome {
    /// The owner, when one was found.
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Outcome::Up(owner) | Outcome::NotSsh(owner) | Outcome::WslRelay { relay: owner, .. } => Some(owner),
            _ => None,
        }
    }

    /// Why the owner is not known (who holds an unreadable listener, by user and uid), when it is not.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Unreadable { detail } | Outcome::Unsupported { detail } | Outcome::Unknown { detail } => {
                Some(detail)
            }
            _ => None,
        }
    }
}

impl From<crate::CutOff> for Outcome {
    /// A lookup that hung says nothing about the session: unknown, not down.
    fn from(_: crate::CutOff) -> Self {
        Outcome::Unknown { detail: "the lookup was cut off".into() }
    }
}

impl crate::Probe for Target {
    const KIND: &'static str = "ssh_session";
    type Outcome = Outcome;

    /// Find the owner of `addr`'s listening socket, and remember it for the next run. This user's WSL relay
    /// is judged by what its companion says, asked within what is left of `timeout`.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let survey = self.survey_due();
        let started = tokio::time::Instant::now();
        let mut outcome = run(self, timeout).await;
        if let Outcome::WslRelay { companion, .. } = &mut outcome {
            *companion = match self.wsl_companion {
                Some(at) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    wsl::ask(at, self.addr.port(), self.lookup, &mut self.wsl_companion_holder, left).await
                }
                None => wsl::Companion::NotConfigured,
            };
        }
        self.last_owner = outcome.owner().cloned();
        if survey {
            self.last_survey = Some(std::time::Instant::now());
        }
        outcome
    }
}

/// Who holds `addr` now, looked up on the calling thread (no runtime needed): for a caller that is about to
/// report an address it could not bind (the auth tap's listen port), naming the holder and its user.
pub fn holder_now(addr: SocketAddr, lookup: Lookup) -> Outcome {
    let target = Target { lookup, ..Target::new(addr) };
    if !target.lookup.available() {
        return Outcome::Unsupported { detail: format!("the {} lookup runs on Linux only", target.lookup.as_str()) };
    }
    quick_lookup(&target).unwrap_or_else(|| full_lookup(&target))
}

impl Outcome {
    /// Who holds the listener, for people: `python3 pid 4242 (nobody (uid 65534), another user)`, why it is
    /// unknown, or that nothing listens.
    pub fn holder(&self) -> String {
        match self {
            Outcome::Up(owner) | Outcome::NotSsh(owner) => {
                format!("{} pid {} ({})", owner.name, owner.pid, owner.user())
            }
            Outcome::WslRelay { relay, .. } => {
                format!("WSL's relay {} pid {} ({})", relay.name, relay.pid, relay.user())
            }
            Outcome::NoListener => "nothing listening".into(),
            other => other.detail().unwrap_or_default().to_owned(),
        }
    }
}

async fn run(target: &Target, timeout: Duration) -> Outcome {
    if !target.lookup.available() {
        return Outcome::Unsupported { detail: format!("the {} lookup runs on Linux only", target.lookup.as_str()) };
    }
    // Off the thread that times probes, whatever it costs: the steady state (the last owner still owns it; on
    // Linux also: no listener at all) is one filtered socket-table read and one readlink; only a change of owner
    // looks through every process. Both read tables other users fill (issue 38: 19,000 listeners of another
    // user's cost an unfiltered dump 22 ms a round, on the thread that timed every probe's SYN and first byte).
    let target = target.clone();
    let lookup = tokio::task::spawn_blocking(move || quick_lookup(&target).unwrap_or_else(|| full_lookup(&target)));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join_error)) => Outcome::Unknown { detail: format!("socket lookup failed: {join_error}") },
        Err(_) => Outcome::Unknown { detail: "socket table lookup timed out".into() },
    }
}

fn quick_lookup(target: &Target) -> Option<Outcome> {
    match target.lookup {
        #[cfg(target_os = "linux")]
        Lookup::Procfs => procfs_lookup::quick_lookup(target),
        #[cfg(not(target_os = "linux"))]
        Lookup::Procfs => None,
        Lookup::Listeners => portable::quick_lookup(target),
    }
}

fn full_lookup(target: &Target) -> Outcome {
    match target.lookup {
        #[cfg(target_os = "linux")]
        Lookup::Procfs => procfs_lookup::lookup(target),
        #[cfg(not(target_os = "linux"))]
        Lookup::Procfs => Outcome::Unsupported { detail: "the procfs lookup runs on Linux only".into() },
        Lookup::Listeners => portable::lookup(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    fn target(addr: SocketAddr, lookup: Lookup) -> Target {
        Target { lookup, ..Target::new(addr) }
    }

    /// Every lookup this OS can run: both on Linux, listeners elsewhere.
    fn lookups() -> impl Iterator<Item = Lookup> {
        Lookup::ALL.into_iter().filter(|lookup| lookup.available())
    }

    #[tokio::test]
    async fn finds_this_test_process_as_a_non_ssh_owner() {
        for lookup in lookups() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let target = target(listener.local_addr().unwrap(), lookup);
            let outcome = run(&target, Duration::from_secs(5)).await;
            let owner = outcome.owner().unwrap_or_else(|| panic!("{lookup:?}: owner found: {outcome:?}")).clone();
            assert_eq!(outcome.label(), "not_ssh", "{lookup:?}");
            assert_eq!(owner.pid, std::process::id(), "{lookup:?}");
            assert!(owner.parent_pid > 0, "{lookup:?}: the parent is read");
            #[cfg(target_os = "linux")]
            assert!(owner.socket_fd >= 0 && owner.socket_inode != 0, "{lookup:?}");
            // The hint takes the one-call path and must give the same answer.
            let hinted = Target { last_owner: Some(owner.clone()), ..target.clone() };
            assert_eq!(quick_lookup(&hinted), Some(outcome.clone()), "{lookup:?}: the steady state is one call");
            assert_eq!(run(&hinted, Duration::from_secs(5)).await, outcome, "{lookup:?}");
            // A stale fd number falls back to the full lookup, with the same answer.
            let stale = Target { last_owner: Some(Owner { socket_fd: 9999, ..owner.clone() }), ..target.clone() };
            assert_eq!(run(&stale, Duration::from_secs(5)).await, outcome, "{lookup:?}");
            // Once the listener closes, the hint no longer holds and the answer changes.
            drop(listener);
            assert_eq!(run(&hinted, Duration::from_secs(5)).await, Outcome::NoListener, "{lookup:?}");
        }
    }

    #[tokio::test]
    async fn an_ipv6_listener_is_found_for_an_ipv6_forward_only() {
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback on this host: nothing to test");
            return;
        };
        let addr = listener.local_addr().unwrap();
        for lookup in lookups() {
            let found = run(&target(addr, lookup), Duration::from_secs(5)).await;
            assert_eq!(found.owner().map(|o| o.pid), Some(std::process::id()), "{lookup:?}: {found:?}");
            let v4 = SocketAddr::from(([127, 0, 0, 1], addr.port()));
            assert_eq!(run(&target(v4, lookup), Duration::from_secs(5)).await, Outcome::NoListener, "{lookup:?}");
        }
    }

    #[tokio::test]
    async fn a_new_listener_within_a_second_of_the_last_lookup_is_still_found() {
        // The /proc walk is shared for a second; a listener it has not seen must make it walk again.
        for lookup in lookups() {
            // A new socket on the same port: between the drop and the bind another test's connect can take
            // the freed port as its own ephemeral one (CI saw AddrInUse), so a taken port starts over on another.
            let (addr, first_owner, second) = 'port: {
                for _ in 0..20 {
                    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let addr = first.local_addr().unwrap();
                    let found = run(&target(addr, lookup), Duration::from_secs(5)).await;
                    let first_owner = found.owner().expect("owner").clone();
                    drop(first);
                    match std::net::TcpListener::bind(addr) {
                        Ok(second) => break 'port (addr, first_owner, second),
                        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => continue,
                        Err(err) => panic!("bind {addr} again: {err}"),
                    }
                }
                panic!("20 freed ports were each taken before they could be bound again");
            };
            let hinted = Target { last_owner: Some(first_owner.clone()), ..target(addr, lookup) };
            let again = run(&hinted, Duration::from_secs(5)).await;
            let owner = again.owner().expect("the new listener's owner").clone();
            assert_eq!(owner.pid, std::process::id(), "{lookup:?}");
            #[cfg(target_os = "linux")]
            assert_ne!(owner.socket_inode, first_owner.socket_inode, "{lookup:?}");
            drop(second);
        }
    }

    #[tokio::test]
    async fn a_closed_port_has_no_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        for lookup in lookups() {
            assert_eq!(run(&target(addr, lookup), Duration::from_secs(5)).await, Outcome::NoListener, "{lookup:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_v6only_ipv6_wildcard_is_no_candidate_for_an_ipv4_forward_and_a_dual_stack_one_is() {
        use socket2::{Domain, Socket, Type};
        let listen_v6 = |only: bool| -> Option<Socket> {
            let socket = Socket::new(Domain::IPV6, Type::STREAM, None).ok()?;
            socket.set_only_v6(only).ok()?;
            socket.bind(&"[::]:0".parse::<SocketAddr>().unwrap().into()).ok()?;
            socket.listen(8).ok()?;
            Some(socket)
        };
        let Some(v6only) = listen_v6(true) else {
            eprintln!("no IPv6 on this host: nothing to test");
            return;
        };
        let port = v6only.local_addr().unwrap().as_socket().unwrap().port();
        let wanted = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(crate::socket_table::candidates(wanted).unwrap().is_empty(), "what ssh -g binds never takes 127.0.0.1");
        let v6_wanted = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        assert_eq!(crate::socket_table::candidates(v6_wanted).unwrap().len(), 1);
        let dual = listen_v6(false).unwrap();
        let port = dual.local_addr().unwrap().as_socket().unwrap().port();
        let found = crate::socket_table::candidates(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        assert_eq!(found.len(), 1, "a dual-stack wildcard takes IPv4 connections: {found:?}");
        assert_eq!(found[0].v6only, Some(false));
        // SAFETY: geteuid has no preconditions.
        assert_eq!(found[0].uid, Some(unsafe { libc::geteuid() }));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sock_diag_and_proc_agree_on_the_listening_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inodes = |listeners: Vec<crate::socket_table::Listener>| -> Vec<u64> {
            listeners.into_iter().map(|l| l.inode).collect()
        };
        let from_netlink = inodes(crate::socket_table::candidates(addr).unwrap());
        let from_proc = inodes(procfs_lookup::candidates_procfs(&Target::new(addr)).unwrap());
        assert_eq!(from_netlink.len(), 1);
        assert_eq!(from_netlink, from_proc);
    }
}

//! SSH session probe: which process owns the forward's local listener, and is it ssh?
//!
//! A SYN success proves only that *something* listens. This probe finds the listening socket's owner: on
//! Linux a LISTEN-only sock_diag dump ([`crate::socket_table`]; /proc/net/tcp{,6} as the fallback) gives the
//! socket inode and the process whose /proc/PID/fd links to `socket:[INODE]` owns it (through the `procfs`
//! crate). In the steady state the last owner's fd is read back (one readlink); a new owner is found with one
//! walk of /proc shared by every lookup that needs it within a second. On macOS `lsof` answers the same
//! question (compiled, untested in CI). The session is up when the owner's name is `ssh`; its parent (often `autossh`)
//! is reported for the log.
//!
//! Reading another user's fd table needs the same uid or CAP_SYS_PTRACE. When the listener exists but no
//! readable process owns it, the outcome is [`Outcome::Unreadable`]: unknown, never "down".

use std::net::SocketAddr;
use std::time::Duration;

/// The listener to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The ssh -L listener, e.g. 127.0.0.1:18789.
    pub addr: SocketAddr,
    /// The owner found last time. While its fd still links to the same listening socket, nothing has
    /// changed and one readlink is the whole probe; otherwise it is checked first, before all processes.
    pub last_owner: Option<Owner>,
}

/// A process that owns the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`comm`), e.g. `ssh`.
    pub name: String,
    /// Its parent's pid.
    pub parent_pid: u32,
    /// Its parent's command name, e.g. `autossh`, when readable.
    pub parent_name: Option<String>,
    /// The listening socket's inode (0 where the platform does not say).
    pub socket_inode: u64,
    /// The owner's fd number for that socket (-1 where the platform does not say).
    pub socket_fd: i32,
}

impl Owner {
    /// True when the owner is an ssh client (run directly, by autossh, launchd or systemd alike).
    pub fn is_ssh(&self) -> bool {
        self.name == "ssh"
    }
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
}

impl Outcome {
    /// The fixed state name exported as a label: up, no_listener, not_ssh, unreadable, unsupported.
    pub fn state(&self) -> &'static str {
        match self {
            Outcome::Up(_) => "up",
            Outcome::NoListener => "no_listener",
            Outcome::NotSsh(_) => "not_ssh",
            Outcome::Unreadable { .. } => "unreadable",
            Outcome::Unsupported { .. } => "unsupported",
        }
    }

    /// Every value [`Outcome::state`] can return.
    pub const STATES: [&'static str; 5] = ["up", "no_listener", "not_ssh", "unreadable", "unsupported"];

    /// The owner, when one was found.
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Outcome::Up(owner) | Outcome::NotSsh(owner) => Some(owner),
            _ => None,
        }
    }
}

/// Find the owner of `target.addr`'s listening socket.
pub async fn probe(target: &Target, timeout: Duration) -> Outcome {
    // The steady state (no listener, or the last owner still owns it) is a netlink dump and one fd table:
    // tens of microseconds, done in place. Only a change of owner walks every process, on a blocking thread.
    if let Some(outcome) = platform::quick_lookup(target) {
        return outcome;
    }
    let target = target.clone();
    let lookup = tokio::task::spawn_blocking(move || platform::lookup(&target));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join_error)) => Outcome::Unsupported { detail: format!("socket lookup failed: {join_error}") },
        Err(_) => Outcome::Unreadable { detail: "socket table lookup timed out".into() },
    }
}

/// True when a listener bound to `listening` accepts connections for `wanted`.
pub(crate) fn listener_serves(listening: SocketAddr, wanted: SocketAddr) -> bool {
    if listening.port() != wanted.port() {
        return false;
    }
    let listening_ip = match listening.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(listening.ip()),
        ip => ip,
    };
    listening_ip.is_unspecified() || listening_ip == wanted.ip()
}

#[cfg(target_os = "linux")]
mod platform {
    use super::{listener_serves, Outcome, Owner, Target};
    use procfs::process::{FDTarget, Process};
    use procfs::ProcError;

    /// The answer when it needs no process scan: the hinted owner still holds the hinted socket (no table
    /// read at all), no listener, the table unreadable, or the hinted owner holds the listener.
    pub(super) fn quick_lookup(target: &Target) -> Option<Outcome> {
        if let Some(owner) = target.last_owner.as_ref().filter(|o| o.socket_fd >= 0 && o.socket_inode != 0) {
            let link = std::fs::read_link(format!("/proc/{}/fd/{}", owner.pid, owner.socket_fd));
            if link.is_ok_and(|link| link.as_os_str() == format!("socket:[{}]", owner.socket_inode).as_str()) {
                let owner = owner.clone();
                return Some(if owner.is_ssh() { Outcome::Up(owner) } else { Outcome::NotSsh(owner) });
            }
        }
        let inodes = match listening_inodes(target) {
            Ok(inodes) => inodes,
            Err(err) => return Some(Outcome::Unsupported { detail: format!("cannot read the socket table: {err}") }),
        };
        if inodes.is_empty() {
            return Some(Outcome::NoListener);
        }
        let process = Process::new(target.last_owner.as_ref()?.pid as i32).ok()?;
        owned_socket(&process, &inodes).map(|socket| classify(&process, socket))
    }

    pub(super) fn lookup(target: &Target) -> Outcome {
        let inodes = match listening_inodes(target) {
            Ok(inodes) => inodes,
            Err(err) => return Outcome::Unsupported { detail: format!("cannot read the socket table: {err}") },
        };
        if inodes.is_empty() {
            return Outcome::NoListener;
        }
        if let Some(owner) = &target.last_owner {
            if let Ok(process) = Process::new(owner.pid as i32) {
                if let Some(socket) = owned_socket(&process, &inodes) {
                    return classify(&process, socket);
                }
            }
        }
        let index = match socket_index(&inodes) {
            Ok(index) => index,
            Err(err) => return Outcome::Unsupported { detail: format!("cannot list /proc: {err}") },
        };
        if let Some(&(pid, fd, inode)) = inodes.iter().find_map(|inode| index.owners.get(inode)) {
            if let Ok(process) = Process::new(pid) {
                return classify(&process, (fd, inode));
            }
        }
        Outcome::Unreadable {
            detail: format!(
                "a listener exists (socket inode {inodes:?}) but no readable process owns it; \
                 {} processes' fds were not readable (another user's; needs the same uid or CAP_SYS_PTRACE)",
                index.denied
            ),
        }
    }

    /// Every socket inode held by a readable process -> (pid, fd, inode), from one walk of /proc.
    struct SocketIndex {
        built: std::time::Instant,
        owners: std::collections::HashMap<u64, (i32, i32, u64)>,
        denied: usize,
    }

    /// One walk of /proc serves every lookup that needs one at about the same time: at start, or when a
    /// restarted ssh holds many forwards, each forward would otherwise walk every process's fds on its own
    /// (quadratic; the scale benchmark's 1,000 forwards took seconds). An index younger than a second is
    /// reused while it knows one of `inodes`; otherwise it is rebuilt (a new listener is always found).
    fn socket_index(inodes: &[u64]) -> procfs::ProcResult<std::sync::Arc<SocketIndex>> {
        use std::sync::{Arc, Mutex};
        static INDEX: Mutex<Option<Arc<SocketIndex>>> = Mutex::new(None);
        // Held while building, so concurrent lookups wait for one walk instead of each doing their own.
        let mut cached = INDEX.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(index) = cached.as_ref() {
            let fresh = index.built.elapsed() < std::time::Duration::from_secs(1);
            if fresh && inodes.iter().any(|inode| index.owners.contains_key(inode)) {
                return Ok(index.clone());
            }
        }
        let mut index = SocketIndex { built: std::time::Instant::now(), owners: Default::default(), denied: 0 };
        for process in procfs::process::all_processes()?.flatten() {
            match process.fd() {
                Ok(fds) => {
                    for fd in fds.flatten() {
                        if let FDTarget::Socket(inode) = fd.target {
                            index.owners.entry(inode).or_insert((process.pid, fd.fd, inode));
                        }
                    }
                }
                Err(ProcError::PermissionDenied(_)) => index.denied += 1,
                // The process exited while we looked, or is a zombie without fds.
                Err(_) => {}
            }
        }
        let index = Arc::new(index);
        *cached = Some(index.clone());
        Ok(index)
    }

    /// The inodes of listening sockets serving `target`: from the kernel's sock_diag netlink interface,
    /// which walks only the listening hash; /proc/net/tcp as the fallback where netlink is not allowed.
    fn listening_inodes(target: &Target) -> Result<Vec<u64>, String> {
        match crate::socket_table::listening_inodes(target.addr) {
            Ok(inodes) => Ok(inodes),
            Err(netlink_err) => {
                listening_inodes_procfs(target).map_err(|err| format!("sock_diag: {netlink_err}; /proc: {err}"))
            }
        }
    }

    /// Reading /proc/net/tcp walks the whole established hash in the kernel (sized by RAM, so milliseconds
    /// per read on a large machine), which is why it is only the fallback.
    pub(super) fn listening_inodes_procfs(target: &Target) -> procfs::ProcResult<Vec<u64>> {
        let mut entries = procfs::net::tcp()?;
        // No IPv6 on the host is not an error.
        entries.extend(procfs::net::tcp6().unwrap_or_default());
        Ok(entries
            .into_iter()
            .filter(|entry| entry.state == procfs::net::TcpState::Listen)
            .filter(|entry| listener_serves(entry.local_address, target.addr))
            .map(|entry| entry.inode)
            .collect())
    }

    /// The first of `inodes` that `process` holds, as (fd, inode).
    fn owned_socket(process: &Process, inodes: &[u64]) -> Option<(i32, u64)> {
        process.fd().ok()?.flatten().find_map(|fd| match fd.target {
            FDTarget::Socket(inode) if inodes.contains(&inode) => Some((fd.fd, inode)),
            _ => None,
        })
    }

    fn classify(process: &Process, (socket_fd, socket_inode): (i32, u64)) -> Outcome {
        let (name, parent_pid) = match process.stat() {
            Ok(stat) => (stat.comm, stat.ppid.max(0) as u32),
            Err(err) => return Outcome::Unreadable { detail: format!("owner pid {} unreadable: {err}", process.pid) },
        };
        let parent_name = Process::new(parent_pid as i32).and_then(|parent| parent.stat()).map(|stat| stat.comm).ok();
        let owner = Owner { pid: process.pid as u32, name, parent_pid, parent_name, socket_inode, socket_fd };
        if owner.is_ssh() {
            Outcome::Up(owner)
        } else {
            Outcome::NotSsh(owner)
        }
    }
}

#[cfg(target_os = "macos")]
mod platform {
    //! macOS: `lsof -nP -iTCP:<port> -sTCP:LISTEN -Fpcn` and `ps -o ppid=,comm=`. Compiled, not tested in CI.
    use super::{listener_serves, Outcome, Owner, Target};
    use std::process::Command;

    pub(super) fn quick_lookup(_target: &Target) -> Option<Outcome> {
        None
    }

    pub(super) fn lookup(target: &Target) -> Outcome {
        let output = match Command::new("lsof")
            .args(["-nP", &format!("-iTCP:{}", target.addr.port()), "-sTCP:LISTEN", "-Fpcn"])
            .output()
        {
            Ok(output) => output,
            Err(err) => return Outcome::Unsupported { detail: format!("cannot run lsof: {err}") },
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let (mut pid, mut name) = (None, None);
        for line in text.lines() {
            match line.split_at(1.min(line.len())) {
                ("p", rest) => pid = rest.parse::<u32>().ok(),
                ("c", rest) => name = Some(rest.to_owned()),
                ("n", rest) => {
                    let addr = rest.replace('*', "0.0.0.0").replace("[::]", "[::0]");
                    if let (Some(pid), Some(name), Ok(listening)) = (pid, name.clone(), addr.parse()) {
                        if listener_serves(listening, target.addr) {
                            return classify(pid, name);
                        }
                    }
                }
                _ => {}
            }
        }
        if text.trim().is_empty() && !output.stderr.is_empty() {
            return Outcome::Unreadable { detail: String::from_utf8_lossy(&output.stderr).into_owned() };
        }
        Outcome::NoListener
    }

    fn classify(pid: u32, name: String) -> Outcome {
        let parent = |pid: u32| -> Option<(u32, String)> {
            let out = Command::new("ps").args(["-o", "ppid=,comm=", "-p", &pid.to_string()]).output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let (ppid, comm) = text.split_once(char::is_whitespace)?;
            Some((ppid.trim().parse().ok()?, comm.trim().rsplit('/').next()?.to_owned()))
        };
        let parent_pid = parent(pid).map(|(ppid, _)| ppid).unwrap_or(0);
        let parent_name = parent(parent_pid).map(|(_, comm)| comm);
        let owner = Owner { pid, name, parent_pid, parent_name, socket_inode: 0, socket_fd: -1 };
        if owner.is_ssh() {
            Outcome::Up(owner)
        } else {
            Outcome::NotSsh(owner)
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod platform {
    use super::{Outcome, Target};

    pub(super) fn quick_lookup(_target: &Target) -> Option<Outcome> {
        None
    }

    pub(super) fn lookup(_target: &Target) -> Outcome {
        Outcome::Unsupported { detail: "listener owner lookup is implemented for Linux and macOS only".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_or_mapped_listener_serves_loopback() {
        let wanted: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        assert!(listener_serves("127.0.0.1:18789".parse().unwrap(), wanted));
        assert!(listener_serves("0.0.0.0:18789".parse().unwrap(), wanted));
        assert!(listener_serves("[::]:18789".parse().unwrap(), wanted));
        assert!(listener_serves("[::ffff:127.0.0.1]:18789".parse().unwrap(), wanted));
        assert!(!listener_serves("127.0.0.1:18790".parse().unwrap(), wanted));
        assert!(!listener_serves("10.0.0.1:18789".parse().unwrap(), wanted));
    }

    fn ssh_session_owner_with_fd(owner: &Owner, fd: i32) -> Owner {
        Owner { socket_fd: fd, ..owner.clone() }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn finds_this_test_process_as_a_non_ssh_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target { addr: listener.local_addr().unwrap(), last_owner: None };
        let outcome = probe(&target, Duration::from_secs(5)).await;
        let owner = outcome.owner().expect("owner found").clone();
        assert_eq!(outcome.state(), "not_ssh");
        assert_eq!(owner.pid, std::process::id());
        // The pid hint takes the fast path and must give the same answer.
        assert!(owner.socket_fd >= 0 && owner.socket_inode != 0);
        // The hint takes the one-readlink path and must give the same answer.
        let hinted = Target { last_owner: Some(owner.clone()), ..target.clone() };
        assert_eq!(probe(&hinted, Duration::from_secs(5)).await, outcome);
        // A stale fd number falls back to the socket table, with the same answer.
        let stale = Target { last_owner: Some(ssh_session_owner_with_fd(&owner, 9999)), ..target };
        assert_eq!(probe(&stale, Duration::from_secs(5)).await, outcome);
        // Once the listener closes, the hint no longer holds and the answer changes.
        drop(listener);
        assert_eq!(probe(&hinted, Duration::from_secs(5)).await, Outcome::NoListener);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sock_diag_and_proc_agree_on_the_listening_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Target { addr, last_owner: None };
        let from_netlink = crate::socket_table::listening_inodes(addr).unwrap();
        let from_proc = platform::listening_inodes_procfs(&target).unwrap();
        assert_eq!(from_netlink.len(), 1);
        assert_eq!(from_netlink, from_proc);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_new_listener_within_a_second_of_the_last_walk_is_still_found() {
        // The /proc walk is shared for a second; a listener it has not seen must make it walk again.
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap();
        let found = probe(&Target { addr, last_owner: None }, Duration::from_secs(5)).await;
        let first_inode = found.owner().expect("owner").socket_inode;
        drop(first);
        let second = std::net::TcpListener::bind(addr).unwrap();
        let again = probe(&Target { addr, last_owner: None }, Duration::from_secs(5)).await;
        let owner = again.owner().expect("the new listener's owner").clone();
        assert_eq!(owner.pid, std::process::id());
        assert_ne!(owner.socket_inode, first_inode);
        drop(second);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_closed_port_has_no_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(probe(&Target { addr, last_owner: None }, Duration::from_secs(5)).await, Outcome::NoListener);
    }
}

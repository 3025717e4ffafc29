//! Linux's own lookup: the LISTEN sockets from sock_diag netlink ([`crate::socket_table`]; /proc/net/tcp as
//! the fallback) that could receive the forward's connections give their inodes (and each one's uid), and
//! the process whose /proc/PID/fd links to `socket:[INODE]` owns each. The steady state is one sock_diag
//! dump of the listening hash plus one readlink of the remembered owner's fd.

use super::decide;
use super::os::owned_socket;
use super::{Found, Outcome, Owner, Target};
use crate::net::could_receive;
use crate::socket_table::Listener;
use procfs::process::{FDTarget, Process};
use procfs::ProcError;

/// The answer when it needs no process scan: no listener, the table unreadable, or the one candidate
/// listener is still the remembered owner's socket. A second candidate (another bind that could take the
/// connection) always goes to the full lookup, so the steady state can never skip a newcomer.
pub(super) fn quick_lookup(target: &Target) -> Option<Outcome> {
    // Between surveys: the kernel's own answer to "which listener takes a connection to the address now", one
    // exact lookup. Still the remembered owner's socket, its fd still linking to it: nothing changed. Anything
    // else reads every candidate below.
    if let (false, Some(owner)) = (target.survey_due(), target.last_owner.as_ref()) {
        match crate::socket_table::receiving(target.addr) {
            Ok(Some((inode, _))) if inode == owner.socket_inode && super::os::fd_still_links(owner) => {
                return Some(decide::classify(owner.clone()));
            }
            Ok(None) => return Some(Outcome::NoListener),
            _ => {}
        }
    }
    let candidates = match candidates(target) {
        Ok(candidates) => candidates,
        Err(err) => return Some(Outcome::Unsupported { detail: format!("cannot read the socket table: {err}") }),
    };
    if candidates.is_empty() {
        return Some(Outcome::NoListener);
    }
    let owner = target.last_owner.as_ref()?;
    let [only] = candidates.as_slice() else { return None };
    (only.inode == owner.socket_inode && super::os::fd_still_links(owner)).then(|| decide::classify(owner.clone()))
}

/// Every candidate listener's owner, judged together (see [`decide::judge`]).
pub(super) fn lookup(target: &Target) -> Outcome {
    let candidates = match candidates(target) {
        Ok(candidates) => candidates,
        Err(err) => return Outcome::Unsupported { detail: format!("cannot read the socket table: {err}") },
    };
    if candidates.is_empty() {
        return Outcome::NoListener;
    }
    let inodes: Vec<u64> = candidates.iter().map(|l| l.inode).collect();
    let mut owners = Vec::new();
    let mut unreadable = Vec::new();
    let mut index = None;
    for listener in &candidates {
        // The remembered owner first: one fd walk of one process.
        let remembered = target
            .last_owner
            .as_ref()
            .and_then(|owner| Process::new(owner.pid as i32).ok())
            .and_then(|process| owned_socket(&process, &[listener.inode]).map(|socket| (process, socket)));
        let found = match remembered {
            Some(found) => Some(found),
            None => {
                if index.is_none() {
                    index = Some(match socket_index(&target.index, &inodes) {
                        Ok(index) => index,
                        Err(err) => return Outcome::Unsupported { detail: format!("cannot list /proc: {err}") },
                    });
                }
                let index = index.as_ref().expect("built above");
                index
                    .owners
                    .get(&listener.inode)
                    .and_then(|&(pid, fd, inode)| Process::new(pid).ok().map(|process| (process, (fd, inode))))
            }
        };
        match found.and_then(|(process, socket)| owner_of(&process, socket)) {
            Some(owner) => owners.push((listener.addr, owner)),
            None => unreadable.push(*listener),
        }
    }
    if !unreadable.is_empty() {
        let denied = index.as_ref().map_or(0, |index| index.denied);
        return Outcome::Unreadable { detail: unreadable_detail(&unreadable, denied) };
    }
    decide::judge(owners, target.addr)
}

/// Who holds the listeners no readable process owns, by the uid sock_diag reports for each socket.
fn unreadable_detail(unreadable: &[Listener], denied: usize) -> String {
    let holders: Vec<String> = unreadable
        .iter()
        .map(|l| match l.uid {
            Some(uid) => format!("{} (held by {})", l.addr, super::describe_uid(uid)),
            None => l.addr.to_string(),
        })
        .collect();
    format!(
        "a listener that could take the forward's connections, {}, is owned by no process this user can read; \
         {denied} processes' fds were not readable (another user's; needs the same uid or CAP_SYS_PTRACE)",
        holders.join(", ")
    )
}

/// Every socket inode held by a readable process -> (pid, fd, inode), from one walk of /proc.
pub(crate) struct SocketIndex {
    built: std::time::Instant,
    owners: std::collections::HashMap<u64, (i32, i32, u64)>,
    denied: usize,
}

/// One walk of /proc serves every lookup sharing `shared` that needs one at about the same time (see
/// [`super::OwnerIndex`]). An index younger than a second is reused while it knows every one of `inodes`;
/// otherwise it is rebuilt (a new listener is always found).
fn socket_index(shared: &super::OwnerIndex, inodes: &[u64]) -> procfs::ProcResult<std::sync::Arc<SocketIndex>> {
    use std::sync::Arc;
    // Held while building, so concurrent lookups wait for one walk instead of each doing their own.
    let mut cached = shared.walk.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(index) = cached.as_ref() {
        let fresh = index.built.elapsed() < std::time::Duration::from_secs(1);
        if fresh && inodes.iter().all(|inode| index.owners.contains_key(inode)) {
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

/// The listening sockets that could receive `target`'s connections: from the kernel's sock_diag netlink
/// interface, which walks only the listening hash and says whose each socket is and whether an IPv6 one is
/// v6only; /proc/net/tcp as the fallback where netlink is not allowed.
fn candidates(target: &Target) -> Result<Vec<Listener>, String> {
    match crate::socket_table::candidates(target.addr) {
        Ok(candidates) => Ok(candidates),
        Err(netlink_err) => candidates_procfs(target).map_err(|err| format!("sock_diag: {netlink_err}; /proc: {err}")),
    }
}

/// Reading /proc/net/tcp walks the whole established hash in the kernel (sized by RAM, so milliseconds
/// per read on a large machine), which is why it is only the fallback. It does not say v6only, so an IPv6
/// wildcard counts as a candidate (fail closed).
pub(super) fn candidates_procfs(target: &Target) -> procfs::ProcResult<Vec<Listener>> {
    let mut entries = procfs::net::tcp()?;
    // No IPv6 on the host is not an error.
    entries.extend(procfs::net::tcp6().unwrap_or_default());
    Ok(entries
        .into_iter()
        .filter(|entry| entry.state == procfs::net::TcpState::Listen)
        .filter(|entry| could_receive(entry.local_address, None, target.addr))
        .map(|entry| Listener {
            addr: entry.local_address,
            inode: entry.inode,
            pid: None,
            uid: Some(entry.uid),
            v6only: None,
        })
        .collect())
}

/// The owner of `socket` (fd, inode) in `process`, or `None` when the process cannot be read.
fn owner_of(process: &Process, (socket_fd, socket_inode): (i32, u64)) -> Option<Owner> {
    let stat = process.stat().ok()?;
    let (name, parent_pid) = (stat.comm, stat.ppid.max(0) as u32);
    let parent_name = Process::new(parent_pid as i32).and_then(|parent| parent.stat()).map(|stat| stat.comm).ok();
    let pid = process.pid as u32;
    Some(Owner::found(Found { pid, name, parent_pid, parent_name, socket_inode, socket_fd }))
}

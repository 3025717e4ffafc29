//! Linux's own lookup: the LISTEN sockets from sock_diag netlink ([`crate::socket_table`]; /proc/net/tcp as
//! the fallback) give the socket inode, and the process whose /proc/PID/fd links to `socket:[INODE]` owns it.
//! The steady state is one readlink of the remembered owner's fd.

use super::decide::classify as classify_owner;
use super::os::owned_socket;
use super::{Found, Outcome, Owner, Target};
use crate::net::listener_serves;
use procfs::process::{FDTarget, Process};
use procfs::ProcError;

/// The answer when it needs no process scan: the hinted owner still holds the hinted socket (no table
/// read at all), no listener, the table unreadable, or the hinted owner holds the listener.
pub(super) fn quick_lookup(target: &Target) -> Option<Outcome> {
    if let Some(owner) = target.last_owner.as_ref().filter(|owner| super::os::still_holds(owner, target.addr)) {
        return Some(classify_owner(owner.clone()));
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
    let index = match socket_index(&target.index, &inodes) {
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
pub(crate) struct SocketIndex {
    built: std::time::Instant,
    owners: std::collections::HashMap<u64, (i32, i32, u64)>,
    denied: usize,
}

/// One walk of /proc serves every lookup sharing `shared` that needs one at about the same time (see
/// [`super::OwnerIndex`]). An index younger than a second is reused while it knows one of `inodes`;
/// otherwise it is rebuilt (a new listener is always found).
fn socket_index(shared: &super::OwnerIndex, inodes: &[u64]) -> procfs::ProcResult<std::sync::Arc<SocketIndex>> {
    use std::sync::Arc;
    // Held while building, so concurrent lookups wait for one walk instead of each doing their own.
    let mut cached = shared.walk.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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

fn classify(process: &Process, (socket_fd, socket_inode): (i32, u64)) -> Outcome {
    let (name, parent_pid) = match process.stat() {
        Ok(stat) => (stat.comm, stat.ppid.max(0) as u32),
        Err(err) => return Outcome::Unreadable { detail: format!("owner pid {} unreadable: {err}", process.pid) },
    };
    let parent_name = Process::new(parent_pid as i32).and_then(|parent| parent.stat()).map(|stat| stat.comm).ok();
    let pid = process.pid as u32;
    classify_owner(Owner::found(Found { pid, name, parent_pid, parent_name, socket_inode, socket_fd }))
}

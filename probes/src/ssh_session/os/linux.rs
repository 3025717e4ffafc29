//! Linux: the same /proc and sock_diag facts the procfs lookup uses, for one known pid.

use std::net::SocketAddr;

use procfs::process::{FDTarget, Process};

use super::super::decide::ProcessInfo;
use super::super::Owner;

/// One sock_diag dump of the listening hash and one readlink: the owner's socket is the only listener that
/// could take a connection to `wanted`, and its fd still links to that socket's inode.
pub(in crate::ssh_session) fn still_holds(owner: &Owner, wanted: SocketAddr) -> bool {
    let Some(candidates) = candidate_addrs_and_inodes(wanted) else { return false };
    matches!(candidates.as_slice(), [(_, inode)] if *inode == owner.socket_inode) && fd_still_links(owner)
}

/// One readlink: the owner's fd still links to the listening socket's inode.
pub(in crate::ssh_session) fn fd_still_links(owner: &Owner) -> bool {
    if owner.socket_fd < 0 || owner.socket_inode == 0 {
        return false;
    }
    let link = std::fs::read_link(format!("/proc/{}/fd/{}", owner.pid, owner.socket_fd));
    link.is_ok_and(|link| link.as_os_str() == format!("socket:[{}]", owner.socket_inode).as_str())
}

fn candidate_addrs_and_inodes(wanted: SocketAddr) -> Option<Vec<(SocketAddr, u64)>> {
    Some(crate::socket_table::candidates(wanted).ok()?.into_iter().map(|l| (l.addr, l.inode)).collect())
}

/// Every listening address that could take a connection to `wanted`, whoever owns it (sock_diag).
pub(in crate::ssh_session) fn candidate_addrs(wanted: SocketAddr) -> Option<Vec<SocketAddr>> {
    Some(candidate_addrs_and_inodes(wanted)?.into_iter().map(|(addr, _)| addr).collect())
}

/// The fd and inode by which `pid` holds the socket listening on `listening`.
pub(in crate::ssh_session) fn socket_of(pid: u32, listening: SocketAddr) -> Option<(i32, u64)> {
    let inodes: Vec<u64> = crate::socket_table::listening(listening.port(), |addr| addr == listening)
        .ok()?
        .into_iter()
        .map(|l| l.inode)
        .collect();
    owned_socket(&Process::new(i32::try_from(pid).ok()?).ok()?, &inodes)
}

/// The first of `inodes` that `process` holds, as (fd, inode).
pub(in crate::ssh_session) fn owned_socket(process: &Process, inodes: &[u64]) -> Option<(i32, u64)> {
    process.fd().ok()?.flatten().find_map(|fd| match fd.target {
        FDTarget::Socket(inode) if inodes.contains(&inode) => Some((fd.fd, inode)),
        _ => None,
    })
}

/// `comm` and the parent pid from /proc/PID/stat.
pub(in crate::ssh_session) fn process_info(pid: u32) -> Option<ProcessInfo> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some(ProcessInfo { name: stat.comm, parent_pid: u32::try_from(stat.ppid).unwrap_or(0) })
}

/// Whether any socket listens for `wanted`, whoever owns it (sock_diag sees every user's sockets).
pub(in crate::ssh_session) fn listener_exists(wanted: SocketAddr) -> Option<bool> {
    candidate_addrs(wanted).map(|addrs| !addrs.is_empty())
}

/// The uid `pid` runs as (the owner of /proc/PID), and whether it is ours (the effective uid).
pub(in crate::ssh_session) fn user_of(pid: u32) -> (Option<u32>, Option<bool>) {
    let uid = Process::new(i32::try_from(pid).unwrap_or(-1)).and_then(|process| process.uid()).ok();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    (uid, uid.map(|uid| uid == ours))
}

/// The OS table of every listener says v6only where it matters (Linux's sock_diag; Windows' table lists each
/// family apart): the portable lookup asks this only where there is no such table (macOS).
pub(in crate::ssh_session) fn socket_v6only(_pid: u32, _listening: std::net::SocketAddr) -> Option<bool> {
    None
}

//! Linux: the same /proc and sock_diag facts the procfs lookup uses, for one known pid.

use std::net::SocketAddr;

use procfs::process::{FDTarget, Process};

use super::super::decide::ProcessInfo;
use super::super::Owner;

/// One readlink: the owner's fd still links to the listening socket's inode.
pub(in crate::ssh_session) fn still_holds(owner: &Owner, _wanted: SocketAddr) -> bool {
    if owner.socket_fd < 0 || owner.socket_inode == 0 {
        return false;
    }
    let link = std::fs::read_link(format!("/proc/{}/fd/{}", owner.pid, owner.socket_fd));
    link.is_ok_and(|link| link.as_os_str() == format!("socket:[{}]", owner.socket_inode).as_str())
}

/// The fd and inode by which `pid` holds the socket listening on `listening`.
pub(in crate::ssh_session) fn socket_of(pid: u32, listening: SocketAddr) -> Option<(i32, u64)> {
    let inodes: Vec<u64> =
        crate::socket_table::listening(|addr| addr == listening).ok()?.into_iter().map(|l| l.inode).collect();
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
    crate::socket_table::listening_inodes(wanted).ok().map(|inodes| !inodes.is_empty())
}

/// The uid `pid` runs as (the owner of /proc/PID), and whether it is ours (the effective uid).
pub(in crate::ssh_session) fn user_of(pid: u32) -> (Option<u32>, Option<bool>) {
    let uid = Process::new(i32::try_from(pid).unwrap_or(-1)).and_then(|process| process.uid()).ok();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    (uid, uid.map(|uid| uid == ours))
}

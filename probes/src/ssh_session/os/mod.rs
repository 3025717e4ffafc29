//! The few OS calls the `listeners`-crate lookup needs beyond the crate: the parent of a process, the
//! handle by which the owner holds the listening socket, and the one-call steady-state check. Each OS's
//! file is thin (a system call or two each); the decisions around them live in [`super::decide`].
//!
//! | OS | parent | socket handle | steady state (one call) |
//! |---|---|---|---|
//! | Linux | /proc/PID/stat (`procfs`) | fd + inode | readlink /proc/PID/fd/N |
//! | macOS | `proc_pidinfo(PROC_PIDTBSDINFO)` (`libproc`) | fd + `soi_so` (the kernel socket's address) | `proc_pidfdinfo(pid, fd, PROC_PIDFDSOCKETINFO)` |
//! | Windows | Toolhelp32 process snapshot (`windows`) | none: the table carries pids | `GetExtendedTcpTable(TCP_TABLE_OWNER_PID_LISTENER)` |

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(super) use linux::*;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub(super) use macos::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(super) use windows::*;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod other {
    //! No OS calls: the crate's answer stands alone and every round is a full lookup.
    use super::super::decide::ProcessInfo;
    use super::super::Owner;
    use std::net::SocketAddr;

    pub(in crate::ssh_session) fn still_holds(_owner: &Owner, _wanted: SocketAddr) -> bool {
        false
    }
    pub(in crate::ssh_session) fn socket_of(_pid: u32, _listening: SocketAddr) -> Option<(i32, u64)> {
        None
    }
    pub(in crate::ssh_session) fn process_info(_pid: u32) -> Option<ProcessInfo> {
        None
    }
    pub(in crate::ssh_session) fn listener_exists(_wanted: SocketAddr) -> Option<bool> {
        None
    }
}
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub(super) use other::*;

//! The few OS calls the `listeners`-crate lookup needs beyond the crate: the parent of a process, the
//! handle by which the owner holds the listening socket, and the one-call steady-state check. Each OS's
//! file is thin (a system call or two each); the decisions around them live in [`super::decide`].
//!
//! | OS | parent | socket handle | steady state (one call) |
//! |---|---|---|---|
//! | Linux | /proc/PID/stat (`procfs`) | fd + inode | a sock_diag LISTEN dump (the one candidate is the owner's inode) + readlink /proc/PID/fd/N |
//! | macOS | `proc_pidinfo(PROC_PIDTBSDINFO)` (`libproc`) | fd + `soi_so` (the kernel socket's address) | `proc_pidfdinfo(pid, fd, PROC_PIDFDSOCKETINFO)` |
//! | Windows | Toolhelp32 process snapshot (`windows`) | none: the table carries pids; the owner's creation time stands in | `GetExtendedTcpTable(TCP_TABLE_OWNER_PID_LISTENER)`, both families, every candidate the owner's, plus `GetProcessTimes` |
//!
//! And whose the owner is: the owner of /proc/PID (Linux), `pbi_uid` (macOS), the process token's user SID
//! against our own (Windows), each against the exporter's own user, on a change of owner only.

/// Whether anything accepts connections on `wanted`, asked the only way that needs no table and no privilege:
/// a connect. Refused at once when nothing listens; when something does, the connection is closed with RST
/// at once (SO_LINGER 0). Used where the OS shows no unprivileged table of every listener (macOS), and only
/// when the one-call steady state missed, so a forward that is up never sees it.
#[cfg_attr(any(target_os = "linux", windows), allow(dead_code))]
pub(super) fn accepts_connections(wanted: std::net::SocketAddr) -> Option<bool> {
    match std::net::TcpStream::connect_timeout(&wanted, std::time::Duration::from_millis(500)) {
        Ok(stream) => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
            Some(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => Some(false),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connect_tells_whether_anything_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(super::accepts_connections(addr), Some(true));
        drop(listener);
        assert_eq!(super::accepts_connections(addr), Some(false));
    }
}

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
    pub(in crate::ssh_session) fn candidate_addrs(_wanted: SocketAddr) -> Option<Vec<SocketAddr>> {
        None
    }
    pub(in crate::ssh_session) fn user_of(_pid: u32) -> (Option<u32>, Option<bool>) {
        (None, None)
    }
    pub(in crate::ssh_session) fn socket_v6only(_pid: u32, _listening: SocketAddr) -> Option<bool> {
        None
    }
}
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub(super) use other::*;

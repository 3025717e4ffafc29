//! macOS: libproc (`proc_pidinfo`, `proc_pidfdinfo`) through the `libproc` crate. No process is spawned.
//! The kernel socket's address (`soi_so`) plays the part Linux's inode plays: it names one socket for its
//! whole life, so "this fd of this pid is still that listening socket" is one `proc_pidfdinfo` call.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libproc::libproc::bsd_info::BSDInfo;
use libproc::libproc::file_info::{pidfdinfo, ListFDs, ProcFDType};
use libproc::libproc::net_info::{SocketFDInfo, SocketInfoKind, TcpSIState};
use libproc::libproc::proc_pid::{listpidinfo, pidinfo};

use super::super::decide::{v6only_from_vflag, vouches, ProcessInfo};
use super::super::Owner;

/// A listening TCP socket as libproc shows it: the kernel socket (`soi_so`), its bound address, and for an
/// IPv6 one whether it refuses IPv4 (`insi_vflag`, decoded by the portable [`v6only_from_vflag`]).
struct Listening {
    socket: u64,
    addr: SocketAddr,
    v6only: Option<bool>,
}

/// The listening TCP socket behind `fd` of `pid`, when it is one.
fn listening_socket(pid: i32, fd: i32) -> Option<Listening> {
    let info = pidfdinfo::<SocketFDInfo>(pid, fd).ok()?;
    if !matches!(SocketInfoKind::from(info.psi.soi_kind), SocketInfoKind::Tcp) {
        return None;
    }
    // SAFETY: soi_kind says the union holds TCP socket info.
    let tcp = unsafe { info.psi.soi_proto.pri_tcp };
    if !matches!(TcpSIState::from(tcp.tcpsi_state), TcpSIState::Listen) {
        return None;
    }
    let ini = tcp.tcpsi_ini;
    // insi_lport holds the port in network byte order in its low 16 bits.
    let port = u16::from_be(ini.insi_lport as u16);
    let v6only = v6only_from_vflag(ini.insi_vflag);
    let ip = if v6only.is_some() {
        // SAFETY: an IPv6 socket's local address is the union's in6_addr.
        IpAddr::V6(Ipv6Addr::from(unsafe { ini.insi_laddr.ina_6 }.s6_addr))
    } else {
        // SAFETY: an IPv4 socket's local address is the union's in4in6_addr; s_addr is in network byte order.
        IpAddr::V4(Ipv4Addr::from(u32::from_be(unsafe { ini.insi_laddr.ina_46 }.i46a_addr4.s_addr)))
    };
    Some(Listening { socket: info.psi.soi_so, addr: SocketAddr::new(ip, port), v6only })
}

/// One `proc_pidfdinfo`: the owner's fd is still the same listening socket, and that socket vouches for
/// `wanted` (bound to it exactly: the portable [`vouches`]), so the quick path never trusts a wildcard.
pub(in crate::ssh_session) fn still_holds(owner: &Owner, wanted: SocketAddr) -> bool {
    let (Ok(pid), true) = (i32::try_from(owner.pid), owner.socket_fd >= 0 && owner.socket_inode != 0) else {
        return false;
    };
    listening_socket(pid, owner.socket_fd)
        .is_some_and(|held| held.socket == owner.socket_inode && vouches(held.addr, wanted))
}

/// Whether `pid`'s socket listening on `listening` refuses IPv4 (`insi_vflag`): one call per socket fd of that
/// one process.
pub(in crate::ssh_session) fn socket_v6only(pid: u32, listening: SocketAddr) -> Option<bool> {
    let pid = i32::try_from(pid).ok()?;
    let open_files = pidinfo::<BSDInfo>(pid, 0).ok()?.pbi_nfiles as usize;
    let fds = listpidinfo::<ListFDs>(pid, open_files).ok()?;
    fds.iter()
        .filter(|fd| matches!(ProcFDType::from(fd.proc_fdtype), ProcFDType::Socket))
        .filter_map(|fd| listening_socket(pid, fd.proc_fd))
        .find(|held| held.addr == listening)
        .and_then(|held| held.v6only)
}

/// The fd and kernel socket by which `pid` holds a socket listening on `listening`'s port (run on a change
/// of owner only: one call per socket fd of that one process).
pub(in crate::ssh_session) fn socket_of(pid: u32, listening: SocketAddr) -> Option<(i32, u64)> {
    let pid = i32::try_from(pid).ok()?;
    let open_files = pidinfo::<BSDInfo>(pid, 0).ok()?.pbi_nfiles as usize;
    let fds = listpidinfo::<ListFDs>(pid, open_files).ok()?;
    let held: Vec<(i32, Listening)> = fds
        .iter()
        .filter(|fd| matches!(ProcFDType::from(fd.proc_fdtype), ProcFDType::Socket))
        .filter_map(|fd| Some((fd.proc_fd, listening_socket(pid, fd.proc_fd)?)))
        .filter(|(_, held)| held.addr.port() == listening.port())
        .collect();
    // The socket bound to that very address, else (an address the crate spelled otherwise) one on the port.
    let exact = held.iter().find(|(_, held)| held.addr == listening);
    exact.or(held.first()).map(|(fd, held)| (*fd, held.socket))
}

/// `pbi_comm` and `pbi_ppid` from `proc_pidinfo(PROC_PIDTBSDINFO)`.
pub(in crate::ssh_session) fn process_info(pid: u32) -> Option<ProcessInfo> {
    let info = pidinfo::<BSDInfo>(i32::try_from(pid).ok()?, 0).ok()?;
    let comm: Vec<u8> = info.pbi_comm.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    Some(ProcessInfo { name: String::from_utf8_lossy(&comm).into_owned(), parent_pid: info.pbi_ppid })
}

/// macOS has no unprivileged table of every user's listeners: the candidates are what the `listeners` crate
/// shows this user.
pub(in crate::ssh_session) fn candidate_addrs(_wanted: SocketAddr) -> Option<Vec<SocketAddr>> {
    None
}

/// macOS has no unprivileged table of every listener with its owner (libproc shows a non-root exporter only
/// its own user's processes), so a connect answers instead: "nothing listens" then costs one refused connect,
/// not a walk of every process's fds each round while the tunnel is down, and another user's listener reads
/// as unreadable, not as absent.
pub(in crate::ssh_session) fn listener_exists(wanted: SocketAddr) -> Option<bool> {
    super::accepts_connections(wanted)
}

/// `pbi_uid` from `proc_pidinfo(PROC_PIDTBSDINFO)`, and whether it is ours (the effective uid).
pub(in crate::ssh_session) fn user_of(pid: u32) -> (Option<u32>, Option<bool>) {
    let uid = i32::try_from(pid).ok().and_then(|pid| pidinfo::<BSDInfo>(pid, 0).ok()).map(|info| info.pbi_uid);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    (uid, uid.map(|uid| uid == ours))
}

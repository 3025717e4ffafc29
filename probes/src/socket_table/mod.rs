//! The kernel's table of listening TCP sockets, every user's, with no process walk: Linux's sock_diag netlink
//! dump and Windows' IP Helper listener table. macOS has no such unprivileged table (its callers use the
//! `listeners` crate and a connect instead). Shared by [`crate::ssh_session`] and [`crate::exposure`].

use std::net::SocketAddr;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{far_end, listening, peer_uid, receiving, FarEnd};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::listening;

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The bound address (0.0.0.0 / :: for a wildcard bind).
    pub addr: SocketAddr,
    /// The socket inode, to find its owner in /proc/PID/fd (Linux; 0 elsewhere).
    pub inode: u64,
    /// The owning process (Windows, whose table carries it; Linux's sock_diag does not say).
    pub pid: Option<u32>,
    /// The socket's owner uid (Linux's sock_diag carries it for every user's socket; `None` elsewhere).
    pub uid: Option<u32>,
    /// Whether an IPv6 socket refuses IPv4 connections (IPV6_V6ONLY, sock_diag's INET_DIAG_SKV6ONLY on Linux);
    /// `None` for IPv4 sockets and where the OS does not say.
    pub v6only: Option<bool>,
}

/// The listening sockets a connection to `wanted` could be handed to, whoever owns them (see
/// [`crate::net::could_receive`]).
#[cfg(any(target_os = "linux", windows))]
pub(crate) fn candidates(wanted: SocketAddr) -> std::io::Result<Vec<Listener>> {
    let all = listening(wanted.port(), |_| true)?;
    Ok(all.into_iter().filter(|l| crate::net::could_receive(l.addr, l.v6only, wanted)).collect())
}

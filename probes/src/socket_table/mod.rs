//! The kernel's table of listening TCP sockets, every user's, with no process walk: Linux's sock_diag netlink
//! dump and Windows' IP Helper listener table. macOS has no such unprivileged table (its callers use the
//! `listeners` crate and a connect instead). Shared by [`crate::ssh_session`] and [`crate::exposure`].

use std::net::SocketAddr;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{listening, listening_inodes};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::{listening, listening_family};

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The bound address (0.0.0.0 / :: for a wildcard bind).
    pub addr: SocketAddr,
    /// The socket inode, to find its owner in /proc/PID/fd (Linux; 0 elsewhere).
    pub inode: u64,
    /// The owning process (Windows, whose table carries it; Linux's sock_diag does not say).
    pub pid: Option<u32>,
}

//! The decisions of the ssh session probe that do not depend on the OS: which listener serves the forward's
//! address, which owner counts as an ssh client, and how the parent is looked up. Every platform's lookup
//! (Linux's /proc walk, the `listeners` crate on macOS, Windows and Linux) ends here, so this logic is tested
//! on Linux once for all of them.

use std::net::{IpAddr, SocketAddr};

use super::{Outcome, Owner};

/// True when a listener bound to `listening` accepts connections for `wanted`: same port, and the same
/// address, an IPv4-mapped IPv6 form of it, or a wildcard (`0.0.0.0`, `::`) of a family that reaches it.
pub fn listener_serves(listening: SocketAddr, wanted: SocketAddr) -> bool {
    if listening.port() != wanted.port() {
        return false;
    }
    let (listening_ip, wanted_ip) = (unmapped(listening.ip()), unmapped(wanted.ip()));
    if listening_ip == wanted_ip {
        return true;
    }
    match listening.ip() {
        // 0.0.0.0 takes IPv4 only; `::` takes IPv6 and (unless IPV6_V6ONLY, which ssh sets only for an
        // explicit IPv6 bind) IPv4 through mapped addresses, so a wildcard of either family serves both here.
        IpAddr::V4(v4) => v4.is_unspecified() && wanted_ip.is_ipv4(),
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; anything else unchanged.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        ip => ip,
    }
}

/// How closely a listener matches the wanted address: the kernel hands a connection to the most specific
/// bind, so an exact address beats a wildcard of the same family, which beats the other family's wildcard.
fn specificity(listening: SocketAddr, wanted: SocketAddr) -> u8 {
    if unmapped(listening.ip()) == unmapped(wanted.ip()) {
        3
    } else if listening.is_ipv4() == unmapped(wanted.ip()).is_ipv4() {
        2
    } else {
        1
    }
}

/// Of every listener `(address, item)` the OS reported, the one a connection to `wanted` reaches.
pub fn serving_listener<T>(listeners: impl IntoIterator<Item = (SocketAddr, T)>, wanted: SocketAddr) -> Option<T> {
    listeners
        .into_iter()
        .filter(|(addr, _)| listener_serves(*addr, wanted))
        .max_by_key(|(addr, _)| specificity(*addr, wanted))
        .map(|(_, item)| item)
}

/// The command names of ssh clients that hold a `-L` forward: OpenSSH's `ssh` (`ssh.exe` on Windows, where
/// names are case-insensitive) and PuTTY's `plink`. Whoever started it (autossh, launchd, systemd, a
/// Windows service or Task Scheduler) does not matter: the session lives as long as this process does.
pub const SSH_CLIENTS: [&str; 2] = ["ssh", "plink"];

/// True when a process named `name` is an ssh client (see [`SSH_CLIENTS`]).
pub fn is_ssh_client(name: &str) -> bool {
    // macOS's proc_name and Linux's comm give `ssh`; Windows gives the image name, `ssh.exe` or `PLINK.EXE`.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = match base.len().checked_sub(4) {
        Some(cut) if base.is_char_boundary(cut) && base[cut..].eq_ignore_ascii_case(".exe") => &base[..cut],
        _ => base,
    };
    SSH_CLIENTS.iter().any(|client| stem.eq_ignore_ascii_case(client))
}

/// Up when the owner is an ssh client, otherwise the port is held by another program.
pub fn classify(owner: Owner) -> Outcome {
    if is_ssh_client(&owner.name) {
        Outcome::Up(owner)
    } else {
        Outcome::NotSsh(owner)
    }
}

/// A process as the OS reports it: its name and its parent's pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The command or image name.
    pub name: String,
    /// The parent's pid (0 when it has none or the OS does not say).
    pub parent_pid: u32,
}

/// The parent of `pid` as `(parent_pid, parent_name)`, through `read` (the OS's one-process query). A pid
/// that is its own parent, or a parent of 0, has no parent to name (the kernel's idle process on Windows,
/// launchd and init report themselves or 0).
pub fn parent_of(pid: u32, read: impl Fn(u32) -> Option<ProcessInfo>) -> (u32, Option<String>) {
    let Some(parent_pid) = read(pid).map(|info| info.parent_pid) else { return (0, None) };
    if parent_pid == 0 || parent_pid == pid {
        return (parent_pid, None);
    }
    (parent_pid, read(parent_pid).map(|info| info.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_wildcard_or_mapped_listener_serves_loopback() {
        let wanted = addr("127.0.0.1:18789");
        assert!(listener_serves(addr("127.0.0.1:18789"), wanted));
        assert!(listener_serves(addr("0.0.0.0:18789"), wanted));
        assert!(listener_serves(addr("[::]:18789"), wanted));
        assert!(listener_serves(addr("[::ffff:127.0.0.1]:18789"), wanted));
        assert!(!listener_serves(addr("127.0.0.1:18790"), wanted));
        assert!(!listener_serves(addr("10.0.0.1:18789"), wanted));
        assert!(!listener_serves(addr("[::1]:18789"), wanted));
    }

    #[test]
    fn an_ipv6_forward_is_served_by_its_own_address_or_the_ipv6_wildcard_only() {
        let wanted = addr("[::1]:18789");
        assert!(listener_serves(addr("[::1]:18789"), wanted));
        assert!(listener_serves(addr("[::]:18789"), wanted));
        assert!(!listener_serves(addr("0.0.0.0:18789"), wanted));
        assert!(!listener_serves(addr("127.0.0.1:18789"), wanted));
        // A forward configured as a mapped address is the IPv4 address.
        assert!(listener_serves(addr("127.0.0.1:18789"), addr("[::ffff:127.0.0.1]:18789")));
    }

    #[test]
    fn the_most_specific_listener_wins() {
        let wanted = addr("127.0.0.1:18789");
        let listeners = vec![
            (addr("[::]:18789"), "v6 wildcard"),
            (addr("0.0.0.0:18789"), "v4 wildcard"),
            (addr("127.0.0.1:18789"), "exact"),
            (addr("127.0.0.1:18790"), "other port"),
        ];
        assert_eq!(serving_listener(listeners.clone(), wanted), Some("exact"));
        assert_eq!(serving_listener(listeners[..2].to_vec(), wanted), Some("v4 wildcard"));
        assert_eq!(serving_listener(listeners[..1].to_vec(), wanted), Some("v6 wildcard"));
        assert_eq!(serving_listener(listeners[3..].to_vec(), wanted), None);
        // The exact IPv4 listener reported in its mapped form still beats the wildcards.
        let mapped = vec![(addr("0.0.0.0:18789"), "v4 wildcard"), (addr("[::ffff:127.0.0.1]:18789"), "mapped")];
        assert_eq!(serving_listener(mapped, wanted), Some("mapped"));
    }

    #[test]
    fn ssh_clients_on_every_os_count_as_ssh() {
        for name in
            ["ssh", "ssh.exe", "SSH.EXE", "plink", "plink.exe", "PLINK.EXE", r"C:\Windows\System32\OpenSSH\ssh.exe"]
        {
            assert!(is_ssh_client(name), "{name}");
        }
        for name in ["sshd", "autossh", "ssh-agent", "sshd.exe", "python3", "wslrelay.exe", "nc", "", ".exe", "é.exe"]
        {
            assert!(!is_ssh_client(name), "{name}");
        }
    }

    #[test]
    fn classify_follows_the_owner_name() {
        let owner = |name: &str| Owner {
            pid: 7,
            name: name.into(),
            parent_pid: 1,
            parent_name: None,
            socket_inode: 0,
            socket_fd: -1,
        };
        assert_eq!(classify(owner("plink.exe")).state(), "up");
        assert_eq!(classify(owner("python3")).state(), "not_ssh");
    }

    #[test]
    fn the_parent_is_named_through_the_os_query() {
        let table = |pid: u32| match pid {
            40 => Some(ProcessInfo { name: "ssh".into(), parent_pid: 30 }),
            30 => Some(ProcessInfo { name: "autossh".into(), parent_pid: 1 }),
            1 => Some(ProcessInfo { name: "launchd".into(), parent_pid: 0 }),
            4 => Some(ProcessInfo { name: "System".into(), parent_pid: 4 }),
            50 => Some(ProcessInfo { name: "ssh.exe".into(), parent_pid: 99 }),
            _ => None,
        };
        assert_eq!(parent_of(40, table), (30, Some("autossh".into())));
        assert_eq!(parent_of(30, table), (1, Some("launchd".into())));
        assert_eq!(parent_of(1, table), (0, None));
        assert_eq!(parent_of(4, table), (4, None));
        // The parent exited (a Windows service host restarted): its pid, no name.
        assert_eq!(parent_of(50, table), (99, None));
        assert_eq!(parent_of(12345, table), (0, None));
    }
}

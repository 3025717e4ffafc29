//! The decisions of the ssh session probe that do not depend on the OS: which owner counts as an ssh
//! client, which of several candidate listeners' owners the outcome reports ([`judge`]; which listeners
//! are candidates is [`crate::net::could_receive`]) and how the parent is looked up. Every platform's lookup
//! (Linux's /proc walk, the `listeners` crate on macOS, Windows and Linux) ends here, so this logic is tested
//! on Linux once for all of them.

use std::net::SocketAddr;

use super::{Outcome, Owner};

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

/// The outcome for the owners of every listener that could receive a connection to `wanted`. Every one of
/// them must be trusted before a credential goes out, so the outcome reports the least trusted: another
/// user's process first, then a program that is not ssh, and among equals the listener the kernel prefers
/// (the most specific bind). One ssh of this user holding every candidate is `Up`.
pub fn judge(mut owners: Vec<(SocketAddr, Owner)>, wanted: SocketAddr) -> Outcome {
    owners.sort_by_key(|(addr, owner)| {
        (
            owner.same_user == Some(true),
            is_ssh_client(&owner.name),
            std::cmp::Reverse(crate::net::specificity(*addr, wanted)),
            owner.pid,
        )
    });
    match owners.into_iter().next() {
        Some((_, owner)) => classify(owner),
        None => Outcome::NoListener,
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
            uid: Some(1000),
            same_user: Some(true),
            user_name: None,
        };
        assert_eq!(crate::Label::label(&classify(owner("plink.exe"))), "up");
        assert_eq!(crate::Label::label(&classify(owner("python3"))), "not_ssh");
    }

    fn owner(pid: u32, name: &str, same_user: Option<bool>) -> Owner {
        Owner {
            pid,
            name: name.into(),
            parent_pid: 1,
            parent_name: None,
            socket_inode: u64::from(pid),
            socket_fd: 3,
            uid: Some(if same_user == Some(true) { 1000 } else { 65534 }),
            same_user,
            user_name: None,
        }
    }

    #[test]
    fn every_candidate_counts_and_the_least_trusted_is_reported() {
        let wanted: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        let (exact, v4_any, v6_any) =
            ("127.0.0.1:18789".parse().unwrap(), "0.0.0.0:18789".parse().unwrap(), "[::]:18789".parse().unwrap());
        // Our ssh on the IPv6 wildcard, another user's listener on the exact address: that one is reported,
        // whatever order the OS listed them in.
        for owners in [
            vec![(v6_any, owner(10, "ssh", Some(true))), (exact, owner(20, "python3", Some(false)))],
            vec![(exact, owner(20, "python3", Some(false))), (v6_any, owner(10, "ssh", Some(true)))],
        ] {
            let outcome = judge(owners, wanted);
            assert_eq!(outcome.owner().map(|o| o.pid), Some(20), "{outcome:?}");
        }
        // Another user's ssh beats our own program that is not ssh.
        let outcome =
            judge(vec![(exact, owner(30, "nc", Some(true))), (v4_any, owner(31, "ssh", Some(false)))], wanted);
        assert_eq!(outcome.owner().map(|o| o.pid), Some(31));
        // Our ssh on two binds: up, reported by the exact one.
        let outcome =
            judge(vec![(v4_any, owner(41, "ssh", Some(true))), (exact, owner(40, "ssh", Some(true)))], wanted);
        assert_eq!((crate::Label::label(&outcome), outcome.owner().map(|o| o.pid)), ("up", Some(40)));
        assert_eq!(judge(Vec::new(), wanted), Outcome::NoListener);
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

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

/// WSL's relay on Windows (its image name): it holds, as the user, every port a WSL2 VM listens on at
/// localhost, and carries each connection into the VM.
pub const WSL_RELAY: &str = "wslrelay.exe";

/// True when a process named `name` is WSL's relay ([`WSL_RELAY`], on any path, in any case).
pub fn is_wsl_relay(name: &str) -> bool {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.eq_ignore_ascii_case(WSL_RELAY)
}

/// Up when the owner is an ssh client; WSL's relay when it is this user's relay (whether the ssh inside WSL2
/// owns the forward is the companion's to say: not asked here); otherwise the port is held by another
/// program. Another user's relay is another program: a hijack, as any other user's listener.
pub fn classify(owner: Owner) -> Outcome {
    if is_ssh_client(&owner.name) {
        Outcome::Up(owner)
    } else if is_wsl_relay(&owner.name) && owner.same_user == Some(true) {
        Outcome::WslRelay { relay: owner, companion: super::wsl::Companion::NotAsked }
    } else {
        Outcome::NotSsh(owner)
    }
}

/// How far a listener's owner may be trusted, for ordering candidates: another program, then WSL's relay
/// (trusted only through its companion), then an ssh client.
fn trust_rank(name: &str) -> u8 {
    if is_ssh_client(name) {
        2
    } else if is_wsl_relay(name) {
        1
    } else {
        0
    }
}

/// The outcome for the owners of every listener that could receive a connection to `wanted`. Every one of
/// them must be trusted before a credential goes out, so the outcome reports the least trusted: another
/// user's process first, then a program that is not ssh, then WSL's relay, and among equals the listener the kernel prefers
/// (the most specific bind). One ssh of this user holding every candidate is `Up`.
pub fn judge(mut owners: Vec<(SocketAddr, Owner)>, wanted: SocketAddr) -> Outcome {
    owners.sort_by_key(|(addr, owner)| {
        (
            owner.same_user == Some(true),
            trust_rank(&owner.name),
            std::cmp::Reverse(crate::net::specificity(*addr, wanted)),
            owner.pid,
        )
    });
    match owners.into_iter().next() {
        Some((_, owner)) => classify(owner),
        None => Outcome::NoListener,
    }
}

/// Whether a listener bound to `addr` is sure to take every connection to `wanted`, whatever other users hold:
/// bound to exactly that address and port, which no other socket can also bind. A wildcard is not: another
/// user's more specific bind on `wanted` would take the connections, and where the OS shows this user no other
/// user's sockets (macOS) nothing would say so (issue 38: with `ssh -g` and another user already on
/// 127.0.0.1:P, the token went to that user).
pub fn vouches(addr: SocketAddr, wanted: SocketAddr) -> bool {
    addr == wanted
}

/// One listening socket this user can see, where the OS shows no other user's (macOS): its bound address,
/// whether an IPv6 one refuses IPv4 (`insi_vflag`; `None` for IPv4 or when unread), and its owner.
#[derive(Debug, Clone)]
pub struct Visible {
    /// The bound address.
    pub addr: SocketAddr,
    /// IPV6_V6ONLY, for an IPv6 socket.
    pub v6only: Option<bool>,
    /// Its process.
    pub owner: Owner,
}

/// The outcome from what this user can see (macOS): the visible listeners that could take a connection to
/// `wanted` ([`crate::net::could_receive`], with each socket's own v6only) are judged as everywhere when one
/// of them is bound to `wanted` itself ([`vouches`]). When none is, an invisible listener of another user
/// might take the connection, so `accepts` (a connect) decides: something accepting is unreadable, never ours.
pub fn judge_visible(visible: Vec<Visible>, wanted: SocketAddr, accepts: impl FnOnce() -> Option<bool>) -> Outcome {
    let candidates: Vec<Visible> =
        visible.into_iter().filter(|l| crate::net::could_receive(l.addr, l.v6only, wanted)).collect();
    if candidates.iter().any(|l| vouches(l.addr, wanted)) {
        return judge(candidates.into_iter().map(|l| (l.addr, l.owner)).collect(), wanted);
    }
    match (accepts(), candidates.is_empty()) {
        (Some(false) | None, true) => Outcome::NoListener,
        (_, true) => Outcome::Unreadable {
            detail: format!(
                "a listener takes connections to {wanted}, but no process this user can read holds one (another                  user's; macOS shows no other user's sockets)"
            ),
        },
        (_, false) => {
            let ours: Vec<String> =
                candidates.iter().map(|l| format!("{} pid {} on {}", l.owner.name, l.owner.pid, l.addr)).collect();
            Outcome::Unreadable {
                detail: format!(
                    "only a wildcard listener of this user's could take connections to {wanted} ({}), and another                      user's listener on {wanted} itself would take them unseen (macOS shows no other user's                      sockets): bind the forward to {wanted} (ssh -L {}:..., without -g)",
                    ours.join(", "),
                    wanted
                ),
            }
        }
    }
}

/// What macOS's `insi_vflag` says of a socket: `INI_IPV4` (0x1) and `INI_IPV6` (0x2). An IPv6 socket that
/// accepts IPv4 carries both (xnu's `tcp6_usr_bind` sets `INP_IPV4` on an unspecified bind unless
/// IPV6_V6ONLY); `None` for an IPv4 socket, where the question does not arise.
pub fn v6only_from_vflag(vflag: u8) -> Option<bool> {
    const INI_IPV4: u8 = 0x1;
    const INI_IPV6: u8 = 0x2;
    (vflag & INI_IPV6 != 0).then_some(vflag & INI_IPV4 == 0)
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
        assert_eq!(crate::Label::label(&classify(owner("wslrelay.exe"))), "wsl_relay");
    }

    #[test]
    fn wsl_relay_is_known_by_its_image_name_on_any_path_and_case() {
        for name in ["wslrelay.exe", "WSLRELAY.EXE", r"C:\Program Files\WSL\wslrelay.exe"] {
            assert!(is_wsl_relay(name), "{name}");
        }
        for name in ["wslrelay", "wsl.exe", "wslhost.exe", "ssh.exe", ""] {
            assert!(!is_wsl_relay(name), "{name}");
        }
    }

    /// The relay's decision table: the holder's name and user, then what the companion says.
    #[test]
    fn wsl_relay_of_this_user_is_its_own_state_and_trusted_only_while_the_companion_vouches() {
        use super::super::wsl::Companion;
        use super::super::Trust;
        let label = |outcome: &Outcome| crate::Label::label(outcome);
        let relay = |same_user: Option<bool>| owner(77, "wslrelay.exe", same_user);
        // Another user's relay, or one whose user cannot be read: another program, a hijack.
        for same_user in [Some(false), None] {
            let outcome = classify(relay(same_user));
            assert_eq!(label(&outcome), "not_ssh", "{same_user:?}");
            assert_eq!(outcome.hijacked(&[]), Some(true));
        }
        // This user's relay: its own state, never a hijack, trusted only while the companion vouches.
        let with = |companion: Companion| Outcome::WslRelay { relay: relay(Some(true)), companion };
        assert_eq!(label(&classify(relay(Some(true)))), "wsl_relay");
        let vouched = with(Companion::Vouches { ssh_pid: Some(9) });
        assert!(matches!(vouched.trust(&[]), Trust::Ours(owner) if owner.pid == 77));
        assert_eq!(vouched.hijacked(&[]), Some(false));
        for companion in [
            Companion::NotAsked,
            Companion::NotConfigured,
            Companion::SshDown { state: "no_listener" },
            Companion::Unwatched,
            Companion::Unreachable("refused".into()),
        ] {
            let outcome = with(companion.clone());
            assert!(matches!(outcome.trust(&[]), Trust::NotOurs(_)), "{companion:?}");
            assert_eq!(outcome.hijacked(&[]), Some(false), "{companion:?}: our relay is no hijack");
            assert_ne!(outcome.verdict(), vouched.verdict(), "{companion:?}");
        }
        // The relay beside another user's listener: the other user's is reported.
        let wanted: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        let judged = judge(
            vec![
                ("127.0.0.1:18789".parse().unwrap(), relay(Some(true))),
                ("0.0.0.0:18789".parse().unwrap(), owner(31, "python3", Some(false))),
            ],
            wanted,
        );
        assert_eq!(judged.owner().map(|o| o.pid), Some(31));
        // Our ssh and our relay both candidates: the relay (less trusted) is reported.
        let judged = judge(
            vec![
                ("127.0.0.1:18789".parse().unwrap(), owner(40, "ssh", Some(true))),
                ("0.0.0.0:18789".parse().unwrap(), relay(Some(true))),
            ],
            wanted,
        );
        assert_eq!(label(&judged), "wsl_relay");
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

    /// Synthetic macOS tables: what a user sees (their own sockets) and what a connect says.
    #[test]
    fn on_macos_only_a_listener_bound_to_the_address_itself_vouches_for_it() {
        let wanted: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        let visible = |addr: &str, v6only: Option<bool>, name: &str| Visible {
            addr: addr.parse().unwrap(),
            v6only,
            owner: owner(10, name, Some(true)),
        };
        let label = |outcome: &Outcome| crate::Label::label(outcome);
        // Our ssh on the address itself: up, whatever a connect would say (it is not asked).
        let up = judge_visible(vec![visible("127.0.0.1:18789", None, "ssh")], wanted, || panic!("no connect"));
        assert_eq!(label(&up), "up");
        // ssh -g: a v6only [::] (insi_vflag INI_IPV6 alone) takes no IPv4 connection; another user's listener on
        // 127.0.0.1, invisible, does: a connect is accepted, so unreadable, never ours.
        let v6only = v6only_from_vflag(0x2);
        assert_eq!(v6only, Some(true));
        let hijacked = judge_visible(vec![visible("[::]:18789", v6only, "ssh")], wanted, || Some(true));
        assert_eq!(label(&hijacked), "unreadable", "{hijacked:?}");
        // A dual-stack [::] of ours (INI_IPV4 | INI_IPV6) could take it, but so could an invisible more specific
        // bind of another user's: unreadable.
        let dual = v6only_from_vflag(0x3);
        assert_eq!(dual, Some(false));
        let wildcard = judge_visible(vec![visible("[::]:18789", dual, "ssh")], wanted, || Some(true));
        assert_eq!(label(&wildcard), "unreadable", "{wildcard:?}");
        assert!(format!("{wildcard:?}").contains("without -g"));
        let v4_any = judge_visible(vec![visible("0.0.0.0:18789", None, "ssh")], wanted, || Some(true));
        assert_eq!(label(&v4_any), "unreadable");
        // Nothing visible: a connect tells another user's invisible listener from none.
        assert_eq!(label(&judge_visible(Vec::new(), wanted, || Some(true))), "unreadable");
        assert_eq!(judge_visible(Vec::new(), wanted, || Some(false)), Outcome::NoListener);
        // Our ssh on the address and our other program on a wildcard: the least trusted is reported.
        let mixed = judge_visible(
            vec![visible("127.0.0.1:18789", None, "ssh"), visible("[::]:18789", dual, "python3")],
            wanted,
            || panic!("no connect"),
        );
        assert_eq!(label(&mixed), "not_ssh");
        // An IPv4 socket's vflag (INI_IPV4) says nothing of v6only.
        assert_eq!(v6only_from_vflag(0x1), None);
    }
}

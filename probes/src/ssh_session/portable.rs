//! The lookup every macOS and Windows laptop runs, and Linux's selectable second path: the `listeners`
//! crate reads the OS's socket and process tables (upstream tests it on macOS, Windows and Linux), and
//! [`super::os`] adds the parent, the one-call steady state and, where the OS has one, its own table of
//! every user's listeners, so that a candidate the crate could not attribute reads as unreadable. Nothing
//! here spawns a process.

use std::net::SocketAddr;

use super::decide;
use super::{os, Found, Outcome, Owner, Target};

/// The steady state: the remembered owner still holds the one listener that could take the connection (on
/// macOS also: that socket is still bound to the address itself, read in the same call: it vouches).
pub(super) fn quick_lookup(target: &Target) -> Option<Outcome> {
    let owner = target.last_owner.as_ref()?;
    os::still_holds(owner, target.addr).then(|| decide::classify(owner.clone()))
}

/// A full lookup through every process's sockets (on a change of owner, on a blocking thread).
pub(super) fn lookup(target: &Target) -> Outcome {
    // Where the OS has a table of every listener (Linux, Windows), "nothing listens" needs no process walk:
    // the usual state of a forward whose ssh is down, asked every round until it is back.
    let from_os = os::candidate_addrs(target.addr);
    if from_os.as_ref().is_some_and(|addrs| addrs.is_empty()) {
        return Outcome::NoListener;
    }
    let all = match listeners::get_all() {
        Ok(all) => all,
        Err(err) => return Outcome::Unsupported { detail: format!("cannot read the socket tables: {err}") },
    };
    let Some(from_os) = from_os else { return from_what_this_user_sees(all, target.addr) };
    let mut seen: Vec<(SocketAddr, u32)> = Vec::new();
    let mut owners = Vec::new();
    for listener in all {
        let tcp_listen =
            listener.protocol == listeners::Protocol::TCP && listener.state == listeners::SocketState::Listen;
        // The crate does not say v6only; the OS table of every listener does (Linux, Windows): it decides.
        let candidate = from_os.contains(&listener.socket);
        if !tcp_listen || !candidate || seen.contains(&(listener.socket, listener.process.pid)) {
            continue;
        }
        seen.push((listener.socket, listener.process.pid));
        owners.push((listener.socket, owner_of(listener.process.pid, listener.process.name, listener.socket)));
    }
    // A candidate the OS lists but no readable process owns: another user's.
    let unattributed: Vec<String> = from_os
        .iter()
        .filter(|addr| !seen.iter().any(|(seen_addr, _)| seen_addr == *addr))
        .map(|addr| addr.to_string())
        .collect();
    if !unattributed.is_empty() {
        return Outcome::Unreadable {
            detail: format!(
                "a listener that could take the forward's connections ({}) is owned by no process this user can \
                 read (another user's; needs the same uid or privilege)",
                unattributed.join(", ")
            ),
        };
    }
    decide::judge(owners, target.addr)
}

/// Where the OS shows this user only their own sockets (macOS): each visible TCP listener with its own v6only
/// (`insi_vflag`), judged by [`decide::judge_visible`], a connect deciding when none is bound to the address
/// itself.
fn from_what_this_user_sees(all: std::collections::HashSet<listeners::Listener>, wanted: SocketAddr) -> Outcome {
    let mut visible: Vec<decide::Visible> = Vec::new();
    for listener in all {
        let tcp_listen =
            listener.protocol == listeners::Protocol::TCP && listener.state == listeners::SocketState::Listen;
        let pid = listener.process.pid;
        if !tcp_listen || visible.iter().any(|v| v.addr == listener.socket && v.owner.pid == pid) {
            continue;
        }
        let v6only = os::socket_v6only(pid, listener.socket);
        let owner = owner_of(pid, listener.process.name, listener.socket);
        visible.push(decide::Visible { addr: listener.socket, v6only, owner });
    }
    decide::judge_visible(visible, wanted, || os::listener_exists(wanted))
}

fn owner_of(pid: u32, name: String, socket: SocketAddr) -> Owner {
    let (parent_pid, parent_name) = decide::parent_of(pid, os::process_info);
    let (socket_fd, socket_inode) = os::socket_of(pid, socket).unwrap_or((-1, 0));
    Owner::found(Found { pid, name, parent_pid, parent_name, socket_inode, socket_fd })
}

//! The lookup every macOS and Windows laptop runs, and Linux's selectable second path: the `listeners`
//! crate reads the OS's socket and process tables (upstream tests it on macOS, Windows and Linux), and
//! [`super::os`] adds the parent and the one-call steady state. Nothing here spawns a process.

use super::decide;
use super::{os, Found, Outcome, Owner, Target};

/// The steady state: the remembered owner still holds the listening socket (one OS call).
pub(super) fn quick_lookup(target: &Target) -> Option<Outcome> {
    let owner = target.last_owner.as_ref()?;
    os::still_holds(owner, target.addr).then(|| decide::classify(owner.clone()))
}

/// A full lookup through every process's sockets (on a change of owner, on a blocking thread).
pub(super) fn lookup(target: &Target) -> Outcome {
    // Where the OS has a table of every listener (Linux, Windows), "nothing listens" needs no process walk:
    // the usual state of a forward whose ssh is down, asked every round until it is back.
    if os::listener_exists(target.addr) == Some(false) {
        return Outcome::NoListener;
    }
    let all = match listeners::get_all() {
        Ok(all) => all,
        Err(err) => return Outcome::Unsupported { detail: format!("cannot read the socket tables: {err}") },
    };
    let tcp_listeners = all
        .into_iter()
        .filter(|l| l.protocol == listeners::Protocol::TCP && l.state == listeners::SocketState::Listen)
        .map(|l| (l.socket, l));
    let Some(found) = crate::net::serving_listener(tcp_listeners, target.addr) else {
        return match os::listener_exists(target.addr) {
            Some(true) => Outcome::Unreadable {
                detail: format!(
                    "a listener exists on {} but no readable process owns it (another user's; needs the same uid \
                     or privilege)",
                    target.addr
                ),
            },
            _ => Outcome::NoListener,
        };
    };
    let pid = found.process.pid;
    let (parent_pid, parent_name) = decide::parent_of(pid, os::process_info);
    let (socket_fd, socket_inode) = os::socket_of(pid, found.socket).unwrap_or((-1, 0));
    let name = found.process.name;
    decide::classify(Owner::found(Found { pid, name, parent_pid, parent_name, socket_inode, socket_fd }))
}

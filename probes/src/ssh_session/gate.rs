//! Whose is a local listener: [`Trust`] (is its owner our own user's ssh?) and the far end of a connection to
//! it, what the credential gate ([`crate::gate`]) asks of a `local` route.

use super::{Outcome, Owner};

/// Whether a listener may be handed a credential: the one gate every sender of the gateway token goes
/// through (the auth probe, the WebSocket handshake probe, the doctor, evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// An ssh client (or a process named in `also_trusted`) of the exporter's own user owns the listener.
    Ours(Owner),
    /// Anything else: why, for the log and the doctor (it names who holds the port and whose it is).
    NotOurs(String),
}

/// Linux: the socket at the other end of `stream` (the listener's accepted socket) carries the uid of the
/// listener's process; it must be ours. Only an accepted socket vouches (ESTABLISHED or CLOSE_WAIT, with an
/// inode): on loopback the far end's half of the handshake may still be in flight when connect() returns, or the
/// connection may still sit in the listener's queue (a burst of connections waits for its accept loop), so it is
/// looked at again, at growing intervals up to 10 ms, for up to `timeout`; a socket in any other state vouches
/// for no one.
#[cfg(target_os = "linux")]
pub async fn far_end_is_ours(stream: &tokio::net::TcpStream, timeout: std::time::Duration) -> Result<(), String> {
    use crate::socket_table::FarEnd;
    let (local, peer) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) => (local, peer),
        _ => return Err("the connection closed before its far end could be checked".into()),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    let mut last = FarEnd::Missing;
    let deadline = tokio::time::Instant::now() + timeout;
    for attempt in 0u32.. {
        match crate::socket_table::far_end(local, peer) {
            Ok(FarEnd::Settled(uid)) if uid == ours => return Ok(()),
            Ok(FarEnd::Settled(uid)) => {
                return Err(format!(
                    "the connection was taken by a socket of {}, not this user",
                    super::describe_uid(uid)
                ))
            }
            Ok(found) => last = found,
            Err(err) => return Err(format!("the connection's far end cannot be read: {err}")),
        }
        // A socket gone, or in a state that vouches for no one, is not waited for long: a few looks, as for one
        // whose far end is still being set up.
        let patient = matches!(last, FarEnd::Pending) || attempt < 8;
        if !patient || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt.min(10)))).await;
    }
    Err(match last {
        FarEnd::Pending => "the connection's far end was not accepted in time (still half-open or queued)".into(),
        FarEnd::Unsettled(state) => {
            format!("the connection's far end is in TCP state {state}, which vouches for no one")
        }
        _ => "the connection's far end was not found (the listener never took it, its queue full, or took it and \
              closed it)"
            .into(),
    })
}

/// Elsewhere the listener re-check in [`crate::gate::CredentialGate::confirm`] is the whole confirmation (macOS
/// shows no other user's sockets; Windows' connection table is a later addition).
#[cfg(not(target_os = "linux"))]
pub async fn far_end_is_ours(_stream: &tokio::net::TcpStream, _timeout: std::time::Duration) -> Result<(), String> {
    Ok(())
}

impl Outcome {
    /// The verdict this outcome stands for, its kind and its holder, for logs that say each verdict once: the
    /// owner's name, pid and user, or the listeners no readable process owns, never the figures that vary
    /// from one lookup to the next (how many processes could not be read).
    pub fn verdict(&self) -> String {
        match self {
            Outcome::Up(owner) | Outcome::NotSsh(owner) => {
                format!("{}:{}:{}:{}", crate::Label::label(self), owner.name, owner.pid, owner.user())
            }
            Outcome::WslRelay { relay, companion } => {
                format!("wsl_relay:{}:{}:{}", relay.pid, crate::Label::label(companion), relay.user())
            }
            Outcome::Unreadable { detail } => format!("unreadable:{}", detail.split(';').next().unwrap_or_default()),
            other => crate::Label::label(other).to_owned(),
        }
    }

    /// Whether the owner this outcome found may be handed the gateway token. Only an ssh client (ssh,
    /// autossh's ssh, plink, ssh.exe) or a process named in `also_trusted` (the gateway itself on the
    /// gateway host, a stand-in in tests), running as the exporter's own user, is trusted: a listener of
    /// another user, or of another program, would receive the token the moment ssh is down.
    pub fn trust(&self, also_trusted: &[String]) -> Trust {
        match self {
            Outcome::Up(owner) | Outcome::NotSsh(owner) => {
                let named = owner.is_ssh() || also_trusted.contains(&owner.name);
                match (named, owner.same_user) {
                    (true, Some(true)) => Trust::Ours(owner.clone()),
                    (true, _) => Trust::NotOurs(format!(
                        "the port is held by {} (pid {}) of {}: not this user's, so it gets no token",
                        owner.name,
                        owner.pid,
                        owner.user()
                    )),
                    (false, _) => Trust::NotOurs(format!(
                        "the port is held by {} (pid {}, {}), not an ssh client: it would be handed the token",
                        owner.name,
                        owner.pid,
                        owner.user()
                    )),
                }
            }
            Outcome::WslRelay { relay, companion } => match companion.why_not() {
                None => Trust::Ours(relay.clone()),
                Some(why) => Trust::NotOurs(why),
            },
            Outcome::NoListener => Trust::NotOurs("nothing listens on the forward's port".into()),
            Outcome::Unreadable { detail } => {
                Trust::NotOurs(format!("the port's owner cannot be read ({detail}): another user's process"))
            }
            Outcome::Unknown { detail } => {
                Trust::NotOurs(format!("could not tell who holds the port ({detail}): withheld until a lookup answers"))
            }
            Outcome::Unsupported { detail } => Trust::NotOurs(format!("the port's owner is unknown ({detail})")),
        }
    }

    /// Whether the forward's port is held by something the CLI should not hand its token: a process that is
    /// not an ssh client, an ssh client of another user, or a listener whose owner this user cannot read
    /// (this user's WSL relay is none of these, whatever its companion says).
    /// `None` when the owner lookup is unsupported here or could not tell this time (timed out, cut off):
    /// unknown is not hijacked, so the caller keeps the last known value.
    pub fn hijacked(&self, also_trusted: &[String]) -> Option<bool> {
        match self {
            Outcome::NoListener => Some(false),
            Outcome::Unsupported { .. } | Outcome::Unknown { .. } => None,
            Outcome::Unreadable { .. } => Some(true),
            // This user's relay: whether the ssh behind it is up is the session's business, not a hijack.
            Outcome::WslRelay { .. } => Some(false),
            Outcome::Up(_) | Outcome::NotSsh(_) => Some(matches!(self.trust(also_trusted), Trust::NotOurs(_))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_names_the_kind_and_holder_and_not_the_figures_a_lookup_varies() {
        let unreadable = |denied: usize| Outcome::Unreadable {
            detail: format!(
                "a listener that could take the forward's connections, 127.0.0.1:1 (held by nobody (uid 65534)), is \
                 owned by no process this user can read; {denied} processes' fds were not readable"
            ),
        };
        assert_eq!(unreadable(3).verdict(), unreadable(41).verdict());
        assert!(unreadable(3).verdict().contains("uid 65534"), "{}", unreadable(3).verdict());
        assert_ne!(unreadable(3).verdict(), Outcome::NoListener.verdict());
        let owner = |pid: u32| {
            Outcome::NotSsh(Owner {
                pid,
                name: "python3".into(),
                parent_pid: 1,
                parent_name: None,
                socket_inode: 7,
                socket_fd: 3,
                uid: Some(65534),
                same_user: Some(false),
                user_name: Some("nobody".into()),
            })
        };
        assert_eq!(owner(42).verdict(), owner(42).verdict());
        assert_ne!(owner(42).verdict(), owner(43).verdict(), "another holder is another verdict");
    }
}

//! The exporter's listening sockets (`web.listen`, each `[[auth_tap]] listen`): a socket the service manager
//! opened for us (a systemd `.socket` unit's `LISTEN_FDS`, launchd's `Sockets` entry `Listeners`), matched by
//! its own address, else our own bind; and, when the address is taken, the bind retried with backoff while
//! everything else runs (issue 38: a port taken before start stopped the exporter, and whoever held it got
//! the CLI's token and served `/metrics` in its place).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The sockets the service manager handed over, not yet taken by a listen address.
static INHERITED: OnceLock<Mutex<Vec<TcpListener>>> = OnceLock::new();

/// Take the listening sockets the service manager opened for this process, once, before any other thread
/// exists: systemd's protocol clears its environment variables (so the exporter's children never see them),
/// and changing the environment is only sound while the process has one thread. Returns how many there were
/// and the addresses of those that are TCP listeners.
pub fn adopt_inherited() -> Vec<SocketAddr> {
    let sockets = from_service_manager();
    let addresses = sockets.iter().filter_map(|socket| socket.local_addr().ok()).collect();
    let _ = INHERITED.set(Mutex::new(sockets));
    addresses
}

/// systemd (and any manager speaking its protocol: `systemd-socket-activate`, `systemfd`): the descriptors
/// from `LISTEN_FDS`, those that are TCP sockets.
#[cfg(not(target_os = "macos"))]
fn from_service_manager() -> Vec<TcpListener> {
    let mut handed = listenfd::ListenFd::from_env();
    (0..handed.len()).filter_map(|index| handed.take_tcp_listener(index).ok().flatten()).collect()
}

/// launchd: the sockets of the job's `Sockets` entry named `Listeners` (none when not run by launchd, or when
/// the plist has no such entry).
#[cfg(target_os = "macos")]
fn from_service_manager() -> Vec<TcpListener> {
    use std::os::unix::io::FromRawFd;
    match raunch::activate_socket("Listeners") {
        // SAFETY: launchd hands each descriptor to this process once; nothing else owns it.
        Ok(fds) => fds.into_iter().map(|fd| unsafe { TcpListener::from_raw_fd(fd) }).collect(),
        Err(_) => Vec::new(),
    }
}

/// A listening socket on `addr`, non-blocking: the service manager's for that address when it handed one
/// over, else bound now.
pub fn open(addr: SocketAddr) -> io::Result<TcpListener> {
    let inherited = INHERITED.get().and_then(|sockets| {
        let mut sockets = sockets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = sockets.iter().position(|socket| socket.local_addr().ok() == Some(addr))?;
        Some(sockets.swap_remove(at))
    });
    let listener = match inherited {
        Some(listener) => listener,
        None => TcpListener::bind(addr)?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Why a bind failed, from a fixed set: the `reason` label of `openclaw_exporter_listen_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure {
    /// Another socket holds the address.
    InUse,
    /// The address is not this machine's (yet: an interface not up).
    Unavailable,
    /// Not allowed (a privileged port).
    Denied,
    /// Anything else.
    Other,
}

impl BindFailure {
    /// Every reason, as label values (their series exist at zero).
    pub const LABELS: [&'static str; 4] = ["in_use", "unavailable", "denied", "other"];

    /// The reason of a failed bind.
    pub fn of(error: &io::Error) -> BindFailure {
        match error.kind() {
            io::ErrorKind::AddrInUse => BindFailure::InUse,
            io::ErrorKind::AddrNotAvailable => BindFailure::Unavailable,
            io::ErrorKind::PermissionDenied => BindFailure::Denied,
            _ => BindFailure::Other,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            BindFailure::InUse => "in_use",
            BindFailure::Unavailable => "unavailable",
            BindFailure::Denied => "denied",
            BindFailure::Other => "other",
        }
    }
}

/// The first wait between two binds; it doubles up to [`RETRY_CAP`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two binds: a bind is one system call, and the listener is back within this
/// of the address's release (the tap's client then reaches the tap, not whoever held it).
const RETRY_CAP: Duration = Duration::from_secs(2);
/// How often the holder of a taken address is looked up again while it stays taken (a lookup may walk
/// every process).
const HOLDER_EVERY: Duration = Duration::from_secs(30);

/// One failed bind, as the retry loop reports it.
pub struct Failed<'a, H> {
    /// Why.
    pub reason: BindFailure,
    /// The error itself.
    pub error: &'a io::Error,
    /// Who holds the address (looked up when it is taken: on the first failure, then every 30 s).
    pub holder: Option<&'a H>,
}

/// Open a listener on `addr` ([`open`]), retrying with backoff (250 ms doubling to 2 s) until it binds or
/// `cancel` fires (then `None`). Each failure is reported to `report`, with the holder `lookup` finds when
/// the address is taken; the lookup runs on the blocking pool.
pub async fn open_when_free<H, L, R>(
    addr: SocketAddr,
    cancel: &CancellationToken,
    lookup: L,
    mut report: R,
) -> Option<TcpListener>
where
    H: Send + 'static,
    L: Fn(SocketAddr) -> H + Clone + Send + 'static,
    R: FnMut(Failed<'_, H>),
{
    let mut wait = RETRY_FIRST;
    let mut holder: Option<(H, Instant)> = None;
    loop {
        let error = match open(addr) {
            Ok(listener) => return Some(listener),
            Err(error) => error,
        };
        let reason = BindFailure::of(&error);
        if reason == BindFailure::InUse && holder.as_ref().is_none_or(|(_, at)| at.elapsed() >= HOLDER_EVERY) {
            let lookup = lookup.clone();
            if let Ok(found) = tokio::task::spawn_blocking(move || lookup(addr)).await {
                holder = Some((found, Instant::now()));
            }
        }
        if reason != BindFailure::InUse {
            holder = None;
        }
        report(Failed { reason, error: &error, holder: holder.as_ref().map(|(found, _)| found) });
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_address_is_retried_and_taken_once_released() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let failures = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen = failures.clone();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            drop(holder);
        });
        let opened = open_when_free(
            addr,
            &cancel,
            |_| "the holder",
            move |failed: Failed<'_, &str>| {
                seen.lock().unwrap().push((failed.reason, failed.holder.copied()));
            },
        )
        .await;
        release.await.unwrap();
        assert_eq!(opened.unwrap().local_addr().unwrap(), addr);
        let failures = failures.lock().unwrap();
        assert!(!failures.is_empty(), "the address was held at first");
        assert!(failures.iter().all(|failure| *failure == (BindFailure::InUse, Some("the holder"))), "{failures:?}");
    }

    #[tokio::test]
    async fn a_cancelled_retry_ends_without_a_listener() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(open_when_free(addr, &cancel, |_| (), |_: Failed<'_, ()>| {}).await.is_none());
    }

    #[test]
    fn bind_failures_have_a_label_each() {
        let labels: Vec<&str> = [BindFailure::InUse, BindFailure::Unavailable, BindFailure::Denied, BindFailure::Other]
            .into_iter()
            .map(BindFailure::label)
            .collect();
        assert_eq!(labels, BindFailure::LABELS);
        assert_eq!(BindFailure::of(&io::Error::from(io::ErrorKind::AddrInUse)), BindFailure::InUse);
    }
}

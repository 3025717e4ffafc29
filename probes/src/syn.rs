//! SYN probe: a TCP connect to the forward's local address.
//!
//! Through an ssh -L forward, connect() succeeds in microseconds even when the remote host or the gateway is
//! dead (ssh accepts locally and opens the channel afterwards), so success here means "ssh's listener
//! exists", nothing more. `Refused` means no process listens: ssh is gone, or still (re)connecting.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::net::{close_without_time_wait, finish_connect, start_connect, Started};

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The ssh -L listener, e.g. 127.0.0.1:18789.
    pub addr: SocketAddr,
}

/// A successful connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// Time from connect() called to the socket established.
    pub connect: Duration,
}

/// Why a connect failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens on the address (ECONNREFUSED).
    #[error("connection refused")]
    Refused,
    /// The connect did not complete within the timeout.
    #[error("connect timed out")]
    Timeout,
    /// Any other socket error; the kind is kept for the log only.
    #[error("connect failed: {0}")]
    Other(io::ErrorKind),
    /// The exporter's own shortage (no descriptor, buffer or local port): the forward was never asked, so
    /// the round says nothing about it.
    #[error("the exporter could not connect for want of its own resources: {0}")]
    LocalError(io::ErrorKind),
}

crate::labels!(Failure {
    Failure::Refused => "refused",
    Failure::Timeout => "timeout",
    Failure::Other(_) => "error",
    Failure::LocalError(_) => "local_error",
});

/// What a SYN probe returns.
pub type Outcome = Result<Connected, Failure>;

impl From<crate::CutOff> for Result<Connected, Failure> {
    fn from(_: crate::CutOff) -> Self {
        Err(Failure::Timeout)
    }
}

impl crate::Probe for Target {
    const KIND: &'static str = "syn";
    type Outcome = Outcome;

    /// Connect to `addr` and close again at once.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let socket = match start_connect(self.addr) {
            Ok(Started::Established(socket)) => {
                let connect = started.elapsed();
                let _ = socket.set_linger(Some(Duration::ZERO));
                return Ok(Connected { connect });
            }
            Ok(Started::Pending(socket)) => socket,
            Err(err) => return Err(failure(err)),
        };
        // A forward on another host (or a loaded machine): wait for the handshake through the runtime.
        match tokio::time::timeout(timeout.saturating_sub(started.elapsed()), finish_connect(socket)).await {
            Ok(Ok(stream)) => {
                let connect = started.elapsed();
                close_without_time_wait(stream);
                Ok(Connected { connect })
            }
            Ok(Err(err)) => Err(failure(err)),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

fn failure(err: io::Error) -> Failure {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        kind if crate::net::is_local_shortage(&err) => Failure::LocalError(kind),
        kind => Failure::Other(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;
    use tokio::net::TcpListener;

    #[test]
    fn the_exporters_own_shortage_is_a_local_error_not_the_forwards() {
        let emfile = io::Error::from_raw_os_error(if cfg!(windows) { 10024 } else { 24 });
        assert_eq!(failure(emfile).label(), "local_error");
        assert_eq!(failure(io::Error::from(io::ErrorKind::AddrNotAvailable)).label(), "local_error");
        assert_eq!(failure(io::Error::from(io::ErrorKind::ConnectionRefused)).label(), "refused");
        assert_eq!(failure(io::Error::from(io::ErrorKind::ConnectionReset)).label(), "error");
    }

    #[tokio::test]
    async fn connects_to_a_listener_and_times_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut target = Target { addr: listener.local_addr().unwrap() };
        let outcome = crate::Probe::probe(&mut target, Duration::from_secs(1)).await.unwrap();
        assert!(outcome.connect < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_handshake_that_does_not_finish_in_connect_is_awaited_then_times_out() {
        // Backlog 0 with one connection queued: the kernel drops further SYNs, so the connect stays pending
        // and the probe must take the runtime path and end at its timeout.
        let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        let mut outcome = Ok(Connected { connect: Duration::ZERO });
        for _ in 0..8 {
            outcome = crate::Probe::probe(&mut Target { addr }, Duration::from_millis(300)).await;
            if outcome.is_err() {
                break;
            }
            // Held open (never accepted), non-blocking so that filling the queue cannot block the test.
            let filler = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            filler.set_nonblocking(true).unwrap();
            let _ = filler.connect(&addr.into());
            queued.push(filler);
        }
        assert_eq!(outcome, Err(Failure::Timeout));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let outcome = crate::Probe::probe(&mut Target { addr }, Duration::from_secs(1)).await;
        assert_eq!(outcome, Err(Failure::Refused));
        assert_eq!(outcome.unwrap_err().label(), "refused");
    }
}

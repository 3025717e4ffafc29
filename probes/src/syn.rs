//! SYN probe: a TCP connect to the forward's local address.
//!
//! Through an ssh -L forward, connect() succeeds in microseconds even when the remote host or the gateway is
//! dead (ssh accepts locally and opens the channel afterwards), so success here means "ssh's listener
//! exists", nothing more. `Refused` means no process listens: ssh is gone, or still (re)connecting.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

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
}

impl Failure {
    /// A fixed label value for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::Other(_) => "error",
        }
    }
}

/// What a SYN probe returns.
pub type Outcome = Result<Connected, Failure>;

/// Connect to `target.addr` and close again at once.
pub async fn probe(target: &Target, timeout: Duration) -> Outcome {
    let started = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(target.addr)).await {
        Ok(Ok(stream)) => {
            let connect = started.elapsed();
            close_without_time_wait(stream);
            Ok(Connected { connect })
        }
        Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => Err(Failure::Refused),
        Ok(Err(err)) => Err(Failure::Other(err.kind())),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Close with RST instead of FIN. A prober that connects every second per forward would otherwise leave a
/// TIME_WAIT entry per probe for a minute, bloating the socket table that the ssh session probe reads.
pub(crate) fn close_without_time_wait(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn connects_to_a_listener_and_times_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target { addr: listener.local_addr().unwrap() };
        let outcome = probe(&target, Duration::from_secs(1)).await.unwrap();
        assert!(outcome.connect < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let outcome = probe(&Target { addr }, Duration::from_secs(1)).await;
        assert_eq!(outcome, Err(Failure::Refused));
        assert_eq!(outcome.unwrap_err().reason(), "refused");
    }
}

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
    let socket = match start_connect(target.addr) {
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

/// A connected tokio stream to `addr`, for the probes that go on to talk and for the auth tap's upstream.
/// Same as `TcpStream::connect`, minus a trip through the reactor when loopback finishes the handshake
/// inside connect(). No timeout of its own: callers bound it.
pub async fn connect_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    match start_connect(addr)? {
        Started::Established(socket) => TcpStream::from_std(socket.into()),
        Started::Pending(socket) => finish_connect(socket).await,
    }
}

async fn finish_connect(socket: socket2::Socket) -> io::Result<TcpStream> {
    let stream = TcpStream::from_std(socket.into())?;
    stream.writable().await?;
    match stream.take_error()? {
        Some(err) => Err(err),
        None => Ok(stream),
    }
}

enum Started {
    Established(socket2::Socket),
    Pending(socket2::Socket),
}

/// A non-blocking connect. On loopback the kernel runs the whole handshake inside connect(), so the socket
/// is usually established when the call returns; asking (getpeername) then spares the epoll registration,
/// the wakeup and the deregistration a runtime-driven connect costs: most of a probe's user-space time.
fn start_connect(addr: SocketAddr) -> io::Result<Started> {
    // Non-blocking from socket() on Linux (SOCK_NONBLOCK): one system call fewer per probe.
    #[cfg(target_os = "linux")]
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM.nonblocking(), None)?;
    #[cfg(not(target_os = "linux"))]
    let socket = {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket
    };
    match socket.connect(&addr.into()) {
        Ok(()) => return Ok(Started::Established(socket)),
        Err(err) if err.raw_os_error() == Some(CONNECT_IN_PROGRESS) => {}
        Err(err) => return Err(err),
    }
    if socket.peer_addr().is_ok() {
        return Ok(Started::Established(socket));
    }
    match socket.take_error()? {
        Some(err) => Err(err),
        None => Ok(Started::Pending(socket)),
    }
}

/// What a non-blocking connect() returns while the handshake goes on: EINPROGRESS on Linux (115) and macOS
/// (36), WSAEWOULDBLOCK on Windows (10035).
const CONNECT_IN_PROGRESS: i32 = if cfg!(target_os = "linux") {
    115
} else if cfg!(windows) {
    10035
} else {
    36
};

fn failure(err: io::Error) -> Failure {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        kind => Failure::Other(kind),
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
            outcome = probe(&Target { addr }, Duration::from_millis(300)).await;
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
        let outcome = probe(&Target { addr }, Duration::from_secs(1)).await;
        assert_eq!(outcome, Err(Failure::Refused));
        assert_eq!(outcome.unwrap_err().reason(), "refused");
    }
}

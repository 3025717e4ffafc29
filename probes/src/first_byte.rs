//! First-byte probe: `GET <health_path>` through the forward, timed from the request written to the first
//! response byte.
//!
//! This is the only tunnel probe that proves the far side: the gateway answers /healthz with 27 bytes, no
//! log line and no side effect. Through a dead forward the failure tells where it broke (see
//! ../shared/SSH-FORWARD.md): `refused` = ssh not listening; `reset` or `empty_reply` about one path RTT
//! after connecting = ssh alive but the gateway (or its host) refused; `timeout` = path silently dead or the
//! gateway hung. Time to first byte, not total time, because ssh's non-interactive transport adds ~40 ms to a
//! response written in two pieces.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest response head read; a peer sending more without finishing its headers is `bad_status`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// What to ask and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The ssh -L listener, e.g. 127.0.0.1:18789.
    pub addr: SocketAddr,
    /// The request path, e.g. `/healthz`.
    pub path: String,
}

/// A response head (2xx, from [`probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// connect() to established.
    pub connect: Duration,
    /// Request fully written to the first response byte read.
    pub first_byte: Duration,
    /// The HTTP status code.
    pub status: u16,
    /// The Content-Type header, when present.
    pub content_type: Option<String>,
}

/// Why a first-byte probe failed. [`Failure::reason`] gives the contract's label value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens on the forward's address.
    #[error("connection refused")]
    Refused,
    /// The connection was reset (typically: ssh alive, gateway dead, request already sent).
    #[error("connection reset after {elapsed:?}")]
    Reset {
        /// Time from request written to the reset.
        elapsed: Duration,
    },
    /// The peer closed without sending a byte (ssh alive, gateway dead).
    #[error("connection closed without a reply after {elapsed:?}")]
    EmptyReply {
        /// Time from request written to the close.
        elapsed: Duration,
    },
    /// No complete answer within the timeout.
    #[error("no reply within the timeout")]
    Timeout,
    /// The exporter's own machine could not make the connection (out of file descriptors, buffers or local
    /// ports): nothing was learned about the gateway, so it is never blamed for it.
    #[error("local error, the gateway was not reached: {detail}")]
    LocalError {
        /// The OS error, for the log.
        detail: String,
    },
    /// A reply came, but not a 2xx HTTP response (or not HTTP at all).
    #[error("bad reply: {detail}")]
    BadStatus {
        /// The status code, when the reply parsed as HTTP.
        status: Option<u16>,
        /// First-byte time, when a status line arrived: the round trip is real even if the answer is not 2xx.
        first_byte: Option<Duration>,
        /// What was wrong, for the log.
        detail: String,
    },
}

impl Failure {
    /// Every value [`Failure::reason`] can return.
    pub const REASONS: [&'static str; 6] = ["refused", "reset", "empty_reply", "timeout", "bad_status", "local_error"];

    /// The fixed label value: refused, reset, empty_reply, timeout, bad_status or local_error.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset { .. } => "reset",
            Failure::EmptyReply { .. } => "empty_reply",
            Failure::Timeout => "timeout",
            Failure::BadStatus { .. } => "bad_status",
            Failure::LocalError { .. } => "local_error",
        }
    }
}

/// What a first-byte probe returns.
pub type Outcome = Result<Response, Failure>;

/// Send one `GET` and wait for the response head.
pub async fn probe(target: &Target, timeout: Duration) -> Outcome {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: openclaw-tunnel-exporter/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.addr,
        env!("CARGO_PKG_VERSION")
    );
    let head = match tokio::time::timeout(timeout, exchange(target.addr, request.as_bytes())).await {
        Ok(head) => head?,
        Err(_) => return Err(Failure::Timeout),
    };
    if (200..300).contains(&head.status) {
        Ok(head)
    } else {
        Err(bad_head(Some(head.status), Some(head.first_byte), &format!("HTTP status {}", head.status)))
    }
}

/// Connect to `addr`, write `request`, and read the response head: the shared core of the HTTP probes.
/// Any status is a [`Response`] here; callers decide which statuses fail.
pub(crate) async fn exchange(addr: SocketAddr, request: &[u8]) -> Outcome {
    let started = Instant::now();
    let mut stream = crate::syn::connect_stream(addr).await.map_err(connect_failure)?;
    let connect = started.elapsed();
    // One small write; without NODELAY a coalescing delay could land inside the timed window.
    let _ = stream.set_nodelay(true);
    let head = read_head(&mut stream, request).await?;
    // The head is all we need; the rest of the reply is not read.
    crate::syn::close_without_time_wait(stream);
    Ok(Response { connect, first_byte: head.first_byte, status: head.status, content_type: head.content_type })
}

/// A response head as the HTTP probes read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Request written -> first byte.
    pub first_byte: Duration,
    /// The status code.
    pub status: u16,
    /// The Content-Type header, when present.
    pub content_type: Option<String>,
}

/// Write `request` on `stream` and read a response head (bounded by [`MAX_HEAD_BYTES`]): the first-byte time
/// (from the request written) and the status.
pub(crate) async fn read_head<S>(stream: &mut S, request: &[u8]) -> Result<Head, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let write_result = stream.write_all(request).await;
    let written = Instant::now();
    if let Err(err) = write_result {
        return Err(io_failure(err, written.elapsed()));
    }
    let mut head = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    let mut first_byte = None;
    loop {
        let read = match stream.read(&mut head[filled..]).await {
            Ok(read) => read,
            // A reset is a reset, before or inside the head.
            Err(err) => return Err(io_failure(err, written.elapsed())),
        };
        if read == 0 {
            return Err(match first_byte {
                None => Failure::EmptyReply { elapsed: written.elapsed() },
                Some(first_byte) => bad_head(None, Some(first_byte), "closed inside the response head"),
            });
        }
        let first_byte = *first_byte.get_or_insert_with(|| written.elapsed());
        filled += read;

        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                let content_type = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-type"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                return Ok(Head { first_byte, status: response.code.unwrap_or(0), content_type });
            }
            Ok(httparse::Status::Partial) if filled == head.len() => {
                return Err(bad_head(None, None, "response head larger than 16 KiB"))
            }
            Ok(httparse::Status::Partial) => {}
            Err(err) => return Err(bad_head(None, None, &format!("not an HTTP response: {err}"))),
        }
    }
}

/// Any socket error after connecting means the peer went away: ECONNRESET from a dead gateway behind ssh,
/// or EHOSTUNREACH/ETIMEDOUT from the kernel. The nearest contract reason for all of them is `reset`.
fn io_failure(_err: io::Error, elapsed: Duration) -> Failure {
    Failure::Reset { elapsed }
}

/// A connect that failed: refused (nothing listens), the exporter's own shortage (no descriptor, buffer or
/// local port: the gateway was never asked), or else the path or peer (reset).
fn connect_failure(err: io::Error) -> Failure {
    // EMFILE, ENFILE, ENOBUFS by OS: Linux 24, 23, 105; macOS 24, 23, 55; Windows WSAEMFILE 10024, WSAENOBUFS 10055.
    const LOCAL: &[i32] = if cfg!(windows) {
        &[10024, 10055]
    } else if cfg!(target_os = "linux") {
        &[24, 23, 105]
    } else {
        &[24, 23, 55]
    };
    let local = err.raw_os_error().is_some_and(|code| LOCAL.contains(&code))
        || matches!(
            err.kind(),
            io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse | io::ErrorKind::OutOfMemory
        );
    if err.kind() == io::ErrorKind::ConnectionRefused {
        Failure::Refused
    } else if local {
        Failure::LocalError { detail: err.to_string() }
    } else {
        Failure::Reset { elapsed: Duration::ZERO }
    }
}

fn bad_head(status: Option<u16>, first_byte: Option<Duration>, detail: &str) -> Failure {
    Failure::BadStatus { status, first_byte, detail: detail.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A target that answers `reply` after `delay`, once.
    async fn serve_once(reply: &'static [u8], delay: Duration) -> SocketAddr {
        misbehaving(move |mut socket| {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.write_all(reply).await;
            })
        })
        .await
    }

    fn target(addr: SocketAddr) -> Target {
        Target { addr, path: "/healthz".into() }
    }

    #[tokio::test]
    async fn a_2xx_is_a_response_with_its_first_byte_time() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Duration::from_millis(20)).await;
        let response = probe(&target(addr), Duration::from_secs(2)).await.unwrap();
        assert_eq!(response.status, 200);
        assert!(response.first_byte >= Duration::from_millis(20), "{response:?}");
    }

    #[tokio::test]
    async fn a_503_is_bad_status_with_the_round_trip_kept() {
        let addr = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", Duration::ZERO).await;
        let failure = probe(&target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.reason(), "bad_status");
        assert!(matches!(failure, Failure::BadStatus { status: Some(503), first_byte: Some(_), .. }));
    }

    #[tokio::test]
    async fn garbage_is_bad_status() {
        let addr = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n", Duration::ZERO).await;
        let failure = probe(&target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.reason(), "bad_status");
    }

    #[tokio::test]
    async fn a_close_without_bytes_is_an_empty_reply() {
        let addr = serve_once(b"", Duration::ZERO).await;
        let failure = probe(&target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.reason(), "empty_reply");
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let failure = probe(&target(addr), Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(failure, Failure::Timeout);
        held.abort();
    }

    type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    /// A target that misbehaves after reading the request.
    async fn misbehaving(behave: impl FnOnce(tokio::net::TcpStream) -> BoxFuture + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            behave(socket).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_target_dribbling_one_byte_a_second_times_out_within_the_timeout() {
        let addr = misbehaving(|mut socket| {
            Box::pin(async move {
                for byte in b"HTTP/1.1 200 OK\r\n\r\n" {
                    if socket.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .await;
        let started = std::time::Instant::now();
        let failure = probe(&target(addr), Duration::from_millis(1500)).await.unwrap_err();
        assert_eq!(failure, Failure::Timeout);
        assert!(started.elapsed() < Duration::from_millis(1700));
    }

    #[tokio::test]
    async fn a_10_mib_body_is_not_read() {
        let addr = misbehaving(|mut socket| {
            Box::pin(async move {
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n").await;
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..10 {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            })
        })
        .await;
        let response = probe(&target(addr), Duration::from_secs(2)).await.unwrap();
        assert_eq!(response.status, 200);
    }

    #[tokio::test]
    async fn a_reset_inside_the_head_is_a_reset() {
        let addr = misbehaving(|mut socket| {
            Box::pin(async move {
                let _ = socket.write_all(b"HTTP/1.1 200 O").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = socket.set_zero_linger();
                drop(socket);
            })
        })
        .await;
        let failure = probe(&target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.reason(), "reset", "{failure:?}");
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let failure = probe(&target(addr), Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(failure, Failure::Refused);
    }

    #[tokio::test]
    async fn an_endless_head_is_bad_status_not_unbounded_memory() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            for _ in 0..1000 {
                if socket.write_all(line).await.is_err() {
                    break;
                }
            }
        });
        let failure = probe(&target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.reason(), "bad_status");
    }

    #[test]
    fn the_exporters_own_shortage_is_a_local_error_not_the_gateways() {
        let emfile = io::Error::from_raw_os_error(if cfg!(windows) { 10024 } else { 24 });
        assert_eq!(connect_failure(emfile).reason(), "local_error");
        assert_eq!(connect_failure(io::Error::from(io::ErrorKind::AddrNotAvailable)).reason(), "local_error");
        assert_eq!(connect_failure(io::Error::from(io::ErrorKind::ConnectionRefused)).reason(), "refused");
        assert_eq!(connect_failure(io::Error::from(io::ErrorKind::ConnectionReset)).reason(), "reset");
        for failure in [Failure::Refused, Failure::Timeout, Failure::LocalError { detail: String::new() }] {
            assert!(Failure::REASONS.contains(&failure.reason()));
        }
    }
}

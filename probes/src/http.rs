//! HTTP plumbing the HTTP probes share (first_byte, control_ui, auth_probe, model_host): one request
//! builder with one User-Agent, the connect-write-read exchange, the bounded response-head reader and the
//! failure reasons of the contract's `openclaw_gateway_probe_failures_total`.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every probe request says it is.
pub const USER_AGENT: &str = concat!("openclaw-tunnel-exporter/", env!("CARGO_PKG_VERSION"));

/// The largest response head read; a peer sending more without finishing its headers is `bad_status`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A response head.
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

/// Why an HTTP exchange failed. [`Failure::reason`] gives the contract's label value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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

crate::labels!(Failure {
    Failure::Refused => "refused",
    Failure::Reset { .. } => "reset",
    Failure::EmptyReply { .. } => "empty_reply",
    Failure::Timeout => "timeout",
    Failure::BadStatus { .. } => "bad_status",
    Failure::LocalError { .. } => "local_error",
});

/// A run ended by its caller's hard timeout is a timeout, for every HTTP probe's outcome.
impl<T> From<crate::CutOff> for Result<T, Failure> {
    fn from(_: crate::CutOff) -> Self {
        Err(Failure::Timeout)
    }
}

/// One HTTP/1.1 request on a connection it closes: `method path`, Host, the User-Agent, Accept, then
/// `headers` (name, value) and `body`. Values are bytes, so a token goes in without a UTF-8 copy.
pub fn request(method: &str, path: &str, host: &str, accept: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: {accept}\r\nConnection: close\r\n")
            .into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// Connect to `addr`, write `request`, and read the response head: the shared core of the HTTP probes.
/// Any status is a [`Response`] here; callers decide which statuses fail.
/// `GET path` on `addr` accepting `accept`: [`request`] then [`exchange`].
pub(crate) async fn get(addr: SocketAddr, path: &str, accept: &str, timeout: Duration) -> Result<Response, Failure> {
    exchange(addr, &request("GET", path, &addr.to_string(), accept, &[], b""), timeout).await
}

/// The largest document [`get_document`] reads, head and body.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// `GET path` as HTTP/1.0 (so the body is never chunked and ends with the connection), read to its end:
/// the status and the body. Bounded by [`MAX_DOCUMENT_BYTES`] and `timeout`.
pub(crate) async fn get_document(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), Failure> {
    get_document_bounded(addr, path, timeout, MAX_DOCUMENT_BYTES).await
}

/// As [`get_document`], reading at most `max` bytes (the `evidence` command's snapshots of the exporter's own
/// pages, which outgrow 64 KiB with many forwards).
pub async fn get_document_bounded(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    max: usize,
) -> Result<(u16, Vec<u8>), Failure> {
    let document = async {
        let mut stream = crate::net::connect_stream(addr).await.map_err(connect_failure)?;
        let _ = stream.set_nodelay(true);
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: {USER_AGENT}\r\nAccept: application/json, text/plain\r\n\r\n"
        );
        let started = Instant::now();
        stream.write_all(request.as_bytes()).await.map_err(|err| io_failure(err, started.elapsed()))?;
        let mut document = Vec::with_capacity(4096);
        let read = (&mut stream).take(max as u64 + 1).read_to_end(&mut document).await;
        read.map_err(|err| io_failure(err, started.elapsed()))?;
        crate::net::close_without_time_wait(stream);
        if document.is_empty() {
            return Err(Failure::EmptyReply { elapsed: started.elapsed() });
        }
        if document.len() > max {
            return Err(bad_head(None, None, &format!("document larger than {max} bytes")));
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&document) {
            Ok(httparse::Status::Complete(head)) => Ok((response.code.unwrap_or(0), document[head..].to_vec())),
            Ok(httparse::Status::Partial) => Err(bad_head(None, None, "closed inside the response head")),
            Err(err) => Err(bad_head(None, None, &format!("not an HTTP response: {err}"))),
        }
    };
    tokio::time::timeout(timeout, document).await.unwrap_or(Err(Failure::Timeout))
}

/// connect() to `addr`, its failure as the contract's reason.
pub(crate) async fn connect(addr: SocketAddr) -> Result<tokio::net::TcpStream, Failure> {
    crate::net::connect_stream(addr).await.map_err(connect_failure)
}

/// A reply not complete within `timeout` is [`Failure::Timeout`].
pub(crate) async fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<Response, Failure> {
    tokio::time::timeout(timeout, exchange_unbounded(addr, request)).await.unwrap_or(Err(Failure::Timeout))
}

async fn exchange_unbounded(addr: SocketAddr, request: &[u8]) -> Result<Response, Failure> {
    let started = Instant::now();
    let mut stream = crate::net::connect_stream(addr).await.map_err(connect_failure)?;
    let connect = started.elapsed();
    // One small write; without NODELAY a coalescing delay could land inside the timed window.
    let _ = stream.set_nodelay(true);
    let head = read_head(&mut stream, request).await?;
    // The head is all we need; the rest of the reply is not read.
    crate::net::close_without_time_wait(stream);
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
    if err.kind() == io::ErrorKind::ConnectionRefused {
        Failure::Refused
    } else if crate::net::is_local_shortage(&err) {
        Failure::LocalError { detail: err.to_string() }
    } else {
        Failure::Reset { elapsed: Duration::ZERO }
    }
}

/// A response that came but is not the one asked for: its status and first byte kept, with what was wrong
/// (the one place the HTTP probes build this failure).
pub(crate) fn bad_head(status: Option<u16>, first_byte: Option<Duration>, detail: &str) -> Failure {
    Failure::BadStatus { status, first_byte, detail: detail.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    #[test]
    fn the_exporters_own_shortage_is_a_local_error_not_the_gateways() {
        let emfile = io::Error::from_raw_os_error(if cfg!(windows) { 10024 } else { 24 });
        assert_eq!(connect_failure(emfile).label(), "local_error");
        assert_eq!(connect_failure(io::Error::from(io::ErrorKind::AddrNotAvailable)).label(), "local_error");
        assert_eq!(connect_failure(io::Error::from(io::ErrorKind::ConnectionRefused)).label(), "refused");
        assert_eq!(connect_failure(io::Error::from(io::ErrorKind::ConnectionReset)).label(), "reset");
        for failure in [Failure::Refused, Failure::Timeout, Failure::LocalError { detail: String::new() }] {
            assert!(Failure::LABELS.contains(&failure.label()));
        }
    }
}

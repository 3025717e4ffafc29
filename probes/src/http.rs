//! HTTP plumbing the HTTP probes share (first_byte, control_ui, auth_probe, model_host): one request
//! builder with one User-Agent, the connect-write-read exchange, the bounded response-head reader and the
//! failure reasons of the contract's `openclaw_gateway_probe_failures_total`.

use std::io;
use std::time::{Duration, Instant};

use crate::route::{DialFailure, Route};

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
    /// A direct route's host name did not resolve.
    #[error("the gateway's host does not resolve: {detail}")]
    Dns {
        /// The resolver's error.
        detail: String,
    },
    /// A `wss://` route's TLS handshake failed or its certificate did not verify: nothing was sent.
    #[error("TLS: {detail}")]
    Tls {
        /// The handshake's failure.
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
    Failure::Dns { .. } => "dns",
    Failure::Tls { .. } => "tls",
});

/// The failure reasons a route of `transport` can give ([`crate::route::Transport::can_fail_by`]).
pub fn reasons_of(transport: crate::route::Transport) -> impl Iterator<Item = &'static str> {
    use crate::Label;
    Failure::LABELS.iter().copied().filter(move |reason| transport.can_fail_by(reason))
}

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

/// `GET path` on `route` accepting `accept`: [`request`] then [`exchange`]. Any status is a [`Response`] here;
/// callers decide which statuses fail.
pub(crate) async fn get(route: &Route, path: &str, accept: &str, timeout: Duration) -> Result<Response, Failure> {
    exchange(route, &request("GET", path, &route.authority(), accept, &[], b""), timeout).await
}

/// The largest document [`get_document`] reads, head and body.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// `GET path` as HTTP/1.0 (so the body is never chunked and ends with the connection), read to its end:
/// the status and the body. Bounded by [`MAX_DOCUMENT_BYTES`] and `timeout`.
pub(crate) async fn get_document(route: &Route, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), Failure> {
    get_document_bounded(route, path, timeout, MAX_DOCUMENT_BYTES).await
}

/// As [`get_document`], reading at most `max` bytes (the `evidence` command's snapshots of the exporter's own
/// pages, which outgrow 64 KiB with many forwards).
pub async fn get_document_bounded(
    route: &Route,
    path: &str,
    timeout: Duration,
    max: usize,
) -> Result<(u16, Vec<u8>), Failure> {
    let document = async {
        let mut stream = route.dial(timeout).await.map_err(dial_failure)?.stream;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nAccept: application/json, text/plain\r\n\r\n",
            route.authority()
        );
        let started = Instant::now();
        stream.write_all(request.as_bytes()).await.map_err(|err| io_failure(err, started.elapsed()))?;
        let mut document = Vec::with_capacity(4096);
        let read = (&mut stream).take(max as u64 + 1).read_to_end(&mut document).await;
        // A TLS peer that closes without close_notify is still the end of an HTTP/1.0 body.
        let ended_uncleanly = matches!(&read, Err(err) if err.kind() == io::ErrorKind::UnexpectedEof);
        if !ended_uncleanly {
            read.map_err(|err| io_failure(err, started.elapsed()))?;
        }
        stream.close_without_time_wait();
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

/// Dial `route` (connect, and the TLS handshake of `wss://`), its failure as the contract's reason.
pub(crate) async fn connect(route: &Route, timeout: Duration) -> Result<crate::route::Dialed, Failure> {
    route.dial(timeout).await.map_err(dial_failure)
}

/// Connect to `route`, write `request`, and read the response head: the shared core of the HTTP probes. The
/// first-byte clock starts when the request is written, after the connect and any TLS handshake. A reply not
/// complete within `timeout` is [`Failure::Timeout`].
pub(crate) async fn exchange(route: &Route, request: &[u8], timeout: Duration) -> Result<Response, Failure> {
    tokio::time::timeout(timeout, exchange_unbounded(route, request, timeout)).await.unwrap_or(Err(Failure::Timeout))
}

async fn exchange_unbounded(route: &Route, request: &[u8], timeout: Duration) -> Result<Response, Failure> {
    let dialed = connect(route, timeout).await?;
    // One small write; the dial set NODELAY, so no coalescing delay lands inside the timed window.
    let mut stream = dialed.stream;
    let head = read_head(&mut stream, request).await;
    // The head is all we need; the rest of the reply is not read.
    stream.close_without_time_wait();
    let head = head?;
    Ok(Response {
        connect: dialed.connect,
        first_byte: head.first_byte,
        status: head.status,
        content_type: head.content_type,
    })
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

/// A dial that failed, as the contract's reason: refused (nothing listens), the exporter's own shortage (the
/// gateway was never asked), the path or peer otherwise (reset), or a direct route's name or TLS.
pub(crate) fn dial_failure(failure: DialFailure) -> Failure {
    match failure {
        DialFailure::Refused => Failure::Refused,
        DialFailure::LocalError { detail } => Failure::LocalError { detail },
        DialFailure::Unreachable { .. } => Failure::Reset { elapsed: Duration::ZERO },
        DialFailure::ConnectTimeout | DialFailure::TlsTimeout => Failure::Timeout,
        DialFailure::Resolve { detail } => Failure::Dns { detail },
        tls @ (DialFailure::Tls { .. } | DialFailure::Mismatch { .. }) => Failure::Tls { detail: tls.to_string() },
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
        let local = DialFailure::LocalError { detail: "EMFILE".into() };
        assert_eq!(dial_failure(local).label(), "local_error");
        assert_eq!(dial_failure(DialFailure::Refused).label(), "refused");
        assert_eq!(dial_failure(DialFailure::Unreachable { detail: "reset".into() }).label(), "reset");
        assert_eq!(dial_failure(DialFailure::TlsTimeout).label(), "timeout");
        assert_eq!(dial_failure(DialFailure::Resolve { detail: "x".into() }).label(), "dns");
        let tls = DialFailure::Tls { detail: "alert".into(), certificate: None };
        assert_eq!(dial_failure(tls).label(), "tls");
        for failure in [Failure::Refused, Failure::Timeout, Failure::LocalError { detail: String::new() }] {
            assert!(Failure::LABELS.contains(&failure.label()));
        }
    }

    #[test]
    fn an_ssh_route_has_no_dns_or_tls_reason_and_only_wss_has_tls() {
        use crate::route::Transport;
        let of = |transport| reasons_of(transport).collect::<Vec<_>>();
        assert!(!of(Transport::Ssh).contains(&"dns") && !of(Transport::Ssh).contains(&"tls"));
        assert!(of(Transport::Ws).contains(&"dns") && !of(Transport::Ws).contains(&"tls"));
        assert!(of(Transport::Wss).contains(&"dns") && of(Transport::Wss).contains(&"tls"));
        assert_eq!(of(Transport::Wss).len(), Failure::LABELS.len());
    }
}

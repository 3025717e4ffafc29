//! The remote-write HTTP client: one kept-alive HTTP/1.1 connection (hyper), TLS by rustls when the URL is
//! https, the protocol's headers, and the answer classified: sent, retry later (everything a person, a proxy
//! or time can fix), split (413), or rejected for good (400, 409, 422).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::negotiate::Written;
use super::wire::Protocol;

/// The longest part of an error answer kept for the log.
const MAX_DETAIL: usize = 256;

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The receiver's URL.
    pub url: url::Url,
    /// TLS for https URLs.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// A file holding the bearer token (read at each connection, so a rotated token is picked up).
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth: the user and a file holding the password.
    pub basic_auth: Option<(String, PathBuf)>,
    /// Extra headers (a tenant: `X-Scope-OrgID`).
    pub headers: Vec<(String, String)>,
}

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer: the receiver is unreachable, the TLS handshake failed, or no answer came in time.
    #[error("{0}")]
    Network(String),
    /// The sender's own side: a credential file that cannot be read.
    #[error("{0}")]
    Local(String),
    /// An answer a person or a proxy can fix, or the receiver's own trouble: send the same batch again later.
    /// 3xx (not followed), 401, 403, 404, 407, 408, 425, 429, 5xx and every 4xx not named below.
    #[error("HTTP {status}: {detail}")]
    Retry {
        /// The status.
        status: u16,
        /// The start of the answer's body.
        detail: String,
        /// `Retry-After`, when the answer carried one.
        retry_after: Option<Duration>,
        /// `Location` of a redirect, its user and password removed.
        location: Option<String>,
    },
    /// 413: the batch is larger than the receiver takes; a smaller one may go.
    #[error("HTTP 413: {detail}")]
    TooLarge {
        /// The start of the answer's body.
        detail: String,
    },
    /// 400, 409, 422: the receiver will never take this payload (as vmagent drops only these).
    #[error("HTTP {status}: {detail}")]
    Rejected {
        /// The status.
        status: u16,
        /// The start of the answer's body.
        detail: String,
    },
}

/// What the exporter does with an HTTP status other than 2xx; see [`SendError`].
pub fn classify(status: u16) -> Answer {
    match status {
        400 | 409 | 422 => Answer::Reject,
        413 => Answer::Split,
        _ => Answer::Retry,
    }
}

/// The three ways a non-2xx answer is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Send the batch again after a backoff.
    Retry,
    /// Send it in halves.
    Split,
    /// Drop it, counted.
    Reject,
}

/// `Retry-After`: delay seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// A URL for the log: its user and password removed.
pub fn without_userinfo(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        // A relative Location has no userinfo; anything unparsable is cut at an '@'.
        Err(_) => location.rsplit('@').next().unwrap_or_default().chars().take(MAX_DETAIL).collect(),
    }
}

/// A client holding at most one connection.
pub struct Client {
    endpoint: Endpoint,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client of `endpoint`; it connects on the first send.
    pub fn new(endpoint: Endpoint) -> Client {
        Client { endpoint, connection: None }
    }

    /// POST one snappy-compressed request in `protocol`, within `timeout`; on a 2xx, what its written-headers
    /// said (2.0's; none from a 1.0 receiver).
    pub async fn send(&mut self, body: Bytes, protocol: Protocol, timeout: Duration) -> Result<Written, SendError> {
        match tokio::time::timeout(timeout, self.send_inner(body, protocol)).await {
            Ok(result) => {
                if result.is_err() {
                    self.connection = None;
                }
                result
            }
            Err(_) => {
                self.connection = None;
                Err(SendError::Network(format!("no answer within {timeout:?}")))
            }
        }
    }

    async fn send_inner(&mut self, body: Bytes, protocol: Protocol) -> Result<Written, SendError> {
        let authorization = self.authorization()?;
        if self.connection.as_ref().is_none_or(|c| c.is_closed()) {
            self.connection = Some(self.connect().await?);
        }
        let connection = self.connection.as_mut().expect("connected above");
        connection.ready().await.map_err(|e| SendError::Network(format!("connection: {e}")))?;
        let url = &self.endpoint.url;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let mut request = hyper::Request::post(path)
            .header("Host", host)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", protocol.content_type())
            .header("X-Prometheus-Remote-Write-Version", protocol.version())
            .header("User-Agent", probes::http::USER_AGENT);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        for (name, value) in &self.endpoint.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Full::new(body)).map_err(|e| SendError::Local(format!("request: {e}")))?;
        let response = connection.send_request(request).await.map_err(|e| SendError::Network(format!("send: {e}")))?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after = header("retry-after").as_deref().and_then(retry_after);
        let location = header("location").as_deref().map(without_userinfo);
        let count = |name: &str| header(name).and_then(|value| value.trim().parse::<u64>().ok());
        let written = Written {
            samples: count("x-prometheus-remote-write-samples-written"),
            histograms: count("x-prometheus-remote-write-histograms-written"),
        };
        // The body is read up to what is kept, whatever the status: a receiver (or anything on an http://
        // path) answering with a huge body costs MAX_DETAIL bytes, then the connection is dropped.
        let (start, whole) = read_start(response.into_body(), MAX_DETAIL).await;
        if !whole {
            self.connection = None;
        }
        if (200..300).contains(&status) {
            return Ok(written);
        }
        let detail = String::from_utf8_lossy(&start).trim().to_owned();
        Err(match classify(status) {
            Answer::Retry => SendError::Retry { status, detail, retry_after, location },
            Answer::Split => SendError::TooLarge { detail },
            Answer::Reject => SendError::Rejected { status, detail },
        })
    }

    /// The Authorization header, from the token or password file (never logged: errors name the file only).
    fn authorization(&self) -> Result<Option<String>, SendError> {
        use base64::Engine;
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| SendError::Local(format!("{}: {e}", path.display())))
        };
        if let Some(file) = &self.endpoint.bearer_token_file {
            return Ok(Some(format!("Bearer {}", read(file)?)));
        }
        if let Some((user, file)) = &self.endpoint.basic_auth {
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", read(file)?));
            return Ok(Some(format!("Basic {credentials}")));
        }
        Ok(None)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let url = &self.endpoint.url;
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let mut last = String::from("the name resolves to no address");
        let addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| SendError::Network(format!("resolve {host}: {e}")))?;
        for addr in addrs {
            let stream = match probes::net::connect_stream(addr).await {
                Ok(stream) => stream,
                Err(err) => {
                    last = format!("connect {addr}: {err}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            return match &self.endpoint.tls {
                None => handshake(stream).await,
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|e| SendError::Local(format!("server name {host}: {e}")))?;
                    let stream = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, stream)
                        .await
                        .map_err(|e| SendError::Network(format!("TLS with {host}: {e}")))?;
                    handshake(stream).await
                }
            };
        }
        Err(SendError::Network(last))
    }
}

/// The first `limit` bytes of a body, and whether that was all of it (so the connection can carry the next
/// request). Never holds more than one frame beyond `limit`.
async fn read_start(mut body: hyper::body::Incoming, limit: usize) -> (Vec<u8>, bool) {
    let mut start = Vec::new();
    loop {
        match body.frame().await {
            None => return (start, true),
            Some(Err(_)) => return (start, false),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit.saturating_sub(start.len());
                    start.extend_from_slice(&data[..data.len().min(room)]);
                    if data.len() > room {
                        return (start, false);
                    }
                }
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Network(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_payload_errors_are_dropped_and_413_splits() {
        for status in [300, 301, 302, 307, 308, 401, 403, 404, 405, 407, 408, 410, 425, 429, 500, 502, 503, 504] {
            assert_eq!(classify(status), Answer::Retry, "{status}");
        }
        assert_eq!(classify(413), Answer::Split);
        for status in [400, 409, 422] {
            assert_eq!(classify(status), Answer::Reject, "{status}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let parsed = retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn a_location_is_logged_without_its_password() {
        assert_eq!(without_userinfo("https://u:secret@proxy.example/login"), "https://proxy.example/login");
        assert_eq!(without_userinfo("/login"), "/login");
        assert!(!without_userinfo("//u:secret@x/").contains("secret"));
    }
}

//! The remote-write HTTP client: one kept-alive HTTP/1.1 connection (hyper), TLS by rustls when the URL is
//! https, the protocol's headers, and the answer classified as sent, retry later, or rejected.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

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
    /// Network trouble, 429 or 5xx: send the same batch again later.
    #[error("{0}")]
    Retry(String),
    /// A 4xx other than 429: the receiver will never take this batch.
    #[error("HTTP {status}: {detail}")]
    Rejected {
        /// The status.
        status: u16,
        /// The start of the answer's body.
        detail: String,
    },
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

    /// POST one snappy-compressed `WriteRequest`, within `timeout`.
    pub async fn send(&mut self, body: Bytes, timeout: Duration) -> Result<(), SendError> {
        match tokio::time::timeout(timeout, self.send_inner(body)).await {
            Ok(result) => {
                if result.is_err() {
                    self.connection = None;
                }
                result
            }
            Err(_) => {
                self.connection = None;
                Err(SendError::Retry(format!("no answer within {timeout:?}")))
            }
        }
    }

    async fn send_inner(&mut self, body: Bytes) -> Result<(), SendError> {
        let authorization = self.authorization()?;
        if self.connection.as_ref().is_none_or(|c| c.is_closed()) {
            self.connection = Some(self.connect().await?);
        }
        let connection = self.connection.as_mut().expect("connected above");
        connection.ready().await.map_err(|e| SendError::Retry(format!("connection: {e}")))?;
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
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header("User-Agent", probes::http::USER_AGENT);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        for (name, value) in &self.endpoint.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Full::new(body)).map_err(|e| SendError::Retry(format!("request: {e}")))?;
        let response = connection.send_request(request).await.map_err(|e| SendError::Retry(format!("send: {e}")))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            // Read the (usually empty) body so the connection can carry the next batch.
            let _ = response.into_body().collect().await;
            return Ok(());
        }
        let detail = match response.into_body().collect().await {
            Ok(body) => {
                let bytes = body.to_bytes();
                String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_DETAIL)]).trim().to_owned()
            }
            Err(_) => String::new(),
        };
        if status == 429 || status >= 500 {
            Err(SendError::Retry(format!("HTTP {status}: {detail}")))
        } else {
            Err(SendError::Rejected { status, detail })
        }
    }

    /// The Authorization header, from the token or password file (never logged: errors name the file only).
    fn authorization(&self) -> Result<Option<String>, SendError> {
        use base64::Engine;
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| SendError::Retry(format!("{}: {e}", path.display())))
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
            .map_err(|e| SendError::Retry(format!("resolve {host}: {e}")))?;
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
                        .map_err(|e| SendError::Retry(format!("server name {host}: {e}")))?;
                    let stream = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, stream)
                        .await
                        .map_err(|e| SendError::Retry(format!("TLS with {host}: {e}")))?;
                    handshake(stream).await
                }
            };
        }
        Err(SendError::Retry(last))
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Retry(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

//! Roads to the gateway, and the one way every probe that talks to it connects: [`Route::dial`].
//!
//! A forward is a route. [`Route::Local`] is an ssh -L listener on this machine: plain TCP to a fixed
//! address, whose owner the credential gate ([`crate::gate`]) checks. [`Route::Direct`] is the gateway reached
//! over the LAN or a tailnet, `ws://HOST:PORT` or `wss://HOST[:PORT]`. A `wss://` route's TLS handshake
//! verifies the gateway's certificate the way OpenClaw's CLI does: a pinned SHA-256 of the leaf certificate
//! (`gateway.remote.tlsFingerprint`: the CLI then sets `rejectUnauthorized: false` and compares the pin alone,
//! so no chain, name or date is checked), or a chain to the trusted roots (webpki's, the same Mozilla set
//! Node.js trusts by default, plus a `ca_file` as `NODE_EXTRA_CA_CERTS` adds) and the host name. A handshake
//! whose certificate does not verify fails inside rustls: no byte of a request, let alone a token, is ever
//! written on it, and the certificate that was presented is reported ([`DialFailure::presented`]).
//!
//! Each dial builds its client config afresh with resumption off, so every handshake is a full one, timed
//! alike, as each `openclaw` command's is; the handshake is timed apart from the connect ([`Dialed`]), and the
//! probes start their first-byte clocks only after it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::CertificateError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::TlsConfigError;
pub use verify::{Certificate, Fingerprint};
use verify::{Judgement, Recording};

mod verify;

/// Which road a forward is: the `transport` label of `openclaw_tunnel_route_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `local`: a listener our ssh owns.
    Ssh,
    /// `ws://`: the gateway directly, in the clear.
    Ws,
    /// `wss://`: the gateway directly, over TLS.
    Wss,
}

crate::labels!(Transport {
    Transport::Ssh => "ssh",
    Transport::Ws => "ws",
    Transport::Wss => "wss",
});

impl Transport {
    /// Whether a probe on a route of this transport can fail by `reason`: `dns` only where a name is
    /// resolved (direct routes), `tls` only where there is a handshake (`wss://`); every other reason on any
    /// route. Series are created at zero only for these.
    pub fn can_fail_by(self, reason: &str) -> bool {
        match reason {
            "dns" => self != Transport::Ssh,
            "tls" => self == Transport::Wss,
            _ => true,
        }
    }
}

/// A road to the gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Route {
    /// An ssh -L listener on this machine.
    Local(SocketAddr),
    /// The gateway itself, reached over the network.
    Direct(Arc<Direct>),
}

/// A `ws://` or `wss://` route.
#[derive(Debug)]
pub struct Direct {
    /// The host as in the URL, without brackets (a name, or an IP literal).
    host: String,
    /// The port.
    port: u16,
    /// What a request's `Host` names: the host (bracketed when IPv6) and the port unless the scheme's default.
    authority: String,
    /// TLS settings of a `wss://` route.
    tls: Option<Tls>,
}

/// How a `wss://` route verifies the gateway's certificate.
#[derive(Debug, Clone)]
pub enum Verify {
    /// The SHA-256 of the leaf certificate, as OpenClaw's `tlsFingerprint`.
    Pin(Fingerprint),
    /// A chain to these roots, and the host name.
    Roots(Arc<rustls::client::WebPkiServerVerifier>),
}

impl Verify {
    /// Verify against the webpki roots plus the certificates in `ca_file`, and the host name.
    pub fn roots(ca_file: Option<&Path>) -> Result<Verify, TlsConfigError> {
        let roots = Arc::new(crate::tls::root_store(ca_file)?);
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, crate::tls::provider())
            .build()
            .map_err(|err| TlsConfigError::Rustls(rustls::Error::General(err.to_string())))?;
        Ok(Verify::Roots(verifier))
    }

    /// Whether the route pins its certificate.
    pub fn is_pin(&self) -> bool {
        matches!(self, Verify::Pin(_))
    }
}

#[derive(Debug)]
struct Tls {
    server_name: ServerName<'static>,
    verify: Verify,
    provider: Arc<CryptoProvider>,
}

/// A route's URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The host is not a name TLS can verify (SNI) nor an IP address.
    #[error("{0:?} is not a host name or IP address a certificate can name")]
    ServerName(String),
}

impl Direct {
    /// `ws://host:port`.
    pub fn ws(host: &str, port: u16) -> Direct {
        let host = unbracketed(host);
        Direct { authority: authority(&host, port, 80), host, port, tls: None }
    }

    /// `wss://host:port`, verifying the certificate by `verify`.
    pub fn wss(host: &str, port: u16, verify: Verify) -> Result<Direct, RouteError> {
        let host = unbracketed(host);
        let server_name = ServerName::try_from(host.clone()).map_err(|_| RouteError::ServerName(host.clone()))?;
        let tls = Tls { server_name, verify, provider: crate::tls::provider() };
        Ok(Direct { authority: authority(&host, port, 443), host, port, tls: Some(tls) })
    }

    /// The host as written (no brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How the certificate is verified (None for `ws://`).
    pub fn verify(&self) -> Option<&Verify> {
        self.tls.as_ref().map(|tls| &tls.verify)
    }
}

fn unbracketed(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

fn authority(host: &str, port: u16, default_port: u16) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

impl Route {
    /// Its transport.
    pub fn transport(&self) -> Transport {
        match self {
            Route::Local(_) => Transport::Ssh,
            Route::Direct(direct) if direct.tls.is_some() => Transport::Wss,
            Route::Direct(_) => Transport::Ws,
        }
    }

    /// The ssh -L listener, for a `local` route.
    pub fn local(&self) -> Option<SocketAddr> {
        match self {
            Route::Local(addr) => Some(*addr),
            Route::Direct(_) => None,
        }
    }

    /// The direct route's settings.
    pub fn direct(&self) -> Option<&Direct> {
        match self {
            Route::Local(_) => None,
            Route::Direct(direct) => Some(direct),
        }
    }

    /// What a request's `Host` header says.
    pub fn authority(&self) -> String {
        match self {
            Route::Local(addr) => addr.to_string(),
            Route::Direct(direct) => direct.authority.clone(),
        }
    }

    /// The WebSocket URL of the gateway's root on this route (`ws://127.0.0.1:18789/`, `wss://gw.ts.net/`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.transport() == Transport::Wss { "wss" } else { "ws" };
        format!("{scheme}://{}/", self.authority())
    }

    /// Connect (for a name: each address it resolves to, in order), then for `wss://` the TLS handshake and
    /// the certificate's verification, all within `timeout`. Every phase that fails says which it was.
    pub async fn dial(&self, timeout: Duration) -> Result<Dialed, DialFailure> {
        let deadline = tokio::time::Instant::now() + timeout;
        let addrs = match self {
            Route::Local(addr) => vec![*addr],
            Route::Direct(direct) => resolve(direct, deadline).await?,
        };
        let started = Instant::now();
        let (tcp, peer) = connect_first(&addrs, deadline).await?;
        let connect = started.elapsed();
        let _ = tcp.set_nodelay(true);
        let tls = match self {
            Route::Direct(direct) => direct.tls.as_ref(),
            Route::Local(_) => None,
        };
        let Some(tls) = tls else { return Ok(Dialed { stream: Stream::Plain(tcp), peer, connect, tls: None }) };
        let started = Instant::now();
        let (stream, certificate) = handshake(tls, tcp, deadline).await?;
        let handshake = Handshake { elapsed: started.elapsed(), certificate };
        Ok(Dialed { stream: Stream::Tls(Box::new(stream)), peer, connect, tls: Some(handshake) })
    }
}

async fn resolve(direct: &Direct, deadline: tokio::time::Instant) -> Result<Vec<SocketAddr>, DialFailure> {
    if let Ok(ip) = direct.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, direct.port)]);
    }
    let lookup = tokio::net::lookup_host((direct.host.as_str(), direct.port));
    match tokio::time::timeout_at(deadline, lookup).await {
        Err(_) => Err(DialFailure::Resolve { detail: "no answer within the timeout".into() }),
        Ok(Err(err)) => Err(DialFailure::Resolve { detail: err.to_string() }),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(DialFailure::Resolve { detail: "the name has no address".into() })
            } else {
                Ok(addrs)
            }
        }
    }
}

/// Each address in turn (a name's IPv6 and IPv4 addresses, as a browser tries them), the last error kept.
async fn connect_first(
    addrs: &[SocketAddr],
    deadline: tokio::time::Instant,
) -> Result<(TcpStream, SocketAddr), DialFailure> {
    let mut last = DialFailure::ConnectTimeout;
    for addr in addrs {
        match tokio::time::timeout_at(deadline, crate::net::connect_stream(*addr)).await {
            Err(_) => return Err(DialFailure::ConnectTimeout),
            Ok(Ok(stream)) => return Ok((stream, *addr)),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => last = DialFailure::Refused,
            Ok(Err(err)) if crate::net::is_local_shortage(&err) => {
                return Err(DialFailure::LocalError { detail: err.to_string() })
            }
            Ok(Err(err)) => last = DialFailure::Unreachable { detail: format!("{addr}: {err}") },
        }
    }
    Err(last)
}

async fn handshake(
    tls: &Tls,
    tcp: TcpStream,
    deadline: tokio::time::Instant,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Certificate), DialFailure> {
    let recording = Arc::new(Recording::new(&tls.verify, tls.provider.signature_verification_algorithms));
    let config = rustls::ClientConfig::builder_with_provider(tls.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| DialFailure::Tls { detail: err.to_string(), certificate: None })?
        .dangerous()
        .with_custom_certificate_verifier(recording.clone())
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every handshake a full one: timed alike round after round, and no ticket outlives a renewed certificate.
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connecting = connector.connect(tls.server_name.clone(), tcp);
    let result = tokio::time::timeout_at(deadline, connecting).await;
    let judged = recording.take();
    match (result, judged) {
        (Err(_), _) => Err(DialFailure::TlsTimeout),
        (Ok(Ok(stream)), Some((certificate, Judgement::Verified))) => Ok((stream, certificate)),
        // rustls finished without asking the verifier: impossible with a custom verifier, and never trusted.
        (Ok(Ok(stream)), _) => {
            crate::net::close_without_time_wait(stream.into_inner().0);
            Err(DialFailure::Tls { detail: "the handshake ended without a certificate".into(), certificate: None })
        }
        (Ok(Err(_)), Some((certificate, Judgement::Mismatch(detail)))) => {
            Err(DialFailure::Mismatch { detail, certificate })
        }
        (Ok(Err(_)), Some((certificate, Judgement::Failed(detail)))) => {
            Err(DialFailure::Tls { detail, certificate: Some(certificate) })
        }
        // The certificate verified, then the handshake failed: a signature over the handshake that its key did
        // not make is a copy of the certificate without its key (an impostor); anything else (a reset, an
        // alert) says nothing about the certificate.
        (Ok(Err(err)), Some((certificate, Judgement::Verified))) if is_bad_signature(&err) => {
            Err(DialFailure::Mismatch { detail: "the peer does not hold the certificate's key".into(), certificate })
        }
        (Ok(Err(err)), _) => Err(DialFailure::Tls { detail: err.to_string(), certificate: None }),
    }
}

fn is_bad_signature(err: &std::io::Error) -> bool {
    matches!(
        err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(CertificateError::BadSignature))
    )
}

/// A connection to the gateway, its phases timed.
#[derive(Debug)]
pub struct Dialed {
    /// The stream: TLS already verified for `wss://`.
    pub stream: Stream,
    /// The address connected to.
    pub peer: SocketAddr,
    /// connect() to established.
    pub connect: Duration,
    /// The TLS handshake of a `wss://` route.
    pub tls: Option<Handshake>,
}

/// A completed TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// ClientHello sent to the handshake's end (the certificate verified).
    pub elapsed: Duration,
    /// The certificate the gateway presented (verified).
    pub certificate: Certificate,
}

/// Why a dial failed: the phase, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialFailure {
    /// The host name does not resolve.
    #[error("the host does not resolve: {detail}")]
    Resolve {
        /// The resolver's error.
        detail: String,
    },
    /// Nothing listens (RST to the SYN).
    #[error("connection refused")]
    Refused,
    /// The connect failed otherwise (unreachable, reset).
    #[error("connect failed: {detail}")]
    Unreachable {
        /// The OS error.
        detail: String,
    },
    /// No connection within the timeout.
    #[error("no connection within the timeout")]
    ConnectTimeout,
    /// The exporter's own shortage (descriptors, buffers, ports): the gateway was never asked.
    #[error("local error, the gateway was not reached: {detail}")]
    LocalError {
        /// The OS error.
        detail: String,
    },
    /// The TLS handshake failed, or the certificate did not verify for a reason other than being someone
    /// else's (expired, another name).
    #[error("TLS handshake failed: {detail}")]
    Tls {
        /// rustls' error, or the verifier's.
        detail: String,
        /// The certificate presented, when one was.
        certificate: Option<Certificate>,
    },
    /// No TLS handshake within the timeout.
    #[error("no TLS handshake within the timeout")]
    TlsTimeout,
    /// The certificate is not the trusted one: another than the pinned one, or one no trusted root signed.
    #[error("certificate mismatch: {detail}")]
    Mismatch {
        /// What differs.
        detail: String,
        /// The certificate presented.
        certificate: Certificate,
    },
}

impl DialFailure {
    /// The `cause` of a down round of a direct route (`connect_failed`, `tls_failed`, `certificate_mismatch`);
    /// None for the exporter's own shortage (the round observed nothing).
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            DialFailure::LocalError { .. } => None,
            DialFailure::Resolve { .. }
            | DialFailure::Refused
            | DialFailure::Unreachable { .. }
            | DialFailure::ConnectTimeout => Some("connect_failed"),
            DialFailure::Tls { .. } | DialFailure::TlsTimeout => Some("tls_failed"),
            DialFailure::Mismatch { .. } => Some("certificate_mismatch"),
        }
    }

    /// The certificate presented and not verified, when the handshake got that far.
    pub fn presented(&self) -> Option<&Certificate> {
        match self {
            DialFailure::Tls { certificate, .. } => certificate.as_ref(),
            DialFailure::Mismatch { certificate, .. } => Some(certificate),
            _ => None,
        }
    }
}

/// A connection to the gateway: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// `local` and `ws://`.
    Plain(TcpStream),
    /// `wss://`, its certificate verified.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whether the stream is TLS (its certificate verified by the dial).
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Close with RST, as [`crate::net::close_without_time_wait`].
    pub fn close_without_time_wait(self) {
        match self {
            Stream::Plain(tcp) => crate::net::close_without_time_wait(tcp),
            Stream::Tls(tls) => crate::net::close_without_time_wait(tls.into_inner().0),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// OpenClaw's rule for the host of a plaintext `ws://` URL (`isTrustedPlaintextWebSocketHost` in its
/// gateway client, 2026.9.6): `localhost`; loopback, private (RFC 1918), link-local and carrier-grade NAT
/// (Tailscale's 100.64/10) IPv4; loopback, link-local, unique-local and site-local IPv6; names under `.local`
/// and `.ts.net`. The CLI refuses any other host in the clear; so does the exporter's gate.
pub fn plaintext_host_allowed(host: &str) -> bool {
    let host = unbracketed(host.trim());
    let name = host.trim_end_matches('.');
    if name == "localhost" {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => private_address(ip),
        Err(_) => name.ends_with(".local") || name.ends_with(".ts.net"),
    }
}

/// Whether `ip` is in the ranges OpenClaw's CLI lets a token cross in the clear (see
/// [`plaintext_host_allowed`]). The gate also asks it of the address a `ws://` name resolved to: a name is
/// only a name, the address is where the bytes go.
pub fn private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback() || ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b))
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xfe00) == 0xfc00 // unique-local fc00::/7
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
}

#[cfg(test)]
mod tests;

//! Model-host probe: an HTTP(S) GET to a model API, from wherever the exporter runs (normally the gateway
//! host), with DNS, connect, TLS and first byte timed separately. Kept apart from the tunnel's first byte
//! so a user can tell "fix the tunnel" from "move model egress".
//!
//! Any HTTP answer below 500 is success: an unauthenticated request to a model API gets 401 or 404, which
//! proves the path as well as a 200 would. TLS is rustls (ring provider) with the webpki roots, plus an
//! optional extra CA bundle for a corporate proxy or a test CA.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::time::timeout_at;

/// What to request.
#[derive(Clone)]
pub struct Target {
    /// Host name or IP literal, as in the URL.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// TLS settings for https; None for plain http.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Durations of the phases that completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phases {
    /// Name resolution.
    pub dns: Option<Duration>,
    /// TCP connect.
    pub connect: Option<Duration>,
    /// TLS handshake.
    pub tls: Option<Duration>,
}

impl Phases {
    /// The completed phases as (label, duration).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Duration)> {
        [("dns", self.dns), ("connect", self.connect), ("tls", self.tls)]
            .into_iter()
            .filter_map(|(name, d)| d.map(|d| (name, d)))
    }
}

/// A response below 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Phase timings.
    pub phases: Phases,
    /// Request written -> first response byte.
    pub first_byte: Duration,
    /// HTTP status.
    pub status: u16,
}

/// Why a model-host probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Name resolution failed.
    Dns,
    /// Connection refused (or unreachable).
    Refused,
    /// The deadline passed.
    Timeout,
    /// TLS handshake failed (unknown CA, name mismatch, protocol).
    Tls,
    /// The connection broke after connecting.
    Reset,
    /// A 5xx, or not HTTP.
    BadStatus,
}

crate::labels!(Reason {
    Reason::Dns => "dns",
    Reason::Refused => "refused",
    Reason::Timeout => "timeout",
    Reason::Tls => "tls",
    Reason::Reset => "reset",
    Reason::BadStatus => "bad_status",
});

/// A failure, with the phases that did complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", crate::Label::label(reason))]
pub struct Failure {
    /// Why.
    pub reason: Reason,
    /// Phases completed before the failure.
    pub phases: Phases,
    /// First-byte time, when a reply arrived (bad_status).
    pub first_byte: Option<Duration>,
    /// For the log.
    pub detail: String,
}

impl crate::Label for Failure {
    const LABELS: &'static [&'static str] = Reason::LABELS;

    fn label(&self) -> &'static str {
        self.reason.label()
    }
}

/// What a model-host probe returns.
pub type Outcome = Result<Response, Failure>;

pub use crate::tls::{tls_client_config, tls_config, TlsConfigError};

impl From<crate::CutOff> for Result<Response, Failure> {
    fn from(_: crate::CutOff) -> Self {
        Err(Failure {
            reason: Reason::Timeout,
            phases: Phases::default(),
            first_byte: None,
            detail: "hard timeout".into(),
        })
    }
}

impl crate::Probe for Target {
    const KIND: &'static str = "model_host";
    type Outcome = Outcome;

    /// Probe within `timeout`, timing each phase.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let target = &*self;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut phases = Phases::default();
        let fail = |reason, phases: &Phases, detail: String| Failure {
            reason,
            phases: phases.clone(),
            first_byte: None,
            detail,
        };
        let timed_out =
            |phases: &Phases, during: &str| fail(Reason::Timeout, phases, format!("timed out during {during}"));

        let started = Instant::now();
        let addrs = match timeout_at(deadline, tokio::net::lookup_host((target.host.as_str(), target.port))).await {
            Err(_) => return Err(timed_out(&phases, "dns")),
            Ok(Err(err)) => return Err(fail(Reason::Dns, &phases, err.to_string())),
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
        };
        phases.dns = Some(started.elapsed());
        if addrs.is_empty() {
            return Err(fail(Reason::Dns, &phases, "no address".into()));
        }

        // Each resolved address in turn (localhost is ::1 and 127.0.0.1), as a browser would.
        let started = Instant::now();
        let mut last_error = String::new();
        let mut connected = None;
        for addr in addrs {
            match timeout_at(deadline, crate::net::connect_stream(addr)).await {
                Err(_) => return Err(timed_out(&phases, "connect")),
                Ok(Err(err)) => last_error = format!("{addr}: {err}"),
                Ok(Ok(tcp)) => {
                    connected = Some(tcp);
                    break;
                }
            }
        }
        let Some(tcp) = connected else { return Err(fail(Reason::Refused, &phases, last_error)) };
        phases.connect = Some(started.elapsed());
        let _ = tcp.set_nodelay(true);
        let request = crate::http::request("GET", &target.path, &target.host, "*/*", &[], b"");

        let head = match &target.tls {
            None => {
                let mut tcp = tcp;
                timeout_at(deadline, crate::http::read_head(&mut tcp, &request)).await
            }
            Some(config) => {
                let name = match ServerName::try_from(target.host.clone()) {
                    Ok(name) => name,
                    Err(err) => return Err(fail(Reason::Tls, &phases, format!("server name: {err}"))),
                };
                let started = Instant::now();
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let mut tls = match timeout_at(deadline, connector.connect(name, tcp)).await {
                    Err(_) => return Err(timed_out(&phases, "tls")),
                    Ok(Err(err)) => return Err(fail(Reason::Tls, &phases, err.to_string())),
                    Ok(Ok(tls)) => tls,
                };
                phases.tls = Some(started.elapsed());
                timeout_at(deadline, crate::http::read_head(&mut tls, &request)).await
            }
        };
        match head {
            Err(_) => Err(timed_out(&phases, "first byte")),
            Ok(Ok(head)) if head.status < 500 => {
                Ok(Response { phases, first_byte: head.first_byte, status: head.status })
            }
            Ok(Ok(head)) => Err(Failure {
                reason: Reason::BadStatus,
                phases,
                first_byte: Some(head.first_byte),
                detail: format!("HTTP status {}", head.status),
            }),
            Ok(Err(failure)) => {
                let (reason, first_byte) = match &failure {
                    crate::http::Failure::BadStatus { first_byte, .. } => (Reason::BadStatus, *first_byte),
                    _ => (Reason::Reset, None),
                };
                Err(Failure { reason, phases, first_byte, detail: failure.to_string() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    struct TestCa {
        ca_pem: String,
        server: Arc<rustls::ServerConfig>,
    }

    fn test_ca() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
            )
            .unwrap();
        TestCa { ca_pem: ca_cert.pem(), server: Arc::new(server) }
    }

    /// A TLS server on loopback that answers every request after `delay`.
    async fn tls_server(config: Arc<rustls::ServerConfig>, delay: Duration) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = tls.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    fn target(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Target {
        Target { host: "localhost".into(), port, path: "/v1/models".into(), tls }
    }

    #[tokio::test]
    async fn every_phase_is_timed_against_a_test_ca() {
        let ca = test_ca();
        let port = tls_server(ca.server.clone(), Duration::from_millis(30)).await;
        let dir = tempfile_dir();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, &ca.ca_pem).unwrap();
        let config = tls_config(Some(&ca_path)).unwrap();
        let response = crate::Probe::probe(&mut target(port, Some(config)), Duration::from_secs(5)).await.unwrap();
        assert_eq!(response.status, 401, "a 401 from a model API proves the path");
        assert!(response.phases.dns.is_some() && response.phases.connect.is_some() && response.phases.tls.is_some());
        assert!(response.first_byte >= Duration::from_millis(30), "{response:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_wrong_ca_is_tls_and_a_dead_port_is_refused() {
        let ca = test_ca();
        let port = tls_server(ca.server.clone(), Duration::ZERO).await;
        let failure = crate::Probe::probe(&mut target(port, Some(tls_config(None).unwrap())), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(failure.phases.connect.is_some() && failure.phases.tls.is_none());

        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let failure = crate::Probe::probe(&mut target(dead, Some(tls_config(None).unwrap())), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Refused, "{failure}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_with_the_phases_it_finished() {
        let ca = test_ca();
        let port = tls_server(ca.server.clone(), Duration::from_secs(30)).await;
        let dir = tempfile_dir();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, &ca.ca_pem).unwrap();
        let failure = crate::Probe::probe(
            &mut target(port, Some(tls_config(Some(&ca_path)).unwrap())),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout);
        assert!(failure.phases.tls.is_some(), "{failure:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let dir = tempfile_dir();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(tls_config(Some(&path)), Err(TlsConfigError::CaFile { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("oce-model-host-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

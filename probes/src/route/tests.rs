//! The route's dial against real TLS servers (rustls, rcgen certificates): each way a certificate verifies
//! or does not, what the failure names, and that nothing is written on a connection that did not verify.

use super::*;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A certificate and its key, as a server presents them.
struct Leaf {
    der: CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn self_signed(names: &[&str]) -> Leaf {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Leaf { der: cert.der().clone(), key: rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap() }
}

/// A CA (its PEM) and a way to sign leaves with it.
struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn test_ca() -> TestCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    TestCa { pem: cert.pem(), issuer: rcgen::Issuer::new(params, key) }
}

impl TestCa {
    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { der: cert.der().clone(), key: rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap() }
    }

    fn file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &self.pem).unwrap();
        file
    }
}

/// A TLS server on loopback presenting `leaf`: it answers each request with a 200 and hands back what it read
/// after the handshake (nothing, when the handshake never completed).
async fn tls_server(leaf: Leaf) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der], leaf.key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(mut tls) = acceptor.accept(tcp).await else { return Vec::new() };
        let mut read = vec![0u8; 4096];
        let n = tls.read(&mut read).await.unwrap_or(0);
        let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        read.truncate(n);
        read
    });
    (port, served)
}

fn wss(port: u16, verify: Verify) -> Route {
    Route::Direct(Arc::new(Direct::wss("127.0.0.1", port, verify).unwrap()))
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_pinned_certificate_verifies_whatever_its_name_and_carries_its_fingerprint_and_expiry() {
    let leaf = self_signed(&["openclaw-gateway"]);
    let pin = Fingerprint::of(leaf.der.as_ref());
    let (port, served) = tls_server(leaf).await;
    let mut dialed = wss(port, Verify::Pin(pin)).dial(TIMEOUT).await.unwrap();
    let handshake = dialed.tls.clone().expect("a wss route's dial shakes hands");
    assert_eq!(handshake.certificate.sha256, pin);
    assert!(handshake.certificate.not_after.is_some_and(|t| t > 1_800_000_000), "{handshake:?}");
    assert!(dialed.stream.is_tls());
    dialed.stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(served.await.unwrap(), b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn another_certificate_than_the_pinned_one_is_a_mismatch_naming_it_and_nothing_is_written() {
    let (presented, pinned) = (self_signed(&["openclaw-gateway"]), self_signed(&["openclaw-gateway"]));
    let presented_sha = Fingerprint::of(presented.der.as_ref());
    let pin = Fingerprint::of(pinned.der.as_ref());
    let (port, served) = tls_server(presented).await;
    let failure = wss(port, Verify::Pin(pin)).dial(TIMEOUT).await.unwrap_err();
    assert_eq!(failure.cause(), Some("certificate_mismatch"), "{failure:?}");
    assert_eq!(failure.presented().map(|c| c.sha256), Some(presented_sha));
    assert!(failure.to_string().contains(&presented_sha.to_string()), "{failure}");
    assert!(served.await.unwrap().is_empty(), "no byte after a failed verification");
}

#[tokio::test]
async fn a_ca_signed_certificate_verifies_with_the_ca_file_and_its_name() {
    let ca = test_ca();
    let (port, _served) = tls_server(ca.leaf(&["127.0.0.1"], false)).await;
    let file = ca.file();
    let dialed = wss(port, Verify::roots(Some(file.path())).unwrap()).dial(TIMEOUT).await.unwrap();
    assert!(dialed.tls.is_some());
}

#[tokio::test]
async fn without_the_ca_file_a_private_ca_is_someone_elses_certificate() {
    let ca = test_ca();
    let (port, served) = tls_server(ca.leaf(&["127.0.0.1"], false)).await;
    let failure = wss(port, Verify::roots(None).unwrap()).dial(TIMEOUT).await.unwrap_err();
    assert_eq!(failure.cause(), Some("certificate_mismatch"), "{failure:?}");
    assert!(served.await.unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_or_wrong_name_certificate_fails_tls_with_the_certificate_named() {
    let ca = test_ca();
    let file = ca.file();
    for leaf in [ca.leaf(&["127.0.0.1"], true), ca.leaf(&["gateway.example"], false)] {
        let sha = Fingerprint::of(leaf.der.as_ref());
        let (port, served) = tls_server(leaf).await;
        let failure = wss(port, Verify::roots(Some(file.path())).unwrap()).dial(TIMEOUT).await.unwrap_err();
        assert_eq!(failure.cause(), Some("tls_failed"), "{failure:?}");
        assert_eq!(failure.presented().map(|c| c.sha256), Some(sha));
        assert!(served.await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_peer_that_does_not_speak_tls_fails_tls_with_no_certificate() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let failure = wss(port, Verify::Pin(Fingerprint([0; 32]))).dial(TIMEOUT).await.unwrap_err();
    assert_eq!(failure.cause(), Some("tls_failed"));
    assert_eq!(failure.presented(), None);
}

#[tokio::test]
async fn a_plain_route_connects_and_a_closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let local = Route::Local(addr).dial(TIMEOUT).await.unwrap();
    assert!(!local.stream.is_tls() && local.tls.is_none());
    let ws = Route::Direct(Arc::new(Direct::ws("127.0.0.1", addr.port()))).dial(TIMEOUT).await.unwrap();
    assert_eq!(ws.peer, addr);
    drop(listener);
    let failure = Route::Local(addr).dial(TIMEOUT).await.unwrap_err();
    assert_eq!((failure.cause(), failure), (Some("connect_failed"), DialFailure::Refused));
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_connect_failure_by_resolve() {
    let route = Route::Direct(Arc::new(Direct::ws("no-such-host.invalid", 18789)));
    let failure = route.dial(TIMEOUT).await.unwrap_err();
    assert!(matches!(failure, DialFailure::Resolve { .. }), "{failure:?}");
    assert_eq!(failure.cause(), Some("connect_failed"));
}

#[test]
fn the_authority_and_url_carry_the_port_unless_it_is_the_schemes_default() {
    let direct = |route: Direct| Route::Direct(Arc::new(route));
    let pin = || Verify::Pin(Fingerprint([1; 32]));
    assert_eq!(direct(Direct::ws("10.0.0.5", 18789)).ws_url(), "ws://10.0.0.5:18789/");
    assert_eq!(direct(Direct::wss("GW.tailnet.ts.net", 443, pin()).unwrap()).ws_url(), "wss://gw.tailnet.ts.net/");
    assert_eq!(direct(Direct::wss("[fd00::5]", 8443, pin()).unwrap()).authority(), "[fd00::5]:8443");
    assert_eq!(Route::Local("127.0.0.1:18789".parse().unwrap()).ws_url(), "ws://127.0.0.1:18789/");
    assert_eq!(direct(Direct::wss("gw", 443, pin()).unwrap()).transport(), Transport::Wss);
}

#[test]
fn fingerprints_parse_in_every_form_openclaw_takes() {
    let hex = "ab".repeat(32);
    let expected = Fingerprint([0xab; 32]);
    let colons = vec!["AB"; 32].join(":");
    for text in [hex.clone(), hex.to_uppercase(), colons.clone(), format!("sha256:{hex}"), format!("SHA256:{colons}")] {
        assert_eq!(Fingerprint::parse(&format!("  {text} ")), Some(expected), "{text}");
    }
    for bad in [&hex[2..], "ab:".repeat(32).as_str(), &"zz".repeat(32), &format!("+b{}", &hex[2..]), "sha1:abcd", ""] {
        assert_eq!(Fingerprint::parse(bad), None, "{bad:?}");
    }
    assert_eq!(expected.to_string(), hex);
    assert_eq!(format!("{expected:?}"), format!("sha256:{hex}"));
}

#[test]
fn plaintext_is_allowed_only_where_openclaws_cli_allows_it() {
    for host in [
        "10.200.0.2",
        "192.168.0.202",
        "172.16.5.5",
        "169.254.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "[::1]",
        "fe80::1",
        "fd7a:115c:a1e0::1",
        "fec0::1",
        "localhost",
        "mac-ap1.local",
        "mac-ap1.tailnet-abc.ts.net.",
    ] {
        assert!(plaintext_host_allowed(host), "{host}");
    }
    for host in [
        "198.51.100.7",
        "8.8.8.8",
        "100.128.0.1",
        "172.32.0.1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "gw.example.com",
        "local",
        "ts.net.evil.com",
    ] {
        assert!(!plaintext_host_allowed(host), "{host}");
    }
}

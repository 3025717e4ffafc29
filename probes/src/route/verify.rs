//! How a `wss://` route's certificate is judged: [`Fingerprint`] (OpenClaw's `tlsFingerprint` and its forms),
//! [`Certificate`] (what a presented leaf is: its SHA-256 and expiry), and the verifier every dial builds
//! ([`Recording`]): it judges like the route's [`Verify`] and remembers what it was shown, so a failed
//! handshake still names the certificate that came.

use std::sync::Mutex;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use super::Verify;

/// What a presented leaf certificate is: its SHA-256 and when it expires. Read from the peer, shown to people,
/// never a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// SHA-256 of the DER, as OpenClaw's `tlsFingerprint`.
    pub sha256: Fingerprint,
    /// `notAfter`, Unix seconds (None when the certificate does not parse).
    pub not_after: Option<i64>,
}

impl Certificate {
    fn of(der: &CertificateDer<'_>) -> Certificate {
        use x509_parser::prelude::FromDer;
        let not_after = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
            .ok()
            .map(|(_, parsed)| parsed.validity().not_after.timestamp());
        Certificate { sha256: Fingerprint::of(der.as_ref()), not_after }
    }
}

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The SHA-256 of `der`.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The forms OpenClaw's `tlsFingerprint` takes (its `normalizeTlsFingerprint`): 64 hex digits, or 32
    /// colon-separated pairs, any case, an optional `sha256:` prefix (any case), surrounding spaces ignored.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let text = text.trim();
        let text = match text.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &text[7..],
            _ => text,
        };
        let hex: String = if text.len() == 64 {
            text.to_owned()
        } else if text.len() == 95 && text.split(':').all(|pair| pair.len() == 2) {
            text.split(':').collect()
        } else {
            return None;
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Fingerprint(bytes))
    }
}

impl std::fmt::Display for Fingerprint {
    /// 64 lower-case hex digits, the form OpenClaw stores.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{self}")
    }
}

/// The verifier's judgement of the certificate it was shown.
#[derive(Debug, Clone)]
pub(super) enum Judgement {
    Verified,
    Mismatch(String),
    Failed(String),
}

/// A verifier that judges like the route's [`Verify`] and remembers what it was shown, so a failed handshake
/// still says which certificate came (the doctor's and the page's evidence). One per dial.
#[derive(Debug)]
pub(super) struct Recording {
    verify: Verify,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<(Certificate, Judgement)>>,
}

impl Recording {
    pub(super) fn new(verify: &Verify, algorithms: WebPkiSupportedAlgorithms) -> Recording {
        Recording { verify: verify.clone(), algorithms, seen: Mutex::new(None) }
    }

    pub(super) fn take(&self) -> Option<(Certificate, Judgement)> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let certificate = Certificate::of(end_entity);
        let judgement = match &self.verify {
            Verify::Pin(pin) if certificate.sha256 == *pin => Judgement::Verified,
            Verify::Pin(pin) => {
                Judgement::Mismatch(format!("presented sha256:{}, pinned sha256:{pin}", certificate.sha256))
            }
            Verify::Roots(roots) => {
                match roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                    Ok(_) => Judgement::Verified,
                    // Signed by no trusted root: someone else's certificate.
                    Err(rustls::Error::InvalidCertificate(
                        error @ (CertificateError::UnknownIssuer | CertificateError::BadSignature),
                    )) => Judgement::Mismatch(format!("{error:?}: no trusted root signed it")),
                    Err(error) => Judgement::Failed(error.to_string()),
                }
            }
        };
        let verdict = match &judgement {
            Judgement::Verified => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)),
        };
        *self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((certificate, judgement));
        verdict
    }

    // The handshake's signature proves the peer holds the certificate's key: checked for a pin too (a copy of
    // the pinned certificate alone gets an impostor nowhere).
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

//! TLS plumbing the probes share: the roots every verifying client starts from (webpki-roots: Mozilla's set,
//! the same set Node.js, and so the `openclaw` CLI, verifies against by default), an extra CA file in PEM, the
//! ring provider, and the client configs of the model-host probe and remote write.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The CA file could not be read or parsed.
    #[error("CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The client certificate or key file could not be read or parsed.
    #[error("{path}: {message}")]
    ClientPem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every client here uses (ring: no C compiler beyond ring's own, no cmake).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The webpki roots plus every certificate in `extra_ca_pem`; a file that does not read or holds no
/// certificate is an error naming it.
pub fn root_store(extra_ca_pem: Option<&Path>) -> Result<rustls::RootCertStore, TlsConfigError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_ca_pem {
        let ca_error = |message: String| TlsConfigError::CaFile { path: path.display().to_string(), message };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            roots.add(cert.map_err(|e| ca_error(e.to_string()))?)?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_error("no PEM certificate in the file".into()));
        }
    }
    Ok(roots)
}

/// A client config trusting the webpki roots plus every certificate in `extra_ca_pem`.
pub fn tls_config(extra_ca_pem: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    tls_client_config(extra_ca_pem, None)
}

/// As [`tls_config`], presenting the client certificate chain and key in `client` (PEM files) when given.
pub fn tls_client_config(
    extra_ca_pem: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let roots = root_store(extra_ca_pem)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        None => config.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let cert_error =
                |message: String| TlsConfigError::ClientPem { path: cert_file.display().to_string(), message };
            let chain = CertificateDer::pem_file_iter(cert_file)
                .map_err(|e| cert_error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cert_error(e.to_string()))?;
            if chain.is_empty() {
                return Err(cert_error("no PEM certificate in the file".into()));
            }
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                TlsConfigError::ClientPem { path: key_file.display().to_string(), message: e.to_string() }
            })?;
            config.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

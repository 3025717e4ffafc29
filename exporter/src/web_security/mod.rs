//! Optional TLS and basic auth for the web listener, from a web config file in the format of the
//! Prometheus exporter-toolkit (`tls_server_config`, `basic_auth_users` with bcrypt hashes), so the file a
//! team already writes for node_exporter works here unchanged.
//!
//! Like exporter-toolkit, whether the listener speaks TLS is fixed at start; certificates, keys and users
//! are read again on every reload. bcrypt checks are cached by a hash of user and password, because bcrypt
//! is slow on purpose and Prometheus sends the same credentials every scrape: successes and failures in
//! caches of their own, so a stream of wrong passwords can evict only other wrong passwords. [`check`]
//! answers from the caches at once; only [`verify`] runs bcrypt (the web server rate-limits and bounds it).
//!
//! [`check`]: WebSecurity::check
//! [`verify`]: WebSecurity::verify

mod remembered;

pub use remembered::{Remembered, STATE_KEY as REMEMBERED_STATE_KEY};

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Accepted credentials remembered: far more than a team has scrapers (each entry 32 bytes). Only a right
/// password gets in, so a flood cannot fill it.
const MAX_ACCEPTED: usize = 256;
/// Refused credentials remembered (a scraper with a wrong password retries it every scrape); beyond this
/// they are forgotten all at once: simple, bounded, and never touches the accepted ones.
#[cfg(not(test))]
const MAX_REFUSED: usize = 4096;
#[cfg(test)]
const MAX_REFUSED: usize = 32;

/// What the caches say about a request's credentials, before any bcrypt.
pub enum Check {
    /// No users configured, or a remembered right password.
    Allowed,
    /// No or malformed credentials, or a remembered wrong password.
    Refused,
    /// Seen for the first time: [`WebSecurity::verify`] decides.
    Verify(Unverified),
}

/// Credentials not checked yet. Holds the password until verified; never printed.
pub struct Unverified {
    user: String,
    password: String,
    key: [u8; 32],
}

impl Unverified {
    /// The user name it claims (configured or not).
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// What a web config file asks for, ready to use.
pub struct WebSecurity {
    /// The TLS server config, when `tls_server_config` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    accepted: Mutex<HashSet<[u8; 32]>>,
    refused: Mutex<HashSet<[u8; 32]>>,
    source: PathBuf,
    digest: [u8; 32],
}

impl fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the hashes: user names and whether TLS is on are enough to tell configs apart.
        f.debug_struct("WebSecurity")
            .field("source", &self.source)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PartialEq for WebSecurity {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.digest == other.digest
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

impl WebSecurity {
    /// Read and check the web config file at `path`. Every problem names the file, the key and the value.
    pub fn load(path: &Path) -> Result<WebSecurity, Vec<String>> {
        let file = path.display();
        let text =
            std::fs::read(path).map_err(|err| vec![format!("{file}: cannot read the web config file: {err}")])?;
        let raw: RawWebConfig = if text.iter().all(u8::is_ascii_whitespace) {
            RawWebConfig { tls_server_config: None, basic_auth_users: BTreeMap::new() }
        } else {
            let deserializer = serde_yaml_ng::Deserializer::from_slice(&text);
            serde_path_to_error::deserialize(deserializer).map_err(|err| {
                let key = err.path().to_string();
                vec![format!("{file}: key `{key}`: {}", err.inner())]
            })?
        };
        let mut problems = Vec::new();
        for (user, hash) in &raw.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                // The hash is a secret too: name the key, not the value.
                problems.push(format!(
                    "{file}: key `basic_auth_users.{user}` = \"<hidden>\": not a bcrypt hash (make one with htpasswd -nBC 10 \"\")"
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = raw.tls_server_config.as_ref().and_then(|tls| match server_config(tls, base) {
            Ok(config) => Some(Arc::new(config)),
            Err(problem) => {
                problems.push(format!("{file}: {problem}"));
                None
            }
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        // What decides whether a reload changes anything: the file and the contents of every file it names, so
        // a renewed certificate (same path, new bytes) is served after SIGHUP.
        let mut digest = Sha256::new();
        digest.update(&text);
        if let Some(tls) = &raw.tls_server_config {
            for named in [Some(&tls.cert_file), Some(&tls.key_file), tls.client_ca_file.as_ref()].into_iter().flatten()
            {
                digest.update([0]);
                digest.update(std::fs::read(base.join(named)).unwrap_or_default());
            }
        }
        Ok(WebSecurity {
            tls,
            users: raw.basic_auth_users,
            accepted: Mutex::new(HashSet::new()),
            refused: Mutex::new(HashSet::new()),
            source: path.to_owned(),
            digest: digest.finalize().into(),
        })
    }

    /// Whether requests need a user and password.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// The bcrypt hash a password claimed for `user` is checked against: the user's own, or for an unknown
    /// name a configured user's (the result then refused whatever bcrypt says), so a wrong name costs
    /// exactly what a wrong password costs at the configured cost: no user enumeration by timing, whatever
    /// cost the hashes were made with.
    fn hash_checked_for(&self, user: &str) -> Option<&str> {
        self.users.get(user).or_else(|| self.users.values().next()).map(String::as_str)
    }

    /// Whether `user` is a configured user name.
    pub fn knows(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Carry the accepted credentials over from the web config this one replaces, when its users and hashes
    /// are the same (a renewed certificate): the scrapers then need no new bcrypt check, which a flood of wrong
    /// passwords at that moment could otherwise rate-limit.
    pub fn keep_accepted_from(&self, old: &WebSecurity) {
        if self.users == old.users {
            let accepted = lock(&old.accepted).clone();
            lock(&self.accepted).extend(accepted);
        }
    }

    /// Answer from the caches, without bcrypt: cheap enough for the runtime thread.
    pub fn check(&self, authorization: Option<&[u8]>) -> Check {
        if self.users.is_empty() {
            return Check::Allowed;
        }
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return Check::Refused;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if lock(&self.accepted).contains(&key) {
            return Check::Allowed;
        }
        if lock(&self.refused).contains(&key) {
            return Check::Refused;
        }
        Check::Verify(Unverified { user, password, key })
    }

    /// Whether `unverified` is the credential `remembered` kept for its (configured) user from before a
    /// restart: then it is accepted as a cached one is, without bcrypt. One HMAC: cheap enough for the runtime
    /// thread.
    pub fn recognized(&self, unverified: &Unverified, remembered: &Remembered) -> bool {
        let Some(hash) = self.users.get(&unverified.user) else { return false };
        if !remembered.recognizes(&unverified.user, &unverified.password, hash) {
            return false;
        }
        let mut accepted = lock(&self.accepted);
        if accepted.len() >= MAX_ACCEPTED {
            accepted.clear();
        }
        accepted.insert(unverified.key);
        true
    }

    /// Check `unverified` with bcrypt and remember the answer (a right one also in `remembered`, for the state
    /// file). Slow (tens of milliseconds): call it off the async workers.
    pub fn verify(&self, unverified: Unverified, remembered: &Remembered) -> bool {
        let Unverified { user, password, key } = unverified;
        let Some(hash) = self.hash_checked_for(&user) else { return false };
        let verified = bcrypt::verify(&password, hash).unwrap_or(false) && self.users.contains_key(&user);
        if verified {
            remembered.remember(&user, &password, hash);
        }
        let (cache, bound) = if verified { (&self.accepted, MAX_ACCEPTED) } else { (&self.refused, MAX_REFUSED) };
        let mut cache = lock(cache);
        if cache.len() >= bound {
            cache.clear();
        }
        cache.insert(key);
        verified
    }

    /// Whether an `Authorization` header value names a configured user with the right password: [`check`],
    /// then [`verify`] on a miss. Slow on a miss.
    ///
    /// [`check`]: WebSecurity::check
    /// [`verify`]: WebSecurity::verify
    #[cfg(test)]
    fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        match self.check(authorization) {
            Check::Allowed => true,
            Check::Refused => false,
            Check::Verify(unverified) => self.verify(unverified, &Remembered::default()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `Basic base64(user:password)` -> (user, password).
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn server_config(raw: &RawTls, base: &Path) -> Result<rustls::ServerConfig, String> {
    let resolve = |file: &str| base.join(file);
    let cert_path = resolve(&raw.cert_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|err| format!("key `tls_server_config.cert_file` = \"{}\": {err}", raw.cert_file))?;
    if certs.is_empty() {
        return Err(format!("key `tls_server_config.cert_file` = \"{}\": no certificate in the file", raw.cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(resolve(&raw.key_file))
        .map_err(|err| format!("key `tls_server_config.key_file` = \"{}\": {err}", raw.key_file))?;
    let version = |key: &str, value: &Option<String>| match value.as_deref() {
        None => Ok(None),
        Some("TLS12") => Ok(Some(&rustls::version::TLS12)),
        Some("TLS13") => Ok(Some(&rustls::version::TLS13)),
        Some(other) => Err(format!("key `tls_server_config.{key}` = \"{other}\": must be TLS12 or TLS13")),
    };
    let min = version("min_version", &raw.min_version)?;
    let max = version("max_version", &raw.max_version)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| min.is_none_or(|min| u16::from(v.version) >= u16::from(min.version)))
        .filter(|v| max.is_none_or(|max| u16::from(v.version) <= u16::from(max.version)))
        .collect();
    if versions.is_empty() {
        return Err(format!(
            "key `tls_server_config.min_version` = \"{}\": above max_version",
            raw.min_version.as_deref().unwrap_or_default()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|err| format!("key `tls_server_config`: {err}"))?;
    let auth_type = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth_type {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca_file) = &raw.client_ca_file else {
                return Err(format!(
                    "key `tls_server_config.client_auth_type` = \"{auth_type}\": needs tls_server_config.client_ca_file"
                ));
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(resolve(ca_file))
                .map_err(|err| format!("key `tls_server_config.client_ca_file` = \"{ca_file}\": {err}"))?
            {
                let cert =
                    cert.map_err(|err| format!("key `tls_server_config.client_ca_file` = \"{ca_file}\": {err}"))?;
                roots
                    .add(cert)
                    .map_err(|err| format!("key `tls_server_config.client_ca_file` = \"{ca_file}\": {err}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier =
                if auth_type == "VerifyClientCertIfGiven" { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier
                .build()
                .map_err(|err| format!("key `tls_server_config.client_ca_file` = \"{ca_file}\": {err}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err(format!(
                "key `tls_server_config.client_auth_type` = \"{other}\": must be NoClientCert, VerifyClientCertIfGiven \
                 or RequireAndVerifyClientCert (a certificate that is not verified is not accepted here)"
            ))
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| {
        format!("key `tls_server_config.key_file` = \"{}\": does not match cert_file ({err})", raw.key_file)
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn wrong_passwords_beyond_the_refused_cache_never_evict_a_right_one() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let path = write(dir.path(), "web.yml", &format!("basic_auth_users:\n  prom: '{hash}'\n"));
        let security = WebSecurity::load(&path).unwrap();
        let header = |creds: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds));
        assert!(security.authorized(Some(header("prom:s3cret").as_bytes())));
        // More unique wrong passwords than the refused cache holds (each one a real bcrypt check).
        for i in 0..MAX_REFUSED + 10 {
            assert!(!security.authorized(Some(header(&format!("prom:wrong-{i}")).as_bytes())));
        }
        assert!(lock(&security.refused).len() <= MAX_REFUSED);
        assert!(matches!(security.check(Some(header("prom:s3cret").as_bytes())), Check::Allowed), "still cached");
        assert!(matches!(
            security.check(Some(header(&format!("prom:wrong-{}", MAX_REFUSED + 9)).as_bytes())),
            Check::Refused
        ));
    }

    #[test]
    fn a_reload_with_the_same_users_keeps_the_accepted_credentials_and_one_with_new_users_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let path = write(dir.path(), "web.yml", &format!("basic_auth_users:\n  prom: '{hash}'\n"));
        let old = WebSecurity::load(&path).unwrap();
        let header = |creds: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds));
        assert!(old.authorized(Some(header("prom:s3cret").as_bytes())));
        let same = WebSecurity::load(&path).unwrap();
        same.keep_accepted_from(&old);
        assert!(matches!(same.check(Some(header("prom:s3cret").as_bytes())), Check::Allowed));
        let other = bcrypt::hash("other", 4).unwrap();
        let path = write(dir.path(), "web2.yml", &format!("basic_auth_users:\n  prom: '{other}'\n"));
        let changed = WebSecurity::load(&path).unwrap();
        changed.keep_accepted_from(&old);
        assert!(matches!(changed.check(Some(header("prom:s3cret").as_bytes())), Check::Verify(_)));
    }

    #[test]
    fn basic_auth_checks_the_bcrypt_hash_and_caches_only_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let security =
            WebSecurity::load(&write(dir.path(), "web.yml", &format!("basic_auth_users:\n  prom: '{hash}'\n")))
                .unwrap();
        let header = |creds: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds));
        assert!(security.requires_auth());
        assert!(security.authorized(Some(header("prom:s3cret").as_bytes())));
        assert!(security.authorized(Some(header("prom:s3cret").as_bytes())), "cached");
        assert!(!security.authorized(Some(header("prom:wrong").as_bytes())));
        assert!(!security.authorized(Some(header("nobody:s3cret").as_bytes())));
        assert!(!security.authorized(Some(b"Bearer s3cret")));
        assert!(!security.authorized(None));
        assert!(!format!("{security:?}").contains(&hash), "Debug shows the hash");
    }

    #[test]
    fn an_unknown_user_costs_a_check_at_the_configured_cost_and_never_gets_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yml");
        // Cost 4 here; the same holds for any cost: the unknown name is checked against this very hash.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(&file, format!("basic_auth_users:\n  prom: \"{hash}\"\n")).unwrap();
        let security = WebSecurity::load(&file).unwrap();
        let header = |pair: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        // The right password under an unknown name: bcrypt says yes, the name says no.
        assert!(!security.authorized(Some(header("intruder:s3cret").as_bytes())));
        let cost = |user: &str| {
            security.hash_checked_for(user).and_then(|h| h.parse::<bcrypt::HashParts>().ok()).map(|p| p.get_cost())
        };
        assert_eq!(cost("nobody"), Some(4), "an unknown name is checked at the configured cost");
        assert_eq!(cost("prom"), Some(4));
    }

    #[test]
    fn every_problem_names_the_file_key_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
                "`tls_server_config.cert_file` = \"missing.pem\"",
            ),
            (
                "tls_server_config:\n  cert_fil: a\n",
                "key `tls_server_config.cert_fil`: tls_server_config: unknown field",
            ),
            ("basic_auth_users:\n  prom: plain-text\n", "`basic_auth_users.prom` = \"<hidden>\": not a bcrypt hash"),
            ("http_server_config:\n  http2: true\n", "unknown field `http_server_config`"),
        ];
        for (text, expected) in cases {
            let path = write(dir.path(), "web.yml", text);
            let problems = WebSecurity::load(&path).unwrap_err().join("\n");
            assert!(problems.contains(&path.display().to_string()), "{problems}");
            assert!(problems.contains(expected), "{text}: {problems}");
            assert!(!problems.contains("plain-text"), "the hash value leaked: {problems}");
        }
        let problems = WebSecurity::load(&dir.path().join("absent.yml")).unwrap_err().join("\n");
        assert!(problems.contains("absent.yml: cannot read the web config file"), "{problems}");
    }
}

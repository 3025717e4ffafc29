//! Token revisions: a token is hashed the moment it is read and only its SHA-256 is compared with the
//! configured registry, so label values are always a registry name, `unknown` or `none`.

use sha2::{Digest, Sha256};

/// A SHA-256 digest of a token.
pub type Fingerprint = [u8; 32];

/// The SHA-256 of `token`; the token itself is not kept.
pub fn fingerprint(token: &[u8]) -> Fingerprint {
    Sha256::digest(token).into()
}

/// Lower-case hex of a fingerprint, as the registry's `sha256` key holds it.
pub fn to_hex(fingerprint: &Fingerprint) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse 64 hex digits into a fingerprint.
pub fn from_hex(hex: &str) -> Option<Fingerprint> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// What credential a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// No credential at all.
    None,
    /// A credential whose fingerprint is known; not necessarily in the registry.
    Token(Fingerprint),
    /// A credential in a form the gateway does not read (e.g. `Authorization: Basic`).
    Unreadable,
}

/// The configured revisions: name and fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    revisions: Vec<(String, Fingerprint)>,
}

/// Label value for a credential not in the registry.
pub const UNKNOWN: &str = "unknown";
/// Label value for a request without a credential.
pub const NONE: &str = "none";

impl Registry {
    /// A registry of `(name, fingerprint)` pairs.
    pub fn new(revisions: Vec<(String, Fingerprint)>) -> Self {
        Registry { revisions }
    }

    /// The label value for `credential`: a revision name, `unknown` or `none`.
    pub fn revision(&self, credential: &Credential) -> &str {
        match credential {
            Credential::None => NONE,
            Credential::Unreadable => UNKNOWN,
            Credential::Token(fp) => {
                self.revisions.iter().find(|(_, known)| known == fp).map(|(name, _)| name.as_str()).unwrap_or(UNKNOWN)
            }
        }
    }

    /// The names in the registry.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.revisions.iter().map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_revisions_resolve() {
        let fp = fingerprint(b"secret-r1");
        assert_eq!(from_hex(&to_hex(&fp)), Some(fp));
        assert_eq!(to_hex(&fingerprint(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let registry = Registry::new(vec![("r1".into(), fp)]);
        assert_eq!(registry.revision(&Credential::Token(fp)), "r1");
        assert_eq!(registry.revision(&Credential::Token(fingerprint(b"other"))), "unknown");
        assert_eq!(registry.revision(&Credential::None), "none");
        assert_eq!(from_hex("zz"), None);
    }
}

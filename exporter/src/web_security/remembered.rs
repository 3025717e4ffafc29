//! Credentials accepted before a restart, remembered so a flood of wrong passwords cannot lock the scraper out
//! of a freshly started exporter (issue 38: six threads flooding `prom:wrong-N` right after a restart got the
//! real `prom:s3cret` a 429 six times of six, its first sight waiting behind theirs for a bcrypt check).
//!
//! One entry per configured user: a random salt and HMAC-SHA256(key = the user's bcrypt hash from the web
//! config, salt ‖ user ‖ 0 ‖ password), kept in the state file. A credential that matches it is accepted at
//! once, without bcrypt and outside the first-sight budget. Keyed by the configured hash, an entry is worth
//! nothing without the web config (the state file alone gives no password check), and a new password in the
//! web config invalidates it by itself. The trade: whoever reads both files can try passwords at HMAC speed
//! rather than bcrypt's, which is why neither file is ever put in an evidence archive.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The state file's key for the remembered credentials.
pub const STATE_KEY: &str = "web_accepted";

/// One remembered credential: its salt and MAC.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    salt: [u8; 16],
    mac: [u8; 32],
}

/// The remembered credentials, one per user name, shared by every web config a reload brings (an entry whose
/// hash changed simply stops matching).
#[derive(Default)]
pub struct Remembered {
    entries: Mutex<BTreeMap<String, Entry>>,
}

/// The most users remembered: the web config's names are the only keys, and a team has a few scrapers.
const MAX_USERS: usize = 64;

fn mac_of(hash: &str, salt: &[u8; 16], user: &str, password: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(hash.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(salt);
    mac.update(user.as_bytes());
    mac.update(&[0]);
    mac.update(password.as_bytes());
    mac
}

impl Remembered {
    /// Whether `user`'s `password` is the one accepted last against `hash` (compared in constant time).
    pub fn recognizes(&self, user: &str, password: &str, hash: &str) -> bool {
        let Some(entry) = lock(&self.entries).get(user).cloned() else { return false };
        mac_of(hash, &entry.salt, user, password).verify_slice(&entry.mac).is_ok()
    }

    /// Remember `user`'s `password`, just accepted against `hash`, in place of what was remembered for it.
    pub fn remember(&self, user: &str, password: &str, hash: &str) {
        let salt: [u8; 16] = rand::random();
        let mac: [u8; 32] = mac_of(hash, &salt, user, password).finalize().into_bytes().into();
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_USERS && !entries.contains_key(user) {
            return;
        }
        entries.insert(user.to_owned(), Entry { salt, mac });
    }

    /// For the state file: `{"user": "salt:mac"}`, each in base64.
    pub fn save(&self) -> serde_json::Value {
        let entries = lock(&self.entries);
        let saved = entries.iter().map(|(user, entry)| {
            (
                user.clone(),
                serde_json::Value::String(format!("{}:{}", BASE64.encode(entry.salt), BASE64.encode(entry.mac))),
            )
        });
        serde_json::Value::Object(saved.collect())
    }

    /// Take back what [`Remembered::save`] wrote; a damaged entry is skipped (and said), the rest kept.
    pub fn restore(&self, saved: &serde_json::Value) {
        let Some(saved) = saved.as_object() else {
            tracing::warn!(key = STATE_KEY, "the state file's remembered credentials are damaged and were skipped");
            return;
        };
        let mut entries = lock(&self.entries);
        for (user, value) in saved.iter().take(MAX_USERS) {
            let parsed = value.as_str().and_then(|text| text.split_once(':')).and_then(|(salt, mac)| {
                let decoded = |text: &str| BASE64.decode(text).ok();
                Some(Entry { salt: decoded(salt)?.try_into().ok()?, mac: decoded(mac)?.try_into().ok()? })
            });
            match parsed {
                Some(entry) => drop(entries.insert(user.clone(), entry)),
                None => tracing::warn!(key = STATE_KEY, "a remembered credential is damaged and was skipped"),
            }
        }
    }
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$abcdefghijklmnopqrstuu7B8XKQ5hJ2mGqZy3gT7cUq6m0c3V1Sa";

    #[test]
    fn a_remembered_credential_comes_back_from_the_state_file_and_matches_only_itself() {
        let remembered = Remembered::default();
        remembered.remember("prom", "s3cret", HASH);
        let restored = Remembered::default();
        restored.restore(&remembered.save());
        assert!(restored.recognizes("prom", "s3cret", HASH));
        assert!(!restored.recognizes("prom", "wrong", HASH), "another password");
        assert!(!restored.recognizes("other", "s3cret", HASH), "another user");
        assert!(!restored.recognizes("prom", "s3cret", "$2b$04$another-hash"), "the password changed in the config");
        let saved = remembered.save().to_string();
        assert!(!saved.contains("s3cret"), "{saved}");
    }

    #[test]
    fn a_damaged_entry_is_skipped_and_the_others_kept() {
        let remembered = Remembered::default();
        remembered.remember("prom", "s3cret", HASH);
        let mut saved = remembered.save();
        saved["broken"] = serde_json::json!("@@:not base64");
        saved["short"] = serde_json::json!("AA==:AA==");
        let restored = Remembered::default();
        restored.restore(&saved);
        assert!(restored.recognizes("prom", "s3cret", HASH));
        assert_eq!(lock(&restored.entries).len(), 1);
        restored.restore(&serde_json::json!("not an object"));
        assert!(restored.recognizes("prom", "s3cret", HASH));
    }
}

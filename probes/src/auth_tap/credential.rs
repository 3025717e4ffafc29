//! Token revisions. The configured registry holds a salted slow hash of each revision's token (argon2id,
//! a PHC string), so a leaked config does not give a short token away; older configs' unsalted `sha256`
//! fingerprints still work. Label values are always a registry name, `unknown` or `none`.
//!
//! Verifying a token against an argon2id hash costs tens of milliseconds by design, so it happens at most
//! once per distinct token: the answer is cached under an HMAC of the token keyed by a random per-process
//! key (never the token, never a hash that could be checked offline), in a bounded cache. A cache hit or a
//! legacy fingerprint is answered at once ([`Registry::lookup`]); anything needing argon2id goes to a
//! thread of its own ([`Registry::resolve_later`]), never the caller's, because the exporter's probes share
//! one runtime thread and a verification there delays every probe due meanwhile. First sights of new tokens
//! are rate-limited, so a flood of distinct tokens costs bounded CPU; a token seen during a flood, past the
//! budget, is labelled `unknown` that once and verified when next seen. Several sights of one token while it
//! is being verified wait for that one verification.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// An unsalted SHA-256 digest of a token: the legacy `sha256 = ` registry entry.
pub type Fingerprint = [u8; 32];

/// The unsalted SHA-256 of `token` (legacy `sha256` entries only).
pub fn sha256(token: &[u8]) -> Fingerprint {
    Sha256::digest(token).into()
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

/// Argon2id parameters `fingerprint` writes: OWASP's first recommendation (19 MiB, 2 passes, 1 lane).
/// Measured: 80-90 ms a hash here, release build (`time openclaw-tunnel-exporter fingerprint`), and a
/// tapped request's first sight of a new token 70-85 ms (bench/bench.py, "first sight" row).
pub fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// Hash `token` with a fresh random salt: the PHC string a `hash = ` registry entry holds.
pub fn hash(token: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(token, &salt)
        .expect("argon2's default parameters and a generated salt are valid")
        .to_string()
}

/// Why a registry entry's hash is not usable.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Not a PHC string.
    #[error("not a PHC string like $argon2id$v=19$m=19456,t=2,p=1$... ({0})")]
    Malformed(String),
    /// A PHC string of another algorithm.
    #[error("algorithm {0} is not argon2id")]
    Algorithm(String),
    /// Parameters beyond what the exporter will spend on one verification.
    #[error("parameters too costly to verify (at most m=262144 KiB, t=10, p=8)")]
    TooCostly,
}

/// A registry entry's verifier.
#[derive(Clone, PartialEq, Eq)]
enum Verifier {
    /// An argon2id PHC string, checked at parse time.
    Argon2(String),
    /// A legacy unsalted SHA-256.
    Sha256(Fingerprint),
}

/// Check that `phc` is an argon2id PHC string the exporter can afford to verify.
pub fn parse_hash(phc: &str) -> Result<String, HashError> {
    let parsed = PasswordHash::new(phc).map_err(|e| HashError::Malformed(e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(HashError::Algorithm(parsed.algorithm.as_str().to_owned()));
    }
    let params = argon2::Params::try_from(&parsed).map_err(|e| HashError::Malformed(e.to_string()))?;
    if params.m_cost() > 256 * 1024 || params.t_cost() > 10 || params.p_cost() > 8 {
        return Err(HashError::TooCostly);
    }
    Ok(phc.to_owned())
}

/// The HMAC key of this process: random, never stored, so a cache key means nothing outside it.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        key
    })
}

/// A token's identity in this process: HMAC-SHA256 under the process key. Equal for equal tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId([u8; 32]);

impl TokenId {
    /// The identity of `token`.
    pub fn of(token: &[u8]) -> TokenId {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(process_key()).expect("HMAC takes any key length");
        mac.update(token);
        TokenId(mac.finalize().into_bytes().into())
    }
}

/// A token as presented by a client: its identity, and the bytes until a registry has verified it.
#[derive(Clone)]
pub struct Presented {
    id: TokenId,
    token: Box<[u8]>,
}

impl Presented {
    /// The identity of the token.
    pub fn id(&self) -> TokenId {
        self.id
    }
}

impl PartialEq for Presented {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Presented {}

impl std::fmt::Debug for Presented {
    /// Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presented(<redacted>)")
    }
}

/// What credential a request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential at all.
    None,
    /// A token; not necessarily in the registry.
    Token(Presented),
    /// A credential in a form the gateway does not read (e.g. `Authorization: Basic`).
    Unreadable,
}

impl Credential {
    /// The credential of a presented `token`.
    pub fn token(token: &[u8]) -> Credential {
        Credential::Token(Presented { id: TokenId::of(token), token: token.into() })
    }
}

/// How many verified tokens the cache remembers: far more than a team has tokens, small in memory
/// (about 40 bytes an entry).
pub const CACHE_ENTRIES: usize = 4096;
/// First sights verified at once before the rate limit applies.
const VERIFY_BURST: f64 = 16.0;
/// First sights verified per second after the burst.
const VERIFY_PER_SECOND: f64 = 2.0;

/// Who waits for a verification: handed the revision's label value.
pub type Waiter = Box<dyn FnOnce(&str) + Send>;

/// One token for the verification thread.
struct Job {
    registry: Arc<Registry>,
    presented: Presented,
}

/// Jobs queued beyond this are refused (`unknown` once): twice the burst, so never within the budget.
const VERIFY_QUEUE: usize = 2 * VERIFY_BURST as usize;

/// The verification thread's queue, started on first use. One thread: the budget allows 2 first sights a
/// second after a burst of 16, and one verification takes 80-90 ms, so one thread keeps up with the budget
/// and argon2id's 19 MiB is held once. None when the thread cannot be started.
fn verifier_thread() -> Option<&'static SyncSender<Job>> {
    static THREAD: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(VERIFY_QUEUE);
            let started = std::thread::Builder::new().name("token-verify".into()).spawn(move || {
                crate::background::lower_this_thread();
                for job in rx {
                    let found = job.registry.verify(&job.presented.token);
                    job.registry.settle(job.presented.id, found, true);
                }
            });
            started.ok().map(|_| tx)
        })
        .as_ref()
}

/// A token bucket: `burst` at once, then `per_second`. Bounds how often a costly check of something never
/// seen before may run (here argon2id; the web server's bcrypt uses it too).
#[derive(Debug)]
pub struct Budget {
    burst: f64,
    per_second: f64,
    level: f64,
    refilled: Instant,
}

impl Budget {
    /// A full bucket.
    pub fn new(burst: f64, per_second: f64) -> Budget {
        Budget { burst, per_second, level: burst, refilled: Instant::now() }
    }

    /// Take one unit, if any is left.
    pub fn spend(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.level = (self.level + refill).min(self.burst);
        self.refilled = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Verified answers by token identity, and the budget of first sights.
struct Cache {
    revisions: HashMap<TokenId, Option<usize>>,
    /// Tokens on the verification thread, with everyone waiting for their answer.
    in_flight: HashMap<TokenId, Vec<Waiter>>,
    budget: Budget,
}

impl Cache {
    fn new() -> Self {
        Cache {
            revisions: HashMap::new(),
            in_flight: HashMap::new(),
            budget: Budget::new(VERIFY_BURST, VERIFY_PER_SECOND),
        }
    }

    /// Take one verification from the budget, if any is left.
    fn spend(&mut self) -> bool {
        self.budget.spend()
    }

    fn remember(&mut self, id: TokenId, revision: Option<usize>) {
        if self.revisions.len() >= CACHE_ENTRIES && !self.revisions.contains_key(&id) {
            // Any entry: a real token evicted is verified once more when next seen.
            if let Some(evict) = self.revisions.keys().next().copied() {
                self.revisions.remove(&evict);
            }
        }
        self.revisions.insert(id, revision);
    }
}

/// The configured revisions: names and verifiers, with the cache of verified tokens.
pub struct Registry {
    revisions: Vec<(String, Verifier)>,
    cache: Mutex<Cache>,
}

impl Clone for Registry {
    fn clone(&self) -> Self {
        Registry { revisions: self.revisions.clone(), cache: Mutex::new(Cache::new()) }
    }
}

impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.revisions == other.revisions
    }
}

impl Eq for Registry {}

impl Default for Registry {
    fn default() -> Self {
        Registry { revisions: Vec::new(), cache: Mutex::new(Cache::new()) }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("names", &self.names().collect::<Vec<_>>()).finish()
    }
}

/// Label value for a credential not in the registry.
pub const UNKNOWN: &str = "unknown";
/// Label value for a request without a credential.
pub const NONE: &str = "none";

impl Registry {
    /// An empty registry, to add revisions to.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a revision verified by an argon2id PHC string (checked by [`parse_hash`]).
    pub fn add_hashed(&mut self, name: String, phc: String) {
        self.revisions.push((name, Verifier::Argon2(phc)));
    }

    /// Add a revision verified by a legacy unsalted SHA-256.
    pub fn add_sha256(&mut self, name: String, fingerprint: Fingerprint) {
        self.revisions.push((name, Verifier::Sha256(fingerprint)));
    }

    /// The label value for `credential` when it is known without running argon2id: `none`, `unknown` for an
    /// unreadable credential, a cached answer, a legacy fingerprint, or `unknown` when no revision is hashed.
    /// `Err` hands back the token that needs a verification ([`Registry::resolve_later`]).
    pub fn lookup<'a>(&'a self, credential: &'a Credential) -> Result<&'a str, &'a Presented> {
        let presented = match credential {
            Credential::None => return Ok(NONE),
            Credential::Unreadable => return Ok(UNKNOWN),
            Credential::Token(presented) => presented,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = cache.revisions.get(&presented.id) {
            return Ok(self.name(*known));
        }
        let digest = sha256(&presented.token);
        let legacy = self.revisions.iter().position(|(_, v)| *v == Verifier::Sha256(digest));
        let costly = self.revisions.iter().any(|(_, verifier)| matches!(verifier, Verifier::Argon2(_)));
        if legacy.is_some() || !costly {
            cache.remember(presented.id, legacy);
            return Ok(self.name(legacy));
        }
        Err(presented)
    }

    /// Hand `then` the revision of `presented` once the verification thread has checked it (at once when the
    /// answer is already known). `budgeted`: a first sight spends the rate limit, and past it is `unknown`
    /// (a client's token); unbudgeted for the exporter's own token, checked once per change. `then` runs on
    /// the verification thread or the caller's: keep it short.
    pub fn resolve_later(self: &Arc<Self>, presented: &Presented, budgeted: bool, then: Waiter) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = cache.revisions.get(&presented.id).copied() {
            drop(cache);
            then(self.name(known));
            return;
        }
        if let Some(waiting) = cache.in_flight.get_mut(&presented.id) {
            waiting.push(then);
            return;
        }
        if budgeted && !cache.spend() {
            drop(cache);
            then(UNKNOWN);
            return;
        }
        cache.in_flight.insert(presented.id, vec![then]);
        drop(cache);
        let job = Job { registry: self.clone(), presented: presented.clone() };
        if verifier_thread().and_then(|thread| thread.try_send(job).ok()).is_none() {
            // The thread is gone or its queue full (cannot happen within the budget): unknown this once.
            self.settle(presented.id, None, false);
        }
    }

    /// The revision of `credential`, waiting for the verification thread when needed (never on the caller's
    /// thread). Unbudgeted: for the exporter's own token.
    pub async fn revision_of(self: &Arc<Self>, credential: &Credential) -> String {
        match self.lookup(credential) {
            Ok(name) => name.to_owned(),
            Err(presented) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.resolve_later(
                    presented,
                    false,
                    Box::new(move |name| {
                        let _ = tx.send(name.to_owned());
                    }),
                );
                rx.await.unwrap_or_else(|_| UNKNOWN.to_owned())
            }
        }
    }

    /// The name of a resolved index.
    fn name(&self, index: Option<usize>) -> &str {
        index.map_or(UNKNOWN, |index| &self.revisions[index].0)
    }

    /// Record the answer for `id` (when `remember`) and tell everyone waiting for it.
    fn settle(&self, id: TokenId, found: Option<usize>, remember: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if remember {
            cache.remember(id, found);
        }
        let waiting = cache.in_flight.remove(&id).unwrap_or_default();
        drop(cache);
        let name = self.name(found);
        for then in waiting {
            then(name);
        }
    }

    /// Check `token` against every revision: cheap legacy fingerprints first, then the slow hashes.
    fn verify(&self, token: &[u8]) -> Option<usize> {
        let digest = sha256(token);
        let legacy = self.revisions.iter().position(|(_, v)| *v == Verifier::Sha256(digest));
        legacy.or_else(|| {
            self.revisions.iter().position(|(_, verifier)| match verifier {
                Verifier::Argon2(phc) => {
                    PasswordHash::new(phc).is_ok_and(|parsed| argon2().verify_password(token, &parsed).is_ok())
                }
                Verifier::Sha256(_) => false,
            })
        })
    }

    /// The names in the registry.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.revisions.iter().map(|(name, _)| name.as_str())
    }

    /// The names of revisions still on a legacy unsalted fingerprint.
    pub fn legacy_names(&self) -> impl Iterator<Item = &str> {
        self.revisions.iter().filter(|(_, v)| matches!(v, Verifier::Sha256(_))).map(|(name, _)| name.as_str())
    }

    /// How many verified tokens the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).revisions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap hash for tests: the shape of a real entry at the smallest parameters.
    fn cheap_hash(token: &[u8]) -> String {
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon2.hash_password(token, &SaltString::generate(&mut OsRng)).unwrap().to_string()
    }

    /// The revision of `credential` as a tap sees it: at once, or from the verification thread (budgeted).
    fn resolved(registry: &Arc<Registry>, credential: &Credential) -> String {
        match registry.lookup(credential) {
            Ok(name) => name.to_owned(),
            Err(presented) => {
                let (tx, rx) = std::sync::mpsc::channel();
                registry.resolve_later(
                    presented,
                    true,
                    Box::new(move |name| {
                        let _ = tx.send(name.to_owned());
                    }),
                );
                rx.recv().expect("every waiter is answered")
            }
        }
    }

    #[test]
    fn hashed_and_legacy_revisions_resolve_and_others_are_unknown() {
        let mut registry = Registry::new();
        registry.add_sha256("r1".into(), sha256(b"secret-r1"));
        registry.add_hashed("r2".into(), parse_hash(&cheap_hash(b"secret-r2")).unwrap());
        let registry = Arc::new(registry);
        assert_eq!(resolved(&registry, &Credential::token(b"secret-r1")), "r1");
        assert_eq!(resolved(&registry, &Credential::token(b"secret-r2")), "r2");
        assert_eq!(resolved(&registry, &Credential::token(b"other")), "unknown");
        assert_eq!(resolved(&registry, &Credential::None), "none");
        assert_eq!(resolved(&registry, &Credential::Unreadable), "unknown");
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"ab".repeat(32)), Some([0xab; 32]));
    }

    #[test]
    fn the_same_hash_twice_differs_by_salt_and_the_phc_string_names_argon2id() {
        let (a, b) = (hash(b"short"), hash(b"short"));
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(parse_hash(&a).is_ok());
        assert!(matches!(
            parse_hash("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"),
            Err(HashError::Algorithm(_))
        ));
        assert!(matches!(parse_hash("sha256:abc"), Err(HashError::Malformed(_))));
        assert!(matches!(
            parse_hash("$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"),
            Err(HashError::TooCostly)
        ));
    }

    #[test]
    fn ten_thousand_distinct_tokens_keep_the_cache_bounded_and_the_budget_bounds_the_work() {
        let mut registry = Registry::new();
        registry.add_hashed("r1".into(), cheap_hash(b"real"));
        let registry = Arc::new(registry);
        assert_eq!(resolved(&registry, &Credential::token(b"real")), "r1");
        let started = Instant::now();
        for i in 0..10_000 {
            assert_eq!(resolved(&registry, &Credential::token(format!("flood-{i}").as_bytes())), "unknown");
        }
        // Within the budget only: the burst plus what the elapsed time refilled.
        let verified = registry.cached() as f64;
        let allowed = 1.0 + VERIFY_BURST + started.elapsed().as_secs_f64() * VERIFY_PER_SECOND + 1.0;
        assert!(verified <= allowed, "{verified} verifications, budget {allowed}");
        // The real token is still known without a verification (it was cached first).
        assert_eq!(resolved(&registry, &Credential::token(b"real")), "r1");

        // With legacy fingerprints only, every first sight is cheap and cached, and the cache stays bounded.
        let mut legacy = Registry::new();
        legacy.add_sha256("r1".into(), sha256(b"real"));
        let legacy = Arc::new(legacy);
        for i in 0..10_000 {
            resolved(&legacy, &Credential::token(format!("flood-{i}").as_bytes()));
        }
        assert_eq!(legacy.cached(), CACHE_ENTRIES);
        assert_eq!(resolved(&legacy, &Credential::token(b"real")), "r1");
    }

    #[test]
    fn argon2id_runs_on_the_verification_thread_once_for_many_sights_and_never_on_the_callers() {
        let mut registry = Registry::new();
        registry.add_hashed("r1".into(), cheap_hash(b"real"));
        let registry = Arc::new(registry);
        let credential = Credential::token(b"real");
        let Err(presented) = registry.lookup(&credential) else { panic!("a first sight is not known yet") };
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            registry.resolve_later(
                presented,
                true,
                Box::new(move |name| {
                    let thread = std::thread::current().name().map(str::to_owned);
                    let _ = tx.send((name.to_owned(), thread));
                }),
            );
        }
        for _ in 0..3 {
            let (name, thread) = rx.recv().unwrap();
            assert_eq!(name, "r1");
            // Either the verification thread, or (a sight after the answer landed) the caller's at once.
            assert!(
                thread.as_deref() == Some("token-verify") || thread == std::thread::current().name().map(str::to_owned)
            );
        }
        assert_eq!(registry.lookup(&credential).ok(), Some("r1"), "cached after one verification");
        // The budget was spent once for the three sights: one in flight, the others waited for it.
        assert!(registry.cache.lock().unwrap().budget.level >= VERIFY_BURST - 1.5);
    }

    #[test]
    fn a_token_never_appears_in_debug_output() {
        let credential = Credential::token(b"sekrit-token");
        assert!(!format!("{credential:?}").contains("sekrit"));
    }
}

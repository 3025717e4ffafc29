//! The uptime record's part of a forward's `/api/status` entry (the listener's owner, the SYN and round
//! counts, the gateway's last answer, the first byte's exact quantiles, time unobserved, the day's buckets,
//! the last wait for usable: the same keys, typed, as before the record was the kinds'), and of the state file
//! (`forwards`: each forward's buckets).

use std::collections::BTreeMap;

use probes::Label;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};

use super::ledger::{Bucket, Ledger};
use super::UptimeRecord;
use crate::record::families::ForwardLabels;
use crate::record::tracked::Tracked;

/// The state file's key for the buckets.
const SAVED_KEY: &str = "forwards";

/// A forward's uptime keys in its `/api/status` entry: written by the record, and read back whole by the page
/// rows of the kinds that keep it (`ForwardStatus::part`), so a key is named once, here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UptimeStatus {
    /// Its road to the gateway, and what a direct route's last round saw.
    #[serde(default)]
    pub route: Option<RouteStatus>,
    /// The listener's owner, once checked (an ssh forward's only).
    pub ssh_session: Option<SessionStatus>,
    /// The SYN probe's counts.
    pub syn: SynStatus,
    /// Tunnel rounds.
    pub rounds: RoundsStatus,
    /// The last first-byte probe's verdict, once probed.
    pub gateway_up: Option<bool>,
    /// The last first-byte probe, in words.
    pub last_first_byte: Option<String>,
    /// The last wake-to-usable observed: seconds from the first round after a gap to a good first byte.
    #[serde(default)]
    pub last_resume: Option<ResumeStatus>,
    /// Quantiles of successful first bytes.
    pub first_byte_seconds: Quantiles,
    /// Time no round could observe.
    pub unobserved_seconds: f64,
    /// Uptime of the last completed five-minute bucket.
    pub uptime_ratio_last_bucket: Option<f64>,
    /// The last day's buckets.
    pub buckets: Vec<Bucket>,
}

/// A forward's road, from the config, and what the last round of a direct route saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// `ssh`, `ws` or `wss`.
    pub transport: String,
    /// The local address (ssh) or the URL.
    pub address: String,
    /// How a `wss://` route verifies its certificate: `pin`, `ca_file` or `roots` (the built-in roots and the
    /// host name).
    #[serde(default)]
    pub verify: Option<String>,
    /// A pinned route's fingerprint.
    #[serde(default)]
    pub pinned: Option<String>,
    /// The last round of a direct route.
    #[serde(default)]
    pub last: Option<DirectStatus>,
}

impl RouteStatus {
    /// `forward`'s road as configured.
    pub fn of(forward: &crate::config::Forward) -> RouteStatus {
        use crate::config::{DirectRoute, RouteConfig, TlsVerify};
        let (verify, pinned) = match &forward.route {
            RouteConfig::Direct(DirectRoute { tls: Some(TlsVerify::Pin(pin)), .. }) => {
                (Some("pin"), Some(format!("sha256:{pin}")))
            }
            RouteConfig::Direct(DirectRoute { tls: Some(TlsVerify::Roots { ca_file: Some(_) }), .. }) => {
                (Some("ca_file"), None)
            }
            RouteConfig::Direct(DirectRoute { tls: Some(TlsVerify::Roots { ca_file: None }), .. }) => {
                (Some("roots"), None)
            }
            _ => (None, None),
        };
        RouteStatus {
            transport: forward.transport().label().to_owned(),
            address: forward.address(),
            verify: verify.map(str::to_owned),
            pinned,
            last: None,
        }
    }
}

/// What the last tunnel round of a direct route saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectStatus {
    /// `up`, or its down cause (`connect_failed`, `tls_failed`, `certificate_mismatch`), or `local_error`.
    pub state: String,
    /// The failure in words.
    #[serde(default)]
    pub detail: Option<String>,
    /// The certificate presented, for `wss://`.
    #[serde(default)]
    pub certificate: Option<CertificateStatus>,
}

impl DirectStatus {
    /// What `outcome` saw.
    pub fn of(outcome: &probes::direct::Outcome) -> DirectStatus {
        let certificate = |certificate: &probes::route::Certificate, verified: bool| CertificateStatus {
            sha256: certificate.sha256.to_string(),
            not_after: certificate.not_after,
            verified,
            pin_line: None,
        };
        match outcome {
            Ok(reached) => DirectStatus {
                state: "up".into(),
                detail: None,
                certificate: reached.tls.as_ref().map(|tls| certificate(&tls.certificate, true)),
            },
            Err(failure) => DirectStatus {
                state: failure.cause().unwrap_or("local_error").into(),
                detail: Some(failure.to_string()),
                certificate: failure.presented().map(|presented| certificate(presented, false)),
            },
        }
    }
}

/// A certificate a `wss://` route was shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Its SHA-256, 64 lower-case hex digits (OpenClaw's `tlsFingerprint` form).
    pub sha256: String,
    /// Its notAfter, Unix seconds.
    #[serde(default)]
    pub not_after: Option<i64>,
    /// Whether it verified (the pin, or a trusted chain and the host name).
    pub verified: bool,
    /// For a route that does not pin and whose certificate verified: the config line that pins it.
    #[serde(default)]
    pub pin_line: Option<String>,
}

/// The last wait from a gap's end (a wake, a stall) to a good first byte through the forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeStatus {
    /// Seconds waited.
    pub seconds: f64,
    /// When it was observed, Unix seconds.
    pub at: f64,
    /// False when no good first byte came within 600 s (observed then).
    pub usable: bool,
}

/// The owner of a forward's listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The state label (up, no_listener, not_ssh, unreadable, unsupported, unknown).
    pub state: String,
    /// The owner's pid, when found.
    pub pid: Option<u32>,
    /// The owner's command name.
    pub name: Option<String>,
    /// Its parent's pid.
    pub parent_pid: Option<u32>,
    /// Its parent's command name.
    pub parent_name: Option<String>,
    /// Who it runs as (`uid 501, this user`, `uid 65534, another user`), when found.
    #[serde(default)]
    pub user: Option<String>,
    /// It runs as the exporter's own user; `None` when that cannot be read.
    #[serde(default)]
    pub same_user: Option<bool>,
    /// Why no owner is named (unreadable: who holds the listener, by user name and uid; unknown; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When this user's WSL relay holds the listener: what the companion exporter inside WSL2 said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsl_companion: Option<CompanionStatus>,
}

/// What the companion exporter inside WSL2 said of the ssh behind WSL's relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompanionStatus {
    /// `vouches`, `ssh_down`, `unwatched`, `unreachable`, `not_configured`.
    pub said: String,
    /// The ssh's pid inside WSL2, when it vouches and names it.
    #[serde(default)]
    pub ssh_pid: Option<u32>,
    /// Why the relay's forward is not trusted, while it is not.
    #[serde(default)]
    pub why: Option<String>,
}

impl CompanionStatus {
    /// The companion's answer in `session`, when WSL's relay holds the listener.
    pub fn of(session: &probes::ssh_session::Outcome) -> Option<CompanionStatus> {
        use probes::ssh_session::wsl::Companion;
        let probes::ssh_session::Outcome::WslRelay { companion, .. } = session else { return None };
        let ssh_pid = match companion {
            Companion::Vouches { ssh_pid } => *ssh_pid,
            _ => None,
        };
        Some(CompanionStatus { said: companion.label().to_owned(), ssh_pid, why: companion.why_not() })
    }
}

/// SYN probe counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SynStatus {
    /// Connects tried.
    pub attempts: u64,
    /// Connects that connected.
    pub successes: u64,
    /// Whether the last one did.
    pub last_ok: Option<bool>,
}

/// Tunnel round counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoundsStatus {
    /// Rounds observed.
    pub checks: u64,
    /// Rounds up.
    pub up: u64,
}

/// Exact quantiles of first-byte times, seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Quantiles {
    /// How many samples.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Quantiles {
    /// The quantiles of `micros` (first-byte times in microseconds), in seconds: one walk of its counts up to
    /// p99 and its recorded maximum, the same values as `value_at_quantile` of each (four walks of the counts
    /// were a tenth of a status report's CPU with 100 forwards: `perf record` under wrk on `/api/status`).
    fn of(micros: &hdrhistogram::Histogram<u32>) -> Quantiles {
        if micros.is_empty() {
            return Quantiles { count: 0, p50: None, p90: None, p99: None, max: None };
        }
        let mut walked = micros.value_at_quantiles([0.5, 0.9, 0.99]).map(|micros| Some(micros as f64 / 1e6));
        let (p50, p90, p99) = (walked.next().flatten(), walked.next().flatten(), walked.next().flatten());
        Quantiles { count: micros.len(), p50, p90, p99, max: Some(micros.max() as f64 / 1e6) }
    }
}

/// A route that does not pin, whose last certificate verified, shows the line that would pin it (never for a
/// certificate that did not verify: that would pin an impostor).
fn with_pin_line(mut route: RouteStatus) -> RouteStatus {
    let pinned = route.verify.as_deref() == Some("pin");
    if let Some(certificate) = route.last.as_mut().and_then(|last| last.certificate.as_mut()) {
        if certificate.verified && !pinned {
            certificate.pin_line = Some(format!("tls_fingerprint = \"sha256:{}\"", certificate.sha256));
        }
    }
    route
}

fn count(family: &Tracked<ForwardLabels, Counter>, forward: &str) -> u64 {
    family.get(&ForwardLabels { forward: forward.to_owned() }).map_or(0, |c| c.get())
}

impl UptimeRecord {
    /// `forward`'s keys at `now` (Unix seconds). The lock, which every round takes, is held only to copy its
    /// last outcomes, its first-byte histogram and its buckets; quantiles and metric reads come after.
    pub(super) fn status_of(&self, forward: &str, now: f64) -> serde_json::Map<String, serde_json::Value> {
        let Some((route, session, last_syn_ok, last_first_byte, last_resume, first_byte_us, buckets, last_ratio)) =
            self.states().get(forward).map(|state| {
                let mut route = state.route.clone();
                if let Some(route) = &mut route {
                    route.last = state.last_direct.clone();
                }
                (
                    route,
                    state.session.clone(),
                    state.last_syn_ok,
                    state.last_first_byte.clone(),
                    state.last_resume.clone(),
                    state.first_byte_us.clone(),
                    state.ledger.buckets().cloned().collect::<Vec<_>>(),
                    state.ledger.last_completed_ratio(now),
                )
            })
        else {
            return serde_json::Map::new();
        };
        let m = &self.families;
        let labels = ForwardLabels { forward: forward.to_owned() };
        let status = UptimeStatus {
            route: route.map(with_pin_line),
            ssh_session: session.as_ref().map(|session| {
                let owner = session.owner();
                SessionStatus {
                    state: session.label().to_owned(),
                    pid: owner.map(|o| o.pid),
                    name: owner.map(|o| o.name.clone()),
                    parent_pid: owner.map(|o| o.parent_pid),
                    parent_name: owner.and_then(|o| o.parent_name.clone()),
                    user: owner.map(|o| o.user()),
                    same_user: owner.and_then(|o| o.same_user),
                    detail: session.detail().map(str::to_owned),
                    wsl_companion: CompanionStatus::of(session),
                }
            }),
            syn: SynStatus {
                attempts: count(&m.syn_attempts, forward),
                successes: count(&m.syn_successes, forward),
                last_ok: last_syn_ok,
            },
            rounds: RoundsStatus { checks: count(&m.up_checks, forward), up: count(&m.up_successes, forward) },
            gateway_up: m.gateway_up.get(&labels).map(|g| g.get() == 1),
            last_first_byte,
            last_resume,
            first_byte_seconds: Quantiles::of(&first_byte_us),
            unobserved_seconds: m.unobserved_seconds.get(&labels).map_or(0.0, |c| c.get()),
            uptime_ratio_last_bucket: last_ratio,
            // The open bucket's quantiles so far, so /api/status carries them for every bucket.
            buckets: buckets
                .into_iter()
                .map(|mut bucket| {
                    if let Some((p50, p99)) = bucket.first_byte_quantiles() {
                        bucket.first_byte_p50 = Some(p50);
                        bucket.first_byte_p99 = Some(p99);
                    }
                    bucket
                })
                .collect(),
        };
        match serde_json::to_value(status) {
            Ok(serde_json::Value::Object(keys)) => keys,
            _ => serde_json::Map::new(),
        }
    }

    /// The state file's `forwards`: every forward's buckets.
    pub(super) fn saved_buckets(&self) -> serde_json::Map<String, serde_json::Value> {
        let saved: BTreeMap<String, Vec<Bucket>> = self
            .states()
            .iter()
            .map(|(name, state)| (name.clone(), state.ledger.buckets().cloned().collect()))
            .collect();
        let value = serde_json::to_value(saved).unwrap_or_default();
        serde_json::Map::from_iter([(SAVED_KEY.to_owned(), value)])
    }

    /// Take back the buckets of the state file's `forwards`. A bucket whose start is beyond year 9999 is
    /// damage: dropped, the rest kept; a `forwards` that is not a map of bucket lists is skipped whole.
    pub(super) fn restore_buckets(&self, saved: &serde_json::Map<String, serde_json::Value>) {
        let Some(value) = saved.get(SAVED_KEY) else { return };
        let forwards = match BTreeMap::<String, Vec<Bucket>>::deserialize(value) {
            Ok(forwards) => forwards,
            Err(err) => {
                tracing::warn!(problem = %err, "the state file's uptime buckets are damaged; starting without them");
                return;
            }
        };
        let restored = forwards.len();
        for (name, buckets) in forwards {
            let (kept, absurd): (Vec<Bucket>, Vec<Bucket>) =
                buckets.into_iter().partition(|b| crate::clock::plausible_unix_seconds(b.start as f64));
            if !absurd.is_empty() {
                tracing::warn!(forward = %name, buckets = absurd.len(), "the state file holds buckets with impossible start times; ignored");
            }
            self.with_forward(&name, |state| state.ledger = Ledger::from_buckets(kept));
        }
        tracing::info!(forwards = restored, "restored the uptime buckets");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one walk gives what `value_at_quantile` gives for each quantile, whatever was recorded (a value
    /// beyond the initial range, one sample, many equal ones).
    #[test]
    fn one_walk_gives_each_quantile_value_at_quantile_gives() {
        let mut seed: u64 = 0x5eed;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        for samples in [1, 2, 7, 100, 301, 5000] {
            let mut micros = hdrhistogram::Histogram::<u32>::new(3).unwrap();
            for _ in 0..samples {
                let value = match next() % 10 {
                    0 => 1 + next() % 100_000_000,
                    1..=3 => 1500,
                    _ => 1 + next() % 30_000,
                };
                micros.record(value).unwrap();
            }
            let quantiles = Quantiles::of(&micros);
            let each = |q: f64| Some(micros.value_at_quantile(q) as f64 / 1e6);
            assert_eq!(quantiles.count, samples);
            assert_eq!(
                (quantiles.p50, quantiles.p90, quantiles.p99, quantiles.max),
                (each(0.5), each(0.9), each(0.99), each(1.0)),
                "{samples} samples"
            );
        }
        let empty = Quantiles::of(&hdrhistogram::Histogram::<u32>::new(3).unwrap());
        assert_eq!((empty.count, empty.p50, empty.max), (0, None, None));
    }
}

//! The status report: what `/api/status` serves and the status page renders, one typed value for both.

use std::time::SystemTime;

use probes::Label;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};

use super::auth::failure_series;
use super::families::ForwardLabels;
use super::Recorder;
use crate::clock::unix_seconds;
use crate::uptime::Bucket;

/// Everything the status page shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The exporter's version.
    pub version: String,
    /// When the report was made, Unix seconds.
    pub now: f64,
    /// Per forward, by name.
    pub forwards: Vec<ForwardStatus>,
    /// What happened, newest first (the last 24 h, bounded).
    #[serde(default)]
    pub timeline: Vec<super::timeline::Event>,
    /// The status of the kinds that keep their own and belongs to no forward, each under its keys.
    #[serde(flatten)]
    pub kinds: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One forward.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardStatus {
    /// Its name.
    pub forward: String,
    /// The listener's owner, once checked.
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
    /// The last connect the gateway refused, with its reason and the docs' fix.
    #[serde(default)]
    pub last_refusal: Option<RefusalStatus>,
    /// Quantiles of successful first bytes.
    pub first_byte_seconds: Quantiles,
    /// Time no round could observe.
    pub unobserved_seconds: f64,
    /// Uptime of the last completed five-minute bucket.
    pub uptime_ratio_last_bucket: Option<f64>,
    /// The last day's buckets.
    pub buckets: Vec<Bucket>,
    /// Auth failures seen, by revision, channel and code.
    pub auth_failures: Vec<AuthFailureStatus>,
    /// The status of the kinds that keep their own ([`super::kinds::KindRecord`]), each under its key.
    #[serde(flatten)]
    pub kinds: std::collections::BTreeMap<String, serde_json::Value>,
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

/// A connect the gateway refused: why (the `reason` label), whose connect, when, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalStatus {
    /// The `reason` label: token_missing, token_mismatch, device_token_mismatch, scope_mismatch,
    /// pairing_required, rate_limited, protocol_mismatch, starting, other.
    pub reason: String,
    /// The `channel` label: ws (the CLI's own connect, through the auth tap) or probe (the handshake probe).
    pub channel: String,
    /// When, as Unix seconds.
    pub at: f64,
    /// What the gateway's troubleshooting docs say to do.
    pub fix: String,
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
}

/// SYN probe counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynStatus {
    /// Connects tried.
    pub attempts: u64,
    /// Connects that connected.
    pub successes: u64,
    /// Whether the last one did.
    pub last_ok: Option<bool>,
}

/// Tunnel round counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundsStatus {
    /// Rounds observed.
    pub checks: u64,
    /// Rounds up.
    pub up: u64,
}

/// Exact quantiles of first-byte times, seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Auth failures of one revision, channel and code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthFailureStatus {
    /// `http`, `ws` or `probe`.
    pub channel: String,
    /// `401`, `403` or `429`.
    pub code: String,
    /// The revision's name, `unknown` or `none`.
    pub token_revision: String,
    /// How many.
    pub count: u64,
    /// Whether it is the current revision.
    pub current: bool,
}

fn count(family: &Family<ForwardLabels, Counter>, forward: &str) -> u64 {
    family.get(&ForwardLabels { forward: forward.to_owned() }).map_or(0, |c| c.get())
}

/// What the report needs of one forward's state, copied under the forwards' lock.
struct ForwardSnapshot {
    name: String,
    session: Option<probes::ssh_session::Outcome>,
    last_syn_ok: Option<bool>,
    last_first_byte: Option<String>,
    last_refusal: Option<RefusalStatus>,
    last_resume: Option<ResumeStatus>,
    first_byte_us: hdrhistogram::Histogram<u32>,
    buckets: Vec<crate::uptime::Bucket>,
    uptime_ratio_last_bucket: Option<f64>,
}

impl Recorder {
    /// The status report at `now`. The recorder's locks, which every probe round takes, are held only to copy
    /// the few values the report needs (the index's label values; per forward its last outcomes, its
    /// first-byte histogram and its buckets); quantiles, metric reads and the report are built after.
    pub fn status(&self, now: SystemTime) -> StatusReport {
        let m = &self.metrics;
        let index = self.index().clone();
        let mut snapshots: Vec<ForwardSnapshot> = {
            let forwards = self.forwards();
            forwards
                .iter()
                .map(|(name, state)| ForwardSnapshot {
                    name: name.clone(),
                    session: state.session.clone(),
                    last_syn_ok: state.last_syn_ok,
                    last_first_byte: state.last_first_byte.clone(),
                    last_refusal: state.last_refusal.clone(),
                    last_resume: state.last_resume.clone(),
                    first_byte_us: state.first_byte_us.clone(),
                    buckets: state.ledger.buckets().cloned().collect(),
                    uptime_ratio_last_bucket: state.ledger.last_completed_ratio(unix_seconds(now)),
                })
                .collect()
        };
        snapshots.sort_by(|a, b| a.name.cmp(&b.name));
        let forwards = snapshots
            .into_iter()
            .map(|state| {
                let name = &state.name;
                let labels = ForwardLabels { forward: name.clone() };
                let quantile = |q: f64| {
                    (!state.first_byte_us.is_empty()).then(|| state.first_byte_us.value_at_quantile(q) as f64 / 1e6)
                };
                let auth_failures = failure_series(&index.auth_channels, &index.revisions)
                    .filter(|labels| labels.forward == *name)
                    .filter_map(|labels| {
                        let count = m.auth_failures.get(&labels).map_or(0, |c| c.get());
                        (count > 0).then(|| AuthFailureStatus {
                            channel: labels.channel.to_owned(),
                            code: labels.code.to_owned(),
                            current: index.current_revision.as_deref() == Some(labels.token_revision.as_str()),
                            token_revision: labels.token_revision,
                            count,
                        })
                    })
                    .collect();
                ForwardStatus {
                    forward: name.clone(),
                    ssh_session: state.session.as_ref().map(|session| {
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
                        }
                    }),
                    syn: SynStatus {
                        attempts: count(&m.syn_attempts, name),
                        successes: count(&m.syn_successes, name),
                        last_ok: state.last_syn_ok,
                    },
                    rounds: RoundsStatus { checks: count(&m.up_checks, name), up: count(&m.up_successes, name) },
                    gateway_up: m.gateway_up.get(&labels).map(|g| g.get() == 1),
                    last_first_byte: state.last_first_byte.clone(),
                    last_refusal: state.last_refusal.clone(),
                    last_resume: state.last_resume.clone(),
                    first_byte_seconds: Quantiles {
                        count: state.first_byte_us.len(),
                        p50: quantile(0.5),
                        p90: quantile(0.9),
                        p99: quantile(0.99),
                        max: quantile(1.0),
                    },
                    unobserved_seconds: m.unobserved_seconds.get(&labels).map_or(0.0, |c| c.get()),
                    uptime_ratio_last_bucket: state.uptime_ratio_last_bucket,
                    // The open bucket's quantiles so far, so /api/status carries them for every bucket.
                    buckets: state
                        .buckets
                        .into_iter()
                        .map(|mut bucket| {
                            if let Some((p50, p99)) = bucket.first_byte_quantiles() {
                                bucket.first_byte_p50 = Some(p50);
                                bucket.first_byte_p99 = Some(p99);
                            }
                            bucket
                        })
                        .collect(),
                    auth_failures,
                    kinds: self.kind_records.forward_status(name),
                }
            })
            .collect();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            now: unix_seconds(now),
            forwards,
            timeline: self.timeline().newest_first(),
            kinds: self.kind_records.report_status(),
        }
    }
}

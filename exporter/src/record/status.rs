//! The status report: what `/api/status` serves and the status page renders, one typed value for both.

use std::time::SystemTime;

use probes::Label;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};

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
    /// Quantiles of successful first bytes.
    pub first_byte_seconds: Quantiles,
    /// Time no round could observe.
    pub unobserved_seconds: f64,
    /// Uptime of the last completed five-minute bucket.
    pub uptime_ratio_last_bucket: Option<f64>,
    /// The last day's buckets.
    pub buckets: Vec<Bucket>,
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

fn count(family: &Family<ForwardLabels, Counter>, forward: &str) -> u64 {
    family.get(&ForwardLabels { forward: forward.to_owned() }).map_or(0, |c| c.get())
}

/// What the report needs of one forward's state, copied under the forwards' lock.
struct ForwardSnapshot {
    name: String,
    session: Option<probes::ssh_session::Outcome>,
    last_syn_ok: Option<bool>,
    last_first_byte: Option<String>,
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
        let mut snapshots: Vec<ForwardSnapshot> = {
            let forwards = self.forwards();
            forwards
                .iter()
                .map(|(name, state)| ForwardSnapshot {
                    name: name.clone(),
                    session: state.session.clone(),
                    last_syn_ok: state.last_syn_ok,
                    last_first_byte: state.last_first_byte.clone(),
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

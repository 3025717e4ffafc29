//! The status report: what `/api/status` serves and the status page renders, one value for both: the
//! exporter's version and time, each forward's entry (its name and every kind's keys), the timeline, and the
//! kinds' keys that belong to no forward. The kinds read their keys back typed ([`ForwardStatus::get`]).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Recorder;
use crate::clock::unix_seconds;

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
    /// The kinds' status that belongs to no forward, each under its keys.
    #[serde(flatten)]
    pub kinds: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One forward: its name, and each kind's keys (its record's [`super::kinds::KindRecord::forward_status`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardStatus {
    /// Its name.
    pub forward: String,
    /// The status of every kind, each under its keys.
    #[serde(flatten)]
    pub kinds: std::collections::BTreeMap<String, serde_json::Value>,
}

impl ForwardStatus {
    /// The value under `key`, read as a `T` (none when the key is absent or holds something else).
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.kinds.get(key).and_then(|value| T::deserialize(value).ok())
    }
}

impl Recorder {
    /// The status report at `now`: an entry for each forward the configuration has or a kind's record keeps,
    /// in name order, each with every record's keys; the timeline; the records' keys that belong to no
    /// forward. Each record holds its own lock only to copy what it reports.
    pub fn status(&self, now: SystemTime) -> StatusReport {
        let at = unix_seconds(now);
        let mut names = self.kind_records.forwards();
        names.extend(super::kinds::lock(&self.configured).iter().cloned());
        let forwards = names
            .into_iter()
            .map(|forward| {
                let kinds = self.kind_records.forward_status(&forward, at);
                ForwardStatus { forward, kinds }
            })
            .collect();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            now: at,
            forwards,
            timeline: self.timeline().newest_first(),
            kinds: self.kind_records.report_status(),
        }
    }
}

//! The status report: what `/api/status` serves and the status page renders, one value for both: the
//! exporter's version and time, each forward's entry (its name and every kind's keys), the timeline, and the
//! kinds' keys that belong to no forward. The kinds read their keys back typed ([`ForwardStatus::part`]).

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
    /// The kinds' typed parts, each read once ([`ForwardStatus::part`]).
    #[serde(skip)]
    parts: Parts,
}

/// The typed parts read from a forward's keys so far, by type: a page's rows share one read.
#[derive(Default)]
struct Parts(std::sync::Mutex<Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>>);

impl Clone for Parts {
    /// A copy reads its parts afresh.
    fn clone(&self) -> Self {
        Parts::default()
    }
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parts")
    }
}

impl ForwardStatus {
    /// A forward's entry: its name and every kind's keys.
    pub fn new(forward: String, kinds: std::collections::BTreeMap<String, serde_json::Value>) -> ForwardStatus {
        ForwardStatus { forward, kinds, parts: Parts::default() }
    }

    /// A kind's whole typed status, read from the keys its type names (the type the kind's record writes them
    /// from, its missing keys at their defaults), once per entry: every page row of the kind shares the read.
    pub fn part<T>(&self) -> std::sync::Arc<T>
    where
        T: serde::de::DeserializeOwned + Default + Send + Sync + 'static,
    {
        let mut parts = self.parts.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(part) = parts.iter().find_map(|part| part.clone().downcast::<T>().ok()) {
            return part;
        }
        let entries = self.kinds.iter().map(|(key, value)| (key.as_str(), value));
        let read = T::deserialize(serde::de::value::MapDeserializer::<_, serde_json::Error>::new(entries));
        let part = std::sync::Arc::new(read.unwrap_or_default());
        parts.push(part.clone());
        part
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
                ForwardStatus::new(forward, kinds)
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

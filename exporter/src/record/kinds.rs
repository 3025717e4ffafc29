//! What a kind keeps itself: its families and its part of a forward's status, declared in its own file in
//! [`crate::kinds`] as a [`KindRecord`] whose constructor its kind's entry in `kinds::KINDS` holds. The recorder is built
//! with that list: it registers each record's families once (so they outlive reloads, as every family does),
//! prunes their series of subjects a reload removed, and puts each record's status into the forwards'
//! `/api/status` entries (or at its top) and its keys into the state file, all without naming the kind. Every
//! kind keeps one (the uptime KPI's two kinds, tunnel and first byte, keep one together: the ledger joins them).

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::registry::Registry;

use super::families::Subjects;

/// A kind's own families and per-forward status.
pub trait KindRecord: Any + Send + Sync {
    /// What a new configuration sets directly: its subjects' series at zero (before a round runs).
    fn apply_config(&self, config: &crate::config::Config) {
        let _ = config;
    }
    /// Remove the series of subjects (forwards, ...) `subjects` does not keep, as a reload does for every
    /// family.
    fn retain_subjects(&self, subjects: &Subjects);
    /// What else a reload ends for the subjects `subjects` no longer keeps, after their series went (the state
    /// it keeps of them; `recorder` for their open spells on the timeline).
    fn subjects_removed(&self, recorder: &super::Recorder, subjects: &Subjects) {
        let _ = (recorder, subjects);
    }
    /// The forwards it keeps state of: the status report has an entry for each forward some record names.
    fn forwards(&self) -> Vec<String> {
        Vec::new()
    }
    /// Its status for `forward` at `now` (Unix seconds): its keys in the forward's `/api/status` entry and their
    /// values (a key with null when it knows nothing yet, if the report has always carried that key).
    fn forward_status(&self, forward: &str, now: f64) -> serde_json::Map<String, serde_json::Value> {
        let _ = (forward, now);
        serde_json::Map::new()
    }
    /// What it brings up to `now` (Unix seconds) before its series are read (a gauge of the last completed
    /// bucket): called before every scrape and every remote-write round.
    fn before_encode(&self, now: f64) {
        let _ = now;
    }
    /// What it keeps across a restart: its keys in the state file and their values.
    fn save(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
    /// Take back what a state file holds under its keys (a key it does not know is not its: ignore it);
    /// `recorder` for what the restore reopens there (a timeline spell). A damaged value is logged and skipped.
    fn restore(&self, recorder: &super::Recorder, saved: &serde_json::Map<String, serde_json::Value>) {
        let _ = (recorder, saved);
    }
    /// Its status that belongs to no forward: its keys at the top of `/api/status`.
    fn report_status(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

/// A record's lock, taken even after a panic elsewhere poisoned it: what it guards (last outcomes, names) is
/// whole after every write, and a status page that stops rendering would be worse than a stale line.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A kind's record built and its families registered in the recorder's registry.
pub type NewKindRecord = fn(&mut Registry) -> Arc<dyn KindRecord>;

/// The records of the kinds the recorder was built with.
#[derive(Default)]
pub(crate) struct KindRecords {
    records: Vec<Arc<dyn KindRecord>>,
}

impl KindRecords {
    /// Build each of `records`, registering its families in `registry`.
    pub(crate) fn register(records: &[NewKindRecord], registry: &mut Registry) -> KindRecords {
        KindRecords { records: records.iter().map(|new| new(registry)).collect() }
    }

    /// The record of type `T`, when the recorder was built with it.
    pub(crate) fn get<T: KindRecord>(&self) -> Option<Arc<T>> {
        self.records.iter().find_map(|record| {
            let any: Arc<dyn Any + Send + Sync> = record.clone();
            any.downcast::<T>().ok()
        })
    }

    /// Every record's series of `config`'s subjects at zero.
    pub(crate) fn apply_config(&self, config: &crate::config::Config) {
        for record in &self.records {
            record.apply_config(config);
        }
    }

    /// Every record's series and state pruned to `subjects`.
    pub(crate) fn retain_subjects(&self, recorder: &super::Recorder, subjects: &Subjects) {
        for record in &self.records {
            record.retain_subjects(subjects);
            record.subjects_removed(recorder, subjects);
        }
    }

    /// Every forward some record keeps state of, by name.
    pub(crate) fn forwards(&self) -> std::collections::BTreeSet<String> {
        self.records.iter().flat_map(|record| record.forwards()).collect()
    }

    /// Every record brought up to `now` before its series are read.
    pub(crate) fn before_encode(&self, now: f64) {
        for record in &self.records {
            record.before_encode(now);
        }
    }

    /// What every record keeps across a restart, by key.
    pub(crate) fn save(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.records.iter().flat_map(|record| record.save()).collect()
    }

    /// Each record takes back its keys of a state file.
    pub(crate) fn restore(&self, recorder: &super::Recorder, saved: &serde_json::Map<String, serde_json::Value>) {
        for record in &self.records {
            record.restore(recorder, saved);
        }
    }

    /// Every record's status that belongs to no forward, by key.
    pub(crate) fn report_status(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.records.iter().flat_map(|record| record.report_status()).collect()
    }

    /// Every record's status for `forward` at `now`, by key.
    pub(crate) fn forward_status(
        &self,
        forward: &str,
        now: f64,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.records.iter().flat_map(|record| record.forward_status(forward, now)).collect()
    }
}

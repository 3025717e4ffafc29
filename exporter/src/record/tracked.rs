//! A metric family that remembers its label sets, so a reload can remove every series of a forward, model
//! host, gateway or revision the new config no longer has. prometheus-client's `Family` can remove a label set
//! it is given but cannot list them; this keeps the list beside it, updated only when a new label set is first
//! created (a probe round that records into an existing series costs one extra lookup, no allocation).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::family::{Family, MetricConstructor};

/// A `Family` and the label sets it holds.
pub struct Tracked<S, M, C = fn() -> M> {
    family: Family<S, M, C>,
    keys: Arc<Mutex<HashSet<S>>>,
}

impl<S: Clone + Hash + Eq, M: Default> Default for Tracked<S, M> {
    fn default() -> Self {
        Tracked { family: Family::default(), keys: Arc::default() }
    }
}

impl<S, M, C: Clone> Clone for Tracked<S, M, C> {
    fn clone(&self) -> Self {
        Tracked { family: self.family.clone(), keys: self.keys.clone() }
    }
}

/// Reading (`get`, `contains`) goes to the family; creating and removing go through [`Tracked`]'s own methods.
impl<S, M, C> std::ops::Deref for Tracked<S, M, C> {
    type Target = Family<S, M, C>;

    fn deref(&self) -> &Self::Target {
        &self.family
    }
}

impl<S: Clone + Hash + Eq, M, C: MetricConstructor<M>> Tracked<S, M, C> {
    /// A family whose metrics `constructor` builds (histograms with their buckets).
    pub fn new_with_constructor(constructor: C) -> Self {
        Tracked { family: Family::new_with_constructor(constructor), keys: Arc::default() }
    }

    /// The family, to register.
    pub fn family(&self) -> &Family<S, M, C> {
        &self.family
    }

    /// The metric of `labels`, created (and remembered) on first use.
    pub fn get_or_create(&self, labels: &S) -> impl std::ops::Deref<Target = M> + '_ {
        self.remember(labels);
        self.family.get_or_create(labels)
    }

    /// As [`Tracked::get_or_create`], returning a handle.
    pub fn get_or_create_owned(&self, labels: &S) -> M
    where
        M: Clone,
    {
        self.remember(labels);
        self.family.get_or_create_owned(labels)
    }

    /// Remove the series of `labels`; whether it existed.
    pub fn remove(&self, labels: &S) -> bool {
        self.keys().remove(labels);
        self.family.remove(labels)
    }

    /// Remove every series.
    pub fn clear(&self) {
        self.keys().clear();
        self.family.clear();
    }

    /// Keep only the series whose label set `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&S) -> bool) {
        self.keys().retain(|labels| {
            let kept = keep(labels);
            if !kept {
                self.family.remove(labels);
            }
            kept
        });
    }

    fn remember(&self, labels: &S) {
        if self.family.get(labels).is_none() {
            self.keys().insert(labels.clone());
        }
    }

    fn keys(&self) -> MutexGuard<'_, HashSet<S>> {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn retain_removes_only_the_series_it_rejects_and_a_new_one_is_tracked_again() {
        let family: Tracked<(String, u8), Counter> = Tracked::default();
        family.get_or_create(&("a".into(), 1)).inc();
        family.get_or_create(&("b".into(), 1)).inc();
        family.get_or_create(&("b".into(), 2)).inc();
        family.retain(|(name, _)| name == "a");
        assert!(family.get(&("a".into(), 1)).is_some());
        assert!(family.get(&("b".into(), 1)).is_none() && family.get(&("b".into(), 2)).is_none());
        assert_eq!(family.get_or_create(&("b".into(), 1)).get(), 0, "a series that comes back starts from zero");
        family.retain(|_| false);
        assert!(family.get(&("a".into(), 1)).is_none() && family.get(&("b".into(), 1)).is_none());
        assert!(family.keys().is_empty());
    }
}

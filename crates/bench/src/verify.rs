//! The exact check every load test, the demo and the test suites end with: the sink
//! holds every item of the primary at the primary's version, and nothing else. Compared
//! item by item at rest (no change in flight), independently of the product's online
//! drift detection (`tsunagu reconcile`, [`tsunagu_engine::drift`]), so that it can judge
//! it.

use serde::Serialize;
use std::collections::BTreeMap;
use tsunagu_domain::{ItemKey, Version};
use tsunagu_runtime::{Embedded, Runtime, SinkHandle};

/// Differences between the primary and an index, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Items in the primary.
    pub checked: u64,
    /// In the primary, not in the index.
    pub missing: Vec<ItemKey>,
    /// In the index, not in the primary.
    pub extra: Vec<ItemKey>,
    /// In both, with another version in the index.
    pub stale: Vec<ItemKey>,
}

impl Drift {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.stale.is_empty()
    }
}

/// Compares an embedded index with the embedded primary, item by item (at rest).
pub async fn index_drift(
    embedded: &Embedded,
    index: &tsunagu_embedded_index::ActivityIndex,
) -> anyhow::Result<Drift> {
    let primary: BTreeMap<ItemKey, Version> =
        embedded.store.versions().await?.into_iter().collect();
    let indexed: BTreeMap<ItemKey, Version> = index.live_versions()?.into_iter().collect();
    Ok(compare(&primary, &indexed))
}

/// What differs between the primary's items and a sink's, both with their versions.
pub fn compare(
    primary: &BTreeMap<ItemKey, Version>,
    indexed: &BTreeMap<ItemKey, Version>,
) -> Drift {
    Drift {
        checked: primary.len() as u64,
        missing: primary
            .keys()
            .filter(|k| !indexed.contains_key(*k))
            .cloned()
            .collect(),
        extra: indexed
            .keys()
            .filter(|k| !primary.contains_key(*k))
            .cloned()
            .collect(),
        stale: primary
            .iter()
            .filter(|(k, v)| indexed.get(*k).is_some_and(|iv| iv != *v))
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// Compares every item's version in the primary with the sink's, on any deployment.
pub async fn drift(runtime: &Runtime, sink: &SinkHandle) -> anyhow::Result<Drift> {
    let primary: BTreeMap<ItemKey, Version> =
        runtime.primary_versions().await?.into_iter().collect();
    let held: BTreeMap<ItemKey, Version> = sink.live_versions().await?.into_iter().collect();
    Ok(compare(&primary, &held))
}

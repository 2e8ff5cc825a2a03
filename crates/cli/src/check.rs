//! Does the index hold exactly what the primary holds? Compares every item's version.

use crate::app::Embedded;
use serde::Serialize;
use std::collections::BTreeMap;
use tsunagu_domain::{ItemKey, Version};
use tsunagu_embedded_index::ActivityIndex;

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

pub async fn index_drift(embedded: &Embedded, index: &ActivityIndex) -> anyhow::Result<Drift> {
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

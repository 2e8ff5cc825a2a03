//! Helpers shared by the integration tests: a config on a temporary directory, writing
//! sample activities, waiting until an index equals the primary, closing an index.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_bench::sample::Sample;
use tsunagu_bench::verify::index_drift;
use tsunagu_domain::{Entity, ItemKey};
use tsunagu_embedded_index::ActivityIndex;
use tsunagu_embedded_store::{Condition, EmbeddedStore, WriteOp};
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Embedded;

pub const BIN: &str = env!("CARGO_BIN_EXE_tsunagu");

/// The embedded defaults on `dir`, plus `extra` TOML.
pub fn config(dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        "version = 1\ndata_dir = {:?}\n{extra}",
        dir.display().to_string()
    );
    Config::parse(&text, "test").unwrap()
}

/// Writes `n` new sample activities in requests of 200; returns their keys.
pub async fn write_activities(
    store: &EmbeddedStore,
    sample: &mut Sample,
    n: usize,
) -> Vec<ItemKey> {
    let activities: Vec<_> = (0..n).map(|_| sample.activity()).collect();
    let ops: Vec<WriteOp> = activities
        .iter()
        .map(|a| WriteOp::Put {
            key: a.key(),
            body: Entity::ActivityLog(a.clone()).to_json(),
            condition: Condition::None,
        })
        .collect();
    for chunk in ops.chunks(200) {
        for result in store.write_many(chunk.to_vec()).await.unwrap() {
            result.unwrap();
        }
    }
    activities.iter().map(|a| a.key()).collect()
}

/// Writes `n` new sample activities (ids prefixed with `prefix`), then edits every 5th and
/// deletes every 7th of them, in requests of 100. Returns their keys.
pub async fn write_mixed(
    store: &EmbeddedStore,
    sample: &mut Sample,
    prefix: &str,
    n: usize,
) -> Vec<ItemKey> {
    let activities: Vec<_> = (0..n)
        .map(|_| {
            let mut a = sample.activity();
            a.id = format!("{prefix}{}", a.id);
            a
        })
        .collect();
    let mut ops: Vec<WriteOp> = activities
        .iter()
        .map(|a| WriteOp::Put {
            key: a.key(),
            body: Entity::ActivityLog(a.clone()).to_json(),
            condition: Condition::None,
        })
        .collect();
    for a in activities.iter().step_by(5) {
        ops.push(WriteOp::Put {
            key: a.key(),
            body: Entity::ActivityLog(sample.edit(a.clone())).to_json(),
            condition: Condition::Exists,
        });
    }
    for a in activities.iter().skip(2).step_by(7) {
        ops.push(WriteOp::Delete {
            key: a.key(),
            condition: Condition::None,
        });
    }
    for chunk in ops.chunks(100) {
        for result in store.write_many(chunk.to_vec()).await.unwrap() {
            result.unwrap();
        }
    }
    activities.iter().map(|a| a.key()).collect()
}

/// Waits until the index holds exactly the primary's items and versions.
pub async fn wait_in_sync(embedded: &Embedded, index: &ActivityIndex, timeout: Duration) {
    let start = Instant::now();
    loop {
        let drift = index_drift(embedded, index).await.unwrap();
        if drift.is_clean() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "index not in sync after {timeout:?}: {} missing, {} extra, {} stale",
            drift.missing.len(),
            drift.extra.len(),
            drift.stale.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drops every handle on an index and waits until its writer lock is released.
pub async fn close_index(mut index: Arc<ActivityIndex>) {
    let start = Instant::now();
    loop {
        match Arc::try_unwrap(index) {
            Ok(index) => return index.close().await,
            Err(still_shared) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "index still in use"
                );
                index = still_shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

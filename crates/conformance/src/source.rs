//! Conformance checks of a change stream ([`ChangeSource`]) fed by a primary store
//! ([`ItemStore`]): the store's writes must come out of the source exactly once, in
//! order, with the versions the store reported.
//!
//! Writes go under partition keys starting with `prefix`; records of other keys (earlier
//! runs on a shared stream) are ignored.

use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};
use tsunagu_domain::{ChangeKind, ChangeRecord, ItemKey, Position, ShardId, Version};
use tsunagu_engine::ports::{ChangeSource, Condition, ItemStore, ReadFrom, WriteOp};

/// One change the store reported.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    kind: ChangeKind,
    /// For a REMOVE, the deletion's version.
    version: Option<Version>,
}

/// Runs every check: writes a mix of creates, updates, deletes and re-creates over
/// several partitions, then reads every shard and checks what came out.
pub async fn check_all<S, C>(store: &S, source: &C, prefix: &str)
where
    S: ItemStore + ?Sized,
    C: ChangeSource + ?Sized,
{
    let expected = write_history(store, prefix).await;
    let shards_before = shard_ids(source).await;
    let per_shard = read_until_complete(source, prefix, &expected).await;
    every_change_once_in_one_shard(&per_shard, &expected, prefix);
    per_item_commit_order(&per_shard, &expected, prefix);
    removes_carry_a_newer_version(&per_shard, prefix);
    positions_never_repeat(&per_shard);
    after_resumes_exactly_after(source, &per_shard).await;
    latest_position_is_the_newest(source, &per_shard).await;
    assert_eq!(
        shard_ids(source).await,
        shards_before,
        "shards() must be stable while nothing splits or merges"
    );
}

async fn shard_ids<C: ChangeSource + ?Sized>(source: &C) -> BTreeSet<ShardId> {
    source
        .shards()
        .await
        .expect("shards()")
        .into_iter()
        .map(|s| s.id)
        .collect()
}

/// Writes the history and returns, per item, the changes in commit order.
async fn write_history<S: ItemStore + ?Sized>(
    store: &S,
    prefix: &str,
) -> BTreeMap<ItemKey, Vec<Expected>> {
    let mut expected: BTreeMap<ItemKey, Vec<Expected>> = BTreeMap::new();
    let mut ops = Vec::new();
    for p in 0..6 {
        for s in 0..3 {
            let key = ItemKey::new(format!("{prefix}-deal-{p}"), format!("activity#{s}"));
            ops.push(WriteOp::Put {
                key: key.clone(),
                body: json!({"step": 0}),
                condition: Condition::NotExists,
            });
            ops.push(WriteOp::Put {
                key: key.clone(),
                body: json!({"step": 1}),
                condition: Condition::Exists,
            });
            if (p + s) % 3 == 0 {
                ops.push(WriteOp::Delete {
                    key: key.clone(),
                    condition: Condition::Exists,
                });
                ops.push(WriteOp::Put {
                    key: key.clone(),
                    body: json!({"step": 2}),
                    condition: Condition::NotExists,
                });
            }
            // The same body again: no change, no record.
            ops.push(WriteOp::Put {
                key,
                body: json!({"step": 9}),
                condition: Condition::None,
            });
        }
    }
    for op in ops {
        let key = op.key().clone();
        let outcome = store.write(op).await.expect("write");
        if let Some(kind) = outcome.change {
            expected.entry(key).or_default().push(Expected {
                kind,
                version: outcome.version,
            });
        }
    }
    expected
}

/// Reads every shard from the trim horizon, page by page, until every expected change of
/// `prefix` was seen (or 30 s pass).
async fn read_until_complete<C: ChangeSource + ?Sized>(
    source: &C,
    prefix: &str,
    expected: &BTreeMap<ItemKey, Vec<Expected>>,
) -> BTreeMap<ShardId, Vec<ChangeRecord>> {
    let want: usize = expected.values().map(Vec::len).sum();
    let mut per_shard: BTreeMap<ShardId, Vec<ChangeRecord>> = BTreeMap::new();
    let mut from: HashMap<ShardId, ReadFrom> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for shard in source.shards().await.expect("shards()") {
            let start = from
                .entry(shard.id.clone())
                .or_insert(ReadFrom::TrimHorizon);
            loop {
                // A small limit, so that paging is exercised.
                let batch = source
                    .read(&shard.id, start, 7, Duration::from_millis(50))
                    .await
                    .unwrap_or_else(|e| panic!("read of shard {}: {e}", shard.id));
                let Some(last) = batch.records.last() else {
                    break;
                };
                *start = ReadFrom::After(last.position.clone());
                for record in batch.records {
                    assert_eq!(
                        record.shard, shard.id,
                        "a record names the shard it was read from"
                    );
                    if record.key.partition.starts_with(&format!("{prefix}-")) {
                        per_shard.entry(shard.id.clone()).or_default().push(record);
                    }
                }
                if batch.end_of_shard {
                    break;
                }
            }
        }
        let seen: usize = per_shard.values().map(Vec::len).sum();
        if seen >= want || Instant::now() > deadline {
            return per_shard;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn every_change_once_in_one_shard(
    per_shard: &BTreeMap<ShardId, Vec<ChangeRecord>>,
    expected: &BTreeMap<ItemKey, Vec<Expected>>,
    prefix: &str,
) {
    let mut shard_of_partition: HashMap<&str, &ShardId> = HashMap::new();
    let mut count = 0;
    for (shard, records) in per_shard {
        for record in records {
            count += 1;
            let first = shard_of_partition
                .entry(record.key.partition.as_str())
                .or_insert(shard);
            assert_eq!(
                *first, shard,
                "every change of partition {} must be in one shard",
                record.key.partition
            );
        }
    }
    let want: usize = expected.values().map(Vec::len).sum();
    assert_eq!(
        count, want,
        "every committed change of {prefix} must appear exactly once (no-op writes none)"
    );
}

fn per_item_commit_order(
    per_shard: &BTreeMap<ShardId, Vec<ChangeRecord>>,
    expected: &BTreeMap<ItemKey, Vec<Expected>>,
    prefix: &str,
) {
    let mut got: BTreeMap<&ItemKey, Vec<Expected>> = BTreeMap::new();
    for record in per_shard.values().flatten() {
        got.entry(&record.key).or_default().push(Expected {
            kind: record.kind,
            version: Some(record.version),
        });
    }
    for (key, changes) in expected {
        assert_eq!(
            got.get(key),
            Some(changes),
            "{prefix}: the changes of {key} must come in commit order with the versions the store reported"
        );
    }
}

fn removes_carry_a_newer_version(per_shard: &BTreeMap<ShardId, Vec<ChangeRecord>>, prefix: &str) {
    let mut last: HashMap<&ItemKey, Version> = HashMap::new();
    let mut removes = 0;
    for record in per_shard.values().flatten() {
        if let Some(previous) = last.get(&record.key) {
            assert!(
                record.version > *previous,
                "{}: version {} after {previous} must be greater",
                record.key,
                record.version
            );
        }
        last.insert(&record.key, record.version);
        match record.kind {
            ChangeKind::Remove => {
                removes += 1;
                let old = record
                    .old_image
                    .as_ref()
                    .expect("a REMOVE carries the deleted item as its old image");
                assert!(
                    record.version > old.version,
                    "a REMOVE's version must exceed the deleted image's"
                );
                assert!(record.new_image.is_none(), "a REMOVE has no new image");
            }
            _ => {
                let new = record
                    .new_image
                    .as_ref()
                    .expect("an INSERT or MODIFY carries its new image");
                assert_eq!(
                    new.version, record.version,
                    "the new image has the record's version"
                );
                assert!(
                    new.body.is_object(),
                    "the new image's body is the item's JSON object"
                );
            }
        }
        if record.kind == ChangeKind::Insert {
            assert!(record.old_image.is_none(), "an INSERT has no old image");
        }
        if record.kind == ChangeKind::Modify {
            assert!(record.old_image.is_some(), "a MODIFY carries its old image");
        }
        assert!(
            record.committed_at_us > 0,
            "a record carries its commit time"
        );
    }
    assert!(removes > 0, "{prefix}: the history has deletes");
}

fn positions_never_repeat(per_shard: &BTreeMap<ShardId, Vec<ChangeRecord>>) {
    for (shard, records) in per_shard {
        let mut seen = HashSet::new();
        for record in records {
            assert!(
                seen.insert(&record.position),
                "position {} came twice in shard {shard}",
                record.position
            );
        }
    }
}

/// Reading after a position returns exactly the records after it (and never it).
async fn after_resumes_exactly_after<C: ChangeSource + ?Sized>(
    source: &C,
    per_shard: &BTreeMap<ShardId, Vec<ChangeRecord>>,
) {
    for (shard, records) in per_shard {
        if records.len() < 3 {
            continue;
        }
        let ours: HashSet<&Position> = records.iter().map(|r| &r.position).collect();
        let middle = records.len() / 2;
        let from = ReadFrom::After(records[middle].position.clone());
        let mut got: Vec<ChangeRecord> = Vec::new();
        let mut cursor = from.clone();
        while got.len() < records.len() - middle - 1 {
            let batch = source
                .read(shard, &cursor, 5, Duration::from_millis(50))
                .await
                .expect("read after");
            let Some(last) = batch.records.last() else {
                break;
            };
            cursor = ReadFrom::After(last.position.clone());
            assert!(
                batch
                    .records
                    .iter()
                    .all(|r| r.position != records[middle].position),
                "a read after {} must not return it",
                records[middle].position
            );
            got.extend(
                batch
                    .records
                    .into_iter()
                    .filter(|r| ours.contains(&r.position)),
            );
        }
        let want: Vec<&Position> = records[middle + 1..].iter().map(|r| &r.position).collect();
        let got: Vec<&Position> = got.iter().map(|r| &r.position).take(want.len()).collect();
        assert_eq!(
            got, want,
            "After(p) in shard {shard} must resume exactly after p"
        );
    }
}

async fn latest_position_is_the_newest<C: ChangeSource + ?Sized>(
    source: &C,
    per_shard: &BTreeMap<ShardId, Vec<ChangeRecord>>,
) {
    for shard in source.shards().await.expect("shards()") {
        let latest = source
            .latest_position(&shard.id)
            .await
            .expect("latest_position");
        let Some(records) = per_shard.get(&shard.id) else {
            continue;
        };
        let latest = latest.unwrap_or_else(|| {
            panic!(
                "shard {} has records, so it has a latest position",
                shard.id
            )
        });
        // Nothing after the latest position.
        let after = source
            .read(
                &shard.id,
                &ReadFrom::After(latest.clone()),
                10,
                Duration::from_millis(50),
            )
            .await
            .expect("read after latest");
        assert!(
            after.records.is_empty(),
            "nothing may follow latest_position {latest} in shard {}",
            shard.id
        );
        if let Some(last) = records.last() {
            if latest != last.position {
                let later = source
                    .read(
                        &shard.id,
                        &ReadFrom::After(last.position.clone()),
                        1_000,
                        Duration::from_millis(50),
                    )
                    .await
                    .expect("read after the last record");
                assert!(
                    later.records.iter().any(|r| r.position == latest),
                    "latest_position {latest} of shard {} must be its newest record",
                    shard.id
                );
            }
        }
    }
}

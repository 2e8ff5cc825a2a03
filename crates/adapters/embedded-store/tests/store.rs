//! The embedded store against its contracts: conditional writes, change records written
//! with the data, sharding, waking readers, retention, several processes, state.

use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use tsunagu_domain::{ChangeKind, ItemKey, Position, ShardId};
use tsunagu_embedded_store::{Condition, EmbeddedState, EmbeddedStore, StoreError, StoreOptions};
use tsunagu_engine::ports::{
    ChangeSource, CheckpointStore, DeadLetter, DeadLetterQueue, ReadFrom, SourceError,
};

fn open(dir: &tempfile::TempDir, shards: u32) -> EmbeddedStore {
    EmbeddedStore::open(
        &dir.path().join("primary.db"),
        StoreOptions {
            shard_count: shards,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

async fn all_records(store: &EmbeddedStore) -> Vec<tsunagu_domain::ChangeRecord> {
    let mut all = Vec::new();
    for shard in store.shards().await.unwrap() {
        let batch = store
            .read(&shard.id, &ReadFrom::TrimHorizon, 10_000, Duration::ZERO)
            .await
            .unwrap();
        all.extend(batch.records);
    }
    all.sort_by_key(|r| r.version);
    all
}

#[tokio::test]
async fn writes_append_change_records_with_images_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 4);
    let key = ItemKey::new("deal-1", "activity#1");
    let created = store
        .put(
            key.clone(),
            json!({"memo": "初回訪問"}),
            Condition::NotExists,
        )
        .await
        .unwrap();
    assert_eq!(created.change, Some(ChangeKind::Insert));
    let v1 = created.version.unwrap();
    let updated = store
        .put(
            key.clone(),
            json!({"memo": "再訪問"}),
            Condition::VersionIs(v1),
        )
        .await
        .unwrap();
    let v2 = updated.version.unwrap();
    assert!(v2 > v1);
    let removed = store
        .delete(key.clone(), Condition::VersionIs(v2))
        .await
        .unwrap();
    assert_eq!(removed.change, Some(ChangeKind::Remove));

    let records = all_records(&store).await;
    let kinds: Vec<_> = records.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [ChangeKind::Insert, ChangeKind::Modify, ChangeKind::Remove]
    );
    assert_eq!(
        records[0].new_image.as_ref().unwrap().body,
        json!({"memo": "初回訪問"})
    );
    assert!(records[0].old_image.is_none());
    assert_eq!(records[1].old_image.as_ref().unwrap().version, v1);
    assert_eq!(records[1].new_image.as_ref().unwrap().version, v2);
    assert_eq!(
        records[2].old_image.as_ref().unwrap().body,
        json!({"memo": "再訪問"})
    );
    assert!(records[2].new_image.is_none());
    assert!(
        records[2].version > v2,
        "a delete has its own, newer version"
    );
    let shard = key.shard_index(4).to_string();
    assert!(records.iter().all(|r| r.shard == ShardId(shard.clone())));

    // Re-created after the delete: the version keeps growing.
    let again = store
        .put(key.clone(), json!({"memo": "復活"}), Condition::NotExists)
        .await
        .unwrap();
    assert!(again.version.unwrap() > records[2].version);
}

#[tokio::test]
async fn a_losing_conditional_write_gets_a_conflict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 2);
    let key = ItemKey::new("deal-1", "activity#1");
    let v1 = store
        .put(key.clone(), json!({"n": 1}), Condition::None)
        .await
        .unwrap()
        .version
        .unwrap();
    store
        .put(key.clone(), json!({"n": 2}), Condition::VersionIs(v1))
        .await
        .unwrap();
    let stale = store
        .put(key.clone(), json!({"n": 3}), Condition::VersionIs(v1))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { found: Some(_), .. })),
        "{stale:?}"
    );
    let dup = store
        .put(key.clone(), json!({"n": 4}), Condition::NotExists)
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })));
    let missing = store
        .delete(ItemKey::new("deal-9", "x"), Condition::Exists)
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::Conflict { found: None, .. })
    ));
    assert_eq!(
        store.get(&key).await.unwrap().unwrap().body,
        json!({"n": 2})
    );
    assert_eq!(all_records(&store).await.len(), 2);
}

#[tokio::test]
async fn a_write_that_changes_nothing_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1);
    let key = ItemKey::new("d", "a");
    let first = store
        .put(key.clone(), json!({"a": 1, "b": [1, 2]}), Condition::None)
        .await
        .unwrap();
    let same = store
        .put(key.clone(), json!({"b": [1, 2], "a": 1}), Condition::None)
        .await
        .unwrap();
    assert_eq!(same.change, None);
    assert_eq!(same.version, first.version);
    let gone = store
        .delete(ItemKey::new("d", "never"), Condition::None)
        .await
        .unwrap();
    assert_eq!(gone.change, None);
    assert_eq!(all_records(&store).await.len(), 1);
}

#[tokio::test]
async fn bad_writes_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1);
    let err = store
        .put(ItemKey::new("", "a"), json!({}), Condition::None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must not be empty"), "{err}");
    let err = store
        .put(ItemKey::new("d", "a"), json!([1]), Condition::None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_group_committed_with_distinct_increasing_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 4);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut versions = Vec::new();
            for i in 0..100 {
                let key = ItemKey::new(format!("deal-{}", i % 10), format!("w{w}-{i}"));
                versions.push(
                    store
                        .put(key, json!({"i": i}), Condition::NotExists)
                        .await
                        .unwrap()
                        .version
                        .unwrap(),
                );
            }
            versions
        });
    }
    let mut all = HashSet::new();
    while let Some(versions) = tasks.join_next().await {
        let versions = versions.unwrap();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "each writer sees its versions grow"
        );
        all.extend(versions);
    }
    assert_eq!(all.len(), 800);
    assert_eq!(store.item_count().await.unwrap(), 800);
    let records = all_records(&store).await;
    assert_eq!(records.len(), 800);
    for r in &records {
        assert_eq!(
            r.shard.0,
            r.key.shard_index(4).to_string(),
            "sharded by partition key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_reader_wakes_up_as_soon_as_a_record_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let batch = store
                .read(
                    &ShardId("0".into()),
                    &ReadFrom::TrimHorizon,
                    10,
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            (batch.records.len(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    store
        .put(ItemKey::new("d", "a"), json!({}), Condition::None)
        .await
        .unwrap();
    let (n, waited) = reader.await.unwrap();
    assert_eq!(n, 1);
    assert!(
        waited < Duration::from_secs(4),
        "woken by the commit, not by the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_opener_of_the_same_file_reads_what_the_first_writes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(&dir, 2);
    let reader = open(&dir, 2);
    let key = ItemKey::new("deal-7", "a");
    writer
        .put(key.clone(), json!({"x": 1}), Condition::None)
        .await
        .unwrap();
    let shard = ShardId(key.shard_index(2).to_string());
    let batch = reader
        .read(&shard, &ReadFrom::TrimHorizon, 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(batch.records.len(), 1);
    assert_eq!(
        reader.get(&key).await.unwrap().unwrap().body,
        json!({"x": 1})
    );
    // The shard count is fixed when the store is created.
    let err = EmbeddedStore::open(
        &dir.path().join("primary.db"),
        StoreOptions {
            shard_count: 3,
            ..StoreOptions::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("cannot change"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_trimmed_and_a_reader_behind_them_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(
        &dir.path().join("primary.db"),
        StoreOptions {
            shard_count: 1,
            retention: Duration::from_millis(200),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    for i in 0..5 {
        store
            .put(
                ItemKey::new("d", format!("{i}")),
                json!({}),
                Condition::None,
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .put(ItemKey::new("d", "fresh"), json!({}), Condition::None)
        .await
        .unwrap();
    assert_eq!(store.trim_expired().await.unwrap(), 5);
    let shard = ShardId("0".into());
    let behind = store
        .read(
            &shard,
            &ReadFrom::After(Position("2".into())),
            10,
            Duration::ZERO,
        )
        .await;
    assert!(
        matches!(behind, Err(SourceError::Trimmed { .. })),
        "{behind:?}"
    );
    let caught_up = store
        .read(
            &shard,
            &ReadFrom::After(Position("5".into())),
            10,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(caught_up.records.len(), 1);
    // Items themselves are never trimmed.
    assert_eq!(store.item_count().await.unwrap(), 6);
}

#[tokio::test]
async fn checkpoints_and_dead_letters_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = open(&dir, 1);
    store
        .put(
            ItemKey::new("d", "a"),
            json!({"memo": "壊れた"}),
            Condition::None,
        )
        .await
        .unwrap();
    let record = all_records(&store).await.remove(0);
    {
        let state = EmbeddedState::open(&path).unwrap();
        state
            .save("search", &ShardId("0".into()), &Position("41".into()))
            .await
            .unwrap();
        state
            .save("search", &ShardId("0".into()), &Position("42".into()))
            .await
            .unwrap();
        let id = state
            .push(DeadLetter {
                id: 0,
                consumer: "search".into(),
                record: record.clone(),
                error: "mapping error".into(),
                attempts: 4,
                failed_at_us: 1,
            })
            .await
            .unwrap();
        assert_eq!(id, 1);
    }
    let state = EmbeddedState::open(&path).unwrap();
    let cps = state.load("search").await.unwrap();
    assert_eq!(cps.get(&ShardId("0".into())), Some(&Position("42".into())));
    assert!(state.load("other").await.unwrap().is_empty());
    let letters = state.list(Some("search"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].record, record, "the whole record is kept");
    assert_eq!(letters[0].attempts, 4);
    assert_eq!(state.count("search").await.unwrap(), 1);
    assert!(state.remove(1).await.unwrap());
    assert_eq!(state.count("search").await.unwrap(), 0);
}

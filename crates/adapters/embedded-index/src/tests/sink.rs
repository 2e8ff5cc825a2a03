//! The `Sink` contract: version guard, tombstones, per-record failures, group commit,
//! rollback of a failed commit, durability across reopen, read-only handles.

use super::*;
use crate::{ActivityIndexReader, ActivityQuery, IndexError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tsunagu_engine::ports::{Sink, SinkError};

fn memo_of(index: &ActivityIndex, key: &ItemKey) -> Option<(u64, String)> {
    index
        .get(key)
        .expect("get")
        .map(|(version, a)| (version.0, a.memo))
}

#[tokio::test]
async fn stale_and_equal_versions_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open(dir.path());
    let mut a = activity("a1", "d1");
    a.memo = "v5".into();
    index.apply(&[upsert(&a, 5)]).await.expect("apply v5");

    a.memo = "v3 stale".into();
    index
        .apply(&[upsert(&a, 3)])
        .await
        .expect("stale is a no-op success");
    a.memo = "v5 again, other body".into();
    index
        .apply(&[upsert(&a, 5)])
        .await
        .expect("equal is a no-op success");
    assert_eq!(memo_of(&index, &a.key()), Some((5, "v5".into())));

    a.memo = "v6".into();
    index.apply(&[upsert(&a, 6)]).await.expect("newer applies");
    assert_eq!(memo_of(&index, &a.key()), Some((6, "v6".into())));
    assert_eq!(index.live_versions().expect("versions").len(), 1);
}

#[tokio::test]
async fn a_delete_leaves_a_tombstone_that_stale_inserts_cannot_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key;
    {
        let index = open(dir.path());
        let a = activity("a1", "d1");
        key = a.key();
        index
            .apply(&[upsert(&a, 1), upsert(&a, 2), remove(&key, 3)])
            .await
            .expect("apply");
        assert_eq!(index.get(&key).expect("get"), None);
        // A replayed INSERT older than the deletion does not resurrect the item.
        index.apply(&[upsert(&a, 2)]).await.expect("stale insert");
        assert_eq!(index.get(&key).expect("get"), None);
        assert!(index.live_versions().expect("versions").is_empty());
        assert_eq!(
            index
                .search(&ActivityQuery::default())
                .expect("search")
                .total,
            0
        );
        index.close().await;
    }
    // The tombstone is durable: a reopened index still refuses the stale insert...
    let index = open(dir.path());
    let mut a = activity("a1", "d1");
    index
        .apply(&[upsert(&a, 3)])
        .await
        .expect("stale insert after reopen");
    assert_eq!(index.get(&key).expect("get"), None);
    // ...and accepts a re-creation with a newer version.
    a.memo = "back".into();
    index.apply(&[upsert(&a, 4)]).await.expect("re-create");
    assert_eq!(memo_of(&index, &key), Some((4, "back".into())));
    let versions = index.live_versions().expect("versions");
    assert_eq!(versions, HashMap::from([(key, Version(4))]));
}

#[tokio::test]
async fn a_bad_record_fails_alone_and_the_rest_of_the_batch_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open(dir.path());
    let good1 = activity("a1", "d1");
    let good2 = activity("a2", "d1");
    let mut body = Entity::ActivityLog(activity("a3", "d1")).to_json();
    body["action"] = serde_json::json!("fax");
    let bad_body = record(
        activity("a3", "d1").key(),
        ChangeKind::Insert,
        1,
        Some(body),
    );
    let no_image = record(activity("a4", "d1").key(), ChangeKind::Modify, 1, None);

    let err = index
        .apply(&[upsert(&good1, 1), bad_body, upsert(&good2, 1), no_image])
        .await
        .expect_err("two records fail");
    let SinkError::Records(failures) = err else {
        panic!("expected per-record failures, got {err:?}");
    };
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].index, 1);
    assert!(!failures[0].retryable);
    assert!(
        failures[0].message.contains("action"),
        "{}",
        failures[0].message
    );
    assert_eq!(failures[1].index, 3);
    assert!(
        failures[1].message.contains("new_image"),
        "{}",
        failures[1].message
    );

    let versions = index.live_versions().expect("versions");
    assert_eq!(versions.len(), 2);
    assert!(versions.contains_key(&good1.key()) && versions.contains_key(&good2.key()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_are_all_visible_when_apply_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for lane in 0..8 {
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..10 {
                let records: Vec<_> = (0..5)
                    .map(|i| {
                        upsert(
                            &activity(&format!("a{lane}-{batch}-{i}"), &format!("d{lane}")),
                            1,
                        )
                    })
                    .collect();
                index.apply(&records).await.expect("apply");
                // Visible as soon as apply returns: the last record of this batch is found.
                let key = activity(&format!("a{lane}-{batch}-4"), &format!("d{lane}")).key();
                assert!(index.get(&key).expect("get").is_some(), "{key} not visible");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(index.live_versions().expect("versions").len(), 8 * 10 * 5);
    let total = index
        .search(&ActivityQuery::default())
        .expect("search")
        .total;
    assert_eq!(total, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_batches_share_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Arc::new(open(dir.path()));
    let commits_before = index.hooks.commits.load(Ordering::SeqCst);
    let received_before = index.hooks.received.load(Ordering::SeqCst);
    let pause = index.hooks.pause.lock().expect("pause");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            index
                .apply(&[upsert(&activity(&format!("a{i}"), "d1"), 1)])
                .await
        }));
    }
    // Wait until the writer holds the first request and the other 19 are queued (19
    // queued alone could also be 19 sent and one not yet sent, nothing received).
    let sender = index.requests.clone().expect("sender");
    // (A blocking wait: the tasks run on the runtime's workers, and the lock must not be
    // held across an await.)
    while index.hooks.received.load(Ordering::SeqCst) == received_before
        || sender.max_capacity() - sender.capacity() < 19
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(pause);
    for task in tasks {
        task.await.expect("task").expect("apply");
    }
    assert_eq!(
        index.hooks.commits.load(Ordering::SeqCst),
        commits_before + 1
    );
    assert_eq!(index.live_versions().expect("versions").len(), 20);
}

#[tokio::test]
async fn a_failed_commit_is_retryable_and_rolled_back_completely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open(dir.path());
    let mut a = activity("a1", "d1");
    a.memo = "v1".into();
    index.apply(&[upsert(&a, 1)]).await.expect("v1");

    index.hooks.fail_commits.store(1, Ordering::SeqCst);
    a.memo = "v2".into();
    let b = activity("b1", "d1");
    let err = index
        .apply(&[upsert(&a, 2), upsert(&b, 1)])
        .await
        .expect_err("injected failure");
    assert!(
        matches!(
            err,
            SinkError::Batch {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing of the group is visible, and the version map forgot it too...
    assert_eq!(memo_of(&index, &a.key()), Some((1, "v1".into())));
    assert_eq!(index.get(&b.key()).expect("get"), None);
    // ...so the retry really applies (it is not mistaken for a stale replay).
    index
        .apply(&[upsert(&a, 2), upsert(&b, 1)])
        .await
        .expect("retry");
    assert_eq!(memo_of(&index, &a.key()), Some((2, "v2".into())));
    assert!(index.get(&b.key()).expect("get").is_some());
}

#[tokio::test]
async fn expired_tombstones_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = ActivityIndex::open(
        dir.path(),
        IndexOptions {
            tombstone_retention: std::time::Duration::ZERO,
            ..options()
        },
    )
    .expect("open");
    let a = activity("a1", "d1");
    // The first group purges (nothing yet), the delete writes a tombstone.
    index
        .apply(&[upsert(&a, 1), remove(&a.key(), 2)])
        .await
        .expect("apply");
    index.close().await;
    // A new writer purges at its first group: with zero retention the tombstone goes, and
    // (as documented) a stale insert is then accepted again.
    let index = ActivityIndex::open(
        dir.path(),
        IndexOptions {
            tombstone_retention: std::time::Duration::ZERO,
            ..options()
        },
    )
    .expect("reopen");
    index.apply(&[upsert(&a, 1)]).await.expect("apply");
    assert_eq!(
        index.get(&a.key()).expect("get").map(|(v, _)| v),
        Some(Version(1))
    );
}

#[tokio::test]
async fn read_only_handles_see_the_writers_durable_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = ActivityIndexReader::open(&dir.path().join("missing")).err();
    assert!(matches!(err, Some(IndexError::NoIndex { .. })), "{err:?}");
    let err = ActivityIndex::open_read_only(dir.path()).err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(message.contains("run `tsunagu replicate`"), "{message}");

    let index = open(dir.path());
    // A second writer is refused with a clear error while the first holds the lock.
    let err = ActivityIndex::open(dir.path(), options()).err();
    assert!(matches!(err, Some(IndexError::Locked { .. })), "{err:?}");

    let reader = ActivityIndex::open_read_only(dir.path()).expect("read-only");
    assert_eq!(
        reader
            .search(&ActivityQuery::default())
            .expect("search")
            .total,
        0
    );
    let a = activity("a1", "d1");
    index.apply(&[upsert(&a, 7)]).await.expect("apply");
    // Another process sees the index as of its last durable point.
    index.flush().await.expect("flush");
    // No reopen needed: the read-only handle reloads before each query.
    assert_eq!(
        reader
            .search(&ActivityQuery::default())
            .expect("search")
            .total,
        1
    );
    assert_eq!(
        reader.get(&a.key()).expect("get").map(|(v, _)| v),
        Some(Version(7))
    );
    assert_eq!(
        reader.live_versions().expect("versions"),
        index.live_versions().expect("versions")
    );
    index.close().await;

    // After close, a new writer opens and sees the committed state.
    let index = open(dir.path());
    assert_eq!(index.get(&a.key()).expect("get").map(|(_, a)| a), Some(a));
}

/// Copies an index directory as a crash would leave it to a restarted process: what is on
/// disk, nothing held in this process's memory.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".lock") {
            continue;
        }
        std::fs::copy(entry.path(), to.join(name)).expect("copy");
    }
}

/// An index whose only durable points are explicit flushes (the interval is an hour), so
/// a test controls what a kill would lose.
fn open_without_durable_points(dir: &Path) -> ActivityIndex {
    ActivityIndex::open(
        dir,
        IndexOptions {
            durability_interval: std::time::Duration::from_secs(3600),
            ..options()
        },
    )
    .expect("open")
}

#[tokio::test]
async fn commits_are_visible_at_once_and_durable_only_at_a_durable_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open_without_durable_points(dir.path());
    let a = activity("a1", "d1");
    let b = activity("b1", "d1");
    index.apply(&[upsert(&a, 1)]).await.expect("apply a");
    assert!(
        index.visible_mark() > index.durable_mark(),
        "visible before durable"
    );
    index.flush().await.expect("flush");
    assert_eq!(index.durable_mark(), index.visible_mark());

    index.apply(&[upsert(&b, 2)]).await.expect("apply b");
    assert!(
        index.get(&b.key()).expect("get").is_some(),
        "b is searchable"
    );
    assert!(
        index.visible_mark() > index.durable_mark(),
        "b is not durable yet"
    );

    // A crash now restarts from the durable point: a, not b (the engine replays b, as
    // its checkpoint never passed b's mark).
    let crashed = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), crashed.path());
    let after_crash = open(crashed.path());
    assert!(after_crash.get(&a.key()).expect("get").is_some());
    assert!(after_crash.get(&b.key()).expect("get").is_none());
    after_crash.close().await;

    // A clean close makes everything durable.
    index.close().await;
    let reopened = open(dir.path());
    assert!(reopened.get(&b.key()).expect("get").is_some());
    reopened.close().await;
}

#[tokio::test]
async fn merged_away_segments_stay_on_disk_until_a_durable_meta_stops_needing_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = ActivityIndex::open(
        dir.path(),
        IndexOptions {
            durability_interval: std::time::Duration::from_secs(3600),
            refresh_interval: std::time::Duration::ZERO,
            ..options()
        },
    )
    .expect("open");
    // Many small commits (each a segment) invite merges; durable points in between.
    for i in 0..60u64 {
        let a = activity(&format!("a{i}"), "d1");
        index.apply(&[upsert(&a, i + 1)]).await.expect("apply");
        if i % 10 == 9 {
            index.flush().await.expect("flush");
            // Whatever happens next, the durable state on disk opens completely.
            let crashed = tempfile::tempdir().expect("tempdir");
            copy_dir(dir.path(), crashed.path());
            let after_crash = open(crashed.path());
            assert_eq!(
                after_crash.live_versions().expect("versions").len() as u64,
                i + 1
            );
            after_crash.close().await;
        }
    }
    index.close().await;
}

/// The segment files in `dir` (named after a 32-hex segment id).
fn segment_files(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.len() > 33 && name.as_bytes()[32] == b'.')
        .collect()
}

#[tokio::test]
async fn files_a_killed_process_left_behind_do_not_collide_with_the_restarted_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open_without_durable_points(dir.path());
    let a = activity("a1", "d1");
    let mut edited = a.clone();
    edited.memo = "edited".into();
    // Two documents, so the segment outlives the replacement of one.
    let b = activity("b1", "d1");
    index
        .apply(&[upsert(&a, 1), upsert(&b, 1)])
        .await
        .expect("apply a and b");
    index.flush().await.expect("flush");
    // Replacing a durable document writes a delete file (`<segment>.<opstamp>.del`) and a
    // new segment; the process dies during the next durable point, after it wrote them to
    // disk and before its meta.json.
    index
        .apply(&[upsert(&edited, 2)])
        .await
        .expect("apply edit");
    let crashed = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), crashed.path());
    index.flush().await.expect("flush");
    for file in segment_files(dir.path()).difference(&segment_files(crashed.path())) {
        std::fs::copy(dir.path().join(file), crashed.path().join(file)).expect("copy");
    }
    index.close().await;
    let left_behind = segment_files(crashed.path());
    assert!(
        left_behind.iter().any(|f| f.ends_with(".del")),
        "the killed process left a delete file: {left_behind:?}"
    );

    // The restarted process replays the same change: the same operation stamp names the
    // same delete file, which must not collide with the one left behind.
    let restarted = open(crashed.path());
    restarted
        .apply(&[upsert(&edited, 2)])
        .await
        .expect("the replayed change commits");
    assert_eq!(
        memo_of(&restarted, &a.key()).map(|(_, memo)| memo),
        Some("edited".to_string())
    );
    restarted.flush().await.expect("flush");
    restarted.close().await;

    // Only what the index references stays: nothing of the killed process's leftovers.
    let index = tantivy::Index::open_in_dir(crashed.path()).expect("open with tantivy");
    let metas = index.searchable_segment_metas().expect("metas");
    for file in segment_files(crashed.path()) {
        let meta = metas
            .iter()
            .find(|meta| file.starts_with(&meta.id().uuid_string()))
            .unwrap_or_else(|| panic!("{file} belongs to no segment of the index"));
        if file.ends_with(".del") {
            let current = meta
                .has_deletes()
                .then(|| meta.relative_path(tantivy::index::SegmentComponent::Delete));
            assert_eq!(
                current.as_deref(),
                Some(Path::new(&file)),
                "{file} is not its segment's current delete file"
            );
        }
    }
}

/// A reload after a small commit keeps the readers of unchanged segments, and reopens
/// every segment once a durable point has moved memory files to disk: updates and
/// deletes of items in older segments, on both sides of durable points, are exact.
#[tokio::test]
async fn searches_stay_exact_across_kept_readers_and_durable_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open(dir.path());
    let items: Vec<_> = (0..6).map(|i| activity(&format!("a{i}"), "d1")).collect();
    // One commit (one segment) per record.
    for a in &items {
        index.apply(&[upsert(a, 1)]).await.expect("v1");
    }
    index.flush().await.expect("durable point");
    let moved = index.marks.moved_to_disk.load(Ordering::SeqCst);
    assert!(
        moved >= 1,
        "the first durable point moved memory files to disk"
    );
    // Updates and a delete that land on segments now read from disk, then on segments
    // still in memory.
    for a in &items[..3] {
        let mut b = a.clone();
        b.memo = "v2".into();
        index.apply(&[upsert(&b, 2)]).await.expect("v2");
    }
    index
        .apply(&[remove(&items[3].key(), 2)])
        .await
        .expect("remove");
    for a in &items[..2] {
        let mut b = a.clone();
        b.memo = "v3".into();
        index.apply(&[upsert(&b, 3)]).await.expect("v3");
    }
    let expected: HashMap<ItemKey, Version> = [
        (items[0].key(), Version(3)),
        (items[1].key(), Version(3)),
        (items[2].key(), Version(2)),
        (items[4].key(), Version(1)),
        (items[5].key(), Version(1)),
    ]
    .into_iter()
    .collect();
    assert_eq!(index.live_versions().expect("versions"), expected);
    assert_eq!(
        memo_of(&index, &items[0].key()).map(|(_, m)| m),
        Some("v3".into())
    );
    assert_eq!(
        memo_of(&index, &items[2].key()).map(|(_, m)| m),
        Some("v2".into())
    );
    index.flush().await.expect("durable point");
    assert!(index.marks.moved_to_disk.load(Ordering::SeqCst) > moved);
    let mut b = items[4].clone();
    b.memo = "v4".into();
    index
        .apply(&[upsert(&b, 4)])
        .await
        .expect("v4 after the durable point");
    let mut expected = expected;
    expected.insert(items[4].key(), Version(4));
    assert_eq!(index.live_versions().expect("versions"), expected);
    // A read-only handle of another process, which keeps its readers between queries,
    // sees the durable state and then what the next durable point adds.
    let reader = ActivityIndexReader::open(dir.path()).expect("read-only handle");
    let durable_before = reader.live_versions().expect("versions");
    assert_eq!(durable_before.get(&items[4].key()), Some(&Version(1)));
    index.flush().await.expect("durable point");
    assert_eq!(reader.live_versions().expect("versions"), expected);
    index.close().await;
}

//! Conformance checks of the sink port ([`tsunagu_engine::ports::Sink`]): what `apply`
//! must do, observed through a small [`SinkProbe`] that reads back what the sink holds.
//!
//! Every check writes its own keys under a `namespace` (a prefix of the partition key),
//! so the suite can share one index with other runs; [`check_all`] runs them in turn.
//! The embedded index is the reference (`tests/embedded_sink.rs`); the OpenSearch sink
//! runs the same functions against its test server.

use async_trait::async_trait;
use serde_json::json;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::ports::{Sink, SinkError};

/// Reads back what a sink holds, for the checks.
#[async_trait]
pub trait SinkProbe: Send + Sync {
    /// The version the sink holds for `key` and whether it is a deletion's tombstone;
    /// `None` when it holds nothing for the key.
    async fn held(&self, key: &ItemKey) -> Option<(Version, bool)>;

    /// Makes everything applied so far visible to [`SinkProbe::held`], as a search
    /// cluster's refresh does (a no-op for sinks whose `apply` already made it visible).
    async fn refresh(&self);
}

/// Runs every check of this module.
pub async fn check_all<S: Sink, P: SinkProbe>(sink: &S, probe: &P, namespace: &str) {
    empty_batches_succeed(sink).await;
    inserts_are_visible_after_apply(sink, probe, namespace).await;
    stale_and_equal_versions_are_no_ops(sink, probe, namespace).await;
    a_stale_replay_does_not_resurrect_a_deleted_item(sink, probe, namespace).await;
    a_deleted_item_can_be_created_again_with_a_higher_version(sink, probe, namespace).await;
    a_corrupt_body_fails_only_its_record(sink, probe, namespace).await;
    changes_of_one_item_apply_in_batch_order(sink, probe, namespace).await;
    concurrent_applies_keep_the_newest_version(sink, probe, namespace).await;
}

/// The key of test item `n` of a check.
pub fn key(namespace: &str, check: &str, n: u32) -> ItemKey {
    ItemKey::new(
        format!("{namespace}-{check}-deal"),
        format!("activity#{check}-{n}"),
    )
}

/// A valid activity body for `key` (its partition is the deal, its sort key the id).
pub fn activity_body(key: &ItemKey, memo: &str) -> serde_json::Value {
    let id = key.sort.strip_prefix("activity#").unwrap_or(&key.sort);
    json!({
        "type": "activity_log",
        "id": id,
        "tenant_id": "conformance",
        "deal_id": key.partition,
        "company_id": "company-1",
        "user_id": "user-1",
        "action": "call",
        "occurred_at": "2026-01-01T09:00:00Z",
        "memo": memo,
        "tags": ["conformance"],
        "created_at": "2026-01-01T09:00:00Z",
        "updated_at": "2026-01-01T09:00:00Z",
    })
}

fn record(
    key: &ItemKey,
    kind: ChangeKind,
    version: u64,
    body: Option<serde_json::Value>,
) -> ChangeRecord {
    ChangeRecord {
        shard: ShardId("0".into()),
        position: Position(format!("{version:020}")),
        key: key.clone(),
        kind,
        version: Version(version),
        old_image: None,
        new_image: body.map(|body| Image {
            version: Version(version),
            body,
        }),
        committed_at_us: 1_767_258_000_000_000,
    }
}

/// An INSERT of a valid activity at `version`.
pub fn insert(key: &ItemKey, version: u64) -> ChangeRecord {
    record(
        key,
        ChangeKind::Insert,
        version,
        Some(activity_body(key, &format!("東京で商談 v{version}"))),
    )
}

/// A MODIFY of a valid activity at `version`.
pub fn modify(key: &ItemKey, version: u64) -> ChangeRecord {
    record(
        key,
        ChangeKind::Modify,
        version,
        Some(activity_body(key, &format!("大阪へ訪問 v{version}"))),
    )
}

/// A REMOVE at the deletion's `version`.
pub fn remove(key: &ItemKey, version: u64) -> ChangeRecord {
    record(key, ChangeKind::Remove, version, None)
}

/// An INSERT whose body is not a valid entity (an unknown action).
pub fn corrupt(key: &ItemKey, version: u64) -> ChangeRecord {
    let mut body = activity_body(key, "corrupt");
    body["action"] = json!("fax");
    record(key, ChangeKind::Insert, version, Some(body))
}

async fn held<P: SinkProbe>(probe: &P, key: &ItemKey) -> Option<(Version, bool)> {
    probe.refresh().await;
    probe.held(key).await
}

fn expect_ok(result: Result<(), SinkError>, rule: &str) {
    if let Err(e) = result {
        panic!("{rule}: apply failed: {e:?}");
    }
}

async fn assert_held<P: SinkProbe>(
    probe: &P,
    key: &ItemKey,
    expected: Option<(u64, bool)>,
    rule: &str,
) {
    let found = held(probe, key).await;
    assert_eq!(
        found,
        expected.map(|(v, deleted)| (Version(v), deleted)),
        "{rule}: {key} holds {found:?}, expected {expected:?} (version, tombstone)"
    );
}

/// Applying nothing succeeds.
pub async fn empty_batches_succeed<S: Sink>(sink: &S) {
    expect_ok(sink.apply(&[]).await, "an empty batch succeeds");
}

/// Records are visible (to the probe) once `apply` returned.
pub async fn inserts_are_visible_after_apply<S: Sink, P: SinkProbe>(
    sink: &S,
    probe: &P,
    namespace: &str,
) {
    let rule = "inserts are visible after apply";
    let keys: Vec<ItemKey> = (0..3).map(|n| key(namespace, "visible", n)).collect();
    let batch: Vec<ChangeRecord> = keys.iter().map(|k| insert(k, 1)).collect();
    expect_ok(sink.apply(&batch).await, rule);
    for k in &keys {
        assert_held(probe, k, Some((1, false)), rule).await;
    }
    assert_held(
        probe,
        &key(namespace, "visible", 99),
        None,
        "unwritten keys hold nothing",
    )
    .await;
}

/// A record whose version is not newer than the held one changes nothing and succeeds.
pub async fn stale_and_equal_versions_are_no_ops<S: Sink, P: SinkProbe>(
    sink: &S,
    probe: &P,
    namespace: &str,
) {
    let k = key(namespace, "guard", 0);
    expect_ok(sink.apply(&[insert(&k, 5)]).await, "first write");
    let rule = "a stale version is a no-op success";
    expect_ok(sink.apply(&[modify(&k, 3)]).await, rule);
    assert_held(probe, &k, Some((5, false)), rule).await;
    let rule = "an equal version is a no-op success";
    expect_ok(sink.apply(&[modify(&k, 5)]).await, rule);
    assert_held(probe, &k, Some((5, false)), rule).await;
    let rule = "a stale REMOVE is a no-op success";
    expect_ok(sink.apply(&[remove(&k, 4)]).await, rule);
    assert_held(probe, &k, Some((5, false)), rule).await;
    let rule = "a newer version replaces the held one";
    expect_ok(sink.apply(&[modify(&k, 6)]).await, rule);
    assert_held(probe, &k, Some((6, false)), rule).await;
}

/// A deletion leaves a tombstone at its version; replays of older writes stay no-ops.
pub async fn a_stale_replay_does_not_resurrect_a_deleted_item<S: Sink, P: SinkProbe>(
    sink: &S,
    probe: &P,
    namespace: &str,
) {
    let k = key(namespace, "tombstone", 0);
    expect_ok(
        sink.apply(&[insert(&k, 1), modify(&k, 2)]).await,
        "first writes",
    );
    let rule = "a REMOVE leaves a tombstone at the deletion's version";
    expect_ok(sink.apply(&[remove(&k, 3)]).await, rule);
    assert_held(probe, &k, Some((3, true)), rule).await;
    let rule = "a replayed INSERT older than the tombstone does not resurrect the item";
    expect_ok(sink.apply(&[insert(&k, 1)]).await, rule);
    expect_ok(sink.apply(&[modify(&k, 2)]).await, rule);
    assert_held(probe, &k, Some((3, true)), rule).await;
    let rule = "a replayed REMOVE is a no-op success";
    expect_ok(sink.apply(&[remove(&k, 3)]).await, rule);
    assert_held(probe, &k, Some((3, true)), rule).await;
    let rule = "a REMOVE of an item never seen still leaves a tombstone";
    let never = key(namespace, "tombstone", 1);
    expect_ok(sink.apply(&[remove(&never, 2)]).await, rule);
    expect_ok(sink.apply(&[insert(&never, 1)]).await, rule);
    assert_held(probe, &never, Some((2, true)), rule).await;
}

/// After a deletion, a write with a higher version brings the item back.
pub async fn a_deleted_item_can_be_created_again_with_a_higher_version<S: Sink, P: SinkProbe>(
    sink: &S,
    probe: &P,
    namespace: &str,
) {
    let rule = "a deleted item is created again by a higher version";
    let k = key(namespace, "recreate", 0);
    expect_ok(sink.apply(&[insert(&k, 1)]).await, rule);
    expect_ok(sink.apply(&[remove(&k, 2)]).await, rule);
    expect_ok(sink.apply(&[insert(&k, 3)]).await, rule);
    assert_held(probe, &k, Some((3, false)), rule).await;
}

/// A body that is not a valid entity fails its record only, permanently; the others of
/// the batch apply. A stale corrupt record (a redriven dead letter) is a no-op success.
pub async fn a_corrupt_body_fails_only_its_record<S: Sink, P: SinkProbe>(
    sink: &S,
    probe: &P,
    namespace: &str,
) {
    let rule = "a corrupt body fails only its record, permanently";
    let (a, bad, b) = (
        key(namespace, "corrupt", 0),
        key(namespace, "corrupt", 1),
        key(namespace, "corrupt", 2),
    );
    let mut missing_image = insert(&key(namespace, "corrupt", 3), 1);
    missing_image.new_image = None;
    let batch = [
        insert(&a, 1),
        corrupt(&bad, 1),
        insert(&b, 1),
        missing_image,
    ];
    match sink.apply(&batch).await {
        Err(SinkError::Records(failures)) => {
            let indexes: Vec<usize> = failures.iter().map(|f| f.index).collect();
            assert_eq!(indexes, vec![1, 3], "{rule}: failures {failures:?}");
            for failure in &failures {
                assert!(
                    !failure.retryable,
                    "{rule}: {failure:?} must not be retryable"
                );
                assert!(!failure.message.is_empty(), "{rule}: failures say why");
            }
        }
        other => panic!("{rule}: expected SinkError::Records, got {other:?}"),
    }
    assert_held(probe, &a, Some((1, false)), rule).await;
    assert_held(probe, &b, Some((1, false)), rule).await;
    assert_held(probe, &bad, None, rule).await;
    let rule = "a stale corrupt record is a no-op success";
    expect_ok(sink.apply(&[insert(&bad, 4)]).await, rule);
    expect_ok(sink.apply(&[corrupt(&bad, 2)]).await, rule);
    assert_held(probe, &bad, Some((4, false)), rule).await;
}

/// Several changes of one item in one batch end at the last one.
pub async fn changes_of_one_item_apply_in_batch_order<S: Sink, P: SinkProbe>(
    sink: &S,
    probe: &P,
    namespace: &str,
) {
    let rule = "changes of one item in a batch apply in order";
    let (k, gone, other) = (
        key(namespace, "order", 0),
        key(namespace, "order", 1),
        key(namespace, "order", 2),
    );
    let batch = [
        insert(&k, 1),
        insert(&gone, 1),
        modify(&k, 2),
        insert(&other, 7),
        modify(&gone, 2),
        modify(&k, 3),
        remove(&gone, 3),
        remove(&k, 4),
        insert(&k, 5),
    ];
    expect_ok(sink.apply(&batch).await, rule);
    assert_held(probe, &k, Some((5, false)), rule).await;
    assert_held(probe, &gone, Some((3, true)), rule).await;
    assert_held(probe, &other, Some((7, false)), rule).await;
}

/// `apply` called from several lanes at once: every record lands, and an item written by
/// several calls ends at its highest version whatever the interleaving.
pub async fn concurrent_applies_keep_the_newest_version<S: Sink, P: SinkProbe>(
    sink: &S,
    probe: &P,
    namespace: &str,
) {
    let rule = "concurrent applies";
    let shared = key(namespace, "concurrent", 1_000);
    let lane = |lane: u32| {
        let mut batch: Vec<ChangeRecord> = (0..20)
            .map(|n| insert(&key(namespace, "concurrent", lane * 100 + n), 1))
            .collect();
        batch.push(modify(&shared, u64::from(lane) + 1));
        batch
    };
    let (b0, b1, b2, b3) = (lane(0), lane(1), lane(2), lane(3));
    let (r0, r1, r2, r3) = tokio::join!(
        sink.apply(&b0),
        sink.apply(&b1),
        sink.apply(&b2),
        sink.apply(&b3)
    );
    for result in [r0, r1, r2, r3] {
        expect_ok(result, rule);
    }
    for lane in 0..4 {
        for n in [0, 19] {
            assert_held(
                probe,
                &key(namespace, "concurrent", lane * 100 + n),
                Some((1, false)),
                rule,
            )
            .await;
        }
    }
    assert_held(probe, &shared, Some((4, false)), "the newest version wins").await;
}

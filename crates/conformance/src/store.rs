//! Conformance checks of the primary store ([`ItemStore`]).
//!
//! Every check writes only under partition keys starting with `prefix`, so the suite can
//! run against a shared table; use a fresh prefix per run.

use serde_json::json;
use tsunagu_domain::{ChangeKind, ItemKey, Version};
use tsunagu_engine::ports::{Condition, ItemStore, ItemStoreError, WriteOp, WriteOutcome};

/// Runs every check of this module.
pub async fn check_all<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    create_then_read(store, prefix).await;
    create_on_existing_conflicts(store, prefix).await;
    version_condition_wins_and_loses(store, prefix).await;
    versions_increase_across_delete_and_recreate(store, prefix).await;
    delete_of_missing_changes_nothing(store, prefix).await;
    same_body_changes_nothing(store, prefix).await;
    write_many_reports_each_write(store, prefix).await;
    invalid_writes_are_rejected(store, prefix).await;
}

fn key(prefix: &str, check: &str, sort: &str) -> ItemKey {
    ItemKey::new(format!("{prefix}-{check}"), sort)
}

async fn put<S: ItemStore + ?Sized>(
    store: &S,
    key: &ItemKey,
    body: serde_json::Value,
    condition: Condition,
) -> Result<WriteOutcome, ItemStoreError> {
    store
        .write(WriteOp::Put {
            key: key.clone(),
            body,
            condition,
        })
        .await
}

fn version_of(outcome: &WriteOutcome, what: &str) -> Version {
    outcome
        .version
        .unwrap_or_else(|| panic!("{what}: a write that created or changed an item must report its version, got {outcome:?}"))
}

fn expect_conflict(
    result: &Result<WriteOutcome, ItemStoreError>,
    found: Option<Version>,
    what: &str,
) {
    match result {
        Err(ItemStoreError::Conflict { found: f, .. }) => {
            assert_eq!(
                *f, found,
                "{what}: the conflict must report the item's current version"
            )
        }
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

/// A created item reads back with its version and body; a missing one reads as `None`.
pub async fn create_then_read<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    let k = key(prefix, "create", "a");
    let outcome = put(
        store,
        &k,
        json!({"memo": "電話", "n": 1}),
        Condition::NotExists,
    )
    .await
    .expect("create");
    assert_eq!(
        outcome.change,
        Some(ChangeKind::Insert),
        "a create is an INSERT"
    );
    let version = version_of(&outcome, "create");
    let item = store
        .get(&k)
        .await
        .expect("get")
        .expect("the created item must be readable at once");
    assert_eq!(
        item.version, version,
        "get returns the version the write reported"
    );
    assert_eq!(item.body, json!({"memo": "電話", "n": 1}));
    assert_eq!(item.key, k);
    assert!(
        store
            .get(&key(prefix, "create", "missing"))
            .await
            .expect("get")
            .is_none(),
        "a missing item reads as None"
    );
}

/// A create (`NotExists`) of an existing item fails with its version and changes nothing.
pub async fn create_on_existing_conflicts<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    let k = key(prefix, "exists", "a");
    let v = version_of(
        &put(store, &k, json!({"x": 1}), Condition::None)
            .await
            .expect("put"),
        "put",
    );
    expect_conflict(
        &put(store, &k, json!({"x": 2}), Condition::NotExists).await,
        Some(v),
        "create on an existing item",
    );
    let item = store.get(&k).await.expect("get").expect("item");
    assert_eq!(
        (item.version, item.body),
        (v, json!({"x": 1})),
        "a failed write changes nothing"
    );
    expect_conflict(
        &put(
            store,
            &key(prefix, "exists", "b"),
            json!({"x": 1}),
            Condition::Exists,
        )
        .await,
        None,
        "Exists on a missing item",
    );
    expect_conflict(
        &put(
            store,
            &key(prefix, "exists", "c"),
            json!({"x": 1}),
            Condition::VersionIs(Version(1)),
        )
        .await,
        None,
        "VersionIs on a missing item",
    );
}

/// A write conditioned on the current version wins; one on a stale version loses.
pub async fn version_condition_wins_and_loses<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    let k = key(prefix, "occ", "a");
    let v1 = version_of(
        &put(store, &k, json!({"s": 1}), Condition::NotExists)
            .await
            .expect("create"),
        "create",
    );
    let second = put(store, &k, json!({"s": 2}), Condition::VersionIs(v1))
        .await
        .expect("update on the current version");
    assert_eq!(
        second.change,
        Some(ChangeKind::Modify),
        "an update is a MODIFY"
    );
    let v2 = version_of(&second, "update");
    assert!(v2 > v1, "versions strictly increase: {v1} then {v2}");
    expect_conflict(
        &put(store, &k, json!({"s": 3}), Condition::VersionIs(v1)).await,
        Some(v2),
        "update on a stale version",
    );
    let third = put(store, &k, json!({"s": 3}), Condition::Exists)
        .await
        .expect("update of an existing item");
    assert!(version_of(&third, "update") > v2);
    expect_conflict(
        &store
            .write(WriteOp::Delete {
                key: k.clone(),
                condition: Condition::VersionIs(v1),
            })
            .await,
        third.version,
        "delete on a stale version",
    );
}

/// Versions strictly increase on every change, a delete included, and a re-created item
/// continues above the deleted one.
pub async fn versions_increase_across_delete_and_recreate<S: ItemStore + ?Sized>(
    store: &S,
    prefix: &str,
) {
    let k = key(prefix, "recreate", "a");
    let mut last = Version(0);
    for round in 0..3 {
        let created = put(store, &k, json!({"round": round}), Condition::NotExists)
            .await
            .expect("create");
        assert_eq!(
            created.change,
            Some(ChangeKind::Insert),
            "a re-create is an INSERT"
        );
        let v = version_of(&created, "create");
        assert!(
            v > last,
            "round {round}: version {v} must exceed the previous {last}"
        );
        let updated = put(
            store,
            &k,
            json!({"round": round, "u": true}),
            Condition::VersionIs(v),
        )
        .await
        .expect("update");
        let u = version_of(&updated, "update");
        assert!(u > v, "round {round}: update version {u} must exceed {v}");
        let deleted = store
            .write(WriteOp::Delete {
                key: k.clone(),
                condition: Condition::VersionIs(u),
            })
            .await
            .expect("delete");
        assert_eq!(
            deleted.change,
            Some(ChangeKind::Remove),
            "a delete is a REMOVE"
        );
        let d = deleted
            .version
            .expect("a delete reports the deletion's version");
        assert!(
            d > u,
            "round {round}: the deletion's version {d} must exceed the update's {u}"
        );
        assert!(
            store.get(&k).await.expect("get").is_none(),
            "a deleted item reads as None"
        );
        last = d;
    }
}

/// Deleting a missing item succeeds and changes nothing.
pub async fn delete_of_missing_changes_nothing<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    let k = key(prefix, "delete-missing", "a");
    let outcome = store
        .write(WriteOp::Delete {
            key: k.clone(),
            condition: Condition::None,
        })
        .await
        .expect("delete of a missing item");
    assert_eq!(
        (outcome.change, outcome.version, outcome.position),
        (None, None, None)
    );
    put(store, &k, json!({}), Condition::None)
        .await
        .expect("put");
    store
        .write(WriteOp::Delete {
            key: k.clone(),
            condition: Condition::Exists,
        })
        .await
        .expect("delete");
    let again = store
        .write(WriteOp::Delete {
            key: k.clone(),
            condition: Condition::None,
        })
        .await
        .expect("second delete");
    assert_eq!(
        again.change, None,
        "deleting a deleted item changes nothing"
    );
    expect_conflict(
        &store
            .write(WriteOp::Delete {
                key: k,
                condition: Condition::Exists,
            })
            .await,
        None,
        "delete with Exists of a deleted item",
    );
}

/// Writing the body an item already has produces no change.
pub async fn same_body_changes_nothing<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    let k = key(prefix, "same", "a");
    let v = version_of(
        &put(store, &k, json!({"a": 1, "b": [1, 2]}), Condition::None)
            .await
            .expect("put"),
        "put",
    );
    let again = put(
        store,
        &k,
        json!({"b": [1, 2], "a": 1}),
        Condition::VersionIs(v),
    )
    .await
    .expect("same body");
    assert_eq!(again.change, None, "the same body again is not a change");
    assert_eq!(again.version, Some(v), "and keeps the version");
    assert_eq!(again.position, None);
}

/// `write_many` applies every write on its own and reports each, in order.
pub async fn write_many_reports_each_write<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    let existing = key(prefix, "many", "existing");
    let v = version_of(
        &put(store, &existing, json!({"v": 0}), Condition::None)
            .await
            .expect("put"),
        "put",
    );
    let fresh: Vec<ItemKey> = (0..5)
        .map(|i| key(prefix, "many", &format!("new-{i}")))
        .collect();
    let mut ops: Vec<WriteOp> = fresh
        .iter()
        .map(|k| WriteOp::Put {
            key: k.clone(),
            body: json!({"k": k.sort}),
            condition: Condition::NotExists,
        })
        .collect();
    ops.push(WriteOp::Put {
        key: existing.clone(),
        body: json!({"v": 1}),
        condition: Condition::NotExists,
    });
    ops.push(WriteOp::Put {
        key: existing.clone(),
        body: json!({"v": 2}),
        condition: Condition::VersionIs(v),
    });
    ops.push(WriteOp::Delete {
        key: fresh[0].clone(),
        condition: Condition::Exists,
    });
    let results = store.write_many(ops).await.expect("write_many");
    assert_eq!(results.len(), 8, "one result per write");
    for (i, result) in results.iter().take(5).enumerate() {
        let outcome = result
            .as_ref()
            .unwrap_or_else(|e| panic!("write {i} must succeed: {e}"));
        assert_eq!(outcome.change, Some(ChangeKind::Insert));
    }
    expect_conflict(&results[5], Some(v), "a failed condition in write_many");
    let updated = results[6]
        .as_ref()
        .expect("the write after a failed one still applies");
    assert!(version_of(updated, "update") > v);
    assert_eq!(
        results[7]
            .as_ref()
            .expect("delete of an item created earlier in the batch")
            .change,
        Some(ChangeKind::Remove),
        "writes of one item apply in the order given"
    );
    assert!(store.get(&fresh[0]).await.expect("get").is_none());
    assert_eq!(
        store.get(&fresh[1]).await.expect("get").map(|i| i.body),
        Some(json!({"k": "new-1"}))
    );
    assert_eq!(
        store.get(&existing).await.expect("get").map(|i| i.body),
        Some(json!({"v": 2}))
    );
}

/// Empty keys and bodies that are not objects are rejected as `Invalid`.
pub async fn invalid_writes_are_rejected<S: ItemStore + ?Sized>(store: &S, prefix: &str) {
    let bad = [
        WriteOp::Put {
            key: ItemKey::new("", "a"),
            body: json!({}),
            condition: Condition::None,
        },
        WriteOp::Put {
            key: ItemKey::new(format!("{prefix}-invalid"), ""),
            body: json!({}),
            condition: Condition::None,
        },
        WriteOp::Put {
            key: key(prefix, "invalid", "a"),
            body: json!([1, 2]),
            condition: Condition::None,
        },
        WriteOp::Put {
            key: key(prefix, "invalid", "a"),
            body: json!("text"),
            condition: Condition::None,
        },
        WriteOp::Delete {
            key: ItemKey::new("", ""),
            condition: Condition::None,
        },
    ];
    for op in bad {
        let what = format!("{op:?}");
        match store.write(op).await {
            Err(ItemStoreError::Invalid(message)) => assert!(!message.is_empty()),
            other => panic!("{what} must be rejected as invalid, got {other:?}"),
        }
    }
    assert!(
        store
            .get(&key(prefix, "invalid", "a"))
            .await
            .expect("get")
            .is_none(),
        "an invalid write stores nothing"
    );
}

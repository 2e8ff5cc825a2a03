//! Conformance checks of [`BackfillProgressStore`]: progress is kept per consumer and
//! shard, a save overwrites the shard's previous state, a clear forgets one shard only,
//! and consumers never see each other's progress (also when one name is a prefix of
//! another).
//!
//! The checks use their own consumer names (all starting with `conf-bf`).

use std::collections::HashMap;
use tsunagu_domain::{ItemKey, Position, ShardId};
use tsunagu_engine::backfill::{BackfillProgressStore, BackfillState};

/// Runs every backfill-progress check in turn.
pub async fn check_all(store: &dyn BackfillProgressStore) {
    save_load_overwrite_and_clear(store).await;
    consumers_are_isolated(store).await;
}

fn shard(id: &str) -> ShardId {
    ShardId(id.to_string())
}

/// A state that differs in every field from the default one.
pub fn state(items: u64, done: bool) -> BackfillState {
    BackfillState {
        target: Some(Position(format!("4960{items:020}"))),
        after: Some(ItemKey::new(
            format!("tenant-{items}"),
            format!("item-{items}"),
        )),
        items,
        done,
        targets: std::collections::BTreeMap::from([(
            ShardId("shard-0".into()),
            Some(Position(format!("4970{items:020}"))),
        )]),
        segments: vec![tsunagu_engine::backfill::SegmentProgress {
            after: Some(ItemKey::new("segment", format!("after-{items}"))),
            done,
        }],
    }
}

async fn load(
    store: &dyn BackfillProgressStore,
    consumer: &str,
) -> HashMap<ShardId, BackfillState> {
    store
        .load_backfill(consumer)
        .await
        .expect("load backfill progress")
}

pub async fn save_load_overwrite_and_clear(store: &dyn BackfillProgressStore) {
    let consumer = "conf-bf-main";
    assert!(
        load(store, consumer).await.is_empty(),
        "a consumer without a backfill has no progress"
    );
    let (s0, s1) = (shard("shard-0"), shard("shardId-000000000001"));
    let first = state(10, false);
    // A shard whose stream was empty: no target, nothing scanned yet.
    let empty = BackfillState::default();
    store
        .save_backfill(consumer, &s0, &first)
        .await
        .expect("save");
    store
        .save_backfill(consumer, &s1, &empty)
        .await
        .expect("save");
    assert_eq!(
        load(store, consumer).await,
        HashMap::from([(s0.clone(), first), (s1.clone(), empty.clone())]),
        "every shard's progress, exactly as saved"
    );

    let later = state(1_234_567, true);
    store
        .save_backfill(consumer, &s0, &later)
        .await
        .expect("save again");
    assert_eq!(
        load(store, consumer).await,
        HashMap::from([(s0.clone(), later.clone()), (s1.clone(), empty)]),
        "a save replaces the shard's previous state"
    );

    store.clear_backfill(consumer, &s1).await.expect("clear");
    assert_eq!(
        load(store, consumer).await,
        HashMap::from([(s0.clone(), later)]),
        "a clear forgets that shard only"
    );
    store
        .clear_backfill(consumer, &s1)
        .await
        .expect("clearing a cleared shard is not an error");
    store
        .clear_backfill(consumer, &shard("never-saved"))
        .await
        .expect("clearing an unknown shard is not an error");
    store.clear_backfill(consumer, &s0).await.expect("clear");
    assert!(load(store, consumer).await.is_empty(), "everything cleared");
}

pub async fn consumers_are_isolated(store: &dyn BackfillProgressStore) {
    // Names where one is a prefix of another, or shares a separator: a store keying by
    // concatenation must still keep them apart.
    let (a, b, c) = ("conf-bf", "conf-bf-more", "conf-bf#x");
    let s = shard("shard-0");
    store
        .save_backfill(a, &s, &state(1, false))
        .await
        .expect("save");
    store
        .save_backfill(b, &s, &state(2, true))
        .await
        .expect("save");
    store
        .save_backfill(c, &shard("x"), &state(3, false))
        .await
        .expect("save");
    assert_eq!(
        load(store, a).await,
        HashMap::from([(s.clone(), state(1, false))])
    );
    assert_eq!(
        load(store, b).await,
        HashMap::from([(s.clone(), state(2, true))])
    );
    assert_eq!(
        load(store, c).await,
        HashMap::from([(shard("x"), state(3, false))])
    );

    store.clear_backfill(a, &s).await.expect("clear");
    assert!(load(store, a).await.is_empty());
    assert_eq!(
        load(store, b).await,
        HashMap::from([(s.clone(), state(2, true))]),
        "clearing one consumer's shard leaves another's"
    );
    store.clear_backfill(b, &s).await.expect("clear");
    store.clear_backfill(c, &shard("x")).await.expect("clear");
}

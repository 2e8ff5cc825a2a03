//! Conformance checks of [`LeaseStore`]: every change is conditional, the counter fences
//! racing takes, only the owner renews, checkpoints or releases, and a finished shard
//! stays finished.

use tsunagu_domain::{Position, ShardId};
use tsunagu_engine::ports::{LeaseStore, ShardInfo};

/// Runs every lease check. `consumer` must be unused in the store (the checks create
/// leases under it and a sibling name `<consumer>-other`).
pub async fn check_all(store: &dyn LeaseStore, consumer: &str) {
    take_is_fenced_by_the_counter(store, consumer).await;
    only_the_owner_renews_checkpoints_and_releases(store, &format!("{consumer}-owner")).await;
    leases_are_per_consumer_and_keep_their_lineage(store, &format!("{consumer}-lineage")).await;
}

fn shard(id: &str) -> ShardId {
    ShardId(id.to_string())
}

async fn take_is_fenced_by_the_counter(store: &dyn LeaseStore, consumer: &str) {
    let s = shard("shard-0");
    store
        .ensure(consumer, &ShardInfo::root(s.clone()))
        .await
        .expect("ensure");
    // Ensuring again changes nothing.
    store
        .ensure(consumer, &ShardInfo::root(s.clone()))
        .await
        .expect("ensure again");
    let leases = store.leases(consumer).await.expect("leases");
    assert_eq!(
        leases.len(),
        1,
        "ensure twice must leave one lease: {leases:?}"
    );
    let fresh = &leases[0];
    assert_eq!(fresh.owner, None, "a new lease has no owner");
    assert_eq!(fresh.checkpoint, None, "a new lease has no checkpoint");
    assert!(!fresh.finished, "a new lease is not finished");

    let seen = fresh.counter;
    let a = store
        .take(consumer, &s, "worker-a", seen, 10_000)
        .await
        .expect("take")
        .expect("a take on the counter seen must win");
    assert_eq!(a.owner.as_deref(), Some("worker-a"));
    assert!(a.counter > seen, "a take must raise the counter");
    assert_eq!(a.expires_at_ms, 10_000);
    // b saw the same counter as a: it lost the race.
    let b = store
        .take(consumer, &s, "worker-b", seen, 20_000)
        .await
        .expect("take");
    assert!(b.is_none(), "a take on a stale counter must lose: {b:?}");
    // Stealing names the current counter.
    let b = store
        .take(consumer, &s, "worker-b", a.counter, 20_000)
        .await
        .expect("steal")
        .expect("a take on the current counter must win");
    assert_eq!(b.owner.as_deref(), Some("worker-b"));
    assert!(b.counter > a.counter);
}

async fn only_the_owner_renews_checkpoints_and_releases(store: &dyn LeaseStore, consumer: &str) {
    let s = shard("shard-1");
    store
        .ensure(consumer, &ShardInfo::root(s.clone()))
        .await
        .expect("ensure");
    let seen = store.leases(consumer).await.expect("leases")[0].counter;
    store
        .take(consumer, &s, "worker-a", seen, 1_000)
        .await
        .expect("take")
        .expect("take a free lease");

    let renewed = store
        .renew(consumer, &s, "worker-a", 5_000)
        .await
        .expect("renew")
        .expect("the owner renews");
    assert_eq!(renewed.expires_at_ms, 5_000);
    assert!(
        store
            .renew(consumer, &s, "worker-b", 9_000)
            .await
            .expect("renew")
            .is_none(),
        "only the owner renews"
    );

    let p1 = Position("100".into());
    assert!(store
        .checkpoint(consumer, &s, "worker-a", Some(&p1), false)
        .await
        .expect("checkpoint"));
    assert!(
        !store
            .checkpoint(
                consumer,
                &s,
                "worker-b",
                Some(&Position("999".into())),
                false
            )
            .await
            .expect("checkpoint"),
        "only the owner moves the checkpoint"
    );
    let lease = &store.leases(consumer).await.expect("leases")[0];
    assert_eq!(lease.checkpoint.as_ref(), Some(&p1));

    // `None` keeps the checkpoint; finished sticks.
    assert!(store
        .checkpoint(consumer, &s, "worker-a", None, true)
        .await
        .expect("finish"));
    assert!(store
        .checkpoint(consumer, &s, "worker-a", None, false)
        .await
        .expect("checkpoint"));
    let lease = &store.leases(consumer).await.expect("leases")[0];
    assert_eq!(
        lease.checkpoint.as_ref(),
        Some(&p1),
        "None must keep the checkpoint"
    );
    assert!(lease.finished, "a finished shard stays finished");

    assert!(
        !store
            .release(consumer, &s, "worker-b")
            .await
            .expect("release"),
        "only the owner releases"
    );
    assert!(store
        .release(consumer, &s, "worker-a")
        .await
        .expect("release"));
    let released = store.leases(consumer).await.expect("leases")[0].clone();
    assert_eq!(released.owner, None, "a released lease has no owner");
    assert!(
        released.expires_at_ms <= 0,
        "a released lease is free at once"
    );
    assert_eq!(
        released.checkpoint.as_ref(),
        Some(&p1),
        "release keeps the checkpoint"
    );
    assert!(
        !store
            .checkpoint(
                consumer,
                &s,
                "worker-a",
                Some(&Position("200".into())),
                false
            )
            .await
            .expect("checkpoint"),
        "after releasing, the old owner cannot checkpoint"
    );
    // Anyone may take it now, on its counter.
    assert!(store
        .take(consumer, &s, "worker-b", released.counter, 1_000)
        .await
        .expect("take")
        .is_some());
}

async fn leases_are_per_consumer_and_keep_their_lineage(store: &dyn LeaseStore, consumer: &str) {
    let other = format!("{consumer}-other");
    let child = ShardInfo {
        id: shard("child"),
        parent: Some(shard("left")),
        adjacent_parent: Some(shard("right")),
    };
    for info in [
        ShardInfo::root(shard("left")),
        ShardInfo::root(shard("right")),
        child.clone(),
    ] {
        store.ensure(consumer, &info).await.expect("ensure");
    }
    store
        .ensure(&other, &ShardInfo::root(shard("left")))
        .await
        .expect("ensure");
    let mut leases = store.leases(consumer).await.expect("leases");
    leases.sort_by(|a, b| a.shard.cmp(&b.shard));
    let ids: Vec<&str> = leases.iter().map(|l| l.shard.0.as_str()).collect();
    assert_eq!(
        ids,
        ["child", "left", "right"],
        "leases of one consumer only"
    );
    assert_eq!(leases[0].parent, child.parent, "the parent is kept");
    assert_eq!(
        leases[0].adjacent_parent, child.adjacent_parent,
        "the adjacent parent is kept"
    );
    assert_eq!(store.leases(&other).await.expect("leases").len(), 1);
}

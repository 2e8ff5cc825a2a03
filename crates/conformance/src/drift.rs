//! Conformance checks of the drift ports ([`tsunagu_engine::drift::VersionDigest`] and
//! [`tsunagu_engine::drift::PrimaryDigest`]): what a side of a drift comparison must
//! answer, for a sink read back and for a primary store.
//!
//! Each check writes a known set of items (inserts, modifications, deletions) into a
//! **fresh, empty** side and compares every answer with what was written: the digest
//! with a tree built from the expected live items, the items of chosen leaves, what is
//! held per key (in the order asked, deletions as `Deleted` or nothing, never `Live`).

use crate::sink::{activity_body, key};
use std::collections::BTreeMap;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::drift::tree::{HashTree, LeafSet};
use tsunagu_engine::drift::{Held, PrimaryDigest, VersionDigest};
use tsunagu_engine::ports::{Condition, ItemStore, Sink, WriteOp};

/// Items written per check: enough for several pages of a scan or a search.
const ITEMS: u32 = 1_200;

/// The expected live items and versions, and the deleted keys.
#[derive(Default)]
struct Expected {
    live: BTreeMap<ItemKey, Version>,
    deleted: Vec<ItemKey>,
}

impl Expected {
    fn tree(&self, leaf_bits: u32) -> HashTree {
        let mut tree = HashTree::new(leaf_bits);
        for (key, version) in &self.live {
            tree.add(key.stable_hash(), version.0);
        }
        tree
    }
}

/// Checks a side against `expected`: digests at two leaf sizes, the items of some
/// leaves, and what is held for live, deleted and unknown keys.
async fn check_side(side: &dyn VersionDigest, expected: &Expected, namespace: &str) {
    for bits in [12, 15] {
        let digest = side.digest(bits).await.expect("digest");
        assert_eq!(
            digest.items(),
            expected.live.len() as u64,
            "digest({bits}) counts every live item once, tombstones excluded"
        );
        assert!(
            digest == expected.tree(bits),
            "digest({bits}) equals a tree of the live items and their versions"
        );
    }
    let picked: Vec<usize> = expected
        .live
        .keys()
        .step_by(97)
        .chain(expected.deleted.iter().take(3))
        .map(|k| HashTree::leaf_of(15, k.stable_hash()))
        .collect();
    let leaves = LeafSet::new(15, &picked);
    let mut found = side.live_in(&leaves).await.expect("live_in");
    found.sort();
    let wanted: Vec<(ItemKey, Version)> = expected
        .live
        .iter()
        .filter(|(k, _)| leaves.contains(k.stable_hash()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(
        found, wanted,
        "live_in returns exactly the live items of the leaves"
    );

    let unknown = key(namespace, "never-written", 1);
    let mut keys: Vec<ItemKey> = expected.live.keys().rev().take(150).cloned().collect();
    keys.extend(expected.deleted.iter().cloned());
    keys.push(unknown);
    let held = side.held(&keys).await.expect("held");
    assert_eq!(held.len(), keys.len(), "held answers every key asked");
    for (key, held) in keys.iter().zip(held) {
        match expected.live.get(key) {
            Some(version) => assert_eq!(held, Some(Held::Live(*version)), "held({key})"),
            None => assert!(
                !matches!(held, Some(Held::Live(_))),
                "held({key}) of a deleted or unknown key is not live: {held:?}"
            ),
        }
    }
}

/// A sink read back: changes applied through [`Sink::apply`] are what the digest shows.
/// `side` must be empty when the check starts.
pub async fn check_sink_side<S: Sink + VersionDigest>(side: &S, namespace: &str) {
    let mut expected = Expected::default();
    let mut records = Vec::new();
    for n in 0..ITEMS {
        let key = key(namespace, "drift", n);
        let version = Version(1_000 + u64::from(n) * 3);
        records.push(record(&key, ChangeKind::Insert, version));
        expected.live.insert(key, version);
    }
    for n in (0..ITEMS).step_by(5) {
        let key = key(namespace, "drift", n);
        let version = Version(1_001 + u64::from(n) * 3);
        records.push(record(&key, ChangeKind::Modify, version));
        expected.live.insert(key, version);
    }
    for n in (0..ITEMS).step_by(7) {
        let key = key(namespace, "drift", n);
        records.push(record(
            &key,
            ChangeKind::Remove,
            Version(1_002 + u64::from(n) * 3),
        ));
        expected.live.remove(&key);
        expected.deleted.push(key);
    }
    for chunk in records.chunks(200) {
        side.apply(chunk).await.expect("apply");
    }
    side.flush().await.expect("flush");
    check_side(side, &expected, namespace).await;
}

/// A primary store: writes through [`ItemStore`] are what the digest shows; `current`
/// reads an item as stored; `fresh_version` is newer than every version handed out.
/// `side` must be empty when the check starts.
pub async fn check_primary_side<P: ItemStore + PrimaryDigest>(side: &P, namespace: &str) {
    let mut expected = Expected::default();
    let put = |key: &ItemKey, memo: &str| WriteOp::Put {
        key: key.clone(),
        body: activity_body(key, memo),
        condition: Condition::None,
    };
    let mut newest = Version(0);
    let write = |ops: Vec<WriteOp>| async move { side.write_many(ops).await };
    let keys: Vec<ItemKey> = (0..ITEMS).map(|n| key(namespace, "drift", n)).collect();
    for (round, ops) in [
        keys.iter().map(|k| put(k, "first")).collect::<Vec<_>>(),
        keys.iter().step_by(5).map(|k| put(k, "second")).collect(),
        keys.iter()
            .step_by(7)
            .map(|k| WriteOp::Delete {
                key: k.clone(),
                condition: Condition::None,
            })
            .collect(),
    ]
    .into_iter()
    .enumerate()
    {
        let written: Vec<ItemKey> = ops.iter().map(|op| op.key().clone()).collect();
        for chunk in ops.chunks(100).map(|c| c.to_vec()) {
            let outcomes = write(chunk).await.expect("write_many");
            for outcome in outcomes {
                let outcome = outcome.expect("write");
                if let Some(version) = outcome.version {
                    newest = newest.max(version);
                }
            }
        }
        // Versions as the store reports them.
        let stored = side.held(&written).await.expect("held after writing");
        for (key, held) in written.into_iter().zip(stored) {
            match (round, held) {
                (2, held) => {
                    if let Some(Held::Deleted(version)) = held {
                        newest = newest.max(version);
                    }
                    expected.live.remove(&key);
                    expected.deleted.push(key);
                }
                (_, Some(Held::Live(version))) => {
                    newest = newest.max(version);
                    expected.live.insert(key, version);
                }
                (_, other) => panic!("{key} was just written but is held as {other:?}"),
            }
        }
    }
    check_side(side, &expected, namespace).await;
    let (key, version) = expected.live.iter().next().expect("a live item");
    let item = side
        .current(key)
        .await
        .expect("current")
        .expect("a live item is current");
    assert_eq!(item.version, *version, "current reads the stored version");
    assert!(item.body.is_object(), "current reads the stored body");
    let fresh = side.fresh_version().await.expect("fresh_version");
    assert!(
        fresh >= newest,
        "fresh_version ({fresh}) is at least every version handed out ({newest})"
    );
}

fn record(key: &ItemKey, kind: ChangeKind, version: Version) -> ChangeRecord {
    ChangeRecord {
        shard: ShardId("0".into()),
        position: Position(version.0.to_string()),
        key: key.clone(),
        kind,
        version,
        old_image: None,
        new_image: (kind != ChangeKind::Remove).then(|| Image {
            version,
            body: activity_body(key, "drift"),
        }),
        committed_at_us: 0,
    }
}

//! The sink as the index side of drift detection ([`tsunagu_engine::drift::VersionDigest`])
//! against osmem-server (`scripts/test-peers/osmem.sh`; skipped when
//! TSUNAGU_TEST_OPENSEARCH_URL is unset): records applied through the sink, then the
//! digest, the items of some leaves and the held versions read back.

mod common;

use std::collections::BTreeMap;
use tsunagu_conformance::sink::{insert, modify, remove};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_engine::drift::tree::{differing_leaves, HashTree, LeafSet};
use tsunagu_engine::drift::{Held, VersionDigest};
use tsunagu_engine::ports::Sink;
use tsunagu_opensearch::drift::MGET_CHUNK;
use tsunagu_opensearch::sink::LIVE_VERSIONS_PAGE;
use tsunagu_opensearch::Refresh;

fn tree_of(leaf_bits: u32, live: &BTreeMap<ItemKey, Version>) -> HashTree {
    let mut tree = HashTree::new(leaf_bits);
    for (key, version) in live {
        tree.add(key.stable_hash(), version.0);
    }
    tree
}

#[tokio::test]
async fn digest_live_in_and_held_read_back_what_was_applied() {
    let Some(url) = common::server_url("digest_live_in_and_held_read_back_what_was_applied") else {
        return;
    };
    let mut config = common::config(&url, "drift");
    // Nothing is refreshed by the writes: the digest must refresh by itself.
    config.refresh = Refresh::False;
    let sink = common::connect(&config).await;

    // More documents than one page of the read-back, with odd characters in some keys.
    let count = LIVE_VERSIONS_PAGE as u32 * 2 + 137;
    let keys: Vec<ItemKey> = (0..count)
        .map(|n| ItemKey::new(format!("deal|{}%", n % 31), format!("activity#{n}")))
        .collect();
    let mut live: BTreeMap<ItemKey, Version> = BTreeMap::new();
    let mut tombstones: BTreeMap<ItemKey, Version> = BTreeMap::new();
    let mut batch = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        let version = 10 + n as u64;
        batch.push(insert(key, version));
        live.insert(key.clone(), Version(version));
    }
    sink.apply(&batch).await.expect("inserts");
    let mut batch = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        let version = live[key].0;
        match n % 7 {
            // Modified: the newer version wins.
            0 | 1 => {
                batch.push(modify(key, version + 5_000));
                live.insert(key.clone(), Version(version + 5_000));
            }
            // Removed: a tombstone at the deletion's version, no longer live.
            2 => {
                batch.push(remove(key, version + 3));
                live.remove(key);
                tombstones.insert(key.clone(), Version(version + 3));
            }
            // A stale replay: refused by the version guard, nothing changes.
            3 => batch.push(modify(key, version - 1)),
            _ => {}
        }
    }
    // A removal of a key never written leaves only a tombstone.
    let never = ItemKey::new("deal|x", "activity#never-live");
    batch.push(remove(&never, 7));
    tombstones.insert(never.clone(), Version(7));
    sink.apply(&batch).await.expect("changes");
    assert!(live.len() > LIVE_VERSIONS_PAGE, "{}", live.len());

    // The digest is exactly the tree of the live documents, tombstones left out.
    for leaf_bits in [12, 15] {
        let digest = sink.digest(leaf_bits).await.expect("digest");
        assert_eq!(digest.items(), live.len() as u64);
        assert!(
            digest == tree_of(leaf_bits, &live),
            "digest at {leaf_bits} leaf bits"
        );
    }
    assert_eq!(
        sink.approximate_items().await.expect("count"),
        live.len() as u64
    );

    // The streaming read-back sees every live document once, in key order, in pages.
    let mut seen = Vec::new();
    let total = sink
        .for_each_live_version(97, |key, version| seen.push((key, version)))
        .await
        .expect("read back");
    assert_eq!(total, live.len() as u64);
    let mut sorted = seen.clone();
    sorted.sort();
    let expected: Vec<(ItemKey, Version)> = live.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(sorted, expected);

    // live_in: exactly the live documents of the leaves asked for; a tombstone's leaf
    // brings no tombstone.
    let leaf_bits = 12;
    let leaf = |key: &ItemKey| HashTree::leaf_of(leaf_bits, key.stable_hash());
    let removed = tombstones.keys().next().expect("a removed key").clone();
    let wanted: Vec<usize> = [&keys[0], &keys[3], &keys[count as usize - 1], &removed]
        .into_iter()
        .map(leaf)
        .collect();
    let mut found = sink
        .live_in(&LeafSet::new(leaf_bits, &wanted))
        .await
        .expect("live_in");
    found.sort();
    let expected: Vec<(ItemKey, Version)> = live
        .iter()
        .filter(|(key, _)| wanted.contains(&leaf(key)))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(found, expected);
    assert!(!found.iter().any(|(key, _)| key == &removed));

    // held: more keys than one _mget, live, deleted and unknown, in the order asked.
    let unknown = ItemKey::new("deal|x", "activity#unknown");
    let mut asked: Vec<ItemKey> = keys.iter().rev().cloned().collect();
    asked.insert(5, unknown.clone());
    asked.push(never.clone());
    asked.push(keys[2].clone());
    assert!(asked.len() > MGET_CHUNK * 2);
    let held = sink.held(&asked).await.expect("held");
    assert_eq!(held.len(), asked.len());
    for (key, held) in asked.iter().zip(&held) {
        let expected = match (live.get(key), tombstones.get(key)) {
            (Some(v), _) => Some(Held::Live(*v)),
            (None, Some(v)) => Some(Held::Deleted(*v)),
            (None, None) => None,
        };
        assert_eq!(*held, expected, "{key}");
    }
    assert_eq!(held[5], None);
    assert_eq!(held[asked.len() - 2], Some(Held::Deleted(Version(7))));

    // A later change shows in exactly its leaf of the next digest.
    let changed = keys[4].clone();
    sink.apply(&[modify(&changed, 1_000_000)])
        .await
        .expect("one more change");
    let before = tree_of(leaf_bits, &live);
    live.insert(changed.clone(), Version(1_000_000));
    let after = sink.digest(leaf_bits).await.expect("digest");
    assert!(after == tree_of(leaf_bits, &live));
    assert_eq!(differing_leaves(&before, &after).0, vec![leaf(&changed)]);
}

#[tokio::test]
async fn reading_a_missing_index_says_what_to_do() {
    let Some(url) = common::server_url("reading_a_missing_index_says_what_to_do") else {
        return;
    };
    // Never connected, so the index was never created.
    let config = common::config(&url, "drift-missing");
    let sink = tsunagu_opensearch::OpenSearchSink::new(&config).expect("client");
    let error = sink.digest(12).await.expect_err("no index").to_string();
    assert!(error.contains(&config.index), "{error}");
    assert!(error.contains("does not exist"), "{error}");
    let error = sink
        .held(&[ItemKey::new("a", "b")])
        .await
        .expect_err("no index")
        .to_string();
    assert!(error.contains("does not exist"), "{error}");
}

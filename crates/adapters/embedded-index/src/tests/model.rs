//! Property: whatever the order, duplication and batching of changes, the live versions
//! of the index equal the model "highest version per key, unless that is a delete".

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;
use tsunagu_engine::ports::Sink;

#[derive(Debug, Clone)]
struct Change {
    item: usize,
    version: u64,
    delete: bool,
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    // Distinct versions per item (the primary never reuses one), random kinds.
    prop::collection::vec((0..4usize, 1..20u64, any::<bool>()), 1..40).prop_map(|raw| {
        let mut seen = std::collections::HashSet::new();
        raw.into_iter()
            .filter(|(item, version, _)| seen.insert((*item, *version)))
            .map(|(item, version, delete)| Change {
                item,
                version,
                delete,
            })
            .collect()
    })
}

fn record_of(change: &Change) -> ChangeRecord {
    let a = activity(&format!("a{}", change.item), "d1");
    if change.delete {
        remove(&a.key(), change.version)
    } else {
        upsert(&a, change.version)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn live_versions_match_the_model(
        (changes, shuffled) in changes().prop_flat_map(|c| (Just(c.clone()), Just(c).prop_shuffle())),
        replays in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        batch in 1..6usize,
    ) {
        // Applied order: any permutation of the changes, plus replays of random changes.
        let mut applied: Vec<ChangeRecord> = shuffled.iter().map(record_of).collect();
        for r in &replays {
            applied.push(record_of(&changes[r.index(changes.len())]));
        }

        let mut model: HashMap<ItemKey, (u64, bool)> = HashMap::new();
        for c in &changes {
            let key = activity(&format!("a{}", c.item), "d1").key();
            let entry = model.entry(key).or_insert((0, true));
            if c.version > entry.0 {
                *entry = (c.version, c.delete);
            }
        }
        let expected: HashMap<ItemKey, Version> = model
            .into_iter()
            .filter(|(_, (_, deleted))| !deleted)
            .map(|(key, (version, _))| (key, Version(version)))
            .collect();

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let live = runtime.block_on(async {
            let index = open(dir.path());
            for chunk in applied.chunks(batch) {
                index.apply(chunk).await.expect("apply");
            }
            let live = index.live_versions().expect("live versions");
            index.close().await;
            // And after reopening, from the index alone.
            let reopened = open(dir.path());
            assert_eq!(reopened.live_versions().expect("live versions"), live);
            live
        });
        prop_assert_eq!(live, expected);
    }
}

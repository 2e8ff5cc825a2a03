//! Drift detection and repair over the in-memory ports: drift injected straight into the
//! sink (past its version guard) while a writer keeps writing is reported exactly, repaired
//! through the sink, and a second run is clean; changes still in flight never count.

use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_engine::drift::{ReconcileOptions, ReconcileReport, Reconciler};
use tsunagu_engine::memory::{Held, MemorySink, MemoryState, MemoryStream};
use tsunagu_engine::{Consumer, ConsumerConfig, Engine, Pipeline};

fn key(deal: u32, n: u32) -> ItemKey {
    ItemKey::new(format!("deal-{deal}"), format!("activity#{n}"))
}

async fn start(
    stream: &Arc<MemoryStream>,
    state: &Arc<MemoryState>,
    sink: &Arc<MemorySink>,
) -> Pipeline {
    let engine = Engine::new(stream.clone(), state.clone(), state.clone());
    engine
        .start(vec![Consumer {
            config: ConsumerConfig {
                batch_size: 50,
                checkpoint_interval_ms: 5,
                ..ConsumerConfig::named("search")
            },
            sink: sink.clone(),
        }])
        .await
        .expect("start the pipeline")
}

async fn caught_up(stream: &MemoryStream, sink: &MemorySink) {
    let start = Instant::now();
    while sink.live_versions() != stream.versions() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the pipeline did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn reconcile(
    stream: &MemoryStream,
    state: &MemoryState,
    sink: &MemorySink,
    repair: bool,
) -> ReconcileReport {
    Reconciler {
        consumer: "search",
        primary: stream,
        index: sink,
        sink: Some(sink),
        source: stream,
        checkpoints: state,
    }
    .run(&ReconcileOptions {
        repair,
        settle_timeout: Duration::from_secs(10),
        ..ReconcileOptions::default()
    })
    .await
    .expect("reconcile")
}

fn listed(report: &ReconcileReport) -> [BTreeSet<ItemKey>; 3] {
    [&report.missing_keys, &report.extra_keys, &report.stale_keys]
        .map(|list| list.iter().map(|d| d.key()).collect())
}

/// Writes past the sink's version guard: what replication would never do.
fn inject(sink: &MemorySink, missing: &[ItemKey], stale: &[ItemKey], extra: &[ItemKey]) {
    let mut items: HashMap<ItemKey, Held> = sink.snapshot();
    for key in missing {
        items.remove(key);
    }
    for key in stale {
        if let Some(held) = items.get_mut(key) {
            held.version = Version(held.version.0 - 1);
        }
    }
    for key in extra {
        items.insert(
            key.clone(),
            Held {
                version: Version(1),
                body: Some(json!({"ghost": true})),
            },
        );
    }
    sink.restore(items);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_drift_is_reported_exactly_and_repaired_while_writes_go_on() {
    let stream = Arc::new(MemoryStream::new(4));
    let state = Arc::new(MemoryState::new());
    let sink = Arc::new(MemorySink::new());
    for n in 0..2_000 {
        stream.put(key(n % 50, n), json!({ "n": n }));
    }
    let pipeline = start(&stream, &state, &sink).await;
    caught_up(&stream, &sink).await;

    let missing = vec![key(1, 1), key(2, 2), key(3, 3)];
    let stale = vec![key(4, 4), key(5, 5)];
    let extra = vec![key(900, 1), key(901, 2)];
    inject(&sink, &missing, &stale, &extra);

    // A writer keeps writing items other than the drifted ones meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stream, stop) = (stream.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 10_000;
            while !stop.load(Ordering::Relaxed) {
                stream.put(key(60 + n % 10, n), json!({ "n": n }));
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let report = reconcile(&stream, &state, &sink, false).await;
    let [m, e, s] = listed(&report);
    assert_eq!(m, missing.iter().cloned().collect(), "{report:#?}");
    assert_eq!(e, extra.iter().cloned().collect(), "{report:#?}");
    assert_eq!(s, stale.iter().cloned().collect(), "{report:#?}");
    assert_eq!(report.remaining, 7);
    assert!(report.read_individually < report.checked / 4, "{report:#?}");

    let repaired = reconcile(&stream, &state, &sink, true).await;
    assert_eq!(repaired.drift(), 7, "{repaired:#?}");
    assert_eq!(repaired.repaired, 7, "{repaired:#?}");
    assert!(repaired.is_clean());

    let again = reconcile(&stream, &state, &sink, false).await;
    assert_eq!(again.drift(), 0, "{again:#?}");

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    caught_up(&stream, &sink).await;
    assert_eq!(sink.live_versions(), stream.versions());
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_not_yet_applied_are_in_flight_not_drift() {
    let stream = Arc::new(MemoryStream::new(2));
    let state = Arc::new(MemoryState::new());
    let sink = Arc::new(MemorySink::new());
    for n in 0..200 {
        stream.put(key(n % 7, n), json!({ "n": n }));
    }
    // No pipeline runs: every difference is a change the stream still carries.
    let report = Reconciler {
        consumer: "search",
        primary: stream.as_ref(),
        index: sink.as_ref(),
        sink: None,
        source: stream.as_ref(),
        checkpoints: state.as_ref(),
    }
    .run(&ReconcileOptions {
        settle_timeout: Duration::from_millis(200),
        ..ReconcileOptions::default()
    })
    .await
    .expect("reconcile");
    assert_eq!(report.drift(), 0, "{report:#?}");
    assert_eq!(report.in_flight, 200);
    assert!(!report.checkpointed && !report.settled);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever drift is injected into a caught-up sink, the report lists exactly those
    /// keys, and a repair leaves the sink equal to the primary.
    #[test]
    fn reported_drift_is_exactly_the_injected_drift(
        items in 1u32..300,
        deleted in proptest::collection::btree_set(0u32..300, 0..20),
        missing in proptest::collection::btree_set(0u32..300, 0..8),
        stale in proptest::collection::btree_set(0u32..300, 0..8),
        extra in proptest::collection::btree_set(1_000u32..1_100, 0..8),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let stream = Arc::new(MemoryStream::new(3));
            let state = Arc::new(MemoryState::new());
            let sink = Arc::new(MemorySink::new());
            for n in 0..items {
                stream.put(key(n % 13, n), json!({ "n": n }));
                // Modified twice, so that a stale version exists to fall back to.
                stream.put(key(n % 13, n), json!({ "n": n, "again": true }));
            }
            for n in &deleted {
                stream.delete(&key(n % 13, *n));
            }
            let pipeline = start(&stream, &state, &sink).await;
            caught_up(&stream, &sink).await;
            let live = stream.versions();
            let pick = |set: &BTreeSet<u32>| -> Vec<ItemKey> {
                set.iter().map(|n| key(n % 13, *n)).filter(|k| live.contains_key(k)).collect()
            };
            let missing = pick(&missing);
            let stale: Vec<ItemKey> = pick(&stale).into_iter().filter(|k| !missing.contains(k)).collect();
            let extra: Vec<ItemKey> = extra.iter().map(|n| key(n % 13, *n)).collect();
            inject(&sink, &missing, &stale, &extra);
            let report = reconcile(&stream, &state, &sink, true).await;
            let [m, e, s] = listed(&report);
            prop_assert_eq!(m, missing.iter().cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(e, extra.iter().cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(s, stale.iter().cloned().collect::<BTreeSet<_>>());
            prop_assert!(report.is_clean(), "{:#?}", report);
            prop_assert_eq!(sink.live_versions(), stream.versions());
            pipeline.shutdown().await;
            Ok(())
        })?;
    }
}

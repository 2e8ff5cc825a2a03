//! Engine behaviour end to end over the in-memory stream and a version-guarded sink with
//! injected failures: convergence, per-item order, restarts, poison records, fan-out;
//! backfills and the recovery from falling behind retention in [`backfill`].

#[path = "engine/backfill.rs"]
mod backfill;

use async_trait::async_trait;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tsunagu_domain::{ChangeRecord, ItemKey, Version};
use tsunagu_engine::memory::{MemorySink, MemoryState, MemoryStream};
use tsunagu_engine::ports::{DeadLetterQueue, RecordFailure, Sink, SinkError};
use tsunagu_engine::redrive::redrive;
use tsunagu_engine::{Consumer, ConsumerConfig, Engine, Ordering};

/// A sink that fails on purpose and remembers, per item, the versions it was handed in
/// successful calls, to catch order violations.
struct FlakySink {
    inner: MemorySink,
    rng: Mutex<rand::rngs::StdRng>,
    failure_rate: f64,
    poison: Mutex<HashSet<ItemKey>>,
    delivered: Mutex<HashMap<ItemKey, Vec<Version>>>,
    order_violations: Mutex<Vec<String>>,
    /// Visibility and durability, split as a search index splits refresh and flush: each
    /// successful call raises the visible mark; now and then (or on flush) the state is
    /// made durable. A crash goes back to the durable state.
    visible: std::sync::atomic::AtomicU64,
    durable: Mutex<(u64, HashMap<ItemKey, tsunagu_engine::memory::Held>)>,
    durable_every: u64,
}

impl FlakySink {
    fn new(seed: u64, failure_rate: f64) -> Self {
        Self {
            inner: MemorySink::new(),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            failure_rate,
            poison: Mutex::new(HashSet::new()),
            delivered: Mutex::new(HashMap::new()),
            order_violations: Mutex::new(Vec::new()),
            visible: std::sync::atomic::AtomicU64::new(0),
            durable: Mutex::new((0, HashMap::new())),
            durable_every: 1,
        }
    }

    /// A sink that makes its state durable only every `n` calls (and on flush).
    fn lazily_durable(seed: u64, failure_rate: f64, n: u64) -> Self {
        Self {
            durable_every: n,
            ..Self::new(seed, failure_rate)
        }
    }

    fn make_durable(&self) {
        let mut durable = self.durable.lock().unwrap();
        *durable = (
            self.visible.load(std::sync::atomic::Ordering::SeqCst),
            self.inner.snapshot(),
        );
    }

    /// A crash of the sink's process: whatever was not durable is gone.
    fn crash(&self) {
        let durable = self.durable.lock().unwrap();
        self.inner.restore(durable.1.clone());
        self.visible
            .store(durable.0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forgets delivery history (after a restart replays are expected, not violations).
    fn new_run(&self) {
        self.delivered.lock().unwrap().clear();
    }

    fn record_delivery(&self, record: &ChangeRecord) {
        let mut delivered = self.delivered.lock().unwrap();
        let seen = delivered.entry(record.key.clone()).or_default();
        if let Some(last) = seen.last() {
            if *last >= record.version {
                self.order_violations.lock().unwrap().push(format!(
                    "{}: version {} delivered after {}",
                    record.key, record.version, last
                ));
            }
        }
        seen.push(record.version);
    }
}

#[async_trait]
impl Sink for FlakySink {
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        let roll: f64 = self.rng.lock().unwrap().random();
        if roll < self.failure_rate / 2.0 {
            return Err(SinkError::Batch {
                retryable: true,
                message: "injected outage".into(),
            });
        }
        let poison = self.poison.lock().unwrap().clone();
        let mut failures = Vec::new();
        let mut ok = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let flaky = roll < self.failure_rate && self.rng.lock().unwrap().random_bool(0.5);
            if poison.contains(&record.key) || flaky {
                failures.push(RecordFailure {
                    index,
                    retryable: true,
                    message: format!("injected failure for {}", record.key),
                });
            } else {
                ok.push(record.clone());
            }
        }
        {
            // Applying and raising the mark together, so a concurrent snapshot never
            // pairs a mark with a state that lacks its records.
            let _durable = self.durable.lock().unwrap();
            self.inner.apply_now(&ok)?;
            self.visible
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if self
            .visible
            .load(std::sync::atomic::Ordering::SeqCst)
            .is_multiple_of(self.durable_every)
        {
            self.make_durable();
        }
        for record in &ok {
            self.record_delivery(record);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Records(failures))
        }
    }

    fn visible_mark(&self) -> u64 {
        self.visible.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn durable_mark(&self) -> u64 {
        self.durable.lock().unwrap().0
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.make_durable();
        Ok(())
    }
}

fn consumer(name: &str, batch_size: usize, pf: u32) -> ConsumerConfig {
    ConsumerConfig {
        batch_size,
        parallelization_factor: pf,
        max_retry_attempts: 30,
        retry_initial_backoff_ms: 1,
        retry_max_backoff_ms: 5,
        checkpoint_interval_ms: 5,
        ..ConsumerConfig::named(name)
    }
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    wait_for_nothing_missing(timeout, || {
        if done() {
            Vec::new()
        } else {
            vec![what.to_string()]
        }
    })
    .await;
}

/// Waits until `missing` names nothing; a timeout says what was still missing.
async fn wait_for_nothing_missing(timeout: Duration, mut missing: impl FnMut() -> Vec<String>) {
    let start = Instant::now();
    loop {
        let left = missing();
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {}",
            left.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn key(i: u8) -> ItemKey {
    ItemKey::new(format!("deal-{}", i % 5), format!("activity#{i}"))
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8),
    Delete(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12).prop_map(Op::Put),
        2 => (0u8..12).prop_map(Op::Delete),
        1 => Just(Op::Restart),
    ]
}

fn run_scenario(
    ops: Vec<Op>,
    pf: u32,
    batch_size: usize,
    shards: u32,
    ordering: Ordering,
    seed: u64,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = Arc::new(MemoryStream::new(shards));
        let state = Arc::new(MemoryState::new());
        let sink = Arc::new(FlakySink::lazily_durable(seed, 0.3, 1 + seed % 4));
        let engine = Engine::new(stream.clone(), state.clone(), state.clone());
        let config = ConsumerConfig {
            ordering,
            ..consumer("search", batch_size, pf)
        };
        let start = || {
            engine.start(vec![Consumer {
                config: config.clone(),
                sink: sink.clone(),
            }])
        };
        let mut pipeline = start().await.unwrap();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(i) => {
                    stream.put(key(i), json!({ "n": n }));
                }
                Op::Delete(i) => {
                    stream.delete(&key(i));
                }
                Op::Restart => {
                    // A crash: no shutdown, whatever was in flight is lost and replayed,
                    // and the sink loses what it had not made durable.
                    pipeline.abort().await;
                    sink.crash();
                    sink.new_run();
                    pipeline = start().await.unwrap();
                }
            }
            if n % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let expected: BTreeMap<ItemKey, Version> = stream.versions();
        let records = stream.records();
        let covered = |shard: &tsunagu_domain::ShardId,
                       checkpoint: Option<&tsunagu_domain::Position>| {
            let cp: u64 = checkpoint.map(|p| p.0.parse().unwrap()).unwrap_or(0);
            records
                .iter()
                .filter(|r| &r.shard == shard)
                .all(|r| r.version.0 <= cp)
        };
        wait_until(
            "the sink and the checkpoints to converge",
            Duration::from_secs(20),
            || {
                // The sink's periodic flush, as an index makes its refreshes durable on a
                // timer.
                sink.make_durable();
                sink.inner.live_versions() == expected
                    && pipeline.status()[0]
                        .shards
                        .iter()
                        .all(|s| covered(&s.shard, s.checkpoint.as_ref()))
            },
        )
        .await;
        pipeline.shutdown().await;
        prop_assert_eq!(
            state.count("search").await.unwrap(),
            0,
            "nothing should be dead-lettered"
        );
        let violations = sink.order_violations.lock().unwrap().clone();
        prop_assert!(violations.is_empty(), "order violations: {:?}", violations);
        // The checkpoints were stored, not only tracked: a restart delivers nothing new.
        let checkpoints = tsunagu_engine::ports::CheckpointStore::load(state.as_ref(), "search")
            .await
            .unwrap();
        for record in &records {
            prop_assert!(
                covered(&record.shard, checkpoints.get(&record.shard)),
                "record {} not checkpointed",
                record.version
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

    /// Random writes, random sink failures and random crashes: the sink ends equal to the
    /// primary, no change of an item is delivered after a newer one within a run, and
    /// nothing is lost.
    #[test]
    fn converges_in_order_despite_failures_and_crashes(
        ops in proptest::collection::vec(op(), 1..80),
        pf in 1u32..6,
        batch_size in 1usize..12,
        shards in 1u32..4,
        by_partition in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let ordering = if by_partition { Ordering::PartitionKey } else { Ordering::Item };
        run_scenario(ops, pf, batch_size, shards, ordering, seed)?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_whole_and_others_keep_flowing_then_redriven() {
    let stream = Arc::new(MemoryStream::new(2));
    let state = Arc::new(MemoryState::new());
    let sink = Arc::new(FlakySink::new(1, 0.0));
    let poisoned = key(3);
    sink.poison.lock().unwrap().insert(poisoned.clone());
    let config = ConsumerConfig {
        max_retry_attempts: 2,
        ..consumer("search", 10, 2)
    };
    let engine = Engine::new(stream.clone(), state.clone(), state.clone());
    let pipeline = engine
        .start(vec![Consumer {
            config,
            sink: sink.clone(),
        }])
        .await
        .unwrap();
    for i in 0..12 {
        stream.put(key(i), json!({ "memo": format!("活動 {i}") }));
    }
    wait_until(
        "the poison record to be dead-lettered",
        Duration::from_secs(10),
        || futures_count(&state) == 1,
    )
    .await;
    let mut expected = stream.versions();
    let poisoned_version = expected.remove(&poisoned).unwrap();
    wait_until("every other key", Duration::from_secs(10), || {
        sink.inner.live_versions() == expected
    })
    .await;
    let letters = state.list(Some("search"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.record.key, poisoned);
    assert_eq!(letter.record.version, poisoned_version);
    assert_eq!(
        letter.record.new_image.as_ref().unwrap().body,
        json!({ "memo": "活動 3" })
    );
    assert!(letter.attempts >= 3, "attempts: {}", letter.attempts);
    assert!(
        letter.error.contains("injected failure"),
        "{}",
        letter.error
    );
    pipeline.shutdown().await;

    // Still broken: the redrive fails and the letter stays.
    let report = redrive(state.as_ref(), sink.as_ref(), "search", None)
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(state.count("search").await.unwrap(), 1);
    // Fixed: the redrive applies it once and empties the queue.
    sink.poison.lock().unwrap().clear();
    let report = redrive(state.as_ref(), sink.as_ref(), "search", None)
        .await
        .unwrap();
    assert_eq!(report.redriven, [letter.id]);
    assert_eq!(state.count("search").await.unwrap(), 0);
    assert_eq!(sink.inner.live_versions(), stream.versions());
}

fn futures_count(state: &MemoryState) -> u64 {
    // The in-memory queue answers at once; block on it from the sync predicate.
    futures_lite_block_on(state.count("search")).unwrap_or(0)
}

fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_consumers_with_different_knobs_both_converge() {
    let stream = Arc::new(MemoryStream::new(3));
    let state = Arc::new(MemoryState::new());
    let narrow = Arc::new(FlakySink::new(7, 0.2));
    let wide = Arc::new(FlakySink::new(8, 0.2));
    let engine = Engine::new(stream.clone(), state.clone(), state.clone());
    let pipeline = engine
        .start(vec![
            Consumer {
                config: consumer("narrow", 1, 1),
                sink: narrow.clone(),
            },
            Consumer {
                config: consumer("wide", 50, 7),
                sink: wide.clone(),
            },
        ])
        .await
        .unwrap();
    for n in 0..400u32 {
        let i = (n * 7 % 40) as u8;
        if n % 9 == 0 {
            stream.delete(&key(i));
        } else {
            stream.put(key(i), json!({ "n": n }));
        }
    }
    let expected = stream.versions();
    wait_until("both consumers", Duration::from_secs(20), || {
        narrow.inner.live_versions() == expected && wide.inner.live_versions() == expected
    })
    .await;
    pipeline.shutdown().await;
    assert!(narrow.order_violations.lock().unwrap().is_empty());
    assert!(wide.order_violations.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_consumer_name_is_rejected_naming_the_field() {
    let stream = Arc::new(MemoryStream::new(1));
    let state = Arc::new(MemoryState::new());
    let engine = Engine::new(stream, state.clone(), state);
    let sink = Arc::new(MemorySink::new());
    let err = engine
        .start(vec![
            Consumer {
                config: ConsumerConfig::named("a"),
                sink: sink.clone(),
            },
            Consumer {
                config: ConsumerConfig::named("a"),
                sink,
            },
        ])
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("consumers[1].name"), "{err}");
}

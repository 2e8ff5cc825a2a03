//! Several workers sharing one stream through leases: balanced at start, a crashed
//! worker's shards move to the others after its leases expire, a stopped worker hands its
//! shards over at once, and through all of it nothing is lost and the sink never steps
//! back to an older version of an item.

use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tsunagu_domain::{ChangeRecord, ItemKey};
use tsunagu_engine::lease::LeaseOptions;
use tsunagu_engine::memory::{MemoryLeases, MemorySink, MemoryState, MemoryStream};
use tsunagu_engine::ports::{Lease, LeaseStore, Sink, SinkError};
use tsunagu_engine::status::ShardState;
use tsunagu_engine::{Consumer, ConsumerConfig, Engine, Pipeline};

const SHARDS: u32 = 6;
const LEASE: Duration = Duration::from_millis(900);

/// The sink every worker applies to, watching the state it holds: per item, each change
/// that took effect must carry a higher version than the one before (replays of a taken
/// over shard are no-ops, never steps back).
#[derive(Default)]
struct WatchedSink {
    inner: MemorySink,
    apply: tokio::sync::Mutex<()>,
    violations: Mutex<Vec<String>>,
    replays: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl Sink for WatchedSink {
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        let _one_at_a_time = self.apply.lock().await;
        for record in records {
            let before = self.inner.get(&record.key).map(|h| h.version);
            self.inner.apply_now(std::slice::from_ref(record))?;
            let after = self.inner.get(&record.key).map(|h| h.version);
            if after == before {
                self.replays.fetch_add(1, SeqCst);
            } else if after != Some(record.version) || before >= after {
                self.violations.lock().unwrap().push(format!(
                    "{}: held {before:?}, applied {}, now {after:?}",
                    record.key, record.version
                ));
            }
        }
        Ok(())
    }
}

struct Worker {
    pipeline: Pipeline,
}

async fn start_worker(
    name: &str,
    stream: &Arc<MemoryStream>,
    state: &Arc<MemoryState>,
    leases: &Arc<MemoryLeases>,
    sink: &Arc<WatchedSink>,
) -> Worker {
    let options = LeaseOptions {
        renew_interval: Duration::from_millis(100),
        ..LeaseOptions::new(name, LEASE)
    };
    let pipeline = Engine::new(stream.clone(), state.clone(), state.clone())
        .with_leases(leases.clone(), options)
        .start(vec![Consumer {
            config: ConsumerConfig {
                batch_size: 20,
                parallelization_factor: 2,
                checkpoint_interval_ms: 20,
                ..ConsumerConfig::named("search")
            },
            sink: sink.clone(),
        }])
        .await
        .unwrap();
    Worker { pipeline }
}

/// Live owners and how many shards each holds.
async fn owners(leases: &MemoryLeases) -> BTreeMap<String, usize> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let all: Vec<Lease> = leases.leases("search").await.unwrap();
    let mut load = BTreeMap::new();
    for lease in all {
        if let Some(owner) = lease.owner.filter(|_| lease.expires_at_ms > now) {
            *load.entry(owner).or_default() += 1;
        }
    }
    load
}

async fn wait_for_owners(leases: &MemoryLeases, want: &[(&str, usize)], within: Duration) {
    let want: BTreeMap<String, usize> = want.iter().map(|(w, n)| (w.to_string(), *n)).collect();
    let start = Instant::now();
    loop {
        let load = owners(leases).await;
        if load == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "leases did not settle to {want:?} within {within:?}: {load:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_disjoint(pipelines: &[&Pipeline]) {
    let start = Instant::now();
    loop {
        let mut running = BTreeMap::new();
        for (w, pipeline) in pipelines.iter().enumerate() {
            for consumer in pipeline.status() {
                for shard in consumer.shards {
                    if matches!(shard.state, ShardState::Running) {
                        running.entry(shard.shard).or_insert_with(Vec::new).push(w);
                    }
                }
            }
        }
        if running.len() == SHARDS as usize && running.values().all(|w| w.len() == 1) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "shards not read by exactly one worker each: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_converged(stream: &MemoryStream, sink: &WatchedSink) {
    let start = Instant::now();
    loop {
        if sink.inner.live_versions() == stream.versions() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the sink did not converge to the primary"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_shards_and_take_over_from_a_crashed_or_stopped_worker() {
    let stream = Arc::new(MemoryStream::new(SHARDS));
    let state = Arc::new(MemoryState::new());
    let leases = Arc::new(MemoryLeases::new());
    let sink = Arc::new(WatchedSink::default());

    // A writer keeps changing items (some deleted) the whole time.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (stream, writing) = (stream.clone(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while writing.load(SeqCst) {
                let key = ItemKey::new(format!("deal-{}", n % 17), format!("a#{}", n % 61));
                if n.is_multiple_of(11) {
                    stream.delete(&key);
                } else {
                    stream.put(key, json!({ "n": n }));
                }
                n += 1;
                if n.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };

    let a = start_worker("a", &stream, &state, &leases, &sink).await;
    let b = start_worker("b", &stream, &state, &leases, &sink).await;
    let c = start_worker("c", &stream, &state, &leases, &sink).await;
    wait_for_owners(
        &leases,
        &[("a", 2), ("b", 2), ("c", 2)],
        Duration::from_secs(10),
    )
    .await;
    // Each shard is read by exactly one worker: those that lost a lease stopped reading.
    wait_disjoint(&[&a.pipeline, &b.pipeline, &c.pipeline]).await;

    // A crash: b's leases stay until they expire, then a and c take them.
    b.pipeline.abort().await;
    let crashed_at = Instant::now();
    wait_for_owners(&leases, &[("a", 3), ("c", 3)], Duration::from_secs(10)).await;
    assert!(
        crashed_at.elapsed() >= LEASE / 2,
        "b's shards moved before its leases could expire"
    );

    // A graceful stop: c releases its leases, so a takes them without waiting for expiry.
    c.pipeline.shutdown().await;
    let stopped_at = Instant::now();
    wait_for_owners(&leases, &[("a", 6)], Duration::from_secs(10)).await;
    assert!(
        stopped_at.elapsed() < LEASE,
        "a handed-off lease waited for its expiry ({:?})",
        stopped_at.elapsed()
    );

    writing.store(false, SeqCst);
    writer.await.unwrap();
    wait_converged(&stream, &sink).await;
    a.pipeline.shutdown().await;

    let violations = sink.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "out of order: {violations:?}");
    println!(
        "records replayed after hand-overs (no-ops): {}",
        sink.replays.load(SeqCst)
    );
    // Every lease is released, and checkpointed at its shard's last record.
    let mut last = HashMap::new();
    for record in stream.records() {
        last.insert(record.shard.clone(), record.position.clone());
    }
    for lease in leases.leases("search").await.unwrap() {
        assert_eq!(lease.owner, None, "{lease:?}");
        assert_eq!(
            lease.checkpoint.as_ref(),
            last.get(&lease.shard),
            "{lease:?}"
        );
    }
}

//! Backfill over the in-memory ports: the whole-table mode (a scanner whose segments do
//! not follow the stream's shards, as DynamoDB's) and the recovery of consumers that fell
//! behind the stream's retention.

use super::{consumer, wait_for_nothing_missing, wait_until, FlakySink};
use async_trait::async_trait;
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tsunagu_domain::{ChangeKind, ChangeRecord, ItemKey, Position, ShardId, Version};
use tsunagu_engine::backfill::{
    whole_table_progress_id, AfterBackfill, Backfill, BackfillOptions, BackfillProgressStore,
    BackfillReport,
};
use tsunagu_engine::memory::{MemoryScanner, MemorySink, MemoryState, MemoryStream};
use tsunagu_engine::ports::{
    ChangeSource, CheckpointStore, ItemScanner, ReadBatch, ReadFrom, ScanPage, ShardInfo, Sink,
    SourceError,
};
use tsunagu_engine::status::ShardState;
use tsunagu_engine::{Consumer, Engine};

fn item(i: u16) -> ItemKey {
    ItemKey::new(format!("deal-{}", i % 13), format!("activity#{i}"))
}

#[derive(Debug, Clone)]
enum Write {
    Put(u16),
    Delete(u16),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        4 => (0u16..60).prop_map(Write::Put),
        1 => (0u16..60).prop_map(Write::Delete),
    ]
}

fn apply_write(stream: &MemoryStream, write: &Write, n: usize) {
    match write {
        Write::Put(i) => {
            stream.put(item(*i), json!({ "n": n }));
        }
        Write::Delete(i) => {
            stream.delete(&item(*i));
        }
    }
}

/// A scanner that writes to the primary while it scans (one write per page) and can be
/// made to fail after a number of pages, like a backfill killed half-way.
struct Scripted {
    inner: MemoryScanner,
    stream: Arc<MemoryStream>,
    writes: Mutex<VecDeque<Write>>,
    pages_before_failure: Mutex<Option<usize>>,
    /// Scans begun from the start of segment 0: one per pass over the table.
    passes: AtomicUsize,
}

impl Scripted {
    fn new(inner: MemoryScanner, stream: Arc<MemoryStream>) -> Self {
        Self {
            inner,
            stream,
            writes: Mutex::new(VecDeque::new()),
            pages_before_failure: Mutex::new(None),
            passes: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl ItemScanner for Scripted {
    async fn scan(
        &self,
        segment: u32,
        segments: u32,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<ScanPage, SourceError> {
        if let Some(left) = self.pages_before_failure.lock().unwrap().as_mut() {
            if *left == 0 {
                return Err(SourceError::Fatal("killed on purpose".into()));
            }
            *left -= 1;
        }
        if segment == 0 && after.is_none() {
            self.passes.fetch_add(1, AtomicOrdering::SeqCst);
        }
        let write = self.writes.lock().unwrap().pop_front();
        if let Some(write) = write {
            apply_write(&self.stream, &write, 1_000_000 + segment as usize);
        }
        self.inner.scan(segment, segments, after, limit).await
    }

    fn segments_follow_shards(&self) -> bool {
        self.inner.segments_follow_shards()
    }

    fn scan_segments(&self) -> u32 {
        self.inner.scan_segments()
    }
}

fn backfill<'a>(
    stream: &'a MemoryStream,
    scanner: &'a dyn ItemScanner,
    sink: &'a dyn Sink,
    state: &'a MemoryState,
) -> Backfill<'a> {
    Backfill {
        consumer: "search",
        source: stream,
        scanner,
        sink,
        checkpoints: state,
        dlq: state,
        progress: state,
    }
}

/// Applies what the stream holds after each shard's checkpoint, as the pipeline would
/// after the hand-over.
async fn catch_up(stream: &MemoryStream, state: &MemoryState, sink: &MemorySink) {
    let checkpoints = CheckpointStore::load(state, "search").await.unwrap();
    for shard in stream.shards().await.unwrap() {
        let mut from = match checkpoints.get(&shard.id) {
            Some(p) => ReadFrom::After(p.clone()),
            None => ReadFrom::TrimHorizon,
        };
        loop {
            let batch = stream
                .read(&shard.id, &from, 100, Duration::ZERO)
                .await
                .unwrap();
            let Some(last) = batch.records.last() else {
                break;
            };
            from = ReadFrom::After(last.position.clone());
            sink.apply(&batch.records).await.unwrap();
        }
    }
}

fn options(batch_size: usize, parallelism: usize) -> BackfillOptions {
    BackfillOptions {
        batch_size,
        parallelism,
        save_interval: Duration::ZERO,
        ..BackfillOptions::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn whole_table_scenario(
    before: Vec<Write>,
    during: Vec<Write>,
    shards: u32,
    segments: u32,
    resumed_segments: u32,
    batch_size: usize,
    parallelism: usize,
    kill_after: Option<usize>,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = Arc::new(MemoryStream::new(shards));
        for (n, w) in before.iter().enumerate() {
            apply_write(&stream, w, n);
        }
        let state = MemoryState::new();
        let sink = MemorySink::new();
        let scanner = Scripted::new(
            MemoryScanner::by_key_hash(stream.clone(), segments),
            stream.clone(),
        );
        *scanner.writes.lock().unwrap() = during.into();
        *scanner.pages_before_failure.lock().unwrap() = kill_after;
        let opts = options(batch_size, parallelism);
        let first = backfill(&stream, &scanner, &sink, &state)
            .run(None, &opts, &|_| {})
            .await;
        if let Ok(report) = &first {
            prop_assert_eq!(report.shards as u32, shards);
        } else {
            // Killed: the progress is kept, and a scanner that now prefers another
            // segment count resumes with the count the scan began with.
            let saved = state.load_backfill("search").await.unwrap();
            let record = saved
                .get(&whole_table_progress_id(None))
                .expect("the scan's progress is saved");
            prop_assert_eq!(record.segments.len() as u32, segments);
            prop_assert_eq!(record.targets.len() as u32, shards);
            let again = Scripted::new(
                MemoryScanner::by_key_hash(stream.clone(), resumed_segments),
                stream.clone(),
            );
            *again.writes.lock().unwrap() = scanner.writes.lock().unwrap().drain(..).collect();
            let report = backfill(&stream, &again, &sink, &state)
                .run(None, &opts, &|_| {})
                .await
                .unwrap();
            prop_assert_eq!(report.shards as u32, shards);
        }
        prop_assert!(
            state.load_backfill("search").await.unwrap().is_empty(),
            "a finished backfill forgets its progress"
        );
        catch_up(&stream, &state, &sink).await;
        prop_assert_eq!(sink.live_versions(), stream.versions());
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whatever the writes before and during the scan, the segment counts, the
    /// parallelism and where the scan is killed and resumed: after the whole-table
    /// backfill and the stream's records after the targets, the sink holds exactly the
    /// primary's live items at their versions.
    #[test]
    fn a_whole_table_backfill_then_the_stream_equals_the_primary(
        before in proptest::collection::vec(write(), 0..120),
        during in proptest::collection::vec(write(), 0..30),
        shards in 1u32..5,
        segments in 1u32..7,
        resumed_segments in 1u32..7,
        batch_size in 1usize..16,
        parallelism in 1usize..5,
        kill_after in proptest::option::of(0usize..12),
    ) {
        whole_table_scenario(
            before, during, shards, segments, resumed_segments, batch_size, parallelism,
            kill_after,
        )?;
    }
}

#[tokio::test]
async fn a_whole_table_backfill_sets_every_checkpoint_to_its_target() {
    let stream = Arc::new(MemoryStream::new(4));
    for i in 0..200 {
        stream.put(item(i), json!({ "i": i }));
    }
    let state = MemoryState::new();
    let sink = MemorySink::new();
    let scanner = MemoryScanner::by_key_hash(stream.clone(), 3);
    let counted = AtomicU64::new(0);
    let report: BackfillReport = backfill(&stream, &scanner, &sink, &state)
        .run(None, &options(17, 2), &|n| {
            counted.fetch_add(n, AtomicOrdering::SeqCst);
        })
        .await
        .unwrap();
    assert_eq!((report.shards, report.items), (4, 200));
    assert_eq!(counted.load(AtomicOrdering::SeqCst), 200);
    assert_eq!(sink.live_versions(), stream.versions());
    let checkpoints = CheckpointStore::load(&state, "search").await.unwrap();
    for shard in stream.shards().await.unwrap() {
        assert_eq!(
            checkpoints.get(&shard.id),
            stream.latest_position(&shard.id).await.unwrap().as_ref(),
            "shard {}",
            shard.id
        );
    }
    assert_eq!(
        scanner.approximate_item_count().await.unwrap(),
        Some(200),
        "the in-memory scanner knows its count"
    );
}

#[tokio::test]
async fn a_killed_whole_table_backfill_resumes_without_applying_again() {
    let stream = Arc::new(MemoryStream::new(2));
    for i in 0..300 {
        stream.put(item(i), json!({ "i": i }));
    }
    let state = MemoryState::new();
    let sink = MemorySink::new();
    let scanner = Scripted::new(
        MemoryScanner::by_key_hash(stream.clone(), 4),
        stream.clone(),
    );
    *scanner.pages_before_failure.lock().unwrap() = Some(7);
    // One worker and a save after every page: every applied page is recorded.
    let opts = options(20, 1);
    let first = AtomicU64::new(0);
    let error = backfill(&stream, &scanner, &sink, &state)
        .run(None, &opts, &|n| {
            first.fetch_add(n, AtomicOrdering::SeqCst);
        })
        .await
        .expect_err("killed");
    assert!(error.to_string().contains("killed on purpose"), "{error}");
    let first = first.load(AtomicOrdering::SeqCst);
    assert!((1..300).contains(&first), "{first} applied before the kill");
    assert!(
        CheckpointStore::load(&state, "search")
            .await
            .unwrap()
            .is_empty(),
        "no checkpoint moves before every segment is done"
    );
    let scanner = MemoryScanner::by_key_hash(stream.clone(), 4);
    let report = backfill(&stream, &scanner, &sink, &state)
        .run(None, &opts, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.items + first, 300, "nothing applied twice");
    assert_eq!(sink.live_versions(), stream.versions());
}

#[tokio::test]
async fn whole_table_backfills_of_different_shards_keep_separate_progress() {
    let stream = Arc::new(MemoryStream::new(3));
    for i in 0..90 {
        stream.put(item(i), json!({ "i": i }));
    }
    let state = MemoryState::new();
    let sink = MemorySink::new();
    let a = Scripted::new(
        MemoryScanner::by_key_hash(stream.clone(), 3),
        stream.clone(),
    );
    let b = Scripted::new(
        MemoryScanner::by_key_hash(stream.clone(), 5),
        stream.clone(),
    );
    *a.pages_before_failure.lock().unwrap() = Some(2);
    *b.pages_before_failure.lock().unwrap() = Some(3);
    let (s0, s1) = (ShardId("0".into()), ShardId("1".into()));
    let opts = options(10, 1);
    let (run_a, run_b) = (
        backfill(&stream, &a, &sink, &state),
        backfill(&stream, &b, &sink, &state),
    );
    let (ra, rb) = tokio::join!(
        run_a.run(Some(vec![s0.clone()]), &opts, &|_| {}),
        run_b.run(Some(vec![s1.clone()]), &opts, &|_| {}),
    );
    assert!(ra.is_err() && rb.is_err());
    let saved = state.load_backfill("search").await.unwrap();
    let pa = &saved[&whole_table_progress_id(Some(std::slice::from_ref(&s0)))];
    let pb = &saved[&whole_table_progress_id(Some(std::slice::from_ref(&s1)))];
    assert_eq!(
        (pa.segments.len(), pa.targets.keys().collect::<Vec<_>>()),
        (3, vec![&s0])
    );
    assert_eq!(
        (pb.segments.len(), pb.targets.keys().collect::<Vec<_>>()),
        (5, vec![&s1])
    );
    let scanner = MemoryScanner::by_key_hash(stream.clone(), 4);
    for shard in [&s0, &s1] {
        backfill(&stream, &scanner, &sink, &state)
            .run(Some(vec![shard.clone()]), &opts, &|_| {})
            .await
            .unwrap();
    }
    let checkpoints = CheckpointStore::load(&state, "search").await.unwrap();
    assert_eq!(
        checkpoints.keys().collect::<BTreeSet<_>>(),
        BTreeSet::from([&s0, &s1]),
        "only the shards asked for are handed over"
    );
    assert_eq!(sink.live_versions(), stream.versions());
}

#[tokio::test]
async fn the_embedded_way_still_backfills_shard_by_shard() {
    let stream = Arc::new(MemoryStream::new(3));
    for i in 0..120 {
        stream.put(item(i), json!({ "i": i }));
    }
    let state = MemoryState::new();
    let sink = MemorySink::new();
    let scanner = Scripted::new(MemoryScanner::by_shard(stream.clone()), stream.clone());
    let run = backfill(&stream, &scanner, &sink, &state);
    assert!(!run.scans_whole_table().await.unwrap());
    let report = run
        .run(Some(vec![ShardId("1".into())]), &options(10, 2), &|_| {})
        .await
        .unwrap();
    let in_shard_1 = stream
        .versions()
        .into_keys()
        .filter(|k| k.shard_index(3) == 1)
        .count() as u64;
    assert_eq!((report.shards, report.items), (1, in_shard_1));
    assert_eq!(
        sink.live_versions().keys().cloned().collect::<Vec<_>>(),
        stream
            .versions()
            .into_keys()
            .filter(|k| k.shard_index(3) == 1)
            .collect::<Vec<_>>()
    );
    let whole = MemoryScanner::by_key_hash(stream.clone(), 2);
    assert!(backfill(&stream, &whole, &sink, &state)
        .scans_whole_table()
        .await
        .unwrap());
}

/// A stream whose records up to `trimmed_through` (a version) are gone: a read that would
/// need one of them fails with `Trimmed`, as DynamoDB Streams' `TrimmedDataAccessException`
/// after 24 hours.
struct Trimming {
    inner: Arc<MemoryStream>,
    trimmed_through: AtomicU64,
}

#[async_trait]
impl ChangeSource for Trimming {
    async fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        self.inner.shards().await
    }

    async fn read(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        limit: usize,
        wait: Duration,
    ) -> Result<ReadBatch, SourceError> {
        let trimmed = self.trimmed_through.load(AtomicOrdering::SeqCst);
        let next = self.inner.read(shard, from, 1, Duration::ZERO).await?;
        if let Some(first) = next.records.first() {
            if first.version.0 <= trimmed {
                return Err(SourceError::Trimmed {
                    shard: shard.clone(),
                    position: match from {
                        ReadFrom::After(p) => p.clone(),
                        ReadFrom::TrimHorizon => Position("0".into()),
                    },
                });
            }
        }
        self.inner.read(shard, from, limit, wait).await
    }

    async fn latest_position(&self, shard: &ShardId) -> Result<Option<Position>, SourceError> {
        self.inner.latest_position(shard).await
    }

    async fn backlog(&self, shard: &ShardId, from: &ReadFrom) -> Result<Option<u64>, SourceError> {
        self.inner.backlog(shard, from).await
    }
}

/// What `tsunagu` does after such a backfill (a reconcile): removes what the sink still
/// holds of items deleted while the consumer was away, which no scan can see.
struct RemoveDeleted {
    stream: Arc<MemoryStream>,
    sink: Arc<FlakySink>,
    /// The shards of the clean-ups that went through.
    called: Mutex<Vec<ShardId>>,
    /// Clean-ups that went through (one per recovery).
    batches: AtomicUsize,
}

#[async_trait]
impl AfterBackfill for RemoveDeleted {
    async fn after_backfill(&self, consumer: &str, shard: &ShardId) -> Result<(), String> {
        self.after_backfill_shards(consumer, std::slice::from_ref(shard))
            .await
    }

    /// Once per recovery, whatever the number of shards it handed over.
    async fn after_backfill_shards(
        &self,
        _consumer: &str,
        shards: &[ShardId],
    ) -> Result<(), String> {
        let Some(shard) = shards.first() else {
            self.batches.fetch_add(1, AtomicOrdering::SeqCst);
            return Ok(());
        };
        let live = self.stream.versions();
        let stale: Vec<ChangeRecord> = self
            .sink
            .inner
            .live_versions()
            .into_iter()
            .filter(|(k, _)| !live.contains_key(k))
            .map(|(key, version)| ChangeRecord {
                shard: shard.clone(),
                position: Position(String::new()),
                key,
                kind: ChangeKind::Remove,
                version: Version(version.0 + 1),
                old_image: None,
                new_image: None,
                committed_at_us: 0,
            })
            .collect();
        // The sink fails now and then: the engine retries the hook, and only a
        // clean-up that went through counts.
        self.sink.apply(&stale).await.map_err(|e| e.to_string())?;
        self.called.lock().unwrap().extend(shards.iter().cloned());
        self.batches.fetch_add(1, AtomicOrdering::SeqCst);
        Ok(())
    }
}

/// A consumer away for longer than the retention: every shard is trimmed past its
/// checkpoint, including records of items deleted while it was away. It recovers by
/// itself, while writes go on, and ends equal to the primary. Returns how many passes over
/// the table the scanner saw.
async fn recovers_from_behind_retention(whole_table: bool, shards: u32) -> usize {
    let stream = Arc::new(MemoryStream::new(shards));
    let source = Arc::new(Trimming {
        inner: stream.clone(),
        trimmed_through: AtomicU64::new(0),
    });
    let state = Arc::new(MemoryState::new());
    let sink = Arc::new(FlakySink::new(3, 0.1));
    let scanner = Arc::new(Scripted::new(
        if whole_table {
            MemoryScanner::by_key_hash(stream.clone(), 3)
        } else {
            MemoryScanner::by_shard(stream.clone())
        },
        stream.clone(),
    ));
    let hook = Arc::new(RemoveDeleted {
        stream: stream.clone(),
        sink: sink.clone(),
        called: Mutex::new(Vec::new()),
        batches: AtomicUsize::new(0),
    });
    let engine = Engine::new(source.clone(), state.clone(), state.clone())
        .with_backfill(scanner.clone(), state.clone())
        .with_after_backfill(hook.clone());
    let start = || {
        engine.start(vec![Consumer {
            config: consumer("search", 20, 2),
            sink: sink.clone(),
        }])
    };

    // The consumer keeps up for a while...
    let pipeline = start().await.unwrap();
    for i in 0..150 {
        stream.put(item(i), json!({ "i": i }));
    }
    let expected = stream.versions();
    wait_until("the first items", Duration::from_secs(20), || {
        sink.inner.live_versions() == expected
    })
    .await;
    pipeline.shutdown().await;
    assert_eq!(scanner.passes.load(AtomicOrdering::SeqCst), 0);
    let kept_up_to = stream.records().last().map_or(0, |r| r.version.0);

    // ...then is away while the primary changes and the stream trims what it missed.
    for n in 0..300u16 {
        let i = n * 7 % 200;
        if n % 5 == 0 {
            stream.delete(&item(i));
        } else {
            stream.put(item(i), json!({ "away": n }));
        }
    }
    let newest = stream.records().last().map_or(0, |r| r.version.0);
    source.trimmed_through.store(newest, AtomicOrdering::SeqCst);
    let trimmed: BTreeSet<ShardId> = stream
        .records()
        .into_iter()
        .filter(|r| r.version.0 > kept_up_to)
        .map(|r| r.shard)
        .collect();

    // Back: writes go on during the recovery.
    let pipeline = start().await.unwrap();
    for n in 0..200u16 {
        let i = n * 11 % 220;
        if n % 6 == 0 {
            stream.delete(&item(i));
        } else {
            stream.put(item(i), json!({ "back": n }));
        }
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let expected = stream.versions();
    // A timeout names the part still missing (this wait timed out once in CI,
    // 2026-12-07, and did not say which).
    wait_for_nothing_missing(Duration::from_secs(30), || {
        sink.make_durable();
        let mut missing = Vec::new();
        let live = sink.inner.live_versions();
        if live != expected {
            let differ: Vec<String> = expected
                .iter()
                .filter(|(k, v)| live.get(k) != Some(v))
                .map(|(k, v)| format!("{k:?} primary {v:?} sink {:?}", live.get(k)))
                .chain(
                    live.iter()
                        .filter(|(k, _)| !expected.contains_key(k))
                        .map(|(k, v)| format!("{k:?} only in the sink at {v:?}")),
                )
                .take(5)
                .collect();
            missing.push(format!(
                "the sink to equal the primary after the recovery (first differences: {differ:?})"
            ));
        }
        let called = hook.called.lock().unwrap().len();
        if called != trimmed.len() {
            missing.push(format!(
                "the hook for every trimmed shard ({called} of {})",
                trimmed.len()
            ));
        }
        let not_running: Vec<String> = pipeline.status()[0]
            .shards
            .iter()
            .filter(|s| s.state != ShardState::Running)
            .map(|s| format!("{:?} {:?}", s.shard, s.state))
            .collect();
        if !not_running.is_empty() {
            missing.push(format!("every shard running (not: {not_running:?})"));
        }
        missing
    })
    .await;
    pipeline.shutdown().await;
    let recovered: BTreeSet<ShardId> = hook.called.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        recovered, trimmed,
        "every trimmed shard was backfilled once"
    );
    let left = state.load_backfill("search").await.unwrap();
    assert!(left.is_empty(), "progress left behind: {left:?}");
    let passes = scanner.passes.load(AtomicOrdering::SeqCst);
    if whole_table {
        assert_eq!(
            hook.batches.load(AtomicOrdering::SeqCst),
            passes,
            "the hook runs once per recovery"
        );
    }
    passes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_retention_recovers_by_scanning_the_whole_table() {
    let passes = recovers_from_behind_retention(true, 4).await;
    // The shards fell behind together: one scan of the table serves them all (two at
    // most, when one shard fell behind after the first scan had begun).
    assert!((1..=2).contains(&passes), "{passes} passes over the table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_retention_recovers_shard_by_shard_the_embedded_way() {
    recovers_from_behind_retention(false, 3).await;
}

#[test]
fn progress_ids_name_the_shards_in_order() {
    let ids = |s: &[&str]| s.iter().map(|s| ShardId(s.to_string())).collect::<Vec<_>>();
    assert_eq!(whole_table_progress_id(None).0, "*scan*");
    assert_eq!(
        whole_table_progress_id(Some(&ids(&["b", "a", "b"]))).0,
        "*scan*:a,b"
    );
}

//! Bootstrapping a consumer from the items already in the primary, with a seamless hand
//! over to the change stream.
//!
//! The hand-over, whatever the store: first record the stream's newest position of each
//! shard (its *target*), then scan the items and apply each through the sink with its
//! version, then set the consumer's checkpoint of each shard to its target. Every change
//! up to a target is reflected in the scanned items (a scan reads the current state, which
//! is at least that new); every change after it is read from the stream. Changes the scan
//! already saw come again from the stream and the version guard makes them no-ops. No gap,
//! no regression.
//!
//! Two ways to find a shard's items:
//! - **Per shard**, when the scanner's segments follow the stream's shards
//!   ([`ItemScanner::segments_follow_shards`], the embedded store): segment `i` of `n` is
//!   shard `i`, so each shard is scanned, and handed over, on its own.
//! - **Whole table** otherwise (DynamoDB, whose parallel Scan segments are not stream
//!   shards): the targets of every shard being backfilled are recorded first, then every
//!   segment of the table is scanned ([`ItemScanner::scan_segments`] of them, in
//!   parallel), and only when all are done does any shard's checkpoint move. Backfilling
//!   one shard this way reads the whole table; the items of other shards are applied too,
//!   which the version guard makes harmless.
//!
//! Progress is saved after each durable point of the sink, so a backfill killed half-way
//! resumes where it stopped, with the same targets. Per shard it is kept under the shard's
//! id; a whole-table scan keeps its targets and per-segment progress under a reserved id
//! ([`whole_table_progress_id`]) derived from the shards it hands over, so that
//! whole-table backfills of different shards of one consumer never share a record.

use crate::ports::{
    ChangeSource, CheckpointStore, DeadLetter, DeadLetterQueue, ItemScanner, ShardInfo, Sink,
    SinkError, SourceError, StateError,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tsunagu_domain::{ChangeRecord, ItemKey, Position, ShardId};

/// Where the backfill of one shard stands; or, under a [`whole_table_progress_id`], where
/// a whole-table scan stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillState {
    /// The stream's newest position when the backfill began (`None`: the shard was empty).
    /// Per shard only.
    pub target: Option<Position>,
    /// The last item applied and made durable. Per shard only.
    pub after: Option<ItemKey>,
    pub items: u64,
    pub done: bool,
    /// Whole table only: each shard handed over and its target, recorded before the scan
    /// began (`None`: the shard was empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<ShardId, Option<Position>>,
    /// Whole table only: each segment's progress; the length is the segment count the scan
    /// began with, which a resumed scan keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentProgress>,
}

/// How far a whole-table scan got in one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentProgress {
    /// Where the segment's next page starts (the `next` of the last page made durable).
    #[serde(default)]
    pub after: Option<ItemKey>,
    #[serde(default)]
    pub done: bool,
}

/// The prefix of the reserved ids whole-table scans keep their progress under; no stream
/// names a shard like this.
const WHOLE_TABLE: &str = "*scan*";

/// The id a whole-table scan handing over `shards` (every shard when `None`) keeps its
/// progress under in the [`BackfillProgressStore`]: `*scan*` or `*scan*:a,b` (sorted).
/// Scans of different shard sets get different records, so that two running at once
/// (two shards of a consumer fell behind retention) cannot overwrite each other's
/// progress, and a scan started again with the same shards resumes.
pub fn whole_table_progress_id(shards: Option<&[ShardId]>) -> ShardId {
    match shards {
        None => ShardId(WHOLE_TABLE.to_string()),
        Some(shards) => {
            let sorted: BTreeSet<&str> = shards.iter().map(|s| s.0.as_str()).collect();
            let names: Vec<&str> = sorted.into_iter().collect();
            ShardId(format!("{WHOLE_TABLE}:{}", names.join(",")))
        }
    }
}

/// Whether a progress record is a whole-table scan's rather than a shard's.
pub fn is_whole_table_progress(id: &ShardId) -> bool {
    id.0 == WHOLE_TABLE || id.0.starts_with(&format!("{WHOLE_TABLE}:"))
}

/// The source's shards in segment order, when the scanner's segment `i` of `n` holds
/// exactly the items of the shard named `i`: the scanner says its segments follow its
/// stream's shards, and the source's shards are named `"0"` to `"n-1"` (an embedded
/// primary forwarded to Kinesis has a scanner that follows its own shards but a source
/// whose shards are Kinesis's, so it is scanned whole).
pub(crate) fn shards_as_segments(
    scanner: &dyn ItemScanner,
    shards: &[ShardInfo],
) -> Option<Vec<ShardId>> {
    if !scanner.segments_follow_shards() || shards.is_empty() {
        return None;
    }
    let mut ordered: Vec<Option<ShardId>> = vec![None; shards.len()];
    for shard in shards {
        let index: usize = shard.id.0.parse().ok()?;
        let slot = ordered.get_mut(index)?;
        if slot.is_some() || shard.id.0 != index.to_string() {
            return None;
        }
        *slot = Some(shard.id.clone());
    }
    ordered.into_iter().collect()
}

/// Durable backfill progress, per consumer and shard (and per whole-table scan, under
/// [`whole_table_progress_id`]).
#[async_trait]
pub trait BackfillProgressStore: Send + Sync + 'static {
    async fn load_backfill(
        &self,
        consumer: &str,
    ) -> Result<HashMap<ShardId, BackfillState>, StateError>;
    async fn save_backfill(
        &self,
        consumer: &str,
        shard: &ShardId,
        state: &BackfillState,
    ) -> Result<(), StateError>;
    /// Forgets a shard's finished backfill, so a later one starts afresh.
    async fn clear_backfill(&self, consumer: &str, shard: &ShardId) -> Result<(), StateError>;
}

/// Runs after a shard was backfilled because its consumer fell behind retention. A scan
/// of the live items cannot see items deleted while the consumer was away; this is where
/// the sink's copies of them are removed (for example by reconciling the consumer).
#[async_trait]
pub trait AfterBackfill: Send + Sync + 'static {
    async fn after_backfill(&self, consumer: &str, shard: &ShardId) -> Result<(), String>;

    /// Runs once after a backfill that handed several shards over at once (a whole-table
    /// recovery of every shard that fell behind). By default [`AfterBackfill::after_backfill`]
    /// for each, stopping at the first error; a hook whose work covers the whole consumer
    /// (a reconcile) overrides it to do that work once.
    async fn after_backfill_shards(
        &self,
        consumer: &str,
        shards: &[ShardId],
    ) -> Result<(), String> {
        for shard in shards {
            self.after_backfill(consumer, shard).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Items per sink call.
    pub batch_size: usize,
    /// Most items per second over all shards; `None`: as fast as the sink takes them.
    pub max_items_per_second: Option<u64>,
    /// Shards (per shard) or segments (whole table) scanned at the same time.
    pub parallelism: usize,
    /// How often progress is made durable and saved.
    pub save_interval: Duration,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            max_items_per_second: None,
            parallelism: 2,
            save_interval: Duration::from_secs(2),
        }
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillReport {
    /// Shards handed over to the stream.
    pub shards: usize,
    /// Items applied in this run (a resumed run does not count earlier runs' items; a
    /// whole-table scan counts every item of the table, whichever shards it hands over).
    pub items: u64,
    pub dead_lettered: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the sink kept failing: {0}")]
    Sink(SinkError),
}

/// The ports a backfill works with.
pub struct Backfill<'a> {
    pub consumer: &'a str,
    pub source: &'a dyn ChangeSource,
    pub scanner: &'a dyn ItemScanner,
    pub sink: &'a dyn Sink,
    pub checkpoints: &'a dyn CheckpointStore,
    pub dlq: &'a dyn DeadLetterQueue,
    pub progress: &'a dyn BackfillProgressStore,
}

/// Spaces calls so that no more than `rate` items per second go through, over all shards.
struct Throttle {
    rate: Option<u64>,
    next: Mutex<Instant>,
}

impl Throttle {
    async fn take(&self, items: usize) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let wait_until = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(items as f64 / rate as f64);
            start
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

/// What every worker of one run shares: the knobs, the throttle and the counters.
struct Run<'r> {
    options: &'r BackfillOptions,
    throttle: Throttle,
    items: AtomicU64,
    dead: AtomicU64,
    on_items: &'r (dyn Fn(u64) + Send + Sync),
}

/// A whole-table scan in progress, shared by its segment workers.
struct Scan {
    /// Its record's id in the progress store.
    id: ShardId,
    segments: u32,
    state: Mutex<BackfillState>,
    /// When progress was last saved; held while saving, so saves never overlap.
    last_save: Mutex<Instant>,
}

impl Backfill<'_> {
    /// Backfills `shards` (all of the source's when `None`), calling `on_items` with the
    /// number of items applied as it goes. Per shard when the scanner's segments follow
    /// the source's shards, else by scanning the whole table (see the module docs).
    /// Resumes a backfill of the same shards that was interrupted.
    pub async fn run(
        &self,
        shards: Option<Vec<ShardId>>,
        options: &BackfillOptions,
        on_items: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BackfillReport, BackfillError> {
        let started = Instant::now();
        let all = self.source.shards().await?;
        let run = Run {
            options,
            throttle: Throttle {
                rate: options.max_items_per_second,
                next: Mutex::new(Instant::now()),
            },
            items: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            on_items,
        };
        let handed_over = match shards_as_segments(self.scanner, &all) {
            Some(ordered) => self.run_per_shard(ordered, shards.as_deref(), &run).await?,
            None => self.run_whole_table(&all, shards.as_deref(), &run).await?,
        };
        Ok(BackfillReport {
            shards: handed_over,
            items: run.items.load(Ordering::Relaxed),
            dead_lettered: run.dead.load(Ordering::Relaxed),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Whether [`Backfill::run`] will scan the whole table (every item, whichever shards
    /// are asked for) rather than shard by shard.
    pub async fn scans_whole_table(&self) -> Result<bool, BackfillError> {
        let all = self.source.shards().await?;
        Ok(shards_as_segments(self.scanner, &all).is_none())
    }

    /// Per shard: segment `i` of `n` is the items of shard `i` (`ordered[i]`).
    async fn run_per_shard(
        &self,
        ordered: Vec<ShardId>,
        shards: Option<&[ShardId]>,
        run: &Run<'_>,
    ) -> Result<usize, BackfillError> {
        let segments = ordered.len() as u32;
        let wanted: Vec<(u32, ShardId)> = ordered
            .into_iter()
            .enumerate()
            .filter(|(_, s)| shards.is_none_or(|w| w.contains(s)))
            .map(|(i, s)| (i as u32, s))
            .collect();
        let progress = self.progress.load_backfill(self.consumer).await?;
        let queue = Mutex::new(wanted.clone());
        let worker = || async {
            loop {
                let next = queue.lock().await.pop();
                let Some((segment, shard)) = next else {
                    return Ok::<(), BackfillError>(());
                };
                let state = progress.get(&shard).cloned();
                self.run_shard(segment, segments, &shard, state, run)
                    .await?;
            }
        };
        let workers: Vec<_> = (0..run.options.parallelism.max(1))
            .map(|_| worker())
            .collect();
        futures::future::try_join_all(workers).await?;
        for (_, shard) in &wanted {
            self.progress.clear_backfill(self.consumer, shard).await?;
        }
        Ok(wanted.len())
    }

    async fn run_shard(
        &self,
        segment: u32,
        segments: u32,
        shard: &ShardId,
        state: Option<BackfillState>,
        run: &Run<'_>,
    ) -> Result<(), BackfillError> {
        let mut state = match state {
            Some(state) if state.done => return Ok(()),
            Some(state) => state,
            None => {
                // The target first: whatever is committed after it comes from the stream.
                let state = BackfillState {
                    target: self.source.latest_position(shard).await?,
                    ..BackfillState::default()
                };
                self.progress
                    .save_backfill(self.consumer, shard, &state)
                    .await?;
                state
            }
        };
        tracing::info!(consumer = self.consumer, %shard, resumed_after = ?state.after, "backfilling shard");
        let mut last_save = Instant::now();
        loop {
            let page = self
                .scanner
                .scan(
                    segment,
                    segments,
                    state.after.as_ref(),
                    run.options.batch_size,
                )
                .await?;
            let Some(last) = page.records.last().map(|r| r.key.clone()) else {
                break;
            };
            state.items += self.apply_page(&page.records, run).await?;
            state.after = Some(last);
            if last_save.elapsed() >= run.options.save_interval {
                // Durable before it is recorded as done.
                self.sink.flush().await.map_err(BackfillError::Sink)?;
                self.progress
                    .save_backfill(self.consumer, shard, &state)
                    .await?;
                last_save = Instant::now();
            }
            if page.next.is_none() {
                break;
            }
        }
        self.sink.flush().await.map_err(BackfillError::Sink)?;
        if let Some(target) = &state.target {
            self.checkpoints.save(self.consumer, shard, target).await?;
        }
        state.done = true;
        self.progress
            .save_backfill(self.consumer, shard, &state)
            .await?;
        tracing::info!(consumer = self.consumer, %shard, items = state.items, "shard backfilled; handing over to the stream");
        Ok(())
    }

    /// Whole table: targets of every wanted shard first, then every segment, then the
    /// checkpoints. Returns how many shards were handed over.
    async fn run_whole_table(
        &self,
        all: &[ShardInfo],
        shards: Option<&[ShardId]>,
        run: &Run<'_>,
    ) -> Result<usize, BackfillError> {
        let id = whole_table_progress_id(shards);
        let saved = self
            .progress
            .load_backfill(self.consumer)
            .await?
            .remove(&id);
        let state = match saved {
            Some(state) if state.done => {
                // Handed over already; only forgetting the record was left.
                self.progress.clear_backfill(self.consumer, &id).await?;
                return Ok(state.targets.len());
            }
            Some(state) if !state.segments.is_empty() => {
                let left = state.segments.iter().filter(|s| !s.done).count();
                tracing::info!(consumer = self.consumer, scan = %id, segments_left = left, "resuming whole-table backfill");
                state
            }
            _ => self.begin_whole_table(all, shards, &id).await?,
        };
        if state.targets.is_empty() {
            // None of the named shards exists: nothing to hand over, nothing to scan.
            self.progress.clear_backfill(self.consumer, &id).await?;
            return Ok(0);
        }
        let scan = Scan {
            id,
            segments: state.segments.len() as u32,
            last_save: Mutex::new(Instant::now()),
            state: Mutex::new(state),
        };
        // Popped from the end: segments are started in ascending order.
        let pending: Vec<u32> = {
            let state = scan.state.lock().await;
            (0..scan.segments)
                .filter(|s| state.segments.get(*s as usize).is_some_and(|p| !p.done))
                .rev()
                .collect()
        };
        let parallelism = run.options.parallelism.clamp(1, pending.len().max(1));
        let queue = Mutex::new(pending);
        let worker = || async {
            loop {
                let next = queue.lock().await.pop();
                let Some(segment) = next else {
                    return Ok::<(), BackfillError>(());
                };
                self.scan_segment(&scan, segment, run).await?;
            }
        };
        let workers: Vec<_> = (0..parallelism).map(|_| worker()).collect();
        futures::future::try_join_all(workers).await?;
        self.hand_over(scan).await
    }

    /// Records the target of every wanted shard, before anything is scanned.
    async fn begin_whole_table(
        &self,
        all: &[ShardInfo],
        shards: Option<&[ShardId]>,
        id: &ShardId,
    ) -> Result<BackfillState, BackfillError> {
        let mut targets = BTreeMap::new();
        for info in all {
            if shards.is_none_or(|w| w.contains(&info.id)) {
                // A closed shard gets its last record as target too: the stream then
                // reports its end at once and its children start without a replay.
                targets.insert(
                    info.id.clone(),
                    self.source.latest_position(&info.id).await?,
                );
            }
        }
        let segments = self.scanner.scan_segments().max(1);
        let state = BackfillState {
            targets,
            segments: vec![SegmentProgress::default(); segments as usize],
            ..BackfillState::default()
        };
        // Saved before the scan: a resumed scan must hand over at these targets, never at
        // newer ones (changes between the two would be in neither the scan nor the
        // stream's part).
        self.progress
            .save_backfill(self.consumer, id, &state)
            .await?;
        tracing::info!(consumer = self.consumer, scan = %id, shards = state.targets.len(), segments, "whole-table backfill: targets recorded, scanning every segment");
        Ok(state)
    }

    /// Scans one segment to its end, from where it stopped.
    async fn scan_segment(
        &self,
        scan: &Scan,
        segment: u32,
        run: &Run<'_>,
    ) -> Result<(), BackfillError> {
        let mut after = scan
            .state
            .lock()
            .await
            .segments
            .get(segment as usize)
            .and_then(|s| s.after.clone());
        loop {
            let page = self
                .scanner
                .scan(
                    segment,
                    scan.segments,
                    after.as_ref(),
                    run.options.batch_size,
                )
                .await?;
            // DynamoDB may return an empty page that is not the last (tombstones are
            // filtered out after reading): only `next` says where the segment ends.
            let applied = if page.records.is_empty() {
                0
            } else {
                self.apply_page(&page.records, run).await?
            };
            {
                // Updated only after the page was applied: a save that copies it after
                // this and flushes before storing it stores only applied progress.
                let mut state = scan.state.lock().await;
                state.items += applied;
                if let Some(progress) = state.segments.get_mut(segment as usize) {
                    progress.after = page.next.clone();
                    progress.done = page.next.is_none();
                }
            }
            self.save_scan(scan, run.options.save_interval).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Makes what was applied durable and saves the scan's progress, if `interval` has
    /// passed since the last save and no other worker is saving right now.
    async fn save_scan(&self, scan: &Scan, interval: Duration) -> Result<(), BackfillError> {
        let Ok(mut last_save) = scan.last_save.try_lock() else {
            return Ok(());
        };
        if last_save.elapsed() < interval {
            return Ok(());
        }
        // Copied before the flush: everything it records was applied before the flush
        // began, so the flush makes it durable.
        let snapshot = scan.state.lock().await.clone();
        self.sink.flush().await.map_err(BackfillError::Sink)?;
        self.progress
            .save_backfill(self.consumer, &scan.id, &snapshot)
            .await?;
        *last_save = Instant::now();
        Ok(())
    }

    /// Every segment is done: moves each shard's checkpoint to its target.
    async fn hand_over(&self, scan: Scan) -> Result<usize, BackfillError> {
        let mut state = scan.state.into_inner();
        self.sink.flush().await.map_err(BackfillError::Sink)?;
        for (shard, target) in &state.targets {
            if let Some(target) = target {
                self.checkpoints.save(self.consumer, shard, target).await?;
            }
        }
        // Recorded as done before the record is forgotten: a run killed in between must
        // not move checkpoints back to these targets after the stream moved them on.
        state.done = true;
        self.progress
            .save_backfill(self.consumer, &scan.id, &state)
            .await?;
        self.progress
            .clear_backfill(self.consumer, &scan.id)
            .await?;
        tracing::info!(consumer = self.consumer, scan = %scan.id, shards = state.targets.len(), items = state.items, "table backfilled; handing over to the stream");
        Ok(state.targets.len())
    }

    /// Applies one page through the throttle and counts it. Returns its length.
    async fn apply_page(
        &self,
        records: &[ChangeRecord],
        run: &Run<'_>,
    ) -> Result<u64, BackfillError> {
        run.throttle.take(records.len()).await;
        run.dead
            .fetch_add(self.apply_with_retries(records).await?, Ordering::Relaxed);
        let n = records.len() as u64;
        run.items.fetch_add(n, Ordering::Relaxed);
        (run.on_items)(n);
        Ok(n)
    }

    /// Applies a page; retries what may succeed later, dead-letters what never will.
    /// Returns how many records were dead-lettered.
    async fn apply_with_retries(&self, records: &[ChangeRecord]) -> Result<u64, BackfillError> {
        const ATTEMPTS: u32 = 8;
        let mut pending: Vec<ChangeRecord> = records.to_vec();
        let mut dead = 0;
        for attempt in 1..=ATTEMPTS {
            match self.sink.apply(&pending).await {
                Ok(()) => return Ok(dead),
                Err(SinkError::Records(failures)) => {
                    let mut retry = Vec::new();
                    for failure in failures {
                        let Some(record) = pending.get(failure.index).cloned() else {
                            continue;
                        };
                        if failure.retryable {
                            retry.push(record);
                        } else {
                            self.dlq
                                .push(DeadLetter {
                                    id: 0,
                                    consumer: self.consumer.to_string(),
                                    record,
                                    error: failure.message,
                                    attempts: attempt,
                                    failed_at_us: crate::lane::now_us(),
                                })
                                .await?;
                            dead += 1;
                        }
                    }
                    if retry.is_empty() {
                        return Ok(dead);
                    }
                    pending = retry;
                }
                Err(
                    error @ SinkError::Batch {
                        retryable: false, ..
                    },
                ) => {
                    return Err(BackfillError::Sink(error));
                }
                Err(error) if attempt == ATTEMPTS => return Err(BackfillError::Sink(error)),
                Err(_) => {}
            }
            tokio::time::sleep(crate::lane::backoff_delay(attempt, 100, 5_000)).await;
        }
        Err(BackfillError::Sink(SinkError::Batch {
            retryable: true,
            message: format!(
                "{} record(s) still failing after {ATTEMPTS} attempts",
                pending.len()
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ScanPage;

    /// A scanner that only answers the question of how its segments relate to shards.
    struct Segments(bool);

    #[async_trait]
    impl ItemScanner for Segments {
        async fn scan(
            &self,
            _: u32,
            _: u32,
            _: Option<&ItemKey>,
            _: usize,
        ) -> Result<ScanPage, SourceError> {
            Ok(ScanPage::default())
        }

        fn segments_follow_shards(&self) -> bool {
            self.0
        }
    }

    fn shards(names: &[&str]) -> Vec<ShardInfo> {
        names
            .iter()
            .map(|n| ShardInfo::root(ShardId(n.to_string())))
            .collect()
    }

    #[test]
    fn shards_are_segments_only_when_the_scanner_says_so_and_they_are_numbered() {
        let ids = |names: &[&str]| names.iter().map(|n| ShardId(n.to_string())).collect();
        assert_eq!(
            shards_as_segments(&Segments(true), &shards(&["2", "0", "1"])),
            Some(ids(&["0", "1", "2"]))
        );
        assert_eq!(
            shards_as_segments(&Segments(false), &shards(&["0", "1"])),
            None
        );
        for odd in [
            &["0", "2"][..],
            &["0", "0"],
            &["00", "1"],
            &["shardId-000000000000"],
            &[],
        ] {
            assert_eq!(
                shards_as_segments(&Segments(true), &shards(odd)),
                None,
                "{odd:?}"
            );
        }
    }

    #[test]
    fn a_shard_state_saved_before_whole_table_scans_is_still_read() {
        let old =
            r#"{"target":"41","after":{"partition":"deal-1","sort":"a"},"items":3,"done":false}"#;
        let state: BackfillState = serde_json::from_str(old).expect("old state");
        assert_eq!(state.target, Some(Position("41".into())));
        assert!(state.targets.is_empty() && state.segments.is_empty());
        // And a shard's state is written as before, without the whole-table fields.
        let written = serde_json::to_string(&state).expect("serialize");
        assert!(!written.contains("targets") && !written.contains("segments"));
    }

    #[test]
    fn whole_table_records_are_told_from_shards() {
        let id = whole_table_progress_id(Some(&[ShardId("7".into())]));
        assert!(is_whole_table_progress(&id));
        assert!(is_whole_table_progress(&whole_table_progress_id(None)));
        assert!(!is_whole_table_progress(&ShardId("7".into())));
        assert!(!is_whole_table_progress(&ShardId("*scan*x".into())));
    }
}

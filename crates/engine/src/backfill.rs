//! Bootstrapping a consumer from the items already in the primary, with a seamless hand
//! over to the change stream.
//!
//! Per shard: first record the stream's newest position (the *target*), then scan the
//! shard's items and apply each through the sink with its version, then set the
//! consumer's checkpoint to the target. Every change up to the target is reflected in the
//! scanned items (the scan reads the current state, which is at least that new); every
//! change after it is read from the stream. Changes the scan already saw come again from
//! the stream and the version guard makes them no-ops. No gap, no regression.
//!
//! Progress (target and last key) is saved after each durable point of the sink, so a
//! backfill killed half-way resumes where it stopped, with the same target.

use crate::ports::{
    ChangeSource, CheckpointStore, DeadLetter, DeadLetterQueue, ItemScanner, Sink, SinkError,
    SourceError, StateError,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tsunagu_domain::{ItemKey, Position, ShardId};

/// Where the backfill of one shard stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillState {
    /// The stream's newest position when the backfill began (`None`: the shard was empty).
    pub target: Option<Position>,
    /// The last item applied and made durable.
    pub after: Option<ItemKey>,
    pub items: u64,
    pub done: bool,
}

/// Durable backfill progress, per consumer and shard.
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
}

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Items per sink call.
    pub batch_size: usize,
    /// Most items per second over all shards; `None`: as fast as the sink takes them.
    pub max_items_per_second: Option<u64>,
    /// Shards scanned at the same time.
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
    pub shards: usize,
    /// Items applied in this run (a resumed run does not count earlier runs' items).
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

impl Backfill<'_> {
    /// Backfills `shards` (all of the source's when `None`), calling `on_items` with the
    /// number of items applied as it goes.
    pub async fn run(
        &self,
        shards: Option<Vec<ShardId>>,
        options: &BackfillOptions,
        on_items: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BackfillReport, BackfillError> {
        let started = Instant::now();
        let mut all: Vec<ShardId> = self
            .source
            .shards()
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        // Segment `i` of `n` is the items of the i-th shard in numeric order.
        all.sort_by_key(|s| (s.0.parse::<u64>().unwrap_or(u64::MAX), s.0.clone()));
        let segments = all.len() as u32;
        let wanted: Vec<(u32, ShardId)> = all
            .into_iter()
            .enumerate()
            .filter(|(_, s)| shards.as_ref().is_none_or(|w| w.contains(s)))
            .map(|(i, s)| (i as u32, s))
            .collect();
        let progress = self.progress.load_backfill(self.consumer).await?;
        let throttle = Arc::new(Throttle {
            rate: options.max_items_per_second,
            next: Mutex::new(Instant::now()),
        });
        let items = AtomicU64::new(0);
        let dead = AtomicU64::new(0);
        let queue = Mutex::new(wanted.clone());
        let worker = || async {
            loop {
                let next = queue.lock().await.pop();
                let Some((segment, shard)) = next else {
                    return Ok::<(), BackfillError>(());
                };
                let state = progress.get(&shard).cloned();
                self.run_shard(
                    segment, segments, &shard, state, options, &throttle, &items, &dead, on_items,
                )
                .await?;
            }
        };
        let workers: Vec<_> = (0..options.parallelism.max(1)).map(|_| worker()).collect();
        futures::future::try_join_all(workers).await?;
        for (_, shard) in &wanted {
            self.progress.clear_backfill(self.consumer, shard).await?;
        }
        Ok(BackfillReport {
            shards: wanted.len(),
            items: items.load(Ordering::Relaxed),
            dead_lettered: dead.load(Ordering::Relaxed),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_shard(
        &self,
        segment: u32,
        segments: u32,
        shard: &ShardId,
        state: Option<BackfillState>,
        options: &BackfillOptions,
        throttle: &Throttle,
        items: &AtomicU64,
        dead: &AtomicU64,
        on_items: &(dyn Fn(u64) + Send + Sync),
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
                .scan(segment, segments, state.after.as_ref(), options.batch_size)
                .await?;
            let Some(last) = page.records.last().map(|r| r.key.clone()) else {
                break;
            };
            throttle.take(page.records.len()).await;
            dead.fetch_add(
                self.apply_with_retries(&page.records).await?,
                Ordering::Relaxed,
            );
            let n = page.records.len() as u64;
            items.fetch_add(n, Ordering::Relaxed);
            on_items(n);
            state.items += n;
            state.after = Some(last);
            if last_save.elapsed() >= options.save_interval {
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

    /// Applies a page; retries what may succeed later, dead-letters what never will.
    /// Returns how many records were dead-lettered.
    async fn apply_with_retries(
        &self,
        records: &[tsunagu_domain::ChangeRecord],
    ) -> Result<u64, BackfillError> {
        const ATTEMPTS: u32 = 8;
        let mut pending: Vec<tsunagu_domain::ChangeRecord> = records.to_vec();
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

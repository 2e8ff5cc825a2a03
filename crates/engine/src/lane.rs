//! A lane: one of the `parallelization_factor` workers of a shard. It takes the records
//! routed to it (always the same keys), gathers them into batches, and delivers each batch
//! to the sink with retries, bisection and the dead-letter queue. A lane handles one
//! batch at a time, so the records of a key are applied in the order they were routed.

use crate::config::ConsumerConfig;
use crate::ports::{ApplyObserver, DeadLetter, DeadLetterQueue, RecordFailure, Sink, SinkError};
use crate::status::ShardStats;
use rand::Rng;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tsunagu_domain::ChangeRecord;

/// A record on its way through a lane, with its dispatch index in the shard (used to
/// report completion back to the shard's checkpoint tracker).
pub(crate) struct LaneItem {
    pub idx: u64,
    pub record: ChangeRecord,
}

/// Dispatch indexes of records that are done, and the sink's visible mark they need to
/// be durable (0 for dead letters: the queue is durable when `push` returns).
pub(crate) struct Completion {
    pub idxs: Vec<u64>,
    pub mark: u64,
}

/// Records delivered together, with their dispatch indexes alongside (kept apart so the
/// sink gets a plain slice of records without copies).
///
/// A batch holds at most one record per item: a newer change of an item already in the
/// batch takes the older one's place, and the older one rides along as *superseded*,
/// acknowledged together with it. So a partial failure can never let a newer change of an
/// item be applied before an older one, and a hot item costs one write per batch.
#[derive(Default)]
struct Batch {
    idxs: Vec<u64>,
    records: Vec<ChangeRecord>,
    superseded: Vec<Vec<(u64, ChangeRecord)>>,
}

impl Batch {
    fn len(&self) -> usize {
        self.records.len()
    }

    /// Appends a record of an item not yet in the batch.
    fn push(&mut self, idx: u64, record: ChangeRecord, superseded: Vec<(u64, ChangeRecord)>) {
        self.idxs.push(idx);
        self.records.push(record);
        self.superseded.push(superseded);
    }

    fn split_in_half(mut self) -> (Batch, Batch) {
        let mid = self.len() / 2;
        let second = Batch {
            idxs: self.idxs.split_off(mid),
            records: self.records.split_off(mid),
            superseded: self.superseded.split_off(mid),
        };
        (self, second)
    }

    fn into_entries(self) -> impl Iterator<Item = (u64, ChangeRecord, Vec<(u64, ChangeRecord)>)> {
        self.idxs
            .into_iter()
            .zip(self.records)
            .zip(self.superseded)
            .map(|((idx, record), superseded)| (idx, record, superseded))
    }
}

/// Builds a batch, folding repeated changes of an item into one entry.
#[derive(Default)]
struct BatchBuilder {
    batch: Batch,
    position_of: std::collections::HashMap<tsunagu_domain::ItemKey, usize>,
    /// Records taken in, superseded ones included (the batch size counts these).
    taken: usize,
}

impl BatchBuilder {
    fn add(&mut self, item: LaneItem) {
        self.taken += 1;
        let batch = &mut self.batch;
        match self.position_of.get(&item.record.key) {
            Some(&pos) => {
                let old_idx = std::mem::replace(&mut batch.idxs[pos], item.idx);
                let old = std::mem::replace(&mut batch.records[pos], item.record);
                batch.superseded[pos].push((old_idx, old));
            }
            None => {
                self.position_of
                    .insert(item.record.key.clone(), batch.len());
                batch.push(item.idx, item.record, Vec::new());
            }
        }
    }
}

/// Everything a lane needs, shared by the lanes of a shard.
pub(crate) struct LaneContext {
    pub consumer: Arc<str>,
    pub config: Arc<ConsumerConfig>,
    pub sink: Arc<dyn Sink>,
    pub dlq: Arc<dyn DeadLetterQueue>,
    pub observers: Arc<[Arc<dyn ApplyObserver>]>,
    pub stats: Arc<ShardStats>,
    pub cancel: CancellationToken,
    /// Records that are done (applied or dead-lettered).
    pub completions: mpsc::UnboundedSender<Completion>,
    /// Keeps the pipeline's liveness count while a lane can still deliver.
    pub _alive: Arc<()>,
}

/// Runs a lane until its queue is closed and drained, or until shutdown interrupts a
/// retry (the interrupted records are not acknowledged, so they are replayed later).
pub(crate) async fn run_lane(ctx: Arc<LaneContext>, mut queue: mpsc::Receiver<LaneItem>) {
    while let Some(batch) = next_batch(&mut queue, &ctx.config).await {
        if !ctx.deliver(batch).await {
            return;
        }
    }
}

/// Gathers the next batch: waits for a first record, then takes what is already queued,
/// or waits up to the batching window for more.
async fn next_batch(
    queue: &mut mpsc::Receiver<LaneItem>,
    config: &ConsumerConfig,
) -> Option<Batch> {
    let mut builder = BatchBuilder::default();
    builder.add(queue.recv().await?);
    let window = config.batching_window();
    if window.is_zero() {
        while builder.taken < config.batch_size {
            match queue.try_recv() {
                Ok(item) => builder.add(item),
                Err(_) => break,
            }
        }
    } else {
        let deadline = tokio::time::Instant::now() + window;
        while builder.taken < config.batch_size {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(item)) => builder.add(item),
                Ok(None) | Err(_) => break,
            }
        }
    }
    Some(builder.batch)
}

/// One delivery attempt's unit of work: a batch and the attempts already spent on it.
struct Work {
    batch: Batch,
    attempts: u32,
    /// Set on halves produced by bisection: they get one more try each, no backoff.
    bisected: bool,
}

impl LaneContext {
    /// Delivers a batch until every record is applied or dead-lettered. Returns `false`
    /// when shutdown interrupted it.
    async fn deliver(&self, batch: Batch) -> bool {
        // A stack keeps bisected halves in order: the first half is finished before the
        // second starts, so per-item order survives bisection.
        let mut stack = vec![Work {
            batch,
            attempts: 0,
            bisected: false,
        }];
        while let Some(Work {
            mut batch,
            mut attempts,
            bisected,
        }) = stack.pop()
        {
            loop {
                attempts += 1;
                let result = self.sink.apply(&batch.records).await;
                if let Err(error) = &result {
                    self.report_failure(error);
                }
                match result {
                    Ok(()) => {
                        self.applied(batch);
                        break;
                    }
                    Err(SinkError::Records(failures)) => {
                        let outcome = split_by_failures(batch, failures);
                        self.applied(outcome.applied);
                        if !self.dead_letter_each(outcome.permanent, attempts).await {
                            return false;
                        }
                        let (retry, messages) = outcome.retryable;
                        if retry.len() == 0 {
                            break;
                        }
                        if self.out_of_retries(attempts, &retry) {
                            let letters = retry
                                .into_entries()
                                .zip(messages)
                                .map(|((idx, record, superseded), message)| {
                                    (idx, record, superseded, message)
                                })
                                .collect();
                            if !self.dead_letter_each(letters, attempts).await {
                                return false;
                            }
                            break;
                        }
                        batch = retry;
                        self.back_off(attempts).await;
                    }
                    Err(SinkError::Batch { retryable, message }) => {
                        let exhausted =
                            !retryable || bisected || self.out_of_retries(attempts, &batch);
                        if !exhausted {
                            self.back_off(attempts).await;
                            continue;
                        }
                        if batch.len() > 1 && self.config.bisect_batch_on_error {
                            let (first, second) = batch.split_in_half();
                            self.stats.bisections.fetch_add(1, Relaxed);
                            stack.push(Work {
                                batch: second,
                                attempts,
                                bisected: true,
                            });
                            stack.push(Work {
                                batch: first,
                                attempts,
                                bisected: true,
                            });
                            break;
                        }
                        let letters = batch
                            .into_entries()
                            .map(|(idx, record, superseded)| {
                                (idx, record, superseded, message.clone())
                            })
                            .collect();
                        if !self.dead_letter_each(letters, attempts).await {
                            return false;
                        }
                        break;
                    }
                }
            }
        }
        true
    }

    fn out_of_retries(&self, attempts: u32, batch: &Batch) -> bool {
        if attempts > self.config.max_retry_attempts {
            return true;
        }
        match self.config.max_record_age() {
            Some(max_age) => {
                let now = now_us();
                batch
                    .records
                    .iter()
                    .any(|r| r.age_us(now) > max_age.as_micros() as i64)
            }
            None => false,
        }
    }

    /// Sleeps before the next attempt: exponential backoff with full jitter. Shutdown
    /// does not cut it short: draining means finishing in-flight batches, retries
    /// included (they are bounded by `max_retry_attempts`).
    async fn back_off(&self, attempts: u32) {
        self.stats.retries.fetch_add(1, Relaxed);
        let delay = backoff_delay(
            attempts,
            self.config.retry_initial_backoff_ms,
            self.config.retry_max_backoff_ms,
        );
        tokio::time::sleep(delay).await;
    }

    /// Tells the observers how the sink failed, by kind (for error-rate metrics).
    fn report_failure(&self, error: &SinkError) {
        let mut kinds: Vec<(&'static str, u64)> = Vec::new();
        match error {
            SinkError::Batch { retryable, .. } => kinds.push((
                if *retryable {
                    "batch_retryable"
                } else {
                    "batch_permanent"
                },
                1,
            )),
            SinkError::Records(failures) => {
                let retryable = failures.iter().filter(|f| f.retryable).count() as u64;
                kinds.push(("record_retryable", retryable));
                kinds.push(("record_permanent", failures.len() as u64 - retryable));
            }
        }
        for observer in self.observers.iter() {
            for &(kind, count) in &kinds {
                if count > 0 {
                    observer.sink_failed(&self.consumer, kind, count);
                }
            }
        }
    }

    fn applied(&self, batch: Batch) {
        if batch.len() == 0 {
            return;
        }
        let visible_at = SystemTime::now();
        let mut idxs = Vec::with_capacity(batch.idxs.len());
        let mut records = Vec::with_capacity(batch.records.len());
        // Observers see an item's superseded changes before the change that replaced
        // them: commit order, as applied.
        for (idx, record, superseded) in batch.into_entries() {
            for (old_idx, old) in superseded {
                idxs.push(old_idx);
                records.push(old);
            }
            idxs.push(idx);
            records.push(record);
        }
        // Read after `apply` returned: at least the mark of this batch's records.
        let mark = self.sink.visible_mark();
        for observer in self.observers.iter() {
            observer.applied(&self.consumer, &records, visible_at);
        }
        self.stats.applied.fetch_add(records.len() as u64, Relaxed);
        let _ = self.completions.send(Completion { idxs, mark });
    }

    /// Dead-letters each record with its error. Keeps trying the queue until it accepts,
    /// because the checkpoint must not pass a record that is neither applied nor kept.
    async fn dead_letter_each(&self, letters: Vec<Letter>, attempts: u32) -> bool {
        for (idx, record, superseded, error) in letters {
            let letter = DeadLetter {
                id: 0,
                consumer: self.consumer.to_string(),
                record,
                error,
                attempts,
                failed_at_us: now_us(),
            };
            let mut tries = 0;
            loop {
                match self.dlq.push(letter.clone()).await {
                    Ok(id) => {
                        let stored = DeadLetter { id, ..letter };
                        tracing::warn!(
                            consumer = %self.consumer,
                            shard = %stored.record.shard,
                            position = %stored.record.position,
                            key = %stored.record.key,
                            attempts,
                            error = %stored.error,
                            dead_letter_id = id,
                            "record dead-lettered"
                        );
                        for observer in self.observers.iter() {
                            observer.dead_lettered(&self.consumer, &stored);
                        }
                        self.stats.dead_lettered.fetch_add(1, Relaxed);
                        // Superseded changes are settled by their successor's letter.
                        let mut done = vec![idx];
                        done.extend(superseded.iter().map(|(i, _)| *i));
                        let _ = self.completions.send(Completion {
                            idxs: done,
                            mark: 0,
                        });
                        break;
                    }
                    Err(error) => {
                        tries += 1;
                        tracing::error!(consumer = %self.consumer, %error, "dead-letter queue unavailable; retrying");
                        if !back_off_unless_cancelled(tries, 100, 5_000, &self.cancel).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }
}

/// A record to dead-letter: its dispatch index, the record, the changes it superseded
/// in its batch, and the error.
type Letter = (u64, ChangeRecord, Vec<(u64, ChangeRecord)>, String);

/// A batch after a partial failure, split by what happened to each record.
struct SplitOutcome {
    applied: Batch,
    /// Records the sink can never accept, with their errors.
    permanent: Vec<Letter>,
    /// Records worth another try, with their errors.
    retryable: (Batch, Vec<String>),
}

/// Sorts a batch's records by the failures the sink reported (indexes outside the batch
/// are ignored; for a duplicated index the first report counts).
fn split_by_failures(batch: Batch, failures: Vec<RecordFailure>) -> SplitOutcome {
    let mut by_index = std::collections::HashMap::new();
    for f in failures {
        by_index.entry(f.index).or_insert(f);
    }
    let mut outcome = SplitOutcome {
        applied: Batch::default(),
        permanent: Vec::new(),
        retryable: (Batch::default(), Vec::new()),
    };
    for (i, (idx, record, superseded)) in batch.into_entries().enumerate() {
        match by_index.remove(&i) {
            None => outcome.applied.push(idx, record, superseded),
            Some(f) if f.retryable => {
                outcome.retryable.0.push(idx, record, superseded);
                outcome.retryable.1.push(f.message);
            }
            Some(f) => outcome.permanent.push((idx, record, superseded, f.message)),
        }
    }
    outcome
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, initial * 2^(n-1))]`.
pub(crate) fn backoff_delay(attempt: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let exp = initial_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let cap = exp.min(max_ms).max(1);
    Duration::from_millis(rand::rng().random_range(0..=cap))
}

/// Sleeps for the backoff delay of `attempt` (see [`backoff_delay`]) unless `cancel`
/// fires first; whether it slept the whole delay (false: the caller should stop).
pub(crate) async fn back_off_unless_cancelled(
    attempt: u32,
    initial_ms: u64,
    max_ms: u64,
    cancel: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(backoff_delay(attempt, initial_ms, max_ms)) => true,
        _ = cancel.cancelled() => false,
    }
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..100 {
            assert!(backoff_delay(1, 50, 5_000) <= Duration::from_millis(50));
            assert!(backoff_delay(3, 50, 5_000) <= Duration::from_millis(200));
            assert!(backoff_delay(30, 50, 5_000) <= Duration::from_millis(5_000));
        }
    }

    #[test]
    fn a_batch_holds_one_record_per_item_and_keeps_the_newest() {
        let mut builder = BatchBuilder::default();
        for (idx, key, version) in [(0, "a", 1), (1, "b", 2), (2, "a", 3), (3, "a", 4)] {
            builder.add(LaneItem {
                idx,
                record: ChangeRecord {
                    version: tsunagu_domain::Version(version),
                    key: tsunagu_domain::ItemKey::new(key, "s"),
                    ..test_record(version)
                },
            });
        }
        assert_eq!(builder.taken, 4);
        let batch = builder.batch;
        assert_eq!(batch.idxs, [3, 1]);
        assert_eq!(batch.records[0].version.0, 4);
        assert_eq!(
            batch.superseded[0].iter().map(|s| s.0).collect::<Vec<_>>(),
            [0, 2]
        );
    }

    fn test_record(n: u64) -> ChangeRecord {
        ChangeRecord {
            shard: tsunagu_domain::ShardId("0".into()),
            position: tsunagu_domain::Position(n.to_string()),
            key: tsunagu_domain::ItemKey::new("p", n.to_string()),
            kind: tsunagu_domain::ChangeKind::Insert,
            version: tsunagu_domain::Version(n),
            old_image: None,
            new_image: None,
            committed_at_us: 0,
        }
    }

    #[test]
    fn partial_failures_are_sorted_by_kind() {
        let mut batch = Batch::default();
        for n in 0..5 {
            batch.push(100 + n, test_record(n), Vec::new());
        }
        let f = |index, retryable| RecordFailure {
            index,
            retryable,
            message: format!("{index}"),
        };
        let out = split_by_failures(
            batch,
            vec![f(3, true), f(1, false), f(3, false), f(9, true)],
        );
        assert_eq!(out.applied.idxs, [100, 102, 104]);
        assert_eq!(out.permanent.iter().map(|p| p.0).collect::<Vec<_>>(), [101]);
        assert_eq!(out.retryable.0.idxs, [103]);
        assert_eq!(out.retryable.1, ["3"]);
    }
}

//! A shard worker: one reader task pulling records in commit order, a dispatcher routing
//! each record to a lane by key, and a checkpoint tracker that advances only over records
//! every one of which (and all before it) is acknowledged or dead-lettered.

use crate::config::{ConsumerConfig, Ordering};
use crate::lane::{run_lane, Completion, LaneContext, LaneItem};
use crate::ports::{
    ApplyObserver, ChangeSource, CheckpointStore, DeadLetterQueue, ReadFrom, Sink, SourceError,
};
use crate::status::{ShardState, ShardStats};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tsunagu_domain::{ChangeRecord, Position, ShardId};

/// How long one read waits for new records before returning empty (it returns at once
/// when records arrive).
const READ_WAIT: Duration = Duration::from_secs(1);

/// The ports and settings a shard worker runs with.
pub(crate) struct ShardWorker {
    pub consumer: Arc<str>,
    pub config: Arc<ConsumerConfig>,
    pub shard: ShardId,
    pub start: ReadFrom,
    pub source: Arc<dyn ChangeSource>,
    pub sink: Arc<dyn Sink>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub dlq: Arc<dyn DeadLetterQueue>,
    pub observers: Arc<[Arc<dyn ApplyObserver>]>,
    pub stats: Arc<ShardStats>,
    pub cancel: CancellationToken,
    /// Held by every task that can deliver records; see [`crate::Pipeline::abort`].
    pub alive: Arc<()>,
}

/// Why a reader stopped.
enum ReaderEnd {
    Cancelled,
    EndOfShard,
    Trimmed(String),
    Failed(String),
}

/// Records dispatched but not all acknowledged, in dispatch order. The checkpoint is the
/// position of the last record of the longest prefix that is acknowledged *and* durable in
/// the sink; the visible position, that of the longest acknowledged prefix (what readers
/// of the sink can already see, for read-your-writes).
#[derive(Default)]
struct InFlight {
    /// Dispatch index of `entries[0]`.
    base: u64,
    /// Position, and once acknowledged the sink mark it needs to be durable.
    entries: VecDeque<(Position, Option<u64>)>,
    /// Length of the acknowledged prefix of `entries`.
    acked: usize,
    /// The last position of the acknowledged prefix ever seen.
    visible_through: Option<Position>,
}

impl InFlight {
    fn push(&mut self, position: Position) -> u64 {
        self.entries.push_back((position, None));
        self.base + self.entries.len() as u64 - 1
    }

    fn complete(&mut self, done: Completion) {
        for idx in done.idxs {
            if let Some(offset) = idx.checked_sub(self.base) {
                if let Some(entry) = self.entries.get_mut(offset as usize) {
                    entry.1 = Some(done.mark);
                }
            }
        }
        while let Some((position, Some(_))) = self.entries.get(self.acked) {
            self.visible_through = Some(position.clone());
            self.acked += 1;
        }
    }

    /// Drops the prefix that is acknowledged and durable up to `durable_mark`; returns its
    /// last position, if any.
    fn advance(&mut self, durable_mark: u64) -> Option<Position> {
        let mut last = None;
        while self
            .entries
            .front()
            .is_some_and(|(_, mark)| mark.is_some_and(|m| m <= durable_mark))
        {
            last = self.entries.pop_front().map(|(p, _)| p);
            self.base += 1;
            // Durable entries are acknowledged, so they were in the acknowledged prefix.
            self.acked = self.acked.saturating_sub(1);
        }
        last
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl ShardWorker {
    /// Runs until the shard ends (closed shards), a fatal error, or shutdown. On shutdown
    /// it stops reading, lets the lanes finish what they hold, and saves the checkpoint.
    pub(crate) async fn run(self) -> ShardState {
        self.stats.set_state(ShardState::Running);
        let pf = self.config.parallelization_factor as usize;
        let lane_capacity = self.config.batch_size.max(16) * 2;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
        let lane_cancel = self.cancel.child_token();
        let mut lanes = JoinSet::new();
        let mut lane_queues = Vec::with_capacity(pf);
        let ctx = Arc::new(LaneContext {
            consumer: Arc::clone(&self.consumer),
            config: Arc::clone(&self.config),
            sink: Arc::clone(&self.sink),
            dlq: Arc::clone(&self.dlq),
            observers: Arc::clone(&self.observers),
            stats: Arc::clone(&self.stats),
            cancel: lane_cancel.clone(),
            completions: done_tx,
            _alive: Arc::clone(&self.alive),
        });
        for _ in 0..pf {
            let (tx, rx) = mpsc::channel(lane_capacity);
            lane_queues.push(tx);
            lanes.spawn(run_lane(Arc::clone(&ctx), rx));
        }
        drop(ctx);

        let (records_tx, mut records_rx) = mpsc::channel::<Vec<ChangeRecord>>(4);
        let read_limit = self.config.batch_size.clamp(100, 1_000) * pf.min(8);
        let mut reader = tokio::spawn(read_shard(
            Arc::clone(&self.source),
            self.shard.clone(),
            self.start.clone(),
            read_limit,
            records_tx,
            self.cancel.clone(),
        ));
        let mut reader_end: Option<ReaderEnd> = None;

        // Everything up to the starting checkpoint was applied (and made durable) before.
        let mut in_flight = InFlight {
            visible_through: match &self.start {
                ReadFrom::After(position) => Some(position.clone()),
                _ => None,
            },
            ..InFlight::default()
        };
        self.stats
            .set_visible_through(in_flight.visible_through.clone());
        let mut saved: Option<Position> = None;
        let mut pending_checkpoint: Option<Position> = None;
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.config.checkpoint_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_in_flight = self.config.max_in_flight_records;

        loop {
            let accepting = reader_end.is_none() && in_flight.len() < max_in_flight;
            tokio::select! {
                biased;
                Some(done) = done_rx.recv() => {
                    in_flight.complete(done);
                    self.stats.set_visible_through(in_flight.visible_through.clone());
                    if let Some(p) = in_flight.advance(self.sink.durable_mark()) {
                        pending_checkpoint = Some(p);
                    }
                    self.stats.in_flight.store(in_flight.len() as u64, Relaxed);
                }
                batch = records_rx.recv(), if accepting => {
                    match batch {
                        Some(records) => {
                            for record in records {
                                let lane = self.lane_of(&record, pf);
                                let idx = in_flight.push(record.position.clone());
                                // A lane that is gone (its task ended on shutdown) just
                                // leaves the record unacknowledged: it is replayed later.
                                let _ = lane_queues[lane].send(LaneItem { idx, record }).await;
                            }
                            self.stats.in_flight.store(in_flight.len() as u64, Relaxed);
                        }
                        None => {
                            reader_end = Some(match (&mut reader).await {
                                Ok(end) => end,
                                Err(e) => ReaderEnd::Failed(format!("reader task ended: {e}")),
                            });
                            // No more records: close the lanes so they exit once drained.
                            lane_queues.clear();
                        }
                    }
                }
                _ = self.cancel.cancelled(), if reader_end.is_none() => {
                    // Stop taking records; lanes finish what they hold, then exit.
                    reader.abort();
                    reader_end = Some(ReaderEnd::Cancelled);
                    lane_queues.clear();
                }
                _ = ticker.tick() => {
                    // The sink may have made more records durable since the last
                    // completion.
                    if let Some(p) = in_flight.advance(self.sink.durable_mark()) {
                        pending_checkpoint = Some(p);
                    }
                    self.save_checkpoint(&mut pending_checkpoint, &mut saved).await;
                }
                finished = lanes.join_next(), if lane_queues.is_empty() => {
                    if finished.is_none() {
                        break;
                    }
                }
            }
        }
        // Every lane has ended: collect the last completions, make what was applied
        // durable, then save.
        while let Ok(done) = done_rx.try_recv() {
            in_flight.complete(done);
        }
        if let Err(error) = self.sink.flush().await {
            tracing::warn!(consumer = %self.consumer, shard = %self.shard, %error, "flushing the sink on stop failed; unflushed records will be replayed");
        }
        if let Some(p) = in_flight.advance(self.sink.durable_mark()) {
            pending_checkpoint = Some(p);
        }
        self.save_checkpoint(&mut pending_checkpoint, &mut saved)
            .await;
        self.stats.in_flight.store(in_flight.len() as u64, Relaxed);
        let state = match reader_end {
            Some(ReaderEnd::EndOfShard) if in_flight.len() == 0 => ShardState::Finished,
            Some(ReaderEnd::Failed(message)) => ShardState::Failed(message),
            Some(ReaderEnd::Trimmed(message)) => ShardState::BehindRetention(message),
            _ => ShardState::Stopped,
        };
        self.stats.set_state(state.clone());
        state
    }

    fn lane_of(&self, record: &ChangeRecord, pf: usize) -> usize {
        if pf == 1 {
            return 0;
        }
        let hash = match self.config.ordering {
            Ordering::Item => record.key.stable_hash(),
            Ordering::PartitionKey => record.key.partition_hash(),
        };
        (hash % pf as u64) as usize
    }

    async fn save_checkpoint(&self, pending: &mut Option<Position>, saved: &mut Option<Position>) {
        let Some(position) = pending.take() else {
            return;
        };
        if saved.as_ref() == Some(&position) {
            return;
        }
        match self
            .checkpoints
            .save(&self.consumer, &self.shard, &position)
            .await
        {
            Ok(()) => {
                self.stats.set_checkpoint(position.clone());
                *saved = Some(position);
            }
            Err(error) => {
                // Keep it pending: the next tick tries again. Losing a checkpoint only
                // means replaying more after a restart. A stopping shard (its lease moved,
                // or shutdown) says it once, at its final save.
                if self.cancel.is_cancelled() {
                    tracing::debug!(consumer = %self.consumer, shard = %self.shard, %error, "saving checkpoint failed while stopping");
                } else {
                    tracing::warn!(consumer = %self.consumer, shard = %self.shard, %error, "saving checkpoint failed");
                }
                *pending = Some(position);
            }
        }
    }
}

/// Reads a shard in order and hands batches to the dispatcher until shutdown, the end of
/// the shard, or an error that retrying cannot fix.
async fn read_shard(
    source: Arc<dyn ChangeSource>,
    shard: ShardId,
    mut from: ReadFrom,
    limit: usize,
    out: mpsc::Sender<Vec<ChangeRecord>>,
    cancel: CancellationToken,
) -> ReaderEnd {
    let mut failures = 0u32;
    loop {
        let read = tokio::select! {
            read = source.read(&shard, &from, limit, READ_WAIT) => read,
            _ = cancel.cancelled() => return ReaderEnd::Cancelled,
        };
        match read {
            Ok(batch) => {
                failures = 0;
                if let Some(last) = batch.records.last() {
                    from = ReadFrom::After(last.position.clone());
                    tokio::select! {
                        sent = out.send(batch.records) => if sent.is_err() { return ReaderEnd::Cancelled },
                        _ = cancel.cancelled() => return ReaderEnd::Cancelled,
                    }
                }
                if batch.end_of_shard {
                    return ReaderEnd::EndOfShard;
                }
            }
            Err(SourceError::Transient(message)) => {
                failures += 1;
                tracing::warn!(%shard, %message, failures, "reading the change stream failed; retrying");
                if !crate::lane::back_off_unless_cancelled(failures, 100, 10_000, &cancel).await {
                    return ReaderEnd::Cancelled;
                }
            }
            Err(error @ SourceError::Trimmed { .. }) => {
                tracing::error!(%shard, %error, "consumer is behind the stream's retention; it needs a backfill");
                return ReaderEnd::Trimmed(error.to_string());
            }
            Err(error @ SourceError::Fatal(_)) => {
                tracing::error!(%shard, %error, "reading the change stream failed for good");
                return ReaderEnd::Failed(error.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever order completions arrive in, the checkpoint only ever covers a prefix
        /// of fully completed records, and reaches the end once all are done.
        #[test]
        fn checkpoint_covers_only_completed_prefixes(order in Just((0u64..50).collect::<Vec<_>>()).prop_shuffle()) {
            let mut in_flight = InFlight::default();
            for i in 0..50u64 {
                in_flight.push(Position(i.to_string()));
            }
            let mut done = [false; 50];
            let mut checkpoint: Option<u64> = None;
            for idx in order {
                in_flight.complete(Completion { idxs: vec![idx], mark: 0 });
                done[idx as usize] = true;
                if let Some(p) = in_flight.advance(0) {
                    let p: u64 = p.0.parse().unwrap();
                    prop_assert!(checkpoint.is_none_or(|c| p > c));
                    prop_assert!(done[..=p as usize].iter().all(|d| *d));
                    checkpoint = Some(p);
                }
            }
            prop_assert_eq!(checkpoint, Some(49));
            prop_assert_eq!(in_flight.len(), 0);
        }

        /// The visible position is the end of the acknowledged prefix, whatever the order
        /// of completions and however far durability lags behind.
        #[test]
        fn visible_position_ends_the_acknowledged_prefix(
            order in Just((0u64..40).collect::<Vec<_>>()).prop_shuffle(),
            durable_every in 1usize..8,
        ) {
            let mut in_flight = InFlight::default();
            for i in 0..40u64 {
                in_flight.push(Position(i.to_string()));
            }
            let mut done = [false; 40];
            for (n, idx) in order.into_iter().enumerate() {
                in_flight.complete(Completion { idxs: vec![idx], mark: n as u64 });
                done[idx as usize] = true;
                if n % durable_every == 0 {
                    in_flight.advance(n as u64);
                }
                let prefix = done.iter().take_while(|d| **d).count();
                let expected = prefix.checked_sub(1).map(|p| Position(p.to_string()));
                prop_assert_eq!(in_flight.visible_through.clone(), expected);
            }
        }

        /// Acknowledged records are checkpointed only once the sink says they are durable.
        #[test]
        fn checkpoint_waits_for_durability(marks in proptest::collection::vec(1u64..10, 1..40), durable in 0u64..10) {
            let mut in_flight = InFlight::default();
            for (i, mark) in marks.iter().enumerate() {
                let idx = in_flight.push(Position(i.to_string()));
                in_flight.complete(Completion { idxs: vec![idx], mark: *mark });
            }
            let expected = marks.iter().take_while(|m| **m <= durable).count();
            let checkpoint = in_flight.advance(durable);
            prop_assert_eq!(checkpoint.map(|p| p.0.parse::<usize>().unwrap() + 1).unwrap_or(0), expected);
            prop_assert_eq!(in_flight.advance(u64::MAX).is_some(), expected < marks.len());
            prop_assert_eq!(in_flight.len(), 0);
        }
    }
}

//! Live counters of a running pipeline, per consumer and shard, and their snapshots.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use tsunagu_domain::{Position, ShardId};

/// What a shard worker is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum ShardState {
    Starting,
    /// Waiting for its parent shard to be fully processed.
    WaitingForParent,
    Running,
    /// Read to its end (a closed DynamoDB / Kinesis shard) and fully acknowledged.
    Finished,
    /// Stopped on an error that retrying cannot fix.
    Failed(String),
    /// Its checkpoint fell out of the stream's retention: records were trimmed before it
    /// read them. It needs a backfill (automatic unless the consumer says otherwise).
    BehindRetention(String),
    /// Being backfilled from the primary after falling behind retention.
    Backfilling,
    Stopped,
}

/// Counters one shard worker updates as it goes.
#[derive(Debug)]
pub struct ShardStats {
    pub shard: ShardId,
    pub applied: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retries: AtomicU64,
    pub bisections: AtomicU64,
    pub in_flight: AtomicU64,
    pub checkpoint: Mutex<Option<Position>>,
    /// The last position of the acknowledged prefix (at least the starting checkpoint):
    /// every record up to it is visible in the sink, not necessarily durable yet.
    pub visible_through: Mutex<Option<Position>>,
    pub state: Mutex<ShardState>,
}

impl ShardStats {
    pub fn new(shard: ShardId) -> Self {
        Self {
            shard,
            applied: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bisections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            checkpoint: Mutex::new(None),
            visible_through: Mutex::new(None),
            state: Mutex::new(ShardState::Starting),
        }
    }

    pub(crate) fn set_state(&self, state: ShardState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    pub(crate) fn set_checkpoint(&self, position: Position) {
        if let Ok(mut c) = self.checkpoint.lock() {
            *c = Some(position);
        }
    }

    pub(crate) fn set_visible_through(&self, position: Option<Position>) {
        if position.is_none() {
            return;
        }
        if let Ok(mut v) = self.visible_through.lock() {
            *v = position;
        }
    }

    pub fn snapshot(&self) -> ShardStatus {
        ShardStatus {
            shard: self.shard.clone(),
            state: self
                .state
                .lock()
                .map(|s| s.clone())
                .unwrap_or(ShardState::Starting),
            checkpoint: self.checkpoint.lock().ok().and_then(|c| c.clone()),
            visible_through: self.visible_through.lock().ok().and_then(|c| c.clone()),
            applied: self.applied.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            retries: self.retries.load(Relaxed),
            bisections: self.bisections.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
        }
    }
}

/// A shard worker's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardStatus {
    pub shard: ShardId,
    #[serde(flatten)]
    pub state: ShardState,
    pub checkpoint: Option<Position>,
    /// Every record up to here is visible in the sink (see [`ShardStats::visible_through`]).
    pub visible_through: Option<Position>,
    pub applied: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    pub bisections: u64,
    pub in_flight: u64,
}

/// A consumer's shards at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerStatus {
    pub consumer: String,
    pub shards: Vec<ShardStatus>,
}

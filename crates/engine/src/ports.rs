//! The ports the engine is written against. Adapters (the embedded store and index,
//! DynamoDB Streams, Kinesis, Elasticsearch, ...) implement them; only the binary chooses
//! which. Each trait states its error contract and its ordering guarantees.

use async_trait::async_trait;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use tsunagu_domain::{ChangeKind, ChangeRecord, ItemKey, Position, ShardId, Version};

/// A shard as the source describes it. A shard with a parent must not be read before the
/// parent has been read to its end (DynamoDB Streams and Kinesis lineage); the embedded
/// store's shards have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: ShardId,
    pub parent: Option<ShardId>,
    /// The second parent of a shard made by merging two (Kinesis `MergeShards`); it too
    /// must be read to its end first.
    pub adjacent_parent: Option<ShardId>,
}

impl ShardInfo {
    /// A shard without parents.
    pub fn root(id: ShardId) -> Self {
        Self {
            id,
            parent: None,
            adjacent_parent: None,
        }
    }

    /// Every parent that must be finished before this shard is read.
    pub fn parents(&self) -> impl Iterator<Item = &ShardId> {
        self.parent.iter().chain(self.adjacent_parent.iter())
    }
}

/// Where to start reading a shard that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records committed after the consumer starts.
    Latest,
}

/// Where the next read of a shard begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    TrimHorizon,
    /// Strictly after this position (the last one fully processed).
    After(Position),
}

/// What one read returned.
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    /// Records in commit order, all after the requested position.
    pub records: Vec<ChangeRecord>,
    /// The shard is closed and everything in it has been returned (DynamoDB Streams and
    /// Kinesis after a split or merge). Never set by sources whose shards stay open.
    pub end_of_shard: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Worth retrying after a pause (throttling, a network blip, a busy database).
    #[error("change source temporarily unavailable: {0}")]
    Transient(String),
    /// The requested position is older than the stream's retention: records were trimmed
    /// and reading on would skip data. The consumer must be backfilled.
    #[error(
        "position {position} in shard {shard} is past the stream's retention; records were trimmed"
    )]
    Trimmed { shard: ShardId, position: Position },
    #[error("change source failed: {0}")]
    Fatal(String),
}

/// A change stream split into shards.
///
/// Guarantees an implementation gives: within a shard, records come in commit order and
/// every committed change of an item appears exactly once in exactly one shard (all
/// changes of a partition key share a shard); a read never returns a position at or
/// before `from`.
#[async_trait]
pub trait ChangeSource: Send + Sync + 'static {
    /// The shards that exist now (called again from time to time to discover new ones).
    async fn shards(&self) -> Result<Vec<ShardInfo>, SourceError>;

    /// Up to `limit` records after `from`. When there are none, waits up to `wait` for new
    /// ones (returning as soon as some arrive) and returns an empty batch on timeout.
    async fn read(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        limit: usize,
        wait: Duration,
    ) -> Result<ReadBatch, SourceError>;

    /// The position of the newest record in the shard, if any (used for `LATEST` and to
    /// report backlog).
    async fn latest_position(&self, shard: &ShardId) -> Result<Option<Position>, SourceError>;

    /// How many records lie after `from` in the shard, if the source can tell cheaply.
    async fn backlog(&self, shard: &ShardId, from: &ReadFrom) -> Result<Option<u64>, SourceError>;

    /// The shard whose records carry `key`'s changes, when the source can tell from the key
    /// alone (the embedded store can; DynamoDB does not disclose how it hashes partition
    /// keys to shards). Lets drift detection wait for one shard instead of all.
    fn shard_of(&self, _key: &tsunagu_domain::ItemKey) -> Option<ShardId> {
        None
    }

    /// The position of the change that gave an item `version`, when the source's
    /// positions are the items' versions (the embedded store: a change's sequence number
    /// is both). Lets drift detection wait for exactly that change instead of the shard's
    /// newest record.
    fn position_of_version(&self, _version: Version) -> Option<Position> {
        None
    }

    /// Whether the stream still holds a change of `key` after `after` in its shard
    /// (`None`: the source cannot look changes up by key). Tells drift detection whether
    /// a document the primary no longer has is about to be removed by a deletion in
    /// flight.
    async fn has_change_after(
        &self,
        _key: &tsunagu_domain::ItemKey,
        _after: &Position,
    ) -> Result<Option<bool>, SourceError> {
        Ok(None)
    }

    /// Orders two positions of one shard (`Less`: `a` comes first). The default reads
    /// them as decimal numbers of any length, which every source here writes.
    fn position_order(&self, a: &Position, b: &Position) -> std::cmp::Ordering {
        crate::drift::decimal_position_order(a, b)
    }
}

/// One page of a scan of the primary's items.
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// Every item as an `INSERT` record carrying its current version and body (the
    /// position is not a stream position; it only names the version).
    pub records: Vec<ChangeRecord>,
    /// Where the next page starts; `None` when the segment is done.
    pub next: Option<tsunagu_domain::ItemKey>,
}

/// Reads the items of the primary store themselves, for bootstrapping a consumer or
/// checking it: the embedded store, DynamoDB's parallel Scan.
///
/// Contract:
/// - Items are split into `segments` disjoint segments that together hold every live
///   item; a scan of one segment returns each of its items at least once, with a version
///   at least as new as the item's when the scan of the segment began (a scan reads
///   current state, never an older snapshot).
/// - Pages chain: passing a page's [`ScanPage::next`] as `after` returns the rest of the
///   segment, so a scan resumes where it stopped, also in another process. A page may be
///   empty while `next` is set (DynamoDB filters tombstones out after reading a page).
/// - Whether segment `s` of `n` holds exactly the items of stream shard `s` is up to the
///   store: see [`ItemScanner::segments_follow_shards`]. The engine's backfill scans
///   segment by shard when it holds and scans the whole table otherwise.
/// - Errors: [`SourceError::Transient`] is worth retrying, [`SourceError::Fatal`] is not.
#[async_trait]
pub trait ItemScanner: Send + Sync + 'static {
    async fn scan(
        &self,
        segment: u32,
        segments: u32,
        after: Option<&tsunagu_domain::ItemKey>,
        limit: usize,
    ) -> Result<ScanPage, SourceError>;

    /// Whether segment `s` of `n`, for `n` the number of shards of the store's own change
    /// stream (shards named `"0"` to `"n-1"`), holds exactly the items whose changes go to
    /// shard `s`. True for the embedded store. False by default and for DynamoDB, whose
    /// parallel Scan splits the key space its own way while DynamoDB Streams' shards
    /// cannot be addressed by key: a shard's items are then found only by scanning every
    /// segment.
    fn segments_follow_shards(&self) -> bool {
        false
    }

    /// How many segments a scan of the whole table should use, for scanning them in
    /// parallel (DynamoDB: 8; the number also bounds how finely a killed scan resumes).
    /// A scan that resumes keeps the segment count it began with.
    fn scan_segments(&self) -> u32 {
        4
    }

    /// About how many items the store holds, if it can tell cheaply (a progress bar's
    /// total). DynamoDB's `ItemCount` is refreshed about every six hours and counts
    /// tombstones; the embedded store's count is exact. `None` when unknown.
    async fn approximate_item_count(&self) -> Result<Option<u64>, SourceError> {
        Ok(None)
    }
}

/// Why one record (or a whole batch) failed in a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// Index of the record in the batch passed to [`Sink::apply`].
    pub index: usize,
    /// Whether trying again may succeed (a timeout, 429, 5xx); `false` for a record the
    /// sink can never accept (a corrupt body, a mapping error), which goes straight to the
    /// dead-letter queue.
    pub retryable: bool,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Nothing in the batch was applied.
    #[error("sink rejected the batch: {message}")]
    Batch { retryable: bool, message: String },
    /// The listed records failed; every other record of the batch was applied.
    #[error("{} record(s) failed in the sink", .0.len())]
    Records(Vec<RecordFailure>),
}

/// Where changes are applied (a search index, another database).
///
/// Contract:
/// - `apply` returns `Ok` once every record is **visible** to the sink's readers. It is
///   **durable** once [`Sink::durable_mark`] reaches the [`Sink::visible_mark`] read right
///   after `apply` returned. Sinks whose `apply` is durable at once keep the defaults. The
///   engine advances checkpoints only over durable records, so a sink may make records
///   searchable often and cheaply and persist them rarely (as Elasticsearch separates
///   refresh from flush): a crash loses no acknowledged checkpoint, only replays.
/// - Applying is **version-guarded**: a record whose version is not newer than what the
///   sink holds for the item (including a deletion's tombstone) changes nothing and counts
///   as success. Replays, retries and dead-letter redrives are therefore harmless.
/// - Records of one item arrive in commit order within a batch and across calls.
/// - `apply` may be called concurrently from several lanes.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError>;

    /// A counter raised each time the sink makes applied records visible. Read after
    /// `apply` returns, it is at least the mark of that call's records.
    fn visible_mark(&self) -> u64 {
        0
    }

    /// The highest visible mark whose records are durable.
    fn durable_mark(&self) -> u64 {
        u64::MAX
    }

    /// Makes everything applied so far durable now (on shutdown, before a dead letter is
    /// removed after its redrive).
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Applies records chosen by drift repair ([`crate::drift`]) over documents that may
    /// have been written *outside* the sink (deleted by hand, restored from an older
    /// snapshot), where the sink's own guard bookkeeping may disagree with the document it
    /// holds. The contract of [`Sink::apply`] holds against the document actually held: a
    /// record not newer than it changes nothing. The default is [`Sink::apply`], right for
    /// sinks whose guard reads the version stored in the document itself.
    async fn repair(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        self.apply(records).await
    }
}

#[derive(Debug, thiserror::Error)]
#[error("state store failed: {0}")]
pub struct StateError(pub String);

/// Durable checkpoints: per (consumer, shard), the last position whose record and all
/// records before it in the shard were acknowledged by the sink or dead-lettered.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    async fn load(&self, consumer: &str) -> Result<HashMap<ShardId, Position>, StateError>;
    /// Stores a checkpoint. Called only with positions that move forward.
    async fn save(
        &self,
        consumer: &str,
        shard: &ShardId,
        position: &Position,
    ) -> Result<(), StateError>;
}

/// A record that could not be applied, kept whole so it can be inspected and redriven.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Assigned by the queue; 0 before it is stored.
    pub id: u64,
    pub consumer: String,
    pub record: ChangeRecord,
    pub error: String,
    /// How many times the sink was tried with this record.
    pub attempts: u32,
    /// Microseconds since the Unix epoch.
    pub failed_at_us: i64,
}

/// The dead-letter queue of every consumer. Entries stay until redriven or deleted.
///
/// Ids are unique and increase with every push, also across processes sharing the queue;
/// an id is never handed out again, even after its letter was removed (an operator's
/// `remove` of an id read earlier must not hit a newer letter). A letter comes back
/// exactly as pushed, whatever its size.
#[async_trait]
pub trait DeadLetterQueue: Send + Sync + 'static {
    /// Stores a letter durably and returns its id. The engine moves its checkpoint past
    /// the record only after this returns `Ok`.
    async fn push(&self, letter: DeadLetter) -> Result<u64, StateError>;
    /// Letters of a consumer (all consumers when `None`), oldest first, with id > `after_id`.
    async fn list(
        &self,
        consumer: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StateError>;
    async fn get(&self, id: u64) -> Result<Option<DeadLetter>, StateError>;
    async fn remove(&self, id: u64) -> Result<bool, StateError>;
    async fn count(&self, consumer: &str) -> Result<u64, StateError>;
}

/// Told about every record a consumer has applied, once the sink acknowledged it. The
/// benchmark measures lag with it; the status page counts with it. Must be cheap and
/// must not block.
pub trait ApplyObserver: Send + Sync + 'static {
    fn applied(&self, consumer: &str, records: &[ChangeRecord], visible_at: SystemTime);
    fn dead_lettered(&self, _consumer: &str, _letter: &DeadLetter) {}
    /// The sink failed `count` records (or a batch) of this kind: `batch_retryable`,
    /// `batch_permanent`, `record_retryable`, `record_permanent`.
    fn sink_failed(&self, _consumer: &str, _kind: &'static str, _count: u64) {}
}

// ---------------------------------------------------------------------------------------
// The primary store
// ---------------------------------------------------------------------------------------

/// What a conditional write requires of the item's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// No requirement.
    None,
    /// The item must not exist (create).
    NotExists,
    /// The item must exist (update or delete of something known to be there).
    Exists,
    /// The item must exist at exactly this version (optimistic concurrency).
    VersionIs(Version),
}

/// One write.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Creates or replaces the item's body.
    Put {
        key: ItemKey,
        body: serde_json::Value,
        condition: Condition,
    },
    /// Removes the item.
    Delete { key: ItemKey, condition: Condition },
}

impl WriteOp {
    pub fn key(&self) -> &ItemKey {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// The result of a write that passed its condition.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// The change it produced; `None` when it changed nothing (same body, or a delete of
    /// a missing item), in which case no change record was appended.
    pub change: Option<ChangeKind>,
    /// The item's version after the write; for a delete that removed an item, the
    /// deletion's version (the one its change record and the sinks' tombstones carry).
    /// `None` when nothing changed and no item exists.
    pub version: Option<Version>,
    /// Where the change record sits in its shard (`None` when nothing changed).
    pub position: Option<Position>,
    /// The commit timestamp recorded in the change record (microseconds since the epoch).
    pub committed_at_us: i64,
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredItem {
    pub key: ItemKey,
    pub version: Version,
    pub body: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ItemStoreError {
    /// A conditional write lost: the item is not in the state the caller expected.
    #[error("version conflict on {key}: expected {expected}, found {}", found.map_or("no item".to_string(), |v| format!("version {v}")))]
    Conflict {
        key: ItemKey,
        expected: String,
        found: Option<Version>,
    },
    /// The write itself is malformed (empty key, a body that is not an object, ...).
    #[error("invalid write: {0}")]
    Invalid(String),
    /// Worth retrying after a pause (throttling, a network blip).
    #[error("primary store temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("primary store failed: {0}")]
    Failed(String),
}

/// The primary store: items addressed by partition + sort key, each with a version that
/// strictly increases on every change (a delete included) and never goes back when an
/// item is deleted and created again. Every write that changes an item produces exactly
/// one record on the store's change stream (its [`ChangeSource`]).
///
/// Contract: a write whose [`Condition`] fails changes nothing and returns
/// [`ItemStoreError::Conflict`] with the item's current version; a read after a write
/// returns that write (strong consistency).
#[async_trait]
pub trait ItemStore: Send + Sync + 'static {
    /// Applies one write.
    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, ItemStoreError>;

    /// Applies several writes, each with its own result (not all-or-nothing: a write whose
    /// condition fails is reported and the others still apply). The outer error means
    /// none was attempted.
    async fn write_many(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<Result<WriteOutcome, ItemStoreError>>, ItemStoreError>;

    /// Reads one item, strongly consistent.
    async fn get(&self, key: &ItemKey) -> Result<Option<StoredItem>, ItemStoreError>;
}

// ---------------------------------------------------------------------------------------
// Leases: sharing a stream's shards between worker processes
// ---------------------------------------------------------------------------------------

/// One consumer's claim on one shard, with the shard's checkpoint. Workers of a consumer
/// share shards by taking, renewing and releasing leases; only the owner may move the
/// checkpoint, so a worker that lost its lease can no longer record progress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub shard: ShardId,
    /// The shard's parents (two after a merge), which must be finished before the shard
    /// is read.
    pub parent: Option<ShardId>,
    pub adjacent_parent: Option<ShardId>,
    /// The worker holding the lease, if any.
    pub owner: Option<String>,
    /// Raised by every take (a fencing token): a take names the counter it saw, so two
    /// workers racing for one lease cannot both win.
    pub counter: u64,
    /// When the lease lapses unless renewed, in milliseconds since the Unix epoch (the
    /// workers' clocks are assumed to agree to well within a lease duration).
    pub expires_at_ms: i64,
    /// The last position fully processed.
    pub checkpoint: Option<Position>,
    /// The shard was read to its end (closed after a split or merge); its children may
    /// start.
    pub finished: bool,
}

/// Where leases live: a DynamoDB table on AWS, the state file locally. Every change is a
/// conditional write; a method returns `Ok(None)` / `Ok(false)` when its condition did
/// not hold (another worker got there first) and `Err` only when the store failed.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Every lease of a consumer.
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>, StateError>;

    /// Creates an unowned lease for the shard unless one exists.
    async fn ensure(&self, consumer: &str, shard: &ShardInfo) -> Result<(), StateError>;

    /// Makes `worker` the owner until `expires_at_ms`, raising the counter, if the lease's
    /// counter is still `seen_counter` (taking a free or expired lease, or stealing one).
    async fn take(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        seen_counter: u64,
        expires_at_ms: i64,
    ) -> Result<Option<Lease>, StateError>;

    /// Extends a lease `worker` still owns.
    async fn renew(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        expires_at_ms: i64,
    ) -> Result<Option<Lease>, StateError>;

    /// Stores the checkpoint (when `position` is given; `None` keeps the stored one) and
    /// whether the shard is finished, if `worker` still owns the lease. A finished lease
    /// stays finished.
    async fn checkpoint(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        position: Option<&Position>,
        finished: bool,
    ) -> Result<bool, StateError>;

    /// Gives a lease up at once (graceful hand-off) if `worker` owns it.
    async fn release(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
    ) -> Result<bool, StateError>;
}

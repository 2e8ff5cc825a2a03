//! Drift detection and repair: does a consumer's sink hold exactly what the primary holds,
//! and if not, which items differ? Written against ports, so it runs on the embedded store
//! and index, on DynamoDB and OpenSearch / Elasticsearch, and on any mix.
//!
//! # Ports
//!
//! Each side (the primary, a readable sink) implements [`VersionDigest`]: a digest of its
//! live items by key-hash range ([`tree`]), the live items of given ranges, and what it
//! holds for given keys. The primary also implements [`PrimaryDigest`] (the current item,
//! for a repair, and a fresh version for removing a document the primary does not have).
//!
//! # How a run goes
//!
//! 1. **Compare digests.** Both sides are folded into hash trees (concurrently); the
//!    comparison descends only into buckets whose digests differ, and only the items of
//!    differing leaves are read key by key (`read_individually`). On a clean sink that is
//!    nothing at all. Keys whose versions differ are *candidates*.
//! 2. **Settle candidates against the stream, without reading positions as versions.**
//!    The primary's state of each candidate is read (`before`); then, after the source's
//!    propagation delay, the newest position of every shard (the *fence*); then the run
//!    waits until the consumer's checkpoints reach each candidate's target (at most
//!    `settle_timeout`): the fence of every shard, or of the candidate's own shard when
//!    the source knows it ([`ChangeSource::shard_of`]), or exactly the change that gave
//!    `before` when the source's positions are versions
//!    ([`ChangeSource::position_of_version`], the embedded store). Every change the primary
//!    showed in `before` lies at or before its target, so once the checkpoint passed it,
//!    the sink has it durably. The sink, then the primary, are read
//!    again: a candidate whose primary state moved since `before` is **in flight** (the
//!    stream carries the change), as is one whose shard did not reach the fence in time;
//!    any other difference is **drift**: `missing`, `extra` or `stale`. Positions are
//!    compared by the source ([`ChangeSource::position_order`]), which knows its format.
//! 3. **Repair** (optional), through the sink and never past its version guard: a missing
//!    or stale item is re-sent as a `MODIFY` with its current version and body; an extra
//!    document is removed by a `REMOVE` at the primary's tombstone version when it keeps
//!    one, else at a fresh version read before the re-check (newer than anything handed
//!    out before, older than anything after, so a later re-creation always wins). The sink
//!    is flushed and each key is read back before it counts as `repaired`. A document newer
//!    than the primary cannot be repaired (the version guard refuses to go back).

pub mod tree;

use crate::ports::{
    ChangeSource, CheckpointStore, Sink, SinkError, SourceError, StateError, StoredItem,
};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tree::{differing_leaves, leaf_bits_for, HashTree, LeafSet};
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};

pub use tree::TreeStats;

/// Drifted keys listed per kind in a report; the counts are always complete.
pub const MAX_LISTED_KEYS: usize = 1_000;
/// Records per sink call when repairing.
const REPAIR_BATCH: usize = 500;
/// How often checkpoints are read while waiting for the fence.
const FENCE_POLL: Duration = Duration::from_millis(50);

/// What a side holds for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Live(Version),
    /// A deletion the side still remembers, at the deletion's version.
    Deleted(Version),
}

impl Held {
    fn live(self) -> Option<Version> {
        match self {
            Held::Live(v) => Some(v),
            Held::Deleted(_) => None,
        }
    }
}

/// A side could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// One side of a drift comparison: the primary store or a sink that can be read back.
///
/// Contract: `digest` and `live_in` see live items only (tombstones excluded), each a
/// consistent view or a scan during which items may change (a change during the scan
/// only makes a key a candidate, which the settle step sorts out); `held` reads the
/// current state of each key, in the order given.
#[async_trait]
pub trait VersionDigest: Send + Sync + 'static {
    /// Roughly how many live items there are (picks the leaf size; may be off).
    async fn approximate_items(&self) -> Result<u64, ReadError>;
    /// Every live item folded into a hash tree of `leaf_bits` leaves
    /// ([`HashTree::add`] with [`ItemKey::stable_hash`] and the version).
    async fn digest(&self, leaf_bits: u32) -> Result<HashTree, ReadError>;
    /// The key and version of every live item whose key hash lies in `leaves`.
    async fn live_in(&self, leaves: &LeafSet) -> Result<Vec<(ItemKey, Version)>, ReadError>;
    /// What is held now for each key (`None`: nothing known).
    async fn held(&self, keys: &[ItemKey]) -> Result<Vec<Option<Held>>, ReadError>;
}

/// The primary side: what a repair needs besides the digest.
#[async_trait]
pub trait PrimaryDigest: VersionDigest {
    /// The item as it is now (strongly consistent).
    async fn current(&self, key: &ItemKey) -> Result<Option<StoredItem>, ReadError>;
    /// A version at least as new as every version handed out so far and older than any
    /// handed out later (a repair's tombstone for a key the primary no longer knows).
    async fn fresh_version(&self) -> Result<Version, ReadError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("reading the primary failed: {0}")]
    Primary(ReadError),
    #[error("reading the sink failed: {0}")]
    Sink(ReadError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// How a drifted document ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Found; no repair was asked for.
    Reported,
    /// Re-sent through the sink, made durable and read back.
    Repaired,
    /// The index holds a newer version than the primary: the version guard refuses to go
    /// back, so it cannot be repaired through the sink.
    Unrepairable,
    /// The repair was sent but the sink rejected it, or the index does not show it.
    Failed,
    /// The item changed while it was being repaired; replication carries the change.
    Superseded,
}

/// One drifted document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftedKey {
    pub partition: String,
    pub sort: String,
    /// The stream shard of the key, when the source can tell (the embedded store can;
    /// DynamoDB hashes partition keys to shards it does not disclose).
    pub shard: Option<String>,
    /// The primary's version (none: not in the primary).
    pub primary_version: Option<u64>,
    /// The sink's version of its live document (none: no live document).
    pub index_version: Option<u64>,
    pub outcome: Outcome,
    /// Why a repair failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DriftedKey {
    pub fn key(&self) -> ItemKey {
        ItemKey::new(self.partition.clone(), self.sort.clone())
    }
}

/// What one reconciliation found (and repaired). Serialized as the `--json` report of
/// `tsunagu reconcile`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub consumer: String,
    /// The consumer's sink, when known (set by the command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// Items in the primary, all examined (through the tree).
    pub checked: u64,
    /// Live documents in the sink.
    pub indexed: u64,
    /// In the primary, not in the sink (and not in flight).
    pub missing: u64,
    /// In the sink, not in the primary, with no pending change that removes them.
    pub extra: u64,
    /// In both, with another version in the sink (older, or impossibly newer).
    pub stale: u64,
    /// Differences the stream is still carrying: ignored.
    pub in_flight: u64,
    /// Of the candidates, those equal at the re-check (the pipeline applied them
    /// meanwhile); included in `in_flight`.
    pub cleared_on_recheck: u64,
    /// Drifted documents repaired (sent, durable and read back).
    pub repaired: u64,
    /// Drifted documents the sink's version guard cannot repair (newer in the sink).
    pub unrepairable: u64,
    /// Repairs the sink rejected or that did not show in the sink.
    pub repair_failed: u64,
    /// Drifted documents that changed during the repair (replication carries them).
    pub superseded: u64,
    /// Drift left after this run: missing + extra + stale − repaired − superseded.
    pub remaining: u64,
    /// Keys compared one by one (the items of differing leaves, both sides together).
    pub read_individually: u64,
    /// `read_individually` / `checked`.
    pub read_individually_fraction: f64,
    pub elapsed_ms: u64,
    /// Whether the consumer had a checkpoint on every shard holding records.
    pub checkpointed: bool,
    /// Whether the consumer applied the changes of every difference within the settle
    /// timeout (otherwise those it did not count as in flight).
    pub settled: bool,
    pub tree: TreeStats,
    pub missing_keys: Vec<DriftedKey>,
    pub extra_keys: Vec<DriftedKey>,
    pub stale_keys: Vec<DriftedKey>,
    /// Some key lists were cut at [`MAX_LISTED_KEYS`].
    pub keys_truncated: bool,
}

impl ReconcileReport {
    pub fn drift(&self) -> u64 {
        self.missing + self.extra + self.stale
    }

    /// No drift left (none found, or all repaired).
    pub fn is_clean(&self) -> bool {
        self.remaining == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    Extra,
    Stale,
}

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Repair drift through the sink (needs [`Reconciler::sink`]).
    pub repair: bool,
    /// How long to wait for the consumer's checkpoints to reach the fence.
    pub settle_timeout: Duration,
    /// How long after a commit the source shows it (DynamoDB Streams: about a second;
    /// the embedded store: at once): waited before the fence is read.
    pub propagation_delay: Duration,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            repair: false,
            settle_timeout: Duration::from_secs(30),
            propagation_delay: Duration::ZERO,
        }
    }
}

/// The ports one reconciliation works with.
pub struct Reconciler<'a> {
    pub consumer: &'a str,
    pub primary: &'a dyn PrimaryDigest,
    /// The consumer's sink, read back.
    pub index: &'a dyn VersionDigest,
    /// The consumer's sink, written to by a repair (the same sink as `index`).
    pub sink: Option<&'a dyn Sink>,
    /// The stream the consumer reads, for the fence.
    pub source: &'a dyn ChangeSource,
    /// The consumer's checkpoints (its leases' when shards are leased).
    pub checkpoints: &'a dyn CheckpointStore,
}

/// A candidate: a key whose versions differ between the two sides.
struct Candidate {
    key: ItemKey,
    shard: Option<ShardId>,
    /// The sink's version when the difference was found.
    index_version: Option<Version>,
}

impl Reconciler<'_> {
    /// Compares, settles and (with `options.repair`) repairs. Safe while the pipeline runs
    /// and writes go on.
    pub async fn run(&self, options: &ReconcileOptions) -> Result<ReconcileReport, DriftError> {
        let started = Instant::now();
        if options.repair && self.sink.is_none() {
            return Err(DriftError::Sink(ReadError(
                "repairing needs the sink open for writing".into(),
            )));
        }
        let estimate = self
            .index
            .approximate_items()
            .await
            .map_err(DriftError::Sink)?;
        let leaf_bits = leaf_bits_for(estimate);
        let (index_tree, primary_tree) =
            futures::join!(self.index.digest(leaf_bits), self.primary.digest(leaf_bits));
        let index_tree = index_tree.map_err(DriftError::Sink)?;
        let primary_tree = primary_tree.map_err(DriftError::Primary)?;
        let (leaves, tree) = differing_leaves(&primary_tree, &index_tree);
        let mut report = ReconcileReport {
            consumer: self.consumer.to_string(),
            checked: primary_tree.items(),
            indexed: index_tree.items(),
            tree,
            settled: true,
            ..ReconcileReport::default()
        };
        drop((primary_tree, index_tree));

        let mut candidates = Vec::new();
        if !leaves.is_empty() {
            let set = LeafSet::new(leaf_bits, &leaves);
            let (in_index, in_primary) =
                futures::join!(self.index.live_in(&set), self.primary.live_in(&set));
            let in_index: BTreeMap<ItemKey, Version> =
                in_index.map_err(DriftError::Sink)?.into_iter().collect();
            let in_primary: BTreeMap<ItemKey, Version> = in_primary
                .map_err(DriftError::Primary)?
                .into_iter()
                .collect();
            let keys: BTreeSet<&ItemKey> = in_index.keys().chain(in_primary.keys()).collect();
            report.read_individually = keys.len() as u64;
            for key in keys {
                if in_index.get(key) != in_primary.get(key) {
                    candidates.push(Candidate {
                        key: key.clone(),
                        shard: self.source.shard_of(key),
                        index_version: in_index.get(key).copied(),
                    });
                }
            }
        }
        report.read_individually_fraction =
            report.read_individually as f64 / report.checked.max(1) as f64;

        let checkpoints = self.checkpoints.load(self.consumer).await?;
        report.checkpointed = self
            .fence()
            .await?
            .keys()
            .all(|shard| checkpoints.contains_key(shard));
        if !report.checkpointed {
            tracing::warn!(
                consumer = self.consumer,
                "the consumer has no checkpoint on some shards: their differences count as in flight"
            );
        }

        let mut drifted = Vec::new();
        let mut tombstone = Version(0);
        if !candidates.is_empty() {
            let keys: Vec<ItemKey> = candidates.iter().map(|c| c.key.clone()).collect();
            let before = self
                .primary
                .held(&keys)
                .await
                .map_err(DriftError::Primary)?;
            tokio::time::sleep(options.propagation_delay).await;
            let fence = self.fence().await?;
            let targets: Vec<Vec<(ShardId, Position)>> = candidates
                .iter()
                .zip(&before)
                .map(|(candidate, before)| self.target(candidate, *before, &fence))
                .collect();
            let checkpoints = self.wait_for(&targets, options.settle_timeout).await?;
            let settled: Vec<bool> = targets
                .iter()
                .map(|target| self.reached(target, &checkpoints))
                .collect();
            report.settled = settled.iter().all(|s| *s);
            if options.repair {
                tombstone = self
                    .primary
                    .fresh_version()
                    .await
                    .map_err(DriftError::Primary)?;
            }
            let index_now = self.index.held(&keys).await.map_err(DriftError::Sink)?;
            let primary_now = self
                .primary
                .held(&keys)
                .await
                .map_err(DriftError::Primary)?;
            for ((((candidate, before), index_now), primary_now), settled) in candidates
                .into_iter()
                .zip(before)
                .zip(index_now)
                .zip(primary_now)
                .zip(settled)
            {
                if !settled || before != primary_now {
                    report.in_flight += 1;
                    continue;
                }
                let index_live = index_now.and_then(Held::live);
                let primary_live = primary_now.and_then(Held::live);
                let kind = match (primary_live, index_live) {
                    (p, i) if p == i => None,
                    (Some(_), None) => Some(Kind::Missing),
                    (None, Some(_)) => Some(Kind::Extra),
                    (Some(_), Some(_)) => Some(Kind::Stale),
                    (None, None) => None,
                };
                let Some(kind) = kind else {
                    report.in_flight += 1;
                    report.cleared_on_recheck += 1;
                    continue;
                };
                if kind == Kind::Extra
                    && self
                        .deletion_pending(&candidate, primary_now, &checkpoints, &fence)
                        .await?
                {
                    report.in_flight += 1;
                    continue;
                }
                let unrepairable = match kind {
                    Kind::Stale => index_live > primary_live,
                    Kind::Extra => {
                        options.repair
                            && index_live >= Some(removal_version(primary_now, tombstone))
                    }
                    Kind::Missing => false,
                };
                drifted.push((
                    kind,
                    primary_now,
                    DriftedKey {
                        partition: candidate.key.partition,
                        sort: candidate.key.sort,
                        shard: candidate.shard.map(|s| s.0),
                        primary_version: primary_live.map(|v| v.0),
                        index_version: index_live.map(|v| v.0),
                        outcome: if unrepairable {
                            Outcome::Unrepairable
                        } else {
                            Outcome::Reported
                        },
                        error: None,
                    },
                ));
            }
        }

        if let (true, Some(sink)) = (options.repair, self.sink) {
            self.repair(sink, &mut drifted, tombstone).await?;
        }

        for (kind, _, d) in drifted {
            match kind {
                Kind::Missing => report.missing += 1,
                Kind::Extra => report.extra += 1,
                Kind::Stale => report.stale += 1,
            }
            match d.outcome {
                Outcome::Repaired => report.repaired += 1,
                Outcome::Unrepairable => report.unrepairable += 1,
                Outcome::Failed => report.repair_failed += 1,
                Outcome::Superseded => report.superseded += 1,
                Outcome::Reported => {}
            }
            let list = match kind {
                Kind::Missing => &mut report.missing_keys,
                Kind::Extra => &mut report.extra_keys,
                Kind::Stale => &mut report.stale_keys,
            };
            if list.len() < MAX_LISTED_KEYS {
                list.push(d);
            } else {
                report.keys_truncated = true;
            }
        }
        report.remaining = report.drift() - report.repaired - report.superseded;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// The newest position of every shard that has records.
    async fn fence(&self) -> Result<HashMap<ShardId, Position>, DriftError> {
        let mut fence = HashMap::new();
        for shard in self.source.shards().await? {
            if let Some(newest) = self.source.latest_position(&shard.id).await? {
                fence.insert(shard.id, newest);
            }
        }
        Ok(fence)
    }

    /// What the consumer must have applied before a candidate can be judged: the change
    /// that gave the primary its state `before` (or, when the primary knows nothing of the
    /// key, the change that gave the sink its document), when the source can place it
    /// (its shard and position); else the newest record of the candidate's shard, or of
    /// every shard.
    fn target(
        &self,
        candidate: &Candidate,
        before: Option<Held>,
        fence: &HashMap<ShardId, Position>,
    ) -> Vec<(ShardId, Position)> {
        let version = before
            .map(|held| match held {
                Held::Live(v) | Held::Deleted(v) => v,
            })
            .or(candidate.index_version);
        match (
            &candidate.shard,
            version.and_then(|v| self.source.position_of_version(v)),
        ) {
            // Never past the shard's newest record: a shard with none (empty, or all
            // trimmed) has nothing left to apply.
            (Some(shard), Some(position)) => fence
                .get(shard)
                .map(|newest| {
                    let at = match self.source.position_order(&position, newest) {
                        std::cmp::Ordering::Greater => newest.clone(),
                        _ => position,
                    };
                    vec![(shard.clone(), at)]
                })
                .unwrap_or_default(),
            (Some(shard), None) => fence
                .get(shard)
                .map(|p| vec![(shard.clone(), p.clone())])
                .unwrap_or_default(),
            (None, _) => fence.iter().map(|(s, p)| (s.clone(), p.clone())).collect(),
        }
    }

    /// Whether the sink's document of a key the primary does not hold may still be removed
    /// by a change the consumer has not applied: a deletion the primary forgot (or never
    /// reported) but the stream still carries after the consumer's checkpoint.
    async fn deletion_pending(
        &self,
        candidate: &Candidate,
        primary: Option<Held>,
        checkpoints: &HashMap<ShardId, Position>,
        fence: &HashMap<ShardId, Position>,
    ) -> Result<bool, DriftError> {
        if primary.is_some() {
            // The primary's own deletion was the target waited for.
            return Ok(false);
        }
        let Some(shard) = &candidate.shard else {
            return Ok(false);
        };
        let Some(at) = checkpoints.get(shard) else {
            // No checkpoint: pending unless the shard holds no record at all.
            return Ok(fence.contains_key(shard));
        };
        Ok(self
            .source
            .has_change_after(&candidate.key, at)
            .await?
            .unwrap_or(false))
    }

    /// Whether every shard of `target` has a checkpoint at or past its position.
    fn reached(
        &self,
        target: &[(ShardId, Position)],
        checkpoints: &HashMap<ShardId, Position>,
    ) -> bool {
        target.iter().all(|(shard, position)| {
            checkpoints.get(shard).is_some_and(|at| {
                self.source.position_order(at, position) != std::cmp::Ordering::Less
            })
        })
    }

    /// Waits until the consumer's checkpoints reach every target, or the timeout passes;
    /// returns the checkpoints last read.
    async fn wait_for(
        &self,
        targets: &[Vec<(ShardId, Position)>],
        timeout: Duration,
    ) -> Result<HashMap<ShardId, Position>, DriftError> {
        let deadline = Instant::now() + timeout;
        loop {
            let checkpoints = self.checkpoints.load(self.consumer).await?;
            let lagging = targets
                .iter()
                .filter(|t| !self.reached(t, &checkpoints))
                .count();
            if lagging == 0 {
                return Ok(checkpoints);
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    consumer = self.consumer,
                    lagging,
                    ?timeout,
                    "the consumer did not apply the changes of some differences in time; they count as in flight"
                );
                return Ok(checkpoints);
            }
            tokio::time::sleep(FENCE_POLL).await;
        }
    }

    /// Sends the right version of every repairable drifted document through the sink,
    /// makes it durable, and reads each one back.
    async fn repair(
        &self,
        sink: &dyn Sink,
        drifted: &mut [(Kind, Option<Held>, DriftedKey)],
        tombstone: Version,
    ) -> Result<(), DriftError> {
        let mut sent: Vec<(usize, ChangeRecord)> = Vec::new();
        for (n, (kind, primary, d)) in drifted.iter_mut().enumerate() {
            if d.outcome != Outcome::Reported {
                continue;
            }
            let key = d.key();
            let shard = self
                .source
                .shard_of(&key)
                .unwrap_or_else(|| ShardId("repair".into()));
            let record = match kind {
                Kind::Missing | Kind::Stale => {
                    // The item as it is now (it may have moved on since the re-check: then
                    // the newer version is sent, which is right too).
                    let Some(item) = self
                        .primary
                        .current(&key)
                        .await
                        .map_err(DriftError::Primary)?
                    else {
                        d.outcome = Outcome::Superseded;
                        continue;
                    };
                    ChangeRecord {
                        shard,
                        position: Position(item.version.0.to_string()),
                        key,
                        kind: ChangeKind::Modify,
                        version: item.version,
                        old_image: None,
                        new_image: Some(Image {
                            version: item.version,
                            body: item.body,
                        }),
                        committed_at_us: now_us(),
                    }
                }
                Kind::Extra => {
                    let version = removal_version(*primary, tombstone);
                    ChangeRecord {
                        shard,
                        position: Position(version.0.to_string()),
                        key,
                        kind: ChangeKind::Remove,
                        version,
                        old_image: None,
                        new_image: None,
                        committed_at_us: now_us(),
                    }
                }
            };
            sent.push((n, record));
        }
        let mut failed: BTreeMap<usize, String> = BTreeMap::new();
        for chunk in sent.chunks(REPAIR_BATCH) {
            let records: Vec<ChangeRecord> = chunk.iter().map(|(_, r)| r.clone()).collect();
            match sink.repair(&records).await {
                Ok(()) => {}
                Err(SinkError::Records(failures)) => {
                    for f in failures {
                        if let Some((n, _)) = chunk.get(f.index) {
                            failed.insert(*n, f.message);
                        }
                    }
                }
                Err(e @ SinkError::Batch { .. }) => {
                    for (n, _) in chunk {
                        failed.insert(*n, e.to_string());
                    }
                }
            }
        }
        if let Err(e) = sink.flush().await {
            for (n, _) in &sent {
                failed.entry(*n).or_insert_with(|| e.to_string());
            }
        }
        // Read back: the sink now holds the version sent or a newer one (the pipeline may
        // have applied a later change meanwhile); a removed document is gone unless a
        // newer version came back.
        let keys: Vec<ItemKey> = sent.iter().map(|(_, r)| r.key.clone()).collect();
        let now = self.index.held(&keys).await.map_err(DriftError::Sink)?;
        for ((n, record), now) in sent.iter().zip(now) {
            let d = &mut drifted[*n].2;
            if let Some(message) = failed.remove(n) {
                d.outcome = Outcome::Failed;
                d.error = Some(message);
                continue;
            }
            let live = now.and_then(Held::live);
            let ok = match record.kind {
                ChangeKind::Remove => live.is_none_or(|v| v > record.version),
                _ => live.is_some_and(|v| v >= record.version),
            };
            if ok {
                d.outcome = Outcome::Repaired;
            } else {
                d.outcome = Outcome::Failed;
                d.error = Some(format!(
                    "sent version {} but the sink holds {}",
                    record.version,
                    live.map_or("no live document".to_string(), |v| format!("version {v}"))
                ));
            }
        }
        Ok(())
    }
}

/// The version a repair removes an extra document at: the primary's own deletion when it
/// still remembers one, else the fresh version read before the re-check.
fn removal_version(primary: Option<Held>, fresh: Version) -> Version {
    match primary {
        Some(Held::Deleted(at)) => at.max(fresh),
        _ => fresh,
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Orders two positions written as decimal numbers of any length (the embedded store's
/// sequence numbers, DynamoDB Streams' and Kinesis' sequence numbers), falling back to
/// text order for anything else. The default of [`ChangeSource::position_order`].
pub fn decimal_position_order(a: &Position, b: &Position) -> std::cmp::Ordering {
    let digits = |p: &Position| !p.0.is_empty() && p.0.bytes().all(|c| c.is_ascii_digit());
    if digits(a) && digits(b) {
        let (a, b) = (a.0.trim_start_matches('0'), b.0.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.0.cmp(&b.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn positions_compare_as_numbers_of_any_length() {
        let p = |s: &str| Position(s.to_string());
        assert_eq!(decimal_position_order(&p("9"), &p("10")), Ordering::Less);
        assert_eq!(
            decimal_position_order(
                &p("49590338271490256608559692538361571095921575989136588898"),
                &p("4959033827149025660855969253836157109592157598913658889")
            ),
            Ordering::Greater
        );
        assert_eq!(decimal_position_order(&p("007"), &p("7")), Ordering::Equal);
        assert_eq!(decimal_position_order(&p("a"), &p("b")), Ordering::Less);
    }

    #[test]
    fn a_removal_never_goes_below_the_primary_deletion() {
        assert_eq!(
            removal_version(Some(Held::Deleted(Version(9))), Version(5)),
            Version(9)
        );
        assert_eq!(removal_version(None, Version(5)), Version(5));
        assert_eq!(
            removal_version(Some(Held::Live(Version(7))), Version(5)),
            Version(5)
        );
    }
}

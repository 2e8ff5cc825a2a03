//! Reconciliation: does a consumer's index hold exactly what the primary holds, and if not,
//! which documents differ? Optionally repairs them through the sink.
//!
//! # How the comparison works (Merkle-style)
//!
//! Both sides are summarised as a hash tree over the key space, by
//! [`ItemKey::stable_hash`] (stored in the index as the `sort_hash` fast field, so the
//! index side reads two fast-field columns and never a stored document or key string):
//!
//! - **leaves**: `2^leaf_bits` buckets by the top `leaf_bits` bits of the key hash, with
//!   `leaf_bits` between 12 and 20, chosen so that a leaf holds about 16 items
//!   ([`TARGET_LEAF_ITEMS`]); each leaf's digest is its item count and the wrapping sum of
//!   a 64-bit mix of (key hash, version): order-free, so it is computed in one streaming
//!   pass with no sorting and no per-item memory;
//! - **levels**: level 0 has 4096 buckets (top 12 bits); each level below splits a bucket
//!   into 16 (4 more bits) down to the leaves. A parent's digest is the sum of its
//!   children's.
//!
//! The comparison starts with the 4096 top buckets and descends only into buckets whose
//! digests differ; only the items of differing leaves are compared key by key
//! (`read_individually`). On a clean index that is nothing at all. Reading the primary's
//! keys of those leaves takes a second pass over the items table (SQLite cannot look a
//! key up by its hash); the index side reads just the matching documents' keys.
//!
//! # Online: differences younger than the replication lag are ignored
//!
//! In the embedded store an item's version is the sequence number of the change that
//! produced it, and a consumer's checkpoint per shard is the last sequence number whose
//! record (and all before it) the sink holds durably. Reads happen in this order:
//! checkpoints, then the index snapshot, then the primary. So for an item of shard `s`
//! with checkpoint `c`:
//!
//! - missing or older in the index with primary version `> c`: **in flight** (the change is
//!   on its way), not drift;
//! - in the index but not in the primary: in flight if the stream still holds a change of
//!   the key after `c` (its deletion, not yet applied), drift otherwise;
//! - newer in the index than in the primary: cannot happen by replication; reported as
//!   stale and **unrepairable** (the version guard refuses to go back).
//!
//! Every difference classified as drift is checked once more, key by key (fresh
//! checkpoints, then the index, then the primary), just before it is reported or
//! repaired, so a race with the pipeline is not reported.
//!
//! # Repair
//!
//! Through the sink, never past its version guard: a missing or stale item is re-sent as a
//! `MODIFY` record with its current version and body; an extra document is removed by a
//! `REMOVE` record whose version is the store's newest sequence number (read before the
//! re-check), so a later re-creation of the key, which gets a bigger number, always wins.
//! The sink is then flushed (made durable), and each repaired key is read back from the
//! index before it counts as `repaired`.
//!
//! # Exit codes of `tsunagu reconcile`
//!
//! 0: no drift, or every drifted document was repaired. 3: drift remains (reported
//! without `--repair`, unrepairable, or a repair failed). 1: reconcile itself failed.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_embedded_index::{ActivityIndex, ActivityIndexReader, IndexError, IndexSnapshot};
use tsunagu_embedded_store::{EmbeddedState, EmbeddedStore};
use tsunagu_engine::ports::{CheckpointStore, Sink, SinkError};

/// Bits of the key hash that pick a top-level bucket (4096 buckets).
pub const TOP_BITS: u32 = 12;
/// Bits added per level below the top: each bucket splits into 16.
pub const FANOUT_BITS: u32 = 4;
/// The finest leaves: 2^20 buckets (16 MiB of digests per side at most).
pub const MAX_LEAF_BITS: u32 = 20;
/// Items per leaf the leaf size aims at.
pub const TARGET_LEAF_ITEMS: u64 = 16;
/// Drifted keys listed per kind in a report; the counts are always complete.
pub const MAX_LISTED_KEYS: usize = 1_000;
/// Records per sink call when repairing.
const REPAIR_BATCH: usize = 500;

/// The index being reconciled: the writer (shared with a running pipeline, or opened for
/// `--repair`) or a read-only handle (another process writes it).
#[derive(Clone)]
pub enum IndexHandle {
    Writer(Arc<ActivityIndex>),
    ReadOnly(Arc<ActivityIndexReader>),
}

impl IndexHandle {
    fn snapshot(&self) -> Result<IndexSnapshot, IndexError> {
        match self {
            IndexHandle::Writer(index) => index.snapshot(),
            IndexHandle::ReadOnly(reader) => reader.snapshot(),
        }
    }
}

/// The digest of a set of (key hash, version) pairs: order-free, so it can be summed up
/// in any order and combined from children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Digest {
    count: u64,
    sum: u64,
}

impl Digest {
    fn add(&mut self, hash: u64, version: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(mix(hash, version));
    }

    fn merge(&mut self, other: &Digest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// splitmix64's finaliser.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One item's contribution to a digest: any change of key or version changes it.
fn mix(hash: u64, version: u64) -> u64 {
    splitmix64(hash ^ splitmix64(version ^ 0xA076_1D64_78BD_642F))
}

/// The leaves of one side's hash tree.
#[derive(Debug, Clone)]
struct HashTree {
    leaf_bits: u32,
    leaves: Vec<Digest>,
}

impl HashTree {
    fn new(leaf_bits: u32) -> Self {
        Self {
            leaf_bits,
            leaves: vec![Digest::default(); 1 << leaf_bits],
        }
    }

    fn leaf_of(leaf_bits: u32, hash: u64) -> usize {
        (hash >> (64 - leaf_bits)) as usize
    }

    fn add(&mut self, hash: u64, version: u64) {
        self.leaves[Self::leaf_of(self.leaf_bits, hash)].add(hash, version);
    }

    fn items(&self) -> u64 {
        self.leaves.iter().map(|d| d.count).sum()
    }

    /// The digests of the level whose buckets are the top `bits` bits.
    fn level(&self, bits: u32) -> Vec<Digest> {
        if bits == self.leaf_bits {
            return self.leaves.clone();
        }
        let shift = self.leaf_bits - bits;
        let mut out = vec![Digest::default(); 1 << bits];
        for (i, leaf) in self.leaves.iter().enumerate() {
            out[i >> shift].merge(leaf);
        }
        out
    }
}

/// Leaf bits for about [`TARGET_LEAF_ITEMS`] items per leaf.
fn leaf_bits_for(estimated_items: u64) -> u32 {
    let leaves = (estimated_items / TARGET_LEAF_ITEMS).max(1);
    let bits = 64 - (leaves - 1).leading_zeros();
    bits.clamp(TOP_BITS, MAX_LEAF_BITS)
}

/// The bit widths of the levels, top first, the leaves last.
fn level_bits(leaf_bits: u32) -> Vec<u32> {
    let mut bits = vec![TOP_BITS.min(leaf_bits)];
    while *bits.last().unwrap_or(&leaf_bits) < leaf_bits {
        let next = (bits[bits.len() - 1] + FANOUT_BITS).min(leaf_bits);
        bits.push(next);
    }
    bits
}

/// How the tree comparison went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TreeStats {
    /// Bits of the key hash per level, top first (12, 16, ...), the last being the leaves.
    pub level_bits: Vec<u32>,
    /// Bucket digests compared, all levels together.
    pub buckets_compared: u64,
    /// Buckets whose digests differed, all levels together.
    pub buckets_differing: u64,
    /// Leaves whose items were compared key by key.
    pub leaves_differing: u64,
}

/// Descends from the top level into differing buckets only; returns the differing leaves.
fn differing_leaves(primary: &HashTree, index: &HashTree) -> (Vec<usize>, TreeStats) {
    let bits = level_bits(primary.leaf_bits);
    let mut stats = TreeStats {
        level_bits: bits.clone(),
        ..TreeStats::default()
    };
    let mut frontier: Vec<usize> = (0..1usize << bits[0]).collect();
    for (depth, &b) in bits.iter().enumerate() {
        let (p, i) = (primary.level(b), index.level(b));
        let differing: Vec<usize> = frontier.into_iter().filter(|&n| p[n] != i[n]).collect();
        stats.buckets_compared += if depth == 0 {
            1 << b
        } else {
            0 // counted below, when the children are listed
        };
        stats.buckets_differing += differing.len() as u64;
        match bits.get(depth + 1) {
            Some(&next) => {
                let split = next - b;
                frontier = differing
                    .iter()
                    .flat_map(|&n| (n << split)..((n + 1) << split))
                    .collect();
                stats.buckets_compared += frontier.len() as u64;
            }
            None => {
                stats.leaves_differing = differing.len() as u64;
                return (differing, stats);
            }
        }
    }
    (Vec::new(), stats)
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
    pub shard: u32,
    /// The primary's version (none: not in the primary).
    pub primary_version: Option<u64>,
    /// The index's version of its live document (none: no live document).
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

/// What one reconciliation found (and repaired). Serialized as the `--json` report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub consumer: String,
    /// The consumer's sink, when known (set by the command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// Items in the primary, all examined (through the tree).
    pub checked: u64,
    /// Live documents in the index.
    pub indexed: u64,
    /// In the primary, not in the index (older than the replication lag).
    pub missing: u64,
    /// In the index, not in the primary, with no pending change that removes them.
    pub extra: u64,
    /// In both, with another version in the index (older, or impossibly newer).
    pub stale: u64,
    /// Differences younger than the replication lag: ignored.
    pub in_flight: u64,
    /// Of the differences first classified as drift, those gone at the re-check (the
    /// pipeline applied them meanwhile); included in `in_flight`.
    pub cleared_on_recheck: u64,
    /// Drifted documents repaired (sent, durable and read back).
    pub repaired: u64,
    /// Drifted documents the sink's version guard cannot repair (newer in the index).
    pub unrepairable: u64,
    /// Repairs the sink rejected or that did not show in the index.
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
    /// Whether the consumer had a checkpoint on every shard (without one, everything in
    /// that shard counts as in flight).
    pub checkpointed: bool,
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

/// A difference found in a leaf.
#[derive(Debug, Clone)]
struct Difference {
    key: ItemKey,
    shard: u32,
    primary: Option<Version>,
    index: Option<Version>,
}

/// How a difference is judged against the checkpoints.
enum Verdict {
    Same,
    InFlight,
    Drift(Kind),
}

/// The checkpoints of a consumer, as sequence numbers per shard index (0: none).
async fn checkpoints(
    state: &EmbeddedState,
    consumer: &str,
    shard_count: u32,
) -> anyhow::Result<(Vec<u64>, bool)> {
    let stored = state.load(consumer).await?;
    let mut out = vec![0u64; shard_count as usize];
    let mut complete = true;
    for (shard, slot) in out.iter_mut().enumerate() {
        match stored.get(&ShardId(shard.to_string())) {
            Some(position) => {
                *slot = position.0.parse::<u64>().map_err(|_| {
                    anyhow::anyhow!(
                        "checkpoint {position:?} of consumer {consumer:?} on shard {shard} is not a sequence number of the embedded store"
                    )
                })?
            }
            None => complete = false,
        }
    }
    Ok((out, complete))
}

/// Judges one difference: `checkpoint` is the checkpoint of its shard.
async fn judge(store: &EmbeddedStore, d: &Difference, checkpoint: u64) -> anyhow::Result<Verdict> {
    Ok(match (d.primary, d.index) {
        (p, i) if p == i => Verdict::Same,
        (None, None) => Verdict::Same,
        // Newer in the index than in the primary, which was read after it: not lag.
        (Some(p), Some(i)) if i > p => Verdict::Drift(Kind::Stale),
        (Some(p), _) if p.0 > checkpoint => Verdict::InFlight,
        (Some(_), None) => Verdict::Drift(Kind::Missing),
        (Some(_), Some(_)) => Verdict::Drift(Kind::Stale),
        (None, Some(i)) => {
            // The index applied something past the checkpoint, so the deletion (later
            // still) is past it too; otherwise ask the stream.
            if i.0 > checkpoint
                || store
                    .newest_change_after(&d.key, checkpoint)
                    .await?
                    .is_some()
            {
                Verdict::InFlight
            } else {
                Verdict::Drift(Kind::Extra)
            }
        }
    })
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Runs `f` off the async worker threads.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Compares the primary with the consumer's index and reports missing, extra and stale
/// documents by key; with `repair`, re-sends the right versions through the sink (which
/// needs [`IndexHandle::Writer`]). Safe while the pipeline runs and writes continue, with
/// the index shared with the pipeline.
pub async fn reconcile(
    store: &EmbeddedStore,
    state: &EmbeddedState,
    index: &IndexHandle,
    consumer: &str,
    repair: bool,
) -> anyhow::Result<ReconcileReport> {
    let started = Instant::now();
    if repair && matches!(index, IndexHandle::ReadOnly(_)) {
        anyhow::bail!("repairing needs the index open for writing, not read-only");
    }
    let shard_count = store.shard_count();

    // 1. Checkpoints, then the index, then the primary (see the module documentation).
    let (checkpoint, checkpointed) = checkpoints(state, consumer, shard_count).await?;
    if !checkpointed {
        tracing::warn!(
            consumer,
            "the consumer has no checkpoint on some shards: their differences count as in flight"
        );
    }
    let snapshot = Arc::new(index.snapshot()?);
    let leaf_bits = leaf_bits_for(snapshot.doc_count());
    let index_tree = {
        let snapshot = Arc::clone(&snapshot);
        off_runtime(move || {
            let mut tree = HashTree::new(leaf_bits);
            snapshot.for_each_live(|hash, version| tree.add(hash, version.0))?;
            Ok(tree)
        })
        .await?
    };
    let primary_tree = store
        .fold_versions(HashTree::new(leaf_bits), |tree, key, version| {
            tree.add(key.stable_hash(), version.0)
        })
        .await?;

    // 2. Descend into differing buckets; compare the items of differing leaves by key.
    let (leaves, tree_stats) = differing_leaves(&primary_tree, &index_tree);
    let mut report = ReconcileReport {
        consumer: consumer.to_string(),
        checked: primary_tree.items(),
        indexed: index_tree.items(),
        checkpointed,
        tree: tree_stats,
        ..ReconcileReport::default()
    };
    drop((primary_tree, index_tree));
    let mut differences = Vec::new();
    if !leaves.is_empty() {
        let mut wanted = vec![false; 1 << leaf_bits];
        for &leaf in &leaves {
            wanted[leaf] = true;
        }
        let wanted = Arc::new(wanted);
        let in_index: BTreeMap<ItemKey, Version> = {
            let (snapshot, wanted) = (Arc::clone(&snapshot), Arc::clone(&wanted));
            off_runtime(move || {
                Ok(snapshot
                    .live_matching(|hash| wanted[HashTree::leaf_of(leaf_bits, hash)])?
                    .into_iter()
                    .collect())
            })
            .await?
        };
        let in_primary: BTreeMap<ItemKey, Version> = {
            let wanted = Arc::clone(&wanted);
            store
                .fold_versions(BTreeMap::new(), move |found, key, version| {
                    if wanted[HashTree::leaf_of(leaf_bits, key.stable_hash())] {
                        found.insert(key.clone(), version);
                    }
                })
                .await?
        };
        let keys: BTreeSet<&ItemKey> = in_index.keys().chain(in_primary.keys()).collect();
        report.read_individually = keys.len() as u64;
        for key in keys {
            let d = Difference {
                key: key.clone(),
                shard: key.shard_index(shard_count),
                primary: in_primary.get(key).copied(),
                index: in_index.get(key).copied(),
            };
            match judge(store, &d, checkpoint[d.shard as usize]).await? {
                Verdict::Same => {}
                Verdict::InFlight => report.in_flight += 1,
                Verdict::Drift(_) => differences.push(d),
            }
        }
    }
    drop(snapshot);
    report.read_individually_fraction =
        report.read_individually as f64 / report.checked.max(1) as f64;

    // 3. Re-check each drifted key once: fresh checkpoints, then the index, then the
    //    primary. The newest sequence number is read first: a tombstone at it can never
    //    hide a change made after the re-check.
    let mut drifted: Vec<(Kind, DriftedKey)> = Vec::new();
    let mut tombstone_version = 0;
    if !differences.is_empty() {
        tombstone_version = store.newest_seq().await?;
        let (checkpoint, _) = checkpoints(state, consumer, shard_count).await?;
        let snapshot = index.snapshot()?;
        let mut rechecked = Vec::with_capacity(differences.len());
        for d in &differences {
            rechecked.push(snapshot.version_of(&d.key)?);
        }
        drop(snapshot);
        let primary = store
            .versions_of(differences.iter().map(|d| d.key.clone()).collect())
            .await?;
        for ((mut d, index_version), primary_version) in
            differences.into_iter().zip(rechecked).zip(primary)
        {
            d.index = index_version;
            d.primary = primary_version;
            match judge(store, &d, checkpoint[d.shard as usize]).await? {
                Verdict::Same | Verdict::InFlight => {
                    report.in_flight += 1;
                    report.cleared_on_recheck += 1;
                }
                Verdict::Drift(kind) => {
                    let unrepairable = match kind {
                        Kind::Stale => d.index > d.primary,
                        Kind::Extra => d.index.is_some_and(|v| v.0 >= tombstone_version),
                        Kind::Missing => false,
                    };
                    drifted.push((
                        kind,
                        DriftedKey {
                            partition: d.key.partition,
                            sort: d.key.sort,
                            shard: d.shard,
                            primary_version: d.primary.map(|v| v.0),
                            index_version: d.index.map(|v| v.0),
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
        }
    }

    // 4. Repair through the sink.
    if repair && drifted.iter().any(|(_, d)| d.outcome == Outcome::Reported) {
        let IndexHandle::Writer(sink) = index else {
            unreachable!("checked above");
        };
        repair_drift(store, sink, &mut drifted, tombstone_version, shard_count).await?;
    }

    // 5. Count and list.
    for (kind, d) in drifted {
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

/// Sends the right version of every repairable drifted document through the sink, makes
/// it durable, and reads each one back.
async fn repair_drift(
    store: &EmbeddedStore,
    sink: &Arc<ActivityIndex>,
    drifted: &mut [(Kind, DriftedKey)],
    tombstone_version: u64,
    shard_count: u32,
) -> anyhow::Result<()> {
    // (position in `drifted`, record sent)
    let mut sent: Vec<(usize, ChangeRecord)> = Vec::new();
    for (n, (kind, d)) in drifted.iter_mut().enumerate() {
        if d.outcome != Outcome::Reported {
            continue;
        }
        let key = d.key();
        let shard = ShardId(key.shard_index(shard_count).to_string());
        let record = match kind {
            Kind::Missing | Kind::Stale => {
                // The item as it is now (it may have moved on since the re-check: then the
                // newer version is sent, which is right too).
                let Some(item) = store.get(&key).await? else {
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
            Kind::Extra => ChangeRecord {
                shard,
                position: Position(tombstone_version.to_string()),
                key,
                kind: ChangeKind::Remove,
                version: Version(tombstone_version),
                old_image: None,
                new_image: None,
                committed_at_us: now_us(),
            },
        };
        sent.push((n, record));
    }
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    for chunk in sent.chunks(REPAIR_BATCH) {
        let records: Vec<ChangeRecord> = chunk.iter().map(|(_, r)| r.clone()).collect();
        match sink.apply(&records).await {
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
    // Read back: the index now holds the version sent or a newer one (the pipeline may
    // have applied a later change meanwhile); a removed document is gone unless a newer
    // version came back.
    let snapshot = sink.snapshot()?;
    for (n, record) in &sent {
        let d = &mut drifted[*n].1;
        if let Some(message) = failed.remove(n) {
            d.outcome = Outcome::Failed;
            d.error = Some(message);
            continue;
        }
        let now = snapshot.version_of(&record.key)?;
        let ok = match record.kind {
            ChangeKind::Remove => now.is_none_or(|v| v > record.version),
            _ => now.is_some_and(|v| v >= record.version),
        };
        if ok {
            d.outcome = Outcome::Repaired;
        } else {
            d.outcome = Outcome::Failed;
            d.error = Some(format!(
                "sent version {} but the index holds {}",
                record.version,
                now.map_or("no document".to_string(), |v| format!("version {v}"))
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_bits_aim_at_small_leaves_within_bounds() {
        assert_eq!(leaf_bits_for(0), TOP_BITS);
        assert_eq!(leaf_bits_for(10_000), TOP_BITS);
        assert_eq!(leaf_bits_for(1_000_000), 16);
        assert_eq!(leaf_bits_for(u64::MAX), MAX_LEAF_BITS);
        assert_eq!(level_bits(12), vec![12]);
        assert_eq!(level_bits(16), vec![12, 16]);
        assert_eq!(level_bits(18), vec![12, 16, 18]);
    }

    #[test]
    fn the_descent_finds_exactly_the_differing_leaves() {
        let bits = 16;
        let (mut a, mut b) = (HashTree::new(bits), HashTree::new(bits));
        for n in 0..50_000u64 {
            let h = splitmix64(n);
            a.add(h, n);
            b.add(h, n);
        }
        // A missing item, a stale version, an extra item.
        let (m, s, e) = (splitmix64(1_000_001), splitmix64(7), splitmix64(1_000_002));
        a.add(m, 1);
        b.leaves[HashTree::leaf_of(bits, s)] = Digest::default();
        for n in 0..50_000u64 {
            let h = splitmix64(n);
            if HashTree::leaf_of(bits, h) == HashTree::leaf_of(bits, s) {
                b.add(h, if h == s { n + 1 } else { n });
            }
        }
        b.add(e, 3);
        let (leaves, stats) = differing_leaves(&a, &b);
        let mut expected: Vec<usize> = [m, s, e]
            .iter()
            .map(|&h| HashTree::leaf_of(bits, h))
            .collect();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(leaves, expected);
        assert_eq!(stats.level_bits, vec![12, 16]);
        assert_eq!(stats.leaves_differing, expected.len() as u64);
        assert!(stats.buckets_compared <= 4096 + 16 * 3);
    }

    #[test]
    fn equal_trees_compare_only_the_top_level() {
        let (mut a, mut b) = (HashTree::new(12), HashTree::new(12));
        for n in 0..1_000u64 {
            a.add(splitmix64(n), n);
            b.add(splitmix64(n), n);
        }
        let (leaves, stats) = differing_leaves(&a, &b);
        assert!(leaves.is_empty());
        assert_eq!(stats.buckets_compared, 4096);
    }
}

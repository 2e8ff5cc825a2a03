//! In-memory implementations of the ports: a version-guarded sink, checkpoints, a
//! dead-letter queue, backfill progress, leases, a change stream and a scanner of its
//! items. They honour the same contracts as the durable adapters (minus
//! durability across processes) and are used by tests, benchmarks and dry runs.

use crate::backfill::{BackfillProgressStore, BackfillState};
use crate::ports::{
    ChangeSource, CheckpointStore, DeadLetter, DeadLetterQueue, ItemScanner, Lease, LeaseStore,
    ReadBatch, ReadFrom, RecordFailure, ScanPage, ShardInfo, Sink, SinkError, SourceError,
    StateError,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tsunagu_domain::{ChangeKind, ChangeRecord, ItemKey, Position, ShardId, Version};

/// What the sink holds for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub version: Version,
    /// `None` is a tombstone: the item was deleted at `version`.
    pub body: Option<serde_json::Value>,
}

/// A version-guarded key-value sink in memory.
#[derive(Default)]
pub struct MemorySink {
    items: Mutex<HashMap<ItemKey, Held>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Live items and their versions (tombstones left out).
    pub fn live_versions(&self) -> BTreeMap<ItemKey, Version> {
        self.items
            .lock()
            .map(|items| {
                items
                    .iter()
                    .filter(|(_, h)| h.body.is_some())
                    .map(|(k, h)| (k.clone(), h.version))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, key: &ItemKey) -> Option<Held> {
        self.items.lock().ok().and_then(|i| i.get(key).cloned())
    }

    /// Everything the sink holds, tombstones included.
    pub fn snapshot(&self) -> HashMap<ItemKey, Held> {
        self.items.lock().map(|i| i.clone()).unwrap_or_default()
    }

    /// Replaces everything the sink holds (to model a restart that lost what was not
    /// durable).
    pub fn restore(&self, items: HashMap<ItemKey, Held>) {
        if let Ok(mut current) = self.items.lock() {
            *current = items;
        }
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        self.apply_now(records)
    }
}

impl MemorySink {
    /// [`Sink::apply`] without the future: applies at once.
    pub fn apply_now(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        let mut items = self.items.lock().map_err(|_| SinkError::Batch {
            retryable: false,
            message: "memory sink poisoned".into(),
        })?;
        let mut failures = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if items
                .get(&record.key)
                .is_some_and(|held| held.version >= record.version)
            {
                continue;
            }
            let body = match record.kind {
                ChangeKind::Remove => None,
                ChangeKind::Insert | ChangeKind::Modify => match &record.new_image {
                    Some(image) => Some(image.body.clone()),
                    None => {
                        failures.push(RecordFailure {
                            index,
                            retryable: false,
                            message: format!("{} change without a new image", record.kind.as_str()),
                        });
                        continue;
                    }
                },
            };
            items.insert(
                record.key.clone(),
                Held {
                    version: record.version,
                    body,
                },
            );
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Records(failures))
        }
    }
}

/// Checkpoints, dead letters and backfill progress in memory.
#[derive(Default)]
pub struct MemoryState {
    checkpoints: Mutex<HashMap<(String, ShardId), Position>>,
    letters: Mutex<Letters>,
    backfills: Mutex<HashMap<(String, ShardId), BackfillState>>,
}

#[derive(Default)]
struct Letters {
    /// The last id handed out: ids are never reused, even after the newest letter is
    /// removed.
    last_id: u64,
    by_id: BTreeMap<u64, DeadLetter>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned() -> StateError {
    StateError("in-memory state poisoned".into())
}

#[async_trait]
impl CheckpointStore for MemoryState {
    async fn load(&self, consumer: &str) -> Result<HashMap<ShardId, Position>, StateError> {
        Ok(self
            .checkpoints
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter(|((c, _), _)| c == consumer)
            .map(|((_, s), p)| (s.clone(), p.clone()))
            .collect())
    }

    async fn save(
        &self,
        consumer: &str,
        shard: &ShardId,
        position: &Position,
    ) -> Result<(), StateError> {
        self.checkpoints
            .lock()
            .map_err(|_| poisoned())?
            .insert((consumer.to_string(), shard.clone()), position.clone());
        Ok(())
    }
}

#[async_trait]
impl DeadLetterQueue for MemoryState {
    async fn push(&self, mut letter: DeadLetter) -> Result<u64, StateError> {
        let mut letters = self.letters.lock().map_err(|_| poisoned())?;
        letters.last_id += 1;
        let id = letters.last_id;
        letter.id = id;
        letters.by_id.insert(id, letter);
        Ok(id)
    }

    async fn list(
        &self,
        consumer: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StateError> {
        Ok(self
            .letters
            .lock()
            .map_err(|_| poisoned())?
            .by_id
            .range((
                std::ops::Bound::Excluded(after_id),
                std::ops::Bound::Unbounded,
            ))
            .map(|(_, l)| l)
            .filter(|l| consumer.is_none_or(|c| l.consumer == c))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn get(&self, id: u64) -> Result<Option<DeadLetter>, StateError> {
        Ok(self
            .letters
            .lock()
            .map_err(|_| poisoned())?
            .by_id
            .get(&id)
            .cloned())
    }

    async fn remove(&self, id: u64) -> Result<bool, StateError> {
        Ok(self
            .letters
            .lock()
            .map_err(|_| poisoned())?
            .by_id
            .remove(&id)
            .is_some())
    }

    async fn count(&self, consumer: &str) -> Result<u64, StateError> {
        Ok(self
            .letters
            .lock()
            .map_err(|_| poisoned())?
            .by_id
            .values()
            .filter(|l| l.consumer == consumer)
            .count() as u64)
    }
}

#[async_trait]
impl BackfillProgressStore for MemoryState {
    async fn load_backfill(
        &self,
        consumer: &str,
    ) -> Result<HashMap<ShardId, BackfillState>, StateError> {
        Ok(self
            .backfills
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter(|((c, _), _)| c == consumer)
            .map(|((_, shard), state)| (shard.clone(), state.clone()))
            .collect())
    }

    async fn save_backfill(
        &self,
        consumer: &str,
        shard: &ShardId,
        state: &BackfillState,
    ) -> Result<(), StateError> {
        self.backfills
            .lock()
            .map_err(|_| poisoned())?
            .insert((consumer.to_string(), shard.clone()), state.clone());
        Ok(())
    }

    async fn clear_backfill(&self, consumer: &str, shard: &ShardId) -> Result<(), StateError> {
        self.backfills
            .lock()
            .map_err(|_| poisoned())?
            .remove(&(consumer.to_string(), shard.clone()));
        Ok(())
    }
}

/// Leases in memory, shared by the engines of one test as if they were processes.
#[derive(Default)]
pub struct MemoryLeases {
    leases: Mutex<BTreeMap<(String, ShardId), Lease>>,
}

impl MemoryLeases {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `change` to a lease if `condition` holds; returns the lease after it.
    fn update(
        &self,
        consumer: &str,
        shard: &ShardId,
        condition: impl FnOnce(&Lease) -> bool,
        change: impl FnOnce(&mut Lease),
    ) -> Result<Option<Lease>, StateError> {
        let mut leases = self.leases.lock().map_err(|_| poisoned())?;
        match leases.get_mut(&(consumer.to_string(), shard.clone())) {
            Some(lease) if condition(lease) => {
                change(lease);
                Ok(Some(lease.clone()))
            }
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>, StateError> {
        Ok(self
            .leases
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter(|((c, _), _)| c == consumer)
            .map(|(_, l)| l.clone())
            .collect())
    }

    async fn ensure(&self, consumer: &str, shard: &ShardInfo) -> Result<(), StateError> {
        self.leases
            .lock()
            .map_err(|_| poisoned())?
            .entry((consumer.to_string(), shard.id.clone()))
            .or_insert_with(|| Lease {
                shard: shard.id.clone(),
                parent: shard.parent.clone(),
                adjacent_parent: shard.adjacent_parent.clone(),
                owner: None,
                counter: 0,
                expires_at_ms: 0,
                checkpoint: None,
                finished: false,
            });
        Ok(())
    }

    async fn take(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        seen_counter: u64,
        expires_at_ms: i64,
    ) -> Result<Option<Lease>, StateError> {
        self.update(
            consumer,
            shard,
            |l| l.counter == seen_counter,
            |l| {
                l.owner = Some(worker.to_string());
                l.counter += 1;
                l.expires_at_ms = expires_at_ms;
            },
        )
    }

    async fn renew(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        expires_at_ms: i64,
    ) -> Result<Option<Lease>, StateError> {
        self.update(
            consumer,
            shard,
            |l| l.owner.as_deref() == Some(worker),
            |l| l.expires_at_ms = expires_at_ms,
        )
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        position: Option<&Position>,
        finished: bool,
    ) -> Result<bool, StateError> {
        Ok(self
            .update(
                consumer,
                shard,
                |l| l.owner.as_deref() == Some(worker),
                |l| {
                    if let Some(p) = position {
                        l.checkpoint = Some(p.clone());
                    }
                    l.finished |= finished;
                },
            )?
            .is_some())
    }

    async fn release(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
    ) -> Result<bool, StateError> {
        Ok(self
            .update(
                consumer,
                shard,
                |l| l.owner.as_deref() == Some(worker),
                |l| {
                    l.owner = None;
                    l.expires_at_ms = 0;
                },
            )?
            .is_some())
    }
}

/// A change stream in memory: items with versions and records sharded by partition key,
/// the same semantics as the embedded store (version = sequence number of the change).
pub struct MemoryStream {
    shard_count: u32,
    inner: Mutex<StreamInner>,
    committed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct StreamInner {
    seq: u64,
    items: HashMap<ItemKey, (Version, serde_json::Value)>,
    shards: Vec<Vec<ChangeRecord>>,
}

impl MemoryStream {
    pub fn new(shard_count: u32) -> Self {
        let shard_count = shard_count.max(1);
        Self {
            shard_count,
            inner: Mutex::new(StreamInner {
                shards: vec![Vec::new(); shard_count as usize],
                ..StreamInner::default()
            }),
            committed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Creates or replaces an item; returns its new version (`None` if the body is the
    /// same as before, which appends no record).
    pub fn put(&self, key: ItemKey, body: serde_json::Value) -> Option<Version> {
        let mut inner = self.inner.lock().ok()?;
        let old = inner.items.get(&key).cloned();
        if old.as_ref().is_some_and(|(_, b)| *b == body) {
            return None;
        }
        inner.seq += 1;
        let version = Version(inner.seq);
        let kind = if old.is_some() {
            ChangeKind::Modify
        } else {
            ChangeKind::Insert
        };
        inner.items.insert(key.clone(), (version, body.clone()));
        self.append(&mut inner, key, kind, version, old, Some(body));
        Some(version)
    }

    /// Deletes an item; returns the deletion's version (`None` if it did not exist).
    pub fn delete(&self, key: &ItemKey) -> Option<Version> {
        let mut inner = self.inner.lock().ok()?;
        let old = inner.items.remove(key)?;
        inner.seq += 1;
        let version = Version(inner.seq);
        self.append(
            &mut inner,
            key.clone(),
            ChangeKind::Remove,
            version,
            Some(old),
            None,
        );
        Some(version)
    }

    fn append(
        &self,
        inner: &mut StreamInner,
        key: ItemKey,
        kind: ChangeKind,
        version: Version,
        old: Option<(Version, serde_json::Value)>,
        new: Option<serde_json::Value>,
    ) {
        let shard = key.shard_index(self.shard_count);
        let record = ChangeRecord {
            shard: ShardId(shard.to_string()),
            position: Position(version.0.to_string()),
            key,
            kind,
            version,
            old_image: old.map(|(version, body)| tsunagu_domain::Image { version, body }),
            new_image: new.map(|body| tsunagu_domain::Image { version, body }),
            committed_at_us: crate::lane::now_us(),
        };
        inner.shards[shard as usize].push(record);
        self.committed.send_replace(version.0);
    }

    /// Every live item's version.
    pub fn versions(&self) -> BTreeMap<ItemKey, Version> {
        self.inner
            .lock()
            .map(|i| i.items.iter().map(|(k, (v, _))| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Every record ever appended, in commit order.
    pub fn records(&self) -> Vec<ChangeRecord> {
        let mut all: Vec<ChangeRecord> = self
            .inner
            .lock()
            .map(|i| i.shards.iter().flatten().cloned().collect())
            .unwrap_or_default();
        all.sort_by_key(|r| r.version);
        all
    }

    fn shard_index(&self, shard: &ShardId) -> Result<usize, SourceError> {
        shard
            .0
            .parse::<u32>()
            .ok()
            .filter(|s| *s < self.shard_count)
            .map(|s| s as usize)
            .ok_or_else(|| SourceError::Fatal(format!("no shard {shard}")))
    }

    fn after(from: &ReadFrom) -> Result<u64, SourceError> {
        match from {
            ReadFrom::TrimHorizon => Ok(0),
            ReadFrom::After(p) => {
                p.0.parse()
                    .map_err(|_| SourceError::Fatal(format!("bad position {p}")))
            }
        }
    }
}

#[async_trait]
impl ChangeSource for MemoryStream {
    async fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        Ok((0..self.shard_count)
            .map(|s| ShardInfo::root(ShardId(s.to_string())))
            .collect())
    }

    async fn read(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        limit: usize,
        wait: std::time::Duration,
    ) -> Result<ReadBatch, SourceError> {
        let index = self.shard_index(shard)?;
        let after = Self::after(from)?;
        let mut committed = self.committed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            committed.borrow_and_update();
            let records: Vec<ChangeRecord> = {
                let inner = self
                    .inner
                    .lock()
                    .map_err(|_| SourceError::Fatal("memory stream poisoned".into()))?;
                let shard = &inner.shards[index];
                let start = shard.partition_point(|r| r.version.0 <= after);
                shard[start..].iter().take(limit).cloned().collect()
            };
            if !records.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(ReadBatch {
                    records,
                    end_of_shard: false,
                });
            }
            let _ = tokio::time::timeout_at(deadline, committed.changed()).await;
        }
    }

    fn shard_of(&self, key: &ItemKey) -> Option<ShardId> {
        Some(ShardId(key.shard_index(self.shard_count).to_string()))
    }

    async fn has_change_after(
        &self,
        key: &ItemKey,
        after: &Position,
    ) -> Result<Option<bool>, SourceError> {
        let after = Self::after(&ReadFrom::After(after.clone()))?;
        let inner = self
            .inner
            .lock()
            .map_err(|_| SourceError::Fatal("memory stream poisoned".into()))?;
        Ok(Some(
            inner.shards[key.shard_index(self.shard_count) as usize]
                .iter()
                .any(|r| &r.key == key && r.version.0 > after),
        ))
    }

    /// A change's sequence number is the item's version.
    fn position_of_version(&self, version: tsunagu_domain::Version) -> Option<Position> {
        Some(Position(version.0.to_string()))
    }

    async fn latest_position(&self, shard: &ShardId) -> Result<Option<Position>, SourceError> {
        let index = self.shard_index(shard)?;
        Ok(self
            .inner
            .lock()
            .ok()
            .and_then(|i| i.shards[index].last().map(|r| r.position.clone())))
    }

    async fn backlog(&self, shard: &ShardId, from: &ReadFrom) -> Result<Option<u64>, SourceError> {
        let index = self.shard_index(shard)?;
        let after = Self::after(from)?;
        Ok(self.inner.lock().ok().map(|i| {
            i.shards[index]
                .iter()
                .filter(|r| r.version.0 > after)
                .count() as u64
        }))
    }
}

// ---------------------------------------------------------------------------------------
// Drift detection over the in-memory stream and sink
// ---------------------------------------------------------------------------------------

fn poisoned_read() -> crate::drift::ReadError {
    crate::drift::ReadError("in-memory state poisoned".into())
}

#[async_trait]
impl crate::drift::VersionDigest for MemoryStream {
    async fn approximate_items(&self) -> Result<u64, crate::drift::ReadError> {
        Ok(self.inner.lock().map_err(|_| poisoned_read())?.items.len() as u64)
    }

    async fn digest(
        &self,
        leaf_bits: u32,
    ) -> Result<crate::drift::tree::HashTree, crate::drift::ReadError> {
        let mut tree = crate::drift::tree::HashTree::new(leaf_bits);
        for (key, (version, _)) in &self.inner.lock().map_err(|_| poisoned_read())?.items {
            tree.add(key.stable_hash(), version.0);
        }
        Ok(tree)
    }

    async fn live_in(
        &self,
        leaves: &crate::drift::tree::LeafSet,
    ) -> Result<Vec<(ItemKey, Version)>, crate::drift::ReadError> {
        let inner = self.inner.lock().map_err(|_| poisoned_read())?;
        Ok(inner
            .items
            .iter()
            .filter(|(key, _)| leaves.contains(key.stable_hash()))
            .map(|(key, (version, _))| (key.clone(), *version))
            .collect())
    }

    /// A deleted item is known by its newest `REMOVE` record.
    async fn held(
        &self,
        keys: &[ItemKey],
    ) -> Result<Vec<Option<crate::drift::Held>>, crate::drift::ReadError> {
        let inner = self.inner.lock().map_err(|_| poisoned_read())?;
        Ok(keys
            .iter()
            .map(|key| match inner.items.get(key) {
                Some((version, _)) => Some(crate::drift::Held::Live(*version)),
                None => inner.shards[key.shard_index(self.shard_count) as usize]
                    .iter()
                    .rev()
                    .find(|r| &r.key == key)
                    .map(|r| crate::drift::Held::Deleted(r.version)),
            })
            .collect())
    }
}

#[async_trait]
impl crate::drift::PrimaryDigest for MemoryStream {
    async fn current(
        &self,
        key: &ItemKey,
    ) -> Result<Option<crate::ports::StoredItem>, crate::drift::ReadError> {
        let inner = self.inner.lock().map_err(|_| poisoned_read())?;
        Ok(inner
            .items
            .get(key)
            .map(|(version, body)| crate::ports::StoredItem {
                key: key.clone(),
                version: *version,
                body: body.clone(),
            }))
    }

    async fn fresh_version(&self) -> Result<Version, crate::drift::ReadError> {
        Ok(Version(self.inner.lock().map_err(|_| poisoned_read())?.seq))
    }
}

#[async_trait]
impl crate::drift::VersionDigest for MemorySink {
    async fn approximate_items(&self) -> Result<u64, crate::drift::ReadError> {
        Ok(self.live_versions().len() as u64)
    }

    async fn digest(
        &self,
        leaf_bits: u32,
    ) -> Result<crate::drift::tree::HashTree, crate::drift::ReadError> {
        let mut tree = crate::drift::tree::HashTree::new(leaf_bits);
        for (key, version) in self.live_versions() {
            tree.add(key.stable_hash(), version.0);
        }
        Ok(tree)
    }

    async fn live_in(
        &self,
        leaves: &crate::drift::tree::LeafSet,
    ) -> Result<Vec<(ItemKey, Version)>, crate::drift::ReadError> {
        Ok(self
            .live_versions()
            .into_iter()
            .filter(|(key, _)| leaves.contains(key.stable_hash()))
            .collect())
    }

    async fn held(
        &self,
        keys: &[ItemKey],
    ) -> Result<Vec<Option<crate::drift::Held>>, crate::drift::ReadError> {
        let items = self.items.lock().map_err(|_| poisoned_read())?;
        Ok(keys
            .iter()
            .map(|key| {
                items.get(key).map(|held| match held.body {
                    Some(_) => crate::drift::Held::Live(held.version),
                    None => crate::drift::Held::Deleted(held.version),
                })
            })
            .collect())
    }
}

/// Reads the items of a [`MemoryStream`] as an [`ItemScanner`], in key order within a
/// segment: either as the embedded store does (segment `i` of the shard count is shard
/// `i`) or as DynamoDB's parallel Scan does (segments split the keys their own way, so a
/// shard's items are spread over every segment).
pub struct MemoryScanner {
    stream: Arc<MemoryStream>,
    follows_shards: bool,
    segments: u32,
}

impl MemoryScanner {
    /// Segment `i` of `n` holds the items of shard `i` of `n`, like the embedded store.
    pub fn by_shard(stream: Arc<MemoryStream>) -> Self {
        let segments = stream.shard_count;
        Self {
            stream,
            follows_shards: true,
            segments,
        }
    }

    /// Segments by a hash of the whole key (partition and sort), unrelated to the shards,
    /// like DynamoDB's parallel Scan; a whole-table scan uses `segments` of them.
    pub fn by_key_hash(stream: Arc<MemoryStream>, segments: u32) -> Self {
        Self {
            stream,
            follows_shards: false,
            segments: segments.max(1),
        }
    }

    fn segment_of(&self, key: &ItemKey, segments: u32) -> u32 {
        let segments = u64::from(segments.max(1));
        if self.follows_shards {
            return key.shard_index(segments as u32);
        }
        (key.stable_hash() % segments) as u32
    }
}

#[async_trait]
impl ItemScanner for MemoryScanner {
    async fn scan(
        &self,
        segment: u32,
        segments: u32,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<ScanPage, SourceError> {
        let inner = self
            .stream
            .inner
            .lock()
            .map_err(|_| SourceError::Fatal("memory stream poisoned".into()))?;
        let mut keys: Vec<&ItemKey> = inner
            .items
            .keys()
            .filter(|k| after.is_none_or(|a| *k > a))
            .filter(|k| self.segment_of(k, segments) == segment)
            .collect();
        keys.sort();
        let limit = limit.max(1);
        let records: Vec<ChangeRecord> = keys
            .iter()
            .take(limit)
            .filter_map(|key| {
                let (version, body) = inner.items.get(*key)?;
                Some(ChangeRecord {
                    shard: ShardId(format!("segment-{segment}")),
                    position: Position(version.0.to_string()),
                    key: (*key).clone(),
                    kind: ChangeKind::Insert,
                    version: *version,
                    old_image: None,
                    new_image: Some(tsunagu_domain::Image {
                        version: *version,
                        body: body.clone(),
                    }),
                    committed_at_us: 0,
                })
            })
            .collect();
        let next = if keys.len() > limit {
            records.last().map(|r| r.key.clone())
        } else {
            None
        };
        Ok(ScanPage { records, next })
    }

    fn segments_follow_shards(&self) -> bool {
        self.follows_shards
    }

    fn scan_segments(&self) -> u32 {
        self.segments
    }

    async fn approximate_item_count(&self) -> Result<Option<u64>, SourceError> {
        Ok(self.stream.inner.lock().ok().map(|i| i.items.len() as u64))
    }
}

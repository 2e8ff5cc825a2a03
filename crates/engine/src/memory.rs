//! In-memory implementations of the ports: a version-guarded sink, checkpoints and a
//! dead-letter queue. They honour the same contracts as the durable adapters (minus
//! durability across processes) and are used by tests, benchmarks and dry runs.

use crate::ports::{
    CheckpointStore, DeadLetter, DeadLetterQueue, RecordFailure, Sink, SinkError, StateError,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
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
}

#[async_trait]
impl Sink for MemorySink {
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
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

/// Checkpoints and dead letters in memory.
#[derive(Default)]
pub struct MemoryState {
    checkpoints: Mutex<HashMap<(String, ShardId), Position>>,
    letters: Mutex<BTreeMap<u64, DeadLetter>>,
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
        let id = letters.keys().next_back().map_or(1, |last| last + 1);
        letter.id = id;
        letters.insert(id, letter);
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
            .range(after_id + 1..)
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
            .get(&id)
            .cloned())
    }

    async fn remove(&self, id: u64) -> Result<bool, StateError> {
        Ok(self
            .letters
            .lock()
            .map_err(|_| poisoned())?
            .remove(&id)
            .is_some())
    }

    async fn count(&self, consumer: &str) -> Result<u64, StateError> {
        Ok(self
            .letters
            .lock()
            .map_err(|_| poisoned())?
            .values()
            .filter(|l| l.consumer == consumer)
            .count() as u64)
    }
}

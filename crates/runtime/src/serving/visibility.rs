//! Read-your-writes ([`WriteVisibility`]): a write is shown once searches see its item at
//! its version or newer, and every change committed before it.
//!
//! - [`InProcessVisibility`]: the embedded deployment, whose pipeline runs in the serving
//!   process: the pipeline's visible prefix of every shard is known exactly, and the
//!   embedded store says which change of a shard precedes a write (versions are its global
//!   sequence).
//! - [`StreamVisibility`]: any deployment, from any process (an API node that does not
//!   replicate): the consumer's checkpoints, read where every worker writes them (leases
//!   or the state), must have passed every change of every shard committed up to the
//!   write. A shard is caught up for a write when the first record after its checkpoint
//!   was committed after the write, or when it has none and the source's propagation
//!   delay has passed since the write (a change still on its way into the stream).

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tsunagu_domain::ShardId;
use tsunagu_embedded_store::EmbeddedStore;
use tsunagu_engine::ports::{ChangeSource, CheckpointStore, ReadFrom};
use tsunagu_engine::Pipeline;
use tsunagu_service::ports::{SearchIndex, WriteVisibility};
use tsunagu_service::{ConsistencyToken, ServiceError};

fn unavailable(what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(format!("{what} failed: {e}"))
}

/// Whether searches see the item at the write's version or newer.
async fn item_shown(
    index: &dyn SearchIndex,
    write: &ConsistencyToken,
) -> Result<bool, ServiceError> {
    Ok(index
        .visible_version(&write.key)
        .await?
        .is_some_and(|v| v >= write.version))
}

/// The embedded deployment's read-your-writes (see the module docs).
pub struct InProcessVisibility {
    pub index: Arc<dyn SearchIndex>,
    pub store: EmbeddedStore,
    pub pipeline: Arc<Mutex<Option<Pipeline>>>,
    pub consumer: String,
}

#[async_trait]
impl WriteVisibility for InProcessVisibility {
    async fn shows(&self, write: &ConsistencyToken) -> Result<bool, ServiceError> {
        if !item_shown(self.index.as_ref(), write).await? {
            return Ok(false);
        }
        let version = write.version;
        let shards = match self.pipeline.lock() {
            Ok(p) => p
                .as_ref()
                .map(|p| p.status())
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.consumer == self.consumer)
                .flat_map(|c| c.shards)
                .collect::<Vec<_>>(),
            Err(_) => return Err(ServiceError::Unavailable("pipeline state poisoned".into())),
        };
        for shard in shards {
            let Ok(index) = shard.shard.0.parse::<u32>() else {
                continue;
            };
            let visible = shard
                .visible_through
                .as_ref()
                .and_then(|p| p.0.parse::<u64>().ok());
            // A shard whose visible prefix is past the write needs no look at the store.
            if visible.is_some_and(|v| v >= version.0) {
                continue;
            }
            let needed = self
                .store
                .newest_seq_at_most(index, version.0)
                .await
                .map_err(|e| unavailable("the primary store", e))?;
            if needed.is_some_and(|n| visible.is_none_or(|v| v < n)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Read-your-writes from the consumer's checkpoints (see the module docs).
pub struct StreamVisibility {
    pub index: Arc<dyn SearchIndex>,
    pub source: Arc<dyn ChangeSource>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub consumer: String,
    /// How long a committed change may take to appear in the stream.
    pub propagation_delay: Duration,
    /// Per shard, a commit time up to which it is known to be caught up (checkpoints
    /// only move forward), so a wait polls each shard's stream once per new fact.
    caught_up: Mutex<HashMap<ShardId, i64>>,
}

impl StreamVisibility {
    pub fn new(
        index: Arc<dyn SearchIndex>,
        source: Arc<dyn ChangeSource>,
        checkpoints: Arc<dyn CheckpointStore>,
        consumer: String,
        propagation_delay: Duration,
    ) -> Self {
        Self {
            index,
            source,
            checkpoints,
            consumer,
            propagation_delay,
            caught_up: Mutex::new(HashMap::new()),
        }
    }

    fn known_caught_up(&self, shard: &ShardId, at_us: i64) -> bool {
        self.caught_up
            .lock()
            .map(|m| m.get(shard).is_some_and(|&t| t >= at_us))
            .unwrap_or(false)
    }

    fn remember(&self, shard: ShardId, through_us: i64) {
        if let Ok(mut m) = self.caught_up.lock() {
            let entry = m.entry(shard).or_insert(through_us);
            *entry = (*entry).max(through_us);
        }
    }
}

#[async_trait]
impl WriteVisibility for StreamVisibility {
    async fn shows(&self, write: &ConsistencyToken) -> Result<bool, ServiceError> {
        if !item_shown(self.index.as_ref(), write).await? {
            return Ok(false);
        }
        let at = write.committed_at_us;
        if at <= 0 {
            // The write changed nothing: there is nothing before it to wait for.
            return Ok(true);
        }
        let now_us = chrono::Utc::now().timestamp_micros();
        let settled = now_us.saturating_sub(at) >= self.propagation_delay.as_micros() as i64;
        let shards = self
            .source
            .shards()
            .await
            .map_err(|e| unavailable("listing the stream's shards", e))?;
        let checkpoints = self
            .checkpoints
            .load(&self.consumer)
            .await
            .map_err(|e| unavailable("reading the checkpoints", e))?;
        for shard in shards {
            if self.known_caught_up(&shard.id, at) {
                continue;
            }
            let from = checkpoints
                .get(&shard.id)
                .cloned()
                .map_or(ReadFrom::TrimHorizon, ReadFrom::After);
            let next = self
                .source
                .read(&shard.id, &from, 1, Duration::ZERO)
                .await
                .map_err(|e| unavailable("reading the stream", e))?;
            match next.records.first() {
                // The next unprocessed change came after the write: everything of this
                // shard committed up to the write is applied.
                Some(record) if record.committed_at_us > at => {
                    self.remember(shard.id, record.committed_at_us - 1)
                }
                Some(_) => return Ok(false),
                // A closed shard read to its end gets no more changes.
                None if next.end_of_shard => self.remember(shard.id, i64::MAX),
                None if settled => {
                    self.remember(shard.id, now_us - self.propagation_delay.as_micros() as i64)
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

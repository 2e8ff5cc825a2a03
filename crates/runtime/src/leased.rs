//! Checkpoints written into a consumer's leases by a process that is not one of its
//! workers (`tsunagu backfill` on a leased deployment): each save takes the shard's lease
//! (creating it if new), stores the checkpoint and releases it at once, so the workers
//! pick the shard up from there. A lease a live worker holds is never stolen: the save
//! fails and says so.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tsunagu_domain::{Position, ShardId};
use tsunagu_engine::lease::LeasedCheckpoints;
use tsunagu_engine::ports::{CheckpointStore, LeaseStore, ShardInfo, StateError};

pub(crate) struct LeaseCheckpointWriter {
    store: Arc<dyn LeaseStore>,
    shards: Vec<ShardInfo>,
    lease_duration: Duration,
    worker: String,
}

impl LeaseCheckpointWriter {
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        shards: Vec<ShardInfo>,
        lease_duration: Duration,
    ) -> Self {
        Self {
            store,
            shards,
            lease_duration,
            worker: format!("tsunagu-backfill-{}", std::process::id()),
        }
    }
}

#[async_trait]
impl CheckpointStore for LeaseCheckpointWriter {
    async fn load(&self, consumer: &str) -> Result<HashMap<ShardId, Position>, StateError> {
        LeasedCheckpoints::new(Arc::clone(&self.store), self.worker.clone())
            .load(consumer)
            .await
    }

    async fn save(
        &self,
        consumer: &str,
        shard: &ShardId,
        position: &Position,
    ) -> Result<(), StateError> {
        let info = self
            .shards
            .iter()
            .find(|s| &s.id == shard)
            .cloned()
            .unwrap_or_else(|| ShardInfo::root(shard.clone()));
        self.store.ensure(consumer, &info).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let lease = self
            .store
            .leases(consumer)
            .await?
            .into_iter()
            .find(|l| &l.shard == shard)
            .ok_or_else(|| StateError(format!("the lease of shard {shard} vanished")))?;
        if let Some(owner) = lease.owner.as_ref().filter(|_| lease.expires_at_ms > now) {
            return Err(StateError(format!(
                "shard {shard} of consumer {consumer:?} is leased by the running worker {owner:?}; stop the consumer's workers before backfilling it (a running worker recovers a shard behind retention by itself)"
            )));
        }
        let until = now + self.lease_duration.as_millis() as i64;
        self.store
            .take(consumer, shard, &self.worker, lease.counter, until)
            .await?
            .ok_or_else(|| {
                StateError(format!(
                    "a worker took the lease of shard {shard} of consumer {consumer:?} meanwhile; stop the consumer's workers before backfilling it"
                ))
            })?;
        let saved = self
            .store
            .checkpoint(consumer, shard, &self.worker, Some(position), false)
            .await?;
        self.store.release(consumer, shard, &self.worker).await?;
        if saved {
            Ok(())
        } else {
            Err(StateError(format!(
                "the lease of shard {shard} of consumer {consumer:?} was taken while its checkpoint was saved; run the backfill again"
            )))
        }
    }
}

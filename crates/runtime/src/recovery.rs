//! What runs after a shard was backfilled because its consumer fell behind retention: a
//! scan of live items cannot show items deleted while the consumer was away, so the
//! consumer is reconciled with repair ([`tsunagu_engine::drift`]), which removes their
//! documents through the sink. Works on every primary and every readable sink.

use crate::config::Config;
use crate::SinkHandle;
use std::collections::BTreeMap;
use std::sync::Arc;
use tsunagu_domain::ShardId;
use tsunagu_engine::backfill::AfterBackfill;
use tsunagu_engine::drift::{PrimaryDigest, ReconcileOptions, Reconciler};
use tsunagu_engine::ports::{ChangeSource, CheckpointStore};

/// Removes what was deleted meanwhile from each consumer's sink.
pub(crate) struct RemoveDeleted {
    primary: Arc<dyn PrimaryDigest>,
    source: Arc<dyn ChangeSource>,
    checkpoints: Arc<dyn CheckpointStore>,
    /// Consumer name → its sink (one that can be read back).
    sinks: BTreeMap<String, SinkHandle>,
    options: ReconcileOptions,
}

impl RemoveDeleted {
    /// The hook for every consumer of `config` whose sink (among `sinks`, by sink name)
    /// can be read back.
    pub(crate) fn hook(
        primary: Arc<dyn PrimaryDigest>,
        source: Arc<dyn ChangeSource>,
        checkpoints: Arc<dyn CheckpointStore>,
        config: &Config,
        sinks: &BTreeMap<String, SinkHandle>,
    ) -> Arc<dyn AfterBackfill> {
        let sinks = config
            .consumers
            .iter()
            .filter_map(|c| {
                let handle = sinks.get(&c.sink).filter(|h| h.digest().is_some())?;
                Some((c.name.clone(), handle.clone()))
            })
            .collect();
        Arc::new(Self {
            primary,
            source,
            checkpoints,
            sinks,
            options: ReconcileOptions {
                repair: true,
                propagation_delay: config.source_propagation_delay(),
                ..ReconcileOptions::default()
            },
        })
    }
}

#[async_trait::async_trait]
impl AfterBackfill for RemoveDeleted {
    async fn after_backfill(&self, consumer: &str, shard: &ShardId) -> Result<(), String> {
        self.after_backfill_shards(consumer, std::slice::from_ref(shard))
            .await
    }

    /// One reconciliation covers the whole consumer, however many shards were backfilled.
    async fn after_backfill_shards(
        &self,
        consumer: &str,
        _shards: &[ShardId],
    ) -> Result<(), String> {
        let handle = self.sinks.get(consumer);
        let (Some(index), Some(sink)) = (
            handle.and_then(SinkHandle::digest),
            handle.map(SinkHandle::sink),
        ) else {
            return Err(format!(
                "consumer {consumer:?} has no sink that can be read back; documents of items deleted while it was behind retention stay in it"
            ));
        };
        let report = Reconciler {
            consumer,
            primary: self.primary.as_ref(),
            index: index.as_ref(),
            sink: Some(sink.as_ref()),
            source: self.source.as_ref(),
            checkpoints: self.checkpoints.as_ref(),
        }
        .run(&self.options)
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!(
            consumer,
            extra_removed = report.repaired,
            remaining = report.remaining,
            "removed what was deleted while the consumer was behind retention"
        );
        Ok(())
    }
}

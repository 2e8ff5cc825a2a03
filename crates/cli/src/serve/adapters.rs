//! The embedded adapters behind the service's and the HTTP layer's ports: the primary
//! store, the search index, the tenant registry, the pipeline's status and the lag
//! observer that feeds the metrics.

use async_trait::async_trait;
use hdrhistogram::Histogram;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tsunagu_api::state::{ConsumerReport, ShardReport};
use tsunagu_api::{LagSummary, Metrics, OpsProbe, PipelineReport};
use tsunagu_domain::search::{
    ActivityQuery, Bucket, GroupBy, LatestActivity, RecordPage, RecordQuery, SearchPage,
};
use tsunagu_domain::{ChangeRecord, Entity, ItemKey, Version};
use tsunagu_embedded_index::{ActivityIndex, IndexError};
use tsunagu_embedded_store::{Condition, EmbeddedStore, StoreError};
use tsunagu_engine::ports::{ApplyObserver, ChangeSource, DeadLetterQueue, ReadFrom};
use tsunagu_engine::status::ShardState;
use tsunagu_engine::Pipeline;
use tsunagu_runtime::Embedded;
use tsunagu_service::ports::{
    Committed, Expect, PrimaryStore, SearchIndex, WriteRejected, WriteVisibility,
};
use tsunagu_service::ServiceError;

/// The embedded store as the service's primary.
pub struct EmbeddedPrimary(pub EmbeddedStore);

fn condition(expect: Expect) -> Condition {
    match expect {
        Expect::Absent => Condition::NotExists,
        Expect::Version(v) => Condition::VersionIs(v),
    }
}

fn rejected(e: StoreError) -> WriteRejected {
    match e {
        StoreError::Conflict { found, .. } => WriteRejected::Conflict { current: found },
        other => WriteRejected::Unavailable(format!("the primary store failed: {other}")),
    }
}

#[async_trait]
impl PrimaryStore for EmbeddedPrimary {
    async fn get(&self, key: &ItemKey) -> Result<Option<(Version, Entity)>, ServiceError> {
        let Some(item) = self
            .0
            .get(key)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("the primary store failed: {e}")))?
        else {
            return Ok(None);
        };
        let entity = Entity::from_json(&item.body).map_err(|e| {
            ServiceError::Unavailable(format!("the stored item {key} is unreadable: {e}"))
        })?;
        Ok(Some((item.version, entity)))
    }

    async fn put(&self, entity: &Entity, expect: Expect) -> Result<Committed, WriteRejected> {
        let outcome = self
            .0
            .put(entity.key(), entity.to_json(), condition(expect))
            .await
            .map_err(rejected)?;
        let version = outcome.version.ok_or_else(|| {
            WriteRejected::Unavailable("the store reported no version for a put".into())
        })?;
        Ok(Committed { version })
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<Committed, WriteRejected> {
        let outcome = self
            .0
            .delete(key.clone(), condition(expect))
            .await
            .map_err(rejected)?;
        // In the embedded store a deletion's version is its change record's sequence.
        let version = outcome
            .position
            .and_then(|p| p.0.parse::<u64>().ok())
            .map(Version)
            .ok_or(WriteRejected::Conflict { current: None })?;
        Ok(Committed { version })
    }
}

/// The embedded index as the service's search index.
pub struct EmbeddedSearch(pub Arc<ActivityIndex>);

fn search_error(e: IndexError) -> ServiceError {
    match e {
        IndexError::BadCursor(c) => ServiceError::invalid("cursor", c.to_string()),
        IndexError::InvalidQuery(m) => ServiceError::invalid("query", m),
        other => ServiceError::Unavailable(format!("the search index failed: {other}")),
    }
}

#[async_trait]
impl SearchIndex for EmbeddedSearch {
    async fn search_activities(&self, query: &ActivityQuery) -> Result<SearchPage, ServiceError> {
        self.0.search(query).map_err(search_error)
    }

    async fn aggregate_activities(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
    ) -> Result<Vec<Bucket>, ServiceError> {
        self.0.aggregate(query, by).map_err(search_error)
    }

    async fn search_records(&self, query: &RecordQuery) -> Result<RecordPage, ServiceError> {
        self.0.search_records(query).map_err(search_error)
    }

    async fn record_ids(&self, query: &RecordQuery) -> Result<Vec<String>, ServiceError> {
        self.0.record_ids(query).map_err(search_error)
    }

    async fn tag_counts(&self, query: &RecordQuery) -> Result<Vec<Bucket>, ServiceError> {
        Ok(self
            .0
            .tag_counts(query)
            .map_err(search_error)?
            .into_iter()
            .map(|(key, count)| Bucket { key, count })
            .collect())
    }

    async fn deals_with_activity(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashSet<String>, ServiceError> {
        self.0.deals_with_activity(query).map_err(search_error)
    }

    async fn latest_activity_per_deal(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashMap<String, LatestActivity>, ServiceError> {
        self.0.latest_activity_per_deal(query).map_err(search_error)
    }

    async fn visible_version(&self, key: &ItemKey) -> Result<Option<Version>, ServiceError> {
        self.0.held_version(key).map_err(search_error)
    }
}

/// Read-your-writes over the embedded store and index: the index holds the item at the
/// write's version or newer, and every shard of the searched consumer has made visible
/// every change committed up to the write (versions are the store's global sequence).
pub struct EmbeddedVisibility {
    pub index: Arc<ActivityIndex>,
    pub store: EmbeddedStore,
    pub pipeline: Arc<Mutex<Option<Pipeline>>>,
    pub consumer: String,
}

#[async_trait]
impl WriteVisibility for EmbeddedVisibility {
    async fn shows(&self, key: &ItemKey, version: Version) -> Result<bool, ServiceError> {
        let held = self.index.held_version(key).map_err(search_error)?;
        if held.is_none_or(|v| v < version) {
            return Ok(false);
        }
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
                .map_err(|e| ServiceError::Unavailable(format!("the primary store failed: {e}")))?;
            if needed.is_some_and(|n| visible.is_none_or(|v| v < n)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Commit-to-visible lag of recent records: the current and the previous window, so a
/// reading always covers at least one full window.
pub struct LagWindow {
    window: Duration,
    inner: Mutex<LagWindows>,
}

struct LagWindows {
    started: Instant,
    current: Histogram<u64>,
    previous: Histogram<u64>,
}

impl LagWindow {
    pub fn new(window: Duration) -> anyhow::Result<Self> {
        let histogram = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3);
        Ok(Self {
            window,
            inner: Mutex::new(LagWindows {
                started: Instant::now(),
                current: histogram()?,
                previous: histogram()?,
            }),
        })
    }

    fn rotate(&self, w: &mut LagWindows) {
        if w.started.elapsed() >= self.window {
            std::mem::swap(&mut w.current, &mut w.previous);
            w.current.reset();
            if w.started.elapsed() >= self.window * 2 {
                w.previous.reset();
            }
            w.started = Instant::now();
        }
    }

    /// Records the lags of one applied batch under one lock.
    fn record_all(&self, micros: impl IntoIterator<Item = u64>) {
        if let Ok(mut w) = self.inner.lock() {
            self.rotate(&mut w);
            for m in micros {
                let _ = w.current.record(m.clamp(1, 3_600_000_000));
            }
        }
    }

    pub fn summary(&self) -> LagSummary {
        let Ok(mut w) = self.inner.lock() else {
            return LagSummary::default();
        };
        self.rotate(&mut w);
        let mut all = w.current.clone();
        let _ = all.add(&w.previous);
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1e3;
        LagSummary {
            window_seconds: self.window.as_secs() * 2,
            count: all.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: all.max() as f64 / 1e3,
        }
    }
}

/// Feeds the lag histogram, the lag window and the sink-error counters.
pub struct MetricsObserver {
    pub metrics: Arc<Metrics>,
    pub lag: Arc<LagWindow>,
}

impl ApplyObserver for MetricsObserver {
    fn applied(&self, consumer: &str, records: &[ChangeRecord], visible_at: SystemTime) {
        let visible_us = visible_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let lags = records
            .iter()
            .map(|r| (visible_us - r.committed_at_us).max(0) as u64);
        self.metrics
            .replication_lags(consumer, lags.clone().map(|us| us as f64 / 1e6));
        self.lag.record_all(lags);
    }

    fn sink_failed(&self, consumer: &str, kind: &'static str, count: u64) {
        self.metrics.sink_error(consumer, kind, count);
    }
}

/// The pipeline as the operations endpoints see it.
pub struct EmbeddedOps {
    pub embedded: Embedded,
    pub pipeline: Arc<Mutex<Option<Pipeline>>>,
    pub lag: Arc<LagWindow>,
}

fn state_name(state: &ShardState) -> String {
    match state {
        ShardState::Starting => "starting",
        ShardState::WaitingForParent => "waiting_for_parent",
        ShardState::Running => "running",
        ShardState::Finished => "finished",
        ShardState::Failed(_) => "failed",
        ShardState::BehindRetention(_) => "behind_retention",
        ShardState::Backfilling => "backfilling",
        ShardState::Stopped => "stopped",
    }
    .to_string()
}

#[async_trait]
impl OpsProbe for EmbeddedOps {
    async fn pipeline(&self) -> Result<PipelineReport, String> {
        let statuses = match self.pipeline.lock() {
            Ok(p) => p.as_ref().map(|p| p.status()).unwrap_or_default(),
            Err(_) => return Err("pipeline state poisoned".into()),
        };
        let mut consumers = Vec::new();
        let mut dead_letters_total = 0;
        for status in statuses {
            let sink = self
                .embedded
                .config
                .consumer(&status.consumer)
                .map(|c| c.sink.clone())
                .unwrap_or_default();
            let dead_letters = self
                .embedded
                .state
                .count(&status.consumer)
                .await
                .map_err(|e| e.to_string())?;
            dead_letters_total += dead_letters;
            let mut shards = Vec::new();
            for shard in status.shards {
                let from = shard
                    .checkpoint
                    .clone()
                    .map_or(ReadFrom::TrimHorizon, ReadFrom::After);
                let backlog = self
                    .embedded
                    .store
                    .backlog(&shard.shard, &from)
                    .await
                    .map_err(|e| e.to_string())?;
                shards.push(ShardReport {
                    shard: shard.shard.0.clone(),
                    state: state_name(&shard.state),
                    backlog,
                    checkpoint: shard.checkpoint.map(|p| p.0),
                    applied: shard.applied,
                });
            }
            consumers.push(ConsumerReport {
                consumer: status.consumer,
                sink,
                dead_letters,
                shards,
            });
        }
        Ok(PipelineReport {
            consumers,
            lag: self.lag.summary(),
            dead_letters_total,
        })
    }

    async fn ready(&self) -> Result<(), String> {
        let statuses = match self.pipeline.lock() {
            Ok(p) => match p.as_ref() {
                Some(p) => p.status(),
                None => return Err("the pipeline is stopped".into()),
            },
            Err(_) => return Err("pipeline state poisoned".into()),
        };
        for consumer in statuses {
            for shard in consumer.shards {
                match shard.state {
                    ShardState::Failed(reason) => {
                        return Err(format!(
                            "consumer {} shard {} failed: {reason}",
                            consumer.consumer, shard.shard.0
                        ))
                    }
                    ShardState::Starting => {
                        return Err(format!(
                            "consumer {} shard {} is starting",
                            consumer.consumer, shard.shard.0
                        ))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

//! What the operations endpoints and the metrics see of replication: the commit-to-
//! visible lag window ([`LagWindow`], fed by [`MetricsObserver`]) and the pipeline's
//! report and readiness ([`PipelineOps`]), for a pipeline in this process or run by
//! workers elsewhere.

use async_trait::async_trait;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tsunagu_api::state::{ConsumerReport, ShardReport};
use tsunagu_api::{LagSummary, Metrics, OpsProbe, PipelineReport};
use tsunagu_domain::ChangeRecord;
use tsunagu_engine::ports::ApplyObserver;
use tsunagu_engine::status::ShardState;
use tsunagu_engine::Pipeline;

use crate::Runtime;

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

/// Feeds the lag histogram, the lag window, the applied and the sink-error counters.
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
        self.metrics.records_applied(consumer, records.len() as u64);
    }

    fn sink_failed(&self, consumer: &str, kind: &'static str, count: u64) {
        self.metrics.sink_error(consumer, kind, count);
    }
}

/// The pipeline as the operations endpoints see it: every consumer's shards from the
/// runtime (checkpoints, backlog, dead letters: shared state, so right from any process),
/// with the live state of the shards this process replicates.
pub struct PipelineOps {
    runtime: Arc<Runtime>,
    /// The pipeline of this process; `None` on an API node that does not replicate.
    pipeline: Option<Arc<Mutex<Option<Pipeline>>>>,
    lag: Arc<LagWindow>,
    /// The shared status, read at most once per [`STATUS_TTL`]: `/metrics` scrapes, the
    /// load balancer's `/readyz` and `/api/v1/pipeline/status` of every API node would
    /// otherwise each read every shard's stream (DynamoDB Streams allows 5 reads per
    /// second per shard, which the workers need).
    cached: tokio::sync::Mutex<Option<(Instant, Vec<crate::ConsumerStatus>)>>,
}

/// How long a read of the shared status serves the operations endpoints.
pub const STATUS_TTL: Duration = Duration::from_secs(2);

fn state_name(state: &ShardState) -> &'static str {
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
}

impl PipelineOps {
    pub fn new(
        runtime: Arc<Runtime>,
        pipeline: Option<Arc<Mutex<Option<Pipeline>>>>,
        lag: Arc<LagWindow>,
    ) -> Self {
        Self {
            runtime,
            pipeline,
            lag,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Every consumer's shards from the shared state, at most [`STATUS_TTL`] old.
    async fn shared_status(&self) -> Result<Vec<crate::ConsumerStatus>, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at, status)) = cached.as_ref() {
            if at.elapsed() < STATUS_TTL {
                return Ok(status.clone());
            }
        }
        let status = self.runtime.status().await.map_err(|e| format!("{e:#}"))?;
        *cached = Some((Instant::now(), status.clone()));
        Ok(status)
    }

    fn local_status(&self) -> Result<Option<Vec<tsunagu_engine::status::ConsumerStatus>>, String> {
        match &self.pipeline {
            None => Ok(None),
            Some(pipeline) => match pipeline.lock() {
                Ok(p) => Ok(Some(p.as_ref().map(|p| p.status()).unwrap_or_default())),
                Err(_) => Err("pipeline state poisoned".into()),
            },
        }
    }
}

#[async_trait]
impl OpsProbe for PipelineOps {
    async fn pipeline(&self) -> Result<PipelineReport, String> {
        let local = self.local_status()?.unwrap_or_default();
        let shared = self.shared_status().await?;
        let mut consumers = Vec::new();
        let mut dead_letters_total = 0;
        for status in shared {
            dead_letters_total += status.dead_letters;
            let here = local.iter().find(|c| c.consumer == status.consumer);
            let shards = status
                .shards
                .into_iter()
                .map(|shard| {
                    let live = here.and_then(|c| c.shards.iter().find(|s| s.shard == shard.shard));
                    let state = match (live, &shard.owner) {
                        (Some(live), _) => state_name(&live.state).to_string(),
                        (None, _) if shard.finished => "finished".to_string(),
                        (None, _) if shard.behind_retention => "behind_retention".to_string(),
                        (None, Some(owner)) => format!("running on {owner}"),
                        (None, None) => "unowned".to_string(),
                    };
                    ShardReport {
                        shard: shard.shard.0,
                        state,
                        backlog: shard.backlog,
                        checkpoint: shard.checkpoint,
                        applied: live.map_or(0, |l| l.applied),
                        oldest_unapplied_age_seconds: shard.oldest_unapplied_age_seconds,
                    }
                })
                .collect();
            consumers.push(ConsumerReport {
                consumer: status.consumer,
                sink: status.sink,
                dead_letters: status.dead_letters,
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
        let Some(statuses) = self.local_status()? else {
            // An API node: ready when the shared state answers.
            return self
                .shared_status()
                .await
                .map(|_| ())
                .map_err(|e| format!("the replication state is unreachable: {e}"));
        };
        if self.pipeline.is_some() && statuses.is_empty() {
            return Err("the pipeline is stopped".into());
        }
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

//! What every handler shares, and the ports of the HTTP layer.

use crate::metrics::Metrics;
use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;
use tsunagu_service::tenants::TenantDirectory;
use tsunagu_service::Service;

/// The replication pipeline as operations see it.
#[async_trait]
pub trait OpsProbe: Send + Sync + 'static {
    async fn pipeline(&self) -> Result<PipelineReport, String>;
    /// `Ok` once the service can answer (store open, pipeline running, index caught up
    /// with its start-up backlog); the reason otherwise.
    async fn ready(&self) -> Result<(), String>;
}

/// One shard of one consumer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShardReport {
    pub shard: String,
    /// starting, running, backfilling, behind_retention, failed, stopped, …
    pub state: String,
    /// Records written but not yet checkpointed by this consumer.
    pub backlog: Option<u64>,
    pub checkpoint: Option<String>,
    /// Records applied since the process started.
    pub applied: u64,
    /// Seconds since the commit of the oldest record not yet checkpointed; 0 when
    /// caught up. Keeps growing while the shard stalls.
    pub oldest_unapplied_age_seconds: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConsumerReport {
    pub consumer: String,
    pub sink: String,
    pub dead_letters: u64,
    pub shards: Vec<ShardReport>,
}

/// Commit-to-searchable lag over a recent window.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct LagSummary {
    pub window_seconds: u64,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineReport {
    pub consumers: Vec<ConsumerReport>,
    pub lag: LagSummary,
    pub dead_letters_total: u64,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub tenants: Arc<dyn TenantDirectory>,
    pub ops: Arc<dyn OpsProbe>,
    pub metrics: Arc<Metrics>,
}

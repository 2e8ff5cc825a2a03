//! The one place that assembles tsunagu: the config ([`config`]) and every port opened from
//! it, for every command, whatever the deployment. The binary parses arguments and prints;
//! everything between a config and running adapters is here.
//!
//! - [`Runtime`]: the primary store, its change stream, the replication state (dead
//!   letters, backfill progress, checkpoints or leases) and the sinks, as the config names
//!   them: the embedded store and index, DynamoDB + DynamoDB Streams or Kinesis,
//!   OpenSearch / Elasticsearch, shared state in DynamoDB. `replicate`, `backfill`,
//!   `reconcile`, `status`, `dlq` and `bench lag --config` run on it.
//! - [`embedded`]: the embedded deployment's files in one data directory (what `serve` and
//!   `demo` run in one process) and resolving a data directory's config.
//! - [`serving`]: the application served over HTTP on any deployment (`tsunagu serve`):
//!   the use cases over the config's primary, index and tenant registry.
//! - [`tenants`]: the tenant registry `[tenants]` names (the data directory's file or a
//!   DynamoDB table), for `serve` and `tsunagu tenant` on any deployment.
//! - [`check`]: `tsunagu check`'s connectivity checks.
//! - [`output`]: standard output that a closed pipe ends quietly (`outln!`), and error
//!   chains printed once.
//! - `sinks` ([`SinkHandle`]), `recovery` (cleaning up after a retention backfill),
//!   `leased` (checkpoints written into leases by a process that is not a worker).

pub mod check;
pub mod config;
pub mod embedded;
mod leased;
pub mod output;
mod recovery;
pub mod serving;
mod sinks;
pub mod tenants;

pub use embedded::{require_data_dir, require_existing_store, resolve_config, Embedded};
pub use sinks::{open_search_reader, open_sink, SinkHandle};

use anyhow::Context;
use config::{Config, LeaseBackend, PrimaryConfig, SinkConfig, SourceConfig};
use recovery::RemoveDeleted;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tsunagu_aws::{DynamoLeaseStore, DynamoStore, DynamoStreamsSource, KinesisSource};
use tsunagu_domain::{ItemKey, ShardId, Version};
use tsunagu_embedded_store::EmbeddedState;
use tsunagu_engine::backfill::{
    AfterBackfill, Backfill, BackfillOptions, BackfillProgressStore, BackfillReport,
};
use tsunagu_engine::drift::{PrimaryDigest, ReconcileOptions, ReconcileReport, Reconciler};
use tsunagu_engine::lease::{LeaseOptions, LeasedCheckpoints};
use tsunagu_engine::ports::{
    ApplyObserver, ChangeSource, CheckpointStore, DeadLetterQueue, ItemScanner, ItemStore,
    LeaseStore, ReadFrom, Sink, SourceError,
};
use tsunagu_engine::{Consumer, ConsumerConfig, Engine, Pipeline};

/// Where the replication state lives: checkpoints (unless leases hold them), dead letters
/// and backfill progress.
#[derive(Clone)]
pub struct StatePorts {
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub dlq: Arc<dyn DeadLetterQueue>,
    pub progress: Arc<dyn BackfillProgressStore>,
}

impl StatePorts {
    /// Everything in the state file of a data directory.
    pub fn embedded(state: &EmbeddedState) -> Self {
        let state = Arc::new(state.clone());
        Self {
            checkpoints: state.clone(),
            dlq: state.clone(),
            progress: state,
        }
    }
}

/// The ports a pipeline runs over, whichever adapters they are.
pub struct PipelinePorts {
    pub source: Arc<dyn ChangeSource>,
    /// What a shard that fell behind retention is backfilled from.
    pub backfill: Option<Arc<dyn ItemScanner>>,
    pub state: StatePorts,
    pub after_backfill: Option<Arc<dyn AfterBackfill>>,
    /// Shards shared with other workers.
    pub leases: Option<(Arc<dyn LeaseStore>, LeaseOptions)>,
}

/// Starts every consumer of `config` over `ports`, each with its sink (by sink name).
pub async fn start_engine(
    ports: PipelinePorts,
    config: &Config,
    sinks: &BTreeMap<String, SinkHandle>,
    observers: Vec<Arc<dyn ApplyObserver>>,
) -> anyhow::Result<Pipeline> {
    let mut engine = Engine::new(ports.source, ports.state.checkpoints, ports.state.dlq);
    if let Some(scanner) = ports.backfill {
        engine = engine.with_backfill(scanner, ports.state.progress);
    }
    if let Some(hook) = ports.after_backfill {
        engine = engine.with_after_backfill(hook);
    }
    if let Some((store, options)) = ports.leases {
        engine = engine.with_leases(store, options);
    }
    for observer in observers {
        engine = engine.with_observer(observer);
    }
    let consumers = config
        .consumers
        .iter()
        .map(|c| {
            let sink = sinks.get(&c.sink).with_context(|| {
                format!("sink {:?} of consumer {:?} is not open", c.sink, c.name)
            })?;
            Ok(Consumer {
                config: c.clone(),
                sink: sink.sink(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(engine.start(consumers).await?)
}

/// The primary as the ports see it: the embedded store (when it is the primary), the
/// store, its drift side and its scanner.
type PrimaryPorts = (
    Option<Embedded>,
    Arc<dyn ItemStore>,
    Arc<dyn PrimaryDigest>,
    Arc<dyn ItemScanner>,
);

/// The primary, its stream, the replication state and the leases, as the config names
/// them.
pub struct Runtime {
    pub config: Arc<Config>,
    pub store: Arc<dyn ItemStore>,
    /// The primary read for drift detection and repair.
    pub primary: Arc<dyn PrimaryDigest>,
    pub source: Arc<dyn ChangeSource>,
    pub scanner: Arc<dyn ItemScanner>,
    pub state: StatePorts,
    /// The data directory's state file: consumers registered outside the config, and the
    /// local state of a deployment without shared state.
    pub local_state: EmbeddedState,
    /// Set when the primary is the embedded store.
    pub embedded: Option<Embedded>,
    leases: Option<(Arc<dyn LeaseStore>, LeaseOptions)>,
}

impl Runtime {
    /// Opens everything the config names, the embedded store for writing (its data
    /// directory is created if missing).
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        Self::open_with(config, false).await
    }

    /// Opens what a command that only reads needs (`status`, `dlq list`, `reconcile`
    /// without `--repair`): the embedded store and the data directory's state file
    /// read-only, creating and writing nothing (a missing state file reads as empty), so
    /// it works on a data directory the process cannot write. Remote adapters open as
    /// usual.
    pub async fn open_read_only(config: Config) -> anyhow::Result<Self> {
        Self::open_with(config, true).await
    }

    async fn open_with(config: Config, read_only: bool) -> anyhow::Result<Self> {
        let aws = config.aws.clone();
        let aws = || {
            aws.clone()
                .context("[aws] is required by the AWS adapters of this config")
        };
        // The embedded store is opened only when it is the primary; the data directory's
        // state file always exists (consumer registry, local state).
        let (embedded, store, primary, scanner): PrimaryPorts = match &config.primary {
            PrimaryConfig::Embedded => {
                let embedded = if read_only {
                    Embedded::open_read_only(config.clone())?
                } else {
                    Embedded::open(config.clone())?
                };
                let store = Arc::new(embedded.store.clone());
                (Some(embedded), store.clone(), store.clone(), store)
            }
            PrimaryConfig::Dynamodb(table) => {
                let store = Arc::new(
                    DynamoStore::connect(&aws()?, table)
                        .await
                        .context("cannot open the primary (DynamoDB)")?,
                );
                (None, store.clone(), store.clone(), store)
            }
        };
        let local_state = match &embedded {
            Some(embedded) => embedded.state.clone(),
            None if read_only => EmbeddedState::open_read_only(&config.state_path())?,
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("cannot create data directory {}", config.data_dir.display())
                })?;
                EmbeddedState::open(&config.state_path())?
            }
        };
        let source: Arc<dyn ChangeSource> = match (&config.source, &embedded) {
            (SourceConfig::Embedded, Some(embedded)) => Arc::new(embedded.store.clone()),
            (SourceConfig::Embedded, None) => {
                anyhow::bail!("source.type = \"embedded\" needs the embedded primary")
            }
            (SourceConfig::DynamodbStreams(streams), _) => Arc::new(
                DynamoStreamsSource::connect(&aws()?, streams)
                    .await
                    .context("cannot open the source (DynamoDB Streams)")?,
            ),
            (SourceConfig::Kinesis(kinesis), _) => Arc::new(
                KinesisSource::connect(&aws()?, kinesis)
                    .await
                    .context("cannot open the source (Kinesis)")?,
            ),
        };
        let mut state = StatePorts::embedded(&local_state);
        // With leases in DynamoDB, dead letters and backfill progress are shared too.
        let leases = match &config.leases {
            None => None,
            Some(section) => {
                let store: Arc<dyn LeaseStore> = match (section.kind, section.table_config()) {
                    (LeaseBackend::Dynamodb, Some(table)) => Arc::new(
                        DynamoLeaseStore::connect(&aws()?, &table)
                            .await
                            .context("cannot open the lease table")?,
                    ),
                    _ => Arc::new(local_state.clone()),
                };
                Some((store, section.options()))
            }
        };
        if let Some(table) = config.leases.as_ref().and_then(|l| l.state_table_config()) {
            let shared = Arc::new(
                tsunagu_aws::DynamoStateStore::connect(&aws()?, &table)
                    .await
                    .context("cannot open the shared replication state table")?,
            );
            // Checkpoints live in the leases; dead letters and backfill progress here.
            state.dlq = shared.clone();
            state.progress = shared;
        }
        let config = match &embedded {
            Some(embedded) => Arc::clone(&embedded.config),
            None => Arc::new(config),
        };
        Ok(Self {
            config,
            store,
            primary,
            source,
            scanner,
            state,
            local_state,
            embedded,
            leases,
        })
    }

    /// A consumer of the config, or an error listing the consumers there are.
    pub fn consumer(&self, name: &str) -> anyhow::Result<ConsumerConfig> {
        self.config.consumer(name).cloned().with_context(|| {
            format!(
                "no consumer named {name:?} in the config (consumers: {})",
                self.config
                    .consumers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// Opens one sink (`sinks.NAME`) for writing.
    pub async fn open_sink(&self, name: &str) -> anyhow::Result<SinkHandle> {
        sinks::open_sink(&self.config, name).await
    }

    /// Opens one sink to be read back only: an embedded index read-only (at its last
    /// durable point, beside a running pipeline), any other sink as it is.
    pub async fn open_sink_reader(
        &self,
        name: &str,
    ) -> anyhow::Result<Arc<dyn tsunagu_engine::drift::VersionDigest>> {
        match self.config.sinks.get(name) {
            Some(SinkConfig::EmbeddedIndex { .. }) => {
                Ok(embedded::open_index_reader(&self.config, name)?)
            }
            _ => {
                self.open_sink(name).await?.digest().with_context(|| {
                    format!("sinks.{name} forwards changes and cannot be read back")
                })
            }
        }
    }

    /// Opens every consumer's sink, by sink name.
    pub async fn open_sinks(&self) -> anyhow::Result<BTreeMap<String, SinkHandle>> {
        let mut sinks = BTreeMap::new();
        for consumer in &self.config.consumers {
            if !sinks.contains_key(&consumer.sink) {
                sinks.insert(consumer.sink.clone(), self.open_sink(&consumer.sink).await?);
            }
        }
        Ok(sinks)
    }

    /// The consumers' checkpoints as a reader sees them: in the leases when shards are
    /// leased, else in the state.
    pub fn checkpoints(&self) -> Arc<dyn CheckpointStore> {
        match &self.leases {
            Some((store, _)) => Arc::new(LeasedCheckpoints::new(
                Arc::clone(store),
                "tsunagu-reader".to_string(),
            )),
            None => Arc::clone(&self.state.checkpoints),
        }
    }

    /// Starts every consumer. `worker` overrides the lease worker id (several workers in
    /// one process, for the scale-out benchmark).
    pub async fn start_pipeline(
        &self,
        sinks: &BTreeMap<String, SinkHandle>,
        observers: Vec<Arc<dyn ApplyObserver>>,
        worker: Option<&str>,
    ) -> anyhow::Result<Pipeline> {
        let leases = self.leases.clone().map(|(store, mut options)| {
            if let Some(worker) = worker {
                options.worker_id = worker.to_string();
            }
            (store, options)
        });
        let ports = PipelinePorts {
            source: Arc::clone(&self.source),
            backfill: Some(Arc::clone(&self.scanner)),
            state: self.state.clone(),
            after_backfill: Some(RemoveDeleted::hook(
                Arc::clone(&self.primary),
                Arc::clone(&self.source),
                self.checkpoints(),
                &self.config,
                sinks,
            )),
            leases,
        };
        start_engine(ports, &self.config, sinks, observers).await
    }

    /// Compares the primary with a consumer's sink (`index`, read back) and, with
    /// `options.repair`, repairs the drift through `sink`.
    pub async fn reconcile(
        &self,
        consumer: &str,
        index: &dyn tsunagu_engine::drift::VersionDigest,
        sink: Option<&dyn Sink>,
        repair: bool,
    ) -> anyhow::Result<ReconcileReport> {
        let checkpoints = self.checkpoints();
        let report = Reconciler {
            consumer,
            primary: self.primary.as_ref(),
            index,
            sink,
            source: self.source.as_ref(),
            checkpoints: checkpoints.as_ref(),
        }
        .run(&ReconcileOptions {
            repair,
            propagation_delay: self.config.source_propagation_delay(),
            ..ReconcileOptions::default()
        })
        .await?;
        Ok(report)
    }

    /// Backfills `consumer` into `sink` from the primary's items, then hands over to the
    /// stream (see [`tsunagu_engine::backfill`]). With leases, the checkpoints are written
    /// into the consumer's leases, which no live worker may hold meanwhile.
    pub async fn backfill(
        &self,
        consumer: &str,
        sink: &dyn Sink,
        options: &BackfillOptions,
        on_items: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<BackfillReport> {
        let checkpoints: Arc<dyn CheckpointStore> = match &self.leases {
            Some((store, lease_options)) => Arc::new(leased::LeaseCheckpointWriter::new(
                Arc::clone(store),
                self.source.shards().await?,
                lease_options.lease_duration,
            )),
            None => Arc::clone(&self.state.checkpoints),
        };
        let backfill = Backfill {
            consumer,
            source: self.source.as_ref(),
            scanner: self.scanner.as_ref(),
            sink,
            checkpoints: checkpoints.as_ref(),
            dlq: self.state.dlq.as_ref(),
            progress: self.state.progress.as_ref(),
        };
        Ok(backfill.run(None, options, on_items).await?)
    }

    /// Where every consumer stands on every shard: checkpoint, owner, newest record,
    /// backlog, dead letters. Reads only; works while workers run.
    pub async fn status(&self) -> anyhow::Result<Vec<ConsumerStatus>> {
        let shards = self.source.shards().await?;
        let checkpoints = self.checkpoints();
        let mut rows = Vec::new();
        for consumer in &self.config.consumers {
            let at = checkpoints.load(&consumer.name).await?;
            let owners: BTreeMap<ShardId, (Option<String>, bool)> = match &self.leases {
                Some((store, _)) => {
                    let now = chrono::Utc::now().timestamp_millis();
                    store
                        .leases(&consumer.name)
                        .await?
                        .into_iter()
                        .map(|l| {
                            let owner = l.owner.filter(|_| l.expires_at_ms > now);
                            (l.shard, (owner, l.finished))
                        })
                        .collect()
                }
                None => BTreeMap::new(),
            };
            let mut shard_rows = Vec::new();
            for shard in &shards {
                let checkpoint = at.get(&shard.id).cloned();
                let from = checkpoint
                    .clone()
                    .map_or(ReadFrom::TrimHorizon, ReadFrom::After);
                let next = self.source.read(&shard.id, &from, 1, Duration::ZERO).await;
                let behind_retention = matches!(next, Err(SourceError::Trimmed { .. }));
                // The first record after the checkpoint waits since its commit; the age
                // keeps growing while the consumer stalls (0 when nothing waits).
                let oldest_unapplied_age_seconds = match &next {
                    Ok(batch) => batch.records.first().map_or(0.0, |r| {
                        let now_us = chrono::Utc::now().timestamp_micros();
                        now_us.saturating_sub(r.committed_at_us).max(0) as f64 / 1e6
                    }),
                    Err(_) => 0.0,
                };
                let (owner, finished) = owners.get(&shard.id).cloned().unwrap_or_default();
                shard_rows.push(ShardStatus {
                    shard: shard.id.clone(),
                    parent: shard.parent.clone(),
                    owner,
                    finished,
                    checkpoint: checkpoint.map(|p| p.0),
                    newest: self.source.latest_position(&shard.id).await?.map(|p| p.0),
                    backlog: self.source.backlog(&shard.id, &from).await?,
                    behind_retention,
                    oldest_unapplied_age_seconds,
                });
            }
            rows.push(ConsumerStatus {
                consumer: consumer.name.clone(),
                sink: consumer.sink.clone(),
                dead_letters: self.state.dlq.count(&consumer.name).await?,
                shards: shard_rows,
            });
        }
        Ok(rows)
    }

    /// Whether shards are shared with other workers through leases.
    pub fn leased(&self) -> bool {
        self.leases.is_some()
    }

    /// Waits until `workers` workers hold the consumer's unfinished leases in shares at
    /// most one apart (and none is free).
    pub async fn wait_for_balanced_leases(
        &self,
        consumer: &str,
        workers: u32,
        within: Duration,
    ) -> anyhow::Result<()> {
        let Some((store, _)) = &self.leases else {
            return Ok(());
        };
        let start = std::time::Instant::now();
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let leases = store.leases(consumer).await?;
            let open: Vec<_> = leases.iter().filter(|l| !l.finished).collect();
            let mut load: BTreeMap<&str, usize> = BTreeMap::new();
            let mut free = 0;
            for lease in &open {
                match &lease.owner {
                    Some(owner) if lease.expires_at_ms > now => {
                        *load.entry(owner.as_str()).or_default() += 1
                    }
                    _ => free += 1,
                }
            }
            let (min, max) = (load.values().min(), load.values().max());
            let enough = load.len() as u32 == workers.min(open.len().max(1) as u32);
            if free == 0 && enough && matches!((min, max), (Some(a), Some(b)) if b - a <= 1) {
                return Ok(());
            }
            if start.elapsed() > within {
                anyhow::bail!(
                    "leases of consumer {consumer:?} did not settle over {workers} workers within {within:?}: {load:?}, {free} free"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every item of the primary with its version, read with the scanner.
    pub async fn primary_versions(&self) -> anyhow::Result<Vec<(ItemKey, Version)>> {
        if let Some(embedded) = &self.embedded {
            return Ok(embedded.store.versions().await?);
        }
        let segments = self.scanner.scan_segments().max(1);
        let mut all = Vec::new();
        for segment in 0..segments {
            let mut after: Option<ItemKey> = None;
            loop {
                let page = self
                    .scanner
                    .scan(segment, segments, after.as_ref(), 1_000)
                    .await?;
                all.extend(page.records.into_iter().map(|r| (r.key, r.version)));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        all.sort();
        Ok(all)
    }

    /// Closes the primary (the embedded store's writer).
    pub fn close(&self) {
        if let Some(embedded) = &self.embedded {
            embedded.store.close();
        }
    }
}

/// One shard of `tsunagu status`.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    pub shard: ShardId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ShardId>,
    /// The worker holding the shard's lease (leased deployments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Read to its end (a closed shard).
    pub finished: bool,
    pub checkpoint: Option<String>,
    pub newest: Option<String>,
    pub backlog: Option<u64>,
    /// Records after the checkpoint were trimmed: the consumer needs a backfill.
    pub behind_retention: bool,
    /// Seconds since the commit of the oldest record not yet checkpointed (the first one
    /// after the checkpoint); 0 when there is none. Grows while the consumer stalls.
    pub oldest_unapplied_age_seconds: f64,
}

/// One consumer of `tsunagu status`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    pub consumer: String,
    pub sink: String,
    pub dead_letters: u64,
    pub shards: Vec<ShardStatus>,
}

//! Wiring: turns a validated [`Config`] into real adapters (the embedded store, the
//! replication state, one embedded index per sink) and starts the engine over them. The
//! only place that names concrete adapters.

use crate::config::{Config, SinkConfig};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};
use tsunagu_embedded_store::primary::recorded_shard_count;
use tsunagu_embedded_store::state::registered_consumers_at;
use tsunagu_embedded_store::{EmbeddedState, EmbeddedStore, StoreOptions};
use tsunagu_engine::backfill::AfterBackfill;
use tsunagu_engine::lease::LeaseOptions;
use tsunagu_engine::ports::{ApplyObserver, ChangeSource, ItemScanner, LeaseStore, Sink};
use tsunagu_engine::{Consumer, Engine, Pipeline};

/// Resolves the config from the command line: the file if given (else the defaults), then
/// `--data-dir`. Without a file, an existing store's shard count is adopted, so commands
/// work on any data directory.
pub fn resolve_config(file: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Config> {
    let mut config = match file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = data_dir {
        config.data_dir = dir.to_path_buf();
    }
    if file.is_none() {
        if let Some(shards) = recorded_shard_count(&config.primary_path())? {
            config.store.shard_count = shards;
        }
    }
    for (name, sink) in registered_consumers_at(&config.state_path())? {
        config.add_consumer(&name, &sink);
    }
    config.validate()?;
    Ok(config)
}

/// Fails with a clear message when the data directory holds no store yet: commands that
/// only read (status, dlq, reconcile) must not create an empty one by mistake.
pub fn require_existing_store(config: &Config) -> anyhow::Result<()> {
    if config.primary_path().exists() {
        Ok(())
    } else {
        anyhow::bail!(
            "no tsunagu data in {}: check --data-dir (or data_dir in the config), or create it with `tsunagu demo --data-dir {}` or `tsunagu replicate`",
            config.data_dir.display(),
            config.data_dir.display()
        )
    }
}

/// The primary store and the replication state of a data directory.
#[derive(Clone)]
pub struct Embedded {
    pub config: Arc<Config>,
    pub store: EmbeddedStore,
    pub state: EmbeddedState,
}

impl Embedded {
    pub fn open(config: Config) -> anyhow::Result<Self> {
        if !matches!(config.primary, crate::config::PrimaryConfig::Embedded) {
            anyhow::bail!(
                "this command runs on the embedded store, but the config's primary is {:?}; `tsunagu replicate`, `check` and `bench lag --config` run on any adapters",
                config.primary
            );
        }
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let store = EmbeddedStore::open(
            &config.primary_path(),
            StoreOptions {
                shard_count: config.store.shard_count,
                retention: config.retention(),
                external_poll_interval: Duration::from_millis(
                    config.store.external_poll_interval_ms,
                ),
                ..StoreOptions::default()
            },
        )?;
        let state = EmbeddedState::open(&config.state_path())?;
        Ok(Self {
            config: Arc::new(config),
            store,
            state,
        })
    }

    /// Opens one embedded index for writing.
    pub fn open_sink(&self, name: &str) -> anyhow::Result<Arc<ActivityIndex>> {
        let sink = self
            .config
            .sinks
            .get(name)
            .with_context(|| format!("no sink named {name:?} in the config"))?;
        match sink {
            SinkConfig::EmbeddedIndex {
                writer_memory_mb,
                tombstone_retention_hours,
                refresh_interval_ms,
                durability_interval_ms,
            } => {
                let dir = self.config.index_dir(name);
                let index = ActivityIndex::open(
                    &dir,
                    IndexOptions {
                        writer_memory_bytes: (*writer_memory_mb as usize) << 20,
                        tombstone_retention: Duration::from_secs(tombstone_retention_hours * 3600),
                        refresh_interval: Duration::from_millis(*refresh_interval_ms),
                        durability_interval: Duration::from_millis(*durability_interval_ms),
                    },
                )
                .with_context(|| format!("cannot open index {}", dir.display()))?;
                Ok(Arc::new(index))
            }
            SinkConfig::Opensearch(_) | SinkConfig::Kinesis(_) => anyhow::bail!(
                "sinks.{name} is not an embedded index; this command runs on embedded indexes only (`tsunagu replicate`, `check` and `bench lag --config` run on any sink)"
            ),
        }
    }

    /// A backfill of `consumer` into `sink` from this store, with its state kept here.
    pub fn backfill<'a>(
        &'a self,
        consumer: &'a str,
        sink: &'a dyn tsunagu_engine::ports::Sink,
    ) -> tsunagu_engine::backfill::Backfill<'a> {
        tsunagu_engine::backfill::Backfill {
            consumer,
            source: &self.store,
            scanner: &self.store,
            sink,
            checkpoints: &self.state,
            dlq: &self.state,
            progress: &self.state,
        }
    }

    /// Opens every consumer's sink, by sink name.
    pub fn open_sinks(&self) -> anyhow::Result<BTreeMap<String, Arc<ActivityIndex>>> {
        self.config
            .consumers
            .iter()
            .map(|c| Ok((c.sink.clone(), self.open_sink(&c.sink)?)))
            .collect()
    }

    /// Starts every configured consumer over the store's change stream.
    pub async fn start_pipeline(
        &self,
        sinks: &BTreeMap<String, Arc<ActivityIndex>>,
        observers: Vec<Arc<dyn ApplyObserver>>,
    ) -> anyhow::Result<Pipeline> {
        let ports = PipelinePorts {
            source: Arc::new(self.store.clone()),
            backfill: Some(Arc::new(self.store.clone())),
            state: self.state.clone(),
            after_backfill: Some(
                self.remove_deleted_after_backfill(
                    self.config
                        .consumers
                        .iter()
                        .filter_map(|c| Some((c.name.clone(), Arc::clone(sinks.get(&c.sink)?))))
                        .collect(),
                ),
            ),
            leases: None,
        };
        let sinks = sinks
            .iter()
            .map(|(name, index)| (name.clone(), Arc::clone(index) as Arc<dyn Sink>))
            .collect();
        start_engine(ports, &self.config, &sinks, observers).await
    }
}

impl Embedded {
    /// What runs after a shard was backfilled because its consumer fell behind retention:
    /// documents of items deleted meanwhile are removed from the consumer's index
    /// (`indexes`: consumer name → its embedded index).
    pub fn remove_deleted_after_backfill(
        &self,
        indexes: BTreeMap<String, Arc<ActivityIndex>>,
    ) -> Arc<dyn AfterBackfill> {
        Arc::new(RemoveDeleted {
            embedded: self.clone(),
            indexes,
        })
    }
}

/// The ports a pipeline runs over, whichever adapters they are.
pub struct PipelinePorts {
    pub source: Arc<dyn ChangeSource>,
    /// What a shard that fell behind retention is backfilled from.
    pub backfill: Option<Arc<dyn ItemScanner>>,
    /// Checkpoints (unless leases hold them), dead letters and backfill progress.
    pub state: EmbeddedState,
    pub after_backfill: Option<Arc<dyn AfterBackfill>>,
    /// Shards shared with other workers.
    pub leases: Option<(Arc<dyn LeaseStore>, LeaseOptions)>,
}

/// Starts every consumer of `config` over `ports`, each with its sink (by sink name).
pub async fn start_engine(
    ports: PipelinePorts,
    config: &Config,
    sinks: &BTreeMap<String, Arc<dyn Sink>>,
    observers: Vec<Arc<dyn ApplyObserver>>,
) -> anyhow::Result<Pipeline> {
    let state = Arc::new(ports.state);
    let mut engine = Engine::new(ports.source, state.clone(), state.clone());
    if let Some(scanner) = ports.backfill {
        engine = engine.with_backfill(scanner, state.clone());
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
                sink: Arc::clone(sink),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(engine.start(consumers).await?)
}

/// After a shard was backfilled because its consumer fell behind retention, reconciles the
/// consumer with repair: documents of items deleted while it was away (which no scan of
/// live items can show) are removed through the sink.
struct RemoveDeleted {
    embedded: Embedded,
    indexes: BTreeMap<String, Arc<ActivityIndex>>,
}

#[async_trait::async_trait]
impl tsunagu_engine::backfill::AfterBackfill for RemoveDeleted {
    async fn after_backfill(
        &self,
        consumer: &str,
        _shard: &tsunagu_domain::ShardId,
    ) -> Result<(), String> {
        let index = self
            .indexes
            .get(consumer)
            .ok_or_else(|| {
                format!(
                    "consumer {consumer:?} has no embedded index here; documents of items deleted while it was behind retention stay in its sink"
                )
            })?;
        let handle = crate::reconcile::IndexHandle::Writer(Arc::clone(index));
        let report = crate::reconcile::reconcile(
            &self.embedded.store,
            &self.embedded.state,
            &handle,
            consumer,
            true,
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
        tracing::info!(
            consumer,
            extra_removed = report.repaired,
            remaining = report.remaining,
            "removed what was deleted while the consumer was behind retention"
        );
        Ok(())
    }
}

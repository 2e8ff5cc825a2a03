//! The adapters a config names, opened behind the ports: the primary store and its change
//! stream, the sinks, the leases. `replicate`, `check` and `bench lag --config` run on
//! it, so they work the same over the embedded defaults and over DynamoDB, Kinesis and
//! OpenSearch. (Commands that only make sense on the embedded store, such as `serve` and
//! `demo`, use [`crate::app::Embedded`] directly.)

use crate::app::{start_engine, Embedded, PipelinePorts};
use crate::check::{compare, Drift};
use crate::config::{Config, LeaseBackend, PrimaryConfig, SinkConfig, SourceConfig};
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::Arc;
use tsunagu_aws::{
    DynamoLeaseStore, DynamoStore, DynamoStreamsSource, KinesisForwarder, KinesisSource,
};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_embedded_index::ActivityIndex;
use tsunagu_embedded_store::EmbeddedState;
use tsunagu_engine::lease::LeaseOptions;
use tsunagu_engine::ports::{
    ApplyObserver, ChangeSource, ItemScanner, ItemStore, LeaseStore, Sink,
};
use tsunagu_engine::Pipeline;
use tsunagu_opensearch::OpenSearchSink;

/// An open sink, with what the correctness checks need besides the [`Sink`] port.
#[derive(Clone)]
pub enum SinkHandle {
    Embedded(Arc<ActivityIndex>),
    OpenSearch(Arc<OpenSearchSink>),
    /// Forwards into a Kinesis stream; it cannot be read back.
    Kinesis(Arc<KinesisForwarder>),
}

impl SinkHandle {
    pub fn sink(&self) -> Arc<dyn Sink> {
        match self {
            SinkHandle::Embedded(index) => Arc::clone(index) as Arc<dyn Sink>,
            SinkHandle::OpenSearch(sink) => Arc::clone(sink) as Arc<dyn Sink>,
            SinkHandle::Kinesis(sink) => Arc::clone(sink) as Arc<dyn Sink>,
        }
    }

    /// Every live (not deleted) item the sink holds, with its version.
    pub async fn live_versions(&self) -> anyhow::Result<Vec<(ItemKey, Version)>> {
        match self {
            SinkHandle::Embedded(index) => Ok(index.live_versions()?.into_iter().collect()),
            SinkHandle::OpenSearch(sink) => {
                sink.refresh().await?;
                Ok(sink.live_versions().await?)
            }
            SinkHandle::Kinesis(_) => anyhow::bail!(
                "a kinesis sink forwards changes and cannot be read back; check the consumer that reads the stream instead"
            ),
        }
    }

    /// Makes everything durable and releases the sink (the embedded index's lock).
    pub async fn close(self) {
        match self {
            SinkHandle::Embedded(index) => {
                if let Ok(index) = Arc::try_unwrap(index) {
                    index.close().await;
                }
            }
            SinkHandle::OpenSearch(_) | SinkHandle::Kinesis(_) => {}
        }
    }
}

/// The primary, its stream and the replication state, as the config names them.
pub struct Runtime {
    pub config: Arc<Config>,
    pub store: Arc<dyn ItemStore>,
    pub source: Arc<dyn ChangeSource>,
    pub scanner: Arc<dyn ItemScanner>,
    /// Dead letters, backfill progress, and checkpoints unless leases hold them.
    pub state: EmbeddedState,
    /// Set when the primary is the embedded store.
    pub embedded: Option<Embedded>,
    leases: Option<(Arc<dyn LeaseStore>, LeaseOptions)>,
}

impl Runtime {
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let aws = config.aws.clone();
        let aws = || {
            aws.clone()
                .context("[aws] is required by the AWS adapters of this config")
        };
        // The embedded store is opened only when it is the primary; the replication
        // state (dead letters, checkpoints without leases) always lives in data_dir.
        let (embedded, store, scanner): (
            Option<Embedded>,
            Arc<dyn ItemStore>,
            Arc<dyn ItemScanner>,
        ) = match &config.primary {
            PrimaryConfig::Embedded => {
                let embedded = Embedded::open(config.clone())?;
                let store = embedded.store.clone();
                (Some(embedded), Arc::new(store.clone()), Arc::new(store))
            }
            PrimaryConfig::Dynamodb(table) => {
                let store = Arc::new(
                    DynamoStore::connect(&aws()?, table)
                        .await
                        .context("cannot open the primary (DynamoDB)")?,
                );
                (None, store.clone(), store)
            }
        };
        let state = match &embedded {
            Some(embedded) => embedded.state.clone(),
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
        let leases = match &config.leases {
            None => None,
            Some(section) => {
                let store: Arc<dyn LeaseStore> = match (section.kind, section.table_config()) {
                    (LeaseBackend::Dynamodb, Some(table)) => Arc::new(
                        DynamoLeaseStore::connect(&aws()?, &table)
                            .await
                            .context("cannot open the lease table")?,
                    ),
                    _ => Arc::new(state.clone()),
                };
                Some((store, section.options()))
            }
        };
        let config = match &embedded {
            Some(embedded) => Arc::clone(&embedded.config),
            None => Arc::new(config),
        };
        Ok(Self {
            store,
            source,
            scanner,
            state,
            embedded,
            config,
            leases,
        })
    }

    /// Opens every consumer's sink, by sink name.
    pub async fn open_sinks(&self) -> anyhow::Result<BTreeMap<String, SinkHandle>> {
        let mut sinks = BTreeMap::new();
        for consumer in &self.config.consumers {
            let name = &consumer.sink;
            let config = self
                .config
                .sinks
                .get(name)
                .with_context(|| format!("no sink named {name:?} in the config"))?;
            let handle = match config {
                SinkConfig::EmbeddedIndex { .. } => {
                    let embedded = self
                        .embedded
                        .as_ref()
                        .context("an embedded index needs the embedded store's data_dir")?;
                    SinkHandle::Embedded(embedded.open_sink(name)?)
                }
                SinkConfig::Opensearch(config) => SinkHandle::OpenSearch(Arc::new(
                    OpenSearchSink::connect(config)
                        .await
                        .with_context(|| format!("cannot open sinks.{name}"))?,
                )),
                SinkConfig::Kinesis(kinesis) => {
                    let aws = self
                        .config
                        .aws
                        .as_ref()
                        .context("[aws] is required by a kinesis sink")?;
                    SinkHandle::Kinesis(Arc::new(
                        KinesisForwarder::connect(aws, kinesis)
                            .await
                            .with_context(|| format!("cannot open sinks.{name}"))?,
                    ))
                }
            };
            sinks.insert(name.clone(), handle);
        }
        Ok(sinks)
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
            // Backfilling a shard from a scan needs scan segments that match the stream's
            // shards, which only the embedded store has; elsewhere a consumer behind
            // retention stops and says so (docs/aws.md).
            backfill: self.embedded.as_ref().map(|_| Arc::clone(&self.scanner)),
            state: self.state.clone(),
            // On the embedded store, what was deleted while a consumer was behind
            // retention is removed from its embedded index after the backfill.
            after_backfill: self.embedded.as_ref().map(|embedded| {
                embedded.remove_deleted_after_backfill(
                    self.config
                        .consumers
                        .iter()
                        .filter_map(|c| match sinks.get(&c.sink)? {
                            SinkHandle::Embedded(index) => {
                                Some((c.name.clone(), Arc::clone(index)))
                            }
                            _ => None,
                        })
                        .collect(),
                )
            }),
            leases,
        };
        let sinks = sinks
            .iter()
            .map(|(name, handle)| (name.clone(), handle.sink()))
            .collect();
        start_engine(ports, &self.config, &sinks, observers).await
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
        within: std::time::Duration,
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
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Every item of the primary with its version, read with the scanner.
    pub async fn primary_versions(&self) -> anyhow::Result<Vec<(ItemKey, Version)>> {
        if let Some(embedded) = &self.embedded {
            return Ok(embedded.store.versions().await?);
        }
        const SEGMENTS: u32 = 4;
        let mut all = Vec::new();
        for segment in 0..SEGMENTS {
            let mut after: Option<ItemKey> = None;
            loop {
                let page = self
                    .scanner
                    .scan(segment, SEGMENTS, after.as_ref(), 1_000)
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

/// Compares every item's version in the primary with the sink's.
pub async fn drift(runtime: &Runtime, sink: &SinkHandle) -> anyhow::Result<Drift> {
    let primary: BTreeMap<ItemKey, Version> =
        runtime.primary_versions().await?.into_iter().collect();
    let held: BTreeMap<ItemKey, Version> = sink.live_versions().await?.into_iter().collect();
    Ok(compare(&primary, &held))
}

/// One connectivity check of `tsunagu check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckLine {
    /// What was checked (`primary`, `source`, `sinks.NAME`, `leases`).
    pub what: String,
    /// What was found, or what is wrong and how to fix it.
    pub outcome: Result<String, String>,
}

/// Checks that every adapter of `config` is reachable and set up as the config expects,
/// without changing anything (no table, stream, index or file is created).
pub async fn check_adapters(config: &Config) -> Vec<CheckLine> {
    let aws = config.aws.as_ref();
    let mut lines = vec![
        CheckLine {
            what: "primary".into(),
            outcome: match &config.primary {
                PrimaryConfig::Embedded => check_embedded_store(config),
                PrimaryConfig::Dynamodb(table) => check_dynamo_table(aws, table).await,
            },
        },
        CheckLine {
            what: "source".into(),
            outcome: match &config.source {
                SourceConfig::Embedded => Ok("the embedded store's change stream".to_string()),
                SourceConfig::DynamodbStreams(streams) => {
                    let created = matches!(&config.primary, PrimaryConfig::Dynamodb(t) if t.create_if_missing);
                    check_dynamo_stream(aws, streams, created).await
                }
                SourceConfig::Kinesis(kinesis) => check_kinesis(aws, kinesis).await,
            },
        },
    ];
    for (name, sink) in &config.sinks {
        let outcome = match sink {
            SinkConfig::EmbeddedIndex { .. } => {
                let dir = config.index_dir(name);
                check_dir_writable(&dir)
                    .map(|how| format!("embedded index {}: {how}", dir.display()))
            }
            SinkConfig::Opensearch(os) => check_opensearch(os).await,
            SinkConfig::Kinesis(kinesis) => check_kinesis(aws, kinesis).await,
        };
        lines.push(CheckLine {
            what: format!("sinks.{name}"),
            outcome,
        });
    }
    if let Some(leases) = &config.leases {
        let outcome = match leases.table_config() {
            None => check_dir_writable(&config.data_dir).map(|how| {
                format!(
                    "embedded leases in {}: {how}",
                    config.state_path().display()
                )
            }),
            Some(table) => check_lease_table(aws, &table).await,
        };
        lines.push(CheckLine {
            what: "leases".into(),
            outcome,
        });
    }
    lines
}

fn need_aws(aws: Option<&tsunagu_aws::AwsConfig>) -> Result<&tsunagu_aws::AwsConfig, String> {
    aws.ok_or_else(|| "[aws] is missing".to_string())
}

/// A missing resource that the adapter creates on start is fine.
fn created_on_start(error: tsunagu_aws::AwsError, creates: bool) -> Result<String, String> {
    match error {
        tsunagu_aws::AwsError::Missing(what) if creates => Ok(format!(
            "not there yet, created on start (create_if_missing = true): {what}"
        )),
        other => Err(other.to_string()),
    }
}

// Each AWS check connects with `create_if_missing` off, so that checking creates nothing.

async fn check_dynamo_table(
    aws: Option<&tsunagu_aws::AwsConfig>,
    table: &tsunagu_aws::DynamoTableConfig,
) -> Result<String, String> {
    let probe = tsunagu_aws::DynamoTableConfig {
        create_if_missing: false,
        ..table.clone()
    };
    match DynamoStore::connect(need_aws(aws)?, &probe).await {
        Ok(store) => store.check().await.map_err(|e| e.to_string()),
        Err(e) => created_on_start(e, table.create_if_missing),
    }
}

/// `created`: the primary creates the table (and so the stream) on start.
async fn check_dynamo_stream(
    aws: Option<&tsunagu_aws::AwsConfig>,
    streams: &tsunagu_aws::DynamoStreamsConfig,
    created: bool,
) -> Result<String, String> {
    match DynamoStreamsSource::connect(need_aws(aws)?, streams).await {
        Ok(source) => source.check().await.map_err(|e| e.to_string()),
        Err(e) => created_on_start(e, created),
    }
}

async fn check_lease_table(
    aws: Option<&tsunagu_aws::AwsConfig>,
    table: &tsunagu_aws::LeaseTableConfig,
) -> Result<String, String> {
    let probe = tsunagu_aws::LeaseTableConfig {
        create_if_missing: false,
        ..table.clone()
    };
    match DynamoLeaseStore::connect(need_aws(aws)?, &probe).await {
        Ok(store) => store.check().await.map_err(|e| e.to_string()),
        Err(e) => created_on_start(e, table.create_if_missing),
    }
}

async fn check_kinesis(
    aws: Option<&tsunagu_aws::AwsConfig>,
    kinesis: &tsunagu_aws::KinesisConfig,
) -> Result<String, String> {
    let probe = tsunagu_aws::KinesisConfig {
        create_if_missing: false,
        ..kinesis.clone()
    };
    match KinesisSource::connect(need_aws(aws)?, &probe).await {
        Ok(source) => source.check().await.map_err(|e| e.to_string()),
        Err(e) => created_on_start(e, kinesis.create_if_missing),
    }
}

async fn check_opensearch(config: &tsunagu_opensearch::OpenSearchConfig) -> Result<String, String> {
    let sink = OpenSearchSink::new(config).map_err(|e| e.to_string())?;
    let info = sink.check().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "{} {} at {}; index {:?} {}",
        info.distribution,
        info.version,
        tsunagu_opensearch::redact_url(&config.url),
        config.index,
        if info.index_exists {
            "exists"
        } else {
            "will be created on start"
        }
    ))
}

fn check_embedded_store(config: &Config) -> Result<String, String> {
    let path = config.primary_path();
    match tsunagu_embedded_store::primary::recorded_shard_count(&path) {
        Ok(Some(shards)) if shards != config.store.shard_count => Err(format!(
            "{} was created with {shards} shards but store.shard_count is {}; the shard count of a store cannot change",
            path.display(),
            config.store.shard_count
        )),
        Ok(Some(shards)) => Ok(format!("{} opens ({shards} shards)", path.display())),
        Ok(None) => check_dir_writable(&config.data_dir)
            .map(|how| format!("no store yet; {} will be created ({how})", path.display())),
        Err(e) => Err(format!("{} cannot be read: {e}", path.display())),
    }
}

/// Whether files can be created in `dir` (or in its nearest existing ancestor).
fn check_dir_writable(dir: &std::path::Path) -> Result<String, String> {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or_else(|| std::path::Path::new("."));
    let meta = std::fs::metadata(existing)
        .map_err(|e| format!("{} cannot be read: {e}", existing.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".tsunagu-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| format!("{} is not writable: {e}", existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if existing == dir {
        "writable".into()
    } else {
        format!("will be created under {} (writable)", existing.display())
    })
}

//! The embedded deployment's files: resolving the config of a data directory, and the
//! primary store, the replication state and the embedded indexes opened from it (what
//! `serve`, `demo` and the benchmarks run in one process).

use crate::config::{Config, SinkConfig};
use crate::recovery::RemoveDeleted;
use crate::{start_engine, PipelinePorts, SinkHandle, StatePorts};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};
use tsunagu_embedded_store::primary::recorded_shard_count;
use tsunagu_embedded_store::state::registered_consumers_at;
use tsunagu_embedded_store::{EmbeddedState, EmbeddedStore, StoreOptions};
use tsunagu_engine::ports::ApplyObserver;
use tsunagu_engine::Pipeline;

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

/// Fails, naming where the path came from (`origin`: the flag or the config file's key)
/// and creating nothing, when the data directory does not exist: a mistyped
/// `--data-dir` must not become a new empty one. Only commands meant to set up a data
/// directory (`replicate`, `serve`, `demo`, `tenant create`) create it.
pub fn require_data_dir(config: &Config, origin: &str) -> anyhow::Result<()> {
    if config.data_dir.is_dir() {
        return Ok(());
    }
    let dir = config.data_dir.display();
    if config.data_dir.exists() {
        anyhow::bail!("the data directory {dir} (from {origin}) is not a directory");
    }
    anyhow::bail!(
        "no tsunagu data directory at {dir} (from {origin}): check the path; `tsunagu serve`, `tsunagu replicate` or `tsunagu demo --data-dir {dir}` create one"
    )
}

/// Like [`require_data_dir`], and, on the embedded primary, the directory must hold its
/// store: commands that read or repair what was replicated (status, search, dlq,
/// reconcile, backfill) must not create an empty one by mistake.
pub fn require_existing_store(config: &Config, origin: &str) -> anyhow::Result<()> {
    if !matches!(config.primary, crate::config::PrimaryConfig::Embedded) {
        return Ok(());
    }
    require_data_dir(config, origin)?;
    if config.primary_path().exists() {
        return Ok(());
    }
    let dir = config.data_dir.display();
    anyhow::bail!(
        "no tsunagu store in {dir} (from {origin}; {} is missing): check the path; `tsunagu serve`, `tsunagu replicate` or `tsunagu demo --data-dir {dir}` create one",
        config.primary_path().display()
    )
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
        require_embedded(&config)?;
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

    /// Opens the store and the state of an existing data directory **read-only**:
    /// nothing is created or written, so it works on a directory the process cannot
    /// write. For commands that only read (`status`, `dlq list`, `reconcile`).
    pub fn open_read_only(config: Config) -> anyhow::Result<Self> {
        require_embedded(&config)?;
        let store = EmbeddedStore::open_read_only(
            &config.primary_path(),
            StoreOptions {
                retention: config.retention(),
                ..StoreOptions::default()
            },
        )?;
        let state = EmbeddedState::open_read_only(&config.state_path())?;
        Ok(Self {
            config: Arc::new(config),
            store,
            state,
        })
    }

    /// Opens one embedded index for writing.
    pub fn open_sink(&self, name: &str) -> anyhow::Result<Arc<ActivityIndex>> {
        open_index(&self.config, name)
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

    /// Starts every configured consumer over the store's change stream, with the
    /// automatic recovery of a shard that fell behind retention.
    pub async fn start_pipeline(
        &self,
        sinks: &BTreeMap<String, Arc<ActivityIndex>>,
        observers: Vec<Arc<dyn ApplyObserver>>,
    ) -> anyhow::Result<Pipeline> {
        let store = Arc::new(self.store.clone());
        let state = StatePorts::embedded(&self.state);
        let sinks: BTreeMap<String, SinkHandle> = sinks
            .iter()
            .map(|(name, index)| (name.clone(), SinkHandle::Embedded(Arc::clone(index))))
            .collect();
        let ports = PipelinePorts {
            source: store.clone(),
            backfill: Some(store.clone()),
            after_backfill: Some(RemoveDeleted::hook(
                store.clone(),
                store,
                state.checkpoints.clone(),
                &self.config,
                &sinks,
            )),
            state,
            leases: None,
        };
        start_engine(ports, &self.config, &sinks, observers).await
    }
}

fn require_embedded(config: &Config) -> anyhow::Result<()> {
    if !matches!(config.primary, crate::config::PrimaryConfig::Embedded) {
        anyhow::bail!(
            "this command runs on the embedded store, but the config's primary is {:?}; `tsunagu replicate`, `check` and `bench lag --config` run on any adapters",
            config.primary
        );
    }
    Ok(())
}

/// The options of embedded index `name` (`sinks.NAME`), or an error naming what it is.
fn index_options(config: &Config, name: &str) -> anyhow::Result<IndexOptions> {
    match config
        .sinks
        .get(name)
        .with_context(|| format!("no sink named {name:?} in the config"))?
    {
        SinkConfig::EmbeddedIndex {
            writer_memory_mb,
            tombstone_retention_hours,
            refresh_interval_ms,
            durability_interval_ms,
            dictionary: _,
        } => Ok(IndexOptions {
            writer_memory_bytes: (*writer_memory_mb as usize) << 20,
            tombstone_retention: Duration::from_secs(tombstone_retention_hours * 3600),
            refresh_interval: Duration::from_millis(*refresh_interval_ms),
            durability_interval: Duration::from_millis(*durability_interval_ms),
            dictionary: crate::sinks::sink_dictionary(config, name)?,
        }),
        SinkConfig::Opensearch(_) | SinkConfig::Kinesis(_) => {
            anyhow::bail!("sinks.{name} is not an embedded index")
        }
    }
}

/// Opens embedded index `name` in the config's data directory for writing. An index has
/// one writer: the process that holds it is recorded beside it ([`WRITER_FILE`]), so
/// that another one that finds it locked can name it.
pub(crate) fn open_index(config: &Config, name: &str) -> anyhow::Result<Arc<ActivityIndex>> {
    let options = index_options(config, name)?;
    let dir = config.index_dir(name);
    let index = match ActivityIndex::open(&dir, options) {
        Ok(index) => index,
        Err(tsunagu_embedded_index::IndexError::Locked { .. }) => {
            let holder = writer_holder(&dir).unwrap_or_else(|| {
                "another tsunagu process (replicate, serve, backfill, dlq redrive or reconcile --repair)".to_string()
            });
            anyhow::bail!(
                "sinks.{name}: the index at {} is open for writing by {holder}, and an index has one writer: stop it first, or use a command that only reads (search, status, reconcile without --repair)",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open index {}", dir.display())),
    };
    // Best effort: it only improves the message another process prints.
    let me = format!("{}\n{}\n", std::process::id(), this_command());
    if let Err(e) = std::fs::write(dir.join(WRITER_FILE), me) {
        tracing::debug!(error = %e, "cannot record the index writer's process");
    }
    Ok(Arc::new(index))
}

/// The file beside an embedded index naming the process that holds its writer: its pid,
/// then its command (`tsunagu serve`). Stale once that process is gone.
const WRITER_FILE: &str = "writer.pid";

/// The program and the subcommand words this process was started with (`tsunagu
/// serve`; no flags, which may hold paths or secrets).
fn this_command() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "tsunagu".to_string());
    let words: Vec<String> = args
        .take_while(|arg| !arg.starts_with('-'))
        .take(2)
        .collect();
    std::iter::once(program)
        .chain(words)
        .collect::<Vec<_>>()
        .join(" ")
}

/// "`tsunagu serve` (pid 1234)" when the recorded writer of the index in `dir` is still
/// running.
fn writer_holder(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(WRITER_FILE)).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let command = lines.next()?.trim();
    let alive = Path::new("/proc").join(pid.to_string()).exists();
    (alive && pid != std::process::id()).then(|| format!("`{command}` (pid {pid})"))
}

/// Opens embedded index `name` read-only (works while another process writes it; sees
/// its last durable point).
pub(crate) fn open_index_reader(
    config: &Config,
    name: &str,
) -> anyhow::Result<Arc<tsunagu_embedded_index::ActivityIndexReader>> {
    let options = index_options(config, name)?;
    let dir = config.index_dir(name);
    let reader = ActivityIndex::open_read_only_with(&dir, options.dictionary)
        .with_context(|| format!("cannot open index {} for reading", dir.display()))?;
    Ok(Arc::new(reader))
}

//! The config file (TOML, versioned) and its pure validation. Everything has a default, so
//! no file at all runs the embedded pipeline with one consumer, `search`, into the embedded
//! index `activities`.
//!
//! ```toml
//! version = 1
//! data_dir = "./data"
//!
//! [store]
//! shard_count = 4
//! retention_hours = 24
//!
//! [sinks.activities]
//! type = "embedded_index"
//!
//! [[consumers]]
//! name = "search"
//! sink = "activities"
//! batch_size = 100
//! parallelization_factor = 2
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tsunagu_engine::{check_bounds, ConfigError, ConsumerConfig};

/// The config file format this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// The most shards of the embedded change stream: each is read by its own task with
/// `parallelization_factor` lanes per consumer, so 1024 is far past one machine's need.
pub const MAX_SHARD_COUNT: u32 = 1_024;
/// The longest change-record retention: one year, as for Kinesis. Records are kept on
/// disk that long, and tombstones at least as long.
pub const MAX_RETENTION_HOURS: u64 = 8_760;
/// The slowest idle poll for another process's writes (1 minute): slower only delays
/// replication.
pub const MAX_EXTERNAL_POLL_INTERVAL_MS: u64 = 60_000;
/// The longest server wait, timeout or shutdown grace: one hour.
pub const MAX_SERVER_MS: u64 = 3_600_000;
/// Lease durations: a second at least (renewals must fit in it), 10 minutes at most (a
/// crashed worker's shards wait that long for another).
pub const MIN_LEASE_DURATION_MS: u64 = 1_000;
pub const MAX_LEASE_DURATION_MS: u64 = 600_000;
/// The embedded index writer's memory: tantivy needs about 15 MB per writer; more than
/// 4 GiB buys nothing but a longer commit.
pub const MIN_WRITER_MEMORY_MB: u64 = 15;
pub const MAX_WRITER_MEMORY_MB: u64 = 4_096;
/// The longest time between two index commits (1 minute): records wait that long to be
/// searchable.
pub const MAX_REFRESH_INTERVAL_MS: u64 = 60_000;
/// The longest time between two fsyncs (10 minutes): what a crash replays.
pub const MAX_DURABILITY_INTERVAL_MS: u64 = 600_000;
/// The longest tombstone retention: one year, at least `store.retention_hours`.
pub const MAX_TOMBSTONE_RETENTION_HOURS: u64 = 8_760;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; must be 1.
    pub version: u32,
    /// Where the store, the replication state and the indexes live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub store: StoreSection,
    /// Where items live (default: the embedded store, with `[store]`'s settings).
    #[serde(default)]
    pub primary: PrimaryConfig,
    /// The change stream read (default: the embedded store's).
    #[serde(default)]
    pub source: SourceConfig,
    /// Region, endpoint and retries of every AWS adapter; required when one is used.
    #[serde(default)]
    pub aws: Option<tsunagu_aws::AwsConfig>,
    #[serde(default = "default_sinks")]
    pub sinks: BTreeMap<String, SinkConfig>,
    #[serde(default = "default_consumers")]
    pub consumers: Vec<ConsumerConfig>,
    #[serde(default)]
    pub server: ServerSection,
    /// Several workers (processes) share the stream's shards through leases. Unset: this
    /// process reads every shard, with checkpoints in the state file.
    #[serde(default)]
    pub leases: Option<LeasesSection>,
    /// The tenant registry (tenants and their API tokens). Unset: `tenants.db` in
    /// `data_dir`, for one machine.
    #[serde(default)]
    pub tenants: TenantsConfig,
}

/// The primary store, by type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PrimaryConfig {
    /// The embedded store in `data_dir` (its settings are in `[store]`).
    #[default]
    Embedded,
    /// A DynamoDB table (with its stream, NEW_AND_OLD_IMAGES); see docs/aws.md.
    Dynamodb(tsunagu_aws::DynamoTableConfig),
}

/// The change stream, by type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The embedded store's change stream.
    #[default]
    Embedded,
    /// The DynamoDB stream of the primary's table.
    DynamodbStreams(tsunagu_aws::DynamoStreamsConfig),
    /// A Kinesis data stream fed by a `kinesis` sink (the forwarder).
    Kinesis(tsunagu_aws::KinesisConfig),
}

/// The tenant registry, by type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TenantsConfig {
    /// `tenants.db` in `data_dir`: every API server and `tsunagu tenant` on one machine.
    /// (A struct variant, so that a field given with it is refused: serde lets a unit
    /// variant of an internally tagged enum ignore unknown fields.)
    Embedded {},
    /// A DynamoDB table (string keys `pk` and `sk`) shared by every API server and
    /// operator machine; see docs/aws.md.
    Dynamodb(tsunagu_aws::TenantTableConfig),
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self::Embedded {}
    }
}

/// Where leases live and how long they last.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesSection {
    /// `embedded` (the state file in `data_dir`: processes on one machine) or `dynamodb`.
    #[serde(rename = "type")]
    pub kind: LeaseBackend,
    /// The lease table (`dynamodb` only).
    #[serde(default)]
    pub table_name: Option<String>,
    /// Create the lease table (and the state table) when it does not exist (`dynamodb`
    /// only).
    #[serde(default)]
    pub create_if_missing: bool,
    /// The table of the replication state every worker and operator machine shares: dead
    /// letters and backfill progress (`dynamodb` only; default: the lease table's name
    /// with `-state` appended).
    #[serde(default)]
    pub state_table_name: Option<String>,
    /// Unique per worker; default: host name and process id.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// A crashed worker's shards move to the others after this.
    #[serde(default = "default_lease_duration_ms")]
    pub lease_duration_ms: u64,
    /// How often leases are renewed and balanced; default: a third of the duration.
    #[serde(default)]
    pub renew_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseBackend {
    Embedded,
    Dynamodb,
}

fn default_lease_duration_ms() -> u64 {
    10_000
}

impl LeasesSection {
    /// The DynamoDB lease table, when that is where leases live.
    pub fn table_config(&self) -> Option<tsunagu_aws::LeaseTableConfig> {
        let name = self.table_name.as_ref()?;
        let mut table = tsunagu_aws::LeaseTableConfig::named(name.clone());
        table.create_if_missing = self.create_if_missing;
        Some(table)
    }

    /// The DynamoDB table of the shared replication state, when leases live in DynamoDB.
    pub fn state_table_config(&self) -> Option<tsunagu_aws::StateTableConfig> {
        let leases = self.table_name.as_ref()?;
        let name = self
            .state_table_name
            .clone()
            .unwrap_or_else(|| format!("{leases}-state"));
        let mut table = tsunagu_aws::StateTableConfig::named(name);
        table.create_if_missing = self.create_if_missing;
        Some(table)
    }

    pub fn options(&self) -> tsunagu_engine::lease::LeaseOptions {
        let mut options = tsunagu_engine::lease::LeaseOptions::new(
            self.worker_id
                .clone()
                .unwrap_or_else(tsunagu_engine::lease::default_worker_id),
            Duration::from_millis(self.lease_duration_ms),
        );
        if let Some(ms) = self.renew_interval_ms {
            options.renew_interval = Duration::from_millis(ms);
        }
        options
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| {
            Err(ConfigError {
                field: format!("leases.{field}"),
                message,
            })
        };
        check_bounds(
            "leases.lease_duration_ms",
            self.lease_duration_ms,
            MIN_LEASE_DURATION_MS..=MAX_LEASE_DURATION_MS,
        )?;
        if let Some(renew) = self.renew_interval_ms {
            if renew == 0 || renew * 2 > self.lease_duration_ms {
                return fail(
                    "renew_interval_ms",
                    format!(
                        "must be at least 1 and at most half of lease_duration_ms ({}), got {renew}",
                        self.lease_duration_ms
                    ),
                );
            }
        }
        if self.worker_id.as_deref().is_some_and(str::is_empty) {
            return fail("worker_id", "must not be empty".into());
        }
        match (self.kind, &self.table_name) {
            (LeaseBackend::Dynamodb, None) => {
                fail("table_name", "is required when type = \"dynamodb\"".into())
            }
            (LeaseBackend::Dynamodb, Some(_)) => {
                if let Some(table) = self.table_config() {
                    table.validate("leases")?;
                }
                if let Some(table) = self.state_table_config() {
                    table.validate("leases.state_table_name")?;
                }
                Ok(())
            }
            (LeaseBackend::Embedded, Some(_)) => fail(
                "table_name",
                "is only for type = \"dynamodb\"; embedded leases live in data_dir".into(),
            ),
            (LeaseBackend::Embedded, None) if self.state_table_name.is_some() => fail(
                "state_table_name",
                "is only for type = \"dynamodb\"; with embedded leases the state lives in data_dir"
                    .into(),
            ),
            (LeaseBackend::Embedded, None) => Ok(()),
        }
    }
}

/// `tsunagu serve`: the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port to listen on (`--listen` / `TSUNAGU_LISTEN` override it).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The consumer whose index the API searches (default: the first consumer).
    #[serde(default)]
    pub search_consumer: Option<String>,
    /// The longest a search given a consistency token waits for the index.
    #[serde(default = "default_consistency_wait_ms")]
    pub consistency_wait_ms: u64,
    /// Requests running longer are answered 503.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// On shutdown: how long in-flight requests and the pipeline's drain may take.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Whether `serve` runs the replication pipeline in its process (a worker sharing
    /// the shards through leases when `[leases]` is set). `false`: an API node only,
    /// beside `tsunagu replicate` workers (not for an embedded index, which has one
    /// writer).
    #[serde(default = "default_true")]
    pub replicate: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            search_consumer: None,
            consistency_wait_ms: default_consistency_wait_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            replicate: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_consistency_wait_ms() -> u64 {
    5_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_shutdown_grace_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Shards of the change stream; fixed when the store is created.
    #[serde(default = "default_shard_count")]
    pub shard_count: u32,
    /// How long change records are kept.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// How often an idle reader looks for records written by another process.
    #[serde(default = "default_external_poll_interval_ms")]
    pub external_poll_interval_ms: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            shard_count: default_shard_count(),
            retention_hours: default_retention_hours(),
            external_poll_interval_ms: default_external_poll_interval_ms(),
        }
    }
}

/// A sink, by type. Closed set: an unknown `type` is an error naming the choices.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// The embedded search index, in `<data_dir>/index/<sink name>`.
    EmbeddedIndex {
        /// Memory the index writer may buffer before flushing a segment.
        #[serde(default = "default_writer_memory_mb")]
        writer_memory_mb: u64,
        /// How long a deletion's tombstone is kept, to fend off stale replays.
        #[serde(default = "default_tombstone_retention_hours")]
        tombstone_retention_hours: u64,
        /// The least time between two index commits: under load, what arrives meanwhile
        /// shares one commit. 0 commits every group at once.
        #[serde(default = "default_refresh_interval_ms")]
        refresh_interval_ms: u64,
        /// How often commits are made durable (fsynced). Searchable at once, durable at
        /// the next point: checkpoints wait for it, so a crash replays at most this much.
        #[serde(default = "default_durability_interval_ms")]
        durability_interval_ms: u64,
        /// The sources of a MeCab IPADIC dictionary (`apt-get install mecab-ipadic`:
        /// `/usr/share/mecab/dic/ipadic`) for Japanese word analysis of memos: whole
        /// words stop matching across word boundaries and okurigana variants meet. Compiled
        /// on first use into `data_dir/dictionaries/`. Unset: character bigrams only.
        /// Setting or unsetting it changes the index schema: the index is rebuilt.
        #[serde(default)]
        dictionary: Option<PathBuf>,
    },
    /// An Elasticsearch or OpenSearch index (see docs/opensearch.md); several workers
    /// may write to it at once.
    Opensearch(tsunagu_opensearch::OpenSearchConfig),
    /// Forwards every change into a Kinesis data stream, in order per partition key (as
    /// the original design planned, to fan a DynamoDB stream out further).
    Kinesis(tsunagu_aws::KinesisConfig),
}

impl SinkConfig {
    /// Whether several processes can write to the sink at once.
    pub fn is_shared(&self) -> bool {
        match self {
            SinkConfig::EmbeddedIndex { .. } => false,
            SinkConfig::Opensearch(_) | SinkConfig::Kinesis(_) => true,
        }
    }

    /// Whether the sink runs on AWS (and needs `[aws]`).
    pub fn uses_aws(&self) -> bool {
        matches!(self, SinkConfig::Kinesis(_))
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./tsunagu-data")
}
fn default_shard_count() -> u32 {
    4
}
fn default_retention_hours() -> u64 {
    24
}
fn default_external_poll_interval_ms() -> u64 {
    20
}
fn default_writer_memory_mb() -> u64 {
    64
}
fn default_tombstone_retention_hours() -> u64 {
    24 * 7
}
fn default_refresh_interval_ms() -> u64 {
    tsunagu_embedded_index::DEFAULT_REFRESH_INTERVAL_MS
}
fn default_durability_interval_ms() -> u64 {
    tsunagu_embedded_index::DEFAULT_DURABILITY_INTERVAL_MS
}
fn default_sinks() -> BTreeMap<String, SinkConfig> {
    BTreeMap::from([(
        "activities".to_string(),
        SinkConfig::EmbeddedIndex {
            writer_memory_mb: default_writer_memory_mb(),
            tombstone_retention_hours: default_tombstone_retention_hours(),
            refresh_interval_ms: default_refresh_interval_ms(),
            durability_interval_ms: default_durability_interval_ms(),
            dictionary: None,
        },
    )])
}
fn default_consumers() -> Vec<ConsumerConfig> {
    vec![ConsumerConfig::named("search")]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            data_dir: default_data_dir(),
            store: StoreSection::default(),
            primary: PrimaryConfig::default(),
            source: SourceConfig::default(),
            aws: None,
            sinks: default_sinks(),
            consumers: default_consumers(),
            server: ServerSection::default(),
            leases: None,
            tenants: TenantsConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // The cause is part of the message (and not a `source`, which would print it twice).
    #[error("cannot read config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    /// `line`: where the field (or its table) is written, when it is in the file.
    #[error("config file {path}: {error}{}", .line.map(|n| format!(" (line {n})")).unwrap_or_default())]
    Invalid {
        path: String,
        error: ConfigError,
        line: Option<usize>,
    },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `origin` names it in errors. `${NAME}` and
    /// `${NAME:-default}` are replaced by environment variables first (endpoints and
    /// secrets usually come from the environment).
    pub fn parse(text: &str, origin: &str) -> Result<Self, LoadError> {
        Self::parse_with_env(text, origin, &|name| std::env::var(name).ok())
    }

    /// [`Config::parse`] with the environment given (for tests).
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, LoadError> {
        let text = interpolate_env(text, env).map_err(|message| LoadError::Parse {
            path: origin.to_string(),
            message,
        })?;
        // toml's messages carry the line, the column and the offending key.
        let config: Config = toml::from_str(&text).map_err(|e| LoadError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|error| LoadError::Invalid {
            path: origin.to_string(),
            line: line_of_field(&text, &error.field),
            error,
        })?;
        Ok(config)
    }

    /// Checks the whole config without touching the disk or the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| {
            Err(ConfigError {
                field: field.to_string(),
                message,
            })
        };
        if self.version != CONFIG_VERSION {
            return fail(
                "version",
                format!(
                    "is {}, but this build reads version {CONFIG_VERSION}",
                    self.version
                ),
            );
        }
        check_bounds(
            "store.shard_count",
            self.store.shard_count,
            1..=MAX_SHARD_COUNT,
        )?;
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return fail(
                "server.listen",
                format!(
                    "{:?} is not an address and port like 127.0.0.1:8080",
                    self.server.listen
                ),
            );
        }
        if let Some(name) = &self.server.search_consumer {
            if self.consumer(name).is_none() {
                return fail(
                    "server.search_consumer",
                    format!("names no consumer of this config: {name:?}"),
                );
            }
        }
        for (field, value) in [
            (
                "server.consistency_wait_ms",
                self.server.consistency_wait_ms,
            ),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            ("server.shutdown_grace_ms", self.server.shutdown_grace_ms),
        ] {
            check_bounds(field, value, 1..=MAX_SERVER_MS)?;
        }
        check_bounds(
            "store.retention_hours",
            self.store.retention_hours,
            1..=MAX_RETENTION_HOURS,
        )?;
        check_bounds(
            "store.external_poll_interval_ms",
            self.store.external_poll_interval_ms,
            1..=MAX_EXTERNAL_POLL_INTERVAL_MS,
        )?;
        for (name, sink) in &self.sinks {
            let valid_name = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid_name {
                return fail(
                    &format!("sinks.{name}"),
                    "is not a valid sink name: use a-z, 0-9, '-' and '_'".into(),
                );
            }
            match sink {
                SinkConfig::EmbeddedIndex {
                    writer_memory_mb,
                    tombstone_retention_hours,
                    refresh_interval_ms,
                    durability_interval_ms,
                    dictionary,
                } => {
                    if dictionary
                        .as_ref()
                        .is_some_and(|d| d.as_os_str().is_empty())
                    {
                        return fail(
                            &format!("sinks.{name}.dictionary"),
                            "is empty: give the directory of the IPADIC sources (/usr/share/mecab/dic/ipadic after `apt-get install mecab-ipadic`), or leave it out".into(),
                        );
                    }
                    check_bounds(
                        format!("sinks.{name}.durability_interval_ms"),
                        *durability_interval_ms,
                        1..=MAX_DURABILITY_INTERVAL_MS,
                    )?;
                    check_bounds(
                        format!("sinks.{name}.refresh_interval_ms"),
                        *refresh_interval_ms,
                        0..=MAX_REFRESH_INTERVAL_MS,
                    )?;
                    check_bounds(
                        format!("sinks.{name}.writer_memory_mb"),
                        *writer_memory_mb,
                        MIN_WRITER_MEMORY_MB..=MAX_WRITER_MEMORY_MB,
                    )?;
                    check_bounds(
                        format!("sinks.{name}.tombstone_retention_hours"),
                        *tombstone_retention_hours,
                        1..=MAX_TOMBSTONE_RETENTION_HOURS,
                    )?;
                    if *tombstone_retention_hours < self.store.retention_hours {
                        return fail(
                            &format!("sinks.{name}.tombstone_retention_hours"),
                            format!(
                                "must be at least store.retention_hours ({}): a tombstone dropped earlier lets a replayed change resurrect a deleted item",
                                self.store.retention_hours
                            ),
                        );
                    }
                }
                SinkConfig::Opensearch(config) => config.validate(&format!("sinks.{name}"))?,
                SinkConfig::Kinesis(config) => config.validate(&format!("sinks.{name}"))?,
            }
        }
        self.validate_adapters()?;
        if let Some(leases) = &self.leases {
            leases.validate()?;
            if let Some(name) = self
                .sinks
                .iter()
                .find(|(_, sink)| !sink.is_shared())
                .map(|(name, _)| name)
            {
                return fail(
                    "leases",
                    format!(
                        "needs sinks every worker reaches, but sinks.{name} is an embedded index in one process's data_dir; use sinks of type = \"opensearch\", or remove [leases]"
                    ),
                );
            }
        }
        if self.consumers.is_empty() {
            return fail("consumers", "must list at least one consumer".into());
        }
        let mut names = std::collections::HashSet::new();
        let mut sinks_used = std::collections::HashMap::new();
        for (i, consumer) in self.consumers.iter().enumerate() {
            let prefix = format!("consumers[{i}]");
            consumer.validate(&prefix)?;
            if !names.insert(consumer.name.as_str()) {
                return fail(
                    &format!("{prefix}.name"),
                    format!(
                        "{:?} is used twice; consumer names must be unique",
                        consumer.name
                    ),
                );
            }
            if !self.sinks.contains_key(&consumer.sink) {
                return fail(
                    &format!("{prefix}.sink"),
                    format!(
                        "names sink {:?}, which is not defined; defined sinks: {}",
                        consumer.sink,
                        self.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            if let Some(other) = sinks_used.insert(consumer.sink.as_str(), consumer.name.as_str()) {
                return fail(
                    &format!("{prefix}.sink"),
                    format!(
                        "{:?} is already the sink of consumer {other:?}; give each consumer its own sink",
                        consumer.sink
                    ),
                );
            }
        }
        Ok(())
    }

    /// The primary, the source, the tenant registry and `[aws]` fit together.
    fn validate_adapters(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| {
            Err(ConfigError {
                field: field.to_string(),
                message,
            })
        };
        match &self.primary {
            PrimaryConfig::Embedded => {}
            PrimaryConfig::Dynamodb(table) => table.validate("primary")?,
        }
        match &self.tenants {
            TenantsConfig::Embedded {} => {}
            TenantsConfig::Dynamodb(table) => table.validate("tenants")?,
        }
        match (&self.source, &self.primary) {
            (SourceConfig::Embedded, PrimaryConfig::Embedded) => {}
            (SourceConfig::Embedded, _) => {
                return fail(
                    "source.type",
                    "is \"embedded\" (the default), which reads the embedded store's stream, but the primary is not the embedded store; use type = \"dynamodb_streams\" or \"kinesis\"".into(),
                )
            }
            (SourceConfig::DynamodbStreams(streams), PrimaryConfig::Dynamodb(table)) => {
                streams.validate("source")?;
                if streams.table_name != table.table_name {
                    return fail(
                        "source.table_name",
                        format!(
                            "is {:?}, but the primary's table is {:?}: the stream read must be the primary's",
                            streams.table_name, table.table_name
                        ),
                    );
                }
            }
            (SourceConfig::DynamodbStreams(_), _) => {
                return fail(
                    "source.type",
                    "\"dynamodb_streams\" reads the stream of a DynamoDB primary; set [primary] type = \"dynamodb\"".into(),
                )
            }
            (SourceConfig::Kinesis(kinesis), _) => kinesis.validate("source")?,
        }
        let uses_aws = !matches!(self.primary, PrimaryConfig::Embedded)
            || !matches!(self.source, SourceConfig::Embedded)
            || self
                .leases
                .as_ref()
                .is_some_and(|l| l.kind == LeaseBackend::Dynamodb)
            || self.sinks.values().any(SinkConfig::uses_aws)
            || matches!(self.tenants, TenantsConfig::Dynamodb(_));
        match (&self.aws, uses_aws) {
            (Some(aws), _) => aws.validate("aws")?,
            (None, true) => {
                return fail(
                    "aws",
                    "is required by the AWS adapters this config uses: add [aws] with at least region (and endpoint_url for a local peer)".into(),
                )
            }
            (None, false) => {}
        }
        Ok(())
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.store.retention_hours * 3600)
    }

    /// How long after a commit the source shows it: none for the embedded store, whose
    /// writes append their change record in the same transaction; about a second for
    /// DynamoDB Streams and Kinesis (drift detection waits this long before reading the
    /// stream's newest positions).
    pub fn source_propagation_delay(&self) -> Duration {
        match self.source {
            SourceConfig::Embedded => Duration::ZERO,
            SourceConfig::DynamodbStreams(_) | SourceConfig::Kinesis(_) => {
                Duration::from_millis(1_500)
            }
        }
    }

    pub fn primary_path(&self) -> PathBuf {
        self.data_dir.join("primary.db")
    }

    /// The embedded tenant registry (`[tenants] type = "embedded"`, the default).
    pub fn tenants_path(&self) -> PathBuf {
        self.data_dir.join("tenants.db")
    }

    pub fn state_path(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }

    pub fn index_dir(&self, sink: &str) -> PathBuf {
        self.data_dir.join("index").join(sink)
    }

    /// Where compiled Japanese dictionaries are kept (`sinks.NAME.dictionary`).
    pub fn dictionaries_dir(&self) -> PathBuf {
        self.data_dir.join("dictionaries")
    }

    pub fn consumer(&self, name: &str) -> Option<&ConsumerConfig> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// Adds a consumer with default knobs writing to `sink` (an embedded index with
    /// default settings, unless a sink of that name is configured), if none by that name
    /// exists. Returns whether it was added.
    pub fn add_consumer(&mut self, name: &str, sink: &str) -> bool {
        if self.consumer(name).is_some() {
            return false;
        }
        self.sinks
            .entry(sink.to_string())
            .or_insert_with(|| SinkConfig::EmbeddedIndex {
                writer_memory_mb: default_writer_memory_mb(),
                tombstone_retention_hours: default_tombstone_retention_hours(),
                refresh_interval_ms: default_refresh_interval_ms(),
                durability_interval_ms: default_durability_interval_ms(),
                dictionary: None,
            });
        self.consumers.push(ConsumerConfig {
            sink: sink.to_string(),
            ..ConsumerConfig::named(name)
        });
        true
    }
}

/// The line (1-based) where `field` (a path as validation names it, like
/// `consumers[0].batch_size` or `sinks.activities.writer_memory_mb`) is written in
/// `text`, or else the line of its nearest enclosing table; `None` when neither is in
/// the file (a default). A line scan of the shapes a config file has (`[table]`,
/// `[[array]]`, `key = value`, dotted keys) rather than a second parser.
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let unquote = |part: &str| part.trim().trim_matches('"').trim_matches('\'').to_string();
    let mut lines = std::collections::HashMap::<String, usize>::new();
    let mut arrays = std::collections::HashMap::<String, usize>::new();
    let mut table: Vec<String> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with("[[") {
            let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
            let mut parts: Vec<String> = name.split('.').map(unquote).collect();
            let base = parts.join(".");
            let index = arrays.entry(base).or_insert(0);
            if let Some(last) = parts.last_mut() {
                last.push_str(&format!("[{index}]"));
            }
            *index += 1;
            table = parts;
        } else if line.starts_with('[') {
            let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
            table = name.split('.').map(unquote).collect();
        } else if let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            let mut path = table.clone();
            path.extend(key.split('.').map(unquote));
            lines.entry(path.join(".")).or_insert(n + 1);
            continue;
        } else {
            continue;
        }
        lines.entry(table.join(".")).or_insert(n + 1);
    }
    let mut path = field;
    loop {
        if let Some(line) = lines.get(path) {
            return Some(*line);
        }
        path = &path[..path.rfind('.')?];
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` with environment variables, line by line
/// (comment lines are left alone), so that errors can name the line. The substitution
/// is the migration spec's ([`tsunagu_migrate::source::env::resolve`]): one syntax for
/// every file tsunagu reads.
fn interpolate_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let resolved = tsunagu_migrate::source::env::resolve(line, env)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        out.push_str(&resolved);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_are_interpolated_and_a_missing_one_names_its_line() {
        let env = |name: &str| (name == "DIR").then(|| "/srv/tsunagu".to_string());
        let c = Config::parse_with_env(
            "version = 1\n# ${NOT_SET} in a comment is fine\ndata_dir = \"${DIR}/data\"\n",
            "t",
            &env,
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/tsunagu/data"));
        let c = Config::parse_with_env(
            "version = 1\ndata_dir = \"${NOPE:-./fallback}\"\n",
            "t",
            &env,
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./fallback"));
        let e = Config::parse_with_env("version = 1\n\ndata_dir = \"${NOPE}\"\n", "t", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("NOPE is not set"), "{e}");
    }

    #[test]
    fn no_file_means_the_embedded_defaults() {
        let c = Config::parse("version = 1\n", "test").unwrap();
        assert_eq!(c.consumers.len(), 1);
        assert_eq!(c.consumers[0].name, "search");
        assert!(c.sinks.contains_key("activities"));
        assert_eq!(c.store.shard_count, 4);
    }

    #[test]
    fn a_full_file_parses() {
        let text = r#"
version = 1
data_dir = "/var/lib/tsunagu"
[store]
shard_count = 8
retention_hours = 48
[sinks.activities]
type = "embedded_index"
[sinks.audit]
type = "embedded_index"
writer_memory_mb = 32
tombstone_retention_hours = 100
[[consumers]]
name = "search"
sink = "activities"
batch_size = 500
batching_window_ms = 5
parallelization_factor = 16
ordering = "partition_key"
max_retry_attempts = 4
max_record_age_seconds = 3600
[[consumers]]
name = "audit"
sink = "audit"
batch_size = 1
"#;
        let c = Config::parse(text, "test").unwrap();
        assert_eq!(c.consumers[0].parallelization_factor, 16);
        assert_eq!(c.consumers[1].batch_size, 1);
    }

    fn error_of(text: &str) -> String {
        format!("{}", Config::parse(text, "tsunagu.toml").unwrap_err())
    }

    #[test]
    fn errors_name_the_field_and_the_line() {
        let e = error_of("version = 1\n[[consumers]]\nname = \"search\"\nbatch_size = 0\n");
        assert!(
            e.contains("consumers[0].batch_size")
                && e.contains("below the minimum of 1")
                && e.contains("(line 4)"),
            "{e}"
        );
        let e = error_of("version = 1\n[store]\nshard_cnt = 3\n");
        assert!(e.contains("shard_cnt") && e.contains("line 3"), "{e}");
        let e = error_of("version = 2\n");
        assert!(e.contains("`version`"), "{e}");
        let e = error_of("version = 1\n[sinks.x]\ntype = \"solr\"\n");
        assert!(e.contains("solr") && e.contains("embedded_index"), "{e}");
        let e = error_of("version = 1\n[[consumers]]\nname = \"a\"\nsink = \"nope\"\n");
        assert!(
            e.contains("consumers[0].sink") && e.contains("activities"),
            "{e}"
        );
        let e = error_of("version = 1\n[[consumers]]\nname = \"a\"\n[[consumers]]\nname = \"b\"\n");
        assert!(
            e.contains("consumers[1].sink") && e.contains("own sink"),
            "{e}"
        );
        let e = error_of("batch_size = 3\n");
        assert!(e.contains("version"), "{e}");
    }

    /// Issue 18: `parallelization_factor = 100000` was accepted and aborted on memory.
    #[test]
    fn a_bound_error_names_the_field_the_value_and_the_line() {
        let text = r#"version = 1
data_dir = "/var/lib/tsunagu"

[store]
shard_count = 8

[sinks.activities]
type = "embedded_index"

[sinks.audit]
type = "embedded_index"
writer_memory_mb = 32

[[consumers]]
name = "search"
sink = "activities"

[[consumers]]
name = "audit"
sink = "audit"
# lanes per shard
parallelization_factor = 100000
"#;
        assert_eq!(
            error_of(text),
            "config file tsunagu.toml: invalid config: `consumers[1].parallelization_factor` = 100000 is above the maximum of 100 (line 22)"
        );
        let e = error_of(&text.replace("writer_memory_mb = 32", "writer_memory_mb = 4097"));
        assert!(
            e.contains(
                "`sinks.audit.writer_memory_mb` = 4097 is above the maximum of 4096 (line 12)"
            ),
            "{e}"
        );
        // A field the file leaves out names its table's line.
        let e = error_of(
            "version = 1\n[aws]\nregion = \"us-east-1\"\n\n[leases]\ntype = \"dynamodb\"\n",
        );
        assert!(
            e.contains("leases.table_name") && e.contains("(line 5)"),
            "{e}"
        );
    }

    #[test]
    fn every_bound_holds_at_its_edge() {
        let ok = |text: &str| {
            Config::parse(text, "t").unwrap_or_else(|e| panic!("{text}: {e}"));
        };
        let cases: &[(&str, &str, u64, u64)] = &[
            ("[store]", "shard_count", 1, MAX_SHARD_COUNT as u64),
            (
                "[store]",
                "external_poll_interval_ms",
                1,
                MAX_EXTERNAL_POLL_INTERVAL_MS,
            ),
            ("[server]", "consistency_wait_ms", 1, MAX_SERVER_MS),
            ("[server]", "request_timeout_ms", 1, MAX_SERVER_MS),
            ("[server]", "shutdown_grace_ms", 1, MAX_SERVER_MS),
            (
                "[sinks.activities]\ntype = \"opensearch\"\nurl = \"http://127.0.0.1:9200\"\n[leases]\ntype = \"embedded\"",
                "lease_duration_ms",
                MIN_LEASE_DURATION_MS,
                MAX_LEASE_DURATION_MS,
            ),
            (
                "[sinks.activities]\ntype = \"embedded_index\"",
                "writer_memory_mb",
                MIN_WRITER_MEMORY_MB,
                MAX_WRITER_MEMORY_MB,
            ),
            (
                "[sinks.activities]\ntype = \"embedded_index\"",
                "refresh_interval_ms",
                0,
                MAX_REFRESH_INTERVAL_MS,
            ),
            (
                "[sinks.activities]\ntype = \"embedded_index\"",
                "durability_interval_ms",
                1,
                MAX_DURABILITY_INTERVAL_MS,
            ),
            (
                "[sinks.activities]\ntype = \"embedded_index\"",
                "tombstone_retention_hours",
                24,
                MAX_TOMBSTONE_RETENTION_HOURS,
            ),
            (
                "[[consumers]]\nname = \"search\"",
                "parallelization_factor",
                1,
                100,
            ),
        ];
        for (table, key, min, max) in cases {
            let with = |value: u64| format!("version = 1\n{table}\n{key} = {value}\n");
            ok(&with(*min));
            ok(&with(*max));
            let header = table.lines().rfind(|l| l.starts_with('[')).unwrap();
            let name = header
                .trim_matches(['[', ']'])
                .replace("consumers", "consumers[0]");
            let e = error_of(&with(max + 1));
            assert!(
                e.contains(&format!(
                    "`{name}.{key}` = {} is above the maximum of {max}",
                    max + 1
                )),
                "{e}"
            );
            if *min > 0 {
                let e = error_of(&with(min - 1));
                assert!(e.contains(&format!("`{name}.{key}`")), "{e}");
            }
        }
        // The retention's own maximum, with tombstones kept as long.
        let text = format!(
            "version = 1\n[store]\nretention_hours = {MAX_RETENTION_HOURS}\n[sinks.activities]\ntype = \"embedded_index\"\ntombstone_retention_hours = {MAX_TOMBSTONE_RETENTION_HOURS}\n"
        );
        ok(&text);
        let e = error_of(&text.replace("= 8760\n[sinks", "= 8761\n[sinks"));
        assert!(e.contains("`store.retention_hours` = 8761"), "{e}");
    }

    /// The examples of docs/configuration.md parse and validate as written, and the
    /// reference names every key the defaults have.
    #[test]
    fn the_configuration_reference_examples_are_valid() {
        let doc = include_str!("../../../docs/configuration.md");
        let env = |name: &str| match name {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".to_string()),
            "OPENSEARCH_URL" => Some("http://127.0.0.1:9200".to_string()),
            _ => None,
        };
        let examples: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .map(|block| block.split("```").next().unwrap_or(""))
            .collect();
        // The two complete examples and the Japanese dictionary's.
        assert_eq!(examples.len(), 3, "three examples");
        for example in examples {
            Config::parse_with_env(example, "docs/configuration.md", &env)
                .unwrap_or_else(|e| panic!("{e}\n{example}"));
        }
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/aws-local.toml"
        ))
        .unwrap();
        Config::parse_with_env(&example, "examples/aws-local.toml", &env).unwrap();
    }

    #[test]
    fn the_tenant_registry_is_embedded_unless_a_dynamodb_table_is_named() {
        let c = Config::parse("version = 1\n", "test").unwrap();
        assert_eq!(c.tenants, TenantsConfig::Embedded {});
        let c = Config::parse("version = 1\n[tenants]\ntype = \"embedded\"\n", "test").unwrap();
        assert_eq!(c.tenants, TenantsConfig::Embedded {});
        let env = |name: &str| (name == "TABLE").then(|| "acme-tenants".to_string());
        let text = "version = 1\n[aws]\nregion = \"ap-northeast-1\"\n[tenants]\ntype = \"dynamodb\"\ntable_name = \"${TABLE:-tsunagu-tenants}\"\ncreate_if_missing = true\n";
        let c = Config::parse_with_env(text, "test", &env).unwrap();
        let mut expected = tsunagu_aws::TenantTableConfig::named("acme-tenants");
        expected.create_if_missing = true;
        assert_eq!(c.tenants, TenantsConfig::Dynamodb(expected));
    }

    #[test]
    fn tenant_registry_errors_name_the_field() {
        let e = error_of("version = 1\n[tenants]\ntype = \"dynamodb\"\ntable_name = \"tenants\"\n");
        assert!(e.contains("`aws`") && e.contains("region"), "{e}");
        let e = error_of(
            "version = 1\n[aws]\nregion = \"us-east-1\"\n[tenants]\ntype = \"dynamodb\"\ntable_name = \"t\"\n",
        );
        assert!(e.contains("tenants.table_name"), "{e}");
        let e = error_of("version = 1\n[tenants]\ntype = \"dynamodb\"\n");
        assert!(e.contains("table_name"), "{e}");
        let e = error_of("version = 1\n[tenants]\ntype = \"embedded\"\ntable_name = \"x\"\n");
        assert!(e.contains("table_name"), "{e}");
        let e = error_of("version = 1\n[tenants]\ntype = \"redis\"\n");
        assert!(e.contains("redis") && e.contains("dynamodb"), "{e}");
    }
}

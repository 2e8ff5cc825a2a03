//! `tsunagu check`'s connectivity checks of every adapter a config names (creating
//! nothing). Drift between the primary and a sink is [`tsunagu_engine::drift`]'s
//! (`tsunagu reconcile`).

use crate::config::{Config, PrimaryConfig, SinkConfig, SourceConfig, TenantsConfig};
use tsunagu_aws::{DynamoLeaseStore, DynamoStore, DynamoStreamsSource, KinesisSource};
use tsunagu_opensearch::OpenSearchSink;

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
            SinkConfig::EmbeddedIndex { dictionary, .. } => {
                let dir = config.index_dir(name);
                let index = check_dir_writable(&dir)
                    .map(|how| format!("embedded index {}: {how}", dir.display()));
                match (index, dictionary) {
                    (Ok(index), Some(source)) => check_dictionary(config, name, source)
                        .map(|how| format!("{index}; dictionary: {how}")),
                    (index, _) => index,
                }
            }
            SinkConfig::Opensearch(os) => match (check_opensearch(os).await, &os.dictionary) {
                (Ok(cluster), Some(source)) => check_dictionary(config, name, source)
                    .map(|how| format!("{cluster}; dictionary: {how}")),
                (cluster, _) => cluster,
            },
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
        if let Some(table) = leases.state_table_config() {
            lines.push(CheckLine {
                what: "leases.state_table_name".into(),
                outcome: check_state_table(aws, &table).await,
            });
        }
    }
    lines.push(CheckLine {
        what: "tenants".into(),
        outcome: match &config.tenants {
            TenantsConfig::Embedded {} => check_dir_writable(&config.data_dir).map(|how| {
                format!(
                    "embedded tenant registry {}: {how}",
                    config.tenants_path().display()
                )
            }),
            TenantsConfig::Dynamodb(table) => check_tenant_table(aws, table).await,
        },
    });
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

async fn check_state_table(
    aws: Option<&tsunagu_aws::AwsConfig>,
    table: &tsunagu_aws::StateTableConfig,
) -> Result<String, String> {
    let probe = tsunagu_aws::StateTableConfig {
        create_if_missing: false,
        ..table.clone()
    };
    match tsunagu_aws::DynamoStateStore::connect(need_aws(aws)?, &probe).await {
        Ok(store) => store.check().await.map_err(|e| e.to_string()),
        Err(e) => created_on_start(e, table.create_if_missing),
    }
}

async fn check_tenant_table(
    aws: Option<&tsunagu_aws::AwsConfig>,
    table: &tsunagu_aws::TenantTableConfig,
) -> Result<String, String> {
    let probe = tsunagu_aws::TenantTableConfig {
        create_if_missing: false,
        ..table.clone()
    };
    match tsunagu_aws::DynamoTenantDirectory::connect(need_aws(aws)?, &probe).await {
        Ok(registry) => registry.check().await.map_err(|e| e.to_string()),
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

/// The IPADIC sources of sink `name`, read but not compiled.
fn check_dictionary(
    config: &Config,
    name: &str,
    source: &std::path::Path,
) -> Result<String, String> {
    tsunagu_embedded_index::Dictionary::inspect(source, &config.dictionaries_dir())
        .map_err(|e| format!("sinks.{name}.dictionary: {e}"))
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

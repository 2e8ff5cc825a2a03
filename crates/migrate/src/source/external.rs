//! The non-graph sources of a run: the spec's `[sources.*]` connections resolved from the
//! environment ([`resolve`]), described for the state file and the report without
//! secrets ([`Resolved::describe`]), and read into partition files ([`fetch`]), every
//! table's source at once.

use super::apoc::Partitions;
use super::dynamodb::DynamoSource;
use super::env::resolve_env;
use super::opensearch::OpenSearchSource;
use super::PartitionKey;
use crate::error::{Error, Result};
use crate::spec::{
    Connection, DynamoConnection, EmbeddedConnection, Model, OpenSearchConnection, SourceKind,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A connection with every `${...}` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Dynamodb(DynamoConnection),
    Opensearch(OpenSearchConnection),
    /// The store's data directory, canonical.
    Embedded(PathBuf),
}

impl Resolved {
    /// What the connection points at, without secrets: recorded in the state file (a
    /// resumed run refuses a changed source) and in the report.
    pub fn describe(&self) -> String {
        match self {
            Resolved::Dynamodb(d) => format!(
                "dynamodb region={} endpoint={} profile={} segments={}",
                d.region.as_deref().unwrap_or("(default chain)"),
                d.endpoint_url.as_deref().unwrap_or("(aws)"),
                d.profile.as_deref().unwrap_or("(default)"),
                d.segments
            ),
            Resolved::Opensearch(o) => format!(
                "opensearch {}{}",
                tsunagu_opensearch::redact_url(&o.url),
                o.username
                    .as_deref()
                    .map(|u| format!(" user={u}"))
                    .unwrap_or_default()
            ),
            Resolved::Embedded(dir) => format!("embedded {}", dir.display()),
        }
    }
}

fn field(name: &str, what: &str, value: &str) -> Result<String> {
    resolve_env(value).map_err(|e| Error::Other(format!("sources.{name}.{what}: {e}")))
}

fn optional(name: &str, what: &str, value: &Option<String>) -> Result<Option<String>> {
    match value {
        Some(v) => field(name, what, v).map(|v| Some(v).filter(|v| !v.is_empty())),
        None => Ok(None),
    }
}

/// Resolves every connection a table reads from (others are left alone, so an unused
/// connection needs no environment). An embedded store's directory must exist.
pub fn resolve(model: &Model) -> Result<BTreeMap<String, Resolved>> {
    let used: HashSet<&str> = model
        .tables
        .iter()
        .filter_map(|t| t.source.connection())
        .collect();
    let mut out = BTreeMap::new();
    for (name, connection) in model
        .sources
        .iter()
        .filter(|(n, _)| used.contains(n.as_str()))
    {
        let resolved = match connection {
            Connection::Dynamodb(d) => Resolved::Dynamodb(DynamoConnection {
                region: optional(name, "region", &d.region)?,
                endpoint_url: optional(name, "endpoint_url", &d.endpoint_url)?,
                profile: optional(name, "profile", &d.profile)?,
                segments: d.segments,
            }),
            Connection::Opensearch(o) => Resolved::Opensearch(OpenSearchConnection {
                url: field(name, "url", &o.url)?,
                username: optional(name, "username", &o.username)?,
                password_env: o.password_env.clone(),
                api_key_env: o.api_key_env.clone(),
                ca_cert: optional(name, "ca_cert", &o.ca_cert)?,
                danger_insecure_skip_verify: o.danger_insecure_skip_verify,
                page_size: o.page_size,
                request_timeout_ms: o.request_timeout_ms,
            }),
            Connection::Embedded(EmbeddedConnection { data_dir }) => {
                let dir = PathBuf::from(field(name, "data_dir", data_dir)?);
                let dir = std::fs::canonicalize(&dir).map_err(|err| {
                    Error::Other(format!(
                        "sources.{name}.data_dir: {}: {err}; it must be the directory of an existing store",
                        dir.display()
                    ))
                })?;
                Resolved::Embedded(dir)
            }
        };
        out.insert(name.clone(), resolved);
    }
    Ok(out)
}

/// Reads one non-graph partition into `path`.
async fn fetch_one(
    key: &PartitionKey,
    sources: &BTreeMap<String, Resolved>,
    path: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<u64> {
    let connection = |from: &str| {
        sources
            .get(from)
            .ok_or_else(|| Error::Other(format!("internal: connection `{from}` was not resolved")))
    };
    match key {
        PartitionKey::Source(SourceKind::Dynamodb { from, table }) => match connection(from)? {
            Resolved::Dynamodb(settings) => {
                DynamoSource::connect(settings)
                    .await?
                    .fetch(table, path, progress)
                    .await
            }
            other => Err(mismatch(from, other)),
        },
        PartitionKey::Source(SourceKind::Opensearch { from, index, query }) => {
            match connection(from)? {
                Resolved::Opensearch(settings) => {
                    let outcome = OpenSearchSource::connect(settings, index)?
                        .fetch(index, query.as_deref(), path, progress)
                        .await?;
                    tracing::info!(
                        index = %index,
                        documents = outcome.written,
                        tombstones_skipped = outcome.tombstones,
                        point_in_time = outcome.point_in_time,
                        "index read"
                    );
                    Ok(outcome.written)
                }
                other => Err(mismatch(from, other)),
            }
        }
        PartitionKey::Source(SourceKind::Embedded { from, item_type }) => match connection(from)? {
            Resolved::Embedded(dir) => {
                let (dir, item_type, path) = (dir.clone(), item_type.clone(), path.to_path_buf());
                let progress = progress.clone();
                tokio::task::spawn_blocking(move || {
                    super::embedded::fetch(&dir, &item_type, &path, &progress)
                })
                .await
                .map_err(|e| Error::Other(format!("embedded store task: {e}")))?
            }
            other => Err(mismatch(from, other)),
        },
        graph => Err(Error::Other(format!(
            "internal: {} is read from the graph",
            graph.name()
        ))),
    }
}

fn mismatch(from: &str, resolved: &Resolved) -> Error {
    Error::Other(format!(
        "internal: connection `{from}` is {}",
        resolved.describe()
    ))
}

/// Reads every non-graph key's partition under `out` (file `pNNN.jsonl`, NNN the index
/// of the first table reading it), all sources at once.
pub async fn fetch(
    keys: &[PartitionKey],
    sources: &BTreeMap<String, Resolved>,
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<Partitions> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut seen = HashSet::new();
    let jobs: Vec<(String, PathBuf, &PartitionKey)> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| !k.reads_graph() && seen.insert((*k).clone()))
        .map(|(i, k)| (k.name(), out.join(format!("p{i:03}.jsonl")), k))
        .collect();
    let counts = futures::future::try_join_all(
        jobs.iter()
            .map(|(_, path, key)| fetch_one(key, sources, path, progress)),
    )
    .await?;
    let mut result = Partitions::default();
    for ((name, path, _), count) in jobs.into_iter().zip(counts) {
        result.files.insert(name.clone(), vec![path]);
        result.records.insert(name, count);
    }
    Ok(result)
}

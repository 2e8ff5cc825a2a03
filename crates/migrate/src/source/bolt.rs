//! Neo4j over Bolt (the `neo4j` driver, Bolt 4.4 and 5.x, routing off), for sources given
//! as `bolt://[USER:PASSWORD@]HOST:PORT[/DATABASE]`.
//!
//! Each node label and relationship type the spec uses is read with keyset paging on the
//! internal id (`WHERE id(n) > $after ... ORDER BY id(n) LIMIT $page`, never `SKIP`, so
//! every page costs the same however deep it is), split into `partitions` disjoint id
//! classes (`id(n) % $parts = $part`) read in parallel. Records are written in the APOC
//! JSON-lines format to the same partition files an APOC export is split into, so the
//! rest of the run does not depend on the source kind; each class goes to its own file
//! and the files are joined in class order, which keeps the order deterministic.
//!
//! A `cypher` table's query is run as written: its `id` column becomes the record id and
//! the other columns its properties; with `$after` and `$limit` it is paged by keyset
//! (`$after` = the last id), otherwise streamed. Queries are run in read mode and only
//! read (a query that writes would be the spec's mistake; the server refuses writes in a
//! read transaction on a cluster, a single server does not).

use super::apoc::Partitions;
use super::{join_parts, PartitionKey};
use crate::error::{Error, Result};
use crate::spec::SourceKind;
use neo4j::address::Address;
use neo4j::driver::auth::AuthToken;
use neo4j::driver::{ConnectionConfig, Driver, DriverConfig, RoutingControl};
use neo4j::session::SessionConfig;
use neo4j::{ValueReceive, ValueSend};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct BoltOptions {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    /// Records per page.
    pub page_size: i64,
    /// Id classes read in parallel per label / type.
    pub partitions: u32,
}

impl BoltOptions {
    /// Parses `bolt://[USER:PASSWORD@]HOST:PORT[/DATABASE]` (also `neo4j://`).
    pub fn parse(source: &str) -> Result<BoltOptions> {
        let url = url::Url::parse(source).map_err(|e| {
            Error::Other(format!(
                "source `{source}`: {e}; expected bolt://[USER:PASSWORD@]HOST:PORT[/DATABASE]"
            ))
        })?;
        if !matches!(url.scheme(), "bolt" | "neo4j") {
            return Err(Error::Other(format!(
                "source `{source}`: not a bolt:// url"
            )));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Other(format!("source `{source}` names no host")))?;
        let database = url.path().trim_start_matches('/');
        Ok(BoltOptions {
            host: host.to_string(),
            port: url.port().unwrap_or(7687),
            user: (!url.username().is_empty()).then(|| url.username().to_string()),
            password: url.password().map(|p| p.to_string()),
            database: (!database.is_empty()).then(|| database.to_string()),
            page_size: 10_000,
            partitions: 2,
        })
    }

    /// A driver for these options (routing off).
    pub fn driver(&self) -> Driver {
        let auth = match (&self.user, &self.password) {
            (Some(u), p) => AuthToken::new_basic_auth(u.clone(), p.clone().unwrap_or_default()),
            (None, _) => AuthToken::new_none_auth(),
        };
        Driver::new(
            ConnectionConfig::new(Address::from((self.host.as_str(), self.port)))
                .with_routing(false),
            DriverConfig::new().with_auth(Arc::new(auth)),
        )
    }
}

/// Bolt values as JSON (temporal and spatial values as their text form).
fn to_json(v: ValueReceive) -> Value {
    match v {
        ValueReceive::Null => Value::Null,
        ValueReceive::Boolean(b) => json!(b),
        ValueReceive::Integer(i) => json!(i),
        ValueReceive::Float(f) => json!(f),
        ValueReceive::String(s) => json!(s),
        ValueReceive::List(l) => Value::Array(l.into_iter().map(to_json).collect()),
        ValueReceive::Map(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
        ValueReceive::Node(n) => to_json(ValueReceive::Map(n.properties)),
        ValueReceive::Relationship(r) => to_json(ValueReceive::Map(r.properties)),
        ValueReceive::Bytes(b) => json!(b),
        other => json!(format!("{other:?}")),
    }
}

fn props(m: HashMap<String, ValueReceive>) -> Map<String, Value> {
    m.into_iter().map(|(k, v)| (k, to_json(v))).collect()
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn bolt_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("bolt source, {what}: {e}"))
}

/// Reads one id class of one label / type into `out`; returns the records written.
fn read_class(
    driver: &Driver,
    opts: &BoltOptions,
    key: &PartitionKey,
    part: u32,
    out: &Path,
) -> Result<u64> {
    let query = match key {
        PartitionKey::Label(l) => format!(
            "MATCH (n:{}) WHERE id(n) > $after AND id(n) % $parts = $part RETURN id(n) AS id, n ORDER BY id(n) LIMIT $page",
            quote(l)
        ),
        PartitionKey::RelType(t) => format!(
            "MATCH (a)-[r:{}]->(b) WHERE id(r) > $after AND id(r) % $parts = $part RETURN id(r) AS id, r, id(a) AS sid, labels(a) AS sl, id(b) AS eid, labels(b) AS el ORDER BY id(r) LIMIT $page",
            quote(t)
        ),
        other => {
            return Err(Error::Other(format!(
                "internal: {} is not read by id classes",
                other.name()
            )))
        }
    };
    let f = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut after: i64 = -1;
    let mut written = 0u64;
    loop {
        let params: HashMap<String, ValueSend> = [
            ("after".to_string(), ValueSend::Integer(after)),
            (
                "parts".to_string(),
                ValueSend::Integer(i64::from(opts.partitions)),
            ),
            ("part".to_string(), ValueSend::Integer(i64::from(part))),
            ("page".to_string(), ValueSend::Integer(opts.page_size)),
        ]
        .into();
        let mut q = driver
            .execute_query(query.as_str())
            .with_parameters(&params)
            .with_routing_control(RoutingControl::Read);
        if let Some(db) = &opts.database {
            q = q.with_database(Arc::new(db.clone()));
        }
        let result = q
            .run()
            .map_err(|e| bolt_error(&format!("reading {}", key.name()), e))?;
        let n = result.records.len();
        for mut rec in result.records {
            let id = match rec.take_value("id") {
                Some(ValueReceive::Integer(i)) => i,
                other => return Err(bolt_error("unexpected id", format!("{other:?}"))),
            };
            after = id;
            let line = match key {
                PartitionKey::RelType(t) => {
                    let properties = match rec.take_value("r") {
                        Some(ValueReceive::Relationship(r)) => props(r.properties),
                        other => {
                            return Err(bolt_error("expected a relationship", format!("{other:?}")))
                        }
                    };
                    let labels = |v: Option<ValueReceive>| match v {
                        Some(ValueReceive::List(l)) => l
                            .into_iter()
                            .filter_map(|x| match x {
                                ValueReceive::String(s) => Some(s),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                        _ => Vec::new(),
                    };
                    let int = |v: Option<ValueReceive>| match v {
                        Some(ValueReceive::Integer(i)) => Ok(i),
                        other => Err(bolt_error("unexpected endpoint id", format!("{other:?}"))),
                    };
                    let (sid, sl, eid, el) = (
                        int(rec.take_value("sid"))?,
                        labels(rec.take_value("sl")),
                        int(rec.take_value("eid"))?,
                        labels(rec.take_value("el")),
                    );
                    json!({"type": "relationship", "id": id.to_string(), "label": t, "properties": properties,
                        "start": {"id": sid.to_string(), "labels": sl}, "end": {"id": eid.to_string(), "labels": el}})
                }
                _ => match rec.take_value("n") {
                    Some(ValueReceive::Node(node)) => {
                        json!({"type": "node", "id": id.to_string(), "labels": node.labels, "properties": props(node.properties)})
                    }
                    other => return Err(bolt_error("expected a node", format!("{other:?}"))),
                },
            };
            writeln!(w, "{line}").map_err(|e| Error::io(out, e))?;
            written += 1;
        }
        if (n as i64) < opts.page_size {
            break;
        }
    }
    w.flush().map_err(|e| Error::io(out, e))?;
    Ok(written)
}

/// One row of a Cypher query as an APOC node record: the `id` column is the record id,
/// the other columns its properties. Returns the id (for keyset paging) and the line.
fn cypher_row(record: neo4j::driver::Record) -> Result<(ValueReceive, Value)> {
    let mut id = None;
    let mut properties = Map::new();
    for (key, value) in record.into_entries() {
        if key.as_str() == "id" {
            id = Some(value);
        } else {
            properties.insert(key.to_string(), to_json(value));
        }
    }
    let id = id.ok_or_else(|| {
        Error::Other(
            "cypher source: the query returns no `id` column; return the record id as `id` (for example `RETURN id(c) AS id, c.name AS name`)".into(),
        )
    })?;
    let text = match &id {
        ValueReceive::Integer(i) => i.to_string(),
        ValueReceive::String(s) => s.clone(),
        other => {
            return Err(Error::Other(format!(
                "cypher source: the `id` column must be an integer or a string, got {other:?}"
            )))
        }
    };
    Ok((id, super::node_line(&text, "cypher", properties)))
}

/// The id of the next row of a paged query, which must be above the previous one (the
/// query must filter `> $after` and `ORDER BY` its id), else rows would be read twice or
/// paging would never end.
fn next_after(previous: &ValueSend, last: ValueReceive) -> Result<ValueSend> {
    let next = match last {
        ValueReceive::Integer(i) => ValueSend::Integer(i),
        ValueReceive::String(s) => ValueSend::String(s),
        other => return Err(bolt_error("unexpected id", format!("{other:?}"))),
    };
    let increasing = match (previous, &next) {
        (ValueSend::Integer(a), ValueSend::Integer(b)) => b > a,
        (ValueSend::String(a), ValueSend::String(b)) => b > a,
        // The first page starts from -1; a string id follows it.
        (ValueSend::Integer(-1), ValueSend::String(_)) => true,
        _ => false,
    };
    if increasing {
        Ok(next)
    } else {
        Err(Error::Other(
            "cypher source: the ids of a paged query must increase; filter `WHERE id > $after` and sort `ORDER BY id` on the column returned as `id`".into(),
        ))
    }
}

/// Reads the rows of a Cypher query into `out`; returns the rows written. A query using
/// `$after` and `$limit` is run page after page with `$after` = the last id (starting at
/// -1) and `$limit` = the page size until a page comes back short; any other query runs
/// once and its result is streamed (the driver pulls 1000 records at a time).
// The transaction closure must return the driver's own `Result`, whose error is large.
#[allow(clippy::result_large_err)]
fn read_cypher(driver: &Driver, opts: &BoltOptions, query: &str, out: &Path) -> Result<u64> {
    let paged = query.contains("$after") && query.contains("$limit");
    let f = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut after = ValueSend::Integer(-1);
    let mut written = 0u64;
    loop {
        let mut params: HashMap<String, ValueSend> = HashMap::new();
        if paged {
            params.insert("after".into(), after.clone());
            params.insert("limit".into(), ValueSend::Integer(opts.page_size));
        }
        // A page is bounded by `$limit`: fetched whole. A streamed result is pulled in
        // batches of the driver's default size (1000 records), so memory stays bounded.
        let mut config = if paged {
            SessionConfig::new().with_fetch_all()
        } else {
            SessionConfig::new().with_default_fetch_size()
        };
        if let Some(db) = &opts.database {
            config = config.with_database(Arc::new(db.clone()));
        }
        let mut session = driver.session(config);
        let mut failure = None;
        let mut rows = 0i64;
        let mut last = after.clone();
        session
            .transaction()
            .with_routing_control(RoutingControl::Read)
            .run(|tx| {
                let mut stream = tx.query(query).with_parameters(&params).run()?;
                for record in stream.by_ref() {
                    let record = record?;
                    if failure.is_some() {
                        // The rest is read and dropped rather than discarded: FalkorDB
                        // does not answer a DISCARD, and a page is bounded anyway.
                        continue;
                    }
                    let written_line = cypher_row(record).and_then(|(id, line)| {
                        // Paged, every id must be above the one before it: the keyset
                        // is only complete and duplicate-free in id order.
                        if paged {
                            last = next_after(&last, id)?;
                        }
                        writeln!(w, "{line}").map_err(|e| Error::io(out, e))
                    });
                    match written_line {
                        Ok(()) => rows += 1,
                        Err(e) => failure = Some(e),
                    }
                }
                stream.consume()?;
                tx.commit()
            })
            .map_err(|e| bolt_error("running the cypher query", e))?;
        if let Some(e) = failure {
            return Err(e);
        }
        written += rows as u64;
        if !paged || rows < opts.page_size {
            break;
        }
        after = last;
    }
    w.flush().map_err(|e| Error::io(out, e))?;
    w.get_ref().sync_all().map_err(|e| Error::io(out, e))?;
    Ok(written)
}

/// Reads every needed label, relationship type and Cypher query into partition files
/// under `out` (keys of other sources are left to their readers).
pub fn fetch(
    opts: &BoltOptions,
    keys: &[PartitionKey],
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<Partitions> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let driver = opts.driver();
    let mut result = Partitions::default();
    let mut seen = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        if !key.reads_graph() || !seen.insert(key.clone()) {
            continue;
        }
        let path = out.join(format!("p{i:03}.jsonl"));
        let total = match key {
            PartitionKey::Source(SourceKind::Cypher { query, .. }) => {
                read_cypher(&driver, opts, query, &path)?
            }
            _ => read_classes(&driver, opts, key, i, out, &path)?,
        };
        progress.inc(total);
        result.files.insert(key.name(), vec![path]);
        result.records.insert(key.name(), total);
    }
    Ok(result)
}

/// Reads a label or relationship type in `partitions` id classes in parallel, then joins
/// the classes into `path`.
fn read_classes(
    driver: &Driver,
    opts: &BoltOptions,
    key: &PartitionKey,
    i: usize,
    out: &Path,
    path: &Path,
) -> Result<u64> {
    let parts = opts.partitions.max(1);
    let class_paths: Vec<PathBuf> = (0..parts)
        .map(|p| out.join(format!("p{i:03}.class{p}.jsonl")))
        .collect();
    let counts: Vec<Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = class_paths
            .iter()
            .enumerate()
            .map(|(p, class)| scope.spawn(move || read_class(driver, opts, key, p as u32, class)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Other("bolt reader panicked".into())))
            })
            .collect()
    });
    let mut total = 0;
    for count in counts {
        total += count?;
    }
    join_parts(&class_paths, path)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_urls() {
        let o = BoltOptions::parse("bolt://neo4j:secret@db.local:7688/sales").unwrap();
        assert_eq!(
            (
                o.host.as_str(),
                o.port,
                o.user.as_deref(),
                o.password.as_deref(),
                o.database.as_deref()
            ),
            (
                "db.local",
                7688,
                Some("neo4j"),
                Some("secret"),
                Some("sales")
            )
        );
        let o = BoltOptions::parse("bolt://127.0.0.1").unwrap();
        assert_eq!((o.port, o.user, o.database), (7687, None, None));
        assert!(BoltOptions::parse("http://x").is_err());
    }
}

//! Neo4j over Bolt (the `neo4j` driver, Bolt 4.4 and 5.x, routing off), for sources given
//! as `bolt://[USER:PASSWORD@]HOST:PORT[/DATABASE]`.
//!
//! Each node label and relationship type the spec uses is read with keyset paging on the
//! internal id (`WHERE id(n) > $after ... ORDER BY id(n) LIMIT $page`, never `SKIP`, so
//! every page costs the same however deep it is), split into `partitions` disjoint id
//! classes (`id(n) % $parts = $part`) read in parallel. Records are written in the APOC
//! JSON-lines format to the same partition files an APOC export is split into, so the
//! rest of the run does not depend on the source kind; each class goes to its own file
//! and the files are joined in class order, which keeps the order deterministic. Queries
//! only read.

use super::apoc::{PartitionKey, Partitions};
use crate::error::{Error, Result};
use neo4j::address::Address;
use neo4j::driver::auth::AuthToken;
use neo4j::driver::{ConnectionConfig, Driver, DriverConfig, RoutingControl};
use neo4j::{ValueReceive, ValueSend};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;
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
                PartitionKey::Label(_) => match rec.take_value("n") {
                    Some(ValueReceive::Node(node)) => {
                        json!({"type": "node", "id": id.to_string(), "labels": node.labels, "properties": props(node.properties)})
                    }
                    other => return Err(bolt_error("expected a node", format!("{other:?}"))),
                },
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

/// Reads every needed label / relationship type into partition files under `out`.
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
        if !seen.insert(key.clone()) {
            continue;
        }
        let parts = opts.partitions.max(1);
        let counts: Vec<Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..parts)
                .map(|p| {
                    let driver = &driver;
                    let path = out.join(format!("p{i:03}.class{p}.jsonl"));
                    scope.spawn(move || read_class(driver, opts, key, p, &path))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Other("bolt reader panicked".into())))
                })
                .collect()
        });
        let path = out.join(format!("p{i:03}.jsonl"));
        let mut joined =
            BufWriter::new(std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?);
        let mut total = 0;
        for (p, count) in counts.into_iter().enumerate() {
            total += count?;
            let class = out.join(format!("p{i:03}.class{p}.jsonl"));
            let mut f = std::fs::File::open(&class).map_err(|e| Error::io(&class, e))?;
            std::io::copy(&mut f, &mut joined).map_err(|e| Error::io(&path, e))?;
            std::fs::remove_file(&class).map_err(|e| Error::io(&class, e))?;
        }
        joined.flush().map_err(|e| Error::io(&path, e))?;
        joined
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&path, e))?;
        progress.inc(total);
        result.files.insert(key.name(), path);
        result.records.insert(key.name(), total);
    }
    Ok(result)
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

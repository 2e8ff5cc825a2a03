//! Neo4j over Bolt (the `neo4j` driver, Bolt 4.4 and 5.x, routing off), for sources given
//! as `bolt://[USER:PASSWORD@]HOST:PORT[/DATABASE][?workers=N&page_size=N]`.
//!
//! Each node label and relationship type the spec uses is cut into ranges of internal
//! ids ([`cut_ranges`]: from the label's smallest and largest id and its count, about
//! `page_size` records a range) and read one range per query, `WHERE id(n) >= $first
//! AND id(n) <= $last`, which a server answers from the label's id index without reading
//! the rest of it (FalkorDB: `Node By Label and ID Scan`, no sort). Relationships have
//! no id index: a type is read from its start nodes' ranges (`MATCH (n:Start)-[r:T]->(b)
//! WHERE id(n) ...`), with the start labels the spec gives (`start_label`, or the
//! node table a `from_relationship` column starts from), else from ranges of all nodes.
//! The keys' bounds queries, then all ranges of all keys, go to one pool of `workers`
//! threads. A query returns `labels(x)` and `properties(x)`, not the node or
//! relationship, and each record is written straight from the driver's values (`AsJson`)
//! in the APOC JSON-lines format to the same partition files an APOC export is split
//! into, so the rest of the run does not depend on the source kind; a partition is in
//! id order (relationships: start node id, then id), whatever the ranges and workers.
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
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Read workers when the URL does not say: the server does most of the work, and a
/// 2–4 core client keeps 4 queries in flight without waiting on itself.
pub const DEFAULT_WORKERS: u32 = 4;
/// Records per id range (and per page of a paged Cypher query) when the URL does not say.
pub const DEFAULT_PAGE_SIZE: i64 = 10_000;

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct BoltOptions {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    /// Records per id range if the ids are spread evenly, and per page of a paged
    /// Cypher query (`page_size` in the URL).
    pub page_size: i64,
    /// Ranges and queries read at the same time (`workers` in the URL).
    pub workers: u32,
    /// Relationship type → the labels its start nodes carry in every use the spec makes
    /// of it ([`super::start_labels`]); a type not listed is read from all nodes' ranges.
    pub start_labels: BTreeMap<String, Vec<String>>,
}

impl BoltOptions {
    /// Parses `bolt://[USER:PASSWORD@]HOST:PORT[/DATABASE][?workers=N&page_size=N]` (also
    /// `neo4j://`).
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
        let (mut workers, mut page_size) = (DEFAULT_WORKERS, DEFAULT_PAGE_SIZE);
        for (name, value) in url.query_pairs() {
            let number = |max: i64| {
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        Error::Other(format!(
                            "bolt source: `{name}` must be a whole number from 1 to {max}, not `{value}`"
                        ))
                    })
            };
            match name.as_ref() {
                "workers" => workers = number(64)? as u32,
                "page_size" => page_size = number(1_000_000)?,
                _ => {
                    return Err(Error::Other(format!(
                        "bolt source: unknown setting `{name}` in the url; it takes `workers` and `page_size`"
                    )))
                }
            }
        }
        Ok(BoltOptions {
            host: host.to_string(),
            port: url.port().unwrap_or(7687),
            user: (!url.username().is_empty()).then(|| url.username().to_string()),
            password: url.password().map(|p| p.to_string()),
            database: (!database.is_empty()).then(|| database.to_string()),
            page_size,
            workers,
            start_labels: BTreeMap::new(),
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

/// A Bolt value written as JSON straight into the line, without building a
/// [`serde_json::Value`] first: maps, and the properties of nodes and relationships, in
/// key order; temporal and spatial values as their text form. The property test
/// `as_json_writes_what_to_json_gives` holds it to the text of the equivalent
/// `serde_json::Value`.
struct AsJson<'a>(&'a ValueReceive);

impl serde::Serialize for AsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            ValueReceive::Null => s.serialize_unit(),
            ValueReceive::Boolean(b) => s.serialize_bool(*b),
            ValueReceive::Integer(i) => s.serialize_i64(*i),
            ValueReceive::Float(f) => s.serialize_f64(*f),
            ValueReceive::String(x) => s.serialize_str(x),
            ValueReceive::List(l) => s.collect_seq(l.iter().map(AsJson)),
            ValueReceive::Map(m) => Props(m).serialize(s),
            ValueReceive::Node(n) => Props(&n.properties).serialize(s),
            ValueReceive::Relationship(r) => Props(&r.properties).serialize(s),
            ValueReceive::Bytes(b) => s.collect_seq(b),
            other => s.collect_str(&format_args!("{other:?}")),
        }
    }
}

/// Properties as a JSON object in key order.
struct Props<'a>(&'a HashMap<String, ValueReceive>);

impl serde::Serialize for Props<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut entries: Vec<(&String, &ValueReceive)> = self.0.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        s.collect_map(entries.into_iter().map(|(k, v)| (k, AsJson(v))))
    }
}

/// An id written as a JSON string, as the APOC export writes ids.
struct IdText(i64);

impl serde::Serialize for IdText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A node as an APOC line (fields in the order `json!` gives them); `I` is the id's
/// form: [`IdText`] for a graph id, `&str` for a cypher query's `id` column.
#[derive(serde::Serialize)]
struct NodeLine<'a, I> {
    id: I,
    labels: &'a [String],
    properties: Props<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A relationship's start or end in an APOC line.
#[derive(serde::Serialize)]
struct EndLine<'a> {
    id: IdText,
    labels: &'a [String],
}

/// A relationship as an APOC line (fields in the order `json!` gives them).
#[derive(serde::Serialize)]
struct RelationshipLine<'a> {
    end: EndLine<'a>,
    id: IdText,
    label: &'a str,
    properties: Props<'a>,
    start: EndLine<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn bolt_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("bolt source, {what}: {e}"))
}

/// An inclusive range of internal ids: the unit of work of a label or relationship type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub first: i64,
    pub last: i64,
}

/// Cuts `first..=last`, which holds `count` ids, into consecutive ranges that hold about
/// `per_range` ids each if the ids are spread evenly: `max(per_range, span × per_range /
/// count)` ids wide, so there are at most `ceil(count / per_range)` ranges however sparse
/// the ids are, and a range never holds more ids than it is wide. Nothing when `count`
/// is 0 or `last < first`.
pub fn cut_ranges(first: i64, last: i64, count: u64, per_range: u64) -> Vec<IdRange> {
    if last < first || count == 0 {
        return Vec::new();
    }
    let (first, last) = (i128::from(first), i128::from(last));
    // At most 2^64 ids: the products below fit in 128 bits.
    let span = (last - first + 1) as u128;
    let per = u128::from(per_range.max(1));
    let width = (span * per).div_ceil(u128::from(count)).max(per).min(span) as i128;
    let mut ranges = Vec::with_capacity(span.div_ceil(width as u128).min(1 << 16) as usize);
    let mut lo = first;
    while lo <= last {
        let hi = (lo + width - 1).min(last);
        // Both ends lie within the i64 bounds given.
        ranges.push(IdRange {
            first: lo as i64,
            last: hi as i64,
        });
        lo = hi + 1;
    }
    ranges
}

/// How one label or relationship type is read, one id range at a time.
#[derive(Debug, Clone)]
enum GraphRead {
    /// `MATCH (n:L) WHERE id(n) in the range`.
    Label(String),
    /// A relationship type from its start nodes' ranges: per start label (a node with
    /// several of them is read under the first only), or from any node when the spec
    /// does not tell every start label (`None`).
    Rel {
        rel_type: String,
        start_labels: Option<Vec<String>>,
    },
}

impl GraphRead {
    /// The queries of one range (`$first`, `$last`), in order.
    fn queries(&self) -> Vec<String> {
        const RANGE: &str = "id(n) >= $first AND id(n) <= $last";
        const REL: &str =
            "RETURN id(r) AS id, properties(r) AS p, id(n) AS sid, labels(n) AS sl, id(b) AS eid, labels(b) AS el";
        match self {
            GraphRead::Label(l) => vec![format!(
                "MATCH (n:{}) WHERE {RANGE} RETURN id(n) AS id, labels(n) AS l, properties(n) AS p",
                quote(l)
            )],
            GraphRead::Rel {
                rel_type,
                start_labels: None,
            } => vec![format!(
                "MATCH (n)-[r:{}]->(b) WHERE {RANGE} {REL}",
                quote(rel_type)
            )],
            GraphRead::Rel {
                rel_type,
                start_labels: Some(labels),
            } => labels
                .iter()
                .enumerate()
                .map(|(k, l)| {
                    let earlier: String = labels[..k]
                        .iter()
                        .map(|e| format!(" AND NOT n:{}", quote(e)))
                        .collect();
                    format!(
                        "MATCH (n:{})-[r:{}]->(b) WHERE {RANGE}{earlier} {REL}",
                        quote(l),
                        quote(rel_type)
                    )
                })
                .collect(),
        }
    }

    /// The queries giving the id bounds and count of the nodes the ranges are cut over.
    fn bounds_queries(&self) -> Vec<String> {
        const BOUNDS: &str = "RETURN min(id(n)) AS lo, max(id(n)) AS hi, count(n) AS c";
        let labels = match self {
            GraphRead::Label(l) => vec![l.clone()],
            GraphRead::Rel {
                start_labels: Some(labels),
                ..
            } => labels.clone(),
            GraphRead::Rel {
                start_labels: None, ..
            } => return vec![format!("MATCH (n) {BOUNDS}")],
        };
        labels
            .iter()
            .map(|l| format!("MATCH (n:{}) {BOUNDS}", quote(l)))
            .collect()
    }
}

/// Runs a read query with parameters; returns its records, fetched whole (the bounds
/// queries' one row; ranges are streamed by [`stream_query`]).
fn read_query(
    driver: &Driver,
    opts: &BoltOptions,
    query: &str,
    params: &HashMap<String, ValueSend>,
    what: &str,
) -> Result<Vec<neo4j::driver::Record>> {
    let mut q = driver
        .execute_query(query)
        .with_parameters(params)
        .with_routing_control(RoutingControl::Read);
    if let Some(db) = &opts.database {
        q = q.with_database(Arc::new(db.clone()));
    }
    Ok(q.run().map_err(|e| bolt_error(what, e))?.records)
}

/// The id ranges `read` is cut into: from the bounds and count of its (start) nodes.
fn plan_ranges(driver: &Driver, opts: &BoltOptions, read: &GraphRead) -> Result<Vec<IdRange>> {
    let (mut first, mut last, mut count) = (i64::MAX, i64::MIN, 0u64);
    for query in read.bounds_queries() {
        for mut rec in read_query(driver, opts, &query, &HashMap::new(), "reading id bounds")? {
            // An empty label has null bounds and a count of 0.
            if let (
                Some(ValueReceive::Integer(lo)),
                Some(ValueReceive::Integer(hi)),
                Some(ValueReceive::Integer(c)),
            ) = (
                rec.take_value("lo"),
                rec.take_value("hi"),
                rec.take_value("c"),
            ) {
                first = first.min(lo);
                last = last.max(hi);
                count += u64::try_from(c).unwrap_or(0);
            }
        }
    }
    Ok(cut_ranges(
        first,
        last,
        count,
        u64::try_from(opts.page_size).unwrap_or(1),
    ))
}

/// The strings of a list column (`labels(n)`); nothing for anything else.
fn strings(v: Option<ValueReceive>) -> Vec<String> {
    match v {
        Some(ValueReceive::List(l)) => l
            .into_iter()
            .filter_map(|x| match x {
                ValueReceive::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The map of a `properties(x)` column.
fn properties(v: Option<ValueReceive>) -> Result<HashMap<String, ValueReceive>> {
    match v {
        Some(ValueReceive::Map(m)) => Ok(m),
        other => Err(bolt_error(
            "expected a map of properties",
            format!("{other:?}"),
        )),
    }
}

/// Writes one relationship record to `buf` as an APOC line; returns its start node id.
fn write_relationship(
    rel_type: &str,
    id: i64,
    rec: &mut neo4j::driver::Record,
    buf: &mut Vec<u8>,
) -> Result<i64> {
    let properties = properties(rec.take_value("p"))?;
    let int = |v: Option<ValueReceive>| match v {
        Some(ValueReceive::Integer(i)) => Ok(i),
        other => Err(bolt_error("unexpected endpoint id", format!("{other:?}"))),
    };
    let (sid, sl, eid, el) = (
        int(rec.take_value("sid"))?,
        strings(rec.take_value("sl")),
        int(rec.take_value("eid"))?,
        strings(rec.take_value("el")),
    );
    let line = RelationshipLine {
        end: EndLine {
            id: IdText(eid),
            labels: &el,
        },
        id: IdText(id),
        label: rel_type,
        properties: Props(&properties),
        start: EndLine {
            id: IdText(sid),
            labels: &sl,
        },
        kind: "relationship",
    };
    serde_json::to_writer(&mut *buf, &line).map_err(|e| bolt_error("writing a line", e))?;
    Ok(sid)
}

/// Runs a read query and hands each record to `each` as it arrives: the driver pulls
/// them in batches of its default size (1000), so a result is never held whole (a range
/// of relationships holds the out-degree of its start nodes, which one hub can make
/// large), or all at once with `fetch_all` (a result bounded by its query's `$limit`). After a failure of `each` the rest is read and dropped rather than discarded
/// (FalkorDB does not answer a DISCARD), then the failure is returned.
// The transaction closure must return the driver's own `Result`, whose error is large.
#[allow(clippy::result_large_err)]
fn stream_query(
    driver: &Driver,
    opts: &BoltOptions,
    query: &str,
    params: &HashMap<String, ValueSend>,
    what: &str,
    fetch_all: bool,
    mut each: impl FnMut(neo4j::driver::Record) -> Result<()>,
) -> Result<()> {
    let mut config = if fetch_all {
        SessionConfig::new().with_fetch_all()
    } else {
        SessionConfig::new().with_default_fetch_size()
    };
    if let Some(db) = &opts.database {
        config = config.with_database(Arc::new(db.clone()));
    }
    let mut session = driver.session(config);
    let mut failure = None;
    session
        .transaction()
        .with_routing_control(RoutingControl::Read)
        .run(|tx| {
            let mut stream = tx.query(query).with_parameters(params).run()?;
            for record in stream.by_ref() {
                let record = record?;
                if failure.is_none() {
                    if let Err(e) = each(record) {
                        failure = Some(e);
                    }
                }
            }
            stream.consume()?;
            tx.commit()
        })
        .map_err(|e| bolt_error(what, e))?;
    failure.map_or(Ok(()), Err)
}

/// Reads one id range of `read` into `out`, sorted (nodes by id, relationships by start
/// node id then id, so the order depends on the graph only, not on how it was cut);
/// returns the records written. Records are turned into their lines as they arrive, so
/// the range's memory is its text, not the driver's values. The file is written under a
/// temporary name, synced and then renamed: a file of that name is a whole range.
fn read_range(
    driver: &Driver,
    opts: &BoltOptions,
    read: &GraphRead,
    range: IdRange,
    out: &Path,
) -> Result<u64> {
    let params: HashMap<String, ValueSend> = [
        ("first".to_string(), ValueSend::Integer(range.first)),
        ("last".to_string(), ValueSend::Integer(range.last)),
    ]
    .into();
    // The lines, written one after another into `buf`, and where each one lies.
    let mut buf: Vec<u8> = Vec::new();
    let mut lines: Vec<((i64, i64), std::ops::Range<usize>)> = Vec::new();
    let started = std::time::Instant::now();
    for query in read.queries() {
        let what = match read {
            GraphRead::Label(l) => format!("reading label {l}"),
            GraphRead::Rel { rel_type, .. } => format!("reading relationship type {rel_type}"),
        };
        stream_query(driver, opts, &query, &params, &what, false, |mut rec| {
            let id = match rec.take_value("id") {
                Some(ValueReceive::Integer(i)) => i,
                other => return Err(bolt_error("unexpected id", format!("{other:?}"))),
            };
            let start = buf.len();
            let key = match read {
                GraphRead::Rel { rel_type, .. } => {
                    (write_relationship(rel_type, id, &mut rec, &mut buf)?, id)
                }
                GraphRead::Label(_) => {
                    let line = NodeLine {
                        id: IdText(id),
                        labels: &strings(rec.take_value("l")),
                        properties: Props(&properties(rec.take_value("p"))?),
                        kind: "node",
                    };
                    serde_json::to_writer(&mut buf, &line)
                        .map_err(|e| bolt_error("writing a line", e))?;
                    (id, 0)
                }
            };
            lines.push((key, start..buf.len()));
            Ok(())
        })?;
    }
    lines.sort_unstable_by_key(|(k, _)| *k);
    let tmp = out.with_extension("jsonl.tmp");
    let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for (_, line) in &lines {
        w.write_all(&buf[line.clone()])
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| Error::io(&tmp, e))?;
    }
    w.flush().map_err(|e| Error::io(&tmp, e))?;
    w.get_ref().sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    tracing::debug!(
        range = %out.display(),
        first = range.first,
        last = range.last,
        records = lines.len(),
        total_ms = started.elapsed().as_millis() as u64,
        "bolt range read"
    );
    Ok(lines.len() as u64)
}

/// Writes one row of a Cypher query to `buf` as an APOC node line: the `id` column is
/// the record id, the other columns its properties. Returns the id (for keyset paging).
fn cypher_row(record: neo4j::driver::Record, buf: &mut Vec<u8>) -> Result<ValueReceive> {
    let mut id = None;
    let mut properties = HashMap::new();
    for (key, value) in record.into_entries() {
        if key.as_str() == "id" {
            id = Some(value);
        } else {
            properties.insert(key.to_string(), value);
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
    let line = NodeLine {
        id: text.as_str(),
        labels: &["cypher".to_string()],
        properties: Props(&properties),
        kind: "node",
    };
    serde_json::to_writer(&mut *buf, &line).map_err(|e| bolt_error("writing a line", e))?;
    Ok(id)
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
fn read_cypher(driver: &Driver, opts: &BoltOptions, query: &str, out: &Path) -> Result<u64> {
    let paged = query.contains("$after") && query.contains("$limit");
    let f = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    let mut after = ValueSend::Integer(-1);
    let mut written = 0u64;
    loop {
        let mut params: HashMap<String, ValueSend> = HashMap::new();
        if paged {
            params.insert("after".into(), after.clone());
            params.insert("limit".into(), ValueSend::Integer(opts.page_size));
        }
        let mut rows = 0i64;
        let mut last = after.clone();
        // A page is bounded by `$limit`: fetched whole; any other result is streamed.
        stream_query(
            driver,
            opts,
            query,
            &params,
            "running the cypher query",
            paged,
            |record| {
                line.clear();
                let id = cypher_row(record, &mut line)?;
                // Paged, every id must be above the one before it: the keyset is only
                // complete and duplicate-free in id order.
                if paged {
                    last = next_after(&last, id)?;
                }
                line.push(b'\n');
                w.write_all(&line).map_err(|e| Error::io(out, e))?;
                rows += 1;
                Ok(())
            },
        )?;
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

/// One unit of work of [`fetch`]: an id range of a label or type (`join` is its key's
/// place in the joins), or a whole Cypher query.
enum Unit<'a> {
    Range {
        read: &'a GraphRead,
        range: IdRange,
        out: PathBuf,
        join: usize,
    },
    Cypher {
        query: &'a str,
        name: &'a str,
        out: PathBuf,
    },
}

/// A key [`fetch`] reads: its index in `keys`, its name and what to read.
enum Planned {
    Graph(usize, String, GraphRead),
    Cypher(usize, String, String),
}

/// A label's or type's partition file, joined from its range files once all are read.
struct Join {
    name: String,
    path: PathBuf,
    plan: PathBuf,
    files: Vec<PathBuf>,
    records: u64,
}

/// Reads every needed label, relationship type and Cypher query into partition files
/// under `out` (keys of other sources are left to their readers).
///
/// Labels and types are cut into id ranges ([`cut_ranges`], about `page_size` records
/// each) and all ranges of all keys, with the Cypher queries, go to one pool of
/// `workers` threads, taking them in order; each range is written to its own file,
/// and a key's range files are joined in range order. The ranges of a key are kept in
/// `pNNN.ranges.json` until its file is joined: a run resumed after an interruption
/// (`--resume` before the partition step finished) reads the same ranges and only
/// those whose file is missing (a range is re-read whole). It assumes, as resuming
/// does anyway, that the graph did not change in between.
pub fn fetch(
    opts: &BoltOptions,
    keys: &[PartitionKey],
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<Partitions> {
    fetch_with(&opts.driver(), opts, keys, out, progress)
}

/// [`fetch`] over a driver the caller keeps (its connections stay open after the read;
/// FalkorDB 4.16 stops answering new connections once a Bolt client has closed its own,
/// so its tests read twice through one driver).
pub fn fetch_with(
    driver: &Driver,
    opts: &BoltOptions,
    keys: &[PartitionKey],
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<Partitions> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut seen = std::collections::HashSet::new();
    let mut planned = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if !key.reads_graph() || !seen.insert(key.clone()) {
            continue;
        }
        planned.push(match key {
            PartitionKey::Source(SourceKind::Cypher { query, .. }) => {
                Planned::Cypher(i, key.name(), query.clone())
            }
            PartitionKey::Label(l) | PartitionKey::Source(SourceKind::Node { label: l }) => {
                Planned::Graph(i, key.name(), GraphRead::Label(l.clone()))
            }
            PartitionKey::RelType(t)
            | PartitionKey::Source(SourceKind::Relationship { rel_type: t, .. }) => Planned::Graph(
                i,
                key.name(),
                GraphRead::Rel {
                    rel_type: t.clone(),
                    start_labels: opts.start_labels.get(t).cloned(),
                },
            ),
            other => {
                return Err(Error::Other(format!(
                    "internal: {} is not read over Bolt",
                    other.name()
                )))
            }
        });
    }

    // Cypher queries first: each is one unit, possibly the longest.
    let mut units = Vec::new();
    for p in &planned {
        if let Planned::Cypher(i, name, query) = p {
            units.push(Unit::Cypher {
                query,
                name,
                out: out.join(format!("p{i:03}.jsonl")),
            });
        }
    }
    // The ranges of every key: those an interrupted run recorded, else cut from the
    // key's bounds, whose queries (each a scan on the server) run on the pool too.
    let graph_keys: Vec<(usize, &String, &GraphRead, PathBuf)> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Graph(i, name, read) => {
                Some((*i, name, read, out.join(format!("p{i:03}.ranges.json"))))
            }
            Planned::Cypher(..) => None,
        })
        .collect();
    let all_ranges = run_pool(
        &graph_keys,
        opts.workers as usize,
        |(_, name, read, plan)| {
            if let Some(ranges) = read_plan(plan)? {
                return Ok(ranges);
            }
            let asked = std::time::Instant::now();
            let ranges = plan_ranges(driver, opts, read)?;
            tracing::debug!(key = %name, ranges = ranges.len(), ms = asked.elapsed().as_millis() as u64, "bolt key planned");
            write_plan(plan, &ranges)?;
            Ok(ranges)
        },
    )?;
    let mut joins: Vec<Join> = Vec::new();
    for ((i, name, read, plan), ranges) in graph_keys.into_iter().zip(all_ranges) {
        let mut join = Join {
            name: name.clone(),
            path: out.join(format!("p{i:03}.jsonl")),
            plan,
            files: Vec::with_capacity(ranges.len()),
            records: 0,
        };
        for (k, range) in ranges.into_iter().enumerate() {
            let file = out.join(format!("p{i:03}.r{k:06}.jsonl"));
            if file.exists() {
                // Read whole by the interrupted run.
                let n = count_lines(&file)?;
                join.records += n;
                progress.inc(n);
            } else {
                units.push(Unit::Range {
                    read,
                    range,
                    out: file.clone(),
                    join: joins.len(),
                });
            }
            join.files.push(file);
        }
        joins.push(join);
    }

    let counts = run_pool(&units, opts.workers as usize, |unit| {
        let n = match unit {
            Unit::Range {
                read, range, out, ..
            } => read_range(driver, opts, read, *range, out)?,
            Unit::Cypher { query, out, .. } => read_cypher(driver, opts, query, out)?,
        };
        progress.inc(n);
        Ok(n)
    })?;

    let mut result = Partitions::default();
    for (unit, n) in units.iter().zip(counts) {
        match unit {
            Unit::Range { join, .. } => joins[*join].records += n,
            Unit::Cypher { name, out, .. } => {
                result.records.insert(name.to_string(), n);
                result.files.insert(name.to_string(), vec![out.clone()]);
            }
        }
    }
    for join in joins {
        let joined = std::time::Instant::now();
        join_parts(&join.files, &join.path)?;
        tracing::debug!(key = %join.name, ms = joined.elapsed().as_millis() as u64, "bolt key joined");
        std::fs::remove_file(&join.plan).map_err(|e| Error::io(&join.plan, e))?;
        result.records.insert(join.name.clone(), join.records);
        result.files.insert(join.name, vec![join.path]);
    }
    Ok(result)
}

/// The ranges an interrupted run cut for a key, if it got that far.
fn read_plan(path: &Path) -> Result<Option<Vec<IdRange>>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Other(format!("{}: {e}; run without --resume", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Records a key's ranges before any of them is read (synced, then renamed into place).
fn write_plan(path: &Path, ranges: &[IdRange]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(ranges).map_err(|e| Error::Other(format!("{e}")))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&text).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The records (lines) of a range file.
fn count_lines(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0u64;
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Runs `work` over `units` on `workers` threads, each taking the next unit in order;
/// returns every unit's result, in unit order. The first failure stops the pool: units
/// already running finish, no other starts, and that failure is returned.
fn run_pool<U: Sync, T: Send>(
    units: &[U],
    workers: usize,
    work: impl Fn(&U) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<std::sync::Mutex<Option<T>>> =
        units.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, units.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(unit) = units.get(i) else {
                            break;
                        };
                        match work(unit) {
                            Ok(r) => {
                                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                            }
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
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
    for outcome in outcomes {
        outcome?;
    }
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .ok_or_else(|| Error::Other("internal: a bolt read unit did not run".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Bolt values as `serde_json::Value` (temporal and spatial values as their text
    /// form): the reference the line writer is held to.
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
        assert_eq!(
            (o.workers, o.page_size),
            (DEFAULT_WORKERS, DEFAULT_PAGE_SIZE)
        );
    }

    #[test]
    fn workers_and_page_size_come_from_the_url() {
        let o = BoltOptions::parse("bolt://u:p@h:7687/db?workers=8&page_size=500").unwrap();
        assert_eq!(
            (o.workers, o.page_size, o.database.as_deref()),
            (8, 500, Some("db"))
        );
        for bad in ["workers=0", "workers=65", "page_size=x", "partitions=2"] {
            let err = BoltOptions::parse(&format!("bolt://u:secret@h?{bad}"))
                .unwrap_err()
                .to_string();
            assert!(!err.contains("secret"), "no password in errors: {err}");
            let setting = bad.split('=').next().unwrap_or(bad);
            assert!(
                err.contains(&format!("`{setting}`")),
                "names the setting: {err}"
            );
        }
    }

    #[test]
    fn ranges_of_an_empty_or_tiny_label() {
        assert_eq!(cut_ranges(5, 4, 0, 10), vec![]);
        assert_eq!(cut_ranges(0, 0, 0, 10), vec![]);
        assert_eq!(cut_ranges(7, 7, 1, 10), vec![IdRange { first: 7, last: 7 }]);
        // Dense ids: ranges of `per_range` ids.
        assert_eq!(
            cut_ranges(0, 24, 25, 10),
            vec![
                IdRange { first: 0, last: 9 },
                IdRange {
                    first: 10,
                    last: 19
                },
                IdRange {
                    first: 20,
                    last: 24
                }
            ]
        );
        // Sparse ids (one in ten): wider ranges, as many as dense ids would need.
        assert_eq!(cut_ranges(0, 249, 25, 10).len(), 3);
        // The whole i64 range does not overflow.
        let r = cut_ranges(i64::MIN, i64::MAX, 3, 1);
        assert_eq!((r[0].first, r[r.len() - 1].last), (i64::MIN, i64::MAX));
        assert_eq!(r.len(), 3);
    }

    proptest::proptest! {
        /// The ranges cover `first..=last` exactly, in order and without overlap; none is
        /// wider than `max(per_range, span × per_range / count)`, and there are no more
        /// than `ceil(count / per_range)` of them.
        #[test]
        fn ranges_cover_the_ids_exactly(
            first in proptest::prelude::any::<i64>(),
            len in 0u64..5_000_000,
            count_share in 1u64..=1000,
            per_range in 100u64..20_000,
        ) {
            let last = first.saturating_add(len as i64);
            let span = (i128::from(last) - i128::from(first) + 1) as u128;
            // A label's count is at most its span (ids are distinct).
            let count = ((span * u128::from(count_share)).div_ceil(1000)) as u64;
            let ranges = cut_ranges(first, last, count, per_range);
            proptest::prop_assert_eq!(ranges[0].first, first);
            proptest::prop_assert_eq!(ranges[ranges.len() - 1].last, last);
            for w in ranges.windows(2) {
                proptest::prop_assert_eq!(i128::from(w[0].last) + 1, i128::from(w[1].first));
            }
            let bound = (span * u128::from(per_range))
                .div_ceil(u128::from(count))
                .max(u128::from(per_range));
            for r in &ranges {
                proptest::prop_assert!(r.first <= r.last);
                proptest::prop_assert!((i128::from(r.last) - i128::from(r.first) + 1) as u128 <= bound);
            }
            proptest::prop_assert!(ranges.len() as u64 <= count.div_ceil(per_range));
        }
    }

    #[test]
    fn the_pool_runs_every_unit_once_and_keeps_their_order() {
        let units: Vec<u64> = (0..500).collect();
        let runs = std::sync::Mutex::new(Vec::new());
        let counts = run_pool(&units, 4, |u| {
            runs.lock().unwrap().push(*u);
            Ok(u * 2)
        })
        .unwrap();
        assert_eq!(counts, units.iter().map(|u| u * 2).collect::<Vec<_>>());
        let mut runs = runs.into_inner().unwrap();
        runs.sort_unstable();
        assert_eq!(runs, units);
        assert_eq!(
            run_pool(&[] as &[u64], 4, |_| Ok(1u64)).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn the_pool_stops_at_the_first_failure() {
        let units: Vec<u64> = (0..10_000).collect();
        let started = std::sync::atomic::AtomicUsize::new(0);
        let err = run_pool(&units, 3, |u| {
            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if *u == 10 {
                Err(Error::Other("range 10 failed".into()))
            } else {
                Ok(1)
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("range 10 failed"), "{err}");
        // The other workers stop after the unit they are on.
        assert!(started.into_inner() < 100);
    }

    #[test]
    fn a_relationship_query_per_start_label_reads_a_node_once() {
        let read = GraphRead::Rel {
            rel_type: "T".into(),
            start_labels: Some(vec!["A".into(), "B".into()]),
        };
        let q = read.queries();
        assert_eq!(q.len(), 2);
        assert!(q[0].starts_with(
            "MATCH (n:`A`)-[r:`T`]->(b) WHERE id(n) >= $first AND id(n) <= $last RETURN"
        ));
        assert!(q[1].contains("MATCH (n:`B`)-[r:`T`]->(b) WHERE id(n) >= $first AND id(n) <= $last AND NOT n:`A` RETURN"));
        let any = GraphRead::Rel {
            rel_type: "T".into(),
            start_labels: None,
        };
        assert_eq!(
            any.bounds_queries(),
            vec!["MATCH (n) RETURN min(id(n)) AS lo, max(id(n)) AS hi, count(n) AS c"]
        );
    }
    /// Bolt values as a driver receives them: scalars, strings with escapes and any
    /// character, floats with NaN and infinities, bytes, nested lists and maps.
    fn bolt_value() -> impl proptest::strategy::Strategy<Value = ValueReceive> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(ValueReceive::Null),
            any::<bool>().prop_map(ValueReceive::Boolean),
            any::<i64>().prop_map(ValueReceive::Integer),
            any::<f64>().prop_map(ValueReceive::Float),
            any::<String>().prop_map(ValueReceive::String),
            "[\"\\\\\n\t a-zé東京😀]{0,8}".prop_map(ValueReceive::String),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(ValueReceive::Bytes),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(ValueReceive::List),
                proptest::collection::hash_map("[a-zA-Z_\"é]{0,6}", inner, 0..5)
                    .prop_map(ValueReceive::Map),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn as_json_writes_what_to_json_gives(v in bolt_value()) {
            let direct = serde_json::to_string(&AsJson(&v)).unwrap();
            proptest::prop_assert_eq!(direct, to_json(v).to_string());
        }

        #[test]
        fn lines_are_written_as_the_apoc_records_they_stand_for(
            id in proptest::prelude::any::<i64>(),
            sid in proptest::prelude::any::<i64>(),
            labels in proptest::collection::vec("[A-Za-z\"]{1,5}", 0..3),
            properties in proptest::collection::hash_map("[a-z\"]{1,5}", bolt_value(), 0..5),
        ) {
            let node = NodeLine {
                id: IdText(id),
                labels: &labels,
                properties: Props(&properties),
                kind: "node",
            };
            let as_value = |p: &HashMap<String, ValueReceive>| to_json(ValueReceive::Map(p.clone()));
            proptest::prop_assert_eq!(
                serde_json::to_string(&node).unwrap(),
                json!({"type": "node", "id": id.to_string(), "labels": labels, "properties": as_value(&properties)}).to_string()
            );
            let relationship = RelationshipLine {
                end: EndLine { id: IdText(id), labels: &labels[..labels.len().min(1)] },
                id: IdText(sid),
                label: "T\"",
                properties: Props(&properties),
                start: EndLine { id: IdText(sid), labels: &labels },
                kind: "relationship",
            };
            proptest::prop_assert_eq!(
                serde_json::to_string(&relationship).unwrap(),
                json!({"type": "relationship", "id": sid.to_string(), "label": "T\"", "properties": as_value(&properties),
                    "start": {"id": sid.to_string(), "labels": labels}, "end": {"id": id.to_string(), "labels": &labels[..labels.len().min(1)]}}).to_string()
            );
        }
    }
}

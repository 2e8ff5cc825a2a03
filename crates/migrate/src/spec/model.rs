//! The validated spec: tables with resolved column indexes, types and references.

use super::raw::{
    RawColumn, RawConnection, RawDirection, RawRelationshipRef, RawSource, RawSpec, RawTransform,
};
use crate::transform::{DateFormats, Step};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use toml::Spanned;

/// A validated migration spec.
#[derive(Debug, Clone)]
pub struct Model {
    pub settings: Settings,
    pub tables: Vec<Table>,
    /// The named connections of `[sources.*]`, values as written (`${...}` unresolved).
    pub sources: BTreeMap<String, Connection>,
    /// Hash of the spec text; a resumed run refuses a changed spec.
    pub fingerprint: u64,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Accepted rows per CSV chunk (and per `LOAD DATA` statement).
    pub chunk_rows: u64,
    /// Share of a table's rows that may be rejected before the run aborts (0..=1).
    pub max_reject_share: f64,
    /// Transform workers per table.
    pub workers: u32,
    /// Connections loading one table's chunks in parallel.
    pub load_connections: u32,
    /// Tables exporting at once: each holds a block of rows, its sort buffers and its
    /// workers' batches, so this bounds the run's memory whatever the table count.
    pub parallel_tables: u32,
    /// Where chunks go: `None` for the local work directory, or an S3 bucket.
    pub chunks: Option<crate::chunk_store::S3Location>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            chunk_rows: 100_000,
            max_reject_share: 1.0,
            workers: 2,
            load_connections: 2,
            parallel_tables: 4,
            chunks: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub description: Option<String>,
    pub source: SourceKind,
    pub columns: Vec<Column>,
    pub primary_key: Vec<usize>,
    pub unique: Vec<Vec<usize>>,
    pub foreign_keys: Vec<ForeignKey>,
}

impl Table {
    /// The relationship-sourced columns (`from_relationship`): index and relationship.
    pub fn relationship_columns(&self) -> Vec<(usize, &RelationshipRef)> {
        self.columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match &c.from {
                FieldRef::Relationship(r) => Some((i, r)),
                _ => None,
            })
            .collect()
    }

    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The backquoted names of the columns at `cols`, comma-separated, for SQL.
    pub fn quoted_columns(&self, cols: &[usize]) -> String {
        cols.iter()
            .map(|&i| format!("`{}`", self.columns[i].name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A `[sources.NAME]` connection, as written: string values may hold `${VAR}` /
/// `${VAR:-default}`, resolved when a run connects (see [`crate::source::env`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Dynamodb(DynamoConnection),
    Opensearch(OpenSearchConnection),
    Embedded(EmbeddedConnection),
}

impl Connection {
    /// The `type` of the connection, as the spec spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Connection::Dynamodb(_) => "dynamodb",
            Connection::Opensearch(_) => "opensearch",
            Connection::Embedded(_) => "embedded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConnection {
    /// `None`: the SDK's region chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// Parallel Scan segments per table.
    pub segments: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSearchConnection {
    pub url: String,
    pub username: Option<String>,
    /// Names of environment variables; the secrets themselves never are in the spec.
    pub password_env: Option<String>,
    pub api_key_env: Option<String>,
    pub ca_cert: Option<String>,
    pub danger_insecure_skip_verify: bool,
    /// Documents per search page.
    pub page_size: u32,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConnection {
    /// The directory holding `primary.db`.
    pub data_dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    Node {
        label: String,
    },
    Relationship {
        rel_type: String,
        start_label: Option<String>,
        end_label: Option<String>,
    },
    /// Rows of a Cypher query; `paged` when it uses `$after` and `$limit` (keyset paging).
    Cypher {
        query: String,
        paged: bool,
    },
    /// Items of a DynamoDB table read through connection `from`.
    Dynamodb {
        from: String,
        table: String,
    },
    /// Documents of an index read through connection `from`, optionally filtered.
    Opensearch {
        from: String,
        index: String,
        /// A JSON query (compact text), checked when the spec is read.
        query: Option<String>,
    },
    /// Items of one entity type of the embedded store read through connection `from`.
    Embedded {
        from: String,
        item_type: String,
    },
}

impl SourceKind {
    /// Whether the table reads the graph given by `--source`.
    pub fn reads_graph(&self) -> bool {
        matches!(
            self,
            SourceKind::Node { .. } | SourceKind::Relationship { .. } | SourceKind::Cypher { .. }
        )
    }

    /// The connection a non-graph table reads through.
    pub fn connection(&self) -> Option<&str> {
        match self {
            SourceKind::Dynamodb { from, .. }
            | SourceKind::Opensearch { from, .. }
            | SourceKind::Embedded { from, .. } => Some(from),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SourceKind::Node { label } => format!("nodes `(:{label})`"),
            SourceKind::Relationship {
                rel_type,
                start_label,
                end_label,
            } => format!(
                "relationships `({})-[:{rel_type}]->({})`",
                start_label
                    .as_deref()
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default(),
                end_label
                    .as_deref()
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default()
            ),
            SourceKind::Cypher { query, paged } => format!(
                "rows of the Cypher query `{}` ({})",
                query.split_whitespace().collect::<Vec<_>>().join(" "),
                if *paged {
                    "keyset paging on `id` through `$after` / `$limit`"
                } else {
                    "streamed"
                }
            ),
            SourceKind::Dynamodb { from, table } => {
                format!("items of the DynamoDB table `{table}` (connection `{from}`, parallel Scan)")
            }
            SourceKind::Opensearch { from, index, query } => format!(
                "documents of the index `{index}` (connection `{from}`, point in time + search_after){}",
                query
                    .as_deref()
                    .map(|q| format!(" matching `{q}`"))
                    .unwrap_or_default()
            ),
            SourceKind::Embedded { from, item_type } => format!(
                "items of type `{item_type}` of the embedded store (connection `{from}`, read-only)"
            ),
        }
    }
}

/// Where a column's raw value comes from in a source record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// `_id`: the node or relationship id (the row's `id` column, the item's key, the
    /// document's `_id` for the other sources).
    Id,
    /// `_start`: a relationship's start node id.
    Start,
    /// `_end`: a relationship's end node id.
    End,
    /// Any other name: a property.
    Property(String),
    /// `from_relationship`: the id of the node at the other end of the node's one
    /// relationship of a type (node tables only; joined in [`crate::export::related`]).
    Relationship(RelationshipRef),
}

/// Which relationship of a node a relationship-sourced column follows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelationshipRef {
    pub rel_type: String,
    pub direction: Direction,
    /// Only relationships whose other end carries this label count.
    pub label: Option<String>,
}

/// The direction of a relationship seen from the row's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// `(row)-[:TYPE]->(other)`: the value is the end node's id.
    Out,
    /// `(other)-[:TYPE]->(row)`: the value is the start node's id.
    In,
}

impl RelationshipRef {
    /// The pattern in Cypher form, e.g. `(row)-[:FOR_COMPANY]->(:Company)`.
    pub fn pattern(&self) -> String {
        let other = match &self.label {
            Some(l) => format!("(:{l})"),
            None => "()".to_string(),
        };
        match self.direction {
            Direction::Out => format!("(row)-[:{}]->{other}", self.rel_type),
            Direction::In => format!("(row)<-[:{}]-{other}", self.rel_type),
        }
    }

    /// `outgoing` / `incoming`, for messages.
    pub fn direction_word(&self) -> &'static str {
        match self.direction {
            Direction::Out => "outgoing",
            Direction::In => "incoming",
        }
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldRef::Id => f.write_str("_id"),
            FieldRef::Start => f.write_str("_start"),
            FieldRef::End => f.write_str("_end"),
            FieldRef::Property(p) => f.write_str(p),
            FieldRef::Relationship(r) => f.write_str(&r.pattern()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub from: FieldRef,
    pub required: bool,
    pub default: Option<String>,
    pub steps: Vec<Step>,
    pub map: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
    /// Smallest value accepted (integer columns only); below it the row is rejected.
    pub min: Option<i64>,
    /// Largest value accepted (integer columns only).
    pub max: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub columns: Vec<usize>,
    /// Index of the referenced table in [`Model::tables`].
    pub parent: usize,
    pub parent_columns: Vec<usize>,
    pub deferred: bool,
}

/// The column types a spec may use, with their MySQL spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    BigInt,
    Int,
    /// `bigint unsigned`: 0..=18446744073709551615; a negative value is rejected.
    BigIntUnsigned,
    /// `int unsigned`: 0..=4294967295.
    IntUnsigned,
    Boolean,
    Varchar(u32),
    /// `decimal(P,S)`: exact decimal numbers of at most P digits, S after the point.
    Decimal(u8, u8),
    Text,
    Date,
    DateTime,
}

impl SqlType {
    pub fn parse(s: &str) -> Option<SqlType> {
        let t = s
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        Some(match t.as_str() {
            "bigint" => SqlType::BigInt,
            "int" | "integer" => SqlType::Int,
            "bigint unsigned" => SqlType::BigIntUnsigned,
            "int unsigned" | "integer unsigned" => SqlType::IntUnsigned,
            "boolean" | "bool" => SqlType::Boolean,
            "text" => SqlType::Text,
            "date" => SqlType::Date,
            "datetime" => SqlType::DateTime,
            _ if t.starts_with("decimal(") => {
                let ps = t.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = ps.split_once(',').unwrap_or((ps, "0"));
                let (p, s): (u8, u8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
                if !(1..=65).contains(&p) || s > 30 || s > p {
                    return None;
                }
                SqlType::Decimal(p, s)
            }
            _ => {
                let n = t.strip_prefix("varchar(")?.strip_suffix(')')?;
                let n: u32 = n.trim().parse().ok()?;
                if n == 0 || n > 16_383 {
                    return None;
                }
                SqlType::Varchar(n)
            }
        })
    }

    pub fn sql(&self) -> String {
        match self {
            SqlType::BigInt => "BIGINT".into(),
            SqlType::Int => "INT".into(),
            SqlType::BigIntUnsigned => "BIGINT UNSIGNED".into(),
            SqlType::IntUnsigned => "INT UNSIGNED".into(),
            SqlType::Boolean => "BOOLEAN".into(),
            SqlType::Varchar(n) => format!("VARCHAR({n})"),
            SqlType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
            SqlType::Text => "TEXT".into(),
            SqlType::Date => "DATE".into(),
            SqlType::DateTime => "DATETIME".into(),
        }
    }
}

impl SqlType {
    /// The values an integer type holds (`None` for the other types).
    pub fn integer_range(&self) -> Option<(i128, i128)> {
        match self {
            SqlType::BigInt => Some((i64::MIN.into(), i64::MAX.into())),
            SqlType::Int => Some((i32::MIN.into(), i32::MAX.into())),
            SqlType::BigIntUnsigned => Some((0, u64::MAX.into())),
            SqlType::IntUnsigned => Some((0, u32::MAX.into())),
            _ => None,
        }
    }
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sql().to_ascii_lowercase())
    }
}

type Invalid = (Range<usize>, String);

fn err<T>(span: Range<usize>, msg: impl Into<String>) -> Result<T, Invalid> {
    Err((span, msg.into()))
}

/// Names are used unquoted-safe in SQL and file names; the limit leaves room for the
/// staging suffix within MySQL's 64 characters.
fn check_identifier(name: &Spanned<String>, what: &str) -> Result<(), Invalid> {
    let s = name.get_ref();
    let ok = !s.is_empty()
        && s.len() <= 48
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        err(
            name.span(),
            format!(
                "{what} `{s}` must be 1-48 ASCII letters, digits or `_`, not starting with a digit"
            ),
        )
    }
}

/// A column's `min` / `max`: only on integer types, inside the type's range, `min <= max`,
/// and satisfied by the column's default and value map targets.
fn check_bounds(c: &RawColumn, ty: SqlType) -> Result<(Option<i64>, Option<i64>), Invalid> {
    let (min, max) = (c.min.as_ref(), c.max.as_ref());
    let Some(span) = min.or(max).map(|b| b.span()) else {
        return Ok((None, None));
    };
    let Some((lo, hi)) = ty.integer_range() else {
        return err(
            span,
            format!(
                "`min` / `max` apply to integer columns (bigint, int, and unsigned); `{}` is {ty}",
                c.name.get_ref()
            ),
        );
    };
    for b in [min, max].into_iter().flatten() {
        if !(lo..=hi).contains(&i128::from(*b.get_ref())) {
            return err(
                b.span(),
                format!("{} is outside what {ty} holds ({lo}..={hi})", b.get_ref()),
            );
        }
    }
    let (min, max) = (min.map(|b| *b.get_ref()), max.map(|b| *b.get_ref()));
    if let (Some(a), Some(b)) = (min, max) {
        if a > b {
            return err(span, format!("min {a} is greater than max {b}"));
        }
    }
    let fixed = c
        .default
        .iter()
        .map(|d| d.get_ref())
        .chain(c.map.iter().flat_map(|m| m.get_ref().values()));
    for v in fixed {
        if let Err(e) = crate::transform::check_bounds(v, min, max) {
            return err(
                span,
                format!(
                    "`{v}` (a default or value map target) breaks the bounds: {}",
                    e.detail
                ),
            );
        }
    }
    Ok((min, max))
}

/// A column's `from_relationship`: only on node tables, not with `from`, a non-empty
/// type and label.
fn relationship_ref(
    c: &RawColumn,
    r: &Spanned<RawRelationshipRef>,
    table: &str,
    source: &SourceKind,
) -> Result<FieldRef, Invalid> {
    if let Some(from) = &c.from {
        return err(
            from.span(),
            format!(
                "column `{}` has both `from` and `from_relationship`; keep one",
                c.name.get_ref()
            ),
        );
    }
    if !matches!(source, SourceKind::Node { .. }) {
        return err(
            r.span(),
            format!(
                "`from_relationship` is for node tables; table `{table}` reads {}",
                source.describe()
            ),
        );
    }
    let raw = r.get_ref();
    if raw.rel_type.is_empty() {
        return err(
            r.span(),
            "`from_relationship` needs a non-empty relationship `type`",
        );
    }
    if raw.label.as_deref() == Some("") {
        return err(
            r.span(),
            "`from_relationship.label` must not be empty (leave it out for any label)",
        );
    }
    Ok(FieldRef::Relationship(RelationshipRef {
        rel_type: raw.rel_type.clone(),
        direction: match raw.direction {
            RawDirection::Out => Direction::Out,
            RawDirection::In => Direction::In,
        },
        label: raw.label.clone(),
    }))
}

fn resolve_columns(
    names: &[Spanned<String>],
    table: &str,
    index: &HashMap<String, usize>,
) -> Result<Vec<usize>, Invalid> {
    names
        .iter()
        .map(|n| {
            index.get(n.get_ref()).copied().ok_or_else(|| {
                let mut known: Vec<&String> = index.keys().collect();
                known.sort();
                (
                    n.span(),
                    format!(
                        "table `{table}` has no column `{}` (columns: {})",
                        n.get_ref(),
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// A table's `from` must name a connection of the right type.
fn check_from(
    sources: &BTreeMap<String, Connection>,
    from: &str,
    want: &str,
    span: Range<usize>,
) -> Result<(), Invalid> {
    match sources.get(from) {
        Some(c) if c.type_name() == want => Ok(()),
        Some(c) => err(
            span,
            format!(
                "source `{from}` is a {} connection, but this table reads it as {want}; point `from` at a [sources.NAME] with type = \"{want}\"",
                c.type_name()
            ),
        ),
        None => {
            let known: Vec<String> = sources
                .iter()
                .filter(|(_, c)| c.type_name() == want)
                .map(|(n, _)| n.clone())
                .collect();
            err(
                span,
                format!(
                    "unknown source `{from}`; add [sources.{from}] with type = \"{want}\"{}",
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (defined {want} sources: {})", known.join(", "))
                    }
                ),
            )
        }
    }
}

/// Checks `[sources.*]` without I/O: `${...}` syntax, ranges, no secret inline.
fn validate_connections(
    raw: &BTreeMap<String, Spanned<RawConnection>>,
) -> Result<BTreeMap<String, Connection>, Invalid> {
    let mut out = BTreeMap::new();
    for (name, c) in raw {
        let span = c.span();
        let ok_name = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if !ok_name {
            return err(
                span,
                format!("source name `{name}` must be ASCII letters, digits, `_` or `-`"),
            );
        }
        let env_checked = |field: &str, value: &Option<String>| -> Result<(), Invalid> {
            match value {
                Some(v) => crate::source::env::check(v)
                    .map_err(|e| (span.clone(), format!("sources.{name}.{field}: {e}"))),
                None => Ok(()),
            }
        };
        let connection = match c.get_ref() {
            RawConnection::Dynamodb {
                region,
                endpoint_url,
                profile,
                segments,
            } => {
                env_checked("region", region)?;
                env_checked("endpoint_url", endpoint_url)?;
                env_checked("profile", profile)?;
                let segments = segments.unwrap_or(4);
                if !(1..=256).contains(&segments) {
                    return err(
                        span,
                        format!(
                            "sources.{name}.segments must be between 1 and 256, got {segments}"
                        ),
                    );
                }
                Connection::Dynamodb(DynamoConnection {
                    region: region.clone(),
                    endpoint_url: endpoint_url.clone(),
                    profile: profile.clone(),
                    segments,
                })
            }
            RawConnection::Opensearch {
                url,
                username,
                password_env,
                api_key_env,
                ca_cert,
                danger_insecure_skip_verify,
                page_size,
                request_timeout_ms,
            } => {
                env_checked("url", &Some(url.clone()))?;
                env_checked("username", username)?;
                env_checked("ca_cert", ca_cert)?;
                if username.is_some() != password_env.is_some() {
                    return err(
                        span,
                        format!("sources.{name}: basic auth needs both `username` and `password_env` (the name of the variable holding the password)"),
                    );
                }
                if password_env.is_some() && api_key_env.is_some() {
                    return err(
                        span,
                        format!("sources.{name}: use basic auth or `api_key_env`, not both"),
                    );
                }
                let page_size = page_size.unwrap_or(1_000);
                if !(1..=10_000).contains(&page_size) {
                    return err(
                        span,
                        format!(
                            "sources.{name}.page_size must be between 1 and 10000, got {page_size}"
                        ),
                    );
                }
                let request_timeout_ms = request_timeout_ms.unwrap_or(30_000);
                if !(100..=600_000).contains(&request_timeout_ms) {
                    return err(
                        span,
                        format!("sources.{name}.request_timeout_ms must be between 100 and 600000, got {request_timeout_ms}"),
                    );
                }
                Connection::Opensearch(OpenSearchConnection {
                    url: url.clone(),
                    username: username.clone(),
                    password_env: password_env.clone(),
                    api_key_env: api_key_env.clone(),
                    ca_cert: ca_cert.clone(),
                    danger_insecure_skip_verify: *danger_insecure_skip_verify,
                    page_size,
                    request_timeout_ms,
                })
            }
            RawConnection::Embedded { data_dir } => {
                env_checked("data_dir", &Some(data_dir.clone()))?;
                if data_dir.is_empty() {
                    return err(span, format!("sources.{name}.data_dir must not be empty"));
                }
                Connection::Embedded(EmbeddedConnection {
                    data_dir: data_dir.clone(),
                })
            }
        };
        out.insert(name.clone(), connection);
    }
    Ok(out)
}

pub(super) fn validate(raw: RawSpec, text: &str) -> Result<Model, Invalid> {
    if *raw.version.get_ref() != 1 {
        return err(
            raw.version.span(),
            format!(
                "unsupported spec version {}; this tsunagu reads version 1",
                raw.version.get_ref()
            ),
        );
    }
    let mut settings = Settings::default();
    if let Some(s) = raw.settings {
        let s = s.into_inner();
        if let Some(c) = s.chunk_rows {
            if *c.get_ref() == 0 {
                return err(c.span(), "chunk_rows must be at least 1");
            }
            settings.chunk_rows = *c.get_ref();
        }
        if let Some(m) = s.max_reject_share {
            let v = *m.get_ref();
            if !(0.0..=1.0).contains(&v) {
                return err(m.span(), "max_reject_share must be between 0 and 1");
            }
            settings.max_reject_share = v;
        }
        if let Some(w) = s.workers {
            let v = *w.get_ref();
            if !(1..=64).contains(&v) {
                return err(w.span(), "workers must be between 1 and 64");
            }
            settings.workers = v;
        }
        if let Some(c) = s.load_connections {
            let v = *c.get_ref();
            if !(1..=16).contains(&v) {
                return err(c.span(), "load_connections must be between 1 and 16");
            }
            settings.load_connections = v;
        }
        if let Some(c) = s.parallel_tables {
            let v = *c.get_ref();
            if !(1..=64).contains(&v) {
                return err(c.span(), "parallel_tables must be between 1 and 64");
            }
            settings.parallel_tables = v;
        }
        if let Some(c) = s.chunks {
            match crate::chunk_store::S3Location::parse(c.get_ref()) {
                Ok(l) => settings.chunks = Some(l),
                Err(m) => return err(c.span(), m),
            }
        }
    }
    if raw.tables.is_empty() {
        return err(0..0, "the spec defines no table; add a [[tables]] section");
    }
    let sources = validate_connections(&raw.sources)?;
    let mut table_index: HashMap<String, usize> = HashMap::new();
    for (i, t) in raw.tables.iter().enumerate() {
        check_identifier(&t.name, "table name")?;
        if table_index.insert(t.name.get_ref().clone(), i).is_some() {
            return err(
                t.name.span(),
                format!("table `{}` is defined twice", t.name.get_ref()),
            );
        }
    }
    // First pass: columns and keys; foreign keys need every table's columns.
    let mut tables = Vec::with_capacity(raw.tables.len());
    let mut column_indexes = Vec::with_capacity(raw.tables.len());
    for t in &raw.tables {
        let name = t.name.get_ref().clone();
        let source = match t.source.get_ref() {
            RawSource::Node { label } => {
                if label.is_empty() {
                    return err(t.source.span(), "a node source needs a non-empty `label`");
                }
                SourceKind::Node {
                    label: label.clone(),
                }
            }
            RawSource::Relationship {
                rel_type,
                start_label,
                end_label,
            } => {
                if rel_type.is_empty() {
                    return err(
                        t.source.span(),
                        "a relationship source needs a non-empty `rel_type`",
                    );
                }
                SourceKind::Relationship {
                    rel_type: rel_type.clone(),
                    start_label: start_label.clone(),
                    end_label: end_label.clone(),
                }
            }
            RawSource::Cypher { query } => {
                if query.trim().is_empty() {
                    return err(t.source.span(), "a cypher source needs a non-empty `query`");
                }
                let (after, limit) = (query.contains("$after"), query.contains("$limit"));
                if after != limit {
                    return err(
                        t.source.span(),
                        "a cypher query pages with both `$after` and `$limit` (`WHERE id > $after ... ORDER BY id LIMIT $limit`) or with neither (streamed)",
                    );
                }
                SourceKind::Cypher {
                    query: query.clone(),
                    paged: after,
                }
            }
            RawSource::Dynamodb { from, table } => {
                check_from(&sources, from, "dynamodb", t.source.span())?;
                let ok = (3..=255).contains(&table.len())
                    && table
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
                if !ok {
                    return err(
                        t.source.span(),
                        format!("`{table}` is not a DynamoDB table name: use 3 to 255 characters among a-z, A-Z, 0-9, '_', '-' and '.'"),
                    );
                }
                SourceKind::Dynamodb {
                    from: from.clone(),
                    table: table.clone(),
                }
            }
            RawSource::Opensearch { from, index, query } => {
                check_from(&sources, from, "opensearch", t.source.span())?;
                if index.is_empty() || index.contains(['/', '?', '#', ' ']) {
                    return err(
                        t.source.span(),
                        format!("`{index}` is not an index name (or pattern)"),
                    );
                }
                let query = match query {
                    Some(q) => {
                        let v: serde_json::Value = serde_json::from_str(q).map_err(|e| {
                            (
                                t.source.span(),
                                format!("`query` is not JSON ({e}); write a query object such as '{{\"term\": {{\"status\": \"open\"}}}}'"),
                            )
                        })?;
                        if !v.is_object() {
                            return err(
                                t.source.span(),
                                "`query` must be a JSON object (a query clause)",
                            );
                        }
                        Some(v.to_string())
                    }
                    None => None,
                };
                SourceKind::Opensearch {
                    from: from.clone(),
                    index: index.clone(),
                    query,
                }
            }
            RawSource::Embedded { from, item_type } => {
                check_from(&sources, from, "embedded", t.source.span())?;
                if item_type.is_empty() {
                    return err(
                        t.source.span(),
                        "an embedded source needs a non-empty `item_type` (the body's `type`, e.g. \"deal\")",
                    );
                }
                SourceKind::Embedded {
                    from: from.clone(),
                    item_type: item_type.clone(),
                }
            }
        };
        if t.columns.get_ref().is_empty() {
            return err(t.columns.span(), format!("table `{name}` has no columns"));
        }
        let mut index = HashMap::new();
        let mut columns = Vec::new();
        for (ci, c) in t.columns.get_ref().iter().enumerate() {
            check_identifier(&c.name, "column name")?;
            if index.insert(c.name.get_ref().clone(), ci).is_some() {
                return err(
                    c.name.span(),
                    format!(
                        "column `{}` is defined twice in table `{name}`",
                        c.name.get_ref()
                    ),
                );
            }
            let ty = SqlType::parse(c.ty.get_ref()).ok_or_else(|| {
                (
                    c.ty.span(),
                    format!(
                        "unknown column type `{}`; use bigint, int, bigint unsigned, int unsigned, boolean, varchar(N) (1..16383), decimal(P,S) (P 1..65, S 0..30, S <= P), text, date or datetime",
                        c.ty.get_ref()
                    ),
                )
            })?;
            let from_name = c
                .from
                .as_ref()
                .map(|f| f.get_ref().clone())
                .unwrap_or_else(|| c.name.get_ref().clone());
            let from = match (&c.from_relationship, from_name.as_str()) {
                (Some(r), _) => relationship_ref(c, r, &name, &source)?,
                (None, "_id") => FieldRef::Id,
                (None, "_start" | "_end") if !matches!(source, SourceKind::Relationship { .. }) => {
                    let span = c.from.as_ref().map(|f| f.span()).unwrap_or(c.name.span());
                    return err(span, format!("`{from_name}` exists only for relationship sources; table `{name}` reads {}", source.describe()));
                }
                (None, "_start") => FieldRef::Start,
                (None, "_end") => FieldRef::End,
                (None, "") => {
                    let span = c.from.as_ref().map(|f| f.span()).unwrap_or(c.name.span());
                    return err(
                        span,
                        "`from` must name a property, `_id`, `_start` or `_end`",
                    );
                }
                (None, p) => FieldRef::Property(p.to_string()),
            };
            let mut steps = Vec::new();
            for s in &c.transforms {
                steps.push(match s.get_ref() {
                    RawTransform::Trim => Step::Trim,
                    RawTransform::Nfkc => Step::Nfkc,
                    RawTransform::NullIfEmpty => Step::NullIfEmpty,
                    RawTransform::Lower => Step::Lower,
                    RawTransform::Upper => Step::Upper,
                    RawTransform::Prefecture => Step::Prefecture,
                    RawTransform::StripPrefecture => Step::StripPrefecture,
                    RawTransform::ParseDate(f) | RawTransform::ParseDatetime(f) if f.is_empty() => {
                        return err(
                            s.span(),
                            "give at least one format, e.g. { parse_date = [\"%Y/%m/%d\"] }",
                        );
                    }
                    RawTransform::ParseDate(f) | RawTransform::ParseDatetime(f) => {
                        let formats = match DateFormats::new(f.clone()) {
                            Ok(formats) => formats,
                            Err(e) => return err(s.span(), e),
                        };
                        match s.get_ref() {
                            RawTransform::ParseDate(_) => Step::ParseDate(formats),
                            _ => Step::ParseDatetime(formats),
                        }
                    }
                });
            }
            let default = match &c.default {
                Some(d) => {
                    if let Err(e) = crate::transform::cast(d.get_ref().clone(), ty) {
                        return err(
                            d.span(),
                            format!(
                                "default `{}` is not a valid {ty}: {}",
                                d.get_ref(),
                                e.detail
                            ),
                        );
                    }
                    Some(d.get_ref().clone())
                }
                None => None,
            };
            let map = match &c.map {
                Some(m) => {
                    for v in m.get_ref().values() {
                        if let Err(e) = crate::transform::cast(v.clone(), ty) {
                            return err(
                                m.span(),
                                format!("value map target `{v}` is not a valid {ty}: {}", e.detail),
                            );
                        }
                    }
                    Some(m.get_ref().clone())
                }
                None => None,
            };
            let (min, max) = check_bounds(c, ty)?;
            columns.push(Column {
                name: c.name.get_ref().clone(),
                ty,
                from,
                required: c.required,
                default,
                steps,
                map,
                description: c.description.clone(),
                min,
                max,
            });
        }
        if t.primary_key.get_ref().is_empty() {
            return err(
                t.primary_key.span(),
                format!("table `{name}` needs a primary_key (duplicates are detected on it)"),
            );
        }
        let primary_key = resolve_columns(t.primary_key.get_ref(), &name, &index)?;
        let mut unique = Vec::new();
        for u in &t.unique {
            if u.get_ref().is_empty() {
                return err(u.span(), "a unique key needs at least one column");
            }
            unique.push(resolve_columns(u.get_ref(), &name, &index)?);
        }
        for &k in primary_key.iter().chain(unique.iter().flatten()) {
            if columns[k].ty == SqlType::Text {
                return err(
                    t.primary_key.span(),
                    format!(
                        "column `{}` of type text cannot be part of a key; use varchar(N)",
                        columns[k].name
                    ),
                );
            }
        }
        tables.push(Table {
            name,
            description: t.description.clone(),
            source,
            columns,
            primary_key,
            unique,
            foreign_keys: Vec::new(),
        });
        column_indexes.push(index);
    }
    for (ti, t) in raw.tables.iter().enumerate() {
        for fk in &t.foreign_keys {
            let table_name = &tables[ti].name;
            let columns = resolve_columns(fk.columns.get_ref(), table_name, &column_indexes[ti])?;
            if columns.is_empty() {
                return err(fk.columns.span(), "a foreign key needs at least one column");
            }
            let parent = *table_index.get(fk.references.get_ref()).ok_or_else(|| {
                let mut known: Vec<&String> = table_index.keys().collect();
                known.sort();
                (
                    fk.references.span(),
                    format!(
                        "foreign key references unknown table `{}` (tables: {})",
                        fk.references.get_ref(),
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let parent_columns = match &fk.ref_columns {
                Some(rc) => {
                    resolve_columns(rc.get_ref(), &tables[parent].name, &column_indexes[parent])?
                }
                None => tables[parent].primary_key.clone(),
            };
            let span = fk.columns.span();
            if parent_columns.len() != columns.len() {
                return err(
                    span,
                    format!(
                        "foreign key has {} column(s) but references {} column(s) of `{}`",
                        columns.len(),
                        parent_columns.len(),
                        tables[parent].name
                    ),
                );
            }
            let p = &tables[parent];
            if p.primary_key != parent_columns && !p.unique.contains(&parent_columns) {
                return err(
                    span,
                    format!(
                        "foreign key must reference the primary key or a unique key of `{}`",
                        p.name
                    ),
                );
            }
            for (&c, &pc) in columns.iter().zip(&parent_columns) {
                let (ct, pt) = (tables[ti].columns[c].ty, p.columns[pc].ty);
                if ct != pt {
                    return err(
                        span,
                        format!(
                            "column `{}` ({ct}) must have the type of `{}.{}` ({pt})",
                            tables[ti].columns[c].name, p.name, p.columns[pc].name
                        ),
                    );
                }
            }
            tables[ti].foreign_keys.push(ForeignKey {
                columns,
                parent,
                parent_columns,
                deferred: fk.deferred,
            });
        }
    }
    Ok(Model {
        settings,
        tables,
        sources,
        fingerprint: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
    })
}

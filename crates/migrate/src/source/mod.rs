//! Sources of rows. Sources are only read, never written.
//!
//! [`apoc`] reads Neo4j APOC JSON-lines exports (`apoc.export.json.all` with
//! `{jsonFormat: 'JSON_LINES'}`): one object per line, nodes as
//! `{"type":"node","id":..,"labels":[..],"properties":{..}}` and relationships as
//! `{"type":"relationship","id":..,"label":..,"properties":{..},"start":{"id":..,"labels":[..]},"end":{..}}`.
//! [`bolt`] reads a live Neo4j (or any Bolt 4.4/5.x server) in id ranges, and Cypher
//! queries, and writes the same format, so everything after the source step is shared.
//!
//! The other sources are named connections of the spec (`[sources.NAME]`), connected by
//! [`external`] once `${...}` references are resolved ([`env`]): [`dynamodb`] (parallel
//! Scan segments), [`opensearch`] (point in time + `search_after`) and [`embedded`]
//! (tsunagu's own SQLite store, opened read-only). Each writes its rows as APOC node
//! records ([`node_line`]) into its partition file.

pub mod apoc;
pub mod bolt;
pub mod dynamodb;
pub mod embedded;
pub mod env;
pub mod external;
pub mod opensearch;

use crate::error::{Error, Result};
use crate::spec::SourceKind;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What a table reads, and the name of its partition file. Tables reading the same thing
/// share one partition: every table of a label or a relationship type (whatever its
/// endpoint labels), and otherwise tables with the same source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartitionKey {
    Label(String),
    RelType(String),
    /// A cypher query, a DynamoDB table, an index, items of the embedded store.
    Source(SourceKind),
}

impl PartitionKey {
    pub fn of(source: &SourceKind) -> Self {
        match source {
            SourceKind::Node { label } => PartitionKey::Label(label.clone()),
            SourceKind::Relationship { rel_type, .. } => PartitionKey::RelType(rel_type.clone()),
            other => PartitionKey::Source(other.clone()),
        }
    }

    /// The key of [`apoc::Partitions`] maps: `label:X`, `rel:X`, `cypher:<hash>`,
    /// `dynamodb:<source>/<table>`, `opensearch:<source>/<index>[?<hash of the query>]`,
    /// `embedded:<source>/<item type>`.
    pub fn name(&self) -> String {
        let hash = |text: &str| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()));
        match self {
            PartitionKey::Label(l) | PartitionKey::Source(SourceKind::Node { label: l }) => {
                format!("label:{l}")
            }
            PartitionKey::RelType(t)
            | PartitionKey::Source(SourceKind::Relationship { rel_type: t, .. }) => {
                format!("rel:{t}")
            }
            PartitionKey::Source(SourceKind::Cypher { query, .. }) => {
                format!("cypher:{}", hash(query))
            }
            PartitionKey::Source(SourceKind::Dynamodb { from, table }) => {
                format!("dynamodb:{from}/{table}")
            }
            PartitionKey::Source(SourceKind::Opensearch { from, index, query }) => match query {
                Some(q) => format!("opensearch:{from}/{index}?{}", hash(q)),
                None => format!("opensearch:{from}/{index}"),
            },
            PartitionKey::Source(SourceKind::Embedded { from, item_type }) => {
                format!("embedded:{from}/{item_type}")
            }
        }
    }

    /// Whether the graph given by `--source` is read for this key.
    pub fn reads_graph(&self) -> bool {
        match self {
            PartitionKey::Label(_) | PartitionKey::RelType(_) => true,
            PartitionKey::Source(s) => s.reads_graph(),
        }
    }
}

/// The partitions a run reads for `model`: each table's source, then the relationship
/// types its relationship-sourced columns follow (`from_relationship`), which no table
/// may read itself.
pub fn partition_keys(model: &crate::spec::Model) -> Vec<PartitionKey> {
    let mut keys: Vec<PartitionKey> = model
        .tables
        .iter()
        .map(|t| PartitionKey::of(&t.source))
        .collect();
    for t in &model.tables {
        for (_, r) in t.relationship_columns() {
            let key = PartitionKey::RelType(r.rel_type.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// Relationship type → the labels its start nodes carry, sorted, for the types whose
/// every use in the spec names one: a relationship table's `start_label`, a
/// `from_relationship` column going `out` of a node table's label, or coming `in` from a
/// `label`. A relationship whose start node has none of them is not read by any table
/// (a table skips it, a column does not count it), so a Bolt read may leave it out. A
/// type with a use that names no start label is not listed.
pub fn start_labels(model: &crate::spec::Model) -> std::collections::BTreeMap<String, Vec<String>> {
    use crate::spec::Direction;
    use std::collections::{BTreeMap, BTreeSet};
    let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let mut note = |rel_type: &str, label: Option<&String>| match label {
        Some(l) => {
            known
                .entry(rel_type.to_string())
                .or_default()
                .insert(l.clone());
        }
        None => {
            unknown.insert(rel_type.to_string());
        }
    };
    for t in &model.tables {
        if let SourceKind::Relationship {
            rel_type,
            start_label,
            ..
        } = &t.source
        {
            note(rel_type, start_label.as_ref());
        }
        for (_, r) in t.relationship_columns() {
            let start = match (r.direction, &t.source) {
                (Direction::Out, SourceKind::Node { label }) => Some(label),
                (Direction::In, _) => r.label.as_ref(),
                (Direction::Out, _) => None,
            };
            note(&r.rel_type, start);
        }
    }
    known
        .into_iter()
        .filter(|(t, _)| !unknown.contains(t))
        .map(|(t, labels)| (t, labels.into_iter().collect()))
        .collect()
}

/// A record in the APOC node format, as every non-graph reader writes its rows: the id,
/// one label naming where it came from, and the properties.
pub fn node_line(id: &str, label: &str, properties: Map<String, Value>) -> Value {
    serde_json::json!({"type": "node", "id": id, "labels": [label], "properties": properties})
}

/// Joins the files a source read in parallel (id classes, scan segments) into `path`,
/// in the given order so that the partition's order is deterministic, and removes them.
pub fn join_parts(parts: &[PathBuf], path: &Path) -> Result<()> {
    let mut joined = BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    for part in parts {
        let mut f = std::fs::File::open(part).map_err(|e| Error::io(part, e))?;
        std::io::copy(&mut f, &mut joined).map_err(|e| Error::io(path, e))?;
        std::fs::remove_file(part).map_err(|e| Error::io(part, e))?;
    }
    joined.flush().map_err(|e| Error::io(path, e))?;
    joined.get_ref().sync_all().map_err(|e| Error::io(path, e))
}

/// A partition file written from async code: each page's lines are written by a blocking
/// task, so no reader thread of the runtime waits on the disk.
pub struct PageWriter {
    path: PathBuf,
    file: Option<std::fs::File>,
    pub records: u64,
}

impl PageWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
            records: 0,
        })
    }

    /// Writes one page of records (one JSON line each).
    pub async fn write_page(&mut self, lines: Vec<Value>) -> Result<()> {
        let mut buf = Vec::with_capacity(lines.len() * 256);
        for line in &lines {
            // Serializing a `Value` to a Vec cannot fail.
            serde_json::to_writer(&mut buf, line)
                .map_err(|e| Error::Other(format!("encoding a record: {e}")))?;
            buf.push(b'\n');
        }
        self.records += lines.len() as u64;
        let mut file = self.file.take().ok_or_else(|| {
            Error::Other(format!("{}: written after a failure", self.path.display()))
        })?;
        let path = self.path.clone();
        let file = tokio::task::spawn_blocking(move || {
            file.write_all(&buf)
                .map(|_| file)
                .map_err(|e| Error::io(&path, e))
        })
        .await
        .map_err(|e| Error::Other(format!("write task: {e}")))??;
        self.file = Some(file);
        Ok(())
    }

    /// Syncs the file; returns the records written.
    pub async fn finish(mut self) -> Result<u64> {
        if let Some(file) = self.file.take() {
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || file.sync_all().map_err(|e| Error::io(&path, e)))
                .await
                .map_err(|e| Error::Other(format!("write task: {e}")))??;
        }
        Ok(self.records)
    }
}

/// One node or relationship, borrowing from its line: property values stay raw JSON
/// until a column asks for them, so a record costs no allocation per property.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub id: String,
    pub labels: Vec<Cow<'a, str>>,
    pub start: Option<Endpoint<'a>>,
    pub end: Option<Endpoint<'a>>,
    pub properties: Properties<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint<'a> {
    pub id: String,
    pub labels: Vec<Cow<'a, str>>,
}

/// The properties of a record in line order, values as raw JSON. A name given twice
/// has its last value, as a JSON object reader would.
#[derive(Debug, Clone, Default)]
pub struct Properties<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl PartialEq for Properties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((a, x), (b, y))| a == b && x.get() == y.get())
    }
}

impl<'a> Properties<'a> {
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// A property parsed (`Null` when absent).
    pub fn value(&self, name: &str) -> Value {
        self.get(name)
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or(Value::Null)
    }
}

/// A JSON string borrowed from the line when it holds no escape, as `#[serde(borrow)]`
/// reads a `Cow<str>` field. A `Cow<str>` inside a `Vec` or a map key is otherwise read
/// as an owned copy: one allocation per label and property name of every record.
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> {
    /// The texts as `Cow`s (the same memory: no copy).
    pub fn into_cows(texts: Vec<Text<'a>>) -> Vec<Cow<'a, str>> {
        texts.into_iter().map(|t| t.0).collect()
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Properties<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Properties<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of properties")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> std::result::Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    out.push((k.0, v));
                }
                Ok(Properties(out))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A raw JSON value as text: strings unescaped, numbers and booleans in JSON spelling,
/// arrays and objects as compact JSON text, null as `None`.
///
/// Numbers are never rounded: an integer of any length is its source text, and any other
/// number is printed as serde_json prints its f64 (`1e5` is `100000.0`) only when that
/// is the same decimal value; otherwise (`0.12345678901234567890`, `1e400`) it is the
/// source text. A cast then keeps it (varchar, text) or rejects it with the reason
/// (`out_of_range` for an integer the column's type cannot hold).
pub fn raw_text(value: &RawValue) -> Option<String> {
    let raw = value.get();
    match raw.as_bytes().first() {
        // A string without escapes is its text between the quotes (a raw value is valid
        // JSON, so it holds no control character): no parse.
        Some(b'"') if !raw.as_bytes().contains(&b'\\') => {
            raw.get(1..raw.len() - 1).map(str::to_owned)
        }
        Some(b'"') => serde_json::from_str::<String>(raw).ok(),
        Some(b'n') => None,
        Some(b't') => Some("true".into()),
        Some(b'f') => Some("false".into()),
        // A plain integer prints as it is written (the common case, without a parse).
        _ if plain_integer(raw) => Some(raw.to_string()),
        Some(b'-' | b'0'..=b'9') => Some(exact_number(raw)),
        _ => serde_json::from_str::<Value>(raw)
            .ok()
            .map(|v| v.to_string()),
    }
}

/// A JSON number that is not a short integer, as text without loss (see [`raw_text`]).
fn exact_number(raw: &str) -> String {
    if crate::transform::canonical_integer(raw) {
        return raw.to_string();
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Number(_)) => {
            let printed = v.to_string();
            if decimal_value(&printed).is_some() && decimal_value(&printed) == decimal_value(raw) {
                printed
            } else {
                raw.to_string()
            }
        }
        _ => raw.to_string(),
    }
}

/// A decimal number's exact value as (negative, significant digits without leading or
/// trailing zeros, exponent of the last digit): equal values give equal keys.
fn decimal_value(text: &str) -> Option<(bool, String, i64)> {
    let crate::transform::NumberParts {
        negative,
        int,
        frac,
        exponent,
    } = crate::transform::number_parts(text)?;
    let digits = format!("{int}{frac}");
    let exponent = exponent.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let trimmed = digits.trim_end_matches('0');
    let exponent = exponent + i64::try_from(digits.len() - trimmed.len()).ok()?;
    let significant = trimmed.trim_start_matches('0');
    if significant.is_empty() {
        // Zero: the sign does not matter to the value, but -0 prints as -0.0: keep it.
        return Some((negative, String::new(), 0));
    }
    Some((negative, significant.to_string(), exponent))
}

/// Whether `raw` is a JSON integer that serde_json prints back unchanged: a canonical
/// integer (no `-0`, which is read as a float) of up to 18 digits, so it fits in 64 bits.
fn plain_integer(raw: &str) -> bool {
    raw.trim_start_matches('-').len() <= 18 && crate::transform::canonical_integer(raw)
}

impl Record<'_> {
    /// The raw value of a field as text (`None` when absent or null).
    pub fn field(&self, field: &crate::spec::FieldRef) -> Option<String> {
        use crate::spec::FieldRef;
        match field {
            FieldRef::Id => Some(self.id.clone()),
            FieldRef::Start => self.start.as_ref().map(|e| e.id.clone()),
            FieldRef::End => self.end.as_ref().map(|e| e.id.clone()),
            FieldRef::Property(p) => self.properties.get(p).and_then(raw_text),
            // Not in the record: joined from the relationship partition by the export.
            FieldRef::Relationship(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A type's start labels are known only when every use names one.
    #[test]
    fn start_labels_of_the_spec() {
        let spec = r#"version = 1
[[tables]]
name = "notes"
source = { type = "node", label = "Note" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "deal_id", type = "bigint", from_relationship = { type = "ON", direction = "out" } },
  { name = "list_id", type = "bigint", from_relationship = { type = "CONTAINS", direction = "in", label = "List" } },
  { name = "owner_id", type = "bigint", from_relationship = { type = "OWNS", direction = "in" } },
]

"#;
        // Relationship tables: (type, start label).
        let spec = [("TAGGED", "Deal"), ("ON", "Memo"), ("LINKS", "")].iter().fold(
            spec.to_string(),
            |spec, (t, start)| {
                let start = if start.is_empty() { String::new() } else { format!(", start_label = \"{start}\"") };
                spec + &format!("[[tables]]\nname = \"{t}\"\nsource = {{ type = \"relationship\", rel_type = \"{t}\"{start} }}\nprimary_key = [\"id\"]\ncolumns = [{{ name = \"id\", type = \"bigint\", from = \"_id\" }}]\n")
            },
        );
        let model = crate::spec::parse(&spec, "test").unwrap();
        let want: std::collections::BTreeMap<String, Vec<String>> = [
            ("CONTAINS".to_string(), vec!["List".to_string()]),
            (
                "ON".to_string(),
                vec!["Memo".to_string(), "Note".to_string()],
            ),
            ("TAGGED".to_string(), vec!["Deal".to_string()]),
        ]
        .into();
        assert_eq!(start_labels(&model), want);
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    #[test]
    fn raw_values_as_text() {
        assert_eq!(raw_text(&raw("12")).as_deref(), Some("12"));
        assert_eq!(raw_text(&raw("-0")).as_deref(), Some("-0.0"));
        assert_eq!(raw_text(&raw("1e5")).as_deref(), Some("100000.0"));
        assert_eq!(raw_text(&raw("2.50")).as_deref(), Some("2.5"));
        // Never rounded through f64: the source text is kept.
        for exact in [
            "12345678901234567890123",
            "-98765432109876543210",
            "18446744073709551616",
            "0.12345678901234567890",
            "1.0000000000000000001",
            "1e400",
            "123456789012345678901234567890.5",
        ] {
            assert_eq!(raw_text(&raw(exact)).as_deref(), Some(exact));
        }
        // Kept for a varchar, rejected with the reason where the type cannot hold it.
        use crate::spec::SqlType;
        use crate::transform::{cast, RejectKind};
        let big = raw_text(&raw("12345678901234567890123")).unwrap();
        assert_eq!(
            cast(big.clone(), SqlType::Varchar(30)).unwrap(),
            "12345678901234567890123"
        );
        let r = cast(big, SqlType::BigInt).unwrap_err();
        assert_eq!(r.kind, RejectKind::OutOfRange);
        assert!(
            r.detail
                .starts_with("`12345678901234567890123` is outside bigint"),
            "{}",
            r.detail
        );
        let r = cast(
            raw_text(&raw("0.12345678901234567890")).unwrap(),
            SqlType::BigInt,
        );
        assert_eq!(r.unwrap_err().kind, RejectKind::BadType);
        assert_eq!(raw_text(&raw("true")).as_deref(), Some("true"));
        assert_eq!(raw_text(&raw("null")), None);
        assert_eq!(raw_text(&raw(r#""a\"\u3042""#)).as_deref(), Some("a\"あ"));
        assert_eq!(
            raw_text(&raw(r#"[ "a", 1 ]"#)).as_deref(),
            Some(r#"["a",1]"#)
        );
    }

    proptest! {
        /// An integer of any length is its own text.
        #[test]
        fn long_integers_are_kept_exactly(n in "-?[1-9][0-9]{0,60}") {
            prop_assert_eq!(raw_text(&raw(&n)), Some(n.clone()));
        }

        /// A decimal is either kept as written or printed as the same value.
        #[test]
        fn decimals_keep_their_value(int in "-?[1-9][0-9]{0,25}", frac in "[0-9]{1,25}") {
            let n = format!("{int}.{frac}");
            let text = raw_text(&raw(&n)).unwrap();
            prop_assert_eq!(decimal_value(&text), decimal_value(&n), "{} -> {}", n, text);
        }

        /// Reading a raw value gives the text a parse of the whole line gave: borrowing
        /// changes nothing a column sees.
        #[test]
        fn raw_text_matches_the_parsed_value(v in prop_oneof![
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<u64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>().prop_map(|n| serde_json::json!(n)),
            "\\PC{0,12}".prop_map(|s| serde_json::json!(s)),
            any::<bool>().prop_map(|b| serde_json::json!(b)),
            Just(serde_json::json!(null)),
        ]) {
            // What a whole-line parse gave: the value as read back from its text; for a
            // number, the same decimal value (serde_json's float parse may be one unit in
            // the last place off, so its print is not always the source's value).
            let text = v.to_string();
            let got = raw_text(&raw(&text));
            match serde_json::from_str::<Value>(&text).unwrap() {
                Value::Null => prop_assert_eq!(got, None),
                Value::String(s) => prop_assert_eq!(got, Some(s)),
                Value::Number(_) => {
                    let got = got.unwrap_or_default();
                    prop_assert_eq!(decimal_value(&got), decimal_value(&text), "{} -> {}", text, got);
                }
                other => prop_assert_eq!(got, Some(other.to_string())),
            }
        }
    }
}

//! The spec as written: serde structs with spans, before validation.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub settings: Option<Spanned<RawSettings>>,
    /// Named connections to non-graph sources (`[sources.NAME]`), used by tables' `from`.
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<RawConnection>>,
    #[serde(default)]
    pub tables: Vec<RawTable>,
}

/// A `[sources.NAME]` table. String values may hold `${VAR}` / `${VAR:-default}`, resolved
/// from the environment when connecting. Secrets are never written here: only the names
/// of the environment variables holding them.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawConnection {
    Dynamodb {
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        endpoint_url: Option<String>,
        #[serde(default)]
        profile: Option<String>,
        #[serde(default)]
        segments: Option<u32>,
    },
    Opensearch {
        url: String,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password_env: Option<String>,
        #[serde(default)]
        api_key_env: Option<String>,
        #[serde(default)]
        ca_cert: Option<String>,
        #[serde(default)]
        danger_insecure_skip_verify: bool,
        #[serde(default)]
        page_size: Option<u32>,
        #[serde(default)]
        request_timeout_ms: Option<u64>,
    },
    Embedded {
        data_dir: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub chunk_rows: Option<Spanned<u64>>,
    pub max_reject_share: Option<Spanned<f64>>,
    pub workers: Option<Spanned<u32>>,
    pub load_connections: Option<Spanned<u32>>,
    pub parallel_tables: Option<Spanned<u32>>,
    pub chunks: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub source: Spanned<RawSource>,
    pub primary_key: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub unique: Vec<Spanned<Vec<Spanned<String>>>>,
    pub columns: Spanned<Vec<RawColumn>>,
    #[serde(default)]
    pub foreign_keys: Vec<RawForeignKey>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSource {
    /// Every node carrying `label`.
    Node { label: String },
    /// Every relationship of `rel_type`, optionally only between the given labels.
    Relationship {
        rel_type: String,
        #[serde(default)]
        start_label: Option<String>,
        #[serde(default)]
        end_label: Option<String>,
    },
    /// The rows of a Cypher query on the graph given by `--source bolt://...`.
    Cypher { query: String },
    /// Every item of a DynamoDB table, through the connection `from`.
    Dynamodb { from: String, table: String },
    /// Every document of an index, optionally filtered by `query` (a JSON query).
    Opensearch {
        from: String,
        index: String,
        #[serde(default)]
        query: Option<String>,
    },
    /// Every item of one entity type in tsunagu's embedded store.
    Embedded { from: String, item_type: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// The value is the id of the node at the other end of a relationship of this node
    /// (node tables only), instead of a property.
    #[serde(default)]
    pub from_relationship: Option<Spanned<RawRelationshipRef>>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Spanned<String>>,
    #[serde(default)]
    pub transforms: Vec<Spanned<RawTransform>>,
    #[serde(default)]
    pub map: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub description: Option<String>,
    /// Smallest accepted value of an integer column.
    #[serde(default)]
    pub min: Option<Spanned<i64>>,
    /// Largest accepted value of an integer column.
    #[serde(default)]
    pub max: Option<Spanned<i64>>,
}

/// `from_relationship = { type = "FOR_COMPANY", direction = "out", label = "Company" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelationshipRef {
    #[serde(rename = "type")]
    pub rel_type: String,
    pub direction: RawDirection,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawDirection {
    Out,
    In,
}

/// A transform step: a bare name (`"trim"`) or a one-key table (`{ parse_date = [...] }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawTransform {
    Trim,
    Nfkc,
    NullIfEmpty,
    Lower,
    Upper,
    Prefecture,
    StripPrefecture,
    ParseDate(Vec<String>),
    ParseDatetime(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForeignKey {
    pub columns: Spanned<Vec<Spanned<String>>>,
    pub references: Spanned<String>,
    #[serde(default)]
    pub ref_columns: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub deferred: bool,
}

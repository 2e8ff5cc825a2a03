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
    #[serde(default)]
    pub tables: Vec<RawTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub chunk_rows: Option<Spanned<u64>>,
    pub max_reject_share: Option<Spanned<f64>>,
    pub workers: Option<Spanned<u32>>,
    pub load_connections: Option<Spanned<u32>>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    #[serde(default)]
    pub from: Option<Spanned<String>>,
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

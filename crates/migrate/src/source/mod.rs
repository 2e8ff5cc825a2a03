//! Sources of rows. Sources are only read, never written.
//!
//! [`apoc`] reads Neo4j APOC JSON-lines exports (`apoc.export.json.all` with
//! `{jsonFormat: 'JSON_LINES'}`): one object per line, nodes as
//! `{"type":"node","id":..,"labels":[..],"properties":{..}}` and relationships as
//! `{"type":"relationship","id":..,"label":..,"properties":{..},"start":{"id":..,"labels":[..]},"end":{..}}`.
//! [`bolt`] reads a live Neo4j (or any Bolt 4.4/5.x server) with keyset paging and writes
//! the same format, so everything after the source step is shared.

pub mod apoc;
pub mod bolt;

use serde_json::{Map, Value};

/// One node or relationship.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub labels: Vec<String>,
    pub start: Option<Endpoint>,
    pub end: Option<Endpoint>,
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub labels: Vec<String>,
}

impl Record {
    /// The raw value of a field as text (`None` when absent or null).
    pub fn field(&self, field: &crate::spec::FieldRef) -> Option<String> {
        use crate::spec::FieldRef;
        match field {
            FieldRef::Id => Some(self.id.clone()),
            FieldRef::Start => self.start.as_ref().map(|e| e.id.clone()),
            FieldRef::End => self.end.as_ref().map(|e| e.id.clone()),
            FieldRef::Property(p) => self.properties.get(p).and_then(crate::transform::raw_text),
        }
    }
}

//! The closed set of entity kinds stored as item bodies in the primary store.

use crate::activity::ActivityLog;
use crate::{Company, Deal, ItemKey, SalesList};
use serde::{Deserialize, Serialize};

/// An item body. Tagged by `type` so that every kind shares the same store and the same
/// pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entity {
    ActivityLog(ActivityLog),
    Company(Company),
    Deal(Deal),
    SalesList(SalesList),
}

/// The kind of an [`Entity`], by its wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    ActivityLog,
    Company,
    Deal,
    SalesList,
}

impl EntityKind {
    pub const ALL: [EntityKind; 4] = [
        EntityKind::ActivityLog,
        EntityKind::Company,
        EntityKind::Deal,
        EntityKind::SalesList,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::ActivityLog => "activity_log",
            EntityKind::Company => "company",
            EntityKind::Deal => "deal",
            EntityKind::SalesList => "sales_list",
        }
    }

    fn expected() -> String {
        Self::ALL.map(|k| format!("{:?}", k.as_str())).join(", ")
    }
}

/// A body that is not a valid entity, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid item body at `{path}`: {message}")]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

impl Entity {
    /// Decodes a body strictly (unknown fields rejected), naming the field that is wrong.
    pub fn from_json(body: &serde_json::Value) -> Result<Self, DecodeError> {
        let fields = body.as_object().ok_or_else(|| DecodeError {
            path: ".".into(),
            message: "item body must be a JSON object".into(),
        })?;
        let kind = fields
            .get("type")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| DecodeError {
                path: "type".into(),
                message: format!(
                    "missing or not a string; expected one of {}",
                    EntityKind::expected()
                ),
            })?;
        // Decode the variant's fields directly (not through serde's internally tagged
        // enum, which buffers the content and loses the path of the failing field).
        match kind {
            "activity_log" => decode_fields(fields).map(Entity::ActivityLog),
            "company" => decode_fields(fields).map(Entity::Company),
            "deal" => decode_fields(fields).map(Entity::Deal),
            "sales_list" => decode_fields(fields).map(Entity::SalesList),
            other => Err(DecodeError {
                path: "type".into(),
                message: format!(
                    "unknown entity type {other:?}; expected one of {}",
                    EntityKind::expected()
                ),
            }),
        }
    }

    /// Decodes a body from text, naming the field that is wrong.
    pub fn from_json_str(text: &str) -> Result<Self, DecodeError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError {
            path: ".".into(),
            message: e.to_string(),
        })?;
        Self::from_json(&value)
    }

    pub fn kind(&self) -> EntityKind {
        match self {
            Entity::ActivityLog(_) => EntityKind::ActivityLog,
            Entity::Company(_) => EntityKind::Company,
            Entity::Deal(_) => EntityKind::Deal,
            Entity::SalesList(_) => EntityKind::SalesList,
        }
    }

    /// Where the entity lives in the primary store.
    pub fn key(&self) -> ItemKey {
        match self {
            Entity::ActivityLog(a) => a.key(),
            Entity::Company(c) => c.key(),
            Entity::Deal(d) => d.key(),
            Entity::SalesList(l) => l.key(),
        }
    }

    /// The owning tenant.
    pub fn tenant_id(&self) -> &str {
        match self {
            Entity::ActivityLog(a) => &a.tenant_id,
            Entity::Company(c) => &c.tenant_id,
            Entity::Deal(d) => &d.tenant_id,
            Entity::SalesList(l) => &l.tenant_id,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serializing these plain structs cannot fail: no maps with non-string keys.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Decodes a variant's fields, every member of the body but `type`, read in place: no
/// copy of the body is made to leave `type` out.
fn decode_fields<T: serde::de::DeserializeOwned>(
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, DecodeError> {
    let fields = body
        .iter()
        .filter(|(name, _)| name.as_str() != "type")
        .map(|(name, value)| (name.as_str(), value));
    let fields = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(fields);
    serde_path_to_error::deserialize(fields).map_err(|e| DecodeError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_errors_name_the_field() {
        let body = json!({
            "type": "activity_log", "id": "a", "tenant_id": "t", "deal_id": "d",
            "company_id": "c", "user_id": "u", "action": "fax",
            "occurred_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        });
        let err = Entity::from_json(&body).unwrap_err();
        assert_eq!(err.path, "action");
        assert!(err.message.contains("fax"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let body = json!({
            "type": "activity_log", "id": "a", "tenant_id": "t", "deal_id": "d",
            "company_id": "c", "user_id": "u", "action": "call", "colour": "red",
            "occurred_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        });
        let err = Entity::from_json(&body).unwrap_err();
        assert!(err.message.contains("colour"), "{err}");
    }
}

//! The deal (営業案件): a sales opportunity with one company, owned by a salesperson.

use crate::activity::{id_errors, TAGS_MAX, TAG_MAX_CHARS};
use crate::company::name_problem;
use crate::item::ItemKey;
use crate::{FieldError, ValidationErrors};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest amount accepted, in yen (one trillion).
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;

/// Where a deal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DealStage {
    Lead,
    Qualified,
    Proposal,
    Negotiation,
    Won,
    Lost,
}

impl DealStage {
    pub const ALL: [DealStage; 6] = [
        DealStage::Lead,
        DealStage::Qualified,
        DealStage::Proposal,
        DealStage::Negotiation,
        DealStage::Won,
        DealStage::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DealStage::Lead => "lead",
            DealStage::Qualified => "qualified",
            DealStage::Proposal => "proposal",
            DealStage::Negotiation => "negotiation",
            DealStage::Won => "won",
            DealStage::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown deal stage {s:?}; expected one of {}",
                    Self::ALL.map(|a| a.as_str()).join(", ")
                )
            })
    }

    /// Won and lost deals are closed.
    pub fn is_closed(self) -> bool {
        matches!(self, DealStage::Won | DealStage::Lost)
    }
}

impl fmt::Display for DealStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Deal {
    pub id: String,
    pub tenant_id: String,
    pub company_id: String,
    pub title: String,
    /// The salesperson responsible.
    pub owner_id: String,
    pub stage: DealStage,
    /// Expected amount in yen.
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_close_date: Option<NaiveDate>,
    /// Tags (many-to-many: a deal has many tags, a tag marks many deals). Kept sorted and
    /// without duplicates.
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Deal {
    pub const SORT_KEY: &'static str = "deal";

    /// A deal shares its partition with its activities, so its changes and theirs keep
    /// one order in the change stream.
    pub fn key(&self) -> ItemKey {
        Self::key_for(&self.id)
    }

    pub fn key_for(id: &str) -> ItemKey {
        ItemKey::new(id, Self::SORT_KEY)
    }

    /// Sorts and de-duplicates the tags (the stored form).
    pub fn normalize_tags(tags: &mut Vec<String>) {
        for t in tags.iter_mut() {
            *t = t.trim().to_string();
        }
        tags.sort();
        tags.dedup();
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = id_errors(&[
            ("id", &self.id),
            ("tenant_id", &self.tenant_id),
            ("company_id", &self.company_id),
            ("owner_id", &self.owner_id),
        ]);
        if let Some(message) = name_problem(&self.title) {
            errors.push(FieldError {
                field: "title",
                message,
            });
        }
        if !(0..=AMOUNT_MAX).contains(&self.amount) {
            errors.push(FieldError {
                field: "amount",
                message: format!("must be between 0 and {AMOUNT_MAX} yen"),
            });
        }
        errors.extend(tag_errors(&self.tags));
        if self.updated_at < self.created_at {
            errors.push(FieldError {
                field: "updated_at",
                message: "must not be earlier than created_at".into(),
            });
        }
        ValidationErrors::from_vec(errors)
    }
}

pub(crate) fn tag_errors(tags: &[String]) -> Option<FieldError> {
    if tags.len() > TAGS_MAX {
        Some(FieldError {
            field: "tags",
            message: format!("has {} tags; the limit is {TAGS_MAX}", tags.len()),
        })
    } else if tags
        .iter()
        .any(|t| t.trim().is_empty() || t.chars().count() > TAG_MAX_CHARS)
    {
        Some(FieldError {
            field: "tags",
            message: format!("every tag must be 1 to {TAG_MAX_CHARS} non-blank characters"),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Deal {
        let now = Utc::now();
        Deal {
            id: "dl_1".into(),
            tenant_id: "t1".into(),
            company_id: "co_1".into(),
            title: "基幹システム刷新".into(),
            owner_id: "u1".into(),
            stage: DealStage::Proposal,
            amount: 12_000_000,
            expected_close_date: NaiveDate::from_ymd_opt(2027, 3, 31),
            tags: vec!["重点".into()],
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_valid_deal_passes() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn amounts_and_tags_are_bounded() {
        let mut d = sample();
        d.amount = -1;
        d.tags = vec!["".into()];
        let fields: Vec<_> = d
            .validate()
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["amount", "tags"]);
    }

    #[test]
    fn tags_are_stored_sorted_and_unique() {
        let mut tags = vec![" b".into(), "a".into(), "b".into()];
        Deal::normalize_tags(&mut tags);
        assert_eq!(tags, ["a", "b"]);
    }

    #[test]
    fn stages_round_trip() {
        for s in DealStage::ALL {
            assert_eq!(DealStage::parse(s.as_str()), Ok(s));
        }
        assert!(DealStage::Won.is_closed() && !DealStage::Lead.is_closed());
    }
}

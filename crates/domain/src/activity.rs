//! The activity log (活動履歴): one approach a salesperson made on a deal.

use crate::item::ItemKey;
use crate::{FieldError, ValidationErrors};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest memo accepted, in Unicode scalar values (characters, not bytes).
pub const MEMO_MAX_CHARS: usize = 10_000;
/// The longest id (tenant, deal, company, user, activity) accepted, in bytes.
pub const ID_MAX_BYTES: usize = 128;
/// The most tags one activity may carry, and the longest tag in characters.
pub const TAGS_MAX: usize = 32;
pub const TAG_MAX_CHARS: usize = 64;
/// The longest result code, in characters.
pub const RESULT_MAX_CHARS: usize = 64;
/// How far in the future `occurred_at` may lie (clock skew between devices).
pub const OCCURRED_AT_MAX_FUTURE: Duration = Duration::hours(24);

/// How the salesperson approached the deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    Call,
    Email,
    Visit,
    OnlineMeeting,
    Letter,
    Other,
}

impl ActionType {
    pub const ALL: [ActionType; 6] = [
        ActionType::Call,
        ActionType::Email,
        ActionType::Visit,
        ActionType::OnlineMeeting,
        ActionType::Letter,
        ActionType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Call => "call",
            ActionType::Email => "email",
            ActionType::Visit => "visit",
            ActionType::OnlineMeeting => "online_meeting",
            ActionType::Letter => "letter",
            ActionType::Other => "other",
        }
    }

    /// Parses the wire name; the error lists the accepted names.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown action type {s:?}; expected one of {}",
                    Self::ALL.map(|a| a.as_str()).join(", ")
                )
            })
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One activity on a deal. Its version lives beside it in the store (see
/// [`crate::Version`]); the body holds the business fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivityLog {
    pub id: String,
    /// The tenant (account) that owns the activity; every query is scoped to one.
    pub tenant_id: String,
    /// The deal (営業案件) the activity belongs to: the partition key.
    pub deal_id: String,
    /// The company (取引先) of the deal.
    pub company_id: String,
    /// The salesperson who made the approach.
    pub user_id: String,
    pub action: ActionType,
    /// Outcome code chosen by the tenant (for example `appointment`, `no_answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// Free text, typically Japanese.
    #[serde(default)]
    pub memo: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ActivityLog {
    /// The sort-key prefix of activity items within a deal's partition.
    pub const SORT_PREFIX: &'static str = "activity#";

    /// Where this activity lives in the primary store.
    pub fn key(&self) -> ItemKey {
        Self::key_for(&self.deal_id, &self.id)
    }

    pub fn key_for(deal_id: &str, activity_id: &str) -> ItemKey {
        ItemKey::new(deal_id, format!("{}{activity_id}", Self::SORT_PREFIX))
    }

    /// Checks every rule and reports all violations at once. `now` is passed in so that
    /// the rule on future timestamps is testable.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationErrors> {
        let mut errors = id_errors(&[
            ("id", &self.id),
            ("tenant_id", &self.tenant_id),
            ("deal_id", &self.deal_id),
            ("company_id", &self.company_id),
            ("user_id", &self.user_id),
        ]);
        if let Some(result) = &self.result {
            let n = result.chars().count();
            if n == 0 || n > RESULT_MAX_CHARS || result.trim() != result {
                errors.push(FieldError {
                    field: "result",
                    message: format!(
                        "must be 1 to {RESULT_MAX_CHARS} characters without surrounding spaces, or absent"
                    ),
                });
            }
        }
        let memo_chars = self.memo.chars().count();
        if memo_chars > MEMO_MAX_CHARS {
            errors.push(FieldError {
                field: "memo",
                message: format!("is {memo_chars} characters long; the limit is {MEMO_MAX_CHARS}"),
            });
        }
        if self.tags.len() > TAGS_MAX {
            errors.push(FieldError {
                field: "tags",
                message: format!("has {} tags; the limit is {TAGS_MAX}", self.tags.len()),
            });
        }
        if self
            .tags
            .iter()
            .any(|t| t.trim().is_empty() || t.chars().count() > TAG_MAX_CHARS)
        {
            errors.push(FieldError {
                field: "tags",
                message: format!("every tag must be 1 to {TAG_MAX_CHARS} non-blank characters"),
            });
        }
        let earliest = Utc.with_ymd_and_hms(1970, 1, 2, 0, 0, 0).single();
        if self.occurred_at > now + OCCURRED_AT_MAX_FUTURE {
            errors.push(FieldError {
                field: "occurred_at",
                message: format!(
                    "{} is more than {} hours in the future",
                    self.occurred_at.to_rfc3339(),
                    OCCURRED_AT_MAX_FUTURE.num_hours()
                ),
            });
        } else if earliest.is_some_and(|e| self.occurred_at < e) {
            errors.push(FieldError {
                field: "occurred_at",
                message: "must not be before 1970-01-02".into(),
            });
        }
        if self.updated_at < self.created_at {
            errors.push(FieldError {
                field: "updated_at",
                message: "must not be earlier than created_at".into(),
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

/// One error per id field that breaks the id rule.
pub(crate) fn id_errors(fields: &[(&'static str, &str)]) -> Vec<FieldError> {
    fields
        .iter()
        .filter_map(|&(field, value)| {
            id_problem(value).map(|message| FieldError { field, message })
        })
        .collect()
}

fn id_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("must not be empty".into())
    } else if value.len() > ID_MAX_BYTES {
        Some(format!("must be at most {ID_MAX_BYTES} bytes"))
    } else if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("must not contain spaces or control characters".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(now: DateTime<Utc>) -> ActivityLog {
        ActivityLog {
            id: "a1".into(),
            tenant_id: "t1".into(),
            deal_id: "d1".into(),
            company_id: "c1".into(),
            user_id: "u1".into(),
            action: ActionType::Call,
            result: Some("appointment".into()),
            occurred_at: now,
            memo: "先方の部長と電話。来週訪問のアポ獲得".into(),
            tags: vec!["重点".into()],
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_valid_activity_passes() {
        let now = Utc::now();
        assert_eq!(sample(now).validate(now), Ok(()));
    }

    #[test]
    fn every_violation_is_reported_with_its_field() {
        let now = Utc::now();
        let mut a = sample(now);
        a.id = String::new();
        a.user_id = "has space".into();
        a.memo = "あ".repeat(MEMO_MAX_CHARS + 1);
        a.occurred_at = now + Duration::days(3);
        let errors = a.validate(now).unwrap_err().0;
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["id", "user_id", "memo", "occurred_at"]);
    }

    #[test]
    fn memo_limit_counts_characters_not_bytes() {
        let now = Utc::now();
        let mut a = sample(now);
        a.memo = "営".repeat(MEMO_MAX_CHARS);
        assert_eq!(a.validate(now), Ok(()));
    }

    #[test]
    fn action_type_names_round_trip_and_unknown_names_list_the_choices() {
        for a in ActionType::ALL {
            assert_eq!(ActionType::parse(a.as_str()), Ok(a));
        }
        let err = ActionType::parse("fax").unwrap_err();
        assert!(err.contains("online_meeting"), "{err}");
    }
}

//! The company (取引先): who a deal is with, and where it is.

use crate::activity::id_errors;
use crate::item::ItemKey;
use crate::{FieldError, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest company name, deal title or sales-list name, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// The longest address (after the prefecture), in characters.
pub const ADDRESS_MAX_CHARS: usize = 500;
/// The longest industry label, in characters.
pub const INDUSTRY_MAX_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Company {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// One of the 47 prefectures by its official name (see [`crate::prefecture`]), or
    /// absent when the address does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefecture: Option<String>,
    /// The address after the prefecture (city, street, building).
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Company {
    pub const SORT_KEY: &'static str = "company";

    pub fn key(&self) -> ItemKey {
        Self::key_for(&self.id)
    }

    /// A company is its own partition.
    pub fn key_for(id: &str) -> ItemKey {
        ItemKey::new(id, Self::SORT_KEY)
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = id_errors(&[("id", &self.id), ("tenant_id", &self.tenant_id)]);
        if let Some(message) = name_problem(&self.name) {
            errors.push(FieldError {
                field: "name",
                message,
            });
        }
        if let Some(p) = &self.prefecture {
            if crate::prefecture::canonical(p) != Some(p.as_str()) {
                errors.push(FieldError {
                    field: "prefecture",
                    message: format!(
                        "{p:?} is not a prefecture's official name (for example 東京都, 大阪府, 北海道)"
                    ),
                });
            }
        }
        if self.address.chars().count() > ADDRESS_MAX_CHARS {
            errors.push(FieldError {
                field: "address",
                message: format!("must be at most {ADDRESS_MAX_CHARS} characters"),
            });
        }
        if let Some(industry) = &self.industry {
            let n = industry.chars().count();
            if n == 0 || n > INDUSTRY_MAX_CHARS || industry.trim() != industry {
                errors.push(FieldError {
                    field: "industry",
                    message: format!(
                        "must be 1 to {INDUSTRY_MAX_CHARS} characters without surrounding spaces, or absent"
                    ),
                });
            }
        }
        if self.updated_at < self.created_at {
            errors.push(FieldError {
                field: "updated_at",
                message: "must not be earlier than created_at".into(),
            });
        }
        ValidationErrors::from_vec(errors)
    }
}

/// The rule shared by company names, deal titles and sales-list names.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    let n = name.chars().count();
    if name.trim().is_empty() {
        Some("must not be blank".into())
    } else if n > NAME_MAX_CHARS {
        Some(format!(
            "is {n} characters long; the limit is {NAME_MAX_CHARS}"
        ))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Company {
        let now = Utc::now();
        Company {
            id: "co_1".into(),
            tenant_id: "t1".into(),
            name: "株式会社つなぐ".into(),
            prefecture: Some("東京都".into()),
            address: "千代田区丸の内1-1".into(),
            industry: Some("製造業".into()),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_valid_company_passes() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn a_prefecture_must_be_an_official_name() {
        let mut c = sample();
        c.prefecture = Some("東京".into());
        let errors = c.validate().unwrap_err().0;
        assert_eq!(errors[0].field, "prefecture");
        c.prefecture = None;
        c.name = " ".into();
        assert_eq!(c.validate().unwrap_err().0[0].field, "name");
    }
}

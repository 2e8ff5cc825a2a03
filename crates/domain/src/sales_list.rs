//! The sales list (営業リスト): a named set of deals a team works through.

use crate::activity::id_errors;
use crate::company::name_problem;
use crate::item::ItemKey;
use crate::{FieldError, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most deals one list may hold.
pub const SALES_LIST_MAX_DEALS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SalesList {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// Member deals, in the order they were added, without duplicates.
    #[serde(default)]
    pub deal_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SalesList {
    pub const SORT_KEY: &'static str = "sales_list";

    pub fn key(&self) -> ItemKey {
        Self::key_for(&self.id)
    }

    pub fn key_for(id: &str) -> ItemKey {
        ItemKey::new(id, Self::SORT_KEY)
    }

    /// Adds deals not already in the list, keeping the order; returns how many were new.
    pub fn add_deals<'a>(&mut self, deal_ids: impl IntoIterator<Item = &'a str>) -> usize {
        let mut added = 0;
        for id in deal_ids {
            if !self.deal_ids.iter().any(|d| d == id) {
                self.deal_ids.push(id.to_string());
                added += 1;
            }
        }
        added
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = id_errors(&[("id", &self.id), ("tenant_id", &self.tenant_id)]);
        if let Some(message) = name_problem(&self.name) {
            errors.push(FieldError {
                field: "name",
                message,
            });
        }
        if self.deal_ids.len() > SALES_LIST_MAX_DEALS {
            errors.push(FieldError {
                field: "deal_ids",
                message: format!(
                    "a list holds at most {SALES_LIST_MAX_DEALS} deals; it would hold {}",
                    self.deal_ids.len()
                ),
            });
        }
        ValidationErrors::from_vec(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_deals_keeps_order_and_skips_members() {
        let now = Utc::now();
        let mut list = SalesList {
            id: "sl_1".into(),
            tenant_id: "t1".into(),
            name: "今月の重点".into(),
            deal_ids: vec!["d1".into()],
            created_at: now,
            updated_at: now,
        };
        assert_eq!(list.add_deals(["d2", "d1", "d3", "d2"]), 2);
        assert_eq!(list.deal_ids, ["d1", "d2", "d3"]);
        assert_eq!(list.validate(), Ok(()));
    }
}

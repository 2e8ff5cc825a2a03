//! Deals (営業案件) with their tags, and the deal search that combines deal fields with
//! the company's (prefecture, industry), sales-list membership, and facts about the
//! deal's activities ("no call in the last 14 days", "last visit ended in an
//! appointment").

use super::companies::canonical_prefectures;
use super::{
    check_version, double_option, expect_version, new_id, page_limit, parse_cursor,
    retry_on_conflict, Service, TenantId, Written,
};
use crate::error::ServiceError;
use crate::ports::Expect;
use chrono::{Duration, NaiveDate};
use serde::Deserialize;
use std::collections::HashSet;
use tsunagu_domain::search::{ActivityQuery, RecordKind, RecordQuery};
use tsunagu_domain::{ActionType, Deal, DealStage, Entity, Version};

/// The longest look-back of a `no_activity` condition.
pub const MAX_WITHIN_DAYS: u32 = 3_650;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewDeal {
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 128, pattern = r"^\S+$")
    )]
    pub company_id: String,
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub title: String,
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 128, pattern = r"^\S+$")
    )]
    pub owner_id: String,
    #[serde(default = "default_stage")]
    pub stage: DealStage,
    /// Expected amount in yen.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 1_000_000_000_000i64)
    )]
    pub amount: i64,
    #[serde(default)]
    pub expected_close_date: Option<NaiveDate>,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_stage() -> DealStage {
    DealStage::Lead
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DealPatch {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub title: Option<String>,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 128, pattern = r"^\S+$")
    )]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub stage: Option<DealStage>,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    pub expected_close_date: Option<Option<NaiveDate>>,
    /// Replaces every tag.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Deals without a matching activity in the last `within_days` days.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NoActivity {
    /// Only this kind of activity counts (any kind when absent).
    #[serde(default)]
    pub action: Option<ActionType>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub within_days: u32,
}

/// Deals whose latest activity (of `action`, if given) ended with `result`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LastActivity {
    #[serde(default)]
    pub action: Option<ActionType>,
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"\S")
    )]
    pub result: String,
}

/// A deal search. Every condition given must hold; lists match any of their values.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct DealSearch {
    /// The company's prefecture (東京都 or 東京).
    pub prefectures: Vec<String>,
    /// The company's industry.
    pub industries: Vec<String>,
    pub company_ids: Vec<String>,
    pub owner_ids: Vec<String>,
    pub stages: Vec<DealStage>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Words of the title.
    pub text: Option<String>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    pub close_from: Option<NaiveDate>,
    pub close_to: Option<NaiveDate>,
    /// Only deals in this sales list.
    pub sales_list_id: Option<String>,
    pub no_activity: Option<NoActivity>,
    pub last_activity: Option<LastActivity>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// From a write: wait until the index has applied it.
    pub consistency_token: Option<String>,
}

/// A page of deals.
#[derive(Debug, Clone)]
pub struct DealPage {
    pub deals: Vec<(Version, Deal)>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

impl Service {
    pub async fn create_deal(
        &self,
        tenant: &TenantId,
        input: NewDeal,
    ) -> Result<Written<Deal>, ServiceError> {
        // The company must be the tenant's own (another tenant's is not found: 404).
        let (_, company) = self.company(tenant, &input.company_id).await?;
        let now = self.clock.now();
        let mut tags = input.tags;
        Deal::normalize_tags(&mut tags);
        let deal = Deal {
            id: new_id("dl"),
            tenant_id: tenant.0.clone(),
            company_id: company.id,
            title: input.title.trim().to_string(),
            owner_id: input.owner_id,
            stage: input.stage,
            amount: input.amount,
            expected_close_date: input.expected_close_date,
            tags,
            created_at: now,
            updated_at: now,
        };
        deal.validate()?;
        let id = deal.id.clone();
        self.store(
            deal.clone(),
            Entity::Deal(deal),
            Expect::Absent,
            "deal",
            &id,
        )
        .await
    }

    pub async fn get_deal(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(Version, Deal), ServiceError> {
        self.deal(tenant, id).await
    }

    pub async fn edit_deal(
        &self,
        tenant: &TenantId,
        id: &str,
        patch: DealPatch,
    ) -> Result<Written<Deal>, ServiceError> {
        let expect = expect_version(patch.version)?;
        let (current, mut deal) = self.deal(tenant, id).await?;
        check_version("deal", id, patch.version, current)?;
        if let Some(v) = patch.title {
            deal.title = v.trim().to_string();
        }
        if let Some(v) = patch.owner_id {
            deal.owner_id = v;
        }
        if let Some(v) = patch.stage {
            deal.stage = v;
        }
        if let Some(v) = patch.amount {
            deal.amount = v;
        }
        if let Some(v) = patch.expected_close_date {
            deal.expected_close_date = v;
        }
        if let Some(mut v) = patch.tags {
            Deal::normalize_tags(&mut v);
            deal.tags = v;
        }
        deal.updated_at = self.clock.now().max(deal.created_at);
        deal.validate()?;
        self.store(deal.clone(), Entity::Deal(deal), expect, "deal", id)
            .await
    }

    /// Adds (`tagged`) or removes a tag. Retries a few times when the deal changes
    /// meanwhile, since tagging does not depend on the rest of the deal.
    pub async fn tag_deal(
        &self,
        tenant: &TenantId,
        id: &str,
        tag: &str,
        tagged: bool,
    ) -> Result<Written<Deal>, ServiceError> {
        retry_on_conflict(|| async move {
            let (version, mut deal) = self.deal(tenant, id).await?;
            let mut tags = deal.tags.clone();
            if tagged {
                tags.push(tag.to_string());
            } else {
                tags.retain(|t| t != tag.trim());
            }
            Deal::normalize_tags(&mut tags);
            if tags == deal.tags {
                let key = deal.key();
                return Ok(Written::unchanged(deal, tenant, key, version));
            }
            deal.tags = tags;
            deal.updated_at = self.clock.now().max(deal.created_at);
            deal.validate()?;
            self.store(
                deal.clone(),
                Entity::Deal(deal),
                Expect::Version(version),
                "deal",
                id,
            )
            .await
        })
        .await
    }

    /// The tenant's tags with how many deals carry each, most used first.
    pub async fn deal_tags(
        &self,
        tenant: &TenantId,
        consistency_token: Option<&str>,
    ) -> Result<Vec<tsunagu_domain::search::Bucket>, ServiceError> {
        self.wait_for(tenant, consistency_token).await?;
        let mut query = RecordQuery::new(RecordKind::Deal);
        query.tenant_id = Some(tenant.0.clone());
        self.index.tag_counts(&query).await
    }

    /// Searches the tenant's deals; see [`DealSearch`].
    pub async fn search_deals(
        &self,
        tenant: &TenantId,
        search: DealSearch,
    ) -> Result<DealPage, ServiceError> {
        if let (Some(min), Some(max)) = (search.amount_min, search.amount_max) {
            if min > max {
                return Err(ServiceError::invalid(
                    "amount_max",
                    format!("is below amount_min ({max} < {min}); nothing could match"),
                ));
            }
        }
        if let (Some(from), Some(to)) = (search.close_from, search.close_to) {
            if from > to {
                return Err(ServiceError::invalid(
                    "close_to",
                    format!("is before close_from ({to} < {from}); nothing could match"),
                ));
            }
        }
        self.wait_for(tenant, search.consistency_token.as_deref())
            .await?;
        let mut query = RecordQuery::new(RecordKind::Deal);
        query.tenant_id = Some(tenant.0.clone());
        query.limit = page_limit(search.limit)?;
        query.cursor = parse_cursor(search.cursor.as_deref())?;
        query.company_ids = search.company_ids;
        query.owner_ids = search.owner_ids;
        query.stages = search.stages;
        // Tags are stored trimmed (see `Deal::normalize_tags`), so the wanted ones are
        // compared in that form too: " 重点" finds the deals tagged 重点.
        let mut tags = search.tags;
        Deal::normalize_tags(&mut tags);
        query.tags_all = tags;
        query.text = super::check_text(search.text)?;
        query.amount_min = search.amount_min;
        query.amount_max = search.amount_max;
        query.close_from = search.close_from;
        query.close_to = search.close_to;
        let empty = DealPage {
            deals: Vec::new(),
            total: 0,
            next_cursor: None,
        };
        // Company conditions become a set of company ids.
        if !search.prefectures.is_empty() || !search.industries.is_empty() {
            let mut companies = RecordQuery::new(RecordKind::Company);
            companies.tenant_id = Some(tenant.0.clone());
            companies.prefectures = canonical_prefectures(&search.prefectures)?;
            companies.industries = search.industries;
            let ids: HashSet<String> = self
                .index
                .record_ids(&companies)
                .await?
                .into_iter()
                .collect();
            query.company_ids = if query.company_ids.is_empty() {
                ids.into_iter().collect()
            } else {
                query
                    .company_ids
                    .into_iter()
                    .filter(|c| ids.contains(c))
                    .collect()
            };
            if query.company_ids.is_empty() {
                return Ok(empty);
            }
        }
        let mut only: Option<HashSet<String>> = None;
        if let Some(list_id) = &search.sales_list_id {
            let (_, list) = self.sales_list(tenant, list_id).await?;
            only = Some(list.deal_ids.into_iter().collect());
        }
        let now = self.clock.now();
        if let Some(cond) = &search.no_activity {
            if cond.within_days == 0 || cond.within_days > MAX_WITHIN_DAYS {
                return Err(ServiceError::invalid(
                    "no_activity.within_days",
                    format!("must be 1 to {MAX_WITHIN_DAYS}"),
                ));
            }
            let recent = ActivityQuery {
                tenant_id: Some(tenant.0.clone()),
                actions: cond.action.into_iter().collect(),
                occurred_from: Some(now - Duration::days(i64::from(cond.within_days))),
                limit: 0,
                ..ActivityQuery::default()
            };
            query.exclude_ids = self
                .index
                .deals_with_activity(&recent)
                .await?
                .into_iter()
                .collect();
        }
        if let Some(cond) = &search.last_activity {
            let of_kind = ActivityQuery {
                tenant_id: Some(tenant.0.clone()),
                actions: cond.action.into_iter().collect(),
                limit: 0,
                ..ActivityQuery::default()
            };
            let matching: HashSet<String> = self
                .index
                .latest_activity_per_deal(&of_kind)
                .await?
                .into_iter()
                .filter(|(_, latest)| latest.result.as_deref() == Some(cond.result.as_str()))
                .map(|(deal, _)| deal)
                .collect();
            only = Some(match only {
                None => matching,
                Some(ids) => ids.intersection(&matching).cloned().collect(),
            });
        }
        if let Some(ids) = only {
            if ids.is_empty() {
                return Ok(empty);
            }
            query.only_ids = Some(ids.into_iter().collect());
        }
        let page = self.index.search_records(&query).await?;
        Ok(DealPage {
            deals: page
                .hits
                .into_iter()
                .filter_map(|h| match h.entity {
                    Entity::Deal(d) => Some((h.version, d)),
                    _ => None,
                })
                .collect(),
            total: page.total,
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        })
    }
}

//! Sales lists (営業リスト): named sets of the tenant's deals.

use super::{new_id, page_limit, parse_cursor, retry_on_conflict, Service, TenantId, Written};
use crate::error::ServiceError;
use crate::ports::Expect;
use serde::Deserialize;
use tsunagu_domain::search::{RecordKind, RecordQuery};
use tsunagu_domain::{Entity, SalesList, Version};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSalesList {
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub name: String,
    /// Deals to start with (each must be one of the account's deals).
    #[serde(default)]
    pub deal_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddDeals {
    pub deal_ids: Vec<String>,
}

impl Service {
    pub async fn create_sales_list(
        &self,
        tenant: &TenantId,
        input: NewSalesList,
    ) -> Result<Written<SalesList>, ServiceError> {
        self.check_deals(tenant, &input.deal_ids).await?;
        let now = self.clock.now();
        let mut list = SalesList {
            id: new_id("sl"),
            tenant_id: tenant.0.clone(),
            name: input.name.trim().to_string(),
            deal_ids: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        list.add_deals(input.deal_ids.iter().map(String::as_str));
        list.validate()?;
        let id = list.id.clone();
        self.store(
            list.clone(),
            Entity::SalesList(list),
            Expect::Absent,
            "sales list",
            &id,
        )
        .await
    }

    pub async fn sales_list(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(Version, SalesList), ServiceError> {
        self.load(
            tenant,
            &SalesList::key_for(id),
            "sales list",
            id,
            |e| match e {
                Entity::SalesList(l) => Some(l),
                _ => None,
            },
        )
        .await
    }

    /// Adds deals to a list (those already in it are skipped). Retries a few times when
    /// the list changes meanwhile: adding does not depend on the rest of the list.
    pub async fn add_deals_to_list(
        &self,
        tenant: &TenantId,
        id: &str,
        input: AddDeals,
    ) -> Result<Written<SalesList>, ServiceError> {
        if input.deal_ids.is_empty() {
            return Err(ServiceError::invalid(
                "deal_ids",
                "must name at least one deal",
            ));
        }
        let (_, _) = self.sales_list(tenant, id).await?;
        self.check_deals(tenant, &input.deal_ids).await?;
        let deal_ids = &input.deal_ids;
        retry_on_conflict(|| async move {
            let (version, mut list) = self.sales_list(tenant, id).await?;
            if list.add_deals(deal_ids.iter().map(String::as_str)) == 0 {
                let key = list.key();
                return Ok(Written::unchanged(list, tenant, key, version));
            }
            list.updated_at = self.clock.now().max(list.created_at);
            list.validate()?;
            self.store(
                list.clone(),
                Entity::SalesList(list),
                Expect::Version(version),
                "sales list",
                id,
            )
            .await
        })
        .await
    }

    pub async fn list_sales_lists(
        &self,
        tenant: &TenantId,
        limit: Option<usize>,
        cursor: Option<&str>,
        consistency_token: Option<&str>,
    ) -> Result<(Vec<(Version, SalesList)>, u64, Option<String>), ServiceError> {
        self.wait_for(tenant, consistency_token).await?;
        let mut query = RecordQuery::new(RecordKind::SalesList);
        query.tenant_id = Some(tenant.0.clone());
        query.limit = page_limit(limit)?;
        query.cursor = parse_cursor(cursor)?;
        let page = self.index.search_records(&query).await?;
        let lists = page
            .hits
            .into_iter()
            .filter_map(|h| match h.entity {
                Entity::SalesList(l) => Some((h.version, l)),
                _ => None,
            })
            .collect();
        Ok((lists, page.total, page.next_cursor.map(|c| c.to_string())))
    }

    /// Every id must be one of the tenant's deals; another tenant's deal is not found.
    async fn check_deals(&self, tenant: &TenantId, ids: &[String]) -> Result<(), ServiceError> {
        for id in ids {
            self.deal(tenant, id).await?;
        }
        Ok(())
    }
}

//! Activities (活動履歴): record, read, edit (optimistic concurrency), delete, search and
//! aggregate across deals.

use super::{
    check_version, double_option, expect_version, new_id, page_limit, parse_cursor, Service,
    TenantId, Written,
};
use crate::error::ServiceError;
use crate::ports::Expect;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tsunagu_domain::search::{ActivityQuery, Bucket, GroupBy, SearchPage, TimeZone};
use tsunagu_domain::{ActionType, ActivityLog, Deal, Entity, Version};

/// A new activity on a deal.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewActivity {
    /// The salesperson who made the approach.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 128, pattern = r"^\S+$")
    )]
    pub user_id: String,
    pub action: ActionType,
    /// Outcome code, for example `appointment` or `no_answer`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"\S")
    )]
    pub result: Option<String>,
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 10000))]
    pub memo: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Changes to an activity. `version` must be the current one; absent fields stay.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivityPatch {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 128, pattern = r"^\S+$")
    )]
    pub user_id: Option<String>,
    #[serde(default)]
    pub action: Option<ActionType>,
    /// `null` clears the result.
    #[serde(default, deserialize_with = "double_option")]
    pub result: Option<Option<String>>,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 10000))]
    pub memo: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl Service {
    pub async fn record_activity(
        &self,
        tenant: &TenantId,
        deal_id: &str,
        input: NewActivity,
    ) -> Result<Written<ActivityLog>, ServiceError> {
        let (_, deal) = self.deal(tenant, deal_id).await?;
        let now = self.clock.now();
        let activity = ActivityLog {
            id: new_id("ac"),
            tenant_id: tenant.0.clone(),
            deal_id: deal.id,
            company_id: deal.company_id,
            user_id: input.user_id,
            action: input.action,
            result: input.result,
            occurred_at: input.occurred_at,
            memo: input.memo,
            tags: input.tags,
            created_at: now,
            updated_at: now,
        };
        activity.validate(now)?;
        let id = activity.id.clone();
        self.store(
            activity.clone(),
            Entity::ActivityLog(activity),
            Expect::Absent,
            "activity",
            &id,
        )
        .await
    }

    pub async fn activity(
        &self,
        tenant: &TenantId,
        deal_id: &str,
        id: &str,
    ) -> Result<(Version, ActivityLog), ServiceError> {
        self.load(
            tenant,
            &ActivityLog::key_for(deal_id, id),
            "activity",
            id,
            |e| match e {
                Entity::ActivityLog(a) => Some(a),
                _ => None,
            },
        )
        .await
    }

    pub async fn edit_activity(
        &self,
        tenant: &TenantId,
        deal_id: &str,
        id: &str,
        patch: ActivityPatch,
    ) -> Result<Written<ActivityLog>, ServiceError> {
        let expect = expect_version(patch.version)?;
        let (current, mut activity) = self.activity(tenant, deal_id, id).await?;
        check_version("activity", id, patch.version, current)?;
        if let Some(v) = patch.user_id {
            activity.user_id = v;
        }
        if let Some(v) = patch.action {
            activity.action = v;
        }
        if let Some(v) = patch.result {
            activity.result = v;
        }
        if let Some(v) = patch.occurred_at {
            activity.occurred_at = v;
        }
        if let Some(v) = patch.memo {
            activity.memo = v;
        }
        if let Some(v) = patch.tags {
            activity.tags = v;
        }
        let now = self.clock.now();
        activity.updated_at = now.max(activity.created_at);
        activity.validate(now)?;
        self.store(
            activity.clone(),
            Entity::ActivityLog(activity),
            expect,
            "activity",
            id,
        )
        .await
    }

    /// Deletes an activity at the given version (409 if it changed meanwhile).
    pub async fn delete_activity(
        &self,
        tenant: &TenantId,
        deal_id: &str,
        id: &str,
        version: u64,
    ) -> Result<Written<()>, ServiceError> {
        let expect = expect_version(version)?;
        let (current, activity) = self.activity(tenant, deal_id, id).await?;
        check_version("activity", id, version, current)?;
        self.remove(tenant, activity.key(), expect, "activity", id)
            .await
    }

    /// Searches the tenant's activities (the query's tenant is always the caller's).
    pub async fn search_activities(
        &self,
        tenant: &TenantId,
        mut query: ActivityQuery,
        consistency_token: Option<&str>,
    ) -> Result<SearchPage, ServiceError> {
        if query.limit > tsunagu_domain::search::MAX_LIMIT {
            return Err(ServiceError::invalid(
                "limit",
                format!(
                    "must be 1 to {}; page with the cursor for more",
                    tsunagu_domain::search::MAX_LIMIT
                ),
            ));
        }
        query.text = super::check_text(query.text)?;
        self.wait_for(tenant, consistency_token).await?;
        query.tenant_id = Some(tenant.0.clone());
        self.index.search_activities(&query).await
    }

    /// Counts the tenant's activities per group, across deals; days, weeks and months
    /// in UTC.
    pub async fn aggregate_activities(
        &self,
        tenant: &TenantId,
        query: ActivityQuery,
        by: GroupBy,
        consistency_token: Option<&str>,
    ) -> Result<Vec<Bucket>, ServiceError> {
        self.aggregate_activities_in(tenant, query, by, TimeZone::UTC, consistency_token)
            .await
    }

    /// Counts the tenant's activities per group, across deals; days, ISO weeks and
    /// months in `zone`.
    pub async fn aggregate_activities_in(
        &self,
        tenant: &TenantId,
        mut query: ActivityQuery,
        by: GroupBy,
        zone: TimeZone,
        consistency_token: Option<&str>,
    ) -> Result<Vec<Bucket>, ServiceError> {
        query.text = super::check_text(query.text)?;
        self.wait_for(tenant, consistency_token).await?;
        query.tenant_id = Some(tenant.0.clone());
        self.index.aggregate_activities_in(&query, by, zone).await
    }

    pub(crate) async fn deal(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(Version, Deal), ServiceError> {
        self.load(tenant, &Deal::key_for(id), "deal", id, |e| match e {
            Entity::Deal(d) => Some(d),
            _ => None,
        })
        .await
    }
}

/// Builds an activity query from request parameters, checking limit and cursor.
pub fn activity_query(
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<ActivityQuery, ServiceError> {
    Ok(ActivityQuery {
        limit: page_limit(limit)?,
        cursor: parse_cursor(cursor)?,
        ..ActivityQuery::default()
    })
}

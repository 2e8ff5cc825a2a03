//! `/api/v1/activities` (search, aggregate across deals) and
//! `/api/v1/deals/{deal_id}/activities` (record, read, edit, delete).

use super::{Page, Versioned, WrittenBody};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Params, StrictJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tsunagu_domain::search::{ActivityQuery, GroupBy};
use tsunagu_domain::{ActionType, ActivityLog};
use tsunagu_service::usecases::activities::{ActivityPatch, NewActivity};
use tsunagu_service::{FieldIssue, ServiceError};

/// Filters of an activity search. Several values of one axis are comma-separated and match
/// any of them; axes combine with AND.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActivityFilters {
    /// Memo full text: every word must occur (Japanese without spaces works).
    pub q: Option<String>,
    /// call, email, visit, online_meeting, letter, other.
    pub action: Option<String>,
    pub user_id: Option<String>,
    pub deal_id: Option<String>,
    pub company_id: Option<String>,
    pub result: Option<String>,
    /// Every one of these tags.
    pub tag: Option<String>,
    /// Inclusive lower bound of `occurred_at` (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound of `occurred_at` (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 20). Ignored by aggregations.
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// From a write: wait until the index has applied it before searching.
    pub consistency_token: Option<String>,
    /// Aggregations only: action, user, deal, company, result, tag, day.
    pub group_by: Option<String>,
}

fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl ActivityFilters {
    fn query(&self) -> Result<ActivityQuery, ServiceError> {
        let mut issues = Vec::new();
        let actions = list(&self.action)
            .iter()
            .filter_map(|a| {
                ActionType::parse(a)
                    .map_err(|message| {
                        issues.push(FieldIssue {
                            field: "action".into(),
                            message,
                        })
                    })
                    .ok()
            })
            .collect();
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from >= to {
                issues.push(FieldIssue {
                    field: "to".into(),
                    message: "must be later than `from`".into(),
                });
            }
        }
        if !issues.is_empty() {
            return Err(ServiceError::Invalid(issues));
        }
        let mut query = tsunagu_service::usecases::activities::activity_query(
            self.limit,
            self.cursor.as_deref(),
        )?;
        query.text = self.q.clone().filter(|q| !q.trim().is_empty());
        query.actions = actions;
        query.user_ids = list(&self.user_id);
        query.deal_ids = list(&self.deal_id);
        query.company_ids = list(&self.company_id);
        query.results = list(&self.result);
        query.tags_all = list(&self.tag);
        query.occurred_from = self.from;
        query.occurred_to = self.to;
        Ok(query)
    }
}

/// Search the account's activities across deals, newest first.
#[utoipa::path(get, path = "/api/v1/activities", tag = "activities", params(ActivityFilters),
    security(("bearer" = [])),
    responses((status = 200, body = Page<ActivityLog>), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Params(filters): Params<ActivityFilters>,
) -> Result<Json<Page<ActivityLog>>, ApiError> {
    if filters.group_by.is_some() {
        return Err(ServiceError::invalid("group_by", "only for /activities/aggregate").into());
    }
    let query = filters.query()?;
    let page = state
        .service
        .search_activities(&tenant, query, filters.consistency_token.as_deref())
        .await?;
    Ok(Json(Page {
        items: page
            .hits
            .into_iter()
            .map(|h| Versioned {
                data: h.activity,
                version: h.version.0,
            })
            .collect(),
        total: page.total,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BucketBody {
    pub key: String,
    pub count: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Aggregation {
    pub group_by: String,
    /// Every group (none cut off); by count, or by day for `day`.
    pub buckets: Vec<BucketBody>,
}

/// Count the account's activities per group across deals (same filters as the search).
#[utoipa::path(get, path = "/api/v1/activities/aggregate", tag = "activities", params(ActivityFilters),
    security(("bearer" = [])),
    responses((status = 200, body = Aggregation), (status = 422, body = ErrorBody)))]
pub async fn aggregate(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Params(filters): Params<ActivityFilters>,
) -> Result<Json<Aggregation>, ApiError> {
    let by = filters
        .group_by
        .as_deref()
        .ok_or_else(|| ServiceError::invalid("group_by", "is required"))
        .and_then(|g| GroupBy::parse(g).map_err(|m| ServiceError::invalid("group_by", m)))?;
    let mut query = filters.query()?;
    query.limit = 0;
    query.cursor = None;
    let buckets = state
        .service
        .aggregate_activities(&tenant, query, by, filters.consistency_token.as_deref())
        .await?;
    Ok(Json(Aggregation {
        group_by: by.as_str().to_string(),
        buckets: buckets
            .into_iter()
            .map(|b| BucketBody {
                key: b.key,
                count: b.count,
            })
            .collect(),
    }))
}

/// Record an activity on a deal.
#[utoipa::path(post, path = "/api/v1/deals/{deal_id}/activities", tag = "activities",
    security(("bearer" = [])), request_body = NewActivity,
    responses((status = 201, body = WrittenBody<ActivityLog>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn record(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(deal_id): Path<String>,
    StrictJson(input): StrictJson<NewActivity>,
) -> Result<(StatusCode, Json<WrittenBody<ActivityLog>>), ApiError> {
    let written = state
        .service
        .record_activity(&tenant, &deal_id, input)
        .await?;
    state.metrics.write("activity", "create");
    Ok((StatusCode::CREATED, Json(written.into())))
}

/// Read an activity.
#[utoipa::path(get, path = "/api/v1/deals/{deal_id}/activities/{id}", tag = "activities",
    security(("bearer" = [])),
    responses((status = 200, body = Versioned<ActivityLog>), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path((deal_id, id)): Path<(String, String)>,
) -> Result<Json<Versioned<ActivityLog>>, ApiError> {
    let (version, activity) = state.service.activity(&tenant, &deal_id, &id).await?;
    Ok(Json(Versioned {
        data: activity,
        version: version.0,
    }))
}

/// Edit an activity. `version` must be the current one, else 409 with `current_version`.
#[utoipa::path(patch, path = "/api/v1/deals/{deal_id}/activities/{id}", tag = "activities",
    security(("bearer" = [])), request_body = ActivityPatch,
    responses((status = 200, body = WrittenBody<ActivityLog>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path((deal_id, id)): Path<(String, String)>,
    StrictJson(patch): StrictJson<ActivityPatch>,
) -> Result<Json<WrittenBody<ActivityLog>>, ApiError> {
    let written = state
        .service
        .edit_activity(&tenant, &deal_id, &id, patch)
        .await?;
    state.metrics.write("activity", "update");
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// The current version (409 if it changed meanwhile).
    pub version: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The deletion's version.
    pub version: u64,
    pub consistency_token: String,
}

/// Delete an activity at its current version.
#[utoipa::path(delete, path = "/api/v1/deals/{deal_id}/activities/{id}", tag = "activities",
    security(("bearer" = [])), params(DeleteParams),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path((deal_id, id)): Path<(String, String)>,
    Params(params): Params<DeleteParams>,
) -> Result<Json<Deleted>, ApiError> {
    let written = state
        .service
        .delete_activity(&tenant, &deal_id, &id, params.version)
        .await?;
    state.metrics.write("activity", "delete");
    Ok(Json(Deleted {
        version: written.version.0,
        consistency_token: written.token.to_string(),
    }))
}

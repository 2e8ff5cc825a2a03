//! `/api/v1/activities` (search, aggregate across deals) and
//! `/api/v1/deals/{deal_id}/activities` (record, read, edit, delete).

use super::{Versioned, WrittenBody};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, AuthTenant, Params, StrictJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tsunagu_domain::search::{
    parse_time, parse_time_zone, ActivityQuery, GroupBy, SortOrder, TimeZone,
};
use tsunagu_domain::{ActionType, ActivityLog};
use tsunagu_service::usecases::activities::{ActivityPatch, NewActivity};
use tsunagu_service::{FieldIssue, ServiceError, TenantId};

/// Filters of an activity search. Several values of one axis are comma-separated and match
/// any of them (except `tag`: every tag given must be present); axes combine with AND.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActivityFilters {
    /// Memo full text (Japanese without spaces works): every word must occur;
    /// `"a phrase"` as written; `-word` excludes; `A OR B` matches either; a word of the
    /// account's synonyms (`/api/v1/synonyms`) matches any word of its group. Text that
    /// cannot be read (a lone `-`, an unclosed quote, only punctuation such as `・`) is a
    /// 422 on `q` naming the problem.
    #[param(example = "見積 提案 OR 打ち合わせ -失注")]
    pub q: Option<String>,
    /// Comma-separated action types, any of: call, email, visit, online_meeting, letter,
    /// other.
    pub action: Option<String>,
    /// Comma-separated user ids, any of them.
    pub user_id: Option<String>,
    /// Comma-separated deal ids, any of them.
    pub deal_id: Option<String>,
    /// Comma-separated company ids, any of them.
    pub company_id: Option<String>,
    /// Comma-separated result codes, any of them.
    pub result: Option<String>,
    /// Comma-separated tags: every one of them must be present.
    pub tag: Option<String>,
    /// Inclusive lower bound of `occurred_at`: RFC 3339 (`2026-11-10T09:00:00+09:00`) or a
    /// date (`2026-11-10`, midnight in the tenant's time zone; UTC when it has none).
    #[param(example = "2026-11-10")]
    pub from: Option<String>,
    /// Exclusive upper bound of `occurred_at`, later than `from`: RFC 3339 or a date
    /// (midnight in the tenant's time zone, so `to=2026-11-11` ends with the 10th).
    #[param(example = "2026-11-11")]
    pub to: Option<String>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page (of a search in the same order).
    pub cursor: Option<String>,
    /// `newest` (default): `occurred_at` descending. `relevance`: how well the memo
    /// matches `q` (BM25), then newest first.
    #[param(example = "relevance")]
    pub sort: Option<String>,
    /// From a write: wait until the index has applied it before searching.
    pub consistency_token: Option<String>,
}

/// The filters of an aggregation (those of the search, without paging) and what to group
/// by.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AggregateParams {
    /// What to count by. `day` (`YYYY-MM-DD`), `week` (ISO, from Monday, keyed by its
    /// Monday) and `month` (`YYYY-MM`) are calendar periods in `tz`.
    #[param(inline)]
    pub group_by: GroupBy,
    /// The IANA time zone of the calendar groupings and of date-only `from`/`to`
    /// (default: the tenant's, set with `tsunagu tenant create NAME --time-zone ZONE`;
    /// UTC when it has none).
    #[param(example = "Asia/Tokyo")]
    pub tz: Option<String>,
    /// Memo full text: every word must occur.
    pub q: Option<String>,
    /// Comma-separated action types, any of them.
    pub action: Option<String>,
    /// Comma-separated user ids, any of them.
    pub user_id: Option<String>,
    /// Comma-separated deal ids, any of them.
    pub deal_id: Option<String>,
    /// Comma-separated company ids, any of them.
    pub company_id: Option<String>,
    /// Comma-separated result codes, any of them.
    pub result: Option<String>,
    /// Comma-separated tags: every one of them must be present.
    pub tag: Option<String>,
    /// Inclusive lower bound of `occurred_at`: RFC 3339 or a date (midnight in `tz`).
    #[param(example = "2026-11-01")]
    pub from: Option<String>,
    /// Exclusive upper bound of `occurred_at`, later than `from`: RFC 3339 or a date
    /// (midnight in `tz`, so `to=2026-12-01` ends with November 30th).
    #[param(example = "2026-12-01")]
    pub to: Option<String>,
    /// From a write: wait until the index has applied it before counting.
    pub consistency_token: Option<String>,
}

impl AggregateParams {
    fn filters(&self) -> ActivityFilters {
        ActivityFilters {
            q: self.q.clone(),
            action: self.action.clone(),
            user_id: self.user_id.clone(),
            deal_id: self.deal_id.clone(),
            company_id: self.company_id.clone(),
            result: self.result.clone(),
            tag: self.tag.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            limit: None,
            cursor: None,
            sort: None,
            consistency_token: None,
        }
    }
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

/// Parses a `from`/`to` bound, recording what is wrong with it in `issues`.
fn bound(
    field: &str,
    value: &Option<String>,
    zone: TimeZone,
    issues: &mut Vec<FieldIssue>,
) -> Option<DateTime<Utc>> {
    let text = value.as_deref()?;
    parse_time(text.trim(), zone)
        .map_err(|message| {
            issues.push(FieldIssue {
                field: field.into(),
                message,
            })
        })
        .ok()
}

impl ActivityFilters {
    /// The index query; dates without a time are midnight in `zone`.
    fn query(&self, zone: TimeZone) -> Result<ActivityQuery, ServiceError> {
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
        let sort = match self.sort.as_deref().map(str::trim) {
            None | Some("") => SortOrder::Newest,
            Some(name) => SortOrder::parse(name).unwrap_or_else(|message| {
                issues.push(FieldIssue {
                    field: "sort".into(),
                    message,
                });
                SortOrder::Newest
            }),
        };
        let from = bound("from", &self.from, zone, &mut issues);
        let to = bound("to", &self.to, zone, &mut issues);
        if let (Some(from), Some(to)) = (from, to) {
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
        query.occurred_from = from;
        query.occurred_to = to;
        query.sort = sort;
        Ok(query)
    }
}

/// One activity of a search: the activity, its version, and with `q` the memo fragments
/// it matched.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityItem {
    pub data: ActivityLog,
    pub version: u64,
    /// With `q`: fragments of the memo around what the words and phrases matched,
    /// HTML-escaped, each match wrapped in `<mark>`…`</mark>` (at most 3, in memo order;
    /// empty when only exclusions were given). Absent without `q`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highlights: Option<Vec<String>>,
}

/// A page of activities.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityPage {
    pub items: Vec<ActivityItem>,
    /// Every match, ignoring the page.
    pub total: u64,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// Search the account's activities across deals, newest first or by relevance.
#[utoipa::path(get, operation_id = "search_activities", path = "/api/v1/activities", tag = "activities", params(ActivityFilters),
    security(("bearer" = [])),
    responses((status = 200, body = ActivityPage), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    AuthTenant(account): AuthTenant,
    Params(filters): Params<ActivityFilters>,
) -> Result<Json<ActivityPage>, ApiError> {
    // A bare date (`from=2026-11-10`) is the start of that day in the tenant's zone.
    let mut query = filters.query(account.zone())?;
    super::synonyms::apply(&state, &account.id, &mut query).await?;
    let tenant = TenantId(account.id);
    let page = state
        .service
        .search_activities(&tenant, query, filters.consistency_token.as_deref())
        .await?;
    let with_text = filters.q.as_deref().is_some_and(|q| !q.trim().is_empty());
    Ok(Json(ActivityPage {
        items: page
            .hits
            .into_iter()
            .map(|h| ActivityItem {
                data: h.activity,
                version: h.version.0,
                highlights: with_text.then_some(h.highlights),
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
    /// Every group (none cut off); by count, or in time order for `day`, `week` and
    /// `month`.
    pub buckets: Vec<BucketBody>,
}

/// Count the account's activities per group across deals (same filters as the search).
#[utoipa::path(get, operation_id = "aggregate_activities", path = "/api/v1/activities/aggregate", tag = "activities", params(AggregateParams),
    security(("bearer" = [])),
    responses((status = 200, body = Aggregation), (status = 422, body = ErrorBody)))]
pub async fn aggregate(
    State(state): State<AppState>,
    AuthTenant(account): AuthTenant,
    Params(params): Params<AggregateParams>,
) -> Result<Json<Aggregation>, ApiError> {
    let by = params.group_by;
    let zone = match params.tz.as_deref().map(str::trim) {
        None | Some("") => account.zone(),
        Some(name) => parse_time_zone(name).map_err(|m| ServiceError::invalid("tz", m))?,
    };
    let mut query = params.filters().query(zone)?;
    super::synonyms::apply(&state, &account.id, &mut query).await?;
    let tenant = TenantId(account.id);
    query.limit = 0;
    query.cursor = None;
    let buckets = state
        .service
        .aggregate_activities_in(
            &tenant,
            query,
            by,
            zone,
            params.consistency_token.as_deref(),
        )
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
#[utoipa::path(post, operation_id = "record_activity", path = "/api/v1/deals/{deal_id}/activities", tag = "activities",
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
#[utoipa::path(get, operation_id = "get_activity", path = "/api/v1/deals/{deal_id}/activities/{id}", tag = "activities",
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
#[utoipa::path(patch, operation_id = "edit_activity", path = "/api/v1/deals/{deal_id}/activities/{id}", tag = "activities",
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
    #[param(minimum = 1)]
    pub version: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The deletion's version.
    pub version: u64,
    pub consistency_token: String,
}

/// Delete an activity at its current version.
#[utoipa::path(delete, operation_id = "delete_activity", path = "/api/v1/deals/{deal_id}/activities/{id}", tag = "activities",
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

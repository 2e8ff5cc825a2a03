//! `/api/v1/deals`: create, read, edit, tag (many-to-many), and the deal search that
//! combines deal fields, company fields, sales lists and activity facts.

use super::{Page, Versioned, WrittenBody};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, StrictJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use tsunagu_domain::Deal;
use tsunagu_service::usecases::deals::{DealPatch, DealSearch, NewDeal};

/// Create a deal with one of the account's companies.
#[utoipa::path(post, operation_id = "create_deal", path = "/api/v1/deals", tag = "deals", security(("bearer" = [])),
    request_body = NewDeal,
    responses((status = 201, body = WrittenBody<Deal>), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    StrictJson(input): StrictJson<NewDeal>,
) -> Result<(StatusCode, Json<WrittenBody<Deal>>), ApiError> {
    let written = state.service.create_deal(&tenant, input).await?;
    state.metrics.write("deal", "create");
    Ok((StatusCode::CREATED, Json(written.into())))
}

/// Read a deal.
#[utoipa::path(get, operation_id = "get_deal", path = "/api/v1/deals/{id}", tag = "deals", security(("bearer" = [])),
    responses((status = 200, body = Versioned<Deal>), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<Versioned<Deal>>, ApiError> {
    let (version, deal) = state.service.get_deal(&tenant, &id).await?;
    Ok(Json(Versioned {
        data: deal,
        version: version.0,
    }))
}

/// Edit a deal at its current version.
#[utoipa::path(patch, operation_id = "edit_deal", path = "/api/v1/deals/{id}", tag = "deals", security(("bearer" = [])),
    request_body = DealPatch,
    responses((status = 200, body = WrittenBody<Deal>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    StrictJson(patch): StrictJson<DealPatch>,
) -> Result<Json<WrittenBody<Deal>>, ApiError> {
    let written = state.service.edit_deal(&tenant, &id, patch).await?;
    state.metrics.write("deal", "update");
    Ok(Json(written.into()))
}

/// Tag a deal (idempotent).
#[utoipa::path(put, operation_id = "tag_deal", path = "/api/v1/deals/{id}/tags/{tag}", tag = "deals", security(("bearer" = [])),
    responses((status = 200, body = WrittenBody<Deal>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn tag(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Json<WrittenBody<Deal>>, ApiError> {
    let written = state.service.tag_deal(&tenant, &id, &tag, true).await?;
    state.metrics.write("deal", "tag");
    Ok(Json(written.into()))
}

/// Remove a tag from a deal (idempotent).
#[utoipa::path(delete, operation_id = "untag_deal", path = "/api/v1/deals/{id}/tags/{tag}", tag = "deals", security(("bearer" = [])),
    responses((status = 200, body = WrittenBody<Deal>), (status = 404, body = ErrorBody)))]
pub async fn untag(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Json<WrittenBody<Deal>>, ApiError> {
    let written = state.service.tag_deal(&tenant, &id, &tag, false).await?;
    state.metrics.write("deal", "untag");
    Ok(Json(written.into()))
}

/// Search deals by their fields, their company's prefecture and industry, a sales list,
/// and facts about their activities (no call in N days, last visit's result, …).
#[utoipa::path(post, operation_id = "search_deals", path = "/api/v1/deals/search", tag = "deals", security(("bearer" = [])),
    request_body = DealSearch,
    responses((status = 200, body = Page<Deal>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    StrictJson(search): StrictJson<DealSearch>,
) -> Result<Json<Page<Deal>>, ApiError> {
    let page = state.service.search_deals(&tenant, search).await?;
    Ok(Json(Page {
        items: page
            .deals
            .into_iter()
            .map(|(v, d)| Versioned {
                data: d,
                version: v.0,
            })
            .collect(),
        total: page.total,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TagParams {
    pub consistency_token: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TagCount {
    pub tag: String,
    /// Deals carrying the tag.
    pub deals: u64,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TagList {
    pub tags: Vec<TagCount>,
}

/// The account's deal tags with how many deals carry each, most used first.
#[utoipa::path(get, operation_id = "list_tags", path = "/api/v1/tags", tag = "deals", security(("bearer" = [])),
    params(TagParams),
    responses((status = 200, body = TagList)))]
pub async fn tags(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    crate::extract::Params(p): crate::extract::Params<TagParams>,
) -> Result<Json<TagList>, ApiError> {
    let buckets = state
        .service
        .deal_tags(&tenant, p.consistency_token.as_deref())
        .await?;
    Ok(Json(TagList {
        tags: buckets
            .into_iter()
            .map(|b| TagCount {
                tag: b.key,
                deals: b.count,
            })
            .collect(),
    }))
}

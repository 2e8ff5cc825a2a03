//! `/api/v1/sales-lists`: named sets of deals.

use super::{Page, Versioned, WrittenBody};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Params, StrictJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tsunagu_domain::SalesList;
use tsunagu_service::usecases::sales_lists::{AddDeals, NewSalesList};

/// Create a sales list.
#[utoipa::path(post, operation_id = "create_sales_list", path = "/api/v1/sales-lists", tag = "sales lists", security(("bearer" = [])),
    request_body = NewSalesList,
    responses((status = 201, body = WrittenBody<SalesList>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    StrictJson(input): StrictJson<NewSalesList>,
) -> Result<(StatusCode, Json<WrittenBody<SalesList>>), ApiError> {
    let written = state.service.create_sales_list(&tenant, input).await?;
    state.metrics.write("sales_list", "create");
    Ok((StatusCode::CREATED, Json(written.into())))
}

/// Read a sales list.
#[utoipa::path(get, operation_id = "get_sales_list", path = "/api/v1/sales-lists/{id}", tag = "sales lists", security(("bearer" = [])),
    responses((status = 200, body = Versioned<SalesList>), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<Versioned<SalesList>>, ApiError> {
    let (version, list) = state.service.sales_list(&tenant, &id).await?;
    Ok(Json(Versioned {
        data: list,
        version: version.0,
    }))
}

/// Add deals to a sales list (those already in it are skipped).
#[utoipa::path(post, operation_id = "add_deals_to_sales_list", path = "/api/v1/sales-lists/{id}/deals", tag = "sales lists", security(("bearer" = [])),
    request_body = AddDeals,
    responses((status = 200, body = WrittenBody<SalesList>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_deals(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    StrictJson(input): StrictJson<AddDeals>,
) -> Result<Json<WrittenBody<SalesList>>, ApiError> {
    let written = state.service.add_deals_to_list(&tenant, &id, input).await?;
    state.metrics.write("sales_list", "add_deals");
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub consistency_token: Option<String>,
}

/// The account's sales lists, newest first.
#[utoipa::path(get, operation_id = "list_sales_lists", path = "/api/v1/sales-lists", tag = "sales lists", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = Page<SalesList>), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Params(p): Params<ListParams>,
) -> Result<Json<Page<SalesList>>, ApiError> {
    let (lists, total, next_cursor) = state
        .service
        .list_sales_lists(
            &tenant,
            p.limit,
            p.cursor.as_deref(),
            p.consistency_token.as_deref(),
        )
        .await?;
    Ok(Json(Page {
        items: lists
            .into_iter()
            .map(|(v, l)| Versioned {
                data: l,
                version: v.0,
            })
            .collect(),
        total,
        next_cursor,
    }))
}

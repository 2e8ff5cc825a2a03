//! `/api/v1/companies`: create (prefecture split from the address), read, edit, search.

use super::{Page, Versioned, WrittenBody};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Auth, Params, StrictJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tsunagu_domain::Company;
use tsunagu_service::usecases::companies::{CompanyPatch, CompanySearch, NewCompany};

/// Create a company.
#[utoipa::path(post, operation_id = "create_company", path = "/api/v1/companies", tag = "companies", security(("bearer" = [])),
    request_body = NewCompany,
    responses((status = 201, body = WrittenBody<Company>), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    StrictJson(input): StrictJson<NewCompany>,
) -> Result<(StatusCode, Json<WrittenBody<Company>>), ApiError> {
    let written = state.service.create_company(&tenant, input).await?;
    state.metrics.write("company", "create");
    Ok((StatusCode::CREATED, Json(written.into())))
}

/// Read a company.
#[utoipa::path(get, operation_id = "get_company", path = "/api/v1/companies/{id}", tag = "companies", security(("bearer" = [])),
    responses((status = 200, body = Versioned<Company>), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<Versioned<Company>>, ApiError> {
    let (version, company) = state.service.company(&tenant, &id).await?;
    Ok(Json(Versioned {
        data: company,
        version: version.0,
    }))
}

/// Edit a company at its current version.
#[utoipa::path(patch, operation_id = "edit_company", path = "/api/v1/companies/{id}", tag = "companies", security(("bearer" = [])),
    request_body = CompanyPatch,
    responses((status = 200, body = WrittenBody<Company>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    StrictJson(patch): StrictJson<CompanyPatch>,
) -> Result<Json<WrittenBody<Company>>, ApiError> {
    let written = state.service.edit_company(&tenant, &id, patch).await?;
    state.metrics.write("company", "update");
    Ok(Json(written.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CompanyFilters {
    /// Comma-separated prefectures (東京都 or 東京).
    pub prefecture: Option<String>,
    /// Comma-separated industries.
    pub industry: Option<String>,
    /// Words of the name.
    pub q: Option<String>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub consistency_token: Option<String>,
}

/// Search the account's companies, newest first.
#[utoipa::path(get, operation_id = "search_companies", path = "/api/v1/companies", tag = "companies", security(("bearer" = [])),
    params(CompanyFilters),
    responses((status = 200, body = Page<Company>), (status = 422, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Params(f): Params<CompanyFilters>,
) -> Result<Json<Page<Company>>, ApiError> {
    let split = |v: &Option<String>| -> Vec<String> {
        v.as_deref()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let search = CompanySearch {
        prefectures: split(&f.prefecture),
        industries: split(&f.industry),
        text: f.q.clone(),
        limit: f.limit,
        cursor: f.cursor.clone(),
    };
    let (companies, total, next_cursor) = state
        .service
        .search_companies(&tenant, search, f.consistency_token.as_deref())
        .await?;
    Ok(Json(Page {
        items: companies
            .into_iter()
            .map(|(v, c)| Versioned {
                data: c,
                version: v.0,
            })
            .collect(),
        total,
        next_cursor,
    }))
}

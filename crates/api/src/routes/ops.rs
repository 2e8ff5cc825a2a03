//! Operations: liveness, readiness, metrics, the pipeline's status, the OpenAPI document
//! and the web page.

use crate::error::ApiError;
use crate::extract::Auth;
use crate::state::{AppState, PipelineReport};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

/// Alive (the process answers).
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve: 503 with the reason until the store, index and pipeline are up.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.ops.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let report = state.ops.pipeline().await.ok();
    match state.metrics.render(report.as_ref()) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The replication pipeline: per consumer and shard state and backlog, lag percentiles,
/// dead letters.
#[utoipa::path(get, operation_id = "pipeline_status", path = "/api/v1/pipeline/status", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = PipelineReport)))]
pub async fn pipeline_status(
    State(state): State<AppState>,
    Auth(_tenant): Auth,
) -> Result<Json<PipelineReport>, ApiError> {
    state
        .ops
        .pipeline()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))
}

/// The OpenAPI document of this API.
pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

/// The web page: activity search and the pipeline's live status.
pub async fn web_page() -> Html<&'static str> {
    Html(include_str!("../../assets/index.html"))
}

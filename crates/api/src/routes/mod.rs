//! The router: resources under `/api/v1` (bearer token required), operations and the web
//! page at the root, and the middleware every request passes (request id, access log,
//! metrics, body limit, timeout).

pub mod activities;
pub mod companies;
pub mod deals;
pub mod ops;
pub mod sales_lists;
pub mod synonyms;

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde::Serialize;
use std::time::{Duration, Instant};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tsunagu_service::Written;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A value with its version (pass the version back to edit it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Versioned<T> {
    pub data: T,
    pub version: u64,
}

/// A value as written: its new version and the token that makes a search see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WrittenBody<T> {
    pub data: T,
    pub version: u64,
    /// Pass as `consistency_token` to a search to see this write.
    pub consistency_token: String,
}

impl<T> From<Written<T>> for WrittenBody<T> {
    fn from(w: Written<T>) -> Self {
        Self {
            data: w.value,
            version: w.version.0,
            consistency_token: w.token.to_string(),
        }
    }
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<Versioned<T>>,
    /// Every match, ignoring the page.
    pub total: u64,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The application's router.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/activities", get(activities::search))
        .route("/activities/aggregate", get(activities::aggregate))
        .route("/deals/{deal_id}/activities", post(activities::record))
        .route(
            "/deals/{deal_id}/activities/{id}",
            get(activities::get)
                .patch(activities::edit)
                .delete(activities::delete),
        )
        .route("/companies", post(companies::create).get(companies::search))
        .route(
            "/companies/{id}",
            get(companies::get).patch(companies::edit),
        )
        .route("/deals", post(deals::create))
        .route("/deals/search", post(deals::search))
        .route("/deals/{id}", get(deals::get).patch(deals::edit))
        .route(
            "/deals/{id}/tags/{tag}",
            put(deals::tag).delete(deals::untag),
        )
        .route("/tags", get(deals::tags))
        .route("/synonyms", get(synonyms::get).put(synonyms::set))
        .route(
            "/sales-lists",
            post(sales_lists::create).get(sales_lists::list),
        )
        .route("/sales-lists/{id}", get(sales_lists::get))
        .route("/sales-lists/{id}/deals", post(sales_lists::add_deals))
        .route("/pipeline/status", get(ops::pipeline_status));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(ops::web_page))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside `observe`, so a timed-out request is logged, counted and gets the common
        // error body.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /openapi.json",
    )
}

/// Logs every request with its id, counts it, and puts the request id into error bodies.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let response = next.run(request).await;
    let status = response.status();
    let elapsed = started.elapsed();
    state.metrics.http_request(
        method.as_str(),
        &route,
        status.as_u16(),
        elapsed.as_secs_f64(),
    );
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status = status.as_u16(),
        elapsed_ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    if status.is_client_error() || status.is_server_error() {
        return with_request_id(response, &request_id).await;
    }
    response
}

/// Adds `request_id` to a JSON error body, and gives the bodies of axum and tower-http
/// (a rejected method, a timeout) the common error shape.
async fn with_request_id(response: Response, request_id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let ours = value.as_object().is_some_and(|o| o.contains_key("error"));
    if !ours {
        let code = match parts.status {
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        let text = String::from_utf8_lossy(&bytes);
        let message = if text.trim().is_empty() {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_string()
        } else {
            text.into_owned()
        };
        value = serde_json::json!({"error": {"code": code, "message": message}});
    }
    if let Some(object) = value.as_object_mut() {
        object.insert("request_id".into(), request_id.into());
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(value.to_string()))
}

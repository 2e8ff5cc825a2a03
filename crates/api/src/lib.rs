//! The HTTP API of the sales-activity application: JSON over axum, documented by an
//! OpenAPI document generated from the handlers (`/openapi.json`).
//!
//! - [`state`]: what the handlers share ([`AppState`]: the use cases, the tenant
//!   registry that resolves bearer tokens) and the port the HTTP layer needs beside them:
//!   [`OpsProbe`] (the pipeline's live status).
//! - [`extract`]: request extractors: the authenticated tenant, strict JSON bodies and
//!   query strings whose errors become 422 with one message per field.
//! - [`error`]: [`ApiError`] and the one error body every failure uses.
//! - [`routes`]: the handlers, one module per resource, plus operations (health,
//!   readiness, metrics, pipeline status) and the web page.
//! - [`metrics`]: Prometheus metrics.
//! - [`openapi`]: the document.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;

pub use error::ApiError;
pub use metrics::Metrics;
pub use routes::router;
pub use state::{AppState, LagSummary, OpsProbe, PipelineReport};

//! One error body for every failure:
//! `{"error": {"code", "message", "fields"?, "current_version"?}, "request_id"}`.
//! The request id is filled in by the router's middleware from `x-request-id`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tsunagu_service::tenants::TenantError;
use tsunagu_service::{FieldIssue, ServiceError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The request's id, also in the `x-request-id` header and the server's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// not_found, conflict, invalid, unauthorized, bad_request, not_consistent_yet,
    /// unavailable, payload_too_large, unsupported_media_type, internal.
    pub code: &'static str,
    pub message: String,
    /// For `invalid`: one entry per field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldIssue>,
    /// For `conflict`: the current version to re-read and retry from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: ErrorDetail {
                code,
                message: message.into(),
                fields: Vec::new(),
                current_version: None,
            },
        }
    }

    pub fn invalid(fields: Vec<FieldIssue>) -> Self {
        let message = if fields.len() == 1 {
            format!("{}: {}", fields[0].field, fields[0].message)
        } else {
            format!("{} fields are invalid", fields.len())
        };
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message);
        e.detail.fields = fields;
        e
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            ServiceError::Conflict { current, .. } => {
                let mut err = Self::new(StatusCode::CONFLICT, "conflict", message);
                err.detail.current_version = current.map(|v| v.0);
                err
            }
            ServiceError::Invalid(fields) => Self::invalid(fields),
            ServiceError::NotConsistentYet { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_consistent_yet",
                message,
            ),
            ServiceError::Unavailable(_) => {
                tracing::error!(error = %message, "request failed");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        let message = e.to_string();
        let field = |field: &str| {
            Self::invalid(vec![FieldIssue {
                field: field.into(),
                message: message.clone(),
            }])
        };
        match e {
            TenantError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            TenantError::NameTaken(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            TenantError::InvalidName { .. } => field("name"),
            TenantError::InvalidTimeZone { .. } => field("time_zone"),
            TenantError::InvalidSynonyms(ref reason) => Self::invalid(vec![FieldIssue {
                field: "groups".into(),
                message: reason.to_string(),
            }]),
            TenantError::Unavailable(_) => {
                tracing::error!(error = %message, "tenant registry failed");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                error: self.detail,
                request_id: None,
            }),
        )
            .into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

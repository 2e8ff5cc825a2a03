//! The outcomes of a use case that a caller must tell apart.

use tsunagu_domain::text_query::TextQueryError;
use tsunagu_domain::{ValidationErrors, Version};

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldIssue {
    /// The field's path in the request (`memo`, `tags[2]`, `no_activity.within_days`).
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// The thing does not exist, or belongs to another tenant (never told apart).
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// The caller's version is not the current one (optimistic concurrency).
    #[error("{what} {id:?} was changed meanwhile: you sent version {sent}, the current one is {}", current.map_or("none (deleted)".to_string(), |v| v.to_string()))]
    Conflict {
        what: &'static str,
        id: String,
        sent: Version,
        current: Option<Version>,
    },
    /// Input that breaks a rule, one issue per field.
    #[error("invalid input: {}", render(.0))]
    Invalid(Vec<FieldIssue>),
    /// A consistency token's write was not applied to the index within the wait.
    #[error("the search index has not applied the write of this consistency token within {waited_ms} ms; retry")]
    NotConsistentYet { waited_ms: u64 },
    /// The store or index failed; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
}

fn render(issues: &[FieldIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("{}: {}", i.field, i.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Invalid(vec![FieldIssue {
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// Memo or title text the search syntax cannot read: a 422 on the `q` parameter, naming
/// the problem.
impl From<TextQueryError> for ServiceError {
    fn from(e: TextQueryError) -> Self {
        ServiceError::invalid("q", e.to_string())
    }
}

impl From<ValidationErrors> for ServiceError {
    fn from(e: ValidationErrors) -> Self {
        ServiceError::Invalid(
            e.0.into_iter()
                .map(|f| FieldIssue {
                    field: f.field.to_string(),
                    message: f.message,
                })
                .collect(),
        )
    }
}

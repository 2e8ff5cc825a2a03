//! [`OpenSearchError`]: what can go wrong outside `apply` (setting up, checking, reading
//! back). URLs in messages are always redacted; secrets never appear.

use tsunagu_engine::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum OpenSearchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something the config points at is unusable (an unset environment variable, an
    /// unreadable CA file).
    #[error("opensearch sink setup: {0}")]
    Setup(String),
    /// No answer: connection refused, DNS, TLS handshake, timeout. Worth retrying.
    #[error("cannot reach OpenSearch at {url} ({what}): {message}")]
    Unreachable {
        url: String,
        what: String,
        message: String,
    },
    /// An answer with a failure status.
    #[error("OpenSearch at {url} answered {what} with {message}")]
    Status {
        url: String,
        what: String,
        status: u16,
        message: String,
    },
    /// An answer this crate cannot read, or a cluster or index it cannot work with.
    #[error("OpenSearch at {url} ({what}): {message}")]
    Unusable {
        url: String,
        what: String,
        message: String,
    },
}

impl OpenSearchError {
    /// Whether trying the same call again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            OpenSearchError::Unreachable { .. } => true,
            OpenSearchError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// An error and its sources, `: `-separated (reqwest's own message is only "error sending
/// request"; the cause, such as "Connection refused", is in the chain). Never includes a
/// URL: reqwest errors are stripped of theirs before they get here.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

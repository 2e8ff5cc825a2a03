//! The crate's error type. Messages are lowercase and say what to fix.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec file is malformed or inconsistent; the message names file, line and column.
    #[error("{0}")]
    Spec(String),
    /// Foreign keys form a cycle and no constraint in it is deferred.
    #[error("foreign keys form a cycle: {tables}; mark one of these foreign keys `deferred = true` so it is added after loading")]
    Cycle { tables: String },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Source {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("table `{table}`: {rejected} of {read} rows rejected ({share:.4}), above max_reject_share {max}; see {rejects}")]
    RejectThreshold {
        table: String,
        read: u64,
        rejected: u64,
        share: f64,
        max: f64,
        rejects: PathBuf,
    },
    #[error("loading `{table}` chunk {chunk} raised {count} warning(s), rows would be lost silently: {warnings}")]
    LoadWarnings {
        table: String,
        chunk: u32,
        count: u64,
        warnings: String,
    },
    /// Loaded rows reference no parent (only a deferred foreign key, which the exporter
    /// cannot check, can get there); the swap did not happen.
    #[error("foreign keys do not hold, the previous tables are left in place: {details}")]
    ForeignKeys { details: String },
    /// The chunk store (an S3 bucket) failed; the message says what to fix.
    #[error("chunk store: {0}")]
    ChunkStore(String),
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("verification failed: {0}")]
    Verify(String),
    /// A table this one depends on failed (its own error is reported instead).
    #[error("a table this one depends on failed")]
    Upstream,
    #[error("{0}")]
    Other(String),
}

impl From<tsunagu_embedded_store::StoreError> for Error {
    fn from(e: tsunagu_embedded_store::StoreError) -> Self {
        Error::Other(e.to_string())
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
}

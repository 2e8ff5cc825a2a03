//! The errors of opening, querying and reading the index ([`IndexError`]). Errors of
//! applying changes are the engine's [`tsunagu_engine::ports::SinkError`].

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A read-only open found no index in the directory.
    #[error("no index at {}; run `tsunagu replicate` or `tsunagu demo` first", .dir.display())]
    NoIndex { dir: PathBuf },

    /// Another process (or another `ActivityIndex` in this one) holds the writer lock.
    #[error(
        "the index at {} is already open for writing by another process (is `tsunagu replicate` running?); \
         use a read-only open to search it",
        .dir.display()
    )]
    Locked { dir: PathBuf },

    /// The directory holds an index written with a different schema (another program, or an
    /// older version of tsunagu).
    #[error("the index at {} has an unexpected schema ({message}); move it away and rebuild it", .dir.display())]
    SchemaMismatch { dir: PathBuf, message: String },

    #[error("invalid index options: {0}")]
    InvalidOptions(String),

    #[error("invalid query: {0}")]
    InvalidQuery(String),

    /// A pagination cursor that this index did not hand out (or that was altered).
    #[error(transparent)]
    BadCursor(#[from] tsunagu_domain::search::CursorError),

    /// A document whose stored fields cannot be read back (a bug or a damaged index).
    #[error("the indexed document {key:?} is unreadable: {message}")]
    CorruptDocument { key: String, message: String },

    #[error("{context}: {source}")]
    Tantivy {
        context: String,
        #[source]
        source: tantivy::TantivyError,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl IndexError {
    pub(crate) fn tantivy(
        context: impl Into<String>,
    ) -> impl FnOnce(tantivy::TantivyError) -> Self {
        let context = context.into();
        move |source| IndexError::Tantivy { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| IndexError::Io { context, source }
    }
}

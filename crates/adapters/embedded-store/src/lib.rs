//! The embedded primary store: one SQLite file, no server. It is tsunagu's default
//! primary database and change stream, and keeps the replication state beside it.
//!
//! - [`primary`]: items addressed by partition + sort key, with optimistic concurrency on
//!   the version. Every write that changes an item appends a change record **in the same
//!   transaction**; writes from many callers are group-committed by one writer thread.
//! - [`stream`]: the change stream as a [`tsunagu_engine::ports::ChangeSource`]: records
//!   sharded by partition key, read in commit order, woken up at once by in-process
//!   writes, trimmed after the retention period.
//! - [`scan`]: the items themselves, a segment (shard) at a time, for bootstrapping and
//!   reconciling consumers.
//! - [`state`]: checkpoints and the dead-letter queue in a separate file, so the
//!   engine's bookkeeping never contends with primary writes.
//! - [`leases`]: shard leases for several processes sharing the stream, in the state file.
//! - [`tenants`]: tenants and their API tokens (stored hashed), in their own file.
//! - [`read_only`]: the store file opened read-only, for readers that must not change it.
//! - [`sqlite`]: connection set-up and schema shared by the above.
//!
//! Several processes may open the same files: SQLite in WAL mode serializes writers and
//! lets readers run beside them. Readers in another process notice new records by polling
//! (`external_poll_interval`), readers in the writer's process are woken up directly.

pub mod inspect;
pub mod leases;
pub mod primary;
pub mod read_only;
pub mod scan;
pub mod sqlite;
pub mod state;
pub mod stream;
pub mod tenants;

pub use primary::{Condition, EmbeddedStore, StoreOptions, StoredItem, WriteOp, WriteOutcome};
pub use read_only::ReadOnlyStore;
pub use state::EmbeddedState;
pub use tenants::TenantRegistry;

use tsunagu_domain::{ItemKey, Version};

/// Errors of the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item's version is not the one the caller expected.
    #[error("version conflict on {key}: expected {expected}, found {}", found.map_or("no item".to_string(), |v| format!("version {v}")))]
    Conflict {
        key: ItemKey,
        expected: String,
        found: Option<Version>,
    },
    /// The write itself is malformed (empty key, a body that is not an object).
    #[error("invalid write: {0}")]
    Invalid(String),
    /// The store could not do what was asked for a reason other than the request (a
    /// directory it cannot create, a rolled-back commit); the message says which.
    #[error("{0}")]
    Failed(String),
    #[error("store at {path} was created with {existing} shards, but {requested} were configured; the shard count of a store cannot change")]
    ShardCountMismatch {
        path: String,
        existing: u32,
        requested: u32,
    },
    #[error("store file {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Records after the requested position were trimmed (retention exceeded).
    #[error("change records of shard {shard} through sequence {through} were trimmed")]
    Trimmed { shard: u32, through: i64 },
    /// A store file opened read-only ([`read_only`]) is missing, not a store, of another
    /// schema version, or failed while being read.
    #[error("embedded store {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("corrupt row in the store: {0}")]
    Corrupt(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store's writer has stopped")]
    Closed,
    /// A write to a store or file opened read-only.
    #[error("opened read-only: this command does not write")]
    ReadOnly,
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

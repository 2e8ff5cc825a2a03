//! The domain of tsunagu: what the sales-support application stores and what the
//! replication pipeline moves. Nothing in this crate does I/O.
//!
//! - [`item`]: how anything is addressed in the primary store ([`ItemKey`]: partition key +
//!   sort key) and versioned ([`Version`]: strictly increasing per item on every change).
//! - [`change`]: the change records the primary store appends in the same transaction as a
//!   write, and the shard / position vocabulary of a change stream.
//! - [`activity`]: the activity log (活動履歴), the first entity, with its validation rules.
//! - [`entity`]: the closed set of entity kinds stored as item bodies, with strict decoding
//!   that names the offending field.

pub mod activity;
pub mod change;
pub mod entity;
pub mod item;

pub use activity::{ActionType, ActivityLog, MEMO_MAX_CHARS};
pub use change::{ChangeKind, ChangeRecord, Image, Position, ShardId};
pub use entity::{DecodeError, Entity};
pub use item::{ItemKey, Version};

/// One field that failed validation and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// All the field errors of one value, so a caller can fix them in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_field_errors(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn render_field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

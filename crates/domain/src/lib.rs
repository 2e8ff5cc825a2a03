//! The domain of tsunagu: what the sales-support application stores and what the
//! replication pipeline moves. Nothing in this crate does I/O.
//!
//! - [`item`]: how anything is addressed in the primary store ([`ItemKey`]: partition key +
//!   sort key) and versioned ([`Version`]: strictly increasing per item on every change).
//! - [`change`]: the change records the primary store appends in the same transaction as a
//!   write, and the shard / position vocabulary of a change stream.
//! - [`activity`]: the activity log (活動履歴), the first entity, with its validation rules.
//! - [`company`], [`deal`], [`sales_list`]: the companies (取引先), deals (営業案件) and
//!   sales lists (営業リスト) of the application, with their rules.
//! - [`prefecture`]: the 47 prefectures and splitting one off an address.
//! - [`search`]: the search vocabulary (queries, pages, cursors, aggregations) that the
//!   use cases speak and every index implements.
//! - [`text`]: text rules every index applies alike (which scripts are bigram-analyzed).
//! - [`text_query`]: the memo search syntax (words, phrases, `-` exclusions, `OR`), parsed
//!   once into the tree every index translates.
//! - [`synonyms`]: a tenant's synonym groups, validated, applied to a parsed query.
//! - [`entity`]: the closed set of entity kinds stored as item bodies, with strict decoding
//!   that names the offending field.

pub mod activity;
pub mod change;
pub mod company;
pub mod deal;
pub mod entity;
pub mod item;
pub mod prefecture;
pub mod sales_list;
pub mod search;
pub mod synonyms;
pub mod text;
pub mod text_query;

pub use activity::{ActionType, ActivityLog, MEMO_MAX_CHARS};
pub use change::{ChangeKind, ChangeRecord, Image, Position, ShardId};
pub use company::Company;
pub use deal::{Deal, DealStage};
pub use entity::{DecodeError, Entity, EntityKind};
pub use item::{ItemKey, Version};
pub use sales_list::SalesList;

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

impl ValidationErrors {
    /// `Ok` when there are no errors.
    pub fn from_vec(errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

fn render_field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

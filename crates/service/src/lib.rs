//! The use cases of the sales-activity application (営業支援): recording and editing
//! activities with optimistic concurrency, searching and aggregating them across deals,
//! companies and deals with their tags, deal searches that combine deal fields with their
//! company's and with facts about their activities, and sales lists.
//!
//! Business rules live here and in `tsunagu-domain`; storage and search are reached only
//! through [`ports`], so the same use cases run on the embedded store and index or on
//! DynamoDB and OpenSearch. Nothing here knows about HTTP or a database.
//!
//! - [`ports`]: what the use cases need from the primary store, the search index and the
//!   clock.
//! - [`error`]: [`ServiceError`], the outcomes a caller must tell apart (not found,
//!   conflict, invalid input, not yet consistent, unavailable).
//! - [`consistency`]: read-your-writes tokens and the bounded wait for the index.
//! - [`tenants`]: the tenant registry port and the token rules every registry shares.
//! - [`usecases`]: one module per aggregate, all methods of [`Service`].

pub mod consistency;
pub mod error;
pub mod ports;
pub mod tenants;
pub mod usecases;

pub use consistency::ConsistencyToken;
pub use error::{FieldIssue, ServiceError};
pub use usecases::{Service, ServiceOptions, TenantId, Written};

//! The conformance suite: one set of checks per port, written against the port's trait
//! only, that every adapter must pass. The embedded adapters run it in this crate's
//! tests; the AWS and OpenSearch adapters run the very same functions against their test
//! peers, so both sides provably honour one contract.
//!
//! Each module's `check_all` runs its checks. A check is an `async fn` taking the adapter
//! (and, where the port alone cannot observe an outcome, a small harness trait) and
//! panicking with a message that names the broken rule.
//!
//! - [`store`]: the primary store ([`tsunagu_engine::ports::ItemStore`]).
//! - [`source`]: the change stream ([`tsunagu_engine::ports::ChangeSource`]) fed by a store.
//! - [`sink`]: where changes are applied ([`tsunagu_engine::ports::Sink`]).
//! - [`drift`]: a side of a drift comparison, sink or primary
//!   ([`tsunagu_engine::drift::VersionDigest`], [`tsunagu_engine::drift::PrimaryDigest`]).
//! - [`lease`]: shard leases shared by worker processes
//!   ([`tsunagu_engine::ports::LeaseStore`]).
//! - [`dlq`]: the dead-letter queue ([`tsunagu_engine::ports::DeadLetterQueue`]).
//! - [`backfill_progress`]: where backfills stand
//!   ([`tsunagu_engine::backfill::BackfillProgressStore`]).
//! - [`search`]: the service's search index ([`tsunagu_service::ports::SearchIndex`]),
//!   loaded through its sink, with the embedded index's answers.
//! - [`tenants`]: the tenant registry ([`tsunagu_service::tenants::TenantDirectory`]).

pub mod backfill_progress;
pub mod dlq;
pub mod drift;
pub mod lease;
pub mod search;
pub mod sink;
pub mod source;
pub mod store;
pub mod tenants;

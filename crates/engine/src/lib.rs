//! The replication engine: reads change streams shard by shard and applies them to sinks
//! with per-item order at any parallelism, retries, a dead-letter queue and checkpoints.
//! It knows no concrete database: everything it touches is a port ([`ports`]).
//!
//! - [`ports`]: the traits adapters implement, with their contracts.
//! - [`config`]: a consumer's knobs, as read from the versioned TOML config, and their
//!   validation.
//! - [`pipeline`]: [`Engine::start`] runs consumers; [`Pipeline`] reports and stops them.
//! - `shard` / `lane` (private): a shard worker reads in order, routes records by key to
//!   `parallelization_factor` lanes, and advances the checkpoint over the acknowledged
//!   prefix; a lane batches, retries with backoff, bisects and dead-letters.
//! - [`redrive`]: re-applying dead letters.
//! - [`backfill`]: bootstrapping a consumer from the primary's items, handing over to the
//!   stream with no gap, shard by shard or by scanning the whole table when the scanner's
//!   segments are not the stream's shards (DynamoDB); also the recovery when a consumer
//!   fell behind retention.
//! - [`lease`]: sharing a stream's shards between worker processes (take, renew, steal,
//!   hand off), with checkpoints kept in the leases.
//! - [`memory`]: in-memory implementations of the ports (tests, benchmarks, dry runs).
//! - [`status`]: live per-shard counters.
//! - [`drift`]: drift detection and repair between the primary and a consumer's sink, over
//!   the [`drift::VersionDigest`] port every store and readable sink implements.

pub mod backfill;
pub mod config;
pub mod drift;
mod lane;
pub mod lease;
pub mod memory;
pub mod pipeline;
pub mod ports;
pub mod redrive;
mod shard;
pub mod status;

pub use config::{check_bounds, ConfigError, ConsumerConfig, Ordering, RetentionPolicy};
pub use pipeline::{Consumer, Engine, EngineError, Pipeline};

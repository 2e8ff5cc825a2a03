//! The replication engine: reads change streams shard by shard and applies them to sinks
//! with per-item order at any parallelism, retries, a dead-letter queue and checkpoints.
//! It knows no concrete database: everything it touches is a port ([`ports`]).
//!
//! - [`ports`]: the traits adapters implement.
//! - [`config`]: the consumer knobs, as read from the versioned TOML config, and their
//!   validation.

pub mod ports;

//! Consumer knobs as read from the versioned TOML config, with a pure validation step
//! (no I/O) whose errors name the field to fix.

use crate::ports::StartingPosition;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The highest batch size accepted (as for AWS Lambda event source mappings).
pub const MAX_BATCH_SIZE: usize = 10_000;

/// How records are spread over the lanes of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// By item key (partition + sort): changes of one item stay in order; two items of
    /// the same partition may be applied in parallel. The default.
    #[default]
    Item,
    /// By partition key: all changes of a partition (a deal) stay in order.
    PartitionKey,
}

/// What a consumer does when its checkpoint has fallen out of the stream's retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetentionPolicy {
    /// Backfill the shard from the primary's items, then carry on from the stream.
    #[default]
    Backfill,
    /// Stop the shard and say so (in the log and `tsunagu status`); recover by hand with
    /// `tsunagu backfill`.
    Stop,
}

/// One consumer of the change stream: its sink and how records are delivered to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Unique name; checkpoints and dead letters are kept under it.
    pub name: String,
    /// The sink this consumer applies records to, by name (a `[sinks.NAME]` table of the
    /// config file; the binary builds it).
    #[serde(default = "defaults::sink")]
    pub sink: String,
    /// Most records per sink call (1..=10000).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// How long a lane waits to fill a batch after its first record; 0 sends whatever
    /// is there at once (lowest latency).
    #[serde(default)]
    pub batching_window_ms: u64,
    /// Lanes per shard applying records concurrently (no upper cap). Records are routed
    /// to lanes by key, so per-item order holds at any value.
    #[serde(default = "defaults::parallelization_factor")]
    pub parallelization_factor: u32,
    #[serde(default)]
    pub ordering: Ordering,
    /// Retries of a failed batch before it is bisected / dead-lettered (0..=100).
    #[serde(default = "defaults::max_retry_attempts")]
    pub max_retry_attempts: u32,
    /// First retry delay; doubles per attempt with full jitter, up to the maximum.
    #[serde(default = "defaults::retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    #[serde(default = "defaults::retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
    /// A failing record older than this (since its commit) is dead-lettered without
    /// further retries. Unset: no age limit.
    #[serde(default)]
    pub max_record_age_seconds: Option<u64>,
    /// After the retries, split a failing batch in halves to find the failing records,
    /// so only they are dead-lettered.
    #[serde(default = "defaults::yes")]
    pub bisect_batch_on_error: bool,
    /// Where a shard with no checkpoint starts.
    #[serde(default = "defaults::starting_position")]
    pub starting_position: StartingPosition,
    /// Records read but not yet acknowledged, per shard (bounds memory).
    #[serde(default = "defaults::max_in_flight_records")]
    pub max_in_flight_records: usize,
    /// How often an advanced checkpoint is written (they are also written on shutdown).
    #[serde(default = "defaults::checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// When the checkpoint is older than the stream's retention (records were trimmed
    /// before this consumer read them): backfill (default) or stop.
    #[serde(default)]
    pub on_retention_exceeded: RetentionPolicy,
}

mod defaults {
    use crate::ports::StartingPosition;
    pub fn sink() -> String {
        "activities".into()
    }
    pub fn batch_size() -> usize {
        100
    }
    pub fn parallelization_factor() -> u32 {
        1
    }
    pub fn max_retry_attempts() -> u32 {
        3
    }
    pub fn retry_initial_backoff_ms() -> u64 {
        50
    }
    pub fn retry_max_backoff_ms() -> u64 {
        5_000
    }
    pub fn yes() -> bool {
        true
    }
    pub fn starting_position() -> StartingPosition {
        StartingPosition::TrimHorizon
    }
    pub fn max_in_flight_records() -> usize {
        20_000
    }
    pub fn checkpoint_interval_ms() -> u64 {
        200
    }
}

impl ConsumerConfig {
    /// A consumer with every knob at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            sink: defaults::sink(),
            batch_size: defaults::batch_size(),
            batching_window_ms: 0,
            parallelization_factor: defaults::parallelization_factor(),
            ordering: Ordering::Item,
            max_retry_attempts: defaults::max_retry_attempts(),
            retry_initial_backoff_ms: defaults::retry_initial_backoff_ms(),
            retry_max_backoff_ms: defaults::retry_max_backoff_ms(),
            max_record_age_seconds: None,
            bisect_batch_on_error: true,
            starting_position: defaults::starting_position(),
            max_in_flight_records: defaults::max_in_flight_records(),
            checkpoint_interval_ms: defaults::checkpoint_interval_ms(),
            on_retention_exceeded: RetentionPolicy::Backfill,
        }
    }

    pub fn batching_window(&self) -> Duration {
        Duration::from_millis(self.batching_window_ms)
    }

    pub fn max_record_age(&self) -> Option<Duration> {
        self.max_record_age_seconds.map(Duration::from_secs)
    }

    /// Checks every knob; `field_prefix` (for example `consumers[0]`) is put in front of
    /// field names in the errors.
    pub fn validate(&self, field_prefix: &str) -> Result<(), ConfigError> {
        let field = |name: &str| {
            if field_prefix.is_empty() {
                name.to_string()
            } else {
                format!("{field_prefix}.{name}")
            }
        };
        let fail = |name: &str, message: String| {
            Err(ConfigError {
                field: field(name),
                message,
            })
        };
        if !valid_name(&self.name) {
            return fail(
                "name",
                format!(
                    "{:?} is not a valid consumer name: use 1 to 64 characters among a-z, 0-9, '-' and '_'",
                    self.name
                ),
            );
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return fail(
                "batch_size",
                format!(
                    "must be between 1 and {MAX_BATCH_SIZE}, got {}",
                    self.batch_size
                ),
            );
        }
        if self.batching_window_ms > 300_000 {
            return fail(
                "batching_window_ms",
                format!(
                    "must be at most 300000 (5 minutes), got {}",
                    self.batching_window_ms
                ),
            );
        }
        if self.parallelization_factor == 0 {
            return fail("parallelization_factor", "must be at least 1".into());
        }
        if self.max_retry_attempts > 100 {
            return fail(
                "max_retry_attempts",
                format!("must be at most 100, got {}", self.max_retry_attempts),
            );
        }
        if self.retry_initial_backoff_ms == 0 {
            return fail("retry_initial_backoff_ms", "must be at least 1".into());
        }
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms {
            return fail(
                "retry_max_backoff_ms",
                format!(
                    "must not be less than retry_initial_backoff_ms ({})",
                    self.retry_initial_backoff_ms
                ),
            );
        }
        if self.max_record_age_seconds == Some(0) {
            return fail(
                "max_record_age_seconds",
                "must be at least 1, or left out for no limit".into(),
            );
        }
        if self.max_in_flight_records < self.batch_size {
            return fail(
                "max_in_flight_records",
                format!("must be at least batch_size ({})", self.batch_size),
            );
        }
        if self.checkpoint_interval_ms == 0 || self.checkpoint_interval_ms > 60_000 {
            return fail(
                "checkpoint_interval_ms",
                format!(
                    "must be between 1 and 60000, got {}",
                    self.checkpoint_interval_ms
                ),
            );
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A config value that is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: `{field}` {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(ConsumerConfig::named("search").validate(""), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = ConsumerConfig::named("search");
        c.batch_size = 0;
        let e = c.validate("consumers[1]").unwrap_err();
        assert_eq!(e.field, "consumers[1].batch_size");
        c.batch_size = 10_001;
        assert!(c.validate("").unwrap_err().message.contains("10000"));
        let mut c = ConsumerConfig::named("Search Index");
        assert_eq!(c.validate("").unwrap_err().field, "name");
        c.name = "search".into();
        c.parallelization_factor = 0;
        assert_eq!(c.validate("").unwrap_err().field, "parallelization_factor");
    }

    #[test]
    fn unknown_fields_are_rejected_when_parsing() {
        let err = toml::from_str::<ConsumerConfig>("name = \"a\"\nbatch_sise = 5\n").unwrap_err();
        assert!(err.to_string().contains("batch_sise"), "{err}");
    }

    #[test]
    fn parallelization_has_no_cap() {
        let mut c = ConsumerConfig::named("wide");
        c.parallelization_factor = 64;
        assert_eq!(c.validate(""), Ok(()));
    }
}

//! Consumer knobs as read from the versioned TOML config, with a pure validation step
//! (no I/O) whose errors name the field to fix.

use crate::ports::StartingPosition;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The highest batch size accepted (as for AWS Lambda event source mappings).
pub const MAX_BATCH_SIZE: usize = 10_000;
/// The longest batching window: 5 minutes, as for Lambda; a longer wait only delays
/// records while holding them in memory.
pub const MAX_BATCHING_WINDOW_MS: u64 = 300_000;
/// The most lanes per shard. Each lane is a task with its own queue of up to
/// `2 × batch_size` records and its own sink calls in flight, and every shard runs
/// that many: Lambda allows 10; 100 leaves ten times the headroom, while 100000 lanes
/// would mean 100000 tasks and queues per shard (memory runs out before any sink is
/// faster).
pub const MAX_PARALLELIZATION_FACTOR: u32 = 100;
/// The most retries of a failing batch before it is bisected or dead-lettered: with
/// the backoff capped this already means hours on one batch.
pub const MAX_RETRY_ATTEMPTS: u32 = 100;
/// The longest first retry delay (1 minute).
pub const MAX_RETRY_INITIAL_BACKOFF_MS: u64 = 60_000;
/// The longest retry delay (10 minutes): a lane retrying holds its shard's checkpoint,
/// so a longer sleep only hides an outage.
pub const MAX_RETRY_MAX_BACKOFF_MS: u64 = 600_000;
/// The oldest a failing record may be before it is dead-lettered: 7 days, as for Lambda
/// (longer than any stream tsunagu reads keeps records by default).
pub const MAX_RECORD_AGE_SECONDS: u64 = 604_800;
/// The most records read but not acknowledged per shard: at about 1 KiB a record,
/// about 1 GiB per shard, which is as much as one reader should hold.
pub const MAX_IN_FLIGHT_RECORDS: usize = 1_000_000;
/// The longest time between two checkpoint writes (1 minute): what a crash replays.
pub const MAX_CHECKPOINT_INTERVAL_MS: u64 = 60_000;

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
    /// Most records per sink call (1 to [`MAX_BATCH_SIZE`]).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// How long a lane waits to fill a batch after its first record; 0 sends whatever
    /// is there at once (lowest latency). At most [`MAX_BATCHING_WINDOW_MS`].
    #[serde(default)]
    pub batching_window_ms: u64,
    /// Lanes per shard applying records concurrently (1 to
    /// [`MAX_PARALLELIZATION_FACTOR`]). Records are routed to lanes by key, so per-item
    /// order holds at any value.
    #[serde(default = "defaults::parallelization_factor")]
    pub parallelization_factor: u32,
    #[serde(default)]
    pub ordering: Ordering,
    /// Retries of a failed batch before it is bisected / dead-lettered (0 to
    /// [`MAX_RETRY_ATTEMPTS`]).
    #[serde(default = "defaults::max_retry_attempts")]
    pub max_retry_attempts: u32,
    /// First retry delay; doubles per attempt with full jitter, up to the maximum (1 to
    /// [`MAX_RETRY_INITIAL_BACKOFF_MS`]).
    #[serde(default = "defaults::retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// The longest retry delay (`retry_initial_backoff_ms` to [`MAX_RETRY_MAX_BACKOFF_MS`]).
    #[serde(default = "defaults::retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
    /// A failing record older than this (since its commit) is dead-lettered without
    /// further retries (1 to [`MAX_RECORD_AGE_SECONDS`]). Unset: no age limit.
    #[serde(default)]
    pub max_record_age_seconds: Option<u64>,
    /// After the retries, split a failing batch in halves to find the failing records,
    /// so only they are dead-lettered.
    #[serde(default = "defaults::yes")]
    pub bisect_batch_on_error: bool,
    /// Where a shard with no checkpoint starts.
    #[serde(default = "defaults::starting_position")]
    pub starting_position: StartingPosition,
    /// Records read but not yet acknowledged, per shard (bounds memory; `batch_size` to
    /// [`MAX_IN_FLIGHT_RECORDS`]).
    #[serde(default = "defaults::max_in_flight_records")]
    pub max_in_flight_records: usize,
    /// How often an advanced checkpoint is written (they are also written on shutdown;
    /// 1 to [`MAX_CHECKPOINT_INTERVAL_MS`]).
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
        let bounds = |name: &str, value: u64, min: u64, max: u64| {
            check_bounds(field(name), value, min..=max)
        };
        bounds(
            "batch_size",
            self.batch_size as u64,
            1,
            MAX_BATCH_SIZE as u64,
        )?;
        bounds(
            "batching_window_ms",
            self.batching_window_ms,
            0,
            MAX_BATCHING_WINDOW_MS,
        )?;
        bounds(
            "parallelization_factor",
            self.parallelization_factor.into(),
            1,
            MAX_PARALLELIZATION_FACTOR.into(),
        )?;
        bounds(
            "max_retry_attempts",
            self.max_retry_attempts.into(),
            0,
            MAX_RETRY_ATTEMPTS.into(),
        )?;
        bounds(
            "retry_initial_backoff_ms",
            self.retry_initial_backoff_ms,
            1,
            MAX_RETRY_INITIAL_BACKOFF_MS,
        )?;
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms {
            return fail(
                "retry_max_backoff_ms",
                format!(
                    "must not be less than retry_initial_backoff_ms ({})",
                    self.retry_initial_backoff_ms
                ),
            );
        }
        bounds(
            "retry_max_backoff_ms",
            self.retry_max_backoff_ms,
            1,
            MAX_RETRY_MAX_BACKOFF_MS,
        )?;
        if self.max_record_age_seconds == Some(0) {
            return fail(
                "max_record_age_seconds",
                "must be at least 1, or left out for no limit".into(),
            );
        }
        if let Some(age) = self.max_record_age_seconds {
            bounds("max_record_age_seconds", age, 1, MAX_RECORD_AGE_SECONDS)?;
        }
        if self.max_in_flight_records < self.batch_size {
            return fail(
                "max_in_flight_records",
                format!("must be at least batch_size ({})", self.batch_size),
            );
        }
        bounds(
            "max_in_flight_records",
            self.max_in_flight_records as u64,
            1,
            MAX_IN_FLIGHT_RECORDS as u64,
        )?;
        bounds(
            "checkpoint_interval_ms",
            self.checkpoint_interval_ms,
            1,
            MAX_CHECKPOINT_INTERVAL_MS,
        )?;
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Checks that `value` lies within `range` (both ends included); the error names `field`,
/// the value and the bound it crosses, like `= 100000 is above the maximum of 100`.
pub fn check_bounds<T: PartialOrd + std::fmt::Display>(
    field: impl Into<String>,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError> {
    let message = if value < *range.start() {
        format!("= {value} is below the minimum of {}", range.start())
    } else if value > *range.end() {
        format!("= {value} is above the maximum of {}", range.end())
    } else {
        return Ok(());
    };
    Err(ConfigError {
        field: field.into(),
        message,
    })
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
        assert!(c
            .validate("")
            .unwrap_err()
            .message
            .contains("maximum of 10000"));
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

    /// Issue 18: `parallelization_factor = 100000` was accepted and aborted on memory.
    #[test]
    fn every_bound_holds_at_its_edge() {
        type Set = fn(&mut ConsumerConfig, u64);
        let knobs: &[(&str, u64, u64, Set)] = &[
            ("batch_size", 1, MAX_BATCH_SIZE as u64, |c, v| {
                c.batch_size = v as usize;
                c.max_in_flight_records = c.max_in_flight_records.max(c.batch_size);
            }),
            ("batching_window_ms", 0, MAX_BATCHING_WINDOW_MS, |c, v| {
                c.batching_window_ms = v
            }),
            (
                "parallelization_factor",
                1,
                MAX_PARALLELIZATION_FACTOR.into(),
                |c, v| c.parallelization_factor = v as u32,
            ),
            (
                "max_retry_attempts",
                0,
                MAX_RETRY_ATTEMPTS.into(),
                |c, v| c.max_retry_attempts = v as u32,
            ),
            (
                "retry_initial_backoff_ms",
                1,
                MAX_RETRY_INITIAL_BACKOFF_MS,
                |c, v| {
                    c.retry_initial_backoff_ms = v;
                    c.retry_max_backoff_ms = c.retry_max_backoff_ms.max(v);
                },
            ),
            (
                "retry_max_backoff_ms",
                50,
                MAX_RETRY_MAX_BACKOFF_MS,
                |c, v| c.retry_max_backoff_ms = v,
            ),
            (
                "max_record_age_seconds",
                1,
                MAX_RECORD_AGE_SECONDS,
                |c, v| c.max_record_age_seconds = Some(v),
            ),
            (
                "max_in_flight_records",
                100,
                MAX_IN_FLIGHT_RECORDS as u64,
                |c, v| c.max_in_flight_records = v as usize,
            ),
            (
                "checkpoint_interval_ms",
                1,
                MAX_CHECKPOINT_INTERVAL_MS,
                |c, v| c.checkpoint_interval_ms = v,
            ),
        ];
        for (name, min, max, set) in knobs {
            for ok in [*min, *max] {
                let mut c = ConsumerConfig::named("edge");
                set(&mut c, ok);
                assert_eq!(c.validate("consumers[0]"), Ok(()), "{name} = {ok}");
            }
            let mut c = ConsumerConfig::named("edge");
            set(&mut c, max + 1);
            let e = c.validate("consumers[0]").unwrap_err();
            assert_eq!(e.field, format!("consumers[0].{name}"));
            assert!(
                e.message.contains(&format!("above the maximum of {max}")),
                "{e}"
            );
            if *min > 0 {
                let mut c = ConsumerConfig::named("edge");
                set(&mut c, min - 1);
                assert_eq!(
                    c.validate("consumers[0]").unwrap_err().field,
                    format!("consumers[0].{name}")
                );
            }
        }
        let mut c = ConsumerConfig::named("wide");
        c.parallelization_factor = 100_000;
        assert_eq!(
            c.validate("consumers[0]").unwrap_err().to_string(),
            "invalid config: `consumers[0].parallelization_factor` = 100000 is above the maximum of 100"
        );
    }

    #[test]
    fn parallelization_up_to_its_cap() {
        let mut c = ConsumerConfig::named("wide");
        c.parallelization_factor = 64;
        assert_eq!(c.validate(""), Ok(()));
    }
}

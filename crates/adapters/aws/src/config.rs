//! Configuration of the AWS adapters: one [`AwsConfig`] shared by every client, and one
//! struct per adapter. Each has a pure `validate(prefix)` (no I/O) whose error names the
//! field, so `tsunagu check` can report a typo before any connection is tried.

use serde::Deserialize;
use std::time::Duration;
use tsunagu_engine::{check_bounds, ConfigError};

/// Attempts per AWS request: 20 at most, since the SDK backs off exponentially between
/// them and more only stalls a shard behind one failing call.
pub const MAX_ATTEMPTS: u32 = 20;
/// One attempt's timeout: 100 ms at least (a connection needs that), 5 minutes at most.
pub const MIN_ATTEMPT_TIMEOUT_MS: u64 = 100;
pub const MAX_ATTEMPT_TIMEOUT_MS: u64 = 300_000;
/// Tombstones must outlive the stream's 24 h retention; a year at most.
pub const MIN_TOMBSTONE_TTL_HOURS: u64 = 25;
pub const MAX_TOMBSTONE_TTL_HOURS: u64 = 8_760;
/// Writes in flight per `write_many`: each holds a connection, and DynamoDB throttles a
/// partition past about 1,000 writes per second anyway.
pub const MAX_WRITE_CONCURRENCY: usize = 256;
/// Idle polling: at least 10 ms, at most 10 s (a slower poll only delays replication;
/// AWS allows about 5 reads per second per shard).
pub const MIN_POLL_INTERVAL_MS: u64 = 10;
pub const MAX_POLL_INTERVAL_MS: u64 = 10_000;
/// Shards of a Kinesis stream created by tsunagu (the default account quota's order).
pub const MAX_KINESIS_SHARD_COUNT: u32 = 10_000;

fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn fail(prefix: &str, name: &str, message: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError {
        field: field(prefix, name),
        message: message.into(),
    })
}

/// Where the AWS clients connect. Credentials are never configured here: they come from
/// the SDK's default chain (environment, profile, web identity, instance role).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// For example `ap-northeast-1`.
    pub region: String,
    /// Overrides every client's endpoint (a local peer such as moto or kinesalite, or a
    /// VPC endpoint). Plain `http://` is accepted for local peers.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// A named profile of `~/.aws/config` to take credentials and settings from.
    #[serde(default)]
    pub profile: Option<String>,
    /// Attempts per request, the first included, with the SDK's standard exponential
    /// backoff between them (throttling and 5xx are retried).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one attempt may take, connection included.
    #[serde(default = "default_attempt_timeout_ms")]
    pub attempt_timeout_ms: u64,
}

fn default_max_attempts() -> u32 {
    4
}

fn default_attempt_timeout_ms() -> u64 {
    10_000
}

impl AwsConfig {
    /// A configuration for `region` with the defaults.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            endpoint_url: None,
            profile: None,
            max_attempts: default_max_attempts(),
            attempt_timeout_ms: default_attempt_timeout_ms(),
        }
    }

    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return fail(
                prefix,
                "region",
                format!(
                    "{:?} is not an AWS region: use a name like \"ap-northeast-1\"",
                    self.region
                ),
            );
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return fail(
                    prefix,
                    "endpoint_url",
                    format!(
                        "{url:?} must be an http:// or https:// URL, or be left out for AWS itself"
                    ),
                );
            }
        }
        if let Some(profile) = &self.profile {
            if profile.trim().is_empty() {
                return fail(
                    prefix,
                    "profile",
                    "must not be empty; leave it out for the default chain",
                );
            }
        }
        check_bounds(
            field(prefix, "max_attempts"),
            self.max_attempts,
            1..=MAX_ATTEMPTS,
        )?;
        check_bounds(
            field(prefix, "attempt_timeout_ms"),
            self.attempt_timeout_ms,
            MIN_ATTEMPT_TIMEOUT_MS..=MAX_ATTEMPT_TIMEOUT_MS,
        )
    }
}

/// DynamoDB table names: 3 to 255 of `a-z A-Z 0-9 _ - .`.
fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Kinesis stream names: 1 to 128 of `a-z A-Z 0-9 _ - .`.
fn valid_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn check_table(prefix: &str, name: &str, value: &str) -> Result<(), ConfigError> {
    if valid_table_name(value) {
        Ok(())
    } else {
        fail(
            prefix,
            name,
            format!("{value:?} is not a DynamoDB table name: use 3 to 255 characters among a-z, A-Z, 0-9, '_', '-' and '.'"),
        )
    }
}

fn check_poll(prefix: &str, poll_interval_ms: u64) -> Result<(), ConfigError> {
    check_bounds(
        field(prefix, "poll_interval_ms"),
        poll_interval_ms,
        MIN_POLL_INTERVAL_MS..=MAX_POLL_INTERVAL_MS,
    )
}

/// `[primary] type = "dynamodb"`: the table holding the items (see `docs/aws.md` for its
/// layout).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoTableConfig {
    pub table_name: String,
    /// Create the table (on-demand billing, stream `NEW_AND_OLD_IMAGES`, TTL on
    /// `expires_at`) when it does not exist.
    #[serde(default)]
    pub create_if_missing: bool,
    /// How long a deletion's tombstone is kept before DynamoDB's TTL removes it. It must
    /// outlive the stream's retention (24 h) and any clock skew between writers.
    #[serde(default = "default_tombstone_ttl_hours")]
    pub tombstone_ttl_hours: u64,
    /// Writes of one `write_many` in flight at once.
    #[serde(default = "default_write_concurrency")]
    pub write_concurrency: usize,
}

fn default_tombstone_ttl_hours() -> u64 {
    7 * 24
}

fn default_write_concurrency() -> usize {
    16
}

impl DynamoTableConfig {
    pub fn named(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            create_if_missing: false,
            tombstone_ttl_hours: default_tombstone_ttl_hours(),
            write_concurrency: default_write_concurrency(),
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        check_table(prefix, "table_name", &self.table_name)?;
        if self.tombstone_ttl_hours < MIN_TOMBSTONE_TTL_HOURS {
            return fail(
                prefix,
                "tombstone_ttl_hours",
                format!(
                    "= {} is below the minimum of {MIN_TOMBSTONE_TTL_HOURS} (longer than the stream's 24 h retention)",
                    self.tombstone_ttl_hours
                ),
            );
        }
        check_bounds(
            field(prefix, "tombstone_ttl_hours"),
            self.tombstone_ttl_hours,
            MIN_TOMBSTONE_TTL_HOURS..=MAX_TOMBSTONE_TTL_HOURS,
        )?;
        check_bounds(
            field(prefix, "write_concurrency"),
            self.write_concurrency,
            1..=MAX_WRITE_CONCURRENCY,
        )
    }
}

/// `[source] type = "dynamodb_streams"`: the stream of the primary table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoStreamsConfig {
    /// The table whose latest stream is read.
    pub table_name: String,
    /// How often an idle shard is polled. AWS allows about 5 `GetRecords` per second
    /// per shard over all readers.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    250
}

impl DynamoStreamsConfig {
    pub fn named(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            poll_interval_ms: default_poll_interval_ms(),
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        check_table(prefix, "table_name", &self.table_name)?;
        check_poll(prefix, self.poll_interval_ms)
    }
}

/// `[source] type = "kinesis"`, and the target of the Kinesis forwarder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    pub stream_name: String,
    /// Create the stream with `shard_count` shards when it does not exist.
    #[serde(default)]
    pub create_if_missing: bool,
    #[serde(default = "default_shard_count")]
    pub shard_count: u32,
    /// How often an idle shard is polled (Kinesis allows 5 reads per second per shard).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_shard_count() -> u32 {
    1
}

impl KinesisConfig {
    pub fn named(stream_name: impl Into<String>) -> Self {
        Self {
            stream_name: stream_name.into(),
            create_if_missing: false,
            shard_count: default_shard_count(),
            poll_interval_ms: default_poll_interval_ms(),
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if !valid_stream_name(&self.stream_name) {
            return fail(
                prefix,
                "stream_name",
                format!("{:?} is not a Kinesis stream name: use 1 to 128 characters among a-z, A-Z, 0-9, '_', '-' and '.'", self.stream_name),
            );
        }
        check_bounds(
            field(prefix, "shard_count"),
            self.shard_count,
            1..=MAX_KINESIS_SHARD_COUNT,
        )?;
        check_poll(prefix, self.poll_interval_ms)
    }
}

/// `[leases] type = "dynamodb"`: the table of shard leases (partition key `consumer`,
/// sort key `shard`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseTableConfig {
    pub table_name: String,
    /// Create the table (on-demand billing) when it does not exist.
    #[serde(default)]
    pub create_if_missing: bool,
}

impl LeaseTableConfig {
    pub fn named(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            create_if_missing: false,
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        check_table(prefix, "table_name", &self.table_name)
    }
}

/// `[state] type = "dynamodb"`: the table of dead letters and backfill progress, shared
/// by every worker and operator machine (string keys `pk` and `sk`; layout in
/// [`crate::state`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateTableConfig {
    pub table_name: String,
    /// Create the table (on-demand billing) when it does not exist.
    #[serde(default)]
    pub create_if_missing: bool,
}

impl StateTableConfig {
    pub fn named(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            create_if_missing: false,
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        check_table(prefix, "table_name", &self.table_name)
    }
}

/// `[tenants] type = "dynamodb"`: the tenant registry's table, shared by every API
/// server and operator machine (string keys `pk` and `sk`; layout in [`crate::tenants`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTableConfig {
    pub table_name: String,
    /// Create the table (on-demand billing) when it does not exist.
    #[serde(default)]
    pub create_if_missing: bool,
}

impl TenantTableConfig {
    pub fn named(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            create_if_missing: false,
        }
    }

    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        check_table(prefix, "table_name", &self.table_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(AwsConfig::new("us-east-1").validate("aws"), Ok(()));
        assert_eq!(
            DynamoTableConfig::named("items").validate("primary"),
            Ok(())
        );
        assert_eq!(
            DynamoStreamsConfig::named("items").validate("source"),
            Ok(())
        );
        assert_eq!(KinesisConfig::named("changes").validate("source"), Ok(()));
        assert_eq!(LeaseTableConfig::named("leases").validate("leases"), Ok(()));
        assert_eq!(StateTableConfig::named("state").validate("state"), Ok(()));
        assert_eq!(
            TenantTableConfig::named("tenants").validate("tenants"),
            Ok(())
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut aws = AwsConfig::new("Tokyo");
        assert_eq!(aws.validate("aws").unwrap_err().field, "aws.region");
        aws.region = "us-east-1".into();
        aws.endpoint_url = Some("127.0.0.1:4566".into());
        assert_eq!(aws.validate("aws").unwrap_err().field, "aws.endpoint_url");
        let mut table = DynamoTableConfig::named("x");
        assert_eq!(
            table.validate("primary").unwrap_err().field,
            "primary.table_name"
        );
        table.table_name = "items".into();
        table.tombstone_ttl_hours = 1;
        assert!(table.validate("").unwrap_err().message.contains("24 h"));
        assert_eq!(
            StateTableConfig::named("s")
                .validate("state")
                .unwrap_err()
                .field,
            "state.table_name"
        );
        assert_eq!(
            TenantTableConfig::named("t!")
                .validate("tenants")
                .unwrap_err()
                .field,
            "tenants.table_name"
        );
        let mut kinesis = KinesisConfig::named("changes");
        kinesis.shard_count = 0;
        assert_eq!(
            kinesis.validate("source").unwrap_err().field,
            "source.shard_count"
        );
    }

    /// Issue 18: every numeric knob has a bound, enforced at its edge.
    #[test]
    fn every_bound_holds_at_its_edge() {
        fn edge<C>(
            name: &str,
            min: u64,
            max: u64,
            make: impl Fn(u64) -> C,
            validate: impl Fn(&C) -> Result<(), ConfigError>,
        ) {
            assert_eq!(validate(&make(min)), Ok(()), "{name} = {min}");
            assert_eq!(validate(&make(max)), Ok(()), "{name} = {max}");
            let e = validate(&make(max + 1)).unwrap_err();
            assert_eq!(e.field, format!("p.{name}"));
            assert!(
                e.message.contains(&format!("above the maximum of {max}")),
                "{e}"
            );
            let e = validate(&make(min - 1)).unwrap_err();
            assert_eq!(e.field, format!("p.{name}"));
        }
        let aws = |f: fn(&mut AwsConfig, u64)| {
            move |v| {
                let mut c = AwsConfig::new("us-east-1");
                f(&mut c, v);
                c
            }
        };
        let check_aws = |c: &AwsConfig| c.validate("p");
        edge(
            "max_attempts",
            1,
            MAX_ATTEMPTS.into(),
            aws(|c, v| c.max_attempts = v as u32),
            check_aws,
        );
        edge(
            "attempt_timeout_ms",
            MIN_ATTEMPT_TIMEOUT_MS,
            MAX_ATTEMPT_TIMEOUT_MS,
            aws(|c, v| c.attempt_timeout_ms = v),
            check_aws,
        );
        let table = |f: fn(&mut DynamoTableConfig, u64)| {
            move |v| {
                let mut c = DynamoTableConfig::named("items");
                f(&mut c, v);
                c
            }
        };
        let check_table = |c: &DynamoTableConfig| c.validate("p");
        edge(
            "tombstone_ttl_hours",
            MIN_TOMBSTONE_TTL_HOURS,
            MAX_TOMBSTONE_TTL_HOURS,
            table(|c, v| c.tombstone_ttl_hours = v),
            check_table,
        );
        edge(
            "write_concurrency",
            1,
            MAX_WRITE_CONCURRENCY as u64,
            table(|c, v| c.write_concurrency = v as usize),
            check_table,
        );
        edge(
            "poll_interval_ms",
            MIN_POLL_INTERVAL_MS,
            MAX_POLL_INTERVAL_MS,
            |v| DynamoStreamsConfig {
                poll_interval_ms: v,
                ..DynamoStreamsConfig::named("items")
            },
            |c| c.validate("p"),
        );
        let kinesis = |f: fn(&mut KinesisConfig, u64)| {
            move |v| {
                let mut c = KinesisConfig::named("changes");
                f(&mut c, v);
                c
            }
        };
        edge(
            "shard_count",
            1,
            MAX_KINESIS_SHARD_COUNT.into(),
            kinesis(|c, v| c.shard_count = v as u32),
            |c| c.validate("p"),
        );
        edge(
            "poll_interval_ms",
            MIN_POLL_INTERVAL_MS,
            MAX_POLL_INTERVAL_MS,
            kinesis(|c, v| c.poll_interval_ms = v),
            |c| c.validate("p"),
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = r#"{"region": "us-east-1", "endpoint": "http://x"}"#;
        assert!(serde_json::from_str::<AwsConfig>(text).is_err());
        let text = r#"{"region": "us-east-1", "endpoint_url": "http://127.0.0.1:5000"}"#;
        let aws: AwsConfig = serde_json::from_str(text).unwrap();
        assert_eq!(aws.max_attempts, 4);
    }
}

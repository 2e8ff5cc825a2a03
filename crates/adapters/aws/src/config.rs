//! Configuration of the AWS adapters: one [`AwsConfig`] shared by every client, and one
//! struct per adapter. Each has a pure `validate(prefix)` (no I/O) whose error names the
//! field, so `tsunagu check` can report a typo before any connection is tried.

use serde::Deserialize;
use std::time::Duration;
use tsunagu_engine::ConfigError;

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
        if !(1..=20).contains(&self.max_attempts) {
            return fail(
                prefix,
                "max_attempts",
                format!("must be between 1 and 20, got {}", self.max_attempts),
            );
        }
        if !(100..=300_000).contains(&self.attempt_timeout_ms) {
            return fail(
                prefix,
                "attempt_timeout_ms",
                format!(
                    "must be between 100 and 300000, got {}",
                    self.attempt_timeout_ms
                ),
            );
        }
        Ok(())
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
    if (10..=10_000).contains(&poll_interval_ms) {
        Ok(())
    } else {
        fail(
            prefix,
            "poll_interval_ms",
            format!("must be between 10 and 10000, got {poll_interval_ms}"),
        )
    }
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
        if self.tombstone_ttl_hours < 25 {
            return fail(
                prefix,
                "tombstone_ttl_hours",
                format!(
                    "must be at least 25 (longer than the stream's 24 h retention), got {}",
                    self.tombstone_ttl_hours
                ),
            );
        }
        if !(1..=256).contains(&self.write_concurrency) {
            return fail(
                prefix,
                "write_concurrency",
                format!("must be between 1 and 256, got {}", self.write_concurrency),
            );
        }
        Ok(())
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
        if !(1..=10_000).contains(&self.shard_count) {
            return fail(
                prefix,
                "shard_count",
                format!("must be between 1 and 10000, got {}", self.shard_count),
            );
        }
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

    #[test]
    fn unknown_fields_are_rejected() {
        let text = r#"{"region": "us-east-1", "endpoint": "http://x"}"#;
        assert!(serde_json::from_str::<AwsConfig>(text).is_err());
        let text = r#"{"region": "us-east-1", "endpoint_url": "http://127.0.0.1:5000"}"#;
        let aws: AwsConfig = serde_json::from_str(text).unwrap();
        assert_eq!(aws.max_attempts, 4);
    }
}

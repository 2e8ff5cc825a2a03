//! The AWS adapters of tsunagu, on the official AWS SDK for Rust.
//!
//! - [`config`]: [`AwsConfig`] (region, endpoint, profile) shared by every client, and one
//!   config struct per adapter, each with a pure `validate`.
//! - [`dynamo`]: [`DynamoStore`], the primary store on a DynamoDB table
//!   ([`tsunagu_engine::ports::ItemStore`] + [`tsunagu_engine::ports::ItemScanner`]):
//!   conditional writes on the item's version, hybrid-clock versions, deletions kept as
//!   tombstones so a version never goes back.
//! - [`drift`]: [`DynamoStore`] as the primary side of drift detection and repair
//!   ([`tsunagu_engine::drift::VersionDigest`] + [`tsunagu_engine::drift::PrimaryDigest`]):
//!   digests by a parallel projected `Scan`, held versions by `BatchGetItem`.
//! - [`streams`]: [`DynamoStreamsSource`], the table's DynamoDB stream as a
//!   [`tsunagu_engine::ports::ChangeSource`].
//! - [`kinesis`]: [`KinesisSource`], a Kinesis data stream as a change source, and
//!   [`KinesisForwarder`], a [`tsunagu_engine::ports::Sink`] that puts change records into
//!   a Kinesis stream in per-partition-key order.
//! - [`shards`]: what both stream readers share: cached shard iterators, expired-iterator
//!   recovery, polling for `wait`, error mapping.
//! - [`leases`]: [`DynamoLeaseStore`], shard leases in a DynamoDB table
//!   ([`tsunagu_engine::ports::LeaseStore`]).
//! - [`state`]: [`DynamoStateStore`], dead letters and backfill progress in a DynamoDB
//!   table ([`tsunagu_engine::ports::DeadLetterQueue`] +
//!   [`tsunagu_engine::backfill::BackfillProgressStore`]), shared by every worker and
//!   operator machine; letters too large for one item are split over part items.
//! - [`tenants`]: [`DynamoTenantDirectory`], the tenant registry in a DynamoDB table
//!   ([`tsunagu_service::tenants::TenantDirectory`]), shared by every API server: unique
//!   names by a name claim written in the tenant's transaction, tokens found by digest.
//!
//! Every adapter has a `connect(&AwsConfig, &its config)` constructor and a `check()` for
//! `tsunagu check`. Credentials come from the SDK's default chain and are never logged.
//! `docs/aws.md` describes the table layouts, versions and the test peers' gaps.

pub mod config;
pub mod drift;
pub mod dynamo;
pub mod kinesis;
pub mod leases;
pub mod shards;
pub mod state;
pub mod streams;
pub mod tenants;

pub use config::{
    AwsConfig, DynamoStreamsConfig, DynamoTableConfig, KinesisConfig, LeaseTableConfig,
    StateTableConfig, TenantTableConfig,
};
pub use dynamo::DynamoStore;
pub use kinesis::{KinesisForwarder, KinesisSource};
pub use leases::DynamoLeaseStore;
pub use state::DynamoStateStore;
pub use streams::DynamoStreamsSource;
pub use tenants::DynamoTenantDirectory;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

/// Why an adapter could not be built or checked.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{0}")]
    Config(#[from] tsunagu_engine::ConfigError),
    /// The resource is not there (and was not to be created).
    #[error("{0}")]
    Missing(String),
    /// The resource exists but cannot be used as configured.
    #[error("{0}")]
    Unusable(String),
    /// AWS answered with an error or could not be reached.
    #[error("{0}")]
    Api(String),
}

/// Loads the SDK configuration every client of one process shares: the region, the
/// endpoint override, the profile, retries with backoff and timeouts.
pub async fn sdk_config(aws: &AwsConfig) -> Result<aws_config::SdkConfig, AwsError> {
    aws.validate("aws")?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(aws.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(aws.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(aws.attempt_timeout().min(std::time::Duration::from_secs(5)))
                .operation_attempt_timeout(aws.attempt_timeout())
                .build(),
        );
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    Ok(loader.load().await)
}

/// The region the SDK's default chain gives (`AWS_REGION`, the profile — `profile` or
/// the default one —, instance metadata), for clients whose configuration leaves the
/// region out; `None` when the chain has none.
pub async fn chain_region(profile: Option<&str>) -> Option<String> {
    let chain = aws_config::default_provider::region::DefaultRegionChain::builder();
    let chain = match profile {
        Some(p) => chain.profile_name(p),
        None => chain,
    };
    chain.build().region().await.map(|r| r.to_string())
}

/// An SDK error reduced to what the adapters decide on: the service's error code (when
/// the service answered), whether retrying may help, and a message with the whole cause
/// chain (never credentials: the SDK does not put them in errors).
#[derive(Debug, Clone)]
pub(crate) struct ApiFailure {
    pub code: Option<String>,
    pub retryable: bool,
    pub message: String,
}

impl ApiFailure {
    pub(crate) fn from_sdk<E, R>(
        operation: &str,
        error: &aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_dynamodb::error::SdkError;
        let message = format!(
            "{operation}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(error)
        );
        match error {
            SdkError::ServiceError(service) => {
                let code = service.err().code().map(str::to_string);
                let retryable = matches!(
                    code.as_deref(),
                    Some(
                        "LimitExceededException"
                            | "ProvisionedThroughputExceededException"
                            | "ThrottlingException"
                            | "RequestLimitExceeded"
                            | "InternalServerError"
                            | "InternalFailure"
                            | "ServiceUnavailable"
                            | "KMSThrottlingException"
                    )
                );
                Self {
                    code,
                    retryable,
                    message,
                }
            }
            // A timeout, a connection that failed or dropped, a response that could not
            // be read: all worth another try.
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Self {
                code: None,
                retryable: true,
                message,
            },
            _ => Self {
                code: None,
                retryable: false,
                message,
            },
        }
    }

    /// For calls outside a shard read (listing shards, scanning): retryable failures are
    /// transient, the rest fatal.
    pub(crate) fn into_source_error(self) -> tsunagu_engine::ports::SourceError {
        if self.retryable {
            tsunagu_engine::ports::SourceError::Transient(self.message)
        } else {
            tsunagu_engine::ports::SourceError::Fatal(self.message)
        }
    }

    pub(crate) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

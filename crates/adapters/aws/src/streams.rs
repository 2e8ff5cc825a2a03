//! The primary table's DynamoDB stream as a [`ChangeSource`].
//!
//! Records are converted with the table layout of [`crate::dynamo`]: a write of a live
//! item is an `INSERT` (no live item before, a tombstone included) or a `MODIFY`; a write
//! of a tombstone over a live item is a `REMOVE` carrying the tombstone's version; a
//! `REMOVE` event (a `DeleteItem` by another writer) gets version `old + 1`; the TTL's
//! removal of a tombstone changes nothing and is dropped. `committed_at_us` is the
//! writer's `updated_at_us`, or `ApproximateCreationDateTime` for deletes done outside
//! tsunagu.
//!
//! DynamoDB allows two simultaneous readers per shard. One source instance reads each
//! shard through one cursor (see [`crate::shards`]), so one process counts as one
//! reader however many consumers it runs; run at most two processes per stream.

use crate::config::{AwsConfig, DynamoStreamsConfig};
use crate::dynamo::{describe_table, Field, RawItem, PK, SK};
use crate::shards::{IteratorStart, Page, ShardApi, ShardReader};
use crate::{sdk_config, ApiFailure, AwsError};
use async_trait::async_trait;
use aws_sdk_dynamodbstreams::types::{
    AttributeValue, OperationType, Record, ShardIteratorType, StreamViewType,
};
use aws_sdk_dynamodbstreams::Client;
use std::collections::HashMap;
use std::time::Duration;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::ports::{ChangeSource, ReadBatch, ReadFrom, ShardInfo, SourceError};

/// The most records one `GetRecords` of DynamoDB Streams returns.
const MAX_RECORDS: usize = 1_000;

pub(crate) struct StreamsApi {
    client: Client,
    arn: String,
}

/// The DynamoDB stream of one table.
pub struct DynamoStreamsSource {
    reader: ShardReader<StreamsApi>,
}

impl DynamoStreamsSource {
    /// Finds the table's latest stream and checks that it carries new and old images.
    pub async fn connect(aws: &AwsConfig, config: &DynamoStreamsConfig) -> Result<Self, AwsError> {
        config.validate("source")?;
        let sdk = sdk_config(aws).await?;
        Self::with_clients(
            &aws_sdk_dynamodb::Client::new(&sdk),
            Client::new(&sdk),
            config,
        )
        .await
    }

    /// Like [`DynamoStreamsSource::connect`], with clients built by the caller.
    pub async fn with_clients(
        dynamodb: &aws_sdk_dynamodb::Client,
        streams: Client,
        config: &DynamoStreamsConfig,
    ) -> Result<Self, AwsError> {
        config.validate("source")?;
        let table = &config.table_name;
        let description = describe_table(dynamodb, table)
            .await?
            .ok_or_else(|| AwsError::Missing(format!("DynamoDB table {table:?} does not exist")))?;
        let arn = description
            .latest_stream_arn()
            .filter(|_| description.stream_specification().is_some_and(|s| s.stream_enabled()))
            .ok_or_else(|| {
                AwsError::Unusable(format!(
                    "DynamoDB table {table:?} has no stream; enable one with view type NEW_AND_OLD_IMAGES"
                ))
            })?
            .to_string();
        let source = Self {
            reader: ShardReader::new(
                StreamsApi {
                    client: streams,
                    arn,
                },
                Duration::from_millis(config.poll_interval_ms),
            ),
        };
        source.check().await?;
        Ok(source)
    }

    pub fn stream_arn(&self) -> &str {
        &self.reader.api().arn
    }

    /// For `tsunagu check`: the stream is enabled and carries new and old images.
    pub async fn check(&self) -> Result<String, AwsError> {
        let api = self.reader.api();
        let output = api
            .client
            .describe_stream()
            .stream_arn(&api.arn)
            .limit(1)
            .send()
            .await
            .map_err(|e| AwsError::Api(ApiFailure::from_sdk("DescribeStream", &e).message))?;
        let description = output.stream_description().ok_or_else(|| {
            AwsError::Api(format!(
                "DescribeStream of {} returned no description",
                api.arn
            ))
        })?;
        let view = description.stream_view_type();
        if view != Some(&StreamViewType::NewAndOldImages) {
            return Err(AwsError::Unusable(format!(
                "stream {} has view type {}; tsunagu needs NEW_AND_OLD_IMAGES",
                api.arn,
                view.map_or("unknown", |v| v.as_str())
            )));
        }
        Ok(format!(
            "DynamoDB stream {}: {}",
            api.arn,
            description
                .stream_status()
                .map_or("unknown status", |s| s.as_str())
        ))
    }
}

#[async_trait]
impl ShardApi for StreamsApi {
    async fn iterator(&self, shard: &ShardId, start: &IteratorStart) -> Result<String, ApiFailure> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(&shard.0);
        let request = match start {
            IteratorStart::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            IteratorStart::After(p) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(&p.0),
        };
        let output = request
            .send()
            .await
            .map_err(|e| ApiFailure::from_sdk("GetShardIterator", &e))?;
        output
            .shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| ApiFailure {
                code: None,
                retryable: true,
                message: format!("GetShardIterator returned no iterator for shard {shard}"),
            })
    }

    async fn records(
        &self,
        shard: &ShardId,
        iterator: &str,
        limit: usize,
    ) -> Result<Page, ApiFailure> {
        let output = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit.clamp(1, MAX_RECORDS) as i32)
            .send()
            .await
            .map_err(|e| ApiFailure::from_sdk("GetRecords", &e))?;
        let raw = output.records();
        Ok(Page {
            records: raw.iter().filter_map(|r| convert(shard, r)).collect(),
            last_position: raw
                .iter()
                .rev()
                .find_map(|r| r.dynamodb()?.sequence_number())
                .map(|s| Position(s.to_string())),
            next: output.next_shard_iterator().map(str::to_string),
            caught_up: raw.is_empty(),
        })
    }

    fn max_limit(&self) -> usize {
        MAX_RECORDS
    }
}

fn raw_item(image: &HashMap<String, AttributeValue>) -> Option<RawItem> {
    RawItem::from_fields(|name| {
        image.get(name).map(|v| match v {
            AttributeValue::S(s) => Field::S(s),
            AttributeValue::N(n) => Field::N(n),
            AttributeValue::Bool(b) => Field::Bool(*b),
            _ => Field::Other,
        })
    })
}

fn image(item: &RawItem) -> Image {
    Image {
        version: Version(item.version),
        body: item.body_value(),
    }
}

/// One stream record as a change record; `None` for records that change nothing the
/// engine sees (the TTL removing a tombstone) or that are not in tsunagu's layout.
pub(crate) fn convert(shard: &ShardId, record: &Record) -> Option<ChangeRecord> {
    let data = record.dynamodb()?;
    let position = Position(data.sequence_number()?.to_string());
    let key = data.keys().and_then(|keys| {
        let s = |name: &str| keys.get(name)?.as_s().ok().cloned();
        Some(ItemKey::new(s(PK)?, s(SK)?))
    });
    let old = data.old_image().and_then(raw_item).filter(RawItem::live);
    let new = data.new_image().and_then(raw_item);
    let approximate_us = data
        .approximate_creation_date_time()
        .and_then(|t| t.to_millis().ok())
        .map_or(0, |ms| ms * 1_000);
    let (kind, version, new_image, committed_at_us) = match (record.event_name(), &new) {
        (Some(OperationType::Remove), _) | (_, None) => {
            // Deleted outside tsunagu (or by the TTL): the deletion is one past the last
            // version; a tombstone's removal changes nothing.
            let old = old.as_ref()?;
            (
                ChangeKind::Remove,
                Version(old.version + 1),
                None,
                approximate_us,
            )
        }
        (_, Some(new)) if new.deleted => {
            old.as_ref()?;
            (
                ChangeKind::Remove,
                Version(new.version),
                None,
                new.updated_at_us.unwrap_or(approximate_us),
            )
        }
        (_, Some(new)) => (
            if old.is_some() {
                ChangeKind::Modify
            } else {
                ChangeKind::Insert
            },
            Version(new.version),
            Some(image(new)),
            new.updated_at_us.unwrap_or(approximate_us),
        ),
    };
    Some(ChangeRecord {
        shard: shard.clone(),
        position,
        key: key
            .or_else(|| new.as_ref().map(|n| n.key.clone()))
            .or_else(|| old.as_ref().map(|o| o.key.clone()))?,
        kind,
        version,
        old_image: old.as_ref().map(image),
        new_image,
        committed_at_us,
    })
}

#[async_trait]
impl ChangeSource for DynamoStreamsSource {
    async fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        let api = self.reader.api();
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let output = api
                .client
                .describe_stream()
                .stream_arn(&api.arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| ApiFailure::from_sdk("DescribeStream", &e).into_source_error())?;
            let Some(description) = output.stream_description() else {
                break;
            };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                shards.push(ShardInfo {
                    id: ShardId(id.to_string()),
                    parent: shard.parent_shard_id().map(|p| ShardId(p.to_string())),
                    adjacent_parent: None,
                });
            }
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_string()),
                None => break,
            }
        }
        Ok(shards)
    }

    async fn read(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        limit: usize,
        wait: Duration,
    ) -> Result<ReadBatch, SourceError> {
        self.reader.read(shard, from, limit, wait).await
    }

    async fn latest_position(&self, shard: &ShardId) -> Result<Option<Position>, SourceError> {
        self.reader.latest_position(shard).await
    }

    /// DynamoDB Streams cannot count records cheaply.
    async fn backlog(
        &self,
        _shard: &ShardId,
        _from: &ReadFrom,
    ) -> Result<Option<u64>, SourceError> {
        Ok(None)
    }
}

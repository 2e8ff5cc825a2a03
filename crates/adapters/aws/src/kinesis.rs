//! Kinesis data streams: [`KinesisSource`] reads one as a [`ChangeSource`];
//! [`KinesisForwarder`] is a [`Sink`] that puts change records into one, so the engine can
//! forward any source (the DynamoDB stream, the embedded store) to Kinesis with its
//! checkpoints, retries and dead-letter queue.
//!
//! A record's data is the [`ChangeRecord`] as JSON; its Kinesis partition key is the
//! item's partition key, so every change of an item lands in one shard, in order. The
//! source replaces the record's `shard` and `position` with the Kinesis shard and
//! sequence number and keeps the original `committed_at_us`, so lag stays measured from
//! the primary's commit.
//!
//! Lineage: after `SplitShard` a child names its `parent`; after `MergeShards` it names
//! both (`parent` and `adjacent_parent`), and must not be read before both are finished.
//! A closed shard read to its end returns `end_of_shard`.

use crate::config::{AwsConfig, KinesisConfig};
use crate::shards::{IteratorStart, Page, ShardApi, ShardReader};
use crate::{sdk_config, ApiFailure, AwsError};
use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;
use std::collections::VecDeque;
use std::time::Duration;
use tsunagu_domain::{ChangeRecord, Position, ShardId};
use tsunagu_engine::ports::{
    ChangeSource, ReadBatch, ReadFrom, RecordFailure, ShardInfo, Sink, SinkError, SourceError,
};

/// The most records one Kinesis `GetRecords` returns.
const MAX_RECORDS: usize = 10_000;
/// `PutRecords` limits: entries and bytes per request, bytes per record.
const MAX_PUT_ENTRIES: usize = 500;
const MAX_PUT_BYTES: usize = 5 * 1024 * 1024;
const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Rounds a failed entry is retried before it is reported as failed.
const MAX_PUT_ROUNDS: u32 = 6;

/// Checks that the stream exists (creating it when `create_if_missing`) and is usable.
async fn ensure_stream(client: &Client, config: &KinesisConfig) -> Result<String, AwsError> {
    let name = &config.stream_name;
    let mut created = false;
    for _ in 0..600 {
        match client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
        {
            Ok(output) => {
                let status = output
                    .stream_description_summary()
                    .map(|s| s.stream_status().clone());
                match status {
                    Some(status @ (StreamStatus::Active | StreamStatus::Updating)) => {
                        return Ok(format!("Kinesis stream {name:?}: {}", status.as_str()))
                    }
                    Some(StreamStatus::Creating) => {}
                    other => {
                        return Err(AwsError::Unusable(format!(
                        "Kinesis stream {name:?} is {}; wait for it to be ACTIVE or recreate it",
                        other.map_or("in an unknown state".to_string(), |s| s
                            .as_str()
                            .to_string())
                    )))
                    }
                }
            }
            Err(error) => {
                let failure = ApiFailure::from_sdk("DescribeStreamSummary", &error);
                if !failure.is("ResourceNotFoundException") {
                    return Err(AwsError::Api(failure.message));
                }
                if !config.create_if_missing {
                    return Err(AwsError::Missing(format!(
                        "Kinesis stream {name:?} does not exist; create it or set create_if_missing = true"
                    )));
                }
                if !created {
                    match client
                        .create_stream()
                        .stream_name(name)
                        .shard_count(config.shard_count as i32)
                        .send()
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(stream = %name, shards = config.shard_count, "created Kinesis stream")
                        }
                        Err(error) => {
                            let failure = ApiFailure::from_sdk("CreateStream", &error);
                            if !failure.is("ResourceInUseException") {
                                return Err(AwsError::Api(failure.message));
                            }
                        }
                    }
                    created = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(AwsError::Api(format!(
        "Kinesis stream {name:?} did not become ACTIVE within a minute"
    )))
}

pub(crate) struct KinesisApi {
    client: Client,
    stream: String,
}

/// A Kinesis data stream whose records are change records put by [`KinesisForwarder`].
pub struct KinesisSource {
    reader: ShardReader<KinesisApi>,
    config: KinesisConfig,
}

impl KinesisSource {
    pub async fn connect(aws: &AwsConfig, config: &KinesisConfig) -> Result<Self, AwsError> {
        config.validate("source")?;
        Self::with_client(Client::new(&sdk_config(aws).await?), config).await
    }

    pub async fn with_client(client: Client, config: &KinesisConfig) -> Result<Self, AwsError> {
        config.validate("source")?;
        ensure_stream(&client, config).await?;
        Ok(Self {
            reader: ShardReader::new(
                KinesisApi {
                    client,
                    stream: config.stream_name.clone(),
                },
                Duration::from_millis(config.poll_interval_ms),
            ),
            config: config.clone(),
        })
    }

    /// For `tsunagu check`: the stream exists and is active.
    pub async fn check(&self) -> Result<String, AwsError> {
        let config = KinesisConfig {
            create_if_missing: false,
            ..self.config.clone()
        };
        ensure_stream(&self.reader.api().client, &config).await
    }
}

#[async_trait]
impl ShardApi for KinesisApi {
    async fn iterator(&self, shard: &ShardId, start: &IteratorStart) -> Result<String, ApiFailure> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&shard.0);
        let request = match start {
            IteratorStart::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            IteratorStart::After(p) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(&p.0),
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
        let records = raw
            .iter()
            .filter_map(|record| {
                match serde_json::from_slice::<ChangeRecord>(record.data().as_ref()) {
                    Ok(mut change) => {
                        change.shard = shard.clone();
                        change.position = Position(record.sequence_number().to_string());
                        Some(change)
                    }
                    Err(error) => {
                        // Not put by the forwarder: there is no item key to dead-letter it
                        // under, so it is skipped, loudly.
                        tracing::error!(
                            %shard,
                            sequence_number = record.sequence_number(),
                            %error,
                            "Kinesis record is not a tsunagu change record; skipped"
                        );
                        None
                    }
                }
            })
            .collect();
        Ok(Page {
            records,
            last_position: raw
                .last()
                .map(|r| Position(r.sequence_number().to_string())),
            next: output.next_shard_iterator().map(str::to_string),
            caught_up: raw.is_empty() && output.millis_behind_latest().unwrap_or(0) == 0,
        })
    }

    fn max_limit(&self) -> usize {
        MAX_RECORDS
    }
}

#[async_trait]
impl ChangeSource for KinesisSource {
    /// Every shard `ListShards` reports (open and closed ones still in retention), with
    /// both parents of merged shards.
    async fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        let api = self.reader.api();
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // With a token, the stream name must be left out.
            let request = match token.take() {
                Some(token) => api.client.list_shards().next_token(token),
                None => api.client.list_shards().stream_name(&api.stream),
            };
            let output = request
                .send()
                .await
                .map_err(|e| ApiFailure::from_sdk("ListShards", &e).into_source_error())?;
            for shard in output.shards() {
                shards.push(ShardInfo {
                    id: ShardId(shard.shard_id().to_string()),
                    parent: shard.parent_shard_id().map(|p| ShardId(p.to_string())),
                    adjacent_parent: shard
                        .adjacent_parent_shard_id()
                        .map(|p| ShardId(p.to_string())),
                });
            }
            match output.next_token() {
                Some(next) if !output.shards().is_empty() => token = Some(next.to_string()),
                _ => break,
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

    /// Kinesis reports lag in milliseconds, not records.
    async fn backlog(
        &self,
        _shard: &ShardId,
        _from: &ReadFrom,
    ) -> Result<Option<u64>, SourceError> {
        Ok(None)
    }
}

/// Puts change records into a Kinesis stream, keeping each partition key's order.
///
/// `PutRecords` may fail some entries and apply later ones, which would reorder a key. So
/// each request carries at most **one** record per partition key: a key's next record is
/// sent only after the previous one was accepted, and failed entries are retried (with
/// backoff) before anything after them. Different keys go together, up to 500 per
/// request. Delivery is at least once: a replay puts records again, and the consumers'
/// version guard makes that harmless.
#[derive(Clone)]
pub struct KinesisForwarder {
    client: Client,
    stream: String,
}

impl KinesisForwarder {
    pub async fn connect(aws: &AwsConfig, config: &KinesisConfig) -> Result<Self, AwsError> {
        config.validate("forward")?;
        Self::with_client(Client::new(&sdk_config(aws).await?), config).await
    }

    pub async fn with_client(client: Client, config: &KinesisConfig) -> Result<Self, AwsError> {
        config.validate("forward")?;
        ensure_stream(&client, config).await?;
        Ok(Self {
            client,
            stream: config.stream_name.clone(),
        })
    }

    /// Puts `records` in order per partition key; returns the ones that could not be put
    /// (a key whose record failed for good takes its later records with it).
    pub async fn forward(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        let mut failures: Vec<RecordFailure> = Vec::new();
        // Per partition key, the indexes still to put, in order.
        let mut queues: Vec<(String, VecDeque<usize>)> = Vec::new();
        let mut by_key = std::collections::HashMap::new();
        let mut data: Vec<Vec<u8>> = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let bytes = serde_json::to_vec(record).unwrap_or_default();
            data.push(bytes);
            let key = partition_key(&record.key.partition);
            let slot = *by_key.entry(key.clone()).or_insert_with(|| {
                queues.push((key, VecDeque::new()));
                queues.len() - 1
            });
            queues[slot].1.push_back(index);
        }
        let mut round = 0u32;
        let mut applied_any = false;
        loop {
            // Drop records that can never be put, with everything after them for the key.
            for (_, queue) in queues.iter_mut() {
                if let Some(&head) = queue.front() {
                    if data[head].len() > MAX_RECORD_BYTES || data[head].is_empty() {
                        fail_rest(
                            queue,
                            &mut failures,
                            false,
                            "the change record is larger than Kinesis' 1 MB limit",
                        );
                    }
                }
            }
            let mut batch: Vec<usize> = Vec::new();
            let mut bytes = 0;
            for (key, queue) in &queues {
                if let Some(&head) = queue.front() {
                    let size = data[head].len() + key.len();
                    if batch.len() == MAX_PUT_ENTRIES || bytes + size > MAX_PUT_BYTES {
                        break;
                    }
                    bytes += size;
                    batch.push(head);
                }
            }
            if batch.is_empty() {
                break;
            }
            let entries = batch
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(data[i].clone()))
                        .partition_key(partition_key(&records[i].key.partition))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SinkError::Batch {
                    retryable: false,
                    message: format!("PutRecords request: {e}"),
                })?;
            let accepted: Vec<bool> = match self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    let results = output.records();
                    (0..batch.len())
                        .map(|i| results.get(i).is_some_and(|r| r.error_code().is_none()))
                        .collect()
                }
                Err(error) => {
                    let failure = ApiFailure::from_sdk("PutRecords", &error);
                    if !failure.retryable || round + 1 >= MAX_PUT_ROUNDS {
                        if !applied_any {
                            return Err(SinkError::Batch {
                                retryable: failure.retryable,
                                message: failure.message,
                            });
                        }
                        for (_, queue) in queues.iter_mut() {
                            fail_rest(queue, &mut failures, failure.retryable, &failure.message);
                        }
                        break;
                    }
                    vec![false; batch.len()]
                }
            };
            let mut any_failed = false;
            for (&index, ok) in batch.iter().zip(&accepted) {
                let Some((_, queue)) = queues.iter_mut().find(|(_, q)| q.front() == Some(&index))
                else {
                    continue;
                };
                if *ok {
                    applied_any = true;
                    queue.pop_front();
                } else {
                    any_failed = true;
                    if round + 1 >= MAX_PUT_ROUNDS {
                        fail_rest(
                            queue,
                            &mut failures,
                            true,
                            "Kinesis kept refusing the record (throttled)",
                        );
                    }
                }
            }
            if any_failed {
                round += 1;
                tokio::time::sleep(Duration::from_millis(50u64 << round.min(6))).await;
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            failures.sort_by_key(|f| f.index);
            Err(SinkError::Records(failures))
        }
    }
}

/// Kinesis partition keys are at most 256 characters; longer ones are replaced by their
/// stable hash (still one shard per partition).
fn partition_key(partition: &str) -> String {
    if !partition.is_empty() && partition.chars().count() <= 256 {
        partition.to_string()
    } else {
        format!(
            "h:{:016x}",
            tsunagu_domain::item::stable_partition_hash(partition)
        )
    }
}

fn fail_rest(
    queue: &mut VecDeque<usize>,
    failures: &mut Vec<RecordFailure>,
    retryable: bool,
    message: &str,
) {
    failures.extend(queue.drain(..).map(|index| RecordFailure {
        index,
        retryable,
        message: message.to_string(),
    }));
}

#[async_trait]
impl Sink for KinesisForwarder {
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        self.forward(records).await
    }
}

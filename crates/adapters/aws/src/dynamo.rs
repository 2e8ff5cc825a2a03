//! The primary store on a DynamoDB table.
//!
//! Layout (one item per [`ItemKey`]; see `docs/aws.md`):
//!
//! | attribute | type | |
//! |---|---|---|
//! | `pk` | S | partition key (the table's HASH key) |
//! | `sk` | S | sort key (the table's RANGE key) |
//! | `version` | N | the item's version |
//! | `body` | S | the JSON object, as compact JSON text (exact numbers, no DynamoDB type rules) |
//! | `updated_at_us` | N | the writer's clock at the write, µs since the epoch (the change's `committed_at_us`) |
//! | `deleted` | BOOL | present only on a tombstone |
//! | `expires_at` | N | a tombstone's TTL, seconds since the epoch |
//!
//! **Versions.** A write sets `version = max(previous + 1, now in µs)` (a hybrid clock),
//! enforced by the condition `version < :new`: the first attempt proposes the clock; when
//! the item's version is already at or past it, DynamoDB returns the current item
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and the write is retried with
//! `previous + 1`. Versions therefore strictly increase under any number of writers.
//!
//! **Deletes** are tombstones: the item is replaced by `{pk, sk, version, deleted, expires_at}`
//! with a new version, so the stream carries the deletion's version (a `MODIFY` whose new
//! image is a tombstone, which the stream source turns into a `REMOVE`), and a re-created
//! item continues from the tombstone's version. Once DynamoDB's TTL removes the
//! tombstone (after `tombstone_ttl_hours`), the hybrid clock still keeps a re-created
//! item's version above the deleted one unless writers' clocks disagree by more than the
//! TTL.
//!
//! **No-op writes**: a put whose body equals the stored one fails the condition
//! `body <> :body` and produces no change (and no stream record).

use crate::config::{AwsConfig, DynamoTableConfig};
use crate::{now_us, sdk_config, ApiFailure, AwsError};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification, StreamViewType,
    TableDescription, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tsunagu_domain::item::body_text;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::ports::{
    Condition, ItemScanner, ItemStore, ItemStoreError, ScanPage, SourceError, StoredItem, WriteOp,
    WriteOutcome,
};

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
pub(crate) const VERSION: &str = "version";
pub(crate) const BODY: &str = "body";
pub(crate) const UPDATED: &str = "updated_at_us";
pub(crate) const DELETED: &str = "deleted";
pub(crate) const EXPIRES: &str = "expires_at";

/// DynamoDB's item limit is 400 KB; keys and the other attributes need some of it.
const MAX_BODY_BYTES: usize = 390 * 1024;

/// Segments of a whole-table scan (see [`ItemScanner::scan_segments`]).
const SCAN_SEGMENTS: u32 = 8;

/// Attempts of one write when other writers keep moving the version.
const MAX_WRITE_ATTEMPTS: usize = 8;

/// One attribute value as the item layout needs it, whichever SDK (DynamoDB or DynamoDB
/// Streams) it came from.
pub(crate) enum Field<'a> {
    S(&'a str),
    N(&'a str),
    Bool(bool),
    Other,
}

/// An item (or an image in a stream record) in the layout above.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawItem {
    pub key: ItemKey,
    /// 0 for an item written without a version (by something other than tsunagu).
    pub version: u64,
    pub body: Option<String>,
    pub deleted: bool,
    pub updated_at_us: Option<i64>,
}

impl RawItem {
    /// Reads the layout through `get`, which returns an attribute by name.
    pub(crate) fn from_fields<'a>(get: impl Fn(&str) -> Option<Field<'a>>) -> Option<Self> {
        let s = |name: &str| match get(name) {
            Some(Field::S(s)) => Some(s.to_string()),
            _ => None,
        };
        let n = |name: &str| match get(name) {
            Some(Field::N(n)) => n.parse::<i128>().ok(),
            _ => None,
        };
        Some(Self {
            key: ItemKey::new(s(PK)?, s(SK)?),
            version: n(VERSION).and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
            body: s(BODY),
            deleted: matches!(get(DELETED), Some(Field::Bool(true))),
            updated_at_us: n(UPDATED).and_then(|v| i64::try_from(v).ok()),
        })
    }

    fn from_map(map: &HashMap<String, AttributeValue>) -> Option<Self> {
        Self::from_fields(|name| {
            map.get(name).map(|v| match v {
                AttributeValue::S(s) => Field::S(s),
                AttributeValue::N(n) => Field::N(n),
                AttributeValue::Bool(b) => Field::Bool(*b),
                _ => Field::Other,
            })
        })
    }

    pub(crate) fn live(&self) -> bool {
        !self.deleted
    }

    /// The body as JSON; a body that is not JSON is passed on as a JSON string, so that
    /// the sink rejects that one record (to the dead-letter queue) instead of the stream
    /// stalling.
    pub(crate) fn body_value(&self) -> serde_json::Value {
        match &self.body {
            Some(text) => serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
            None => serde_json::Value::Null,
        }
    }
}

/// The primary store on one DynamoDB table. Cheap to clone.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    config: DynamoTableConfig,
}

impl DynamoStore {
    /// Connects, creating the table when it is missing and `create_if_missing` is set, and
    /// checks that its keys and stream are right.
    pub async fn connect(aws: &AwsConfig, config: &DynamoTableConfig) -> Result<Self, AwsError> {
        config.validate("primary")?;
        let client = Client::new(&sdk_config(aws).await?);
        Self::with_client(client, config).await
    }

    /// Like [`DynamoStore::connect`], with a client built by the caller.
    pub async fn with_client(client: Client, config: &DynamoTableConfig) -> Result<Self, AwsError> {
        config.validate("primary")?;
        let table = &config.table_name;
        if describe_table(&client, table).await?.is_none() {
            if !config.create_if_missing {
                return Err(AwsError::Missing(format!(
                    "DynamoDB table {table:?} does not exist; create it (keys pk/sk, stream NEW_AND_OLD_IMAGES) or set primary.create_if_missing = true"
                )));
            }
            create_table(&client, table, (PK, SK), true).await?;
            enable_ttl(&client, table).await?;
        }
        let store = Self {
            client,
            config: config.clone(),
        };
        store.check().await?;
        Ok(store)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table_name(&self) -> &str {
        &self.config.table_name
    }

    /// For `tsunagu check`: the table exists with the right keys and a
    /// `NEW_AND_OLD_IMAGES` stream. Returns a one-line summary.
    pub async fn check(&self) -> Result<String, AwsError> {
        let table = self.table_name();
        let description = describe_table(&self.client, table)
            .await?
            .ok_or_else(|| AwsError::Missing(format!("DynamoDB table {table:?} does not exist")))?;
        check_keys(table, &description, (PK, SK))?;
        let view = description
            .stream_specification()
            .filter(|s| s.stream_enabled())
            .and_then(|s| s.stream_view_type().cloned());
        if view != Some(StreamViewType::NewAndOldImages) {
            return Err(AwsError::Unusable(format!(
                "DynamoDB table {table:?} must have its stream enabled with view type NEW_AND_OLD_IMAGES (found {}); enable it with `aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES`",
                view.map_or("no stream".to_string(), |v| v.as_str().to_string())
            )));
        }
        Ok(format!(
            "DynamoDB table {table:?}: {}, stream NEW_AND_OLD_IMAGES",
            description
                .table_status()
                .map_or("unknown status", |s| s.as_str())
        ))
    }

    async fn put(
        &self,
        key: &ItemKey,
        body: &serde_json::Value,
        condition: Condition,
    ) -> Result<WriteOutcome, ItemStoreError> {
        let text = body_text(body);
        let mut floor = 0u64;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let now = now_us();
            let version = (floor + 1).max(now.max(0) as u64);
            let mut expr = Expr::default();
            expr.and("(attribute_not_exists(#pk) OR attribute_not_exists(#version) OR #version < :version)");
            expr.and("(attribute_not_exists(#pk) OR attribute_exists(#deleted) OR #body <> :body)");
            expr.caller(condition);
            expr.value(":version", n(version));
            expr.value(":body", AttributeValue::S(text.clone()));
            let mut item = key_map(key);
            item.insert(VERSION.into(), n(version));
            item.insert(BODY.into(), AttributeValue::S(text.clone()));
            item.insert(UPDATED.into(), n(now));
            match self.put_item(item, expr).await? {
                Ok(old) => {
                    let kind = if old.as_ref().is_some_and(RawItem::live) {
                        ChangeKind::Modify
                    } else {
                        ChangeKind::Insert
                    };
                    return Ok(WriteOutcome {
                        change: Some(kind),
                        version: Some(Version(version)),
                        position: None,
                        committed_at_us: now,
                    });
                }
                Err(old) => {
                    conflict(key, condition, old.as_ref())?;
                    match old {
                        Some(old) if old.live() && same_body(old.body.as_deref(), body) => {
                            return Ok(WriteOutcome {
                                change: None,
                                version: Some(Version(old.version)),
                                position: None,
                                committed_at_us: now,
                            })
                        }
                        Some(old) => floor = old.version,
                        None => {}
                    }
                }
            }
        }
        Err(busy(key))
    }

    async fn delete(
        &self,
        key: &ItemKey,
        condition: Condition,
    ) -> Result<WriteOutcome, ItemStoreError> {
        let mut floor = 0u64;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let now = now_us();
            let version = (floor + 1).max(now.max(0) as u64);
            let mut expr = Expr::default();
            expr.and("attribute_exists(#pk) AND attribute_not_exists(#deleted)");
            expr.and("(attribute_not_exists(#version) OR #version < :version)");
            expr.caller(condition);
            expr.value(":version", n(version));
            let mut item = key_map(key);
            item.insert(VERSION.into(), n(version));
            item.insert(UPDATED.into(), n(now));
            item.insert(DELETED.into(), AttributeValue::Bool(true));
            let ttl_s = now / 1_000_000 + (self.config.tombstone_ttl_hours * 3600) as i64;
            item.insert(EXPIRES.into(), n(ttl_s));
            let unchanged = WriteOutcome {
                change: None,
                version: None,
                position: None,
                committed_at_us: now,
            };
            match self.put_item(item, expr).await? {
                Ok(_) => {
                    return Ok(WriteOutcome {
                        change: Some(ChangeKind::Remove),
                        version: Some(Version(version)),
                        ..unchanged
                    })
                }
                Err(old) => {
                    conflict(key, condition, old.as_ref())?;
                    match old {
                        Some(old) if old.live() => floor = old.version,
                        // Missing or already a tombstone: nothing to delete.
                        _ => return Ok(unchanged),
                    }
                }
            }
        }
        Err(busy(key))
    }

    /// One conditional `PutItem`. `Ok(Ok(old))` when it was written (with the item it
    /// replaced), `Ok(Err(current))` when the condition failed.
    async fn put_item(
        &self,
        item: HashMap<String, AttributeValue>,
        expr: Expr,
    ) -> Result<Result<Option<RawItem>, Option<RawItem>>, ItemStoreError> {
        let result = self
            .client
            .put_item()
            .table_name(self.table_name())
            .set_item(Some(item))
            .condition_expression(expr.text.clone())
            .set_expression_attribute_names(Some(expr.names()))
            .set_expression_attribute_values(Some(expr.values))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Ok(output.attributes().and_then(RawItem::from_map))),
            Err(error) => {
                if let Some(PutItemError::ConditionalCheckFailedException(failed)) =
                    error.as_service_error()
                {
                    return Ok(Err(failed.item().and_then(RawItem::from_map)));
                }
                Err(store_error(
                    self.table_name(),
                    ApiFailure::from_sdk("PutItem", &error),
                ))
            }
        }
    }

    /// One write, already checked by [`validate_op`].
    async fn write_one(&self, op: &WriteOp) -> Result<WriteOutcome, ItemStoreError> {
        match op {
            WriteOp::Put {
                key,
                body,
                condition,
            } => self.put(key, body, *condition).await,
            WriteOp::Delete { key, condition } => self.delete(key, *condition).await,
        }
    }
}

fn busy(key: &ItemKey) -> ItemStoreError {
    ItemStoreError::Unavailable(format!(
        "{key} kept changing under concurrent writers; try the write again"
    ))
}

fn same_body(stored: Option<&str>, body: &serde_json::Value) -> bool {
    stored
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .is_some_and(|stored| &stored == body)
}

/// `Err(Conflict)` when the caller's condition does not hold for `current`.
fn conflict(
    key: &ItemKey,
    condition: Condition,
    current: Option<&RawItem>,
) -> Result<(), ItemStoreError> {
    let found = current.filter(|c| c.live()).map(|c| Version(c.version));
    let (holds, expected) = match condition {
        Condition::None => (true, String::new()),
        Condition::NotExists => (found.is_none(), "no item".to_string()),
        Condition::Exists => (found.is_some(), "an existing item".to_string()),
        Condition::VersionIs(v) => (found == Some(v), format!("version {v}")),
    };
    if holds {
        Ok(())
    } else {
        Err(ItemStoreError::Conflict {
            key: key.clone(),
            expected,
            found,
        })
    }
}

fn validate_op(op: &WriteOp) -> Result<(), ItemStoreError> {
    let key = op.key();
    if key.partition.is_empty() || key.sort.is_empty() {
        return Err(ItemStoreError::Invalid(format!(
            "partition and sort keys must not be empty (got {key})"
        )));
    }
    if key.partition.len() > 2048 || key.sort.len() > 1024 {
        return Err(ItemStoreError::Invalid(format!(
            "{key}: DynamoDB allows at most 2048 bytes of partition key and 1024 of sort key"
        )));
    }
    if let WriteOp::Put { body, .. } = op {
        if !body.is_object() {
            return Err(ItemStoreError::Invalid(format!(
                "the body of {key} must be a JSON object"
            )));
        }
        let size = body_text(body).len();
        if size > MAX_BODY_BYTES {
            return Err(ItemStoreError::Invalid(format!(
                "the body of {key} is {size} bytes; DynamoDB items are limited to 400 KB"
            )));
        }
    }
    Ok(())
}

/// A condition expression with only the names and values it uses (DynamoDB rejects
/// unused ones).
#[derive(Default)]
struct Expr {
    text: String,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn and(&mut self, clause: &str) {
        if !self.text.is_empty() {
            self.text.push_str(" AND ");
        }
        self.text.push_str(clause);
    }

    fn value(&mut self, name: &str, value: AttributeValue) {
        if self.text.contains(name) {
            self.values.insert(name.to_string(), value);
        }
    }

    /// The caller's [`Condition`], over live items only (a tombstone counts as no item).
    fn caller(&mut self, condition: Condition) {
        match condition {
            Condition::None => {}
            Condition::NotExists => {
                self.and("(attribute_not_exists(#pk) OR attribute_exists(#deleted))")
            }
            Condition::Exists => {
                self.and("(attribute_exists(#pk) AND attribute_not_exists(#deleted))")
            }
            Condition::VersionIs(v) => {
                self.and("(#version = :expected AND attribute_not_exists(#deleted))");
                self.value(":expected", n(v.0));
            }
        }
    }

    fn names(&self) -> HashMap<String, String> {
        [PK, VERSION, DELETED, BODY]
            .into_iter()
            .filter(|name| self.text.contains(&format!("#{name}")))
            .map(|name| (format!("#{name}"), name.to_string()))
            .collect()
    }
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key_map(key: &ItemKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.partition.clone())),
        (SK.to_string(), AttributeValue::S(key.sort.clone())),
    ])
}

fn store_error(table: &str, failure: ApiFailure) -> ItemStoreError {
    if failure.is("ResourceNotFoundException") {
        ItemStoreError::Failed(format!(
            "DynamoDB table {table:?} does not exist; create it or set create_if_missing ({})",
            failure.message
        ))
    } else if failure.retryable {
        ItemStoreError::Unavailable(failure.message)
    } else {
        ItemStoreError::Failed(failure.message)
    }
}

#[async_trait]
impl ItemStore for DynamoStore {
    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, ItemStoreError> {
        validate_op(&op)?;
        self.write_one(&op).await
    }

    /// Writes of different items run concurrently (up to `write_concurrency`); writes of
    /// one item run one after the other, in the order given.
    async fn write_many(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<Result<WriteOutcome, ItemStoreError>>, ItemStoreError> {
        for op in &ops {
            validate_op(op)?;
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_key: HashMap<&ItemKey, usize> = HashMap::new();
        for (index, op) in ops.iter().enumerate() {
            let group = *by_key.entry(op.key()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push(index);
        }
        let ops = &ops;
        let done: Vec<Vec<(usize, Result<WriteOutcome, ItemStoreError>)>> =
            futures::stream::iter(groups)
                .map(|indexes| async move {
                    let mut results = Vec::with_capacity(indexes.len());
                    for index in indexes {
                        results.push((index, self.write_one(&ops[index]).await));
                    }
                    results
                })
                .buffer_unordered(self.config.write_concurrency.max(1))
                .collect()
                .await;
        let mut results: Vec<Option<Result<WriteOutcome, ItemStoreError>>> =
            (0..ops.len()).map(|_| None).collect();
        for (index, result) in done.into_iter().flatten() {
            results[index] = Some(result);
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(ItemStoreError::Failed("write was not attempted".into())))
            })
            .collect())
    }

    async fn get(&self, key: &ItemKey) -> Result<Option<StoredItem>, ItemStoreError> {
        let output = self
            .client
            .get_item()
            .table_name(self.table_name())
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(self.table_name(), ApiFailure::from_sdk("GetItem", &e)))?;
        let Some(item) = output
            .item()
            .and_then(RawItem::from_map)
            .filter(RawItem::live)
        else {
            return Ok(None);
        };
        let body = item
            .body
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| ItemStoreError::Failed(format!("the body of {key} is not JSON text")))?;
        Ok(Some(StoredItem {
            key: item.key,
            version: Version(item.version),
            body,
        }))
    }
}

/// DynamoDB's parallel `Scan`: segment `s` of `segments` is DynamoDB's own split of the
/// table (by the hash of the partition key), **not** a stream shard; DynamoDB Streams'
/// shards cannot be addressed by key, so [`ItemScanner::segments_follow_shards`] is false
/// and the engine backfills by scanning the whole table. Within a segment items come in
/// DynamoDB's order, and `after` resumes exactly after an item (it becomes
/// `ExclusiveStartKey`). Reads are strongly consistent; tombstones are left out after
/// DynamoDB read the page, so a page may be empty and still have a `next`.
#[async_trait]
impl ItemScanner for DynamoStore {
    async fn scan(
        &self,
        segment: u32,
        segments: u32,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<ScanPage, SourceError> {
        if segments == 0 || segment >= segments || segments > 1_000_000 {
            return Err(SourceError::Fatal(format!(
                "segment {segment} of {segments}: DynamoDB scans 1 to 1000000 segments, numbered from 0"
            )));
        }
        let output = self
            .client
            .scan()
            .table_name(self.table_name())
            .segment(segment as i32)
            .total_segments(segments as i32)
            .consistent_read(true)
            .limit(limit.clamp(1, 10_000) as i32)
            .filter_expression("attribute_not_exists(#deleted)")
            .expression_attribute_names("#deleted", DELETED)
            .set_exclusive_start_key(after.map(key_map))
            .send()
            .await
            .map_err(|e| ApiFailure::from_sdk("Scan", &e).into_source_error())?;
        let shard = ShardId(format!("segment-{segment}"));
        let records = output
            .items()
            .iter()
            .filter_map(RawItem::from_map)
            .filter(RawItem::live)
            .map(|item| {
                let version = Version(item.version);
                ChangeRecord {
                    shard: shard.clone(),
                    position: Position(item.version.to_string()),
                    kind: ChangeKind::Insert,
                    version,
                    old_image: None,
                    new_image: Some(Image {
                        version,
                        body: item.body_value(),
                    }),
                    committed_at_us: item.updated_at_us.unwrap_or(0),
                    key: item.key,
                }
            })
            .collect();
        let next = output.last_evaluated_key().and_then(|k| {
            Some(ItemKey::new(
                k.get(PK)?.as_s().ok()?.clone(),
                k.get(SK)?.as_s().ok()?.clone(),
            ))
        });
        Ok(ScanPage { records, next })
    }

    /// Eight segments: enough to spread a scan over DynamoDB's partitions and to resume a
    /// killed backfill finely, few enough that `parallelism` workers keep them all busy.
    fn scan_segments(&self) -> u32 {
        SCAN_SEGMENTS
    }

    /// `DescribeTable`'s `ItemCount`: refreshed by DynamoDB about every six hours and
    /// counting tombstones, so only good for a progress bar.
    async fn approximate_item_count(&self) -> Result<Option<u64>, SourceError> {
        let description = describe_table(&self.client, self.table_name())
            .await
            .map_err(|e| SourceError::Transient(e.to_string()))?;
        Ok(description
            .and_then(|d| d.item_count())
            .and_then(|n| u64::try_from(n).ok()))
    }
}

// ---------------------------------------------------------------------------------------
// Tables: shared with the lease store
// ---------------------------------------------------------------------------------------

/// The table's description, `None` when it does not exist.
pub(crate) async fn describe_table(
    client: &Client,
    table: &str,
) -> Result<Option<TableDescription>, AwsError> {
    match client.describe_table().table_name(table).send().await {
        Ok(output) => Ok(output.table().cloned()),
        Err(error) => {
            let failure = ApiFailure::from_sdk("DescribeTable", &error);
            if failure.is("ResourceNotFoundException") {
                Ok(None)
            } else {
                Err(AwsError::Api(failure.message))
            }
        }
    }
}

/// Creates an on-demand table with string keys `(hash, range)`, with a
/// `NEW_AND_OLD_IMAGES` stream if asked, and waits until it is active.
pub(crate) async fn create_table(
    client: &Client,
    table: &str,
    (hash, range): (&str, &str),
    stream: bool,
) -> Result<(), AwsError> {
    let build =
        |e: aws_sdk_dynamodb::error::BuildError| AwsError::Api(format!("CreateTable request: {e}"));
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(build)
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(hash)?)
        .attribute_definitions(attribute(range)?)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?);
    if stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(build)?,
        );
    }
    match request.send().await {
        Ok(_) => tracing::info!(table, "created DynamoDB table"),
        Err(error) => {
            let failure = ApiFailure::from_sdk("CreateTable", &error);
            // Another process created it first: fine.
            if !failure.is("ResourceInUseException") {
                return Err(AwsError::Api(failure.message));
            }
        }
    }
    for _ in 0..600 {
        if let Some(description) = describe_table(client, table).await? {
            if description.table_status() == Some(&TableStatus::Active) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(AwsError::Api(format!(
        "DynamoDB table {table:?} did not become ACTIVE within a minute; check it in the console"
    )))
}

/// Turns on DynamoDB's TTL on `expires_at`, which removes old tombstones.
async fn enable_ttl(client: &Client, table: &str) -> Result<(), AwsError> {
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(EXPIRES)
        .build()
        .map_err(|e| AwsError::Api(format!("UpdateTimeToLive request: {e}")))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| AwsError::Api(ApiFailure::from_sdk("UpdateTimeToLive", &e).message))?;
    Ok(())
}

/// A small operational table (leases, replication state, tenants): what it is called in
/// messages, its name, its string keys and the config section that names it.
pub(crate) struct OperationalTable<'a> {
    /// "lease", "state", "tenant".
    pub what: &'static str,
    pub name: &'a str,
    pub keys: (&'static str, &'static str),
    /// The config section whose `create_if_missing` creates it.
    pub section: &'static str,
}

impl OperationalTable<'_> {
    /// What to do about a missing table.
    pub fn missing(&self) -> String {
        format!(
            "DynamoDB {} table {:?} does not exist; create it (string keys {} and {}) or set {}.create_if_missing = true",
            self.what, self.name, self.keys.0, self.keys.1, self.section
        )
    }

    /// Makes sure the table exists (creating it when `create` is set) with the right
    /// keys.
    pub async fn open(&self, client: &Client, create: bool) -> Result<(), AwsError> {
        if describe_table(client, self.name).await?.is_none() {
            if !create {
                return Err(AwsError::Missing(self.missing()));
            }
            create_table(client, self.name, self.keys, false).await?;
        }
        self.check(client).await.map(|_| ())
    }

    /// For `tsunagu check`: the table exists with the right keys. Creates nothing.
    /// Returns a one-line summary.
    pub async fn check(&self, client: &Client) -> Result<String, AwsError> {
        let description = describe_table(client, self.name)
            .await?
            .ok_or_else(|| AwsError::Missing(self.missing()))?;
        check_keys(self.name, &description, self.keys)?;
        Ok(format!(
            "DynamoDB {} table {:?}: {}",
            self.what,
            self.name,
            description
                .table_status()
                .map_or("unknown status", |s| s.as_str())
        ))
    }
}

/// The table's keys must be the string attributes `(hash, range)`.
pub(crate) fn check_keys(
    table: &str,
    description: &TableDescription,
    (hash, range): (&str, &str),
) -> Result<(), AwsError> {
    let schema: Vec<(String, KeyType)> = description
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
        .collect();
    let expected = vec![
        (hash.to_string(), KeyType::Hash),
        (range.to_string(), KeyType::Range),
    ];
    let mut sorted = schema.clone();
    sorted.sort_by_key(|(_, kind)| kind.as_str() != "HASH");
    if sorted == expected {
        Ok(())
    } else {
        Err(AwsError::Unusable(format!(
            "DynamoDB table {table:?} has key schema {schema:?}; tsunagu needs partition key {hash:?} and sort key {range:?} (both strings)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_declare_only_what_they_use() {
        let mut expr = Expr::default();
        expr.and("attribute_exists(#pk) AND attribute_not_exists(#deleted)");
        expr.caller(Condition::VersionIs(Version(7)));
        expr.value(":body", AttributeValue::S("{}".into()));
        let names = expr.names();
        assert!(names.contains_key("#pk") && names.contains_key("#version"));
        assert!(!names.contains_key("#body"));
        assert!(expr.values.contains_key(":expected") && !expr.values.contains_key(":body"));
    }

    #[test]
    fn conflicts_ignore_tombstones() {
        let key = ItemKey::new("p", "s");
        let tombstone = RawItem {
            key: key.clone(),
            version: 9,
            body: None,
            deleted: true,
            updated_at_us: None,
        };
        assert!(conflict(&key, Condition::NotExists, Some(&tombstone)).is_ok());
        match conflict(&key, Condition::Exists, Some(&tombstone)) {
            Err(ItemStoreError::Conflict { found, .. }) => assert_eq!(found, None),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let live = RawItem {
            deleted: false,
            ..tombstone
        };
        match conflict(&key, Condition::VersionIs(Version(8)), Some(&live)) {
            Err(ItemStoreError::Conflict { found, .. }) => assert_eq!(found, Some(Version(9))),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
}

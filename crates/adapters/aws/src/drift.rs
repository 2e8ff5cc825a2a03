//! [`DynamoStore`] as the primary side of drift detection and repair
//! ([`tsunagu_engine::drift`]): [`VersionDigest`] and [`PrimaryDigest`].
//!
//! What each call reads:
//!
//! - `digest`, `live_in`: one whole parallel `Scan` of the table each ([`SCAN_SEGMENTS`]
//!   segments read concurrently, strongly consistent, paged on `LastEvaluatedKey`). Only
//!   `pk`, `sk`, `version` and `deleted` are projected and tombstones are filtered out by
//!   DynamoDB, which keeps the traffic small; the read capacity is still that of reading
//!   every item in full (DynamoDB bills a Scan before projection and filter: one RCU per
//!   4 KB, strongly consistent). `digest` keeps one hash tree per segment (16 bytes per
//!   leaf, so at most `SCAN_SEGMENTS` × 16 MiB at the finest leaves), never the keys;
//!   `live_in` keeps only the items of the leaves asked for.
//! - `held`: `BatchGetItem` of at most 100 keys per request, consistent, projected like
//!   the scan; keys DynamoDB leaves unprocessed (throttling) are asked again with backoff.
//! - `approximate_items`: `DescribeTable`'s `ItemCount`, which DynamoDB refreshes about
//!   every six hours and which counts tombstones too: it only sizes the tree's leaves.
//! - `current`: one consistent `GetItem` ([`ItemStore::get`]); `fresh_version`: none.
//!
//! A scan is not a snapshot: an item written during it may show its old or new version,
//! which only makes it a candidate that the engine's settle step sorts out.

use crate::dynamo::{describe_table, Field, RawItem, DELETED, PK, SK, VERSION};
use crate::{now_us, ApiFailure, DynamoStore};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tsunagu_domain::{ItemKey, Version};
use tsunagu_engine::drift::tree::{HashTree, LeafSet};
use tsunagu_engine::drift::{Held, PrimaryDigest, ReadError, VersionDigest};
use tsunagu_engine::ports::{ItemStore, StoredItem};

/// Segments of the parallel `Scan`, all read at once: enough to keep several DynamoDB
/// partitions busy without one digest taking all of a table's read capacity.
pub const SCAN_SEGMENTS: u32 = 8;
/// DynamoDB's limit of keys per `BatchGetItem`.
pub const BATCH_GET_KEYS: usize = 100;
/// `BatchGetItem` requests in flight at once.
const BATCH_GET_CONCURRENCY: usize = 4;
/// Requests per batch before keys that stay unprocessed fail the read.
const BATCH_GET_ROUNDS: u32 = 8;
/// The attributes a comparison needs; everything else (the body) stays on the table.
const PROJECTION: &str = "#pk, #sk, #version, #deleted";

fn projected_names() -> HashMap<String, String> {
    [PK, SK, VERSION, DELETED]
        .into_iter()
        .map(|name| (format!("#{name}"), name.to_string()))
        .collect()
}

fn key_attributes(key: &ItemKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.partition.clone())),
        (SK.to_string(), AttributeValue::S(key.sort.clone())),
    ])
}

/// The key, version and tombstone flag of a projected item (`None`: not in tsunagu's
/// layout, e.g. keys that are not strings).
fn projected(map: &HashMap<String, AttributeValue>) -> Option<RawItem> {
    RawItem::from_fields(|name| {
        map.get(name).map(|value| match value {
            AttributeValue::S(s) => Field::S(s),
            AttributeValue::N(n) => Field::N(n),
            AttributeValue::Bool(b) => Field::Bool(*b),
            _ => Field::Other,
        })
    })
}

/// An SDK failure as a [`ReadError`] naming the table and what to do about it.
fn read_error(table: &str, failure: &ApiFailure) -> ReadError {
    let hint = if failure.is("ResourceNotFoundException") {
        "; the table does not exist: check the primary's table_name and the region"
    } else if failure
        .code
        .as_deref()
        .is_some_and(|code| code.contains("AccessDenied") || code.contains("Unrecognized"))
    {
        "; the credentials may not read it: allow dynamodb:Scan, BatchGetItem, GetItem and DescribeTable on the table"
    } else if failure.retryable {
        "; DynamoDB throttled or could not be reached after the SDK's retries: run again later or raise aws.max_attempts"
    } else {
        ""
    };
    ReadError(format!(
        "reading DynamoDB table {table:?}: {}{hint}",
        failure.message
    ))
}

impl DynamoStore {
    /// Folds every live item of one scan segment into `acc`, page by page.
    async fn fold_segment<T>(
        &self,
        segment: u32,
        mut acc: T,
        fold: &(impl Fn(&mut T, ItemKey, Version) + Sync),
    ) -> Result<T, ReadError> {
        let table = self.table_name();
        let mut start = None;
        loop {
            let mut output = self
                .client()
                .scan()
                .table_name(table)
                .segment(segment as i32)
                .total_segments(SCAN_SEGMENTS as i32)
                .consistent_read(true)
                .projection_expression(PROJECTION)
                .filter_expression("attribute_not_exists(#deleted)")
                .set_expression_attribute_names(Some(projected_names()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| read_error(table, &ApiFailure::from_sdk("Scan", &e)))?;
            // The filter already left tombstones out; checking again costs nothing.
            for item in output.items().iter().filter_map(projected) {
                if item.live() {
                    fold(&mut acc, item.key, Version(item.version));
                }
            }
            match output.last_evaluated_key.take() {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(acc),
            }
        }
    }

    /// One accumulator per scan segment, each folded from `init()` over that segment's
    /// live items; the segments are read concurrently.
    async fn fold_live<T: Send>(
        &self,
        init: impl Fn() -> T,
        fold: impl Fn(&mut T, ItemKey, Version) + Sync,
    ) -> Result<Vec<T>, ReadError> {
        let fold = &fold;
        futures::future::try_join_all(
            (0..SCAN_SEGMENTS).map(|segment| self.fold_segment(segment, init(), fold)),
        )
        .await
    }

    /// One `BatchGetItem` of at most [`BATCH_GET_KEYS`] distinct keys, asking again for
    /// unprocessed keys: what the table holds for those it has.
    async fn batch_held(&self, keys: Vec<ItemKey>) -> Result<Vec<(ItemKey, Held)>, ReadError> {
        let table = self.table_name();
        let request = |keys: Vec<HashMap<String, AttributeValue>>| {
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression(PROJECTION)
                .set_expression_attribute_names(Some(projected_names()))
                .build()
                .map_err(|e| {
                    ReadError(format!(
                        "reading DynamoDB table {table:?}: BatchGetItem request: {e}"
                    ))
                })
        };
        let mut pending = request(keys.iter().map(key_attributes).collect())?;
        let mut found = Vec::with_capacity(keys.len());
        let mut delay = Duration::from_millis(50);
        for _ in 0..BATCH_GET_ROUNDS {
            let mut output = self
                .client()
                .batch_get_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|e| read_error(table, &ApiFailure::from_sdk("BatchGetItem", &e)))?;
            let items = output
                .responses
                .as_mut()
                .and_then(|r| r.remove(table))
                .unwrap_or_default();
            for item in items.iter().filter_map(projected) {
                let version = Version(item.version);
                let held = if item.live() {
                    Held::Live(version)
                } else {
                    Held::Deleted(version)
                };
                found.push((item.key, held));
            }
            // Unprocessed keys mean throttling or a response over 16 MB: ask for them
            // again (with our own projection and consistency) after a growing pause.
            let rest = output
                .unprocessed_keys
                .as_mut()
                .and_then(|u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if rest.is_empty() {
                return Ok(found);
            }
            pending = request(rest)?;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(ReadError(format!(
            "reading DynamoDB table {table:?}: BatchGetItem left keys unprocessed after {BATCH_GET_ROUNDS} attempts (throttled): run again later or give the table more read capacity"
        )))
    }
}

#[async_trait]
impl VersionDigest for DynamoStore {
    async fn approximate_items(&self) -> Result<u64, ReadError> {
        let table = self.table_name();
        let description = describe_table(self.client(), table)
            .await
            .map_err(|e| ReadError(format!("reading DynamoDB table {table:?}: {e}")))?
            .ok_or_else(|| {
                ReadError(format!(
                    "DynamoDB table {table:?} does not exist: check the primary's table_name and the region"
                ))
            })?;
        Ok(description.item_count().unwrap_or(0).max(0) as u64)
    }

    async fn digest(&self, leaf_bits: u32) -> Result<HashTree, ReadError> {
        let trees = self
            .fold_live(
                || HashTree::new(leaf_bits),
                |tree, key, version| tree.add(key.stable_hash(), version.0),
            )
            .await?;
        let mut trees = trees.into_iter();
        let mut whole = trees.next().unwrap_or_else(|| HashTree::new(leaf_bits));
        for tree in trees {
            whole.merge(&tree);
        }
        Ok(whole)
    }

    async fn live_in(&self, leaves: &LeafSet) -> Result<Vec<(ItemKey, Version)>, ReadError> {
        if leaves.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .fold_live(Vec::new, |found, key, version| {
                if leaves.contains(key.stable_hash()) {
                    found.push((key, version));
                }
            })
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// A tombstone is [`Held::Deleted`] at the deletion's version until DynamoDB's TTL
    /// removes it (`tombstone_ttl_hours`); after that the key is unknown (`None`).
    async fn held(&self, keys: &[ItemKey]) -> Result<Vec<Option<Held>>, ReadError> {
        // BatchGetItem refuses a request naming a key twice. Chunks are owned so that the
        // requests in flight borrow nothing but the store.
        let mut seen = HashSet::with_capacity(keys.len());
        let distinct: Vec<ItemKey> = keys.iter().filter(|k| seen.insert(*k)).cloned().collect();
        let chunks: Vec<Vec<ItemKey>> = distinct
            .chunks(BATCH_GET_KEYS)
            .map(<[ItemKey]>::to_vec)
            .collect();
        let found: HashMap<ItemKey, Held> = futures::stream::iter(chunks)
            .map(|chunk| self.batch_held(chunk))
            .buffer_unordered(BATCH_GET_CONCURRENCY)
            .try_fold(HashMap::new(), |mut found, batch| async move {
                found.extend(batch);
                Ok(found)
            })
            .await?;
        Ok(keys.iter().map(|key| found.get(key).copied()).collect())
    }
}

#[async_trait]
impl PrimaryDigest for DynamoStore {
    async fn current(&self, key: &ItemKey) -> Result<Option<StoredItem>, ReadError> {
        ItemStore::get(self, key).await.map_err(|e| {
            ReadError(format!(
                "reading {key} from DynamoDB table {:?}: {e}",
                self.table_name()
            ))
        })
    }

    /// The hybrid clock's "now" in µs, returned once this clock has moved past it.
    ///
    /// A write's version is `max(previous + 1, writer's now)`. Versions handed out before
    /// this call came from clock readings at or before it (or `previous + 1` steps, which
    /// run ahead of the clock only for an item written more than once a microsecond), so
    /// they are not newer than the value returned; a write that starts after the call
    /// returns proposes a later clock reading, so a key the table does not hold gets a
    /// newer version, and a repair's tombstone at this version never hides a re-creation.
    /// Both hold only while writers' clocks agree with this one: a writer whose clock runs
    /// ahead may have handed out newer versions, one whose clock lags may hand out older
    /// ones (the clock-skew caveat of [`crate::dynamo`]).
    async fn fresh_version(&self) -> Result<Version, ReadError> {
        let now = now_us().max(0) as u64;
        // Wait out the current microsecond, so a write in the same microsecond cannot
        // get this very version after we return.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(Version(now))
    }
}

//! Dead letters and backfill progress in one DynamoDB table ([`DeadLetterQueue`] and
//! [`BackfillProgressStore`]), so that every worker and every operator machine of a
//! distributed deployment sees the same queue and the same progress.
//!
//! Layout (string keys: `pk` HASH, `sk` RANGE; see also `docs/aws.md`):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | id counter | `dlq-counter` | `last` | `last_id` (N) |
//! | dead letter | `dlq` | the id, zero-padded to 20 digits | `id` (N), `consumer` (S), `attempts` (N), `failed_at_us` (N), and either `record` (S, the [`ChangeRecord`] as JSON) and `error` (S), or `parts` (N) |
//! | part of a large letter | `dlq-part#<id>` | the part number, zero-padded to 6 digits | `chunk` (B) |
//! | backfill progress | `backfill#<consumer>` | the shard id | `state` (S, the [`BackfillState`] as JSON) |
//!
//! **Ids** come from `UpdateItem ADD last_id 1` on the counter item, returning
//! `UPDATED_NEW`: unique and increasing across processes, never reused (a push that fails
//! after taking an id leaves a gap). Every write of a letter or a part is conditional on
//! the item not existing, so a letter is never overwritten: the counter proposes ids and
//! the conditional write decides. A push whose id is already held takes the next one, up
//! to [`ID_ATTEMPTS`] ids, with a warning naming the counter; a counter set back further
//! than that (reset by hand) fails pushes loudly, saying how to repair it.
//!
//! **Large letters.** A DynamoDB item holds at most 400 KB, and one record may carry a
//! body of nearly that plus its old image. A letter whose record and error do not fit in
//! [`INLINE_MAX_BYTES`] is kept whole in part items: the JSON of `{"record", "error"}` is
//! cut into chunks of [`PART_BYTES`], written **before** the letter's item, which then
//! holds `parts`, their count, instead of `record` and `error`. A crash in between leaves
//! part items that no letter names (nobody reads them) rather than a letter with missing
//! parts. `get` and `list` reassemble the parts; `remove` deletes the letter's item, then
//! its parts.
//!
//! **Reads** are strongly consistent. `list` is a `Query` on `pk = dlq` from the padded
//! `after_id`, with a filter on the consumer; DynamoDB applies `Limit` before the filter,
//! so `list` pages until it has `limit` letters or reaches the end. `count` is the same
//! query with `Select = COUNT`. All letters share one partition: a dead-letter queue is
//! written rarely, far below what one partition takes.

use crate::config::{AwsConfig, StateTableConfig};
use crate::dynamo::{n, OperationalTable, PK, SK};
use crate::{sdk_config, ApiFailure, AwsError};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Select};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tsunagu_domain::{ChangeRecord, ShardId};
use tsunagu_engine::backfill::{BackfillProgressStore, BackfillState};
use tsunagu_engine::ports::{DeadLetter, DeadLetterQueue, StateError};

const LETTERS: &str = "dlq";
const COUNTER_PK: &str = "dlq-counter";
const COUNTER_SK: &str = "last";
const LAST_ID: &str = "last_id";
const PART_PREFIX: &str = "dlq-part#";
const BACKFILL_PREFIX: &str = "backfill#";

const ID: &str = "id";
const CONSUMER: &str = "consumer";
const RECORD: &str = "record";
const ERROR: &str = "error";
const ATTEMPTS: &str = "attempts";
const FAILED_AT: &str = "failed_at_us";
const PARTS: &str = "parts";
const CHUNK: &str = "chunk";
const STATE: &str = "state";

/// A letter whose record and error take more bytes than this is kept in part items
/// (DynamoDB's item limit is 400 KB, attribute names and keys included).
pub const INLINE_MAX_BYTES: usize = 350 * 1024;
/// The most bytes of one part item's chunk.
pub const PART_BYTES: usize = 350 * 1024;

/// Evaluated items per page when `list` filters on a consumer: DynamoDB's `Limit` counts
/// the letters of other consumers too, so a page sized to what is missing could take one
/// round trip per letter.
const FILTERED_PAGE: usize = 100;

/// Fresh ids one push tries before it reports the counter as set back.
const ID_ATTEMPTS: usize = 8;

type Item = HashMap<String, AttributeValue>;

/// Why a write under a fresh id did not happen.
enum WriteFailure {
    /// An item already exists under that id.
    Taken,
    Failed(StateError),
}

impl From<StateError> for WriteFailure {
    fn from(error: StateError) -> Self {
        WriteFailure::Failed(error)
    }
}

/// What the part items of a large letter hold, as JSON.
#[derive(Serialize)]
struct SpilledRef<'a> {
    record: &'a ChangeRecord,
    error: &'a str,
}

#[derive(Deserialize)]
struct Spilled {
    record: ChangeRecord,
    error: String,
}

/// Dead letters and backfill progress in one DynamoDB table. Cheap to clone.
#[derive(Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

impl DynamoStateStore {
    /// Connects, creating the table when it is missing and `create_if_missing` is set, and
    /// checks its keys.
    pub async fn connect(aws: &AwsConfig, config: &StateTableConfig) -> Result<Self, AwsError> {
        config.validate("state")?;
        Self::with_client(Client::new(&sdk_config(aws).await?), config).await
    }

    /// Like [`DynamoStateStore::connect`], with a client built by the caller.
    pub async fn with_client(client: Client, config: &StateTableConfig) -> Result<Self, AwsError> {
        config.validate("state")?;
        let table = &config.table_name;
        Self::table_of(table)
            .open(&client, config.create_if_missing)
            .await?;
        Ok(Self {
            client,
            table: table.clone(),
        })
    }

    /// For `tsunagu check`: the table exists with string keys `pk` and `sk`. Creates
    /// nothing. Returns a one-line summary.
    pub async fn check(&self) -> Result<String, AwsError> {
        Self::table_of(&self.table).check(&self.client).await
    }

    fn table_of(name: &str) -> OperationalTable<'_> {
        OperationalTable {
            what: "state",
            name,
            keys: (PK, SK),
            section: "state",
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Maps an SDK error; a missing table says how to get one.
    fn api_error<E, R>(&self, operation: &str, error: &SdkError<E, R>) -> StateError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let failure = ApiFailure::from_sdk(operation, error);
        if failure.is("ResourceNotFoundException") {
            StateError(Self::table_of(&self.table).missing())
        } else {
            StateError(failure.message)
        }
    }

    fn corrupt(&self, what: &str, detail: impl std::fmt::Display) -> StateError {
        StateError(format!(
            "{what} in DynamoDB table {:?} is unreadable: {detail}",
            self.table
        ))
    }

    /// Takes the next dead-letter id.
    async fn next_id(&self) -> Result<u64, StateError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(COUNTER_PK, COUNTER_SK)))
            .update_expression("ADD #last :one")
            .expression_attribute_names("#last", LAST_ID)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.api_error("UpdateItem (dead-letter id counter)", &e))?;
        output
            .attributes()
            .and_then(|a| a.get(LAST_ID))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                self.corrupt(
                    "the dead-letter id counter",
                    format!("{LAST_ID} of pk {COUNTER_PK:?} is not a whole number; set it above the highest letter id"),
                )
            })
    }

    /// Writes an item that must not exist yet (a letter or a part under a fresh id).
    async fn put_new(&self, item: Item, what: &str) -> Result<(), WriteFailure> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error.as_service_error().and_then(|e| e.code())
                    == Some("ConditionalCheckFailedException") =>
            {
                Err(WriteFailure::Taken)
            }
            Err(error) => Err(self.api_error(&format!("PutItem ({what})"), &error).into()),
        }
    }

    /// Writes a large letter's parts; returns their count. On failure, deletes the parts
    /// it wrote.
    async fn put_parts(&self, id: u64, payload: &[u8]) -> Result<usize, WriteFailure> {
        let chunks: Vec<&[u8]> = payload.chunks(PART_BYTES).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let mut item = key(part_pk(id), part_sk(index));
            item.insert(CHUNK.into(), AttributeValue::B(Blob::new(chunk.to_vec())));
            if let Err(error) = self.put_new(item, "dead-letter part").await {
                self.delete_parts_logged(id, index).await;
                return Err(error);
            }
        }
        Ok(chunks.len())
    }

    /// Deletes parts `0..count` of a letter, all of them even when one fails; returns the
    /// first failure.
    async fn delete_parts(&self, id: u64, count: usize) -> Result<(), StateError> {
        let mut first_error = None;
        for index in 0..count {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(part_pk(id), part_sk(index))))
                .send()
                .await;
            if let Err(error) = result {
                first_error.get_or_insert(self.api_error("DeleteItem (dead-letter part)", &error));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// [`Self::delete_parts`] where a failure only costs storage: part items no letter
    /// names are never read.
    async fn delete_parts_logged(&self, id: u64, count: usize) {
        if let Err(error) = self.delete_parts(id, count).await {
            tracing::warn!(
                table = %self.table,
                pk = %part_pk(id),
                parts = count,
                %error,
                "could not delete the part items of dead letter {id}; they are never read and can be deleted by hand"
            );
        }
    }

    /// Writes `letter` (its record already encoded as `record`) under `id`: its parts
    /// first when it is large, then its item. On failure, deletes the parts it wrote.
    async fn write_letter(
        &self,
        id: u64,
        letter: &DeadLetter,
        record: &str,
    ) -> Result<(), WriteFailure> {
        let mut item = key(LETTERS, letter_sk(id));
        item.insert(ID.into(), n(id));
        item.insert(CONSUMER.into(), AttributeValue::S(letter.consumer.clone()));
        item.insert(ATTEMPTS.into(), n(letter.attempts));
        item.insert(FAILED_AT.into(), n(letter.failed_at_us));
        let parts = if record.len() + letter.error.len() <= INLINE_MAX_BYTES {
            item.insert(RECORD.into(), AttributeValue::S(record.to_owned()));
            item.insert(ERROR.into(), AttributeValue::S(letter.error.clone()));
            0
        } else {
            let payload = serde_json::to_vec(&SpilledRef {
                record: &letter.record,
                error: &letter.error,
            })
            .map_err(|e| StateError(format!("cannot encode the dead letter: {e}")))?;
            let parts = self.put_parts(id, &payload).await?;
            item.insert(PARTS.into(), n(parts));
            parts
        };
        if let Err(failure) = self.put_new(item, "dead letter").await {
            self.delete_parts_logged(id, parts).await;
            return Err(failure);
        }
        Ok(())
    }

    /// Every item of one partition, strongly consistent, in sort-key order.
    async fn partition(&self, pk: &str, what: &str) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.api_error(&format!("Query ({what})"), &e))?;
            items.extend(output.items().iter().cloned());
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(items),
            }
        }
    }

    /// Reassembles a large letter's parts.
    async fn read_parts(&self, id: u64, count: usize) -> Result<Spilled, StateError> {
        let what = || format!("dead letter {id}");
        let items = self.partition(&part_pk(id), "dead-letter parts").await?;
        if items.len() != count {
            return Err(self.corrupt(
                &what(),
                format!("{} of its {count} part items are there", items.len()),
            ));
        }
        let mut payload = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let sk = item.get(SK).and_then(|v| v.as_s().ok());
            let chunk = item.get(CHUNK).and_then(|v| v.as_b().ok());
            match (sk, chunk) {
                (Some(sk), Some(chunk)) if *sk == part_sk(index) => {
                    payload.extend_from_slice(chunk.as_ref())
                }
                _ => {
                    return Err(
                        self.corrupt(&what(), format!("part {index} is missing or malformed"))
                    )
                }
            }
        }
        serde_json::from_slice(&payload).map_err(|e| self.corrupt(&what(), e))
    }

    /// A letter from its item, with its parts read back if it has any.
    async fn letter_from(&self, item: &Item) -> Result<DeadLetter, StateError> {
        let sk = item.get(SK).and_then(|v| v.as_s().ok());
        let what = format!(
            "dead letter {}",
            sk.map_or("?", |s| s.trim_start_matches('0'))
        );
        let s = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| self.corrupt(&what, format!("no text attribute {name:?}")))
        };
        let num = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .ok_or_else(|| self.corrupt(&what, format!("no number attribute {name:?}")))
        };
        let parse = |name: &str| -> Result<i64, StateError> {
            num(name)?
                .parse::<i64>()
                .map_err(|e| self.corrupt(&what, format!("{name:?}: {e}")))
        };
        let id: u64 = num(ID)?
            .parse()
            .map_err(|e| self.corrupt(&what, format!("{ID:?}: {e}")))?;
        let attempts = u32::try_from(parse(ATTEMPTS)?)
            .map_err(|e| self.corrupt(&what, format!("{ATTEMPTS:?}: {e}")))?;
        let (record, error) = if item.contains_key(PARTS) {
            let count = usize::try_from(parse(PARTS)?)
                .map_err(|e| self.corrupt(&what, format!("{PARTS:?}: {e}")))?;
            let spilled = self.read_parts(id, count).await?;
            (spilled.record, spilled.error)
        } else {
            let record: ChangeRecord =
                serde_json::from_str(s(RECORD)?).map_err(|e| self.corrupt(&what, e))?;
            (record, s(ERROR)?.clone())
        };
        Ok(DeadLetter {
            id,
            consumer: s(CONSUMER)?.clone(),
            record,
            error,
            attempts,
            failed_at_us: parse(FAILED_AT)?,
        })
    }
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(pk.into())),
        (SK.to_string(), AttributeValue::S(sk.into())),
    ])
}

/// Zero-padded to the 20 digits of `u64::MAX`, so string order is id order.
fn letter_sk(id: u64) -> String {
    format!("{id:020}")
}

fn part_pk(id: u64) -> String {
    format!("{PART_PREFIX}{id}")
}

fn part_sk(index: usize) -> String {
    format!("{index:06}")
}

fn backfill_pk(consumer: &str) -> String {
    format!("{BACKFILL_PREFIX}{consumer}")
}

#[async_trait]
impl DeadLetterQueue for DynamoStateStore {
    async fn push(&self, letter: DeadLetter) -> Result<u64, StateError> {
        let record = serde_json::to_string(&letter.record)
            .map_err(|e| StateError(format!("cannot encode the dead letter's record: {e}")))?;
        let mut taken = Vec::new();
        while taken.len() < ID_ATTEMPTS {
            let id = self.next_id().await?;
            match self.write_letter(id, &letter, &record).await {
                Ok(()) => return Ok(id),
                Err(WriteFailure::Failed(error)) => return Err(error),
                Err(WriteFailure::Taken) => {
                    tracing::warn!(
                        table = %self.table,
                        id,
                        "dead-letter id {id} is already held; taking the next one (is the id counter pk {COUNTER_PK:?} behind the letters?)"
                    );
                    taken.push(id);
                }
            }
        }
        Err(StateError(format!(
            "dead-letter ids {taken:?} are already taken in DynamoDB table {:?}: the id counter (pk {COUNTER_PK:?}) was set back; set its {LAST_ID} above the highest letter id",
            self.table
        )))
    }

    async fn list(
        &self,
        consumer: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StateError> {
        let mut letters = Vec::new();
        let mut start = None;
        while letters.len() < limit {
            let missing = limit - letters.len();
            let page = if consumer.is_some() {
                missing.max(FILTERED_PAGE)
            } else {
                missing
            };
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk > :after")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", AttributeValue::S(LETTERS.into()))
                .expression_attribute_values(":after", AttributeValue::S(letter_sk(after_id)))
                .consistent_read(true)
                .limit(i32::try_from(page).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(consumer) = consumer {
                query = query
                    .filter_expression("#consumer = :consumer")
                    .expression_attribute_names("#consumer", CONSUMER)
                    .expression_attribute_values(":consumer", AttributeValue::S(consumer.into()));
            }
            let output = query
                .send()
                .await
                .map_err(|e| self.api_error("Query (dead letters)", &e))?;
            for item in output.items().iter().take(missing) {
                letters.push(self.letter_from(item).await?);
            }
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        Ok(letters)
    }

    async fn get(&self, id: u64) -> Result<Option<DeadLetter>, StateError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(LETTERS, letter_sk(id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.api_error("GetItem (dead letter)", &e))?;
        match output.item() {
            Some(item) => Ok(Some(self.letter_from(item).await?)),
            None => Ok(None),
        }
    }

    async fn remove(&self, id: u64) -> Result<bool, StateError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(LETTERS, letter_sk(id))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.api_error("DeleteItem (dead letter)", &e))?;
        let Some(old) = output.attributes().filter(|a| !a.is_empty()) else {
            return Ok(false);
        };
        let parts = old
            .get(PARTS)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        // The letter is gone once its item is; leftover parts only cost storage.
        self.delete_parts_logged(id, parts).await;
        Ok(true)
    }

    async fn count(&self, consumer: &str) -> Result<u64, StateError> {
        let mut count = 0u64;
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .filter_expression("#consumer = :consumer")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#consumer", CONSUMER)
                .expression_attribute_values(":pk", AttributeValue::S(LETTERS.into()))
                .expression_attribute_values(":consumer", AttributeValue::S(consumer.into()))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.api_error("Query (dead-letter count)", &e))?;
            count += u64::try_from(output.count()).unwrap_or(0);
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(count),
            }
        }
    }
}

#[async_trait]
impl BackfillProgressStore for DynamoStateStore {
    async fn load_backfill(
        &self,
        consumer: &str,
    ) -> Result<HashMap<ShardId, BackfillState>, StateError> {
        let items = self
            .partition(&backfill_pk(consumer), "backfill progress")
            .await?;
        items
            .iter()
            .map(|item| {
                let shard = item.get(SK).and_then(|v| v.as_s().ok()).ok_or_else(|| {
                    self.corrupt(&format!("backfill progress of {consumer:?}"), "no shard")
                })?;
                let what = format!("backfill progress of {consumer:?} on shard {shard:?}");
                let text = item
                    .get(STATE)
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| self.corrupt(&what, "no text attribute \"state\""))?;
                let state: BackfillState =
                    serde_json::from_str(text).map_err(|e| self.corrupt(&what, e))?;
                Ok((ShardId(shard.clone()), state))
            })
            .collect()
    }

    async fn save_backfill(
        &self,
        consumer: &str,
        shard: &ShardId,
        state: &BackfillState,
    ) -> Result<(), StateError> {
        let text = serde_json::to_string(state)
            .map_err(|e| StateError(format!("cannot encode the backfill progress: {e}")))?;
        let mut item = key(backfill_pk(consumer), shard.0.clone());
        item.insert(STATE.into(), AttributeValue::S(text));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.api_error("PutItem (backfill progress)", &e))?;
        Ok(())
    }

    async fn clear_backfill(&self, consumer: &str, shard: &ShardId) -> Result<(), StateError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(backfill_pk(consumer), shard.0.clone())))
            .send()
            .await
            .map_err(|e| self.api_error("DeleteItem (backfill progress)", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_keys_sort_as_ids() {
        let ids = [0, 1, 9, 10, 99, 100, 12_345, u64::MAX - 1, u64::MAX];
        let keys: Vec<String> = ids.iter().map(|&id| letter_sk(id)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.iter().all(|k| k.len() == 20));
    }

    #[test]
    fn part_keys_sort_as_part_numbers() {
        let keys: Vec<String> = [0, 1, 9, 10, 999_999].map(part_sk).to_vec();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }

    #[test]
    fn partitions_never_collide() {
        // A consumer named like a letter partition still gets its own backfill partition.
        for consumer in ["dlq", "dlq-counter", "dlq-part#1"] {
            let pk = backfill_pk(consumer);
            assert!(pk != LETTERS && pk != COUNTER_PK && !pk.starts_with(PART_PREFIX));
        }
        assert!(!part_pk(1).starts_with(BACKFILL_PREFIX));
    }

    #[test]
    fn a_part_item_fits_in_dynamodb() {
        let overhead = PK.len() + part_pk(u64::MAX).len() + SK.len() + 6 + CHUNK.len();
        assert!(PART_BYTES + overhead < 400 * 1024);
    }
}

//! Shard leases in a DynamoDB table ([`LeaseStore`]).
//!
//! One item per (consumer, shard): partition key `consumer`, sort key `shard`, and the
//! attributes `parent` and `adjacent_parent` (S), `owner` (S, absent when free), `counter` (N),
//! `expires_at_ms` (N), `checkpoint` (S) and `finished` (BOOL). Every change is one
//! conditional write, so two workers can never both win:
//!
//! - `ensure`: `PutItem` if `attribute_not_exists(consumer)`;
//! - `take`: `UpdateItem` raising `counter` if `counter = :seen` (the fencing token);
//! - `renew`, `checkpoint`, `release`: `UpdateItem` if `owner = :worker`.
//!
//! `leases` is a strongly consistent `Query` on the consumer.

use crate::config::{AwsConfig, LeaseTableConfig};
use crate::dynamo::{n, OperationalTable};
use crate::{sdk_config, ApiFailure, AwsError};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use tsunagu_domain::{Position, ShardId};
use tsunagu_engine::ports::{Lease, LeaseStore, ShardInfo, StateError};

const CONSUMER: &str = "consumer";
const SHARD: &str = "shard";

/// Shard leases in one DynamoDB table. Cheap to clone.
#[derive(Clone)]
pub struct DynamoLeaseStore {
    client: Client,
    table: String,
}

impl DynamoLeaseStore {
    pub async fn connect(aws: &AwsConfig, config: &LeaseTableConfig) -> Result<Self, AwsError> {
        config.validate("leases")?;
        Self::with_client(Client::new(&sdk_config(aws).await?), config).await
    }

    pub async fn with_client(client: Client, config: &LeaseTableConfig) -> Result<Self, AwsError> {
        config.validate("leases")?;
        let table = &config.table_name;
        Self::table_of(table)
            .open(&client, config.create_if_missing)
            .await?;
        Ok(Self {
            client,
            table: table.clone(),
        })
    }

    /// For `tsunagu check`: the table exists with keys `consumer` and `shard`.
    pub async fn check(&self) -> Result<String, AwsError> {
        Self::table_of(&self.table).check(&self.client).await
    }

    fn table_of(name: &str) -> OperationalTable<'_> {
        OperationalTable {
            what: "lease",
            name,
            keys: (CONSUMER, SHARD),
            section: "leases",
        }
    }

    fn key(consumer: &str, shard: &ShardId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                CONSUMER.to_string(),
                AttributeValue::S(consumer.to_string()),
            ),
            (SHARD.to_string(), AttributeValue::S(shard.0.clone())),
        ])
    }

    /// One conditional `UpdateItem`; `Ok(None)` when the condition did not hold.
    async fn update(
        &self,
        consumer: &str,
        shard: &ShardId,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<Lease>, StateError> {
        let mut names = HashMap::new();
        for name in [
            "owner",
            "counter",
            "expires_at_ms",
            "checkpoint",
            "finished",
            CONSUMER,
        ] {
            let placeholder = format!("#{name}");
            if update.contains(&placeholder) || condition.contains(&placeholder) {
                names.insert(placeholder, name.to_string());
            }
        }
        let values: HashMap<String, AttributeValue> = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(consumer, shard)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => Ok(output.attributes().and_then(lease_from)),
            Err(error) if conditional_failed(&error) => Ok(None),
            Err(error) => Err(StateError(
                ApiFailure::from_sdk("UpdateItem (lease)", &error).message,
            )),
        }
    }
}

fn conditional_failed<E, R>(error: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

fn lease_from(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
    let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let num = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    Some(Lease {
        shard: ShardId(s(SHARD)?),
        parent: s("parent").map(ShardId),
        adjacent_parent: s("adjacent_parent").map(ShardId),
        owner: s("owner"),
        counter: num("counter").unwrap_or(0).max(0) as u64,
        expires_at_ms: num("expires_at_ms").unwrap_or(0),
        checkpoint: s("checkpoint").map(Position),
        finished: item
            .get("finished")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

#[async_trait]
impl LeaseStore for DynamoLeaseStore {
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>, StateError> {
        let mut leases = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#consumer = :consumer")
                .expression_attribute_names("#consumer", CONSUMER)
                .expression_attribute_values(":consumer", AttributeValue::S(consumer.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StateError(ApiFailure::from_sdk("Query (leases)", &e).message))?;
            leases.extend(output.items().iter().filter_map(lease_from));
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        Ok(leases)
    }

    async fn ensure(&self, consumer: &str, shard: &ShardInfo) -> Result<(), StateError> {
        let mut item = Self::key(consumer, &shard.id);
        item.insert("counter".into(), n(0));
        item.insert("expires_at_ms".into(), n(0));
        item.insert("finished".into(), AttributeValue::Bool(false));
        if let Some(parent) = &shard.adjacent_parent {
            item.insert(
                "adjacent_parent".into(),
                AttributeValue::S(parent.0.clone()),
            );
        }
        if let Some(parent) = &shard.parent {
            item.insert("parent".into(), AttributeValue::S(parent.0.clone()));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#consumer)")
            .expression_attribute_names("#consumer", CONSUMER)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if conditional_failed(&error) => Ok(()),
            Err(error) => Err(StateError(
                ApiFailure::from_sdk("PutItem (lease)", &error).message,
            )),
        }
    }

    async fn take(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        seen_counter: u64,
        expires_at_ms: i64,
    ) -> Result<Option<Lease>, StateError> {
        self.update(
            consumer,
            shard,
            "SET #owner = :worker, #expires_at_ms = :expires, #counter = #counter + :one",
            "attribute_exists(#consumer) AND #counter = :seen",
            vec![
                (":worker", AttributeValue::S(worker.to_string())),
                (":expires", n(expires_at_ms)),
                (":one", n(1)),
                (":seen", n(seen_counter)),
            ],
        )
        .await
    }

    async fn renew(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        expires_at_ms: i64,
    ) -> Result<Option<Lease>, StateError> {
        self.update(
            consumer,
            shard,
            "SET #expires_at_ms = :expires",
            "#owner = :worker",
            vec![
                (":worker", AttributeValue::S(worker.to_string())),
                (":expires", n(expires_at_ms)),
            ],
        )
        .await
    }

    /// `position = None` leaves the stored checkpoint as it is.
    async fn checkpoint(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        position: Option<&Position>,
        finished: bool,
    ) -> Result<bool, StateError> {
        // A finished shard stays finished: `finished = false` leaves the flag alone.
        let mut values = vec![(":worker", AttributeValue::S(worker.to_string()))];
        let mut sets = Vec::new();
        if finished {
            values.push((":finished", AttributeValue::Bool(true)));
            sets.push("#finished = :finished");
        }
        if let Some(position) = position {
            values.push((":checkpoint", AttributeValue::S(position.0.clone())));
            sets.push("#checkpoint = :checkpoint");
        }
        if sets.is_empty() {
            // Nothing to change: only say whether the worker still owns the lease.
            sets.push("#owner = :worker");
        }
        let update = format!("SET {}", sets.join(", "));
        Ok(self
            .update(consumer, shard, &update, "#owner = :worker", values)
            .await?
            .is_some())
    }

    async fn release(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
    ) -> Result<bool, StateError> {
        Ok(self
            .update(
                consumer,
                shard,
                "SET #expires_at_ms = :zero REMOVE #owner",
                "#owner = :worker",
                vec![
                    (":worker", AttributeValue::S(worker.to_string())),
                    (":zero", n(0)),
                ],
            )
            .await?
            .is_some())
    }
}

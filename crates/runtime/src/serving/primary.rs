//! The primary store as the application's port ([`PrimaryStore`]) over the engine's
//! [`ItemStore`]: one implementation for every primary (the embedded store, DynamoDB).

use async_trait::async_trait;
use std::sync::Arc;
use tsunagu_domain::{Entity, ItemKey, Version};
use tsunagu_engine::ports::{Condition, ItemStore, ItemStoreError, WriteOp};
use tsunagu_service::ports::{Committed, Expect, PrimaryStore, WriteRejected};
use tsunagu_service::ServiceError;

/// Any [`ItemStore`] as the service's primary.
pub struct StorePrimary(pub Arc<dyn ItemStore>);

fn condition(expect: Expect) -> Condition {
    match expect {
        Expect::Absent => Condition::NotExists,
        Expect::Version(v) => Condition::VersionIs(v),
    }
}

fn rejected(e: ItemStoreError) -> WriteRejected {
    match e {
        ItemStoreError::Conflict { found, .. } => WriteRejected::Conflict { current: found },
        other => WriteRejected::Unavailable(format!("the primary store failed: {other}")),
    }
}

#[async_trait]
impl PrimaryStore for StorePrimary {
    async fn get(&self, key: &ItemKey) -> Result<Option<(Version, Entity)>, ServiceError> {
        let Some(item) = self
            .0
            .get(key)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("the primary store failed: {e}")))?
        else {
            return Ok(None);
        };
        let entity = Entity::from_json(&item.body).map_err(|e| {
            ServiceError::Unavailable(format!("the stored item {key} is unreadable: {e}"))
        })?;
        Ok(Some((item.version, entity)))
    }

    async fn put(&self, entity: &Entity, expect: Expect) -> Result<Committed, WriteRejected> {
        let outcome = self
            .0
            .write(WriteOp::Put {
                key: entity.key(),
                body: entity.to_json(),
                condition: condition(expect),
            })
            .await
            .map_err(rejected)?;
        let version = outcome.version.ok_or_else(|| {
            WriteRejected::Unavailable("the primary store reported no version for a put".into())
        })?;
        // A put that changed nothing still carries the time it was made: its token then
        // waits for every change committed before it (the client's earlier writes), as
        // the token of a write that changed something does.
        Ok(Committed {
            version,
            committed_at_us: outcome.committed_at_us,
        })
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<Committed, WriteRejected> {
        let outcome = self
            .0
            .write(WriteOp::Delete {
                key: key.clone(),
                condition: condition(expect),
            })
            .await
            .map_err(rejected)?;
        // No version: there was nothing to delete (another writer deleted it first).
        let version = outcome
            .version
            .ok_or(WriteRejected::Conflict { current: None })?;
        Ok(Committed {
            version,
            committed_at_us: outcome.committed_at_us,
        })
    }
}

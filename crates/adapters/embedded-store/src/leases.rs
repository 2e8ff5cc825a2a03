//! Shard leases in the state file, for several `tsunagu replicate` processes sharing the
//! embedded store's stream. Every change is one conditional `UPDATE`; SQLite serializes
//! writers across processes, so a condition holds at the moment the row changes.

use crate::state::EmbeddedState;
use crate::StoreError;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use tsunagu_domain::{Position, ShardId};
use tsunagu_engine::ports::{Lease, LeaseStore, ShardInfo, StateError};

const COLUMNS: &str =
    "shard, parent, adjacent_parent, owner, counter, expires_at_ms, checkpoint, finished";

fn lease_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        shard: ShardId(row.get(0)?),
        parent: row.get::<_, Option<String>>(1)?.map(ShardId),
        adjacent_parent: row.get::<_, Option<String>>(2)?.map(ShardId),
        owner: row.get(3)?,
        counter: row.get::<_, i64>(4)? as u64,
        expires_at_ms: row.get(5)?,
        checkpoint: row.get::<_, Option<String>>(6)?.map(Position),
        finished: row.get::<_, i64>(7)? != 0,
    })
}

impl EmbeddedState {
    /// Runs a conditional `UPDATE` on one lease (`?1` consumer, `?2` shard, then `args`)
    /// and returns the lease after it, or `None` when the condition did not hold.
    async fn update_lease(
        &self,
        consumer: &str,
        shard: &ShardId,
        sql: &'static str,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<Option<Lease>, StateError> {
        let (consumer, shard) = (consumer.to_string(), shard.0.clone());
        self.run(move |conn| {
            let mut values: Vec<rusqlite::types::Value> =
                vec![consumer.clone().into(), shard.clone().into()];
            values.extend(args);
            let changed = conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values))?;
            if changed == 0 {
                return Ok(None);
            }
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM leases WHERE consumer = ?1 AND shard = ?2"
                ))?
                .query_row(params![consumer, shard], lease_from_row)
                .optional()?)
        })
        .await
    }
}

fn text(s: &str) -> rusqlite::types::Value {
    s.to_string().into()
}

#[async_trait]
impl LeaseStore for EmbeddedState {
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>, StateError> {
        let consumer = consumer.to_string();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM leases WHERE consumer = ?1 ORDER BY shard"
            ))?;
            let rows = stmt.query_map([consumer], lease_from_row)?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn ensure(&self, consumer: &str, shard: &ShardInfo) -> Result<(), StateError> {
        let (consumer, info) = (consumer.to_string(), shard.clone());
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO leases (consumer, shard, parent, adjacent_parent, owner, counter, expires_at_ms, checkpoint, finished)
                 VALUES (?1, ?2, ?3, ?4, NULL, 0, 0, NULL, 0) ON CONFLICT (consumer, shard) DO NOTHING",
            )?
            .execute(params![
                consumer,
                info.id.0,
                info.parent.map(|p| p.0),
                info.adjacent_parent.map(|p| p.0)
            ])?;
            Ok(())
        })
        .await
    }

    async fn take(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        seen_counter: u64,
        expires_at_ms: i64,
    ) -> Result<Option<Lease>, StateError> {
        self.update_lease(
            consumer,
            shard,
            "UPDATE leases SET owner = ?3, counter = counter + 1, expires_at_ms = ?4
             WHERE consumer = ?1 AND shard = ?2 AND counter = ?5",
            vec![
                text(worker),
                expires_at_ms.into(),
                (seen_counter as i64).into(),
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
        self.update_lease(
            consumer,
            shard,
            "UPDATE leases SET expires_at_ms = ?4 WHERE consumer = ?1 AND shard = ?2 AND owner = ?3",
            vec![text(worker), expires_at_ms.into()],
        )
        .await
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        shard: &ShardId,
        worker: &str,
        position: Option<&Position>,
        finished: bool,
    ) -> Result<bool, StateError> {
        let position: rusqlite::types::Value = match position {
            Some(p) => text(&p.0),
            None => rusqlite::types::Value::Null,
        };
        Ok(self
            .update_lease(
                consumer,
                shard,
                "UPDATE leases SET checkpoint = COALESCE(?4, checkpoint), finished = MAX(finished, ?5)
                 WHERE consumer = ?1 AND shard = ?2 AND owner = ?3",
                vec![text(worker), position, i64::from(finished).into()],
            )
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
            .update_lease(
                consumer,
                shard,
                "UPDATE leases SET owner = NULL, expires_at_ms = 0
                 WHERE consumer = ?1 AND shard = ?2 AND owner = ?3",
                vec![text(worker)],
            )
            .await?
            .is_some())
    }
}

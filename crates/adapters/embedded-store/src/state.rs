//! Checkpoints and the dead-letter queue of every consumer, in their own SQLite file (the
//! shard leases, in the same file, are in [`crate::leases`]).

use crate::sqlite::{
    check_schema_version, init_schema, open_creating, open_read_only, STATE_SCHEMA,
};
use crate::{now_us, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tsunagu_domain::{ChangeRecord, Position, ShardId};
use tsunagu_engine::backfill::{BackfillProgressStore, BackfillState};
use tsunagu_engine::ports::{CheckpointStore, DeadLetter, DeadLetterQueue, StateError};

/// Checkpoints and dead letters. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedState {
    conn: Arc<Mutex<Connection>>,
}

impl EmbeddedState {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_creating(path)?;
        init_schema(&conn, STATE_SCHEMA, path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens the state file at `path` **read-only** (see
    /// [`crate::sqlite::open_read_only`]); a missing file reads as empty state (nothing
    /// recorded yet), in memory, so nothing is created. Writes fail.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = if path.exists() {
            let conn = open_read_only(path)?;
            check_schema_version(&conn, path)?;
            conn
        } else {
            let conn = Connection::open_in_memory()?;
            init_schema(&conn, STATE_SCHEMA, path)?;
            conn.pragma_update(None, "query_only", true)?;
            conn
        };
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StateError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| StoreError::Failed("state connection poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StateError(e.to_string()))?
        .map_err(|e| StateError(e.to_string()))
    }

    /// Records a consumer created outside the config file, with the sink it writes to.
    pub async fn register_consumer(&self, name: &str, sink: &str) -> Result<(), StateError> {
        let (name, sink) = (name.to_string(), sink.to_string());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO consumers (name, sink, created_at_us) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                params![name, sink, now_us()],
            )?;
            Ok(())
        })
        .await
    }
}

/// Consumers created outside the config file, read from the state file at `path` without
/// opening it for writing (empty when there is no file yet).
pub fn registered_consumers_at(path: &Path) -> Result<Vec<(String, String)>, StoreError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = open_read_only(path)?;
    let mut stmt = match conn.prepare("SELECT name, sink FROM consumers ORDER BY name") {
        Ok(stmt) => stmt,
        // A state file from before consumers were registered.
        Err(rusqlite::Error::SqliteFailure(_, _)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn letter_from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, String, String, String, i64, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn decode_letter(
    (id, consumer, record, error, attempts, failed_at_us): (i64, String, String, String, i64, i64),
) -> Result<DeadLetter, StoreError> {
    let record: ChangeRecord = serde_json::from_str(&record).map_err(|e| {
        StoreError::Corrupt(format!("dead letter {id} holds an unreadable record: {e}"))
    })?;
    Ok(DeadLetter {
        id: id as u64,
        consumer,
        record,
        error,
        attempts: attempts as u32,
        failed_at_us,
    })
}

const LETTER_COLUMNS: &str = "id, consumer, record, error, attempts, failed_at_us";

#[async_trait]
impl CheckpointStore for EmbeddedState {
    async fn load(&self, consumer: &str) -> Result<HashMap<ShardId, Position>, StateError> {
        let consumer = consumer.to_string();
        self.run(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT shard, position FROM checkpoints WHERE consumer = ?1")?;
            let rows = stmt.query_map([consumer], |r| {
                Ok((ShardId(r.get(0)?), Position(r.get(1)?)))
            })?;
            Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
        })
        .await
    }

    async fn save(
        &self,
        consumer: &str,
        shard: &ShardId,
        position: &Position,
    ) -> Result<(), StateError> {
        let (consumer, shard, position) =
            (consumer.to_string(), shard.0.clone(), position.0.clone());
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO checkpoints (consumer, shard, position, updated_at_us) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (consumer, shard) DO UPDATE SET position = excluded.position, updated_at_us = excluded.updated_at_us",
            )?
            .execute(params![consumer, shard, position, now_us()])?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DeadLetterQueue for EmbeddedState {
    async fn push(&self, letter: DeadLetter) -> Result<u64, StateError> {
        let record = serde_json::to_string(&letter.record)
            .map_err(|e| StateError(format!("cannot encode the dead letter: {e}")))?;
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO dead_letters (consumer, shard, position, record, error, attempts, failed_at_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                letter.consumer,
                letter.record.shard.0,
                letter.record.position.0,
                record,
                letter.error,
                letter.attempts,
                letter.failed_at_us
            ])?;
            Ok(conn.last_insert_rowid() as u64)
        })
        .await
    }

    async fn list(
        &self,
        consumer: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StateError> {
        let consumer = consumer.map(str::to_string);
        // Ids are SQLite rowids (at most i64::MAX): a larger `after_id` is after them all,
        // where a plain cast would wrap to -1 and list everything.
        let after_id = i64::try_from(after_id).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {LETTER_COLUMNS} FROM dead_letters
                 WHERE (?1 IS NULL OR consumer = ?1) AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![consumer, after_id, limit], letter_from_row)?;
            rows.map(|r| r.map_err(StoreError::from).and_then(decode_letter))
                .collect()
        })
        .await
    }

    async fn get(&self, id: u64) -> Result<Option<DeadLetter>, StateError> {
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {LETTER_COLUMNS} FROM dead_letters WHERE id = ?1"
            ))?
            .query_row([id as i64], letter_from_row)
            .optional()?
            .map(decode_letter)
            .transpose()
        })
        .await
    }

    async fn remove(&self, id: u64) -> Result<bool, StateError> {
        self.run(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?
                .execute([id as i64])?
                > 0)
        })
        .await
    }

    async fn count(&self, consumer: &str) -> Result<u64, StateError> {
        let consumer = consumer.to_string();
        self.run(move |conn| {
            Ok(conn
                .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE consumer = ?1")?
                .query_row([consumer], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }
}

#[async_trait]
impl BackfillProgressStore for EmbeddedState {
    async fn load_backfill(
        &self,
        consumer: &str,
    ) -> Result<HashMap<ShardId, BackfillState>, StateError> {
        let consumer = consumer.to_string();
        self.run(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT shard, state FROM backfills WHERE consumer = ?1")?;
            let rows = stmt.query_map([consumer], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (shard, state) = row?;
                let state: BackfillState = serde_json::from_str(&state).map_err(|e| {
                    StoreError::Corrupt(format!("backfill progress of shard {shard}: {e}"))
                })?;
                Ok((ShardId(shard), state))
            })
            .collect()
        })
        .await
    }

    async fn save_backfill(
        &self,
        consumer: &str,
        shard: &ShardId,
        state: &BackfillState,
    ) -> Result<(), StateError> {
        let state = serde_json::to_string(state).map_err(|e| StateError(e.to_string()))?;
        let (consumer, shard) = (consumer.to_string(), shard.0.clone());
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO backfills (consumer, shard, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (consumer, shard) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![consumer, shard, state])?;
            Ok(())
        })
        .await
    }

    async fn clear_backfill(&self, consumer: &str, shard: &ShardId) -> Result<(), StateError> {
        let (consumer, shard) = (consumer.to_string(), shard.0.clone());
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM backfills WHERE consumer = ?1 AND shard = ?2",
                params![consumer, shard],
            )?;
            Ok(())
        })
        .await
    }
}

//! The store's change stream, read through the engine's `ChangeSource` port.

use crate::primary::{blocking, EmbeddedStore};
use crate::StoreError;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::ports::{ChangeSource, ReadBatch, ReadFrom, ShardInfo, SourceError};

impl EmbeddedStore {
    fn parse_shard(&self, shard: &ShardId) -> Result<u32, SourceError> {
        shard
            .0
            .parse::<u32>()
            .ok()
            .filter(|s| *s < self.shard_count())
            .ok_or_else(|| {
                SourceError::Fatal(format!(
                    "no shard {shard:?} in this store (it has shards 0..{})",
                    self.shard_count()
                ))
            })
    }

    async fn read_now(
        &self,
        shard: u32,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>, SourceError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                let trimmed_through: Option<i64> = conn
                    .prepare_cached("SELECT through_seq FROM trims WHERE shard = ?1")?
                    .query_row([shard], |r| r.get(0))
                    .optional()?;
                if let Some(through) = trimmed_through {
                    if after < through {
                        return Err(StoreError::Trimmed { shard, through });
                    }
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, partition, sort, kind, old_version, old_body, new_body, committed_at_us
                     FROM changes WHERE shard = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![shard, after, limit as i64], |r| {
                    Ok(RawChange {
                        seq: r.get(0)?,
                        partition: r.get(1)?,
                        sort: r.get(2)?,
                        kind: r.get(3)?,
                        old_version: r.get(4)?,
                        old_body: r.get(5)?,
                        new_body: r.get(6)?,
                        committed_at_us: r.get(7)?,
                    })
                })?;
                let shard_id = ShardId(shard.to_string());
                rows.map(|row| row.map_err(StoreError::from).and_then(|raw| raw.into_record(&shard_id)))
                    .collect()
            })
        })
        .await
        .map_err(|e| match e {
            StoreError::Trimmed { .. } => SourceError::Trimmed {
                shard: ShardId(shard.to_string()),
                position: Position(after.to_string()),
            },
            other => source_error(other),
        })
    }
}

struct RawChange {
    seq: i64,
    partition: String,
    sort: String,
    kind: String,
    old_version: Option<i64>,
    old_body: Option<String>,
    new_body: Option<String>,
    committed_at_us: i64,
}

impl RawChange {
    fn into_record(self, shard: &ShardId) -> Result<ChangeRecord, StoreError> {
        let kind = ChangeKind::parse(&self.kind).ok_or_else(|| {
            StoreError::Corrupt(format!("change {} has kind {:?}", self.seq, self.kind))
        })?;
        let version = Version(self.seq as u64);
        let old_image = match (self.old_version, self.old_body) {
            (Some(v), Some(body)) => Some(Image {
                version: Version(v as u64),
                body: body_value(body),
            }),
            _ => None,
        };
        let new_image = self.new_body.map(|body| Image {
            version,
            body: body_value(body),
        });
        Ok(ChangeRecord {
            shard: shard.clone(),
            position: Position(self.seq.to_string()),
            key: ItemKey::new(self.partition, self.sort),
            kind,
            version,
            old_image,
            new_image,
            committed_at_us: self.committed_at_us,
        })
    }
}

/// A body that is not JSON is passed on as a JSON string: the sink then rejects that one
/// record (to the dead-letter queue, content intact) instead of the stream stalling.
fn body_value(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

fn source_error(e: StoreError) -> SourceError {
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            SourceError::Transient(e.to_string())
        }
        StoreError::Closed => SourceError::Transient(e.to_string()),
        other => SourceError::Fatal(other.to_string()),
    }
}

fn after_seq(from: &ReadFrom) -> Result<i64, SourceError> {
    match from {
        ReadFrom::TrimHorizon => Ok(0),
        ReadFrom::After(p) => p.0.parse::<i64>().map_err(|_| {
            SourceError::Fatal(format!(
                "position {p:?} is not a sequence number of the embedded store"
            ))
        }),
    }
}

#[async_trait]
impl ChangeSource for EmbeddedStore {
    /// Changes are sharded by partition key.
    fn shard_of(&self, key: &tsunagu_domain::ItemKey) -> Option<ShardId> {
        Some(ShardId(key.shard_index(self.shard_count()).to_string()))
    }

    async fn has_change_after(
        &self,
        key: &tsunagu_domain::ItemKey,
        after: &Position,
    ) -> Result<Option<bool>, SourceError> {
        let Ok(after) = after.0.parse::<u64>() else {
            return Ok(None);
        };
        self.newest_change_after(key, after)
            .await
            .map(|found| Some(found.is_some()))
            .map_err(|e| SourceError::Transient(e.to_string()))
    }

    /// A change's sequence number is the item's version.
    fn position_of_version(&self, version: tsunagu_domain::Version) -> Option<Position> {
        Some(Position(version.0.to_string()))
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, SourceError> {
        Ok((0..self.shard_count())
            .map(|s| ShardInfo::root(ShardId(s.to_string())))
            .collect())
    }

    async fn read(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        limit: usize,
        wait: Duration,
    ) -> Result<ReadBatch, SourceError> {
        let shard = self.parse_shard(shard)?;
        let after = after_seq(from)?;
        let deadline = Instant::now() + wait;
        // Subscribe before reading, so a commit between the read and the wait still wakes
        // us up.
        let mut committed = self.shared.committed.subscribe();
        loop {
            committed.borrow_and_update();
            let records = self.read_now(shard, after, limit.max(1)).await?;
            let now = Instant::now();
            if !records.is_empty() || now >= deadline {
                return Ok(ReadBatch {
                    records,
                    end_of_shard: false,
                });
            }
            // In-process commits wake us at once; commits by another process are seen at
            // the next poll.
            let nap = (deadline - now).min(self.shared.options.external_poll_interval);
            let _ = tokio::time::timeout(nap, committed.changed()).await;
        }
    }

    async fn latest_position(&self, shard: &ShardId) -> Result<Option<Position>, SourceError> {
        let shard = self.parse_shard(shard)?;
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                // The newest record ever appended to the shard, even if trimmed since.
                let newest: i64 = conn
                    .prepare_cached(
                        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM changes WHERE shard = ?1), 0),
                                    COALESCE((SELECT through_seq FROM trims WHERE shard = ?1), 0))",
                    )?
                    .query_row([shard], |r| r.get(0))?;
                Ok((newest > 0).then(|| Position(newest.to_string())))
            })
        })
        .await
        .map_err(source_error)
    }

    async fn backlog(&self, shard: &ShardId, from: &ReadFrom) -> Result<Option<u64>, SourceError> {
        let shard = self.parse_shard(shard)?;
        let after = after_seq(from)?;
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                Ok(conn
                    .prepare_cached("SELECT COUNT(*) FROM changes WHERE shard = ?1 AND seq > ?2")?
                    .query_row(params![shard, after], |r| r.get::<_, i64>(0))?
                    as u64)
            })
        })
        .await
        .map(Some)
        .map_err(source_error)
    }
}

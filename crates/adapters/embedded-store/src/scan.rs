//! Reading the items themselves (not their changes), a segment at a time, in key order:
//! the [`ItemScanner`] port used to bootstrap and reconcile consumers.

use crate::primary::{blocking, parse_body, EmbeddedStore};
use crate::StoreError;
use async_trait::async_trait;
use rusqlite::params;
use std::sync::Arc;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::ports::{ItemScanner, ScanPage, SourceError};

impl EmbeddedStore {
    /// Items of segment `segment` of `segments` (by partition-key hash, so segment `s` of
    /// `shard_count` is exactly shard `s`), after `after` in key order, at most `limit`.
    pub async fn scan_items(
        &self,
        segment: u32,
        segments: u32,
        after: Option<ItemKey>,
        limit: usize,
    ) -> Result<Vec<(ItemKey, Version, serde_json::Value, i64)>, StoreError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                let (p, s) = after.map(|k| (k.partition, k.sort)).unwrap_or_default();
                let mut stmt = conn.prepare_cached(
                    "SELECT partition, sort, version, body, updated_at_us FROM items
                     WHERE (partition, sort) > (?1, ?2) AND tsunagu_shard(partition, ?3) = ?4
                     ORDER BY partition, sort LIMIT ?5",
                )?;
                let rows =
                    stmt.query_map(params![p, s, segments.max(1), segment, limit as i64], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })?;
                rows.map(|row| {
                    let (partition, sort, version, body, updated_at_us) = row?;
                    Ok((
                        ItemKey::new(partition, sort),
                        Version(version as u64),
                        parse_body(&body)?,
                        updated_at_us,
                    ))
                })
                .collect()
            })
        })
        .await
    }
}

#[async_trait]
impl ItemScanner for EmbeddedStore {
    async fn scan(
        &self,
        segment: u32,
        segments: u32,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<ScanPage, SourceError> {
        let items = self
            .scan_items(segment, segments, after.cloned(), limit.max(1))
            .await
            .map_err(|e| SourceError::Transient(e.to_string()))?;
        let shard_count = self.shard_count();
        let last = items.last().map(|(k, ..)| k.clone());
        let records = items
            .into_iter()
            .map(|(key, version, body, updated_at_us)| ChangeRecord {
                shard: ShardId(key.shard_index(shard_count).to_string()),
                position: Position(version.0.to_string()),
                kind: ChangeKind::Insert,
                version,
                old_image: None,
                new_image: Some(Image { version, body }),
                committed_at_us: updated_at_us,
                key,
            })
            .collect::<Vec<_>>();
        Ok(ScanPage {
            next: if records.len() < limit.max(1) {
                None
            } else {
                last
            },
            records,
        })
    }

    /// Segment `s` of `shard_count` is shard `s`: both are the partition-key hash modulo
    /// the count.
    fn segments_follow_shards(&self) -> bool {
        true
    }

    fn scan_segments(&self) -> u32 {
        self.shard_count()
    }

    async fn approximate_item_count(&self) -> Result<Option<u64>, SourceError> {
        self.item_count()
            .await
            .map(Some)
            .map_err(|e| SourceError::Transient(e.to_string()))
    }
}

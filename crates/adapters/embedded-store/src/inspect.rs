//! Read helpers for reconciling a consumer's sink with the primary: every item's key and
//! version streamed through a fold (one read transaction, nothing kept unless the caller
//! keeps it), versions of a few keys at once, the newest change of a key after a
//! checkpoint, and the newest sequence number ever assigned.

use crate::primary::{blocking, EmbeddedStore};
use crate::StoreError;
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;
use tsunagu_domain::{ChangeKind, ItemKey, Version};

impl EmbeddedStore {
    /// Calls `f(&mut state, key, version)` for every item, in key order, within one read
    /// transaction (a consistent snapshot of the primary, taken when the scan starts), and
    /// returns the state. The key passed to `f` is reused between calls: clone it to keep
    /// it. Memory stays flat whatever the item count.
    pub async fn fold_versions<S, F>(&self, init: S, mut f: F) -> Result<S, StoreError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &ItemKey, Version) + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                let mut state = init;
                let mut stmt = conn.prepare_cached("SELECT partition, sort, version FROM items")?;
                let mut rows = stmt.query([])?;
                let mut key = ItemKey::new(String::new(), String::new());
                while let Some(row) = rows.next()? {
                    let text = |i: usize| {
                        row.get_ref(i)?
                            .as_str()
                            .map_err(|e| StoreError::Corrupt(format!("item key column {i}: {e}")))
                    };
                    key.partition.clear();
                    key.partition.push_str(text(0)?);
                    key.sort.clear();
                    key.sort.push_str(text(1)?);
                    let version: i64 = row.get(2)?;
                    f(&mut state, &key, Version(version as u64));
                }
                Ok(state)
            })
        })
        .await
    }

    /// The current version of each key (`None`: no such item), in one read transaction,
    /// without reading bodies.
    pub async fn versions_of(
        &self,
        keys: Vec<ItemKey>,
    ) -> Result<Vec<Option<Version>>, StoreError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                let tx = conn.unchecked_transaction()?;
                let out = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT version FROM items WHERE partition = ?1 AND sort = ?2",
                    )?;
                    keys.iter()
                        .map(|key| {
                            Ok(stmt
                                .query_row(params![key.partition, key.sort], |r| r.get::<_, i64>(0))
                                .optional()?
                                .map(|v| Version(v as u64)))
                        })
                        .collect::<Result<Vec<_>, StoreError>>()?
                };
                tx.finish()?;
                Ok(out)
            })
        })
        .await
    }

    /// The newest change of `key` in its shard with a sequence number above `after_seq`
    /// (a consumer's checkpoint), if the stream still holds one: its sequence number and
    /// kind.
    pub async fn newest_change_after(
        &self,
        key: &ItemKey,
        after_seq: u64,
    ) -> Result<Option<(u64, ChangeKind)>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let shard = key.shard_index(self.shard_count());
        let key = key.clone();
        blocking(move || {
            shared.reads.with(|conn| {
                let found: Option<(i64, String)> = conn
                    .prepare_cached(
                        "SELECT seq, kind FROM changes
                         WHERE shard = ?1 AND seq > ?2 AND partition = ?3 AND sort = ?4
                         ORDER BY seq DESC LIMIT 1",
                    )?
                    .query_row(
                        params![shard, after_seq as i64, key.partition, key.sort],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                found
                    .map(|(seq, kind)| {
                        ChangeKind::parse(&kind)
                            .map(|k| (seq as u64, k))
                            .ok_or_else(|| {
                                StoreError::Corrupt(format!("change {seq} has kind {kind:?}"))
                            })
                    })
                    .transpose()
            })
        })
        .await
    }

    /// The newest change record of shard `shard` with a sequence number of at most `seq`
    /// still in the stream: what a reader must have applied to show everything committed
    /// up to `seq` in that shard.
    pub async fn newest_seq_at_most(
        &self,
        shard: u32,
        seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                let newest: Option<i64> = conn
                    .prepare_cached("SELECT MAX(seq) FROM changes WHERE shard = ?1 AND seq <= ?2")?
                    .query_row(params![shard, seq as i64], |r| r.get(0))?;
                Ok(newest.map(|s| s as u64))
            })
        })
        .await
    }

    /// The newest sequence number ever assigned (trimmed records included; 0 for a new
    /// store). Every later change, of any item, gets a bigger one.
    pub async fn newest_seq(&self) -> Result<u64, StoreError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                let in_table: i64 =
                    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                        r.get(0)
                    })?;
                // AUTOINCREMENT remembers the largest number ever handed out, even once
                // every record is trimmed.
                let ever: Option<i64> = conn
                    .query_row(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(in_table.max(ever.unwrap_or(0)).max(0) as u64)
            })
        })
        .await
    }
}

/// The store as one side of a drift comparison ([`tsunagu_engine::drift`]): every item's
/// version read in one read transaction.
#[async_trait::async_trait]
impl tsunagu_engine::drift::VersionDigest for EmbeddedStore {
    async fn approximate_items(&self) -> Result<u64, tsunagu_engine::drift::ReadError> {
        self.item_count().await.map_err(read_error)
    }

    async fn digest(
        &self,
        leaf_bits: u32,
    ) -> Result<tsunagu_engine::drift::tree::HashTree, tsunagu_engine::drift::ReadError> {
        self.fold_versions(
            tsunagu_engine::drift::tree::HashTree::new(leaf_bits),
            |tree, key, version| tree.add(key.stable_hash(), version.0),
        )
        .await
        .map_err(read_error)
    }

    async fn live_in(
        &self,
        leaves: &tsunagu_engine::drift::tree::LeafSet,
    ) -> Result<Vec<(ItemKey, Version)>, tsunagu_engine::drift::ReadError> {
        let leaves = leaves.clone();
        self.fold_versions(Vec::new(), move |found, key, version| {
            if leaves.contains(key.stable_hash()) {
                found.push((key.clone(), version));
            }
        })
        .await
        .map_err(read_error)
    }

    /// Live items only: a deletion is not looked up here (the change table has no index
    /// by key); drift detection asks the stream for pending changes of a key instead
    /// ([`tsunagu_engine::ports::ChangeSource::has_change_after`]).
    async fn held(
        &self,
        keys: &[ItemKey],
    ) -> Result<Vec<Option<tsunagu_engine::drift::Held>>, tsunagu_engine::drift::ReadError> {
        Ok(self
            .versions_of(keys.to_vec())
            .await
            .map_err(read_error)?
            .into_iter()
            .map(|v| v.map(tsunagu_engine::drift::Held::Live))
            .collect())
    }
}

#[async_trait::async_trait]
impl tsunagu_engine::drift::PrimaryDigest for EmbeddedStore {
    async fn current(
        &self,
        key: &ItemKey,
    ) -> Result<Option<tsunagu_engine::ports::StoredItem>, tsunagu_engine::drift::ReadError> {
        self.get(key).await.map_err(read_error)
    }

    /// Versions are sequence numbers: the newest one ever handed out is older than any
    /// later change's.
    async fn fresh_version(&self) -> Result<Version, tsunagu_engine::drift::ReadError> {
        self.newest_seq().await.map(Version).map_err(read_error)
    }
}

fn read_error(error: StoreError) -> tsunagu_engine::drift::ReadError {
    tsunagu_engine::drift::ReadError(format!("embedded store: {error}"))
}

//! Items, versions and group-committed writes.
//!
//! One writer thread owns the write connection. Callers hand it their writes over a
//! bounded channel; it takes every write already waiting (up to `max_group_writes`),
//! applies them in one transaction and answers each caller on its own. At low rates each
//! write commits alone; at high rates one fsync serves hundreds of writes.
//!
//! An item's version is the sequence number of the change record that produced it, so it
//! strictly increases on every change of the item (a delete included) and never restarts
//! when an item is deleted and created again.

use crate::sqlite::{
    check_schema_version, init_schema, open_creating, open_read_only, ReadPool, PRIMARY_SCHEMA,
};
use crate::{now_us, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tsunagu_domain::{ChangeKind, ItemKey, Position, Version};
pub use tsunagu_engine::ports::{Condition, StoredItem, WriteOp, WriteOutcome};

/// Settings of an embedded store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Shards of the change stream. Fixed when the store is created.
    pub shard_count: u32,
    /// How long change records are kept before they are trimmed.
    pub retention: Duration,
    /// The most writes one transaction takes from the queue.
    pub max_group_writes: usize,
    /// How often an idle reader looks for records written by another process.
    pub external_poll_interval: Duration,
    /// How often the writer trims expired change records.
    pub trim_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            shard_count: 4,
            retention: Duration::from_secs(24 * 3600),
            max_group_writes: 2_000,
            external_poll_interval: Duration::from_millis(20),
            trim_interval: Duration::from_secs(60),
        }
    }
}

/// WAL pages after which the writer's commit checkpoints (≈ 40 MB with 4 KiB pages).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

type GroupReply = oneshot::Sender<Result<Vec<Result<WriteOutcome, StoreError>>, StoreError>>;

/// A write as the writer thread takes it: bodies already encoded by the caller, so the one
/// writer thread spends its time in SQLite, not in JSON.
enum Prepared {
    Put {
        key: ItemKey,
        text: String,
        condition: Condition,
    },
    Delete {
        key: ItemKey,
        condition: Condition,
    },
}

impl Prepared {
    fn from_op(op: WriteOp) -> Self {
        match op {
            WriteOp::Put {
                key,
                body,
                condition,
            } => Prepared::Put {
                key,
                text: tsunagu_domain::item::body_text(&body),
                condition,
            },
            WriteOp::Delete { key, condition } => Prepared::Delete { key, condition },
        }
    }

    fn key(&self) -> &ItemKey {
        match self {
            Prepared::Put { key, .. } | Prepared::Delete { key, .. } => key,
        }
    }
}

enum Request {
    Write(Vec<Prepared>, GroupReply),
    Trim(oneshot::Sender<Result<u64, StoreError>>),
}

pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    pub(crate) options: StoreOptions,
    pub(crate) reads: ReadPool,
    /// The newest sequence number committed by this process's writer.
    pub(crate) committed: watch::Sender<i64>,
    requests: Mutex<Option<mpsc::SyncSender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Opened with [`EmbeddedStore::open_read_only`]: no writer, ever.
    read_only: bool,
}

/// The embedded primary store. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct EmbeddedStore {
    pub(crate) shared: Arc<Shared>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        if options.shard_count == 0 {
            return Err(StoreError::Failed("shard_count must be at least 1".into()));
        }
        let conn = open_creating(path)?;
        // The writer checkpoints the WAL into the database less often than SQLite's default
        // (every 1,000 pages): hot pages (the items, the newest change records) are then
        // copied once per checkpoint instead of many times.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        init_schema(&conn, PRIMARY_SCHEMA, path)?;
        check_shard_count(&conn, path, options.shard_count)?;
        let last_seq = last_seq(&conn)?;
        let (committed, _) = watch::channel(last_seq);
        let (tx, rx) = mpsc::sync_channel(4_096);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            reads: ReadPool::new(path),
            committed,
            requests: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            read_only: false,
            options,
        });
        let writer_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("tsunagu-store-writer".into())
            .spawn(move || writer_loop(conn, rx, &writer_shared))
            .map_err(|e| StoreError::Failed(format!("cannot start the writer thread: {e}")))?;
        if let Ok(mut w) = shared.writer.lock() {
            *w = Some(handle);
        }
        Ok(Self { shared })
    }

    /// Opens the existing store file at `path` **read-only** (see
    /// [`crate::sqlite::open_read_only`]): reads, scans and the change stream work, nothing
    /// is created or written, and there is no writer thread, so writes fail with
    /// [`StoreError::ReadOnly`]. For commands that only read (`tsunagu status`,
    /// `reconcile` without `--repair`), also on a data directory they cannot write. The
    /// shard count is the file's.
    pub fn open_read_only(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let conn = open_read_only(path)?;
        check_schema_version(&conn, path)?;
        let shard_count = read_shard_count(&conn)?.ok_or_else(|| StoreError::Unreadable {
            path: path.display().to_string(),
            message: "no shard count recorded".into(),
        })?;
        let last_seq = last_seq(&conn)?;
        let (committed, _) = watch::channel(last_seq);
        Ok(Self {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                reads: ReadPool::read_only(path),
                committed,
                requests: Mutex::new(None),
                writer: Mutex::new(None),
                read_only: true,
                options: StoreOptions {
                    shard_count,
                    ..options
                },
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn shard_count(&self) -> u32 {
        self.shared.options.shard_count
    }

    /// Applies one write (group-committed with whatever else is waiting).
    pub async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        self.write_many(vec![op])
            .await?
            .pop()
            .ok_or(StoreError::Closed)?
    }

    /// Applies several writes in one transaction, each with its own result: a write whose
    /// condition fails is skipped and reported, the others still commit.
    pub async fn write_many(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        for op in &ops {
            validate_op(op)?;
        }
        let (reply, answer) = oneshot::channel();
        let ops: Vec<Prepared> = ops.into_iter().map(Prepared::from_op).collect();
        self.submit(Request::Write(ops, reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn put(
        &self,
        key: ItemKey,
        body: serde_json::Value,
        condition: Condition,
    ) -> Result<WriteOutcome, StoreError> {
        self.write(WriteOp::Put {
            key,
            body,
            condition,
        })
        .await
    }

    pub async fn delete(
        &self,
        key: ItemKey,
        condition: Condition,
    ) -> Result<WriteOutcome, StoreError> {
        self.write(WriteOp::Delete { key, condition }).await
    }

    /// Reads one item.
    pub async fn get(&self, key: &ItemKey) -> Result<Option<StoredItem>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let key = key.clone();
        blocking(move || {
            shared.reads.with(|conn| {
                conn.prepare_cached(
                    "SELECT version, body FROM items WHERE partition = ?1 AND sort = ?2",
                )?
                .query_row(params![key.partition, key.sort], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
                .map(|(version, body)| {
                    Ok(StoredItem {
                        version: Version(version as u64),
                        body: parse_body(&body)?,
                        key,
                    })
                })
                .transpose()
            })
        })
        .await
    }

    /// Every item's key and version, in key order (for correctness checks and
    /// reconciliation).
    pub async fn versions(&self) -> Result<Vec<(ItemKey, Version)>, StoreError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT partition, sort, version FROM items ORDER BY partition, sort",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        ItemKey::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                        Version(r.get::<_, i64>(2)? as u64),
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
        })
        .await
    }

    /// Number of items stored.
    pub async fn item_count(&self) -> Result<u64, StoreError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.reads.with(|conn| {
                Ok(
                    conn.query_row("SELECT COUNT(*) FROM items", [], |r| r.get::<_, i64>(0))?
                        as u64,
                )
            })
        })
        .await
    }

    /// Removes change records older than the retention now (the writer also does it on
    /// its own every `trim_interval`). Returns how many were removed.
    pub async fn trim_expired(&self) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Trim(reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Hands a request to the writer thread. A full queue is the store's back-pressure:
    /// then the caller waits for room, off the async worker threads.
    async fn submit(&self, request: Request) -> Result<(), StoreError> {
        let sender = self
            .shared
            .requests
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(if self.shared.read_only {
                StoreError::ReadOnly
            } else {
                StoreError::Closed
            })?;
        match sender.try_send(request) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(request)) => {
                tokio::task::spawn_blocking(move || sender.send(request))
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Closed)
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }

    /// Stops the writer after the writes already queued; later writes fail with `Closed`.
    pub fn close(&self) {
        if let Ok(mut requests) = self.shared.requests.lock() {
            requests.take();
        }
        let handle = self.shared.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.take();
        }
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Closed)?
}

pub(crate) fn parse_body(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("item body is not JSON: {e}")))
}

fn validate_op(op: &WriteOp) -> Result<(), StoreError> {
    let key = op.key();
    if key.partition.is_empty() || key.sort.is_empty() {
        return Err(StoreError::Invalid(format!(
            "partition and sort keys must not be empty (got {key})"
        )));
    }
    if let WriteOp::Put { body, .. } = op {
        if !body.is_object() {
            return Err(StoreError::Invalid(format!(
                "the body of {key} must be a JSON object"
            )));
        }
    }
    Ok(())
}

fn check_shard_count(conn: &Connection, path: &Path, requested: u32) -> Result<(), StoreError> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'shard_count'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('shard_count', ?1)",
                [requested.to_string()],
            )?;
            Ok(())
        }
        Some(text) => {
            let existing: u32 = text
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("shard_count {text:?} in meta")))?;
            if existing == requested {
                Ok(())
            } else {
                Err(StoreError::ShardCountMismatch {
                    path: path.display().to_string(),
                    existing,
                    requested,
                })
            }
        }
    }
}

/// The shard count recorded in an existing store file, if any (so that readers can open a
/// store without knowing its configuration).
pub fn recorded_shard_count(path: &Path) -> Result<Option<u32>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    read_shard_count(&open_read_only(path)?)
}

fn read_shard_count(conn: &Connection) -> Result<Option<u32>, StoreError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'shard_count'",
            [],
            |r| r.get(0),
        )
        .optional()
        .or_else(|e| match e {
            rusqlite::Error::SqliteFailure(_, _) => Ok(None),
            other => Err(other),
        })?;
    text.map(|t| {
        t.parse()
            .map_err(|_| StoreError::Corrupt(format!("shard_count {t:?} in meta")))
    })
    .transpose()
}

fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })?,
    )
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Request>, shared: &Shared) {
    let mut next_trim = Instant::now() + shared.options.trim_interval;
    loop {
        let first = match rx.recv_timeout(next_trim.saturating_duration_since(Instant::now())) {
            Ok(request) => Some(request),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut group: Vec<(Vec<Prepared>, GroupReply)> = Vec::new();
        let mut ops_in_group = 0;
        let mut pending = first;
        while let Some(request) = pending.take() {
            match request {
                Request::Write(ops, reply) => {
                    ops_in_group += ops.len();
                    group.push((ops, reply));
                }
                Request::Trim(reply) => {
                    let _ = reply.send(trim(&mut conn, &shared.options));
                }
            }
            if ops_in_group < shared.options.max_group_writes {
                pending = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            commit_group(&mut conn, group, shared);
        }
        if Instant::now() >= next_trim {
            if let Err(error) = trim(&mut conn, &shared.options) {
                tracing::warn!(%error, "trimming expired change records failed");
            }
            next_trim = Instant::now() + shared.options.trim_interval;
        }
    }
}

/// The result of each write of a request.
type WriteResults = Vec<Result<WriteOutcome, StoreError>>;

fn commit_group(conn: &mut Connection, group: Vec<(Vec<Prepared>, GroupReply)>, shared: &Shared) {
    let shard_count = shared.options.shard_count;
    let requests: Vec<&[Prepared]> = group.iter().map(|(ops, _)| ops.as_slice()).collect();
    match apply_group(conn, &requests, shard_count) {
        Ok((outcomes, last_seq)) => {
            if let Some(seq) = last_seq {
                shared.committed.send_replace(seq);
            }
            for ((_, reply), results) in group.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(results));
            }
        }
        Err(error) => {
            tracing::error!(%error, requests = group.len(), "group commit failed; rolled back");
            let message = error.to_string();
            for (_, reply) in group {
                let _ = reply.send(Err(StoreError::Failed(format!(
                    "the write was rolled back: {message}"
                ))));
            }
        }
    }
}

/// Applies every request's writes in one transaction; returns each write's result and
/// the newest sequence number appended, if any.
fn apply_group(
    conn: &mut Connection,
    requests: &[&[Prepared]],
    shard_count: u32,
) -> Result<(Vec<WriteResults>, Option<i64>), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // One timestamp for the whole group, taken inside the transaction: the changes become
    // visible a moment later, so lag measured from it is never understated.
    let committed_at_us = now_us();
    let mut last_seq = None;
    let mut outcomes = Vec::with_capacity(requests.len());
    for ops in requests {
        let mut results = Vec::with_capacity(ops.len());
        for op in ops.iter() {
            let (outcome, seq) = match apply_op(&tx, op, shard_count, committed_at_us)? {
                Ok((outcome, seq)) => (Ok(outcome), seq),
                Err(conflict) => (Err(conflict), None),
            };
            last_seq = seq.or(last_seq);
            results.push(outcome);
        }
        outcomes.push(results);
    }
    tx.commit()?;
    Ok((outcomes, last_seq))
}

/// Applies one write inside the group's transaction. A failed condition is returned as
/// the write's own result (`Ok(Err(..))` in spirit): only SQLite errors abort the group.
fn apply_op(
    tx: &rusqlite::Transaction<'_>,
    op: &Prepared,
    shard_count: u32,
    committed_at_us: i64,
) -> Result<Result<(WriteOutcome, Option<i64>), StoreError>, StoreError> {
    let key = op.key();
    let current: Option<(i64, String)> = tx
        .prepare_cached("SELECT version, body FROM items WHERE partition = ?1 AND sort = ?2")?
        .query_row(params![key.partition, key.sort], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let condition = match op {
        Prepared::Put { condition, .. } | Prepared::Delete { condition, .. } => *condition,
    };
    let found = current.as_ref().map(|(v, _)| Version(*v as u64));
    let holds = match condition {
        Condition::None => true,
        Condition::NotExists => found.is_none(),
        Condition::Exists => found.is_some(),
        Condition::VersionIs(v) => found == Some(v),
    };
    if !holds {
        let expected = match condition {
            Condition::NotExists => "no item".to_string(),
            Condition::Exists => "an existing item".to_string(),
            Condition::VersionIs(v) => format!("version {v}"),
            Condition::None => unreachable!("Condition::None always holds"),
        };
        return Ok(Err(StoreError::Conflict {
            key: key.clone(),
            expected,
            found,
        }));
    }
    let unchanged = |version: Option<Version>| {
        (
            WriteOutcome {
                change: None,
                version,
                position: None,
                committed_at_us,
            },
            None,
        )
    };
    let shard = key.shard_index(shard_count);
    match op {
        Prepared::Put { text, .. } => {
            if let Some((_, old_body)) = &current {
                if same_json(old_body, text) {
                    return Ok(Ok(unchanged(found)));
                }
            }
            let kind = if current.is_some() {
                ChangeKind::Modify
            } else {
                ChangeKind::Insert
            };
            tx.prepare_cached(
                "INSERT INTO changes (shard, partition, sort, kind, old_version, old_body, new_body, committed_at_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                shard,
                key.partition,
                key.sort,
                kind.as_str(),
                current.as_ref().map(|(v, _)| *v),
                current.as_ref().map(|(_, b)| b.as_str()),
                text,
                committed_at_us
            ])?;
            let seq = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO items (partition, sort, version, body, updated_at_us) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (partition, sort) DO UPDATE SET version = excluded.version, body = excluded.body, updated_at_us = excluded.updated_at_us",
            )?
            .execute(params![key.partition, key.sort, seq, text, committed_at_us])?;
            Ok(Ok((
                WriteOutcome {
                    change: Some(kind),
                    version: Some(Version(seq as u64)),
                    position: Some(Position(seq.to_string())),
                    committed_at_us,
                },
                Some(seq),
            )))
        }
        Prepared::Delete { .. } => {
            let Some((old_version, old_body)) = current else {
                return Ok(Ok(unchanged(None)));
            };
            tx.prepare_cached(
                "INSERT INTO changes (shard, partition, sort, kind, old_version, old_body, new_body, committed_at_us)
                 VALUES (?1, ?2, ?3, 'REMOVE', ?4, ?5, NULL, ?6)",
            )?
            .execute(params![
                shard,
                key.partition,
                key.sort,
                old_version,
                old_body,
                committed_at_us
            ])?;
            let seq = tx.last_insert_rowid();
            tx.prepare_cached("DELETE FROM items WHERE partition = ?1 AND sort = ?2")?
                .execute(params![key.partition, key.sort])?;
            Ok(Ok((
                WriteOutcome {
                    change: Some(ChangeKind::Remove),
                    // A deletion's version is its change record's sequence.
                    version: Some(Version(seq as u64)),
                    position: Some(Position(seq.to_string())),
                    committed_at_us,
                },
                Some(seq),
            )))
        }
    }
}

/// Whether two encoded bodies hold the same JSON. Equal text is the common case; JSON
/// with the same members in another order has the same length, so only then is it worth
/// parsing both.
fn same_json(a: &str, b: &str) -> bool {
    a == b
        || (a.len() == b.len()
            && serde_json::from_str::<serde_json::Value>(a)
                .ok()
                .zip(serde_json::from_str::<serde_json::Value>(b).ok())
                .is_some_and(|(a, b)| a == b))
}

/// Deletes change records older than the retention, oldest first, in chunks so that
/// writers are never held up for long, and remembers per shard how far it went.
fn trim(conn: &mut Connection, options: &StoreOptions) -> Result<u64, StoreError> {
    const CHUNK: usize = 5_000;
    let cutoff = now_us() - options.retention.as_micros() as i64;
    let mut removed = 0u64;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<(i64, i64, i64)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, shard, committed_at_us FROM changes ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let expired: Vec<_> = rows.iter().take_while(|(_, _, at)| *at < cutoff).collect();
        let Some(&&(through, _, _)) = expired.last() else {
            break;
        };
        let mut per_shard = std::collections::BTreeMap::new();
        for &&(seq, shard, _) in &expired {
            per_shard.insert(shard, seq);
        }
        for (shard, seq) in per_shard {
            tx.prepare_cached(
                "INSERT INTO trims (shard, through_seq) VALUES (?1, ?2)
                 ON CONFLICT (shard) DO UPDATE SET through_seq = MAX(through_seq, excluded.through_seq)",
            )?
            .execute(params![shard, seq])?;
        }
        removed += tx
            .prepare_cached("DELETE FROM changes WHERE seq <= ?1")?
            .execute([through])? as u64;
        tx.commit()?;
        if expired.len() < rows.len() || rows.len() < CHUNK {
            break;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "trimmed expired change records");
    }
    Ok(removed)
}

impl From<StoreError> for tsunagu_engine::ports::ItemStoreError {
    fn from(error: StoreError) -> Self {
        use tsunagu_engine::ports::ItemStoreError as E;
        match error {
            StoreError::Conflict {
                key,
                expected,
                found,
            } => E::Conflict {
                key,
                expected,
                found,
            },
            StoreError::Invalid(message) => E::Invalid(message),
            StoreError::Closed => E::Unavailable(error.to_string()),
            other => E::Failed(other.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl tsunagu_engine::ports::ItemStore for EmbeddedStore {
    async fn write(
        &self,
        op: WriteOp,
    ) -> Result<WriteOutcome, tsunagu_engine::ports::ItemStoreError> {
        Ok(EmbeddedStore::write(self, op).await?)
    }

    async fn write_many(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<
        Vec<Result<WriteOutcome, tsunagu_engine::ports::ItemStoreError>>,
        tsunagu_engine::ports::ItemStoreError,
    > {
        Ok(EmbeddedStore::write_many(self, ops)
            .await?
            .into_iter()
            .map(|r| r.map_err(Into::into))
            .collect())
    }

    async fn get(
        &self,
        key: &ItemKey,
    ) -> Result<Option<StoredItem>, tsunagu_engine::ports::ItemStoreError> {
        Ok(EmbeddedStore::get(self, key).await?)
    }
}

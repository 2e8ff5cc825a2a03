//! Opening the index: [`ActivityIndex`] (the writer, which is the engine's `Sink`) and
//! [`ActivityIndexReader`] (read-only, for another process such as the CLI's `search`
//! while `replicate` runs). Both query through the same internal `IndexView`.

use crate::durability::{run_syncer, DeferredSyncDirectory, Marks, SyncRequest};
use crate::error::IndexError;
use crate::leftovers::remove_leftovers;
use crate::morphology::{Dictionary, JaWordBigramTokenizer, JaWordsTokenizer};
use crate::query::{ActivityQuery, Bucket, GroupBy, SearchPage, TimeZone};
use crate::records::{LatestActivity, RecordPage, RecordQuery};
use crate::schema::{
    build_schema, names, parse_doc_key, Fields, WordTokenizers, KIND_ACTIVITY, KIND_COMPANY,
    KIND_DEAL, KIND_SALES_LIST, KIND_TOMBSTONE,
};
use crate::tokenizer::{JaBigramTokenizer, JA_TOKENIZER_NAME};
use crate::writer::{now_us, prepare, Held, Request, VersionMap, WriterThread};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tantivy::collector::TopDocs;
use tantivy::directory::error::LockError;
use tantivy::directory::MmapDirectory;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, TantivyError, Term,
};
use tokio::sync::{mpsc, oneshot};
use tsunagu_domain::{ActivityLog, ChangeRecord, Entity, ItemKey, Version};
use tsunagu_engine::ports::{Sink, SinkError};

/// How many `apply` calls may wait for the writer thread before callers are held back.
const REQUEST_QUEUE: usize = 1024;

/// Tantivy refuses less than this per indexing thread; more threads than the budget
/// allows would fail to open.
const MIN_MEMORY_PER_THREAD: usize = 20 << 20;

/// The default least time between two commits, in milliseconds.
pub const DEFAULT_REFRESH_INTERVAL_MS: u64 = 0;

/// The default interval between two durable points, in milliseconds.
pub const DEFAULT_DURABILITY_INTERVAL_MS: u64 = 1_000;

/// How the writer is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// Memory tantivy may use to buffer documents before flushing a segment, shared by its
    /// indexing threads (at least 20 MiB each; one thread per 2 cores at most).
    pub writer_memory_bytes: usize,
    /// How long a deletion's tombstone is kept. A change older than this replayed after
    /// the tombstone is gone could bring the item back, so keep it longer than the change
    /// stream's retention.
    pub tombstone_retention: Duration,
    /// The least time between two commits. Requests arriving meanwhile are applied in the
    /// next commit: a little latency under load buys bigger segments and fewer merges.
    /// Zero commits each group at once.
    pub refresh_interval: Duration,
    /// How often commits are made durable (fsynced). Commits are searchable at once;
    /// the engine checkpoints only durable ones, so a crash replays at most this much.
    pub durability_interval: Duration,
    /// A Japanese dictionary for the memo's words fields (see [`crate::morphology`]);
    /// `None` analyzes memos with character bigrams only.
    pub dictionary: Option<Arc<Dictionary>>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            writer_memory_bytes: 64 << 20,
            tombstone_retention: Duration::from_secs(7 * 24 * 3600),
            refresh_interval: Duration::from_millis(DEFAULT_REFRESH_INTERVAL_MS),
            durability_interval: Duration::from_millis(DEFAULT_DURABILITY_INTERVAL_MS),
            dictionary: None,
        }
    }
}

/// The index of activity logs in a directory, open for writing. It holds tantivy's writer
/// lock and runs one writer thread; it implements [`Sink`].
///
/// Dropping it stops the writer thread after in-flight work (and blocks until then);
/// prefer [`ActivityIndex::close`] in async code.
pub struct ActivityIndex {
    view: IndexView,
    pub(crate) requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    pub(crate) marks: std::sync::Arc<Marks>,
    /// Asks the syncer for a durable point now; dropping it makes the syncer do a last
    /// one and exit.
    sync_requests: Option<std::sync::mpsc::Sender<SyncRequest>>,
    syncer: Option<JoinHandle<()>>,
    #[cfg(test)]
    pub(crate) hooks: std::sync::Arc<crate::writer::TestHooks>,
}

/// The index opened read-only: no writer lock, and every query first reloads so it sees
/// the latest commit of the writer (in this or another process).
pub struct ActivityIndexReader {
    view: IndexView,
}

/// What both handles query: the index, a reader and the fields.
pub(crate) struct IndexView {
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    /// Read-only handles reload before every query; the writer handle's reader is reloaded
    /// by the writer thread after each commit.
    reload_before_query: bool,
    /// The dictionary of the words fields, when the index has them.
    pub(crate) dictionary: Option<Arc<Dictionary>>,
}

/// How many segments of one size the writer merges at once. Tantivy's default is 8;
/// merging more at once merges each document fewer times while the index grows. Measured
/// on 2026-12-07 (docs/benchmarks.md, issue 20): `bench limits` pipeline +14 % and index
/// alone +15 % (medians of five interleaved pairs), search p99 over 1M activities 6.96 →
/// 7.43 ms (one run each, within this machine's noise).
pub const MERGE_MIN_SEGMENTS: usize = 32;

/// The writer's merge policy: Tantivy's log merge policy, merging
/// [`MERGE_MIN_SEGMENTS`] segments of a size at once.
fn merge_policy() -> tantivy::indexer::LogMergePolicy {
    let mut policy = tantivy::indexer::LogMergePolicy::default();
    policy.set_min_num_segments(MERGE_MIN_SEGMENTS);
    policy
}

impl ActivityIndex {
    /// Creates the index in `dir` (creating the directory) or opens the one there, for
    /// writing. Loads the version of every document and tombstone into memory for the
    /// version guard.
    pub fn open(dir: &Path, options: IndexOptions) -> Result<Self, IndexError> {
        let started = Instant::now();
        std::fs::create_dir_all(dir)
            .map_err(IndexError::io(format!("creating {}", dir.display())))?;
        let directory = DeferredSyncDirectory::open(dir).map_err(|source| IndexError::Io {
            context: format!("opening {}", dir.display()),
            source,
        })?;
        let words = options.dictionary.as_deref().map(WordTokenizers::of);
        let index = Index::open_or_create(directory.clone(), build_schema(words.as_ref()))
            .map_err(|e| match e {
                TantivyError::SchemaError(message) => IndexError::SchemaMismatch {
                    dir: dir.to_path_buf(),
                    // Name what differs when it is the dictionary.
                    message: Index::open(directory.clone())
                        .ok()
                        .and_then(|old| Fields::from_schema(&old.schema(), words.as_ref()).err())
                        .unwrap_or(message),
                },
                source => IndexError::Tantivy {
                    context: format!("opening the index at {}", dir.display()),
                    source,
                },
            })?;
        // A new index's first meta.json goes to disk at once, so that other processes
        // find an index there.
        directory.sync().map_err(|source| IndexError::Io {
            context: format!("making {} durable", dir.display()),
            source,
        })?;
        let threads = writer_threads(options.writer_memory_bytes)?;
        let (index, fields) = prepare_index(index, dir, options.dictionary.as_ref())?;
        let writer = index
            .writer_with_num_threads(threads, options.writer_memory_bytes)
            .map_err(|e| match e {
                TantivyError::LockFailure(LockError::LockBusy, _) => IndexError::Locked {
                    dir: dir.to_path_buf(),
                },
                source => IndexError::Tantivy {
                    context: format!("opening the index writer at {}", dir.display()),
                    source,
                },
            })?;
        writer.set_merge_policy(Box::new(merge_policy()));
        // The writer lock is ours: no other writer creates files now.
        let metas = index
            .searchable_segment_metas()
            .map_err(|source| IndexError::Tantivy {
                context: format!("reading the segments of {}", dir.display()),
                source,
            })?;
        let removed = remove_leftovers(dir, &metas).map_err(IndexError::io(format!(
            "removing the files a stopped process left in {}",
            dir.display()
        )))?;
        if !removed.is_empty() {
            tracing::info!(
                dir = %dir.display(),
                files = removed.len(),
                "removed segment files a stopped process left behind (past the last durable point)"
            );
        }
        let reader = manual_reader(&index)?;
        let versions = load_versions(&reader.searcher())?;
        tracing::info!(
            dir = %dir.display(),
            items = versions.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "activity index open"
        );

        #[cfg(test)]
        let hooks = std::sync::Arc::new(crate::writer::TestHooks::default());
        let marks = std::sync::Arc::new(Marks::default());
        let state = WriterThread {
            marks: std::sync::Arc::clone(&marks),
            refresh_interval: options.refresh_interval,
            last_commit: None,
            writer,
            reader: reader.clone(),
            fields,
            versions,
            tombstone_retention: options.tombstone_retention,
            last_purge: None,
            needs_reload: false,
            readers_opened_at_move: 0,
            #[cfg(test)]
            hooks: hooks.clone(),
        };
        let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
        let thread = std::thread::Builder::new()
            .name("tsunagu-index-writer".into())
            .spawn(move || state.run(rx))
            .map_err(IndexError::io("starting the index writer thread"))?;
        let (sync_requests, sync_rx) = std::sync::mpsc::channel::<SyncRequest>();
        let syncer = {
            let marks = std::sync::Arc::clone(&marks);
            let interval = options.durability_interval.max(Duration::from_millis(1));
            std::thread::Builder::new()
                .name("tsunagu-index-syncer".into())
                .spawn(move || run_syncer(directory, marks, interval, sync_rx))
                .map_err(IndexError::io("starting the index syncer thread"))?
        };
        Ok(Self {
            marks,
            sync_requests: Some(sync_requests),
            syncer: Some(syncer),
            view: IndexView {
                reader,
                fields,
                reload_before_query: false,
                dictionary: options.dictionary,
            },
            requests: Some(requests),
            thread: Some(thread),
            #[cfg(test)]
            hooks,
        })
    }

    /// Opens the index in `dir` for reading only (see [`ActivityIndexReader`]).
    pub fn open_read_only(dir: &Path) -> Result<ActivityIndexReader, IndexError> {
        ActivityIndexReader::open(dir)
    }

    /// [`ActivityIndex::open_read_only`] of an index built with `dictionary`.
    pub fn open_read_only_with(
        dir: &Path,
        dictionary: Option<Arc<Dictionary>>,
    ) -> Result<ActivityIndexReader, IndexError> {
        ActivityIndexReader::open_with(dir, dictionary)
    }

    /// Stops the writer thread once the work already queued is done, and waits for it.
    pub async fn close(mut self) {
        self.requests = None;
        let writer = self.thread.take();
        self.sync_requests = None;
        let syncer = self.syncer.take();
        // Joining blocks (the last commit, merges finishing, the last durable point): not
        // on a runtime thread.
        let _ = tokio::task::spawn_blocking(move || join_threads(writer, syncer)).await;
    }

    /// Searches live activities; see [`ActivityQuery`].
    pub fn search(&self, query: &ActivityQuery) -> Result<SearchPage, IndexError> {
        self.view.search(query)
    }

    /// Counts live activities matching `query` per group; see [`GroupBy`]. Days, weeks
    /// and months in UTC.
    pub fn aggregate(&self, query: &ActivityQuery, by: GroupBy) -> Result<Vec<Bucket>, IndexError> {
        self.view.aggregate(query, by, TimeZone::UTC)
    }

    /// Counts live activities matching `query` per group; days, ISO weeks and months in
    /// `zone`.
    pub fn aggregate_in(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
        zone: TimeZone,
    ) -> Result<Vec<Bucket>, IndexError> {
        self.view.aggregate(query, by, zone)
    }

    /// The version of every live activity (tombstones excluded), from the latest commit.
    pub fn live_versions(&self) -> Result<HashMap<ItemKey, Version>, IndexError> {
        self.view.live_versions()
    }

    /// Companies, deals or sales lists; see [`RecordQuery`].
    pub fn search_records(&self, query: &RecordQuery) -> Result<RecordPage, IndexError> {
        self.view.search_records(query)
    }

    /// The ids of every record matching `query` (cursor and limit ignored).
    pub fn record_ids(&self, query: &RecordQuery) -> Result<Vec<String>, IndexError> {
        self.view.record_ids(query)
    }

    /// How many records matching `query` carry each tag, most used first.
    pub fn tag_counts(&self, query: &RecordQuery) -> Result<Vec<(String, u64)>, IndexError> {
        self.view.tag_counts(query)
    }

    /// The deals with at least one activity matching `query`.
    pub fn deals_with_activity(
        &self,
        query: &ActivityQuery,
    ) -> Result<std::collections::HashSet<String>, IndexError> {
        self.view.deals_with_activity(query)
    }

    /// Each deal's latest activity among those matching `query`.
    pub fn latest_activity_per_deal(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashMap<String, LatestActivity>, IndexError> {
        self.view.latest_activity_per_deal(query)
    }

    /// The version this handle sees for `key`, a deletion's tombstone included: a write
    /// of version `v` has been applied once this is at least `v`.
    pub fn held_version(&self, key: &ItemKey) -> Result<Option<Version>, IndexError> {
        self.view.held_version(key)
    }

    /// The live activity at `key` and its version, if any.
    pub fn get(&self, key: &ItemKey) -> Result<Option<(Version, ActivityLog)>, IndexError> {
        self.view.get(key)
    }

    pub(crate) fn view(&self) -> &IndexView {
        &self.view
    }
}

impl Drop for ActivityIndex {
    fn drop(&mut self) {
        // Closing the channel makes the thread finish what is queued and exit.
        self.requests = None;
        let writer = self.thread.take();
        self.sync_requests = None;
        let syncer = self.syncer.take();
        join_threads(writer, syncer);
    }
}

/// Waits for the writer (its last commit), then the syncer (the last durable point,
/// which must follow the last commit).
fn join_threads(writer: Option<JoinHandle<()>>, syncer: Option<JoinHandle<()>>) {
    if writer.is_some_and(|t| t.join().is_err()) {
        tracing::error!("the index writer thread panicked");
    }
    if syncer.is_some_and(|t| t.join().is_err()) {
        tracing::error!("the index syncer thread panicked");
    }
}

#[async_trait]
impl Sink for ActivityIndex {
    /// Applies the batch with the version guard and returns once it is committed and
    /// visible to searches (group-committed with concurrent calls). It becomes durable at
    /// the next durable point (see [`crate::durability`]).
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let stopped = || SinkError::Batch {
            // Retrying is the honest answer: the pipeline stalls loudly (the thread's
            // death is logged) rather than dead-lettering every record while the index is
            // down.
            retryable: true,
            message: "the index writer has stopped; reopen the index".into(),
        };
        let Some(requests) = &self.requests else {
            return Err(stopped());
        };
        let ops = prepare(&self.view.fields, records, now_us());
        let (reply, outcome) = oneshot::channel();
        requests
            .send(Request { ops, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    fn visible_mark(&self) -> u64 {
        self.marks.visible.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn durable_mark(&self) -> u64 {
        self.marks.durable.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A durable point now, covering everything applied before the call.
    async fn flush(&self) -> Result<(), SinkError> {
        let failed = |message: String| SinkError::Batch {
            retryable: true,
            message,
        };
        let Some(requests) = self.sync_requests.clone() else {
            return Err(failed("the index is closed".into()));
        };
        tokio::task::spawn_blocking(move || {
            let (reply, answer) = std::sync::mpsc::channel();
            requests
                .send(reply)
                .map_err(|_| failed("the index syncer has stopped".into()))?;
            answer
                .recv()
                .map_err(|_| failed("the index syncer has stopped".into()))?
                .map_err(|e| failed(format!("making the index durable failed: {e}")))
        })
        .await
        .map_err(|e| failed(e.to_string()))?
    }
}

impl ActivityIndexReader {
    /// Opens the index in `dir` without taking the writer lock. Fails with
    /// [`IndexError::NoIndex`] if there is none.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        Self::open_with(dir, None)
    }

    /// [`ActivityIndexReader::open`] of an index built with `dictionary` (it must be the
    /// one the index was built with, or none if none).
    pub fn open_with(dir: &Path, dictionary: Option<Arc<Dictionary>>) -> Result<Self, IndexError> {
        let no_index = || IndexError::NoIndex {
            dir: dir.to_path_buf(),
        };
        if !dir.is_dir() {
            return Err(no_index());
        }
        let directory = ReaderDirectory(MmapDirectory::open(dir).map_err(|_| no_index())?);
        match Index::exists(&directory) {
            Ok(true) => {}
            Ok(false) => return Err(no_index()),
            Err(e) => {
                return Err(IndexError::Io {
                    context: format!("reading {}", dir.display()),
                    source: std::io::Error::other(e),
                })
            }
        }
        let index = Index::open(directory).map_err(IndexError::tantivy(format!(
            "opening the index at {}",
            dir.display()
        )))?;
        let (index, fields) = prepare_index(index, dir, dictionary.as_ref())?;
        let reader = manual_reader(&index)?;
        Ok(Self {
            view: IndexView {
                reader,
                fields,
                reload_before_query: true,
                dictionary,
            },
        })
    }

    /// Searches live activities; see [`ActivityQuery`].
    pub fn search(&self, query: &ActivityQuery) -> Result<SearchPage, IndexError> {
        self.view.search(query)
    }

    /// Counts live activities matching `query` per group; see [`GroupBy`]. Days, weeks
    /// and months in UTC.
    pub fn aggregate(&self, query: &ActivityQuery, by: GroupBy) -> Result<Vec<Bucket>, IndexError> {
        self.view.aggregate(query, by, TimeZone::UTC)
    }

    /// Counts live activities matching `query` per group; days, ISO weeks and months in
    /// `zone`.
    pub fn aggregate_in(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
        zone: TimeZone,
    ) -> Result<Vec<Bucket>, IndexError> {
        self.view.aggregate(query, by, zone)
    }

    /// The version of every live activity (tombstones excluded), from the latest commit.
    pub fn live_versions(&self) -> Result<HashMap<ItemKey, Version>, IndexError> {
        self.view.live_versions()
    }

    /// The live activity at `key` and its version, if any.
    pub fn get(&self, key: &ItemKey) -> Result<Option<(Version, ActivityLog)>, IndexError> {
        self.view.get(key)
    }

    pub(crate) fn view(&self) -> &IndexView {
        &self.view
    }
}

/// Checks the schema and registers the Japanese analyzer (tokenizers are not persisted in
/// the index; every open must register them before indexing or querying memo text).
fn prepare_index(
    index: Index,
    dir: &Path,
    dictionary: Option<&Arc<Dictionary>>,
) -> Result<(Index, Fields), IndexError> {
    let words = dictionary.map(|d| WordTokenizers::of(d));
    let fields = Fields::from_schema(&index.schema(), words.as_ref()).map_err(|message| {
        IndexError::SchemaMismatch {
            dir: dir.to_path_buf(),
            message,
        }
    })?;
    let tokenizers = index.tokenizers();
    tokenizers.register(JA_TOKENIZER_NAME, JaBigramTokenizer);
    if let (Some(dictionary), Some(words)) = (dictionary, words) {
        tokenizers.register(&words.words, JaWordsTokenizer(Arc::clone(dictionary)));
        tokenizers.register(
            &words.bigrams,
            JaWordBigramTokenizer(Arc::clone(dictionary)),
        );
    }
    Ok((index, fields))
}

/// The directory a reader opens. tantivy's reader takes the meta lock while it loads
/// segments (so that a writer's garbage collection cannot delete them meanwhile), and
/// taking it creates a lock file. A process that may not write the directory (an
/// operator reading a service's index) cannot create one; it reads without the lock,
/// and a segment collected under it fails that one read (the next reload sees the newer
/// meta). Everything else is the memory-mapped directory's.
#[derive(Debug, Clone)]
struct ReaderDirectory(MmapDirectory);

impl tantivy::Directory for ReaderDirectory {
    fn get_file_handle(
        &self,
        path: &Path,
    ) -> Result<
        std::sync::Arc<dyn tantivy::directory::FileHandle>,
        tantivy::directory::error::OpenReadError,
    > {
        self.0.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), tantivy::directory::error::DeleteError> {
        self.0.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, tantivy::directory::error::OpenReadError> {
        self.0.exists(path)
    }

    fn open_write(
        &self,
        path: &Path,
    ) -> Result<tantivy::directory::WritePtr, tantivy::directory::error::OpenWriteError> {
        self.0.open_write(path)
    }

    fn atomic_read(
        &self,
        path: &Path,
    ) -> Result<Vec<u8>, tantivy::directory::error::OpenReadError> {
        self.0.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.0.atomic_write(path, data)
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        self.0.sync_directory()
    }

    fn acquire_lock(
        &self,
        lock: &tantivy::directory::Lock,
    ) -> Result<tantivy::directory::DirectoryLock, LockError> {
        match self.0.acquire_lock(lock) {
            Err(LockError::IoError(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                Ok(tantivy::directory::DirectoryLock::from(Box::new(())))
            }
            other => other,
        }
    }

    fn watch(
        &self,
        callback: tantivy::directory::WatchCallback,
    ) -> tantivy::Result<tantivy::directory::WatchHandle> {
        self.0.watch(callback)
    }
}

fn manual_reader(index: &Index) -> Result<IndexReader, IndexError> {
    index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(IndexError::tantivy("opening the index reader"))
}

/// One indexing thread per 20 MiB of budget, at most one per two cores (the rest of the
/// pipeline needs CPU too) and at least one.
fn writer_threads(memory_bytes: usize) -> Result<usize, IndexError> {
    if memory_bytes < MIN_MEMORY_PER_THREAD {
        return Err(IndexError::InvalidOptions(format!(
            "writer_memory_bytes is {memory_bytes}; at least {MIN_MEMORY_PER_THREAD} (20 MiB) is needed"
        )));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok((memory_bytes / MIN_MEMORY_PER_THREAD).clamp(1, (cores / 2).max(1)))
}

/// Reads the version map from the fast fields of every live document (activities and
/// tombstones).
fn load_versions(searcher: &Searcher) -> Result<VersionMap, IndexError> {
    let mut versions = VersionMap::new();
    scan_documents(searcher, |key, doc| {
        let held = Held {
            version: doc.version,
            tombstone_at_us: doc.tombstone.then_some(doc.indexed_at_us),
        };
        // One document per key by construction; keep the newest should that ever break.
        let entry = versions.entry(key.to_string()).or_insert(held);
        if held.version > entry.version {
            *entry = held;
        }
    })?;
    Ok(versions)
}

struct ScannedDoc {
    version: u64,
    tombstone: bool,
    indexed_at_us: i64,
}

/// Calls `visit(document key, doc)` for every live (not deleted) document, reading fast
/// fields only: loading stored documents would be far slower for millions of items.
fn scan_documents(
    searcher: &Searcher,
    mut visit: impl FnMut(&str, &ScannedDoc),
) -> Result<(), IndexError> {
    let mut key = String::new();
    for segment in searcher.segment_readers() {
        let fast = segment.fast_fields();
        let context = || {
            format!(
                "reading the fast fields of segment {}",
                segment.segment_id()
            )
        };
        let (Some(keys), Some(kinds)) = (
            fast.str(names::KEY)
                .map_err(IndexError::tantivy(context()))?,
            fast.str(names::KIND)
                .map_err(IndexError::tantivy(context()))?,
        ) else {
            // A segment without any key holds no documents of ours.
            continue;
        };
        let (Some(versions), Some(indexed_at)) = (
            fast.column_opt::<u64>(names::VERSION)
                .map_err(IndexError::tantivy(context()))?,
            fast.column_opt::<i64>(names::INDEXED_AT_US)
                .map_err(IndexError::tantivy(context()))?,
        ) else {
            continue;
        };
        let tombstone_ord = kinds
            .dictionary()
            .term_ord(KIND_TOMBSTONE)
            .map_err(IndexError::io(context()))?;
        for doc in 0..segment.max_doc() {
            if segment.is_deleted(doc) {
                continue;
            }
            let Some(key_ord) = keys.term_ords(doc).next() else {
                continue;
            };
            if !keys
                .ord_to_str(key_ord, &mut key)
                .map_err(IndexError::io(context()))?
            {
                continue;
            }
            let tombstone = tombstone_ord.is_some() && kinds.term_ords(doc).next() == tombstone_ord;
            visit(
                &key,
                &ScannedDoc {
                    version: versions.first(doc).unwrap_or(0),
                    tombstone,
                    indexed_at_us: indexed_at.first(doc).unwrap_or(0),
                },
            );
        }
    }
    Ok(())
}

impl IndexView {
    /// A searcher on the latest commit this handle can see.
    pub(crate) fn searcher(&self) -> Result<Searcher, IndexError> {
        if self.reload_before_query {
            // Another process's merge may delete files between our reading of meta.json
            // and opening them; the next attempt reads the newer meta. Segments this
            // handle already reads (from disk, as files of the last durable point) keep
            // their readers: only what changed since the last query is opened.
            let mut attempt = 0;
            loop {
                match self.reader.reload_keeping_unchanged_segments() {
                    Ok(()) => break,
                    Err(e) if attempt >= 2 => {
                        return Err(IndexError::Tantivy {
                            context: "reloading the index".into(),
                            source: e,
                        })
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "index reload failed; trying again");
                        attempt += 1;
                    }
                }
            }
        }
        Ok(self.reader.searcher())
    }

    pub(crate) fn live_versions(&self) -> Result<HashMap<ItemKey, Version>, IndexError> {
        let searcher = self.searcher()?;
        let mut out = HashMap::new();
        scan_documents(&searcher, |key, doc| {
            if doc.tombstone {
                return;
            }
            if let Some(item) = parse_doc_key(key) {
                let version = out.entry(item).or_insert(Version(doc.version));
                version.0 = version.0.max(doc.version);
            }
        })?;
        Ok(out)
    }

    pub(crate) fn get(&self, key: &ItemKey) -> Result<Option<(Version, ActivityLog)>, IndexError> {
        let searcher = self.searcher()?;
        let query = TermQuery::new(
            Term::from_field_text(self.fields.key, &crate::schema::doc_key(key)),
            IndexRecordOption::Basic,
        );
        let top = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .map_err(IndexError::tantivy("looking a document up"))?;
        let Some((_, address)) = top.into_iter().next() else {
            return Ok(None);
        };
        let doc = self.load(&searcher, address)?;
        Ok(doc.map(|(_, version, activity)| (version, activity)))
    }

    /// Reads a stored activity back: `None` for a tombstone or another kind.
    pub(crate) fn load(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<Option<(ItemKey, Version, ActivityLog)>, IndexError> {
        Ok(match self.load_entity(searcher, address)? {
            Some((key, version, Entity::ActivityLog(activity))) => Some((key, version, activity)),
            _ => None,
        })
    }

    /// Reads any stored entity back: `None` for a tombstone.
    pub(crate) fn load_entity(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<Option<(ItemKey, Version, Entity)>, IndexError> {
        let doc: TantivyDocument = searcher
            .doc(address)
            .map_err(IndexError::tantivy("reading a stored document"))?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        let doc_key = text(self.fields.key).unwrap_or_default();
        let corrupt = |message: String| IndexError::CorruptDocument {
            key: doc_key.clone(),
            message,
        };
        let kind = text(self.fields.kind).unwrap_or_default();
        if kind == KIND_TOMBSTONE {
            return Ok(None);
        }
        let key =
            parse_doc_key(&doc_key).ok_or_else(|| corrupt("the key has no separator".into()))?;
        let version = doc
            .get_first(self.fields.version)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt("no version".into()))?;
        let source = text(self.fields.source).ok_or_else(|| corrupt("no stored source".into()))?;
        let bad = |e: serde_json::Error| corrupt(format!("stored source: {e}"));
        let entity = match kind.as_str() {
            KIND_ACTIVITY => Entity::ActivityLog(serde_json::from_str(&source).map_err(bad)?),
            KIND_COMPANY => Entity::Company(serde_json::from_str(&source).map_err(bad)?),
            KIND_DEAL => Entity::Deal(serde_json::from_str(&source).map_err(bad)?),
            KIND_SALES_LIST => Entity::SalesList(serde_json::from_str(&source).map_err(bad)?),
            other => return Err(corrupt(format!("unknown kind {other:?}"))),
        };
        Ok(Some((key, Version(version), entity)))
    }
}

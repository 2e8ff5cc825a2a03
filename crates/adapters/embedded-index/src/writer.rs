//! The writer side of the index: turning change records into index operations
//! ([`prepare`]) and the single writer thread ([`WriterThread`]) that owns the tantivy
//! `IndexWriter` and the version map, and group-commits.
//!
//! Group commit: `apply` calls queue their prepared batches on a bounded channel. The
//! thread takes one request, drains every request already queued (without waiting for
//! more), applies them all in arrival order, commits once, reloads the reader and only
//! then replies to each request. At low rates each batch commits on its own (latency is
//! one commit); at high rates many batches share one commit, so throughput grows with load
//! instead of queueing behind one fsync per batch.

use crate::schema::{doc_key, record_doc, tombstone_doc, Fields};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tantivy::{IndexReader, IndexWriter, TantivyDocument, Term};
use tokio::sync::{mpsc, oneshot};
use tsunagu_domain::{ChangeKind, ChangeRecord, Entity};
use tsunagu_engine::ports::{RecordFailure, SinkError};

/// The most requests merged into one commit: bounds the work (and memory) behind one
/// fsync so that the first caller of a group does not wait for an unbounded pile.
const MAX_GROUP_REQUESTS: usize = 256;

/// How often expired tombstones are looked for. Scanning the version map is O(items), so
/// not at every commit.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// What the index holds for one document key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub version: u64,
    /// `Some(when the tombstone was written, µs since the epoch)` for a deleted item.
    pub tombstone_at_us: Option<i64>,
}

/// Document key → what the index holds. Reflects exactly the committed state between
/// groups (entries touched by a failed group are restored from the undo log).
pub(crate) type VersionMap = HashMap<String, Held>;

/// One record of a batch, ready for the writer thread. Documents are built in the calling
/// task, so decoding and document building run in parallel across lanes and the single
/// writer thread only does the version check and the tantivy calls.
pub(crate) enum Op {
    Upsert {
        key: String,
        version: u64,
        doc: TantivyDocument,
    },
    Remove {
        key: String,
        version: u64,
        doc: TantivyDocument,
        at_us: i64,
    },
    /// A record the index can never accept. Reported only if it is not stale: a stale
    /// record is a no-op success whatever its body (a replay of a record that was
    /// dead-lettered once must not fail again).
    Invalid {
        key: String,
        version: u64,
        message: String,
    },
    /// Drift injected by a test: replaces the document with `doc` (or deletes it, leaving
    /// no tombstone) past the version guard.
    #[cfg(feature = "drift-injection")]
    Forced {
        key: String,
        version: u64,
        doc: Option<TantivyDocument>,
    },
}

impl Op {
    fn key_and_version(&self) -> (&str, u64) {
        match self {
            Op::Upsert { key, version, .. }
            | Op::Remove { key, version, .. }
            | Op::Invalid { key, version, .. } => (key, *version),
            #[cfg(feature = "drift-injection")]
            Op::Forced { key, version, .. } => (key, *version),
        }
    }
}

/// A batch of one `apply` call and where to send its outcome.
pub(crate) struct Request {
    /// (index in the caller's batch, operation), in the caller's order.
    pub ops: Vec<(usize, Op)>,
    pub reply: oneshot::Sender<Result<(), SinkError>>,
}

/// Decodes the records of a batch into operations.
pub(crate) fn prepare(fields: &Fields, records: &[ChangeRecord], now_us: i64) -> Vec<(usize, Op)> {
    records
        .iter()
        .enumerate()
        .map(|(index, record)| (index, prepare_one(fields, record, now_us)))
        .collect()
}

fn prepare_one(fields: &Fields, record: &ChangeRecord, now_us: i64) -> Op {
    let key = doc_key(&record.key);
    let version = record.version.0;
    let invalid = |message: String| Op::Invalid {
        key: key.clone(),
        version,
        message,
    };
    match record.kind {
        ChangeKind::Remove => Op::Remove {
            doc: tombstone_doc(
                fields,
                &record.key,
                record.version,
                record.committed_at_us,
                now_us,
            ),
            key,
            version,
            at_us: now_us,
        },
        ChangeKind::Insert | ChangeKind::Modify => {
            let Some(image) = &record.new_image else {
                return invalid(format!(
                    "new_image: missing on a {} record of {}",
                    record.kind.as_str(),
                    record.key
                ));
            };
            let entity = match Entity::from_json(&image.body) {
                Ok(entity) => entity,
                Err(e) => return invalid(format!("new_image.body.{}: {}", e.path, e.message)),
            };
            match record_doc(
                fields,
                &record.key,
                record.version,
                &entity,
                record.committed_at_us,
                now_us,
            ) {
                Ok(doc) => Op::Upsert { key, version, doc },
                Err(e) => invalid(format!("new_image.body: cannot be stored: {e}")),
            }
        }
    }
}

/// The state owned by the writer thread.
pub(crate) struct WriterThread {
    /// The least time between two commits (Elasticsearch's refresh interval). Requests
    /// that arrive meanwhile join the next commit. Zero: commit as soon as a group is
    /// taken (lowest latency at low rates).
    pub refresh_interval: Duration,
    /// When the last commit finished.
    pub last_commit: Option<Instant>,
    /// Raised once a commit is searchable, before its callers are answered.
    pub marks: std::sync::Arc<crate::durability::Marks>,
    pub writer: IndexWriter,
    pub reader: IndexReader,
    pub fields: Fields,
    pub versions: VersionMap,
    pub tombstone_retention: Duration,
    pub last_purge: Option<Instant>,
    /// A commit succeeded but the reload after it failed: the next group reloads even if
    /// it changes nothing, so a retried (now stale, hence no-op) batch becomes visible.
    pub needs_reload: bool,
    /// `marks.moved_to_disk` when every segment reader was last opened afresh.
    pub readers_opened_at_move: u64,
    #[cfg(test)]
    pub hooks: std::sync::Arc<TestHooks>,
}

impl WriterThread {
    /// Serves requests until every sender is gone (the index was closed or dropped), then
    /// lets merges finish so that the directory is left tidy.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            // Lets a test queue several requests behind the first one, deterministically.
            #[cfg(test)]
            {
                self.hooks
                    .received
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(self.hooks.pause.lock());
            }
            let mut group = vec![first];
            // Under load, commits are spaced by the refresh interval and everything that
            // arrives meanwhile shares one commit (bigger segments, fewer merges).
            if let Some(wait) = self
                .last_commit
                .map(|at| self.refresh_interval.saturating_sub(at.elapsed()))
                .filter(|wait| !wait.is_zero())
            {
                std::thread::sleep(wait);
            }
            while group.len() < MAX_GROUP_REQUESTS {
                match rx.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.process(group);
        }
        if let Err(e) = self.writer.wait_merging_threads() {
            tracing::warn!(error = %e, "index merges did not finish cleanly on close");
        }
    }

    fn process(&mut self, group: Vec<Request>) {
        let started = Instant::now();
        let requests = group.len();
        let mut undo: Vec<(String, Option<Held>)> = Vec::new();
        let mut replies = Vec::with_capacity(group.len());
        let mut failures: Vec<Vec<RecordFailure>> = Vec::with_capacity(group.len());
        let mut changed = self.purge_expired_tombstones(&mut undo);
        let mut outcome: tantivy::Result<()> = Ok(());
        for request in group {
            replies.push(request.reply);
            let mut request_failures = Vec::new();
            if outcome.is_ok() {
                for (index, op) in request.ops {
                    match self.apply_op(op, &mut undo) {
                        Ok(Applied::Changed) => changed = true,
                        Ok(Applied::Stale) => {}
                        Ok(Applied::Rejected(message)) => request_failures.push(RecordFailure {
                            index,
                            retryable: false,
                            message,
                        }),
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
            }
            failures.push(request_failures);
        }
        let applied_at = Instant::now();
        if outcome.is_ok() && changed {
            outcome = self.commit().map(|_| ());
            self.last_commit = Some(Instant::now());
        }
        if let Err(e) = outcome {
            tracing::error!(error = %e, requests, "index commit failed; rolling the group back");
            self.roll_back(undo);
            let message = format!("index commit failed (nothing of the batch was applied): {e}");
            for reply in replies {
                // A caller that gave up waiting is not an error of the index.
                let _ = reply.send(Err(SinkError::Batch {
                    retryable: true,
                    message: message.clone(),
                }));
            }
            return;
        }
        let committed_at = Instant::now();
        if changed || self.needs_reload {
            if let Err(e) = self.reload() {
                // Durable but not yet visible: the contract wants both, so the callers
                // retry; their records are then stale no-ops and the next group reloads.
                tracing::error!(error = %e, "reloading the index reader after a commit failed");
                self.needs_reload = true;
                let message = format!("index committed but could not be made visible: {e}");
                for reply in replies {
                    let _ = reply.send(Err(SinkError::Batch {
                        retryable: true,
                        message: message.clone(),
                    }));
                }
                return;
            }
            self.needs_reload = false;
            self.marks
                .visible
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        tracing::debug!(
            requests,
            committed = changed,
            elapsed_us = started.elapsed().as_micros() as u64,
            apply_us = (applied_at - started).as_micros() as u64,
            commit_us = (committed_at - applied_at).as_micros() as u64,
            segments = self.reader.searcher().segment_readers().len(),
            "index group applied"
        );
        for (reply, request_failures) in replies.into_iter().zip(failures) {
            let result = if request_failures.is_empty() {
                Ok(())
            } else {
                Err(SinkError::Records(request_failures))
            };
            let _ = reply.send(result);
        }
    }

    fn apply_op(
        &mut self,
        op: Op,
        undo: &mut Vec<(String, Option<Held>)>,
    ) -> tantivy::Result<Applied> {
        #[cfg(feature = "drift-injection")]
        if let Op::Forced { key, version, doc } = op {
            return self.apply_forced(key, version, doc, undo);
        }
        let (key, version) = op.key_and_version();
        let held = self.versions.get(key).copied();
        // The version guard: not newer than what the index holds (a live document or a
        // tombstone) changes nothing and counts as success.
        if held.is_some_and(|h| version <= h.version) {
            return Ok(Applied::Stale);
        }
        let (key, version, doc, tombstone_at_us) = match op {
            Op::Invalid { message, .. } => return Ok(Applied::Rejected(message)),
            Op::Upsert { key, version, doc } => (key, version, doc, None),
            Op::Remove {
                key,
                version,
                doc,
                at_us,
            } => (key, version, doc, Some(at_us)),
            #[cfg(feature = "drift-injection")]
            Op::Forced { .. } => unreachable!("forced operations are applied above"),
        };
        // Record the previous state first, so that a failure anywhere in the group can
        // restore the map to the committed state.
        undo.push((key.clone(), held));
        self.versions.insert(
            key.clone(),
            Held {
                version,
                tombstone_at_us,
            },
        );
        // Replace the document: the delete only affects documents added before it, so the
        // new one survives. The map mirrors the index exactly, so a key it does not hold has
        // no document to delete; skipping the delete spares every commit from applying it
        // to every segment (most changes are inserts of new items).
        if held.is_some() {
            self.writer
                .delete_term(Term::from_field_text(self.fields.key, &key));
        }
        self.writer.add_document(doc)?;
        Ok(Applied::Changed)
    }

    /// Applies injected drift: no version guard, and the version map follows the index.
    #[cfg(feature = "drift-injection")]
    fn apply_forced(
        &mut self,
        key: String,
        version: u64,
        doc: Option<TantivyDocument>,
        undo: &mut Vec<(String, Option<Held>)>,
    ) -> tantivy::Result<Applied> {
        let held = self.versions.get(&key).copied();
        undo.push((key.clone(), held));
        self.writer
            .delete_term(Term::from_field_text(self.fields.key, &key));
        match doc {
            Some(doc) => {
                self.versions.insert(
                    key,
                    Held {
                        version,
                        tombstone_at_us: None,
                    },
                );
                self.writer.add_document(doc)?;
            }
            None => {
                self.versions.remove(&key);
            }
        }
        Ok(Applied::Changed)
    }

    /// Drops tombstones older than the retention, at most once per [`PURGE_INTERVAL`].
    /// Returns whether anything was deleted (so the group must commit).
    fn purge_expired_tombstones(&mut self, undo: &mut Vec<(String, Option<Held>)>) -> bool {
        if self
            .last_purge
            .is_some_and(|at| at.elapsed() < PURGE_INTERVAL)
        {
            return false;
        }
        self.last_purge = Some(Instant::now());
        let retention_us = i64::try_from(self.tombstone_retention.as_micros()).unwrap_or(i64::MAX);
        let cutoff = now_us().saturating_sub(retention_us);
        let expired: Vec<String> = self
            .versions
            .iter()
            .filter(|(_, held)| held.tombstone_at_us.is_some_and(|at| at < cutoff))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            let held = self.versions.remove(key);
            self.writer
                .delete_term(Term::from_field_text(self.fields.key, key));
            undo.push((key.clone(), held));
        }
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "dropping expired tombstones");
        }
        !expired.is_empty()
    }

    /// Makes the last commit searchable. A commit of a few documents adds a segment or
    /// two: the readers of the segments that did not change are kept (opening each of
    /// dozens of segments again was a tenth of a small commit's time), unless a durable
    /// point has since moved memory files to disk, which kept readers would go on holding
    /// in memory.
    fn reload(&mut self) -> tantivy::Result<()> {
        use std::sync::atomic::Ordering;
        let moved = self.marks.moved_to_disk.load(Ordering::SeqCst);
        if moved == self.readers_opened_at_move {
            return self.reader.reload_keeping_unchanged_segments();
        }
        self.reader.reload()?;
        self.readers_opened_at_move = moved;
        Ok(())
    }

    fn commit(&mut self) -> tantivy::Result<u64> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering;
            self.hooks.commits.fetch_add(1, Ordering::SeqCst);
            let pending = self.hooks.fail_commits.load(Ordering::SeqCst);
            if pending > 0 {
                self.hooks.fail_commits.store(pending - 1, Ordering::SeqCst);
                return Err(tantivy::TantivyError::InternalError(
                    "injected commit failure".into(),
                ));
            }
        }
        self.writer.commit()
    }

    fn roll_back(&mut self, undo: Vec<(String, Option<Held>)>) {
        if let Err(e) = self.writer.rollback() {
            tracing::error!(error = %e, "rolling the index writer back failed");
        }
        // Newest first, so a key touched twice ends at its state before the group.
        for (key, held) in undo.into_iter().rev() {
            match held {
                Some(held) => self.versions.insert(key, held),
                None => self.versions.remove(&key),
            };
        }
    }
}

/// Test hooks into the writer thread.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestHooks {
    /// How many upcoming commits fail on purpose.
    pub fail_commits: std::sync::atomic::AtomicUsize,
    /// How many commits were attempted.
    pub commits: std::sync::atomic::AtomicUsize,
    /// How many requests the thread received one by one (the first of each group), counted
    /// before it waits on `pause`.
    pub received: std::sync::atomic::AtomicUsize,
    /// Held by a test, stops the thread between receiving a request and draining the queue.
    pub pause: std::sync::Mutex<()>,
}

enum Applied {
    Changed,
    Stale,
    Rejected(String),
}

/// Now, in microseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

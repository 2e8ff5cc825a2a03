//! Reading the index for reconciliation with the primary: [`IndexSnapshot`], a fixed
//! point-in-time view (one tantivy searcher) that yields every live document's key hash
//! and version from fast fields only (no stored document, no key string), then the keys of
//! the few documents whose hash falls where the primary disagrees.
//!
//! With the cargo feature `drift-injection` (tests only), [`ActivityIndex::inject_drift_for_tests`]
//! writes straight into the index, past the version guard, to create the drift a
//! reconciliation must find.

use crate::error::IndexError;
use crate::index::{ActivityIndex, ActivityIndexReader};
use crate::schema::{doc_key, names, parse_doc_key, KIND_TOMBSTONE};
use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{Searcher, SegmentReader, Term};
use tsunagu_domain::{ItemKey, Version};

/// A point-in-time view of the index: every read through it sees the same commit, however
/// long it is kept while the writer goes on. Cheap to take.
pub struct IndexSnapshot {
    searcher: Searcher,
    key_field: tantivy::schema::Field,
}

impl ActivityIndex {
    /// A snapshot of the latest visible commit (which may be newer than the last durable
    /// point).
    pub fn snapshot(&self) -> Result<IndexSnapshot, IndexError> {
        let view = self.view();
        Ok(IndexSnapshot {
            searcher: view.searcher()?,
            key_field: view.fields.key,
        })
    }
}

impl ActivityIndexReader {
    /// A snapshot of the latest commit written to disk by the writer (its last durable
    /// point), reloaded now.
    pub fn snapshot(&self) -> Result<IndexSnapshot, IndexError> {
        let view = self.view();
        Ok(IndexSnapshot {
            searcher: view.searcher()?,
            key_field: view.fields.key,
        })
    }
}

/// The fast-field columns of one segment that reconciliation reads.
struct SegmentColumns {
    hashes: tantivy::columnar::Column<u64>,
    versions: tantivy::columnar::Column<u64>,
    kinds: tantivy::columnar::StrColumn,
    tombstone_ord: Option<u64>,
}

impl SegmentColumns {
    /// `None` for a segment without documents of ours.
    fn open(segment: &SegmentReader) -> Result<Option<Self>, IndexError> {
        let fast = segment.fast_fields();
        let context = || {
            format!(
                "reading the fast fields of segment {}",
                segment.segment_id()
            )
        };
        let (Some(hashes), Some(versions), Some(kinds)) = (
            fast.column_opt::<u64>(names::SORT_HASH)
                .map_err(IndexError::tantivy(context()))?,
            fast.column_opt::<u64>(names::VERSION)
                .map_err(IndexError::tantivy(context()))?,
            fast.str(names::KIND)
                .map_err(IndexError::tantivy(context()))?,
        ) else {
            return Ok(None);
        };
        let tombstone_ord = kinds
            .dictionary()
            .term_ord(KIND_TOMBSTONE)
            .map_err(IndexError::io(context()))?;
        Ok(Some(Self {
            hashes,
            versions,
            kinds,
            tombstone_ord,
        }))
    }

    /// The key hash and version of a live activity; `None` for a tombstone.
    fn live(&self, doc: u32) -> Option<(u64, u64)> {
        if self.tombstone_ord.is_some() && self.kinds.term_ords(doc).next() == self.tombstone_ord {
            return None;
        }
        Some((
            self.hashes.first(doc)?,
            self.versions.first(doc).unwrap_or(0),
        ))
    }
}

impl IndexSnapshot {
    /// Documents in the snapshot, tombstones included (an estimate of the item count,
    /// known without reading anything).
    pub fn doc_count(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Calls `visit(key hash, version)` for every live activity (tombstones excluded).
    /// The key hash is [`ItemKey::stable_hash`]. Reads two fast-field columns: no stored
    /// documents, no key strings.
    pub fn for_each_live(&self, mut visit: impl FnMut(u64, Version)) -> Result<(), IndexError> {
        for segment in self.searcher.segment_readers() {
            let Some(columns) = SegmentColumns::open(segment)? else {
                continue;
            };
            for doc in 0..segment.max_doc() {
                if segment.is_deleted(doc) {
                    continue;
                }
                if let Some((hash, version)) = columns.live(doc) {
                    visit(hash, Version(version));
                }
            }
        }
        Ok(())
    }

    /// The key and version of every live activity whose key hash passes `wanted`: the
    /// keys are only decoded for those.
    pub fn live_matching(
        &self,
        mut wanted: impl FnMut(u64) -> bool,
    ) -> Result<Vec<(ItemKey, Version)>, IndexError> {
        let mut out = Vec::new();
        let mut text = String::new();
        for segment in self.searcher.segment_readers() {
            let Some(columns) = SegmentColumns::open(segment)? else {
                continue;
            };
            let context = || format!("reading the keys of segment {}", segment.segment_id());
            let Some(keys) = segment
                .fast_fields()
                .str(names::KEY)
                .map_err(IndexError::tantivy(context()))?
            else {
                continue;
            };
            for doc in 0..segment.max_doc() {
                if segment.is_deleted(doc) {
                    continue;
                }
                let Some((hash, version)) = columns.live(doc) else {
                    continue;
                };
                if !wanted(hash) {
                    continue;
                }
                let Some(ord) = keys.term_ords(doc).next() else {
                    continue;
                };
                if keys
                    .ord_to_str(ord, &mut text)
                    .map_err(IndexError::io(context()))?
                {
                    if let Some(key) = parse_doc_key(&text) {
                        out.push((key, Version(version)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The version of the live activity at `key` in this snapshot (`None` if there is
    /// none or only a tombstone), from fast fields.
    pub fn version_of(&self, key: &ItemKey) -> Result<Option<Version>, IndexError> {
        let query = TermQuery::new(
            Term::from_field_text(self.key_field, &doc_key(key)),
            IndexRecordOption::Basic,
        );
        let top = self
            .searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .map_err(IndexError::tantivy("looking a document up"))?;
        let Some((_, address)) = top.into_iter().next() else {
            return Ok(None);
        };
        let segment = self.searcher.segment_reader(address.segment_ord);
        let Some(columns) = SegmentColumns::open(segment)? else {
            return Ok(None);
        };
        Ok(columns.live(address.doc_id).map(|(_, v)| Version(v)))
    }
}

/// One piece of drift written straight into the index by
/// [`ActivityIndex::inject_drift_for_tests`].
#[cfg(feature = "drift-injection")]
#[derive(Debug, Clone)]
pub enum InjectedDrift {
    /// Deletes the item's document and leaves no tombstone, as if the change never
    /// arrived.
    Remove(ItemKey),
    /// Writes the record's version and body (an `INSERT` or `MODIFY` record) whatever the
    /// index holds: an older version, or an item the primary does not have.
    Write(tsunagu_domain::ChangeRecord),
}

#[cfg(feature = "drift-injection")]
impl ActivityIndex {
    /// **For tests only** (cargo feature `drift-injection`): applies `drift` past the
    /// version guard, committed and visible when it returns (durable at the next durable
    /// point). The guard's version map follows, so the index is exactly as if the drift
    /// had happened on its own.
    pub async fn inject_drift_for_tests(
        &self,
        drift: &[InjectedDrift],
    ) -> Result<(), tsunagu_engine::ports::SinkError> {
        use crate::writer::{now_us, prepare, Op, Request};
        use tsunagu_engine::ports::SinkError;
        let failed = |message: String| SinkError::Batch {
            retryable: false,
            message,
        };
        let fields = &self.view().fields;
        let mut ops = Vec::with_capacity(drift.len());
        for (index, item) in drift.iter().enumerate() {
            let op = match item {
                InjectedDrift::Remove(key) => Op::Forced {
                    key: doc_key(key),
                    version: 0,
                    doc: None,
                },
                InjectedDrift::Write(record) => {
                    match prepare(fields, std::slice::from_ref(record), now_us()).pop() {
                        Some((_, Op::Upsert { key, version, doc })) => Op::Forced {
                            key,
                            version,
                            doc: Some(doc),
                        },
                        _ => {
                            return Err(failed(format!(
                                "cannot inject {}: not a valid INSERT or MODIFY",
                                record.key
                            )))
                        }
                    }
                }
            };
            ops.push((index, op));
        }
        let requests = self
            .requests
            .as_ref()
            .ok_or_else(|| failed("the index is closed".into()))?;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        requests
            .send(Request { ops, reply })
            .await
            .map_err(|_| failed("the index writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| failed("the index writer has stopped".into()))?
    }
}

/// The index as one side of a drift comparison ([`tsunagu_engine::drift`]), read through
/// a snapshot: the writer's latest visible commit, or (read-only) its last durable point,
/// which is what checkpoints cover.
mod drift {
    use super::IndexSnapshot;
    use crate::error::IndexError;
    use crate::index::{ActivityIndex, ActivityIndexReader};
    use std::sync::Arc;
    use tsunagu_domain::{ItemKey, Version};
    use tsunagu_engine::drift::tree::{HashTree, LeafSet};
    use tsunagu_engine::drift::{Held, ReadError, VersionDigest};

    fn read_error(error: IndexError) -> ReadError {
        ReadError(format!("embedded index: {error}"))
    }

    /// Runs `f` on a snapshot off the async worker threads.
    async fn on_snapshot<T: Send + 'static>(
        snapshot: Result<IndexSnapshot, IndexError>,
        f: impl FnOnce(&IndexSnapshot) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, ReadError> {
        let snapshot = Arc::new(snapshot.map_err(read_error)?);
        tokio::task::spawn_blocking(move || f(&snapshot))
            .await
            .map_err(|e| ReadError(format!("embedded index reader stopped: {e}")))?
            .map_err(read_error)
    }

    async fn digest(
        snapshot: Result<IndexSnapshot, IndexError>,
        leaf_bits: u32,
    ) -> Result<HashTree, ReadError> {
        on_snapshot(snapshot, move |s| {
            let mut tree = HashTree::new(leaf_bits);
            s.for_each_live(|hash, version| tree.add(hash, version.0))?;
            Ok(tree)
        })
        .await
    }

    async fn live_in(
        snapshot: Result<IndexSnapshot, IndexError>,
        leaves: &LeafSet,
    ) -> Result<Vec<(ItemKey, Version)>, ReadError> {
        let leaves = leaves.clone();
        on_snapshot(snapshot, move |s| {
            s.live_matching(|hash| leaves.contains(hash))
        })
        .await
    }

    async fn held(
        snapshot: Result<IndexSnapshot, IndexError>,
        keys: &[ItemKey],
    ) -> Result<Vec<Option<Held>>, ReadError> {
        let keys = keys.to_vec();
        on_snapshot(snapshot, move |s| {
            keys.iter()
                .map(|key| Ok(s.version_of(key)?.map(Held::Live)))
                .collect()
        })
        .await
    }

    macro_rules! version_digest {
        ($type:ty) => {
            #[async_trait::async_trait]
            impl VersionDigest for $type {
                async fn approximate_items(&self) -> Result<u64, ReadError> {
                    Ok(self.snapshot().map_err(read_error)?.doc_count())
                }

                async fn digest(&self, leaf_bits: u32) -> Result<HashTree, ReadError> {
                    digest(self.snapshot(), leaf_bits).await
                }

                async fn live_in(
                    &self,
                    leaves: &LeafSet,
                ) -> Result<Vec<(ItemKey, Version)>, ReadError> {
                    live_in(self.snapshot(), leaves).await
                }

                async fn held(&self, keys: &[ItemKey]) -> Result<Vec<Option<Held>>, ReadError> {
                    held(self.snapshot(), keys).await
                }
            }
        };
    }

    version_digest!(ActivityIndex);
    version_digest!(ActivityIndexReader);
}

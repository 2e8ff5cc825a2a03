//! [`OpenSearchSink`] as the index side of drift detection and repair
//! ([`tsunagu_engine::drift`]): [`VersionDigest`], and
//! [`OpenSearchSink::for_each_live_version`], the streaming read-back both digests use.
//!
//! What each call reads:
//!
//! - `digest`, `live_in`: a `_refresh` (so documents written with `refresh = false` count),
//!   then every live document once, in `_search` pages of [`LIVE_VERSIONS_PAGE`] sorted on
//!   the unique `key` field and continued with `search_after` (flat memory on the cluster,
//!   no scroll context to clean up), reading only `_id` and `version`. `digest` folds the
//!   pages into the hash tree as they come and never holds the keys; `live_in` keeps only
//!   the documents of the leaves asked for. The key is decoded from `_id` and hashed with
//!   [`ItemKey::stable_hash`], as on the primary's side.
//! - `held`: real-time `_mget` of [`MGET_CHUNK`] ids per request (sees writes not yet
//!   refreshed), reading `version` and `kind`.
//! - `approximate_items`: one `_count` of the non-tombstone documents.
//!
//! Pages are not a snapshot: a document written during the read may show its old or new
//! version, which only makes it a candidate that the engine's settle step sorts out.

use crate::document::{doc_id, parse_doc_id, KIND_TOMBSTONE};
use crate::secret::redact_url;
use crate::sink::{OpenSearchSink, LIVE_VERSIONS_PAGE};
use crate::{Method, OpenSearchError};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use tsunagu_domain::{ItemKey, Version};
use tsunagu_engine::drift::tree::{HashTree, LeafSet};
use tsunagu_engine::drift::{Held, ReadError, VersionDigest};

/// Ids per `_mget` request: a few hundred KB of request at most (ids are ≤ 512 bytes).
pub const MGET_CHUNK: usize = 500;

/// The query that leaves tombstones out.
fn live_documents() -> Value {
    json!({"bool": {"must_not": [{"term": {"kind": KIND_TOMBSTONE}}]}})
}

impl OpenSearchSink {
    /// Calls `each` with the key and version of every live (non-tombstone) document, in
    /// key order, reading pages of `page_size` with `search_after` on `key` without
    /// keeping them: memory stays one page whatever the index's size. Not a snapshot
    /// (see [`OpenSearchSink::live_versions`]); call [`OpenSearchSink::refresh`] first to
    /// include documents not yet refreshed. Returns the number of documents seen.
    pub async fn for_each_live_version(
        &self,
        page_size: usize,
        mut each: impl FnMut(ItemKey, Version) + Send,
    ) -> Result<u64, OpenSearchError> {
        let index = self.config().index.clone();
        let what = format!("POST /{index}/_search");
        self.for_each_hit(
            live_documents(),
            json!([{"key": "asc"}]),
            json!(["version"]),
            page_size,
            |hit| {
                let id = hit["_id"].as_str().unwrap_or_default();
                let key = parse_doc_id(id).ok_or_else(|| {
                    self.unreadable(
                        &what,
                        format!("document id {id:?} was not written by tsunagu"),
                    )
                })?;
                let version = hit["_source"]["version"].as_u64().ok_or_else(|| {
                    self.unreadable(&what, format!("document {id:?} has no `version`"))
                })?;
                each(key, Version(version));
                Ok(())
            },
        )
        .await
    }

    /// Calls `each` with every hit of `query` (a query clause), in `sort` order, reading
    /// pages of `page_size` continued with `search_after`: memory stays one page, and no
    /// scroll context or result window limits the number of hits. `sort` must end in a
    /// field unique per document whose sort values JSON carries exactly (a keyword, as
    /// `key`), or pages could skip or repeat hits. `source` is the `_source` filter.
    /// Returns the number of hits seen; stops at the first error `each` returns.
    pub async fn for_each_hit(
        &self,
        query: Value,
        sort: Value,
        source: Value,
        page_size: usize,
        mut each: impl FnMut(&Value) -> Result<(), OpenSearchError> + Send,
    ) -> Result<u64, OpenSearchError> {
        let index = self.config().index.clone();
        let what = format!("POST /{index}/_search");
        // 10 000 is both clusters' default `index.max_result_window`.
        let size = page_size.clamp(1, 10_000);
        let mut seen = 0u64;
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": size,
                "query": query,
                "sort": sort,
                "_source": source,
                "track_total_hits": false,
            });
            if let Some(after) = after.take() {
                body["search_after"] = after;
            }
            let page = self
                .request_json(Method::POST, &[&index, "_search"], &[], Some(&body), &what)
                .await?;
            let hits = page["hits"]["hits"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            for hit in hits {
                each(hit)?;
                seen += 1;
            }
            // A full page may have a successor; a short one is the last.
            match hits.last().map(|hit| &hit["sort"]) {
                Some(sort) if hits.len() >= size && sort.is_array() => after = Some(sort.clone()),
                _ => return Ok(seen),
            }
        }
    }

    /// What the index holds for at most [`MGET_CHUNK`] keys, by document id.
    async fn mget_held(&self, keys: &[ItemKey]) -> Result<HashMap<String, Held>, OpenSearchError> {
        let index = self.config().index.clone();
        let what = format!("POST /{index}/_mget");
        let ids: Vec<String> = keys.iter().map(doc_id).collect();
        let answer = self
            .request_json(
                Method::POST,
                &[&index, "_mget"],
                &[("realtime", "true"), ("_source_includes", "version,kind")],
                Some(&json!({ "ids": ids })),
                &what,
            )
            .await?;
        let docs = answer["docs"]
            .as_array()
            .ok_or_else(|| self.unreadable(&what, "the answer has no `docs` array".into()))?;
        let mut held = HashMap::with_capacity(docs.len());
        for doc in docs {
            let id = doc["_id"].as_str().unwrap_or_default();
            let error = &doc["error"];
            if !error.is_null() {
                let kind = error["type"].as_str().unwrap_or("error");
                let message = format!(
                    "document {id:?}: {kind}: {}",
                    error["reason"].as_str().unwrap_or_default()
                );
                // `_mget` answers 200 even for a missing index, with an error per
                // document: report it as the 404 the other reads would get.
                if kind == "index_not_found_exception" {
                    return Err(OpenSearchError::Status {
                        url: redact_url(&self.config().url),
                        what,
                        status: 404,
                        message,
                    });
                }
                return Err(self.unreadable(&what, message));
            }
            if doc["found"] != Value::Bool(true) {
                continue;
            }
            let version = doc["_source"]["version"].as_u64().ok_or_else(|| {
                self.unreadable(&what, format!("document {id:?} has no `version`"))
            })?;
            let version = Version(version);
            let state = if doc["_source"]["kind"].as_str() == Some(KIND_TOMBSTONE) {
                Held::Deleted(version)
            } else {
                Held::Live(version)
            };
            held.insert(id.to_string(), state);
        }
        Ok(held)
    }

    pub(crate) fn unreadable(&self, what: &str, message: String) -> OpenSearchError {
        OpenSearchError::Unusable {
            url: redact_url(&self.config().url),
            what: what.to_string(),
            message,
        }
    }

    /// A read-back failure as a [`ReadError`] naming the index and what to do about it.
    fn read_error(&self, error: OpenSearchError) -> ReadError {
        let index = &self.config().index;
        let hint = match &error {
            OpenSearchError::Status { status: 404, .. } => {
                "; the index does not exist: check the sink's `index` (the sink creates it when it starts)"
            }
            OpenSearchError::Status {
                status: 401 | 403, ..
            } => "; the credentials may not read the index: grant read and monitor on it",
            e if e.retryable() => {
                "; the cluster is overloaded or unreachable: run again later"
            }
            _ => "",
        };
        ReadError(format!("reading back index {index:?}: {error}{hint}"))
    }

    /// Refreshes, then folds every live document into `acc`.
    async fn fold_live<T: Send>(
        &self,
        mut acc: T,
        mut fold: impl FnMut(&mut T, ItemKey, Version) + Send,
    ) -> Result<T, ReadError> {
        // A `refresh = false` sink's recent writes are invisible to searches until then.
        self.refresh().await.map_err(|e| self.read_error(e))?;
        self.for_each_live_version(LIVE_VERSIONS_PAGE, |key, version| {
            fold(&mut acc, key, version)
        })
        .await
        .map_err(|e| self.read_error(e))?;
        Ok(acc)
    }
}

#[async_trait]
impl VersionDigest for OpenSearchSink {
    async fn approximate_items(&self) -> Result<u64, ReadError> {
        let index = self.config().index.clone();
        let what = format!("POST /{index}/_count");
        let answer = self
            .request_json(
                Method::POST,
                &[&index, "_count"],
                &[],
                Some(&json!({ "query": live_documents() })),
                &what,
            )
            .await
            .map_err(|e| self.read_error(e))?;
        answer["count"].as_u64().ok_or_else(|| {
            self.read_error(self.unreadable(&what, "the answer has no `count`".into()))
        })
    }

    async fn digest(&self, leaf_bits: u32) -> Result<HashTree, ReadError> {
        self.fold_live(HashTree::new(leaf_bits), |tree, key, version| {
            tree.add(key.stable_hash(), version.0)
        })
        .await
    }

    async fn live_in(&self, leaves: &LeafSet) -> Result<Vec<(ItemKey, Version)>, ReadError> {
        if leaves.is_empty() {
            return Ok(Vec::new());
        }
        self.fold_live(Vec::new(), |found, key, version| {
            if leaves.contains(key.stable_hash()) {
                found.push((key, version));
            }
        })
        .await
    }

    /// A tombstone document is [`Held::Deleted`] at the deletion's version.
    async fn held(&self, keys: &[ItemKey]) -> Result<Vec<Option<Held>>, ReadError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MGET_CHUNK) {
            let held = self
                .mget_held(chunk)
                .await
                .map_err(|e| self.read_error(e))?;
            out.extend(chunk.iter().map(|key| held.get(&doc_id(key)).copied()));
        }
        Ok(out)
    }
}

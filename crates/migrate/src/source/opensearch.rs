//! An OpenSearch or Elasticsearch index as a migration source: every document (optionally
//! those matching a query), read from a point in time with `search_after`.
//!
//! A point in time (OpenSearch `POST /<index>/_search/point_in_time`, Elasticsearch
//! `POST /<index>/_pit`) freezes the index for the scan, pages are sorted on `_shard_doc`
//! (the cheapest total order) and each page continues after the previous page's last
//! sort value; the point in time is deleted at the end, whether the scan succeeded or
//! not. A cluster without points in time (older than OpenSearch 2.4 / Elasticsearch 7.10)
//! is read with `search_after` on `_id` instead, which is not a snapshot: a warning says
//! so. The record id is `_id`, the properties are `_source`. In tsunagu's own replication
//! index (`tsunagu-opensearch`), deletions are tombstone documents; they are skipped,
//! never turned into rows. Only searches are sent: the index is never changed.
//!
//! The HTTP client (auth, TLS, timeouts, redacted URLs in errors) is the OpenSearch
//! sink's, [`tsunagu_opensearch::OpenSearchSink`].

use super::{node_line, PageWriter};
use crate::error::{Error, Result};
use crate::spec::OpenSearchConnection;
use serde_json::{json, Value};
use std::path::Path;
use tsunagu_opensearch::{Method, OpenSearchConfig, OpenSearchError, OpenSearchSink};

/// How long a point in time stays open between two pages.
const KEEP_ALIVE: &str = "5m";

/// A connected index reader.
#[derive(Clone)]
pub struct OpenSearchSource {
    client: OpenSearchSink,
    page_size: u32,
}

/// What one scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    pub written: u64,
    /// Tombstones of tsunagu's replication index left out.
    pub tombstones: u64,
    /// Whether a point in time was used (false: `_id` order, not a snapshot).
    pub point_in_time: bool,
}

/// Which point-in-time API the cluster speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PitApi {
    OpenSearch,
    Elasticsearch,
}

fn os_error(e: OpenSearchError) -> Error {
    Error::Other(format!("opensearch source: {e}"))
}

/// Whether a failed point-in-time call means "this API does not exist here" (as opposed
/// to a missing index, bad credentials or an unreachable cluster).
fn api_missing(e: &OpenSearchError) -> bool {
    match e {
        OpenSearchError::Status {
            status, message, ..
        } => {
            matches!(status, 400 | 404 | 405)
                && !message.contains("index_not_found")
                && !message.contains("no such index")
        }
        _ => false,
    }
}

/// Whether a document is a tombstone of tsunagu's replication index: `kind` is
/// `tombstone`, the document has the index's bookkeeping fields and its id is one
/// tsunagu writes.
pub fn is_tsunagu_tombstone(id: &str, source: &Value) -> bool {
    source["kind"].as_str() == Some(tsunagu_opensearch::document::KIND_TOMBSTONE)
        && source.get("version").is_some()
        && source.get("sort_hash").is_some()
        && tsunagu_opensearch::document::parse_doc_id(id).is_some()
}

impl OpenSearchSource {
    /// Builds the client from a connection whose `${...}` are resolved
    /// ([`super::external::resolve`]): validates it, reads the secrets from the variables
    /// it names and the CA file; sends no request.
    pub fn connect(settings: &OpenSearchConnection, index: &str) -> Result<Self> {
        let mut config = OpenSearchConfig::new(settings.url.clone());
        config.index = index.to_string();
        config.username = settings.username.clone();
        config.password_env = settings.password_env.clone();
        config.api_key_env = settings.api_key_env.clone();
        config.ca_cert = settings.ca_cert.as_ref().map(Into::into);
        config.danger_insecure_skip_verify = settings.danger_insecure_skip_verify;
        config.request_timeout_ms = settings.request_timeout_ms;
        let client = OpenSearchSink::new(&config).map_err(os_error)?;
        Ok(Self {
            client,
            page_size: settings.page_size.max(1),
        })
    }

    async fn open_pit(&self, index: &str) -> Result<Option<(PitApi, String)>> {
        let keep = [("keep_alive", KEEP_ALIVE)];
        let what = format!("opening a point in time on `{index}`");
        match self
            .client
            .request_json(
                Method::POST,
                &[index, "_search", "point_in_time"],
                &keep,
                None,
                &what,
            )
            .await
        {
            Ok(v) => {
                if let Some(id) = v["pit_id"].as_str() {
                    return Ok(Some((PitApi::OpenSearch, id.to_string())));
                }
            }
            Err(e) if api_missing(&e) => {}
            Err(e) => return Err(os_error(e)),
        }
        match self
            .client
            .request_json(Method::POST, &[index, "_pit"], &keep, None, &what)
            .await
        {
            Ok(v) => match v["id"].as_str() {
                Some(id) => Ok(Some((PitApi::Elasticsearch, id.to_string()))),
                None => Ok(None),
            },
            Err(e) if api_missing(&e) => Ok(None),
            Err(e) => Err(os_error(e)),
        }
    }

    async fn close_pit(&self, api: PitApi, id: &str) -> Result<()> {
        let what = "deleting the point in time";
        let (segments, body): (&[&str], Value) = match api {
            PitApi::OpenSearch => (&["_search", "point_in_time"], json!({"pit_id": [id]})),
            PitApi::Elasticsearch => (&["_pit"], json!({"id": id})),
        };
        self.client
            .request_json(Method::DELETE, segments, &[], Some(&body), what)
            .await
            .map(|_| ())
            .map_err(os_error)
    }

    /// Reads every document of `index` (matching `query`, a JSON query clause) into
    /// `path`.
    pub async fn fetch(
        &self,
        index: &str,
        query: Option<&str>,
        path: &Path,
        progress: &indicatif::ProgressBar,
    ) -> Result<ScanOutcome> {
        let query: Value = match query {
            Some(q) => serde_json::from_str(q)
                .map_err(|e| Error::Other(format!("opensearch source: query: {e}")))?,
            None => json!({"match_all": {}}),
        };
        let pit = self.open_pit(index).await?;
        if pit.is_none() {
            tracing::warn!(
                index,
                "the cluster has no point-in-time API: reading in `_id` order with search_after, which is not a snapshot (documents written during the migration may be missed or read in their newer version)"
            );
        }
        let mut pit_id = pit.as_ref().map(|(_, id)| id.clone());
        let result = self.scan(index, &query, &mut pit_id, path, progress).await;
        // Closed whatever the scan did; the id may have changed with every page.
        if let (Some((api, _)), Some(id)) = (&pit, &pit_id) {
            let closed = self.close_pit(*api, id).await;
            if let Err(e) = &closed {
                tracing::warn!(index, error = %e, "could not delete the point in time; it expires by itself after {KEEP_ALIVE}");
            }
            if result.is_ok() {
                closed?;
            }
        }
        result.map(|(written, tombstones)| ScanOutcome {
            written,
            tombstones,
            point_in_time: pit.is_some(),
        })
    }

    async fn scan(
        &self,
        index: &str,
        query: &Value,
        pit_id: &mut Option<String>,
        path: &Path,
        progress: &indicatif::ProgressBar,
    ) -> Result<(u64, u64)> {
        let mut out = PageWriter::create(path)?;
        let mut after: Option<Value> = None;
        let mut tombstones = 0u64;
        let what = format!("searching `{index}`");
        loop {
            let mut body = json!({
                "size": self.page_size,
                "query": query,
                "track_total_hits": false,
            });
            let segments: Vec<&str> = match pit_id.as_deref() {
                Some(id) => {
                    body["pit"] = json!({"id": id, "keep_alive": KEEP_ALIVE});
                    body["sort"] = json!([{"_shard_doc": "asc"}]);
                    vec!["_search"]
                }
                None => {
                    body["sort"] = json!([{"_id": "asc"}]);
                    vec![index, "_search"]
                }
            };
            if let Some(a) = after.take() {
                body["search_after"] = a;
            }
            let page = self
                .client
                .request_json(Method::POST, &segments, &[], Some(&body), &what)
                .await
                .map_err(os_error)?;
            if let Some(id) = page["pit_id"].as_str().or(page["id"].as_str()) {
                if pit_id.is_some() {
                    *pit_id = Some(id.to_string());
                }
            }
            let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            let mut lines = Vec::with_capacity(hits.len());
            for hit in &hits {
                let id = hit["_id"].as_str().ok_or_else(|| {
                    Error::Other(format!(
                        "opensearch source: a hit of `{index}` has no `_id`"
                    ))
                })?;
                let source = hit.get("_source").cloned().unwrap_or(json!({}));
                if is_tsunagu_tombstone(id, &source) {
                    tombstones += 1;
                    continue;
                }
                let properties = match source {
                    Value::Object(m) => m,
                    _ => Default::default(),
                };
                lines.push(node_line(id, index, properties));
            }
            progress.inc(lines.len() as u64);
            out.write_page(lines).await?;
            match hits.last().map(|h| h["sort"].clone()) {
                Some(sort) if hits.len() >= self.page_size as usize && sort.is_array() => {
                    after = Some(sort)
                }
                _ => break,
            }
        }
        Ok((out.finish().await?, tombstones))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tsunagu_tombstones_are_skipped() {
        let tomb = json!({"kind": "tombstone", "version": 3, "sort_hash": 1, "key": "deal-1|deal"});
        assert!(is_tsunagu_tombstone("deal-1|deal", &tomb));
        // A legacy document that happens to say `kind: tombstone` is data.
        assert!(!is_tsunagu_tombstone("42", &json!({"kind": "tombstone"})));
        assert!(!is_tsunagu_tombstone(
            "deal-1|deal",
            &json!({"kind": "deal", "version": 3, "sort_hash": 1})
        ));
    }
}

//! The Elasticsearch / OpenSearch sink of tsunagu: applies change records to an index
//! over HTTP, with the same documents, version guard and tombstones as the embedded index
//! (`tsunagu-embedded-index`), so that queries mean the same on both.
//!
//! - [`config`](mod@config): [`OpenSearchConfig`] (the `[sinks.NAME] type = "opensearch"`
//!   table), [`Refresh`], [`Analyzer`], and its pure `validate`.
//! - [`sink`](mod@sink): [`OpenSearchSink`]: the HTTP client (basic auth or API key, TLS by
//!   rustls), index creation on start, the [`tsunagu_engine::ports::Sink`] implementation,
//!   `check()` for `tsunagu check`, and the read-back API (`live_versions`,
//!   `held_version`, `refresh`).
//! - [`search`](mod@search): [`OpenSearchSearch`], the service's
//!   [`tsunagu_service::ports::SearchIndex`] over the index, with the embedded index's
//!   filters, text matching, order, cursors and aggregations.
//! - [`analysis`](mod@analysis): the Japanese analyzer of the index settings, equivalent
//!   to the embedded tokenizer, and its client-side half for query building.
//! - [`drift`](mod@drift): the sink as the index side of drift detection and repair
//!   ([`tsunagu_engine::drift::VersionDigest`]): digests folded from `search_after` pages,
//!   held versions by real-time `_mget`.
//! - [`bulk`](mod@bulk): the bulk API without I/O: splitting batches by count and bytes,
//!   and mapping each item of a response (201/200 applied, 409 stale = success, 429/5xx
//!   retryable, 400 permanent) and a whole failed request to an outcome.
//! - [`document`](mod@document): document ids from item keys, the documents of entities
//!   and tombstones, and the index settings and mapping (Japanese analysis by `cjk`,
//!   `cjk_icu` or `kuromoji`, and the memo's word fields that a dictionary adds,
//!   analyzed by tsunagu itself with `tsunagu-dictionary`).
//! - [`secret`](mod@secret): [`Secret`] and [`redact_url`]: credentials never reach logs or
//!   errors.
//! - [`error`](mod@error): [`OpenSearchError`].
//!
//! Versions: every document is written with `version_type = external` and the item's
//! version, so the cluster itself refuses anything not newer than what it holds (409,
//! counted as success). Deletions write a tombstone document (`kind = "tombstone"`) at the
//! deletion's version instead of deleting, so a stale replay cannot resurrect the item;
//! searches must filter `kind: tombstone` out.

pub mod analysis;
pub mod bulk;
pub mod config;
pub mod document;
pub mod drift;
pub mod error;
pub mod search;
pub mod secret;
pub mod sink;

pub use config::{Analyzer, OpenSearchConfig, Refresh};
pub use error::OpenSearchError;
/// The HTTP method of [`OpenSearchSink::request_json`].
pub use reqwest::Method;
pub use search::OpenSearchSearch;
pub use secret::{redact_url, Secret};
pub use sink::{ClusterInfo, OpenSearchSink};

//! [`OpenSearchSink`]: the HTTP client (auth, TLS, timeouts), index creation on start,
//! the [`Sink`] implementation (bulk requests with external versions and tombstones), the
//! connectivity check and the read-back API (`live_versions`, `held_version`, `refresh`).

use crate::bulk::{
    classify_request_failure, error_detail, parse_bulk_response, split_chunks, ItemOutcome,
    RequestFailure,
};
use crate::config::{OpenSearchConfig, Refresh};
use crate::document::{
    doc_id, entity_doc, index_body, tombstone_doc, TextFields, KIND_TOMBSTONE, MAX_ID_BYTES,
    REQUIRED_FIELDS, SEARCH_FIELDS, WORDS_META,
};
use crate::error::{chain, OpenSearchError};
use crate::secret::{redact_url, Secret};
use async_trait::async_trait;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tsunagu_dictionary::Dictionary;
use tsunagu_domain::{ChangeKind, ChangeRecord, Entity, ItemKey, Version};
use tsunagu_engine::ports::{RecordFailure, Sink, SinkError};

/// Documents per page when reading every document back.
pub const LIVE_VERSIONS_PAGE: usize = 1_000;

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// The whole header value, `ApiKey <key>`, marked sensitive.
    ApiKey(HeaderValue),
}

/// What `GET /` told about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `opensearch` or `elasticsearch`.
    pub distribution: String,
    pub version: String,
    /// Whether the configured index exists yet ([`OpenSearchSink::connect`] creates it).
    pub index_exists: bool,
}

/// An Elasticsearch or OpenSearch index as a [`Sink`].
///
/// Every document carries its item's version as an *external version* (`version_type =
/// external`): the cluster writes it only if it is strictly greater than the version it
/// holds, and answers 409 otherwise, which this sink counts as success. That is exactly
/// the port's guard (a version not newer than what is held changes nothing), enforced by
/// the cluster per document, atomically, with no read-before-write, across any number of
/// concurrent writers. (`external_gte` would let an equal version rewrite the document:
/// harmless for true replays but not the contract.) A deletion writes a tombstone
/// document at the deletion's version, never a bare delete, so a stale replay of an older
/// insert meets a higher version and is refused.
#[derive(Clone)]
pub struct OpenSearchSink {
    http: reqwest::Client,
    /// The cluster's URL, ending in `/`, without credentials.
    base: url::Url,
    /// The URL as messages show it.
    shown: String,
    auth: Auth,
    config: OpenSearchConfig,
    /// The Japanese word analysis of the memo (`dictionary` in the config), see
    /// [`crate::document`].
    words: Option<Arc<Dictionary>>,
}

impl std::fmt::Debug for OpenSearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchSink")
            .field("url", &self.shown)
            .field("index", &self.config.index)
            .finish_non_exhaustive()
    }
}

/// A failed request: no answer, or an answer with a failure status.
enum CallError {
    Unreachable(String),
    Status(u16, Vec<u8>),
}

impl OpenSearchSink {
    /// Builds the client: validates the config, reads secrets from the environment and the
    /// CA file. No request is sent (see [`OpenSearchSink::check`] and
    /// [`OpenSearchSink::connect`]).
    pub fn new(config: &OpenSearchConfig) -> Result<Self, OpenSearchError> {
        config.validate("")?;
        let mut base = url::Url::parse(&config.url)
            .map_err(|e| OpenSearchError::Setup(format!("url: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let shown = redact_url(base.as_str());
        let from_env = |var: &str, what: &str| {
            std::env::var(var).map(Secret::new).map_err(|_| {
                OpenSearchError::Setup(format!(
                    "the environment variable {var} (named by `{what}`) is not set"
                ))
            })
        };
        let password = match (&config.password, &config.password_env) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(var)) => Some(from_env(var, "password_env")?),
            (None, None) => None,
        };
        let api_key = match (&config.api_key, &config.api_key_env) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(var)) => Some(from_env(var, "api_key_env")?),
            (None, None) => None,
        };
        let auth = match (&config.username, password, api_key) {
            (Some(username), Some(password), _) => Auth::Basic {
                username: username.clone(),
                password,
            },
            (_, _, Some(key)) => {
                let mut value = HeaderValue::from_str(&format!("ApiKey {}", key.expose()))
                    .map_err(|_| {
                        OpenSearchError::Setup(
                            "the API key holds characters not allowed in an HTTP header".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Auth::ApiKey(value)
            }
            _ => Auth::None,
        };
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)));
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                OpenSearchError::Setup(format!("ca_cert: cannot read {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                OpenSearchError::Setup(format!(
                    "ca_cert: {} is not a PEM certificate bundle: {}",
                    path.display(),
                    chain(&e)
                ))
            })?;
            if certs.is_empty() {
                return Err(OpenSearchError::Setup(format!(
                    "ca_cert: {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.danger_insecure_skip_verify {
            tracing::warn!(
                url = %shown,
                "danger_insecure_skip_verify is set: TLS certificates are NOT checked"
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| {
            OpenSearchError::Setup(format!(
                "cannot build the HTTP client: {}",
                chain(&e.without_url())
            ))
        })?;
        Ok(Self {
            http,
            base,
            shown,
            auth,
            config: config.clone(),
            words: None,
        })
    }

    /// The client writing and reading the memo's word fields with `dictionary`, loaded
    /// from the config's `dictionary` sources (the caller loads it, with the cache
    /// directory it keeps compiled dictionaries in). Before any request.
    pub fn with_words(mut self, dictionary: Option<Arc<Dictionary>>) -> Self {
        self.words = dictionary;
        self
    }

    /// The dictionary of the memo's word fields, if any.
    pub fn words(&self) -> Option<&Arc<Dictionary>> {
        self.words.as_ref()
    }

    /// How documents' text fields are written ([`crate::document::TextFields`]).
    pub(crate) fn text_fields(&self) -> TextFields<'_> {
        TextFields {
            fold: self.config.analyzer.folds(),
            words: self.words.as_deref(),
        }
    }

    /// Fails when the config names a dictionary that was not loaded into the client (see
    /// [`OpenSearchSink::with_words`]): documents would lack the word fields.
    pub(crate) fn check_words_loaded(&self) -> Result<(), OpenSearchError> {
        match (&self.config.dictionary, &self.words) {
            (Some(source), None) => Err(OpenSearchError::Setup(format!(
                "`dictionary` names {} but the client was built without loading it (with_words)",
                source.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Checks that the index (whose `_mapping` answer is `body`) was built with this
    /// client's word analysis ([`crate::document::WORDS_META`]): an index read or written
    /// with another would miss or mix word fields.
    pub(crate) fn check_index_words(
        &self,
        body: &Value,
        what: &str,
    ) -> Result<(), OpenSearchError> {
        let index = &self.config.index;
        let built = body
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(|i| i["mappings"]["_meta"][WORDS_META].as_str());
        let wanted = self.words.as_ref().map(|d| d.analysis_id());
        let rebuild = "write into a new index (set `index`) and fill it with `tsunagu backfill` (see docs/opensearch.md)";
        let problem = match (built, wanted.as_deref()) {
            (None, None) => return Ok(()),
            (Some(b), Some(w)) if b == w => return Ok(()),
            (None, Some(_)) => format!(
                "index {index:?} was built without Japanese word analysis and `dictionary` is set: {rebuild}, or remove `dictionary`"
            ),
            (Some(b), None) => format!(
                "index {index:?} was built with Japanese word analysis ({b}) and `dictionary` is not set: set it to the same IPADIC sources, or {rebuild}"
            ),
            (Some(b), Some(w)) => format!(
                "index {index:?} was built with another dictionary or word analysis ({b}, this config gives {w}): {rebuild}, or set `dictionary` back to the sources it was built with"
            ),
        };
        Err(self.unusable(what, problem))
    }

    /// [`OpenSearchSink::new`], then creates the index (settings, Japanese analyzer,
    /// mapping) if it is missing, or checks that the existing one has the fields the sink
    /// needs. Idempotent, and safe when several processes start at once.
    pub async fn connect(config: &OpenSearchConfig) -> Result<Self, OpenSearchError> {
        let sink = Self::new(config)?;
        sink.ensure_index().await?;
        Ok(sink)
    }

    pub fn config(&self) -> &OpenSearchConfig {
        &self.config
    }

    /// Checks connectivity, credentials and the server's version, and whether the index
    /// exists; changes nothing (for `tsunagu check`).
    pub async fn check(&self) -> Result<ClusterInfo, OpenSearchError> {
        let body = self.call_json(Method::GET, &[], &[], None, "GET /").await?;
        let number = body["version"]["number"].as_str().unwrap_or_default();
        let distribution = body["version"]["distribution"]
            .as_str()
            .unwrap_or("elasticsearch")
            .to_string();
        let major: u32 = number
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let supported = match distribution.as_str() {
            "opensearch" => major >= 1,
            _ => major >= 7,
        };
        if !supported {
            return Err(self.unusable(
                "GET /",
                format!(
                    "{distribution} {number:?} is not supported; use OpenSearch 1.0+ or Elasticsearch 7.0+"
                ),
            ));
        }
        let index_exists = self.index_exists().await?;
        Ok(ClusterInfo {
            distribution,
            version: number.to_string(),
            index_exists,
        })
    }

    async fn index_exists(&self) -> Result<bool, OpenSearchError> {
        let index = self.config.index.clone();
        match self.call(Method::HEAD, &[&index], &[], None).await {
            Ok(_) => Ok(true),
            Err(CallError::Status(404, _)) => Ok(false),
            Err(e) => Err(self.error(format!("HEAD /{index}"), e)),
        }
    }

    /// Creates the index if missing; otherwise checks its mapping.
    pub async fn ensure_index(&self) -> Result<(), OpenSearchError> {
        self.check_words_loaded()?;
        let index = self.config.index.clone();
        let what = format!("PUT /{index}");
        if !self.index_exists().await? {
            let body = serde_json::to_vec(&index_body(&self.config, self.words.as_deref()))
                .unwrap_or_default();
            match self
                .call(
                    Method::PUT,
                    &[&index],
                    &[],
                    Some((body, "application/json")),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(url = %self.shown, index = %index, analyzer = self.config.analyzer.as_str(), "created the search index");
                    return Ok(());
                }
                // Another process created it between our check and our create.
                Err(CallError::Status(400, body))
                    if error_detail(&body).starts_with("resource_already_exists_exception") => {}
                Err(CallError::Status(400, body))
                    if error_detail(&body).contains("icu_normalizer") =>
                {
                    return Err(self.unusable(
                        &what,
                        format!(
                            "the icu_normalizer char filter is not available ({}); install the analysis-icu plugin on every node or set analyzer = \"cjk\"",
                            error_detail(&body)
                        ),
                    ));
                }
                Err(CallError::Status(400, body)) if error_detail(&body).contains("kuromoji") => {
                    return Err(self.unusable(
                        &what,
                        format!(
                            "the kuromoji analyzer is not available ({}); install the analysis-kuromoji plugin on every node or set analyzer = \"cjk\"",
                            error_detail(&body)
                        ),
                    ));
                }
                Err(e) => return Err(self.error(what, e)),
            }
        }
        let properties = self.check_mapping().await?;
        self.ensure_search_fields(&properties).await
    }

    /// Adds the fields searches sort on ([`SEARCH_FIELDS`]) to an index created before
    /// they existed (adding fields to a mapping is allowed in place). Documents written
    /// before lack them (and sort last) until the index is copied with the `_reindex`
    /// script of `docs/opensearch.md`: a backfill would not fill them, since the version
    /// guard refuses rewriting a document at its own version.
    async fn ensure_search_fields(&self, properties: &Value) -> Result<(), OpenSearchError> {
        let missing: serde_json::Map<String, Value> = SEARCH_FIELDS
            .iter()
            .filter(|(field, _)| properties[*field]["type"].as_str().is_none())
            .map(|(field, kind)| (field.to_string(), json!({ "type": kind })))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let index = self.config.index.clone();
        let what = format!("PUT /{index}/_mapping");
        let fields: Vec<String> = missing.keys().cloned().collect();
        self.request_json(
            Method::PUT,
            &[&index, "_mapping"],
            &[],
            Some(&json!({ "properties": missing })),
            &what,
        )
        .await?;
        tracing::warn!(
            url = %self.shown,
            index = %index,
            fields = %fields.join(","),
            "added the search fields to the index mapping; older documents lack them until the index is copied with the _reindex of docs/opensearch.md"
        );
        Ok(())
    }

    /// Checks the fields the sink needs; returns the index's mapped properties.
    async fn check_mapping(&self) -> Result<Value, OpenSearchError> {
        let index = self.config.index.clone();
        let what = format!("GET /{index}/_mapping");
        let body = self
            .call_json(Method::GET, &[&index, "_mapping"], &[], None, &what)
            .await?;
        self.check_index_words(&body, &what)?;
        // `{"<index or concrete name>": {"mappings": {"properties": ...}}}`
        let properties = body
            .as_object()
            .and_then(|m| m.values().next())
            .map(|i| &i["mappings"]["properties"]);
        for (field, kind) in REQUIRED_FIELDS {
            let found = properties.and_then(|p| p[field]["type"].as_str());
            if found != Some(kind) {
                return Err(self.unusable(
                    &what,
                    format!(
                        "index {index:?} exists but field `{field}` is {} instead of {kind}; it was not created by tsunagu: set another `index` or delete it",
                        found.map_or("missing".to_string(), |f| format!("{f:?}"))
                    ),
                ));
            }
        }
        Ok(properties.cloned().unwrap_or(Value::Null))
    }

    /// Makes everything written so far searchable now (`POST /<index>/_refresh`).
    pub async fn refresh(&self) -> Result<(), OpenSearchError> {
        let index = self.config.index.clone();
        self.call(Method::POST, &[&index, "_refresh"], &[], None)
            .await
            .map(|_| ())
            .map_err(|e| self.error(format!("POST /{index}/_refresh"), e))
    }

    /// The version the index holds for `key` and whether it is a tombstone (a real-time
    /// get: sees writes not yet refreshed).
    pub async fn held_version(
        &self,
        key: &ItemKey,
    ) -> Result<Option<(Version, bool)>, OpenSearchError> {
        let index = self.config.index.clone();
        let id = doc_id(key);
        let what = format!("GET /{index}/_doc/<{key}>");
        let body = match self
            .call(Method::GET, &[&index, "_doc", &id], &[], None)
            .await
        {
            Ok(body) => body,
            Err(CallError::Status(404, body))
                if serde_json::from_slice::<Value>(&body)
                    .is_ok_and(|b| b["found"] == Value::Bool(false)) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(self.error(what, e)),
        };
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| self.unusable(&what, format!("the answer is not JSON: {e}")))?;
        if body["found"] != Value::Bool(true) {
            return Ok(None);
        }
        let version = body["_source"]["version"]
            .as_u64()
            .ok_or_else(|| self.unusable(&what, "the document has no `version`".into()))?;
        let deleted = body["_source"]["kind"].as_str() == Some(KIND_TOMBSTONE);
        Ok(Some((Version(version), deleted)))
    }

    /// Deletes the document at `key` if it holds a version older than `version`, guarded
    /// by its sequence number so a write the pipeline makes meanwhile wins (drift repair:
    /// a document written outside the sink may carry an internal `_version` that would
    /// refuse the primary's version). Returns whether a document was deleted.
    async fn delete_if_older(
        &self,
        key: &ItemKey,
        version: Version,
    ) -> Result<bool, OpenSearchError> {
        let index = self.config.index.clone();
        let id = doc_id(key);
        let what = format!("GET /{index}/_doc/<{key}>");
        for _ in 0..3 {
            let body = match self
                .call(Method::GET, &[&index, "_doc", &id], &[], None)
                .await
            {
                Ok(body) => body,
                Err(CallError::Status(404, _)) => return Ok(false),
                Err(e) => return Err(self.error(what, e)),
            };
            let doc: Value = serde_json::from_slice(&body)
                .map_err(|e| self.unusable(&what, format!("the answer is not JSON: {e}")))?;
            if doc["found"] != Value::Bool(true) {
                return Ok(false);
            }
            if doc["_source"]["version"]
                .as_u64()
                .is_some_and(|held| held >= version.0)
            {
                return Ok(false);
            }
            let (Some(seq_no), Some(term)) =
                (doc["_seq_no"].as_u64(), doc["_primary_term"].as_u64())
            else {
                return Err(
                    self.unusable(&what, "the answer has no _seq_no / _primary_term".into())
                );
            };
            let (seq_no, term) = (seq_no.to_string(), term.to_string());
            match self
                .call(
                    Method::DELETE,
                    &[&index, "_doc", &id],
                    &[("if_seq_no", &seq_no), ("if_primary_term", &term)],
                    None,
                )
                .await
            {
                Ok(_) => return Ok(true),
                // Written meanwhile: read it again.
                Err(CallError::Status(409, _)) => continue,
                Err(CallError::Status(404, _)) => return Ok(false),
                Err(e) => return Err(self.error(format!("DELETE /{index}/_doc/<{key}>"), e)),
            }
        }
        Ok(false)
    }

    /// Every live (non-tombstone) document's key and version, sorted by key: read in
    /// pages of [`LIVE_VERSIONS_PAGE`] with `search_after` on the unique `key` field, so
    /// memory on the cluster stays flat for millions of documents. Not a snapshot: a
    /// document written during the scan may show its old or new version.
    pub async fn live_versions(&self) -> Result<Vec<(ItemKey, Version)>, OpenSearchError> {
        self.live_versions_paged(LIVE_VERSIONS_PAGE).await
    }

    /// [`OpenSearchSink::live_versions`] with another page size.
    pub async fn live_versions_paged(
        &self,
        page_size: usize,
    ) -> Result<Vec<(ItemKey, Version)>, OpenSearchError> {
        let mut out = Vec::new();
        self.for_each_live_version(page_size, |key, version| out.push((key, version)))
            .await?;
        Ok(out)
    }

    /// One JSON request to any endpoint of the cluster, with this client's auth, TLS and
    /// timeouts; the answer's JSON when the status is 2xx. For readers that need calls the
    /// sink itself does not make (the migration's point-in-time scan of an index). Errors
    /// name the redacted URL and `what`.
    pub async fn request_json(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, OpenSearchError> {
        let body = match body {
            Some(b) => Some((
                serde_json::to_vec(b)
                    .map_err(|e| self.unusable(what, format!("request body: {e}")))?,
                "application/json",
            )),
            None => None,
        };
        self.call_json(method, segments, query, body, what).await
    }

    // --- requests -------------------------------------------------------------------

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // Pushing a segment percent-encodes it: ids may hold '/', '?', '#', ...
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One request; the answer's body when the status is 2xx.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<Vec<u8>, CallError> {
        let mut request = self.http.request(method, self.url(segments, query));
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            Auth::ApiKey(value) => request.header(AUTHORIZATION, value.clone()),
        };
        if let Some((body, content_type)) = body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
                .body(body);
        }
        // reqwest errors carry the URL; ours has no credentials, but strip it anyway so
        // every message names the URL one way (redacted, by the caller).
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Unreachable(chain(&e.without_url())))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Unreachable(chain(&e.without_url())))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(CallError::Status(status.as_u16(), bytes.to_vec()))
        }
    }

    async fn call_json(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<(Vec<u8>, &'static str)>,
        what: &str,
    ) -> Result<Value, OpenSearchError> {
        let bytes = self
            .call(method, segments, query, body)
            .await
            .map_err(|e| self.error(what.to_string(), e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.unusable(what, format!("the answer is not JSON: {e}")))
    }

    fn error(&self, what: String, e: CallError) -> OpenSearchError {
        match e {
            CallError::Unreachable(message) => OpenSearchError::Unreachable {
                url: self.shown.clone(),
                what,
                message,
            },
            CallError::Status(status, body) => {
                let message = match classify_request_failure(status, &body) {
                    RequestFailure::TooLarge => format!("{status} request too large"),
                    RequestFailure::Failed { message, .. } => message,
                };
                OpenSearchError::Status {
                    url: self.shown.clone(),
                    what,
                    status,
                    message,
                }
            }
        }
    }

    fn unusable(&self, what: &str, message: String) -> OpenSearchError {
        OpenSearchError::Unusable {
            url: self.shown.clone(),
            what: what.to_string(),
            message,
        }
    }

    /// Sends one bulk request: each item's outcome, or why the whole request failed.
    async fn bulk(&self, body: Vec<u8>, items: usize) -> Result<Vec<ItemOutcome>, RequestFailure> {
        let index = self.config.index.clone();
        let refresh = self.config.refresh.as_param();
        match self
            .call(
                Method::POST,
                &[&index, "_bulk"],
                &[("refresh", refresh)],
                Some((body, "application/x-ndjson")),
            )
            .await
        {
            Ok(answer) => parse_bulk_response(&answer, items).map_err(|message| {
                RequestFailure::Failed {
                    // The items may or may not have been written; the version guard makes
                    // a retry safe either way.
                    retryable: true,
                    message,
                }
            }),
            Err(CallError::Unreachable(message)) => Err(RequestFailure::Failed {
                retryable: true,
                message: format!("cannot reach {}: {message}", self.shown),
            }),
            Err(CallError::Status(status, body)) => match classify_request_failure(status, &body) {
                RequestFailure::TooLarge => Err(RequestFailure::TooLarge),
                RequestFailure::Failed { retryable, message } => Err(RequestFailure::Failed {
                    retryable,
                    message: format!("bulk request to {}: {message}", self.shown),
                }),
            },
        }
    }
}

/// One record as bulk NDJSON (action line and document line), or why it can never be
/// written.
fn encode(record: &ChangeRecord, now_us: i64, text: TextFields<'_>) -> Result<Vec<u8>, String> {
    let version = record.version.0;
    if i64::try_from(version).is_err() {
        return Err(format!(
            "version {version} of {} is larger than OpenSearch's external versions allow (2^63 - 1)",
            record.key
        ));
    }
    let id = doc_id(&record.key);
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "the key {} makes a document id of {} bytes; OpenSearch allows {MAX_ID_BYTES}",
            record.key,
            id.len()
        ));
    }
    let doc = match record.kind {
        ChangeKind::Remove => {
            tombstone_doc(&record.key, record.version, record.committed_at_us, now_us)
        }
        ChangeKind::Insert | ChangeKind::Modify => {
            let image = record.new_image.as_ref().ok_or_else(|| {
                format!(
                    "new_image: missing on a {} record of {}",
                    record.kind.as_str(),
                    record.key
                )
            })?;
            let entity = Entity::from_json(&image.body)
                .map_err(|e| format!("new_image.body.{}: {}", e.path, e.message))?;
            entity_doc(
                &record.key,
                record.version,
                &entity,
                record.committed_at_us,
                now_us,
                text,
            )
        }
    };
    let action = json!({"index": {"_id": id, "version": version, "version_type": "external"}});
    let mut line = serde_json::to_vec(&action).map_err(|e| e.to_string())?;
    line.push(b'\n');
    serde_json::to_writer(&mut line, &doc).map_err(|e| e.to_string())?;
    line.push(b'\n');
    Ok(line)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait]
impl Sink for OpenSearchSink {
    /// Documents written outside the sink carry an internal `_version` the cluster
    /// compares external versions with, so a repair first deletes any held document older
    /// than its record (guarded by its sequence number), refreshes so deleted documents'
    /// versions are forgotten (`index.gc_deletes = 0s` on indexes this sink creates), then
    /// applies the records as usual.
    async fn repair(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        let failed = |e: OpenSearchError| SinkError::Batch {
            retryable: true,
            message: e.to_string(),
        };
        for record in records {
            self.delete_if_older(&record.key, record.version)
                .await
                .map_err(failed)?;
        }
        // Also forgets deletions made outside the sink before this repair.
        self.refresh().await.map_err(failed)?;
        self.apply(records).await
    }

    /// Writes the batch in bulk requests of at most `max_bulk_docs` documents and
    /// `max_bulk_bytes` bytes, one after the other in batch order (so an item's changes
    /// reach the cluster in order). With `refresh = wait_for | true` the records are
    /// searchable when this returns; they are durable too, since the cluster answers only
    /// after its translog is fsynced (`index.translog.durability = request`, set on the
    /// index this sink creates), so the default marks are right.
    async fn apply(&self, records: &[ChangeRecord]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = now_us();
        let text = self.text_fields();
        let mut failures: Vec<RecordFailure> = Vec::new();
        // (index in `records`, NDJSON lines)
        let mut items: Vec<(usize, Vec<u8>)> = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            match encode(record, now, text) {
                Ok(lines) => items.push((index, lines)),
                Err(message) => {
                    // Like the embedded index: a record the index can never accept fails
                    // only if it is not stale (a redriven dead letter that is now older
                    // than what the index holds is a harmless no-op).
                    let stale = matches!(
                        self.held_version(&record.key).await,
                        Ok(Some((held, _))) if held >= record.version
                    );
                    if !stale {
                        failures.push(RecordFailure {
                            index,
                            retryable: false,
                            message,
                        });
                    }
                }
            }
        }
        let sizes: Vec<usize> = items.iter().map(|(_, lines)| lines.len()).collect();
        let mut chunks: VecDeque<_> = split_chunks(
            &sizes,
            self.config.max_bulk_docs,
            self.config.max_bulk_bytes,
        )
        .into();
        let mut sent_any = false;
        while let Some(chunk) = chunks.pop_front() {
            let body: Vec<u8> = items[chunk.clone()]
                .iter()
                .flat_map(|(_, lines)| lines.iter().copied())
                .collect();
            match self.bulk(body, chunk.len()).await {
                Ok(outcomes) => {
                    sent_any = true;
                    for ((index, _), outcome) in items[chunk].iter().zip(outcomes) {
                        if let ItemOutcome::Failed { retryable, message } = outcome {
                            failures.push(RecordFailure {
                                index: *index,
                                retryable,
                                message,
                            });
                        }
                    }
                }
                Err(RequestFailure::TooLarge) if chunk.len() > 1 => {
                    let middle = chunk.start + chunk.len() / 2;
                    tracing::warn!(
                        documents = chunk.len(),
                        "bulk request too large for the cluster (413); splitting it"
                    );
                    chunks.push_front(middle..chunk.end);
                    chunks.push_front(chunk.start..middle);
                }
                Err(RequestFailure::TooLarge) => {
                    sent_any = true;
                    failures.push(RecordFailure {
                        index: items[chunk.start].0,
                        retryable: false,
                        message: "413 the document alone is larger than the cluster accepts (http.max_content_length)".into(),
                    });
                }
                Err(RequestFailure::Failed { retryable, message }) => {
                    if !sent_any {
                        // Nothing of the batch reached the index.
                        return Err(SinkError::Batch { retryable, message });
                    }
                    // Earlier chunks were applied: report the rest record by record.
                    // Chunks are consecutive, so the rest is everything from this one on.
                    for (index, _) in &items[chunk.start..] {
                        failures.push(RecordFailure {
                            index: *index,
                            retryable,
                            message: message.clone(),
                        });
                    }
                    break;
                }
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(|f| f.index);
        failures.dedup_by_key(|f| f.index);
        Err(SinkError::Records(failures))
    }
}

impl OpenSearchSink {
    /// The refresh policy in force.
    pub fn refresh_policy(&self) -> Refresh {
        self.config.refresh
    }

    /// The bulk request bodies [`Sink::apply`] sends for `records` (NDJSON, split within
    /// the size limits; records the index can never accept left out), so that a raw
    /// loader can send the very same documents (`tsunagu bench limits`).
    pub fn bulk_bodies(&self, records: &[ChangeRecord]) -> Vec<Vec<u8>> {
        let now = now_us();
        let text = self.text_fields();
        let items: Vec<Vec<u8>> = records
            .iter()
            .filter_map(|record| encode(record, now, text).ok())
            .collect();
        let sizes: Vec<usize> = items.iter().map(Vec::len).collect();
        split_chunks(
            &sizes,
            self.config.max_bulk_docs,
            self.config.max_bulk_bytes,
        )
        .into_iter()
        .map(|chunk| items[chunk].concat())
        .collect()
    }

    /// Sends one bulk body as it is, with the sink's refresh policy, and checks only the
    /// HTTP status: the cluster and the transport without any of the sink's own work
    /// (encoding, per-item outcomes), the ceiling [`Sink::apply`] is measured against.
    pub async fn send_raw_bulk(&self, body: Vec<u8>) -> Result<(), OpenSearchError> {
        let index = self.config.index.clone();
        self.call(
            Method::POST,
            &[&index, "_bulk"],
            &[("refresh", self.config.refresh.as_param())],
            Some((body, "application/x-ndjson")),
        )
        .await
        .map(drop)
        .map_err(|e| self.error("a raw bulk request".into(), e))
    }

    /// Deletes the sink's index (a scratch index of a benchmark).
    pub async fn delete_index(&self) -> Result<(), OpenSearchError> {
        let index = self.config.index.clone();
        self.call(Method::DELETE, &[&index], &[], None)
            .await
            .map(drop)
            .map_err(|e| self.error(format!("deleting the index {index}"), e))
    }
}

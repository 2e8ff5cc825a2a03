//! [`OpenSearchConfig`]: what the `[sinks.NAME] type = "opensearch"` table holds, with its
//! defaults and a pure [`OpenSearchConfig::validate`] (no I/O: environment variables and
//! the CA file are read by [`crate::OpenSearchSink::connect`]).

use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use tsunagu_engine::{check_bounds, ConfigError};

pub const DEFAULT_INDEX: &str = "tsunagu";
pub const DEFAULT_MAX_BULK_DOCS: usize = 1_000;
pub const DEFAULT_MAX_BULK_BYTES: usize = 5 << 20;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Elasticsearch's and OpenSearch's default `http.max_content_length`: a larger bulk
/// request is refused by the cluster.
pub const MAX_BULK_BYTES_LIMIT: usize = 100 << 20;
/// The smallest bulk request size: one small document.
pub const MIN_BULK_BYTES_LIMIT: usize = 1_024;
/// The most documents in one bulk request: ten times the batch size a consumer may
/// send, far past where bulk throughput stops growing.
pub const MAX_BULK_DOCS_LIMIT: usize = 100_000;
/// One request's timeout: 100 ms at least, 10 minutes at most (a `wait_for` refresh
/// under load takes seconds, not minutes).
pub const MIN_REQUEST_TIMEOUT_MS: u64 = 100;
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 600_000;
/// Primary shards of a new index: the clusters' own limit is 1024.
pub const MAX_NUMBER_OF_SHARDS: u32 = 1_024;
/// Replicas of a new index: more than 32 copies is a misconfiguration, not redundancy.
pub const MAX_NUMBER_OF_REPLICAS: u32 = 32;

/// When documents written by a bulk request become searchable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refresh {
    /// `refresh=false`: at the index's next periodic refresh (`index.refresh_interval`,
    /// 1 s by default). Highest throughput, but `apply` returns before the records are
    /// visible, so the engine's lag figures understate write → searchable time.
    False,
    /// `refresh=wait_for`: the request returns once a refresh has made the documents
    /// visible (read-your-writes without forcing extra refreshes). The default.
    #[default]
    WaitFor,
    /// `refresh=true`: forces a refresh of the touched shards at once. Lowest latency,
    /// but many small segments under load.
    True,
}

impl Refresh {
    pub fn as_param(self) -> &'static str {
        match self {
            Refresh::False => "false",
            Refresh::WaitFor => "wait_for",
            Refresh::True => "true",
        }
    }
}

/// The analyzer of the Japanese full-text fields (`memo`, `title`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Analyzer {
    /// A custom analyzer equal to the embedded index's tokenizer (NFKC by a `mapping`
    /// char filter, separators, the `standard` tokenizer, `cjk_width`, `lowercase`,
    /// `cjk_bigram`; see [`crate::analysis`]), so searches find the same memos on both.
    /// Works on every cluster, no plugin.
    #[default]
    Cjk,
    /// The same as [`Analyzer::Cjk`] with the ICU plugin's `icu_normalizer` doing NFKC
    /// (complete, where the mapping covers the blocks Japanese text uses): needs the
    /// `analysis-icu` plugin on every node.
    CjkIcu,
    /// `kuromoji` morphological analysis: needs the `analysis-kuromoji` plugin installed
    /// on every node (index creation fails with a clear error otherwise). Finds words
    /// rather than substrings: searches differ from the embedded index's.
    Kuromoji,
}

impl Analyzer {
    /// Whether the adapter sends `memo`, `title` and query text normalized as the embedded
    /// index analyzes it (NFKC, lower case, spelling variants folded): with the bigram
    /// analyzers, yes; kuromoji's morphological analysis needs the text as written.
    pub fn folds(self) -> bool {
        !matches!(self, Analyzer::Kuromoji)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Analyzer::Cjk => "cjk",
            Analyzer::CjkIcu => "cjk_icu",
            Analyzer::Kuromoji => "kuromoji",
        }
    }
}

/// The OpenSearch / Elasticsearch sink's settings. `Debug` shows secrets as `***` and the
/// URL with any embedded credentials redacted.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSearchConfig {
    /// The cluster's URL, `http://` or `https://` (for example `https://search:9200`).
    /// Credentials may not be written into it; use `username`/`password` or `api_key`.
    pub url: String,
    /// The index written to; created on start if missing. Default `tsunagu`.
    #[serde(default = "default_index")]
    pub index: String,
    /// Basic-auth user name (with `password` or `password_env`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password. Prefer `password_env` so that it stays out of files.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The environment variable holding the basic-auth password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// An API key, sent as `Authorization: ApiKey <key>` (the base64 `id:key` pair, or an
    /// encoded key as Elasticsearch prints it). Exclusive with basic auth.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A PEM file with the CA certificate(s) to trust for `https` besides the built-in
    /// web roots (a cluster with a private CA).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// DANGEROUS: accept any TLS certificate, so anyone on the path can read and change
    /// the traffic, credentials included. For a throwaway test cluster only.
    #[serde(default)]
    pub danger_insecure_skip_verify: bool,
    /// `false`, `wait_for` (default) or `true`; see [`Refresh`].
    #[serde(default)]
    pub refresh: Refresh,
    /// The most documents in one bulk request; a larger batch is split. Default 1,000.
    #[serde(default = "default_max_bulk_docs")]
    pub max_bulk_docs: usize,
    /// The most bytes of NDJSON in one bulk request; a larger batch is split (a single
    /// document larger than this goes alone). Default 5 MiB.
    #[serde(default = "default_max_bulk_bytes")]
    pub max_bulk_bytes: usize,
    /// Timeout of one HTTP request, connection included. Default 30,000 ms.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `cjk` (default), `cjk_icu` or `kuromoji`; see [`Analyzer`]. Applies when the index is created.
    #[serde(default)]
    pub analyzer: Analyzer,
    /// Primary shards of a newly created index. Default 1.
    #[serde(default = "default_shards")]
    pub number_of_shards: u32,
    /// Replicas of a newly created index. Default 1.
    #[serde(default = "default_replicas")]
    pub number_of_replicas: u32,
    /// The sources of a MeCab IPADIC dictionary (`apt-get install mecab-ipadic`:
    /// `/usr/share/mecab/dic/ipadic`) for Japanese word analysis of memos, done by tsunagu
    /// and sent as pre-analyzed fields (no cluster plugin needed): whole words stop
    /// matching across word boundaries and okurigana variants meet, as on the embedded
    /// index. Every process writing or searching the index must set the same sources;
    /// setting, unsetting or changing it needs a new index filled by a backfill.
    #[serde(default)]
    pub dictionary: Option<PathBuf>,
}

impl std::fmt::Debug for OpenSearchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchConfig")
            .field("url", &crate::secret::redact_url(&self.url))
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_env", &self.password_env)
            .field("api_key", &self.api_key)
            .field("api_key_env", &self.api_key_env)
            .field("ca_cert", &self.ca_cert)
            .field(
                "danger_insecure_skip_verify",
                &self.danger_insecure_skip_verify,
            )
            .field("refresh", &self.refresh)
            .field("max_bulk_docs", &self.max_bulk_docs)
            .field("max_bulk_bytes", &self.max_bulk_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("analyzer", &self.analyzer)
            .field("number_of_shards", &self.number_of_shards)
            .field("number_of_replicas", &self.number_of_replicas)
            .field("dictionary", &self.dictionary)
            .finish()
    }
}

fn default_index() -> String {
    DEFAULT_INDEX.to_string()
}
fn default_max_bulk_docs() -> usize {
    DEFAULT_MAX_BULK_DOCS
}
fn default_max_bulk_bytes() -> usize {
    DEFAULT_MAX_BULK_BYTES
}
fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}
fn default_shards() -> u32 {
    1
}
fn default_replicas() -> u32 {
    1
}

impl OpenSearchConfig {
    /// A config with every default, for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            index: default_index(),
            username: None,
            password: None,
            password_env: None,
            api_key: None,
            api_key_env: None,
            ca_cert: None,
            danger_insecure_skip_verify: false,
            refresh: Refresh::default(),
            max_bulk_docs: DEFAULT_MAX_BULK_DOCS,
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            analyzer: Analyzer::default(),
            number_of_shards: 1,
            number_of_replicas: 1,
            dictionary: None,
        }
    }

    /// Checks every field without I/O; `prefix` (for example `sinks.search`) goes in front
    /// of field names in the error.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let fail = |name: &str, message: String| {
            Err(ConfigError {
                field: if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                },
                message,
            })
        };
        let shown = crate::secret::redact_url(&self.url);
        let url = match url::Url::parse(&self.url) {
            Ok(url) => url,
            Err(e) => {
                return fail(
                    "url",
                    format!("{shown:?} is not a URL ({e}); write it like https://search:9200"),
                )
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            return fail(
                "url",
                format!("{shown:?} must start with http:// or https://"),
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            return fail(
                "url",
                format!(
                    "{shown:?} carries credentials; move them to `username` and `password_env` (or `api_key_env`)"
                ),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return fail(
                "url",
                format!("{shown:?} must not have a query or fragment"),
            );
        }
        if let Err(message) = check_index_name(&self.index) {
            return fail("index", format!("{:?} {message}", self.index));
        }
        if self.password.is_some() && self.password_env.is_some() {
            return fail(
                "password",
                "and `password_env` are both set; keep one".into(),
            );
        }
        if self.api_key.is_some() && self.api_key_env.is_some() {
            return fail("api_key", "and `api_key_env` are both set; keep one".into());
        }
        let has_password = self.password.is_some() || self.password_env.is_some();
        let has_api_key = self.api_key.is_some() || self.api_key_env.is_some();
        if has_password && self.username.is_none() {
            return fail(
                "username",
                "is missing: a password needs a user name".into(),
            );
        }
        if self.username.is_some() && !has_password {
            return fail(
                "password_env",
                "is missing: basic auth needs `password_env` (or `password`)".into(),
            );
        }
        if self.username.as_deref().is_some_and(str::is_empty) {
            return fail("username", "is empty".into());
        }
        if self.username.is_some() && has_api_key {
            return fail(
                "api_key",
                "and `username` are both set; use basic auth or an API key, not both".into(),
            );
        }
        for (name, var) in [
            ("password_env", &self.password_env),
            ("api_key_env", &self.api_key_env),
        ] {
            if var
                .as_deref()
                .is_some_and(|v| v.is_empty() || v.contains('='))
            {
                return fail(name, "must name an environment variable".into());
            }
        }
        if url.scheme() == "http" {
            if self.ca_cert.is_some() {
                return fail(
                    "ca_cert",
                    "is set but `url` is http://; use https://".into(),
                );
            }
            if self.danger_insecure_skip_verify {
                return fail(
                    "danger_insecure_skip_verify",
                    "is set but `url` is http://; it only applies to https://".into(),
                );
            }
        }
        let name = |n: &str| {
            if prefix.is_empty() {
                n.to_string()
            } else {
                format!("{prefix}.{n}")
            }
        };
        check_bounds(
            name("max_bulk_docs"),
            self.max_bulk_docs,
            1..=MAX_BULK_DOCS_LIMIT,
        )?;
        check_bounds(
            name("max_bulk_bytes"),
            self.max_bulk_bytes,
            MIN_BULK_BYTES_LIMIT..=MAX_BULK_BYTES_LIMIT,
        )?;
        check_bounds(
            name("request_timeout_ms"),
            self.request_timeout_ms,
            MIN_REQUEST_TIMEOUT_MS..=MAX_REQUEST_TIMEOUT_MS,
        )?;
        check_bounds(
            name("number_of_shards"),
            self.number_of_shards,
            1..=MAX_NUMBER_OF_SHARDS,
        )?;
        check_bounds(
            name("number_of_replicas"),
            self.number_of_replicas,
            0..=MAX_NUMBER_OF_REPLICAS,
        )?;
        if self
            .dictionary
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return fail(
                "dictionary",
                "is empty: give the directory of the IPADIC sources (/usr/share/mecab/dic/ipadic after `apt-get install mecab-ipadic`), or leave it out".into(),
            );
        }
        Ok(())
    }
}

/// OpenSearch's and Elasticsearch's rules for index names.
fn check_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1 to 255 bytes long");
    }
    if name == "." || name == ".." {
        return Err("is not a valid index name");
    }
    if name.starts_with(['-', '_', '+', '.']) {
        return Err("must not start with '-', '_', '+' or '.'");
    }
    if name
        .chars()
        .any(|c| c.is_uppercase() || "\\/*?\"<>| ,#:".contains(c))
    {
        return Err("must be lowercase without spaces or any of \\ / * ? \" < > | , # :");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OpenSearchConfig, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(r#"{"url": "http://127.0.0.1:9200"}"#).unwrap();
        assert_eq!(c.index, "tsunagu");
        assert_eq!(c.refresh, Refresh::WaitFor);
        assert_eq!(c.analyzer, Analyzer::Cjk);
        assert_eq!(c.validate("sinks.search"), Ok(()));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = parse(r#"{"url": "http://x:9200", "refresh_policy": "true"}"#).unwrap_err();
        assert!(e.contains("refresh_policy"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let field = |c: &OpenSearchConfig| c.validate("sinks.os").unwrap_err().field;
        let mut c = OpenSearchConfig::new("ftp://x");
        assert_eq!(field(&c), "sinks.os.url");
        c.url = "http://x:9200".into();
        c.index = "Bad Name".into();
        assert_eq!(field(&c), "sinks.os.index");
        c.index = "ok".into();
        c.max_bulk_docs = 0;
        assert_eq!(field(&c), "sinks.os.max_bulk_docs");
        c.max_bulk_docs = 10;
        c.max_bulk_bytes = 10;
        assert_eq!(field(&c), "sinks.os.max_bulk_bytes");
        c.max_bulk_bytes = 4096;
        c.password_env = Some("PW".into());
        assert_eq!(field(&c), "sinks.os.username");
        c.username = Some("u".into());
        c.api_key_env = Some("KEY".into());
        assert_eq!(field(&c), "sinks.os.api_key");
        c.api_key_env = None;
        c.ca_cert = Some("ca.pem".into());
        assert_eq!(field(&c), "sinks.os.ca_cert");
        c.url = "https://x:9200".into();
        assert_eq!(c.validate(""), Ok(()));
        c.dictionary = Some("".into());
        assert_eq!(field(&c), "sinks.os.dictionary");
        c.dictionary = Some("/usr/share/mecab/dic/ipadic".into());
        assert_eq!(c.validate(""), Ok(()));
        let parsed = parse(r#"{"url": "http://x:9200", "dictionary": "/d"}"#).unwrap();
        assert_eq!(parsed.dictionary, Some("/d".into()));
    }

    /// Issue 18: every numeric knob has a bound, enforced at its edge.
    #[test]
    fn every_bound_holds_at_its_edge() {
        type Set = fn(&mut OpenSearchConfig, u64);
        let knobs: &[(&str, u64, u64, Set)] = &[
            ("max_bulk_docs", 1, MAX_BULK_DOCS_LIMIT as u64, |c, v| {
                c.max_bulk_docs = v as usize
            }),
            (
                "max_bulk_bytes",
                MIN_BULK_BYTES_LIMIT as u64,
                MAX_BULK_BYTES_LIMIT as u64,
                |c, v| c.max_bulk_bytes = v as usize,
            ),
            (
                "request_timeout_ms",
                MIN_REQUEST_TIMEOUT_MS,
                MAX_REQUEST_TIMEOUT_MS,
                |c, v| c.request_timeout_ms = v,
            ),
            (
                "number_of_shards",
                1,
                MAX_NUMBER_OF_SHARDS.into(),
                |c, v| c.number_of_shards = v as u32,
            ),
            (
                "number_of_replicas",
                0,
                MAX_NUMBER_OF_REPLICAS.into(),
                |c, v| c.number_of_replicas = v as u32,
            ),
        ];
        for (name, min, max, set) in knobs {
            let with = |v: u64| {
                let mut c = OpenSearchConfig::new("http://127.0.0.1:9200");
                set(&mut c, v);
                c.validate("sinks.os")
            };
            assert_eq!(with(*min), Ok(()), "{name} = {min}");
            assert_eq!(with(*max), Ok(()), "{name} = {max}");
            let e = with(max + 1).unwrap_err();
            assert_eq!(e.field, format!("sinks.os.{name}"));
            assert!(
                e.message.contains(&format!("above the maximum of {max}")),
                "{e}"
            );
            if *min > 0 {
                assert_eq!(with(min - 1).unwrap_err().field, format!("sinks.os.{name}"));
            }
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let c = parse(
            r#"{"url": "https://elastic:hunter2@x:9200", "username": "elastic",
                "password": "s3cret-pw", "api_key": "s3cret-key"}"#,
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let e = c.validate("").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("***@x:9200"), "{e}");
    }
}

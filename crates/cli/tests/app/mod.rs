//! The HTTP test harness shared by `api.rs` and `api_contract.rs`: the deployments a test
//! runs on ([`Backend`], [`on_both_deployments!`]), their configs with names no other test
//! uses, and [`TestApp`], the application started in-process with two tenants and driven
//! over real HTTP.
// Each test binary uses a different subset.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tsunagu_runtime::config::{Config, SinkConfig};
use tsunagu_runtime::serving::RunningServer;

/// The deployment a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Embedded,
    Aws,
}

/// Runs one test body on each deployment, as `NAME::embedded` and `NAME::aws`.
#[macro_export]
macro_rules! on_both_deployments {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name(super::Backend::Embedded).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn aws() {
                super::$name(super::Backend::Aws).await
            }
        }
    )*};
}

/// A running application with two tenants.
pub struct TestApp {
    pub server: Option<RunningServer>,
    pub base: String,
    pub http: reqwest::Client,
    /// Tenant A's and tenant B's tokens.
    pub a: String,
    pub b: String,
    pub config: Config,
    pub _dir: tempfile::TempDir,
}

/// `examples/aws-local.toml`.
pub fn aws_example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/aws-local.toml")
}

/// The environment `examples/aws-local.toml` is read with: the peers' endpoints and
/// table and index names no other test uses; `None` (skip) when the peers are not running.
pub fn aws_env(dir: &std::path::Path) -> Option<Vec<(String, String)>> {
    let (Ok(aws), Ok(opensearch)) = (
        std::env::var("AWS_ENDPOINT_URL"),
        std::env::var("TSUNAGU_TEST_OPENSEARCH_URL"),
    ) else {
        println!("skipped: AWS_ENDPOINT_URL (moto) and TSUNAGU_TEST_OPENSEARCH_URL (osmem-server) are needed for the AWS deployment");
        return None;
    };
    let unique = format!(
        "api-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros() % 1_000_000_000_000
    );
    Some(
        [
            ("AWS_ENDPOINT_URL", aws),
            ("OPENSEARCH_URL", opensearch),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("TSUNAGU_DATA_DIR", dir.display().to_string()),
            ("TSUNAGU_TABLE", format!("items-{unique}")),
            ("TSUNAGU_LEASE_TABLE", format!("leases-{unique}")),
            ("TSUNAGU_STATE_TABLE", format!("state-{unique}")),
            ("TSUNAGU_TENANT_TABLE", format!("tenants-{unique}")),
            ("TSUNAGU_INDEX", unique),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )
}

/// The config of a deployment with names no other test uses; `None` (skip) when the AWS
/// peers are not running. `embedded_extra` is TOML added to the embedded defaults.
pub fn config(backend: Backend, dir: &std::path::Path, embedded_extra: &str) -> Option<Config> {
    match backend {
        Backend::Embedded => {
            let text = format!(
                "version = 1\ndata_dir = {:?}\n{embedded_extra}",
                dir.display().to_string()
            );
            Some(Config::parse(&text, "test").expect("test config"))
        }
        Backend::Aws => {
            let vars = aws_env(dir)?;
            let text = std::fs::read_to_string(aws_example()).expect("examples/aws-local.toml");
            let env = move |name: &str| -> Option<String> {
                vars.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| std::env::var(name).ok())
            };
            Some(
                Config::parse_with_env(&text, "examples/aws-local.toml", &env).expect("aws config"),
            )
        }
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, "").await
    }

    /// Starts with `embedded_extra` TOML added to the embedded defaults.
    pub async fn start_with(backend: Backend, embedded_extra: &str) -> Option<Self> {
        Self::start_edited(backend, embedded_extra, |_| {}).await
    }

    /// Starts with the Japanese word analysis of the IPADIC sources in
    /// `TSUNAGU_TEST_IPADIC_DIR` on every search sink (embedded index or OpenSearch);
    /// `None` (skip) without them.
    pub async fn start_with_dictionary(backend: Backend) -> Option<Self> {
        let Some(source) = std::env::var_os("TSUNAGU_TEST_IPADIC_DIR") else {
            println!("skipped: TSUNAGU_TEST_IPADIC_DIR (the mecab-ipadic sources) is not set");
            return None;
        };
        Self::start_edited(backend, "", |cfg| {
            for sink in cfg.sinks.values_mut() {
                match sink {
                    SinkConfig::EmbeddedIndex { dictionary, .. } => {
                        *dictionary = Some(source.clone().into())
                    }
                    SinkConfig::Opensearch(os) => os.dictionary = Some(source.clone().into()),
                    SinkConfig::Kinesis(_) => {}
                }
            }
        })
        .await
    }

    /// Starts with the config of [`config`] changed by `edit`.
    async fn start_edited(
        backend: Backend,
        embedded_extra: &str,
        edit: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(backend, dir.path(), embedded_extra)?;
        edit(&mut cfg);
        let registry = tsunagu_runtime::tenants::open_tenant_directory(&cfg)
            .await
            .unwrap();
        let (_, a) = registry.create("tenant-a").await.unwrap();
        let (_, b) = registry.create("tenant-b").await.unwrap();
        let server = tsunagu_runtime::serving::start(cfg.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let base = format!("http://{}", server.addr);
        Some(Self {
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            a,
            b,
            config: cfg,
            _dir: dir,
        })
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(token, Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(token, Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(token, Method::PATCH, path, Some(body)).await
    }

    /// Creates what a test needs and returns the created body; panics unless 201.
    pub async fn create(&self, token: &str, path: &str, body: Value) -> Value {
        let (status, v) = self.post(token, path, body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {v}");
        v
    }

    pub async fn company(&self, token: &str, name: &str, address: &str) -> String {
        let v = self
            .create(
                token,
                "/api/v1/companies",
                json!({"name": name, "address": address}),
            )
            .await;
        v["data"]["id"].as_str().unwrap().to_string()
    }

    pub async fn deal(&self, token: &str, company: &str, title: &str, tags: &[&str]) -> String {
        let v = self
            .create(
                token,
                "/api/v1/deals",
                json!({"company_id": company, "title": title, "owner_id": "u1", "tags": tags}),
            )
            .await;
        v["data"]["id"].as_str().unwrap().to_string()
    }

    /// Records an activity; returns (id, version, consistency token).
    pub async fn activity(&self, token: &str, deal: &str, body: Value) -> (String, u64, String) {
        let v = self
            .create(token, &format!("/api/v1/deals/{deal}/activities"), body)
            .await;
        (
            v["data"]["id"].as_str().unwrap().to_string(),
            v["version"].as_u64().unwrap(),
            v["consistency_token"].as_str().unwrap().to_string(),
        )
    }

    /// Stops the server; returns its config and directory, for a restart.
    pub async fn stop(mut self) -> (Config, tempfile::TempDir) {
        if let Some(server) = self.server.take() {
            server.stop().await.unwrap();
        }
        (self.config, self._dir)
    }
}

/// The ids of a search page's items, in order.
pub fn ids(page: &serde_json::Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["data"]["id"].as_str().expect("id").to_string())
        .collect()
}

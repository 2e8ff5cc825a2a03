//! Shared by the integration tests: the test server's URL and a fresh index per test.

#![allow(dead_code)]

use tsunagu_opensearch::{OpenSearchConfig, OpenSearchSink};

/// The environment variable naming the test server (`scripts/test-peers/osmem.sh start`
/// prints it).
pub const URL_VAR: &str = "TSUNAGU_TEST_OPENSEARCH_URL";

/// The server's URL, or `None` after printing why the test is skipped.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped: {test}: {URL_VAR} is not set (eval \"$(scripts/test-peers/osmem.sh start)\")"
            );
            None
        }
    }
}

/// A config for a fresh index named after the test (so reruns against one server and
/// parallel tests never share documents).
pub fn config(url: &str, test: &str) -> OpenSearchConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut config = OpenSearchConfig::new(url);
    config.index = format!("tsunagu-test-{test}-{}-{nanos}", std::process::id());
    config.number_of_replicas = 0;
    config
}

pub async fn connect(config: &OpenSearchConfig) -> OpenSearchSink {
    OpenSearchSink::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server: {e}"))
}

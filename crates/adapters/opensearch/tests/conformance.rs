//! The sink conformance suite against an OpenSearch-compatible server (osmem-server from
//! `scripts/test-peers/osmem.sh`); skipped when TSUNAGU_TEST_OPENSEARCH_URL is unset.

mod common;

use async_trait::async_trait;
use tsunagu_conformance::sink::{check_all, SinkProbe};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_opensearch::{OpenSearchSink, Refresh};

struct Probe<'a>(&'a OpenSearchSink);

#[async_trait]
impl SinkProbe for Probe<'_> {
    async fn held(&self, key: &ItemKey) -> Option<(Version, bool)> {
        self.0
            .held_version(key)
            .await
            .unwrap_or_else(|e| panic!("reading {key} back: {e}"))
    }

    /// osmem shows documents at once; real clusters need the refresh.
    async fn refresh(&self) {
        self.0
            .refresh()
            .await
            .unwrap_or_else(|e| panic!("refreshing: {e}"));
    }
}

#[tokio::test]
async fn opensearch_honours_the_sink_contract() {
    let Some(url) = common::server_url("opensearch_honours_the_sink_contract") else {
        return;
    };
    let sink = common::connect(&common::config(&url, "conformance")).await;
    check_all(&sink, &Probe(&sink), "os").await;
}

/// The same contract when every batch is split into many bulk requests and the cluster
/// is not asked to refresh (the probe refreshes).
#[tokio::test]
async fn opensearch_honours_the_sink_contract_with_tiny_bulks() {
    let Some(url) = common::server_url("opensearch_honours_the_sink_contract_with_tiny_bulks")
    else {
        return;
    };
    let mut config = common::config(&url, "conformance-tiny");
    config.max_bulk_docs = 2;
    config.max_bulk_bytes = 1024;
    config.refresh = Refresh::False;
    let sink = common::connect(&config).await;
    check_all(&sink, &Probe(&sink), "os-tiny").await;
}

/// A fresh index read back as a side of a drift comparison (tombstone documents are not
/// live; `held` sees them as deletions).
#[tokio::test]
async fn opensearch_is_a_conforming_drift_side() {
    let Some(url) = common::server_url("opensearch_is_a_conforming_drift_side") else {
        return;
    };
    let mut config = common::config(&url, "drift-conformance");
    config.refresh = Refresh::False;
    let sink = common::connect(&config).await;
    tsunagu_conformance::drift::check_sink_side(&sink, "os").await;
}

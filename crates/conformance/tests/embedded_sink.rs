//! The sink conformance suite against the embedded index, the reference implementation.

use async_trait::async_trait;
use tsunagu_conformance::sink::{check_all, SinkProbe};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};

/// Reads the embedded index back: the held version (tombstones included) and whether the
/// key is among the live documents.
struct Probe<'a>(&'a ActivityIndex);

#[async_trait]
impl SinkProbe for Probe<'_> {
    async fn held(&self, key: &ItemKey) -> Option<(Version, bool)> {
        let version = self
            .0
            .held_version(key)
            .expect("reading the held version")?;
        let live = self
            .0
            .live_versions()
            .expect("reading live versions")
            .contains_key(key);
        Some((version, !live))
    }

    /// `apply` returns once its records are committed and searchable.
    async fn refresh(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_index_honours_the_sink_contract() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let index = ActivityIndex::open(
        dir.path(),
        IndexOptions {
            writer_memory_bytes: 20 << 20,
            refresh_interval: std::time::Duration::ZERO,
            ..IndexOptions::default()
        },
    )
    .expect("opening the index");
    check_all(&index, &Probe(&index), "embedded").await;
    index.close().await;
}

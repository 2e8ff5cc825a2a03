//! The drift ports' conformance checks on the embedded store (a primary), the embedded
//! index (a sink read back, writer and read-only reader) and the in-memory sink.

use tsunagu_conformance::drift::{check_primary_side, check_sink_side};
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};
use tsunagu_embedded_store::{EmbeddedStore, StoreOptions};
use tsunagu_engine::memory::MemorySink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_is_a_conforming_primary_side() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("primary.db"), StoreOptions::default())
        .expect("open store");
    check_primary_side(&store, "conf").await;
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_index_is_a_conforming_sink_side() {
    let dir = tempfile::tempdir().expect("temp dir");
    let index = ActivityIndex::open(dir.path(), IndexOptions::default()).expect("open index");
    check_sink_side(&index, "conf").await;
    index.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_sink_is_a_conforming_sink_side() {
    check_sink_side(&MemorySink::new(), "conf").await;
}

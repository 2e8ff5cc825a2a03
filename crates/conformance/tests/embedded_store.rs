//! The store and source conformance suites against the embedded store, the reference
//! implementation of both ports.

use tsunagu_embedded_store::{EmbeddedStore, StoreOptions};

fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
    EmbeddedStore::open(&dir.path().join("primary.db"), StoreOptions::default())
        .expect("open the embedded store")
}

#[tokio::test]
async fn embedded_store_honours_the_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    tsunagu_conformance::store::check_all(&store, "conf").await;
}

#[tokio::test]
async fn embedded_stream_honours_the_source_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    tsunagu_conformance::source::check_all(&store, &store, "conf").await;
}

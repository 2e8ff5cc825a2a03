//! The search conformance suite against the embedded index, the reference implementation
//! (the writer handle, as `tsunagu serve` uses it).

use std::sync::Arc;
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_index_answers_the_search_suite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let index = Arc::new(
        ActivityIndex::open(
            dir.path(),
            IndexOptions {
                writer_memory_bytes: 20 << 20,
                refresh_interval: std::time::Duration::ZERO,
                ..IndexOptions::default()
            },
        )
        .expect("opening the index"),
    );
    tsunagu_conformance::search::check_all(index.as_ref(), index.as_ref()).await;
}

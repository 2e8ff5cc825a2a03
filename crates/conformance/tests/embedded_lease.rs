//! The embedded adapters' leases (the state file) and the engine's in-memory ones pass
//! the lease conformance checks.

use tsunagu_conformance::lease;
use tsunagu_embedded_store::EmbeddedState;
use tsunagu_engine::memory::MemoryLeases;

#[tokio::test]
async fn embedded_leases_conform() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = EmbeddedState::open(&dir.path().join("state.db")).expect("open state");
    lease::check_all(&state, "search").await;
}

#[tokio::test]
async fn memory_leases_conform() {
    lease::check_all(&MemoryLeases::new(), "search").await;
}

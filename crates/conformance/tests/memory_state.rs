//! The engine's in-memory dead-letter queue and backfill progress pass the conformance
//! checks.

use tsunagu_conformance::{backfill_progress, dlq};
use tsunagu_engine::memory::MemoryState;

#[tokio::test]
async fn memory_dead_letters_conform() {
    dlq::check_all(&MemoryState::new()).await;
}

#[tokio::test]
async fn memory_backfill_progress_conforms() {
    backfill_progress::check_all(&MemoryState::new()).await;
}

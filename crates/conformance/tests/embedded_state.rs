//! The embedded state file's dead-letter queue and backfill progress pass the conformance
//! checks.

use tsunagu_conformance::{backfill_progress, dlq};
use tsunagu_embedded_store::EmbeddedState;

fn open() -> (tempfile::TempDir, EmbeddedState) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = EmbeddedState::open(&dir.path().join("state.db")).expect("open state");
    (dir, state)
}

#[tokio::test]
async fn embedded_dead_letters_conform() {
    let (_dir, state) = open();
    dlq::check_all(&state).await;
}

#[tokio::test]
async fn embedded_backfill_progress_conforms() {
    let (_dir, state) = open();
    backfill_progress::check_all(&state).await;
}

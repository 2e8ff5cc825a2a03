//! Bootstrapping consumers from the primary: backfill while writes continue, resume after
//! a kill, and automatic recovery of a consumer that fell behind the stream's retention.

use chrono::Utc;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_bench::sample::Sample;
use tsunagu_embedded_store::{Condition, EmbeddedState, EmbeddedStore, StoreOptions};
use tsunagu_engine::backfill::BackfillOptions;
use tsunagu_engine::ports::ApplyObserver;
use tsunagu_engine::{Consumer, ConsumerConfig, Engine};
use tsunagu_runtime::Embedded;

mod common;
use common::{wait_in_sync, write_activities as write, BIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_while_writes_continue_hands_over_to_the_stream_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    let embedded = Embedded::open(config.clone()).unwrap();
    let mut sample = Sample::new(11, 50, Utc::now());
    write(&embedded.store, &mut sample, 1_500).await;
    // Some deletes and edits in the history the new consumer never sees as changes.
    let versions = embedded.store.versions().await.unwrap();
    for (key, _) in versions.iter().step_by(10) {
        embedded
            .store
            .delete(key.clone(), Condition::None)
            .await
            .unwrap();
    }

    // Writes go on during the backfill.
    let writer = {
        let store = embedded.store.clone();
        tokio::spawn(async move {
            let mut sample = Sample::new(12, 50, Utc::now());
            for _ in 0..20 {
                write(&store, &mut sample, 50).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    config.add_consumer("fresh", "fresh");
    let embedded = Embedded {
        config: Arc::new(config.clone()),
        ..embedded
    };
    let index = embedded.open_sink("fresh").unwrap();
    let backfill = embedded.backfill("fresh", index.as_ref());
    let options = BackfillOptions {
        batch_size: 97,
        ..BackfillOptions::default()
    };
    let report = backfill.run(None, &options, &|_| {}).await.unwrap();
    assert!(report.items >= 1_350, "{report:?}");
    writer.await.unwrap();

    // The stream takes over from the recorded positions: only the new consumer runs.
    let engine = Engine::new(
        Arc::new(embedded.store.clone()),
        Arc::new(embedded.state.clone()),
        Arc::new(embedded.state.clone()),
    );
    let consumer = ConsumerConfig {
        sink: "fresh".into(),
        ..ConsumerConfig::named("fresh")
    };
    let pipeline = engine
        .start(vec![Consumer {
            config: consumer,
            sink: index.clone(),
        }])
        .await
        .unwrap();
    wait_in_sync(&embedded, &index, Duration::from_secs(30)).await;
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    {
        let embedded = Embedded::open(common::config(dir.path(), "")).unwrap();
        let mut sample = Sample::new(13, 80, Utc::now());
        write(&embedded.store, &mut sample, 3_000).await;
        embedded.store.close();
    }
    // Slowly (1,000 items/s), so that the kill lands half-way.
    let mut child = Command::new(BIN)
        .args([
            "backfill",
            "--data-dir",
            &data_dir,
            "--consumer",
            "late",
            "--rate",
            "1000",
            "--batch-size",
            "100",
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_800));
    child.kill().unwrap();
    child.wait().unwrap();

    let out = Command::new(BIN)
        .args([
            "backfill",
            "--data-dir",
            &data_dir,
            "--consumer",
            "late",
            "--quiet",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let items: u64 = stdout
        .split("items over")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no item count in {stdout}"));
    assert!(
        items < 3_000 && items > 0,
        "the second run resumed rather than starting over: {stdout}"
    );

    // The consumer is registered: `status` lists it, and its index equals the primary.
    let status = Command::new(BIN)
        .args(["status", "--data-dir", &data_dir, "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["consumer"] == "late"),
        "{rows}"
    );
    let embedded =
        Embedded::open(tsunagu_runtime::resolve_config(None, Some(dir.path())).unwrap()).unwrap();
    let index = embedded.open_sink("late").unwrap();
    wait_in_sync(&embedded, &index, Duration::from_secs(1)).await;
}

/// Counts what the pipeline applies, to see it working again after the recovery.
#[derive(Default)]
struct Applied(std::sync::atomic::AtomicU64);

impl ApplyObserver for Applied {
    fn applied(&self, _: &str, records: &[tsunagu_domain::ChangeRecord], _: std::time::SystemTime) {
        self.0
            .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_retention_is_detected_and_recovers_by_backfill() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded wiring of `tsunagu replicate`, on a store whose retention is short.
    let store = EmbeddedStore::open(
        &dir.path().join("primary.db"),
        StoreOptions {
            shard_count: 2,
            retention: Duration::from_millis(300),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let state = EmbeddedState::open(&dir.path().join("state.db")).unwrap();
    let embedded = Embedded {
        config: Arc::new(common::config(dir.path(), "[store]\nshard_count = 2\n")),
        store: store.clone(),
        state: state.clone(),
    };
    let sinks = embedded.open_sinks().unwrap();
    let index = sinks.values().next().unwrap().clone();
    let mut sample = Sample::new(14, 30, Utc::now());

    // Caught up, then stopped while writes and deletes go on, longer than the retention.
    write(&store, &mut sample, 200).await;
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    wait_in_sync(&embedded, &index, Duration::from_secs(20)).await;
    pipeline.shutdown().await;
    write(&store, &mut sample, 300).await;
    for (key, _) in store.versions().await.unwrap().iter().step_by(7) {
        store.delete(key.clone(), Condition::None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.trim_expired().await.unwrap() > 0);

    // Detected: reading from the old checkpoint would skip trimmed records, and
    // `tsunagu status` says so.
    let status = Command::new(BIN)
        .args([
            "status",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let behind = rows[0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["behind_retention"] == true)
        .count();
    assert!(behind > 0, "some shard must be behind retention: {rows}");

    // Recovered: the shard is backfilled, what was deleted meanwhile is removed, and the
    // stream flows again.
    let applied = Arc::new(Applied::default());
    let pipeline = embedded
        .start_pipeline(&sinks, vec![applied.clone() as Arc<dyn ApplyObserver>])
        .await
        .unwrap();
    wait_in_sync(&embedded, &index, Duration::from_secs(30)).await;
    let start = Instant::now();
    while !pipeline.status()[0]
        .shards
        .iter()
        .all(|s| format!("{:?}", s.state).contains("Running"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            pipeline.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write(&store, &mut sample, 50).await;
    let start = Instant::now();
    while applied.0.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stream does not flow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_in_sync(&embedded, &index, Duration::from_secs(30)).await;
    pipeline.shutdown().await;
}

//! `tsunagu reconcile` on real components: drift injected straight into a real index
//! (past the pipeline and its version guard) while the pipeline runs and a concurrent
//! writer keeps writing to the primary; reconcile must report exactly the injected keys,
//! by kind, and repair them through the sink. Also the binary end to end.

use chrono::Utc;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_bench::sample::Sample;
use tsunagu_bench::verify::index_drift;
use tsunagu_domain::{
    ChangeKind, ChangeRecord, Entity, Image, ItemKey, Position, ShardId, Version,
};
use tsunagu_embedded_index::inspect::InjectedDrift;
use tsunagu_embedded_index::ActivityIndex;
use tsunagu_embedded_index::ActivityIndexReader;
use tsunagu_embedded_store::{EmbeddedState, EmbeddedStore};
use tsunagu_engine::drift::{DriftedKey, Outcome, ReconcileOptions, ReconcileReport, Reconciler};
use tsunagu_engine::ports::{ChangeSource, CheckpointStore};
use tsunagu_runtime::Embedded;

mod common;
use common::{close_index, config, wait_in_sync, write_mixed, BIN};

/// The index being reconciled: the writer (shared with the running pipeline) or a
/// read-only handle (as another process sees it).
enum IndexHandle {
    Writer(Arc<ActivityIndex>),
    ReadOnly(Arc<ActivityIndexReader>),
}

/// The engine's reconciliation over the embedded store and index.
async fn reconcile(
    store: &EmbeddedStore,
    state: &EmbeddedState,
    index: &IndexHandle,
    consumer: &str,
    repair: bool,
) -> Result<ReconcileReport, tsunagu_engine::drift::DriftError> {
    let (digest, sink): (
        &dyn tsunagu_engine::drift::VersionDigest,
        Option<&dyn tsunagu_engine::ports::Sink>,
    ) = match index {
        IndexHandle::Writer(index) => (index.as_ref(), Some(index.as_ref())),
        IndexHandle::ReadOnly(reader) => (reader.as_ref(), None),
    };
    Reconciler {
        consumer,
        primary: store,
        index: digest,
        sink,
        source: store,
        checkpoints: state,
    }
    .run(&ReconcileOptions {
        repair,
        ..ReconcileOptions::default()
    })
    .await
}

const PIPELINE: &str = "[sinks.activities]\ntype = \"embedded_index\"\ndurability_interval_ms = 100\n\n[[consumers]]\nname = \"search\"\nbatch_size = 50\nparallelization_factor = 2\ncheckpoint_interval_ms = 50\n";

/// An in-process pipeline on [`PIPELINE`], caught up and checkpointed after `n` activities
/// (ids prefixed with `prefix`) with edits and deletes.
struct Synced {
    embedded: Embedded,
    sinks: std::collections::BTreeMap<String, Arc<ActivityIndex>>,
    index: Arc<ActivityIndex>,
    pipeline: tsunagu_engine::Pipeline,
}

async fn synced(dir: &std::path::Path, seed: u64, deals: u32, prefix: &str, n: usize) -> Synced {
    let embedded = Embedded::open(config(dir, PIPELINE)).unwrap();
    let sinks = embedded.open_sinks().unwrap();
    let index = sinks.values().next().unwrap().clone();
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    let mut sample = Sample::new(seed, deals, Utc::now());
    write_mixed(&embedded.store, &mut sample, prefix, n).await;
    wait_in_sync(&embedded, &index, Duration::from_secs(60)).await;
    wait_checkpointed(&embedded, "search", Duration::from_secs(30)).await;
    Synced {
        embedded,
        sinks,
        index,
        pipeline,
    }
}

/// Waits until the consumer's stored checkpoints reach the newest record of every shard.
async fn wait_checkpointed(embedded: &Embedded, consumer: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let stored = embedded.state.load(consumer).await.unwrap();
        let mut done = true;
        for shard in embedded.store.shards().await.unwrap() {
            if let Some(newest) = embedded.store.latest_position(&shard.id).await.unwrap() {
                let at = stored.get(&shard.id).map_or(0, |p| p.0.parse().unwrap());
                done &= at >= newest.0.parse::<u64>().unwrap();
            }
        }
        if done {
            return;
        }
        assert!(start.elapsed() < timeout, "checkpoints did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(key: ItemKey, version: Version, body: serde_json::Value) -> ChangeRecord {
    ChangeRecord {
        shard: ShardId("0".into()),
        position: Position(version.0.to_string()),
        key,
        kind: ChangeKind::Modify,
        version,
        old_image: None,
        new_image: Some(Image { version, body }),
        committed_at_us: 0,
    }
}

/// Drift of three kinds injected into the index of a caught-up data directory.
struct Injected {
    removed: BTreeSet<ItemKey>,
    older: BTreeSet<ItemKey>,
    extra: BTreeSet<ItemKey>,
}

/// Injects `n` documents removed (no tombstone), `n` older versions and `n` extra
/// documents, choosing keys among the items of the primary whose sort key starts with
/// `prefix` (not those the concurrent writer touches).
async fn inject(embedded: &Embedded, index: &ActivityIndex, prefix: &str, n: usize) -> Injected {
    let items = embedded.store.versions().await.unwrap();
    let prefix = format!("activity#{prefix}");
    let candidates: Vec<_> = items
        .iter()
        .filter(|(k, v)| v.0 > 1 && k.sort.starts_with(&prefix))
        .collect();
    let step = candidates.len() / (2 * n + 1);
    let picked: Vec<_> = candidates.iter().step_by(step).take(2 * n).collect();
    let removed: Vec<ItemKey> = picked[..n].iter().map(|(k, _)| k.clone()).collect();
    let mut drift: Vec<InjectedDrift> =
        removed.iter().cloned().map(InjectedDrift::Remove).collect();
    let mut older = BTreeSet::new();
    for (key, version) in &picked[n..] {
        let item = embedded.store.get(key).await.unwrap().unwrap();
        drift.push(InjectedDrift::Write(record(
            key.clone(),
            Version(version.0 - 1),
            item.body,
        )));
        older.insert(key.clone());
    }
    let mut strangers = Sample::new(99, 10, Utc::now());
    let mut extra = BTreeSet::new();
    for _ in 0..n {
        let mut a = strangers.activity();
        a.id = format!("stranger-{}", a.id);
        extra.insert(a.key());
        drift.push(InjectedDrift::Write(record(
            a.key(),
            Version(5),
            Entity::ActivityLog(a).to_json(),
        )));
    }
    index.inject_drift_for_tests(&drift).await.unwrap();
    Injected {
        removed: removed.into_iter().collect(),
        older,
        extra,
    }
}

fn keys(list: &[DriftedKey]) -> BTreeSet<ItemKey> {
    list.iter().map(DriftedKey::key).collect()
}

fn assert_reports_exactly(report: &ReconcileReport, injected: &Injected) {
    assert_eq!(keys(&report.missing_keys), injected.removed, "{report:#?}");
    assert_eq!(keys(&report.stale_keys), injected.older, "{report:#?}");
    assert_eq!(keys(&report.extra_keys), injected.extra, "{report:#?}");
    assert_eq!(report.missing, injected.removed.len() as u64);
    assert_eq!(report.stale, injected.older.len() as u64);
    assert_eq!(report.extra, injected.extra.len() as u64);
    assert!(!report.keys_truncated);
}

/// A writer that keeps adding, editing and deleting its own activities until stopped.
fn spawn_writer(embedded: &Embedded) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (embedded, stop) = (embedded.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut sample = Sample::new(21, 40, Utc::now());
            let mut rounds = 0u64;
            while !stop.load(Ordering::SeqCst) {
                write_mixed(&embedded.store, &mut sample, &format!("live{rounds}-"), 20).await;
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            rounds
        })
    };
    (stop, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_drift_is_reported_by_key_and_repaired_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        embedded,
        sinks,
        index,
        pipeline,
    } = synced(dir.path(), 11, 40, "base-", 1_500).await;

    let (stop, writer) = spawn_writer(&embedded);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let injected = inject(&embedded, &index, "base-", 3).await;
    let handle = IndexHandle::Writer(index.clone());

    // Reported exactly, by kind, while the writer writes and the pipeline applies.
    let report = reconcile(&embedded.store, &embedded.state, &handle, "search", false)
        .await
        .unwrap();
    assert_reports_exactly(&report, &injected);
    assert_eq!(report.repaired, 0);
    assert_eq!(report.remaining, 9);
    assert!(report.checked >= 1_000, "{report:#?}");
    assert!(report.missing_keys.iter().all(|d| d.index_version.is_none()
        && d.primary_version.is_some()
        && d.outcome == Outcome::Reported));
    assert!(report
        .extra_keys
        .iter()
        .all(|d| d.index_version == Some(5) && d.primary_version.is_none()));
    assert!(report
        .stale_keys
        .iter()
        .all(|d| d.index_version.unwrap() + 1 == d.primary_version.unwrap()));

    // Repaired through the sink, still while writes continue.
    let repaired = reconcile(&embedded.store, &embedded.state, &handle, "search", true)
        .await
        .unwrap();
    assert_reports_exactly(&repaired, &injected);
    assert_eq!(repaired.repaired, 9, "{repaired:#?}");
    assert_eq!(repaired.remaining, 0);
    assert!(repaired.is_clean());

    let after = reconcile(&embedded.store, &embedded.state, &handle, "search", false)
        .await
        .unwrap();
    assert_eq!(after.drift(), 0, "{after:#?}");
    assert!(after.is_clean());

    stop.store(true, Ordering::SeqCst);
    let rounds = writer.await.unwrap();
    assert!(rounds > 0);
    wait_in_sync(&embedded, &index, Duration::from_secs(60)).await;
    for key in &injected.removed {
        let stored = embedded.store.get(key).await.unwrap().unwrap();
        assert_eq!(index.get(key).unwrap().unwrap().0, stored.version);
    }
    pipeline.shutdown().await;
    drop((sinks, handle));
    close_index(index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_index_reports_no_drift_and_reads_nothing_individually() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        embedded,
        sinks,
        index,
        pipeline,
    } = synced(dir.path(), 12, 60, "c-", 3_000).await;
    let items = embedded.store.item_count().await.unwrap();

    let report = reconcile(
        &embedded.store,
        &embedded.state,
        &IndexHandle::Writer(index.clone()),
        "search",
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.checked, items);
    assert_eq!(report.indexed, items);
    assert_eq!(report.drift() + report.in_flight, 0, "{report:#?}");
    assert_eq!(report.read_individually, 0);
    assert_eq!(report.tree.buckets_compared, 4096);
    assert!(report.checkpointed);

    // While writes continue: still no drift, and only a small part read one by one.
    let (stop, writer) = spawn_writer(&embedded);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = reconcile(
        &embedded.store,
        &embedded.state,
        &IndexHandle::Writer(index.clone()),
        "search",
        false,
    )
    .await
    .unwrap();
    assert_eq!(busy.drift(), 0, "{busy:#?}");
    assert!(
        busy.read_individually_fraction < 0.2,
        "read {} of {} individually",
        busy.read_individually,
        busy.checked
    );
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    wait_in_sync(&embedded, &index, Duration::from_secs(60)).await;
    pipeline.shutdown().await;
    drop(sinks);
    close_index(index).await;

    // Read-only (as another process sees it): clean too; repair needs the writer.
    let reader =
        Arc::new(ActivityIndex::open_read_only(&embedded.config.index_dir("activities")).unwrap());
    let read_only = IndexHandle::ReadOnly(reader);
    let report = reconcile(
        &embedded.store,
        &embedded.state,
        &read_only,
        "search",
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.drift() + report.in_flight, 0, "{report:#?}");
    assert_eq!(report.checked, embedded.store.item_count().await.unwrap());
    let refused = reconcile(&embedded.store, &embedded.state, &read_only, "search", true).await;
    assert!(refused.unwrap_err().to_string().contains("writing"));
}

fn json_report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_counts(report: &serde_json::Value, missing: u64, extra: u64, stale: u64, repaired: u64) {
    assert_eq!(report["missing"], missing, "{report:#}");
    assert_eq!(report["extra"], extra, "{report:#}");
    assert_eq!(report["stale"], stale, "{report:#}");
    assert_eq!(report["repaired"], repaired, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_reports_repairs_and_refuses_to_repair_while_the_writer_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        embedded,
        sinks,
        index,
        pipeline,
    } = synced(dir.path(), 13, 30, "cli-", 400).await;
    let injected = inject(&embedded, &index, "cli-", 2).await;
    pipeline.shutdown().await;
    drop(sinks);
    // Still held (as by `tsunagu replicate`); made durable so another process sees it.
    tsunagu_engine::ports::Sink::flush(&*index).await.unwrap();

    let data_dir = dir.path().to_str().unwrap();
    let json = dir.path().join("report.json");
    let reconcile_cmd = |extra: &[&str]| {
        let mut args = vec![
            "reconcile",
            "--data-dir",
            data_dir,
            "--consumer",
            "search",
            "--json",
            json.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Command::new(BIN).args(&args).output().unwrap()
    };

    // Read-only works beside the writer: drift reported, exit 3.
    let out = reconcile_cmd(&[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_report(&json);
    assert_counts(&report, 2, 2, 2, 0);
    assert!(report["checked"].as_u64().unwrap() > 300);
    let listed: BTreeSet<String> = report["missing_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            format!(
                "{}/{}",
                k["partition"].as_str().unwrap(),
                k["sort"].as_str().unwrap()
            )
        })
        .collect();
    let expected: BTreeSet<String> = injected.removed.iter().map(|k| k.to_string()).collect();
    assert_eq!(listed, expected);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 missing, 2 extra, 2 stale"), "{stdout}");

    // --repair needs the writer.
    let out = reconcile_cmd(&["--repair"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        // The test holds the writer: the message names this process.
        stderr.contains(&format!("(pid {})", std::process::id()))
            && stderr.contains("stop it first"),
        "{stderr}"
    );

    close_index(index).await;
    let out = reconcile_cmd(&["--repair"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_counts(&json_report(&json), 2, 2, 2, 6);

    let out = reconcile_cmd(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_counts(&json_report(&json), 0, 0, 0, 0);

    // The check the rest of the test suite trusts agrees.
    let index = ActivityIndex::open(
        &embedded.config.index_dir("activities"),
        tsunagu_embedded_index::IndexOptions::default(),
    )
    .unwrap();
    assert!(index_drift(&embedded, &index).await.unwrap().is_clean());
    index.close().await;
}

#[test]
fn the_command_works_on_a_bench_lag_data_dir_once_and_continuously() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("bench");
    let data_dir = data_dir.to_str().unwrap();
    let bench = Command::new(BIN)
        .args([
            "bench",
            "lag",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--data-dir",
            data_dir,
        ])
        .output()
        .unwrap();
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );

    let json = dir.path().join("report.json");
    let out = Command::new(BIN)
        .args([
            "reconcile",
            "--data-dir",
            data_dir,
            "--consumer",
            "search",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_report(&json);
    assert!(report["checked"].as_u64().unwrap() > 0, "{report:#}");
    assert_counts(&report, 0, 0, 0, 0);
    assert_eq!(report["read_individually"], 0);
    assert!(report["elapsed_ms"].is_u64());

    let out = Command::new(BIN)
        .args([
            "reconcile",
            "--data-dir",
            data_dir,
            "--consumer",
            "search",
            "--repair",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let unknown = Command::new(BIN)
        .args(["reconcile", "--data-dir", data_dir, "--consumer", "nobody"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("search"));

    // Continuous mode: runs until SIGTERM, logging per run and running totals.
    let child = Command::new(BIN)
        .args([
            "reconcile",
            "--data-dir",
            data_dir,
            "--consumer",
            "search",
            "--repair",
            "--every",
            "200ms",
            "--log-format",
            "json",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let runs = stderr.matches("reconcile run").count();
    assert!(runs >= 2, "{stderr}");
    assert!(
        stderr.contains("\"reconcile_drift_found_total\":0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"reconcile_repaired_total\":0"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_version_in_the_index_is_stale_and_honestly_unrepairable() {
    let dir = tempfile::tempdir().unwrap();
    let Synced {
        embedded,
        sinks,
        index,
        pipeline,
    } = synced(dir.path(), 14, 20, "n-", 200).await;
    let (key, version) = embedded.store.versions().await.unwrap()[10].clone();
    let item = embedded.store.get(&key).await.unwrap().unwrap();
    let future = Version(version.0 + 1_000_000);
    index
        .inject_drift_for_tests(&[InjectedDrift::Write(record(key.clone(), future, item.body))])
        .await
        .unwrap();
    let handle = IndexHandle::Writer(index.clone());
    let report = reconcile(&embedded.store, &embedded.state, &handle, "search", true)
        .await
        .unwrap();
    assert_eq!(report.stale, 1, "{report:#?}");
    assert_eq!(report.missing + report.extra, 0);
    assert_eq!(
        (report.repaired, report.unrepairable, report.remaining),
        (0, 1, 1)
    );
    let d = &report.stale_keys[0];
    assert_eq!(d.key(), key);
    assert_eq!(d.outcome, Outcome::Unrepairable);
    assert_eq!(d.index_version, Some(future.0));
    assert!(!report.is_clean());
    // Nothing was sent: the index still holds what it held.
    assert_eq!(index.get(&key).unwrap().unwrap().0, future);
    pipeline.shutdown().await;
    drop((sinks, handle));
    close_index(index).await;
}

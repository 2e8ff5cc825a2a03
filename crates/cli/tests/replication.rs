//! The embedded pipeline end to end, on real components: the SQLite store and change
//! stream, the SQLite replication state and Tantivy indexes, in a temporary directory.
//! Also drives the `tsunagu` binary for the commands users type.

use chrono::Utc;
use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use tsunagu_bench::sample::Sample;
use tsunagu_bench::verify::index_drift;
use tsunagu_domain::{ChangeRecord, Entity};
use tsunagu_embedded_store::Condition;
use tsunagu_engine::ports::{ChangeSource, DeadLetterQueue, ReadFrom, Sink};
use tsunagu_engine::ConsumerConfig;
use tsunagu_runtime::Embedded;

mod common;
use common::{close_index, config, wait_in_sync, write_mixed, BIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_then_restart_delivers_everything_once_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "[[consumers]]\nname = \"search\"\nbatch_size = 7\nparallelization_factor = 3\n",
    );
    let embedded = Embedded::open(config).unwrap();
    let mut sample = Sample::new(3, 60, Utc::now());

    let sinks = embedded.open_sinks().unwrap();
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    let writer = {
        let embedded = embedded.clone();
        tokio::spawn(async move {
            let mut sample = Sample::new(4, 60, Utc::now());
            write_mixed(&embedded.store, &mut sample, "", 1_500).await
        })
    };
    // Crash while records are flowing: no shutdown, nothing drained.
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(pipeline);
    let index = sinks.into_values().next().unwrap();
    close_index(index).await;
    writer.await.unwrap();
    write_mixed(&embedded.store, &mut sample, "", 200).await;

    // Restart from the stored checkpoints and the index on disk.
    let sinks = embedded.open_sinks().unwrap();
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    let index = sinks.values().next().unwrap().clone();
    wait_in_sync(&embedded, &index, Duration::from_secs(60)).await;
    pipeline.shutdown().await;
    assert_eq!(embedded.state.count("search").await.unwrap(), 0);
    // Same content, not only the same versions.
    for (key, _) in embedded
        .store
        .versions()
        .await
        .unwrap()
        .into_iter()
        .step_by(97)
    {
        let stored = embedded.store.get(&key).await.unwrap().unwrap();
        let Entity::ActivityLog(expected) = Entity::from_json(&stored.body).unwrap() else {
            panic!("not an activity")
        };
        let (version, indexed) = index.get(&key).unwrap().unwrap();
        assert_eq!(version, stored.version);
        assert_eq!(indexed, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_dead_lettered_whole_while_the_rest_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "[[consumers]]\nname = \"search\"\nbatch_size = 20\nmax_retry_attempts = 2\nretry_initial_backoff_ms = 1\n");
    let embedded = Embedded::open(config).unwrap();
    let sinks = embedded.open_sinks().unwrap();
    let index = sinks.values().next().unwrap().clone();
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    let mut sample = Sample::new(5, 30, Utc::now());
    write_mixed(&embedded.store, &mut sample, "", 100).await;
    // An item whose body the index cannot accept: the action type is unknown.
    let mut bad = Entity::ActivityLog(sample.activity()).to_json();
    bad["action"] = json!("fax");
    let Entity::ActivityLog(good) = Entity::from_json(&{
        let mut fixed = bad.clone();
        fixed["action"] = json!("call");
        fixed
    })
    .unwrap() else {
        panic!("not an activity")
    };
    let bad_key = good.key();
    embedded
        .store
        .put(bad_key.clone(), bad.clone(), Condition::None)
        .await
        .unwrap();
    write_mixed(&embedded.store, &mut sample, "", 100).await;

    let start = Instant::now();
    while embedded.state.count("search").await.unwrap() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing was dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything else is indexed; only the corrupt item is missing.
    let start = Instant::now();
    loop {
        let drift = index_drift(&embedded, &index).await.unwrap();
        if drift.missing == [bad_key.clone()] && drift.extra.is_empty() && drift.stale.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "drift: {drift:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let letters = embedded.state.list(Some("search"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].record.key, bad_key);
    assert_eq!(
        letters[0].record.new_image.as_ref().unwrap().body,
        bad,
        "the full record is kept"
    );
    assert!(
        letters[0].error.contains("action"),
        "the error names the field: {}",
        letters[0].error
    );
    pipeline.shutdown().await;
    drop(sinks);
    close_index(index).await;
    let data_dir = dir.path().to_str().unwrap();

    // The commands an operator uses.
    let list = Command::new(BIN)
        .args(["dlq", "list", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains(&bad_key.to_string()));
    let show = Command::new(BIN)
        .args([
            "dlq",
            "show",
            &letters[0].id.to_string(),
            "--data-dir",
            data_dir,
        ])
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["record"]["new_image"]["body"], bad);
    // Still broken: the redrive fails and says why, the letter stays.
    let redrive = Command::new(BIN)
        .args(["dlq", "redrive", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert_eq!(
        redrive.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    assert_eq!(embedded.state.count("search").await.unwrap(), 1);

    // The application corrects the item; the fix replicates, and the redrive of the old
    // record is then harmless (older version) and clears the queue.
    embedded
        .store
        .put(
            bad_key.clone(),
            Entity::ActivityLog(good.clone()).to_json(),
            Condition::None,
        )
        .await
        .unwrap();
    let sinks = embedded.open_sinks().unwrap();
    let index = sinks.values().next().unwrap().clone();
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    wait_in_sync(&embedded, &index, Duration::from_secs(30)).await;
    pipeline.shutdown().await;
    drop(sinks);
    close_index(index).await;
    let redrive = Command::new(BIN)
        .args(["dlq", "redrive", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(
        redrive.status.success(),
        "{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    assert_eq!(embedded.state.count("search").await.unwrap(), 0);
    let index = embedded.open_sink("activities").unwrap();
    assert_eq!(index.get(&bad_key).unwrap().unwrap().1, good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_with_different_knobs_both_converge() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        r#"
[sinks.activities]
type = "embedded_index"
[sinks.analytics]
type = "embedded_index"
[[consumers]]
name = "search"
sink = "activities"
batch_size = 1
parallelization_factor = 1
[[consumers]]
name = "analytics"
sink = "analytics"
batch_size = 500
batching_window_ms = 20
parallelization_factor = 8
ordering = "partition_key"
"#,
    );
    let embedded = Embedded::open(config).unwrap();
    let sinks = embedded.open_sinks().unwrap();
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    let mut sample = Sample::new(6, 40, Utc::now());
    write_mixed(&embedded.store, &mut sample, "", 600).await;
    for index in sinks.values() {
        wait_in_sync(&embedded, index, Duration::from_secs(60)).await;
    }
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_old_change_records_never_changes_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(config(dir.path(), "")).unwrap();
    let sinks = embedded.open_sinks().unwrap();
    let index = sinks.values().next().unwrap().clone();
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await.unwrap();
    let mut sample = Sample::new(8, 25, Utc::now());
    write_mixed(&embedded.store, &mut sample, "", 400).await;
    wait_in_sync(&embedded, &index, Duration::from_secs(30)).await;
    pipeline.shutdown().await;

    let before: BTreeMap<_, _> = index.live_versions().unwrap().into_iter().collect();
    let mut history: Vec<ChangeRecord> = Vec::new();
    for shard in embedded.store.shards().await.unwrap() {
        let batch = embedded
            .store
            .read(&shard.id, &ReadFrom::TrimHorizon, 100_000, Duration::ZERO)
            .await
            .unwrap();
        history.extend(batch.records);
    }
    assert!(history.len() > 400);
    // The whole history again, oldest first, then newest first, in odd batches.
    index.apply(&history).await.unwrap();
    history.reverse();
    for chunk in history.chunks(13) {
        index.apply(chunk).await.unwrap();
    }
    let after: BTreeMap<_, _> = index.live_versions().unwrap().into_iter().collect();
    assert_eq!(before, after);
    wait_in_sync(&embedded, &index, Duration::from_secs(1)).await;
}

#[test]
fn a_bad_config_file_is_refused_with_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tsunagu.toml");
    std::fs::write(
        &path,
        "version = 1\n[[consumers]]\nname = \"search\"\nbatch_size = 20000\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["replicate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("consumers[0].batch_size") && stderr.contains("10000"),
        "{stderr}"
    );

    std::fs::write(&path, "version = 1\n[store]\nshards = 4\n").unwrap();
    let out = Command::new(BIN)
        .args(["status", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("shards") && stderr.contains("line 3"),
        "{stderr}"
    );
    let _ = ConsumerConfig::named("unused");
}

#[test]
fn the_help_lists_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["demo", "replicate", "search", "dlq", "status"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn the_demo_runs_to_completion_and_checks_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--deals",
            "40",
            "--activities",
            "300",
            "--paced-writes",
            "20",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the index equals the primary"), "{stdout}");
    assert!(stdout.contains("lag commit → searchable"), "{stdout}");
    assert!(stdout.contains("match(es)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_in_another_process_picks_up_writes_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    // The writer (this process) creates the store first, so both agree on its shape.
    let embedded = Embedded::open(config(dir.path(), "")).unwrap();
    let mut child = Command::new(BIN)
        .args(["replicate", "--data-dir", &data_dir])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut sample = Sample::new(9, 20, Utc::now());
    let keys = write_mixed(&embedded.store, &mut sample, "", 150).await;
    let probe = embedded.store.get(&keys[1]).await.unwrap().unwrap();
    let Entity::ActivityLog(probe) = Entity::from_json(&probe.body).unwrap() else {
        panic!("not an activity")
    };

    // `tsunagu search` (a third process) sees them once replicated.
    let start = Instant::now();
    loop {
        let out = Command::new(BIN)
            .args([
                "search",
                "--data-dir",
                &data_dir,
                "--deal",
                &probe.deal_id,
                "--json",
                "--limit",
                "1000",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let found = page["hits"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["activity"]["id"] == json!(probe.id));
            if found {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not searchable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "replicate exited with {exit:?}");
    let status = Command::new(BIN)
        .args(["status", "--data-dir", &data_dir, "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows[0]["consumer"], "search");
    let backlog: u64 = rows[0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["backlog"].as_u64().unwrap())
        .sum();
    assert_eq!(
        backlog, 0,
        "a graceful stop checkpoints everything it applied: {rows}"
    );
}

#[test]
fn a_short_lag_benchmark_reports_every_figure_and_passes_its_check() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let chart = dir.path().join("lag.svg");
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args([
            "bench",
            "lag",
            "--rate",
            "50",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
        ])
        .args([
            "--parallelization-factor",
            "3",
            "--batch-size",
            "10",
            "--skew",
            "zipf:1.1",
        ])
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ])
        .args(["--chart", chart.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["rate_target"], 50.0);
    assert!(report["rate_achieved"].as_f64().unwrap() > 0.0);
    assert!(report["count"].as_u64().unwrap() > 50);
    // The pipeline's memory apart from the benchmark's: the figures add up.
    let memory = &report["pipeline_memory"];
    let figure = |name: &str| memory[name].as_f64().unwrap_or(f64::NAN);
    assert!(
        figure("run_peak_anon_mib") > figure("baseline_anon_mib"),
        "{memory}"
    );
    assert!(
        figure("run_peak_rss_mib") >= figure("run_peak_anon_mib"),
        "{memory}"
    );
    assert!(figure("bookkeeping_mib") > 0.0, "{memory}");
    assert!(
        (figure("pipeline_own_peak_mib")
            - (figure("run_peak_anon_mib")
                - figure("baseline_anon_mib")
                - figure("bookkeeping_mib")))
        .abs()
            < 1e-6,
        "{memory}"
    );
    for figure in ["lag_ms", "e2e_ms"] {
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(
                report[figure][p].as_f64().is_some_and(|v| v > 0.0),
                "{figure}.{p} in {report}"
            );
        }
    }
    assert_eq!(report["lost"], 0);
    assert_eq!(report["order_violations"], 0);
    assert_eq!(report["index_matches_primary"], true);
    assert!(!report["lag_over_time"].as_array().unwrap().is_empty());
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&chart).unwrap().contains("<svg"));
    // The data directory is left for inspection (and for later commands).
    let status = Command::new(BIN)
        .args(["status", "--data-dir", data.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(status.status.success());
}

#[test]
fn reading_commands_on_a_missing_data_directory_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    for args in [
        vec!["status"],
        vec!["dlq", "list"],
        vec!["reconcile", "--consumer", "search"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .args(["--data-dir", missing.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no tsunagu data"), "{args:?}: {stderr}");
        assert!(!missing.exists(), "{args:?} created the directory");
    }
}

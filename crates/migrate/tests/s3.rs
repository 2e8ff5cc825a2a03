//! Chunks on S3 (moto, `scripts/test-peers/moto.sh`) loaded into MariaDB
//! (`scripts/test-peers/mariadb.sh`): a whole run with counts, checksums, foreign keys,
//! the objects and manifests in the bucket and no chunk left on local disk; and a run
//! killed mid-way (SIGKILL of a child process) then resumed, which reuses the chunks
//! already uploaded and ends with the same checksums as an uninterrupted run. Without
//! `TSUNAGU_TEST_MYSQL_URL` and `AWS_ENDPOINT_URL` the tests say so and pass.

mod common;

use aws_sdk_s3::Client;
use common::{database, options, outcome, query_u64};
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tsunagu_migrate::chunk_store::{s3_client, S3Location};
use tsunagu_migrate::fixture::{generate, FixtureOptions};
use tsunagu_migrate::run::{run, RunOptions};
use tsunagu_migrate::state::State;

/// A fresh database and an empty bucket for one test, or `None` (with a message).
async fn peers(db: &str, bucket: &str) -> Option<(String, Client)> {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!("skipped: needs moto; eval \"$(scripts/test-peers/moto.sh start)\" (sets AWS_ENDPOINT_URL and test credentials)");
        return None;
    }
    let url = database(db).await?;
    let (s3, _) = s3_client().await.unwrap();
    let _ = s3.create_bucket().bucket(bucket).send().await;
    for key in objects(&s3, bucket).await.into_keys() {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    Some((url, s3))
}

/// Every object of a bucket: key → (size, last modified in ms).
async fn objects(s3: &Client, bucket: &str) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.unwrap().contents() {
            let modified = o.last_modified().unwrap().to_millis().unwrap();
            out.insert(
                o.key().unwrap().to_string(),
                (o.size().unwrap_or(0), modified),
            );
        }
    }
    out
}

/// Chunks of `table` in the target's ledger (0 while the database or ledger is missing).
async fn loaded_chunks(url: &str, table: &str) -> u64 {
    let Ok(mut conn) = mysql_async::Conn::from_url(url).await else {
        return 0;
    };
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM _tsunagu_migrate_chunks WHERE table_name = ?",
            (table,),
        )
        .await
        .unwrap_or(None);
    let _ = conn.disconnect().await;
    n.unwrap_or(0)
}

/// The sales spec with small chunks, so every table has several.
fn spec(dir: &Path, chunk_rows: u64) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migration/sales.toml"),
    )
    .unwrap()
    .replace("chunk_rows = 100000", &format!("chunk_rows = {chunk_rows}"));
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Options of a run writing `dir/report.json` with its chunks at `chunks`.
fn s3_options(dir: &Path, spec: &Path, source: &Path, url: &str, chunks: &str) -> RunOptions {
    let mut opts = options(dir, spec, source, url, "report");
    opts.chunks = Some(S3Location::parse(chunks).unwrap());
    opts
}

/// CSV files anywhere under `dir`.
fn local_chunks(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().contains(".csv") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_on_s3_load_exactly_the_valid_rows_and_leave_no_local_file() {
    let bucket = "tsunagu-chunks-full";
    let Some((url, s3)) = peers("tsunagu_s3_full", bucket).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    let expected = generate(
        &fixture,
        &FixtureOptions {
            rows: 6_000,
            invalid_share: 0.05,
            seed: 21,
        },
    )
    .unwrap();
    let spec = spec(dir.path(), 400);
    let opts = s3_options(
        dir.path(),
        &spec,
        &fixture,
        &url,
        &format!("s3://{bucket}/runs/one"),
    );
    let report = run(&opts).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.fk_violations, 0);
    assert_eq!(report.tables.len(), expected.len());
    let state = State::read(&opts.work_dir).unwrap().unwrap();
    assert_eq!(state.chunks, format!("s3://{bucket}/runs/one"));
    let stored = objects(&s3, bucket).await;
    for (name, t) in &report.tables {
        let e = &expected[name];
        assert_eq!(
            (t.read, t.written, t.rejected),
            (e.read, e.written, e.rejected),
            "{name}"
        );
        assert_eq!(t.checksum, t.target_checksum, "{name}");
        assert_eq!(
            query_u64(&url, &format!("SELECT COUNT(*) FROM `{name}`")).await,
            e.written,
            "{name}"
        );
        // One object per chunk, and a manifest that lists them with their rows.
        let chunks = state.tables[name].exported.as_ref().unwrap().chunks.clone();
        let prefix = format!("runs/one/{name}/");
        let keys: Vec<&String> = stored.keys().filter(|k| k.starts_with(&prefix)).collect();
        assert_eq!(keys.len(), chunks.len() + 1, "{name}: {keys:?}");
        let manifest = s3
            .get_object()
            .bucket(bucket)
            .key(format!("{prefix}manifest.json"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(manifest["rows"], t.written, "{name}");
        assert_eq!(manifest["checksum"], t.checksum.as_str(), "{name}");
        let listed: Vec<(String, u64)> = manifest["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["key"].as_str().unwrap().to_string(),
                    c["rows"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = chunks
            .iter()
            .map(|&(i, rows)| (format!("{prefix}{i:05}.csv"), rows))
            .collect();
        assert_eq!(listed, want, "{name}");
        for c in manifest["chunks"].as_array().unwrap() {
            let key = c["key"].as_str().unwrap();
            assert_eq!(stored[key].0 as u64, c["bytes"].as_u64().unwrap(), "{key}");
        }
    }
    assert!(
        stored.len() > 2 * report.tables.len(),
        "several chunks per table"
    );
    assert_eq!(local_chunks(&opts.work_dir), Vec::<PathBuf>::new());
}

/// The child process of the resume test: one migration with the options in
/// `TSUNAGU_TEST_S3_CHILD` (JSON), killed by the parent mid-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_killed_run_with_chunks_on_s3_resumes_with_the_same_result"]
async fn child_run() {
    let Ok(args) = std::env::var("TSUNAGU_TEST_S3_CHILD") else {
        return;
    };
    let a: Vec<String> = serde_json::from_str(&args).unwrap();
    let opts = s3_options(
        Path::new(&a[0]),
        Path::new(&a[1]),
        Path::new(&a[2]),
        &a[3],
        &a[4],
    );
    run(&opts).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_with_chunks_on_s3_resumes_with_the_same_result() {
    let bucket = "tsunagu-chunks-resume";
    let Some((reference_url, _)) = peers("tsunagu_s3_resume_ref", "tsunagu-chunks-ref").await
    else {
        return;
    };
    let Some((url, s3)) = peers("tsunagu_s3_resume", bucket).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    generate(
        &fixture,
        &FixtureOptions {
            rows: 30_000,
            invalid_share: 0.05,
            seed: 5,
        },
    )
    .unwrap();
    let spec = spec(dir.path(), 150);
    let reference_dir = dir.path().join("reference");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let reference = run(&s3_options(
        &reference_dir,
        &spec,
        &fixture,
        &reference_url,
        "s3://tsunagu-chunks-ref/run",
    ))
    .await
    .unwrap();
    assert!(reference.ok, "{:?}", reference.problems);

    let killed_dir = dir.path().join("killed");
    std::fs::create_dir_all(&killed_dir).unwrap();
    let location = format!("s3://{bucket}/run");
    let args = serde_json::to_string(&[
        killed_dir.to_str().unwrap(),
        spec.to_str().unwrap(),
        fixture.to_str().unwrap(),
        &url,
        &location,
    ])
    .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_run", "--exact", "--ignored", "--test-threads=1"])
        .env("TSUNAGU_TEST_S3_CHILD", args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed; use a larger fixture"
        );
        if loaded_chunks(&url, "activity_logs").await >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no chunk loaded in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();

    // What the state believes finished is in the bucket, whole.
    let opts = s3_options(&killed_dir, &spec, &fixture, &url, &location);
    let state = State::read(&opts.work_dir).unwrap().unwrap();
    let before = objects(&s3, bucket).await;
    let mut exported = 0;
    for (name, t) in &state.tables {
        let Some(stats) = &t.exported else { continue };
        exported += 1;
        assert!(before.contains_key(&format!("run/{name}/manifest.json")));
        for (i, _) in &stats.chunks {
            assert!(before.contains_key(&format!("run/{name}/{i:05}.csv")));
        }
    }
    assert!(exported > 0, "some tables were exported before the kill");
    assert!(before.len() > exported * 2, "some chunks were uploaded");

    let mut resume = opts.clone();
    resume.resume = true;
    let resumed = run(&resume).await.unwrap();
    assert!(resumed.ok, "{:?}", resumed.problems);
    assert!(resumed.resumed);
    assert_eq!(outcome(&resumed), outcome(&reference));
    for (name, t) in &resumed.tables {
        assert_eq!(
            query_u64(&url, &format!("SELECT COUNT(*) FROM `{name}`")).await,
            t.written,
            "{name}"
        );
    }
    // Chunks uploaded before the kill were not uploaded again.
    let after = objects(&s3, bucket).await;
    for (key, (size, modified)) in &before {
        if key.ends_with(".csv") {
            assert_eq!(after.get(key), Some(&(*size, *modified)), "{key}");
        }
    }
    assert_eq!(local_chunks(&resume.work_dir), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_says_what_to_fix_before_anything_runs() {
    let Some((url, _)) = peers("tsunagu_s3_missing", "tsunagu-chunks-other").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    generate(
        &fixture,
        &FixtureOptions {
            rows: 100,
            invalid_share: 0.0,
            seed: 1,
        },
    )
    .unwrap();
    let spec = spec(dir.path(), 400);
    let opts = s3_options(
        dir.path(),
        &spec,
        &fixture,
        &url,
        "s3://tsunagu-no-such-bucket/x",
    );
    let err = run(&opts).await.unwrap_err().to_string();
    assert!(
        err.contains("bucket `tsunagu-no-such-bucket` does not exist; create it"),
        "{err}"
    );
    assert!(
        !err.contains("AWS_SECRET") && !err.contains("test:"),
        "{err}"
    );
    assert!(!opts.work_dir.join("partitions").exists(), "nothing ran");
}

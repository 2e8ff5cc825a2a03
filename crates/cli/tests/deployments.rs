//! The operations of a deployment, run the same way on both: on the embedded defaults and
//! on `examples/aws-local.toml` (DynamoDB + DynamoDB Streams on moto, leases and shared
//! replication state in DynamoDB, OpenSearch on osmem-server). Each test drives the real
//! binary (`replicate`, `backfill`, `reconcile`, `status`, `dlq`) with a config file and
//! writes to the primary through the runtime library, as another application would.
//!
//! The AWS runs need `AWS_ENDPOINT_URL` (moto) and `TSUNAGU_TEST_OPENSEARCH_URL`
//! (osmem-server), which the test script sets; without them they print "skipped".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_bench::sample::Sample;
use tsunagu_domain::{Entity, ItemKey};
use tsunagu_engine::ports::{Condition, WriteOp};
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Runtime;

const BIN: &str = env!("CARGO_BIN_EXE_tsunagu");

/// One deployment under test: its config file and the environment its processes get.
struct Deployment {
    name: &'static str,
    _dir: tempfile::TempDir,
    config_path: PathBuf,
    env: Vec<(String, String)>,
    /// The OpenSearch index (AWS deployment) for injecting drift.
    opensearch: Option<(String, String)>,
    /// What differs for one-off commands: on AWS they run as from an operator's machine,
    /// with a data directory of their own (everything shared lives in AWS).
    operator_env: Vec<(String, String)>,
}

impl Deployment {
    fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("tsunagu.toml");
        std::fs::write(
            &config_path,
            format!(
                "version = 1\ndata_dir = {:?}\n[store]\nexternal_poll_interval_ms = 10\n[sinks.activities]\ntype = \"embedded_index\"\ndurability_interval_ms = 50\n[[consumers]]\nname = \"search\"\nsink = \"activities\"\ncheckpoint_interval_ms = 20\n",
                dir.path().join("data").display().to_string()
            ),
        )
        .expect("write config");
        Self {
            name: "embedded",
            _dir: dir,
            config_path,
            env: Vec::new(),
            opensearch: None,
            operator_env: Vec::new(),
        }
    }

    /// `examples/aws-local.toml` with names no other run uses; `None` without the peers.
    fn aws() -> Option<Self> {
        let (Ok(aws), Ok(opensearch)) = (
            std::env::var("AWS_ENDPOINT_URL"),
            std::env::var("TSUNAGU_TEST_OPENSEARCH_URL"),
        ) else {
            println!("skipped: AWS_ENDPOINT_URL (moto) and TSUNAGU_TEST_OPENSEARCH_URL (osmem-server) are needed for the AWS deployment");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/aws-local.toml");
        let unique = format!(
            "{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros() % 1_000_000_000
        );
        let index = format!("deploy-{unique}");
        let env = vec![
            ("AWS_ENDPOINT_URL".into(), aws),
            ("OPENSEARCH_URL".into(), opensearch.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("TSUNAGU_TABLE".into(), format!("items-{unique}")),
            ("TSUNAGU_LEASE_TABLE".into(), format!("leases-{unique}")),
            ("TSUNAGU_STATE_TABLE".into(), format!("state-{unique}")),
            ("TSUNAGU_TENANT_TABLE".into(), format!("tenants-{unique}")),
            ("TSUNAGU_INDEX".into(), index.clone()),
            (
                "TSUNAGU_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
        ];
        let operator_env = vec![(
            "TSUNAGU_DATA_DIR".into(),
            dir.path().join("operator").display().to_string(),
        )];
        Some(Self {
            name: "aws",
            _dir: dir,
            config_path,
            env,
            opensearch: Some((opensearch, index)),
            operator_env,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn");
        command
    }

    /// A one-off command (`reconcile`, `status`, `dlq`, `backfill`).
    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .envs(self.operator_env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run tsunagu")
    }

    fn replicate(&self) -> Worker {
        let child = self
            .command(&["replicate"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tsunagu replicate");
        Worker { child }
    }

    /// The config as the binary reads it (same environment), opened in this process.
    async fn runtime(&self) -> Runtime {
        let text = std::fs::read_to_string(&self.config_path).expect("read config");
        let env: std::collections::HashMap<String, String> = self.env.iter().cloned().collect();
        let config = Config::parse_with_env(&text, "test", &|name: &str| {
            env.get(name).cloned().or_else(|| std::env::var(name).ok())
        })
        .expect("parse config");
        for (k, v) in &self.env {
            if k.starts_with("AWS_") {
                std::env::set_var(k, v);
            }
        }
        Runtime::open(config).await.expect("open runtime")
    }
}

struct Worker {
    child: Child,
}

impl Worker {
    /// SIGTERM, then waits for the drain.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while self.child.try_wait().expect("wait").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "replicate did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn write(runtime: &Runtime, sample: &mut Sample, n: usize) -> Vec<ItemKey> {
    let ops: Vec<WriteOp> = (0..n)
        .map(|_| {
            let a = sample.activity();
            WriteOp::Put {
                key: a.key(),
                body: Entity::ActivityLog(a).to_json(),
                condition: Condition::None,
            }
        })
        .collect();
    let keys = ops.iter().map(|op| op.key().clone()).collect();
    for chunk in ops.chunks(100) {
        for result in runtime
            .store
            .write_many(chunk.to_vec())
            .await
            .expect("write")
        {
            result.expect("write");
        }
    }
    keys
}

/// Waits until the consumer's sink holds exactly the primary's items and versions.
async fn wait_equal(runtime: &Runtime, within: Duration) {
    let name = runtime.consumer("search").expect("consumer").sink;
    let start = Instant::now();
    loop {
        // The worker creates the sink when it starts.
        if let Ok(sink) = runtime.open_sink_reader(&name).await {
            let (a, b) = (
                runtime.primary.digest(14).await.expect("primary digest"),
                sink.digest(14).await,
            );
            if b.as_ref().is_ok_and(|b| &a == b && a.items() > 0) {
                return;
            }
            assert!(
                start.elapsed() < within,
                "the sink did not reach the primary within {within:?} ({} items vs {:?})",
                a.items(),
                b.map(|b| b.items())
            );
        }
        assert!(
            start.elapsed() < within,
            "the sink did not open within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn json_report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read report")).expect("json")
}

fn keys_of(report: &serde_json::Value, kind: &str) -> BTreeSet<ItemKey> {
    report[kind]
        .as_array()
        .expect("key list")
        .iter()
        .map(|d| {
            ItemKey::new(
                d["partition"].as_str().expect("partition"),
                d["sort"].as_str().expect("sort"),
            )
        })
        .collect()
}

/// Drift the pipeline would never make, written straight into the sink: `missing` removed,
/// `stale` set back one version, `extra` (a copy of `template`'s document under a key the
/// primary does not have) added.
async fn inject(
    deployment: &Deployment,
    runtime: &Runtime,
    missing: &[ItemKey],
    stale: &ItemKey,
    extra: &ItemKey,
    template: &ItemKey,
) {
    match &deployment.opensearch {
        Some((url, index)) => {
            let http = reqwest::Client::new();
            let doc = |key: &ItemKey| {
                format!(
                    "{url}/{index}/_doc/{}",
                    urlencode(&tsunagu_opensearch::document::doc_id(key))
                )
            };
            for key in missing {
                let r = http.delete(doc(key)).send().await.expect("delete");
                assert!(r.status().is_success(), "delete: {}", r.status());
            }
            for (key, target, step) in [(stale, stale, 1i64), (template, extra, 0)] {
                let got: serde_json::Value = http
                    .get(doc(key))
                    .send()
                    .await
                    .expect("get")
                    .json()
                    .await
                    .expect("json");
                let mut source = got["_source"].clone();
                let version = source["version"].as_i64().expect("version");
                source["version"] = serde_json::json!(version - step);
                if target != key {
                    source["key"] = serde_json::json!(tsunagu_opensearch::document::doc_id(target));
                }
                let r = http
                    .put(doc(target))
                    .json(&source)
                    .send()
                    .await
                    .expect("put");
                assert!(r.status().is_success(), "put: {}", r.status());
            }
            let r = http
                .post(format!("{url}/{index}/_refresh"))
                .send()
                .await
                .expect("refresh");
            assert!(r.status().is_success());
        }
        None => {
            use tsunagu_embedded_index::inspect::InjectedDrift;
            let sink = runtime.open_sink("activities").await.expect("index writer");
            let tsunagu_runtime::SinkHandle::Embedded(index) = &sink else {
                panic!("the embedded deployment has an embedded index");
            };
            let current = |key: &ItemKey| {
                let key = key.clone();
                let store = &runtime.store;
                async move { store.get(&key).await.expect("get").expect("item exists") }
            };
            let mut drift: Vec<InjectedDrift> =
                missing.iter().cloned().map(InjectedDrift::Remove).collect();
            for (key, target, step) in [(stale, stale, 1u64), (template, extra, 0)] {
                let item = current(key).await;
                let version = tsunagu_domain::Version(item.version.0 - step);
                drift.push(InjectedDrift::Write(tsunagu_domain::ChangeRecord {
                    shard: tsunagu_domain::ShardId("0".into()),
                    position: tsunagu_domain::Position(version.0.to_string()),
                    key: target.clone(),
                    kind: tsunagu_domain::ChangeKind::Modify,
                    version,
                    old_image: None,
                    new_image: Some(tsunagu_domain::Image {
                        version,
                        body: item.body,
                    }),
                    committed_at_us: 0,
                }));
            }
            index.inject_drift_for_tests(&drift).await.expect("inject");
            sink.close().await;
        }
    }
}

fn urlencode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Drift injected straight into the sink while a writer keeps writing is reported
/// exactly, repaired through the sink, and a second reconcile is clean.
async fn drift_is_reported_exactly_and_repaired(deployment: Deployment) {
    let runtime = deployment.runtime().await;
    let mut sample = Sample::new(7, 40, chrono::Utc::now());
    let keys = write(&runtime, &mut sample, 400).await;
    let worker = deployment.replicate();
    wait_equal(&runtime, Duration::from_secs(60)).await;

    let missing = vec![keys[1].clone(), keys[2].clone()];
    let stale = keys[3].clone();
    let extra = ItemKey::new(keys[4].partition.clone(), "activity#never-written");
    // The embedded index has one writer: the worker stops while drift is injected.
    let worker = if deployment.opensearch.is_none() {
        worker.stop();
        inject(&deployment, &runtime, &missing, &stale, &extra, &keys[5]).await;
        deployment.replicate()
    } else {
        inject(&deployment, &runtime, &missing, &stale, &extra, &keys[5]).await;
        worker
    };

    // A writer keeps writing other items meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let runtime = deployment.runtime().await;
        tokio::spawn(async move {
            let mut sample = Sample::new(8, 40, chrono::Utc::now());
            while !stop.load(Ordering::Relaxed) {
                write(&runtime, &mut sample, 5).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let report_path = deployment._dir.path().join("report.json");
    let out = deployment.run(&[
        "reconcile",
        "--consumer",
        "search",
        "--json",
        report_path.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}: {out:?}", deployment.name);
    let report = json_report(&report_path);
    assert_eq!(
        keys_of(&report, "missing_keys"),
        missing.iter().cloned().collect(),
        "{report:#}"
    );
    assert_eq!(
        keys_of(&report, "stale_keys"),
        BTreeSet::from([stale.clone()]),
        "{report:#}"
    );
    assert_eq!(
        keys_of(&report, "extra_keys"),
        BTreeSet::from([extra.clone()]),
        "{report:#}"
    );
    assert!(report["checked"].as_u64().expect("checked") >= 400);

    // The embedded index's writer is the worker's: a repair runs while it is stopped.
    let worker = if deployment.opensearch.is_none() {
        worker.stop();
        None
    } else {
        Some(worker)
    };
    let out = deployment.run(&[
        "reconcile",
        "--consumer",
        "search",
        "--repair",
        "--json",
        report_path.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}: {out:?}", deployment.name);
    let report = json_report(&report_path);
    assert_eq!(report["repaired"], 4, "{report:#}");
    let worker = worker.unwrap_or_else(|| deployment.replicate());

    let out = deployment.run(&[
        "reconcile",
        "--consumer",
        "search",
        "--json",
        report_path.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}: {out:?}", deployment.name);
    let report = json_report(&report_path);
    for kind in ["missing", "extra", "stale"] {
        assert_eq!(report[kind], 0, "{report:#}");
    }

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    wait_equal(&runtime, Duration::from_secs(60)).await;
    worker.stop();
}

/// Items written before any consumer ran are backfilled, the stream takes over with no
/// gap, and status reads from another process.
async fn backfill_then_stream_ends_equal(deployment: Deployment) {
    let runtime = deployment.runtime().await;
    let mut sample = Sample::new(11, 30, chrono::Utc::now());
    write(&runtime, &mut sample, 700).await;
    // Nothing applies them yet: the stall signal (the age of the oldest record not yet
    // applied) is above zero and keeps growing, unlike a lag histogram that goes silent.
    let first = oldest_unapplied_ages(&deployment);
    std::thread::sleep(Duration::from_millis(1500));
    let later = oldest_unapplied_ages(&deployment);
    assert!(
        first.iter().any(|&age| age > 0.0),
        "{}: {first:?}",
        deployment.name
    );
    assert!(
        later.iter().sum::<f64>() >= first.iter().sum::<f64>() + 1.0,
        "{}: the age grows while stalled: {first:?} then {later:?}",
        deployment.name
    );
    let out = deployment.run(&["backfill", "--consumer", "search", "--quiet"]);
    assert!(out.status.success(), "{}: {out:?}", deployment.name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("700 items") || stdout.contains("items over"),
        "{stdout}"
    );
    // Written after the backfill's recorded positions: the stream carries them.
    write(&runtime, &mut sample, 150).await;
    let worker = deployment.replicate();
    wait_equal(&runtime, Duration::from_secs(90)).await;
    let out = deployment.run(&["status", "--json"]);
    assert!(out.status.success(), "{}: {out:?}", deployment.name);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status[0]["consumer"], "search", "{status:#}");
    assert!(
        status[0]["shards"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{status:#}"
    );
    // Caught up: nothing waits, on any shard (the checkpoint follows the apply shortly).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ages = oldest_unapplied_ages(&deployment);
        if ages.iter().all(|&age| age == 0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: still waiting after catching up: {ages:?}",
            deployment.name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    worker.stop();
}

/// Per shard of the `search` consumer, `status --json`'s age of the oldest record not yet
/// applied.
fn oldest_unapplied_ages(deployment: &Deployment) -> Vec<f64> {
    let out = deployment.run(&["status", "--json"]);
    assert!(out.status.success(), "{}: {out:?}", deployment.name);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    status[0]["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| {
            shard["oldest_unapplied_age_seconds"]
                .as_f64()
                .expect("oldest_unapplied_age_seconds")
        })
        .collect()
}

/// A record the sink can never accept is dead-lettered by the worker, listed from another
/// process with only the config, and redriven once the item is fixed.
async fn dead_letters_are_shared(deployment: Deployment) {
    let runtime = deployment.runtime().await;
    let mut sample = Sample::new(13, 10, chrono::Utc::now());
    write(&runtime, &mut sample, 50).await;
    let mut good = sample.activity();
    good.deal_id = "deal-poison".into();
    good.id = "poison".into();
    let poison = good.key();
    runtime
        .store
        .write(WriteOp::Put {
            key: poison.clone(),
            body: serde_json::json!({"not": "an activity"}),
            condition: Condition::None,
        })
        .await
        .expect("write poison");
    let worker = deployment.replicate();
    let start = Instant::now();
    let letters = loop {
        let out = deployment.run(&["dlq", "list", "--json"]);
        assert!(out.status.success(), "{}: {out:?}", deployment.name);
        let letters: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dlq json");
        if letters.as_array().is_some_and(|l| !l.is_empty()) {
            break letters;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no dead letter appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters:#}");
    assert_eq!(
        letters[0]["record"]["key"]["partition"], "deal-poison",
        "{letters:#}"
    );
    let out = deployment.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status[0]["dead_letters"], 1, "{status:#}");

    // Fixed in the primary: the stream carries the good version; the dead letter's old
    // version is then a harmless no-op, and the redrive clears it.
    runtime
        .store
        .write(WriteOp::Put {
            key: poison.clone(),
            body: Entity::ActivityLog(good).to_json(),
            condition: Condition::None,
        })
        .await
        .expect("fix the item");
    wait_equal(&runtime, Duration::from_secs(60)).await;
    // The embedded index has one writer, the worker's.
    worker.stop();
    let out = deployment.run(&["dlq", "redrive", "--consumer", "search"]);
    assert!(out.status.success(), "{}: {out:?}", deployment.name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("redriven: 1"), "{stdout}");
    let out = deployment.run(&["dlq", "list", "--json"]);
    let letters: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dlq json");
    assert_eq!(letters, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_drift_is_reported_exactly_and_repaired() {
    drift_is_reported_exactly_and_repaired(Deployment::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_drift_is_reported_exactly_and_repaired() {
    if let Some(deployment) = Deployment::aws() {
        drift_is_reported_exactly_and_repaired(deployment).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backfill_then_stream_ends_equal() {
    backfill_then_stream_ends_equal(Deployment::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_backfill_then_stream_ends_equal() {
    if let Some(deployment) = Deployment::aws() {
        backfill_then_stream_ends_equal(deployment).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_dead_letters_are_shared() {
    dead_letters_are_shared(Deployment::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_dead_letters_are_shared() {
    if let Some(deployment) = Deployment::aws() {
        dead_letters_are_shared(deployment).await;
    }
}

/// `tsunagu check` names every adapter of the deployment, the tenant registry included,
/// and passes on a fresh one (what `create_if_missing` will create counts as fine).
async fn check_reports_every_adapter(deployment: Deployment) {
    let out = deployment.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: check failed:\n{stdout}\n{}",
        deployment.name,
        String::from_utf8_lossy(&out.stderr)
    );
    for what in ["primary", "source", "tenants"] {
        assert!(
            stdout.contains(what),
            "{}: check does not report {what}:\n{stdout}",
            deployment.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_check_reports_every_adapter() {
    check_reports_every_adapter(Deployment::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_check_reports_every_adapter() {
    if let Some(deployment) = Deployment::aws() {
        check_reports_every_adapter(deployment).await;
    }
}

/// `bench limits --config` measures the deployment's own adapters: its store, its sink
/// alone (on OpenSearch beside a raw `_bulk` loader sending the same documents) and its
/// pipeline, which first catches up with the store phase's writes.
async fn limits_benchmark_measures_the_deployment(deployment: Deployment) {
    let json = deployment._dir.path().join("limits.json");
    let json_arg = json.display().to_string();
    let out = deployment.run(&["bench", "limits", "--items", "600", "--json", &json_arg]);
    assert!(
        out.status.success(),
        "{}: bench limits failed:\n{}\n{}",
        deployment.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_report(&json);
    assert_eq!(report["items"], 600, "{report}");
    for figure in [
        "store_commits_per_s",
        "index_docs_per_s",
        "pipeline_per_s",
        "pipeline_fraction_of_limit",
    ] {
        assert!(
            report[figure].as_f64().is_some_and(|v| v > 0.0),
            "{}: {figure} missing: {report}",
            deployment.name
        );
    }
    assert!(
        report["process_peak_rss_mib"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{report}"
    );
    if deployment.opensearch.is_some() {
        assert_eq!(report["sink"], "opensearch", "{report}");
        assert!(
            report["raw_bulk_docs_per_s"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{report}"
        );
        assert!(
            report["sink_fraction_of_raw_bulk"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{report}"
        );
    } else {
        assert_eq!(report["sink"], "embedded_index", "{report}");
        assert!(report["raw_bulk_docs_per_s"].is_null(), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_limits_benchmark_measures_the_deployment() {
    limits_benchmark_measures_the_deployment(Deployment::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_limits_benchmark_measures_the_deployment() {
    if let Some(deployment) = Deployment::aws() {
        limits_benchmark_measures_the_deployment(deployment).await;
    }
}

//! Scale-out across processes: three `tsunagu replicate` workers share the embedded
//! store's shards through leases and write into one OpenSearch index. One is killed
//! (SIGKILL) while writes go on: its shards move to the two others once its leases
//! expire, and in the end the index holds exactly the primary's items at the primary's
//! versions. The two others then stop on SIGTERM and release their leases.
//!
//! Needs an OpenSearch-compatible server: `TSUNAGU_TEST_OPENSEARCH_URL` (the test script
//! starts osmem-server); skipped without it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tsunagu_bench::sample::Sample;
use tsunagu_domain::{ActivityLog, Entity, ItemKey, Version};
use tsunagu_embedded_store::{Condition, EmbeddedState, EmbeddedStore, StoreOptions};
use tsunagu_engine::ports::LeaseStore;
use tsunagu_opensearch::{OpenSearchConfig, OpenSearchSink};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagu");
const SHARDS: u32 = 6;

struct Worker {
    name: &'static str,
    child: Child,
}

impl Worker {
    fn start(name: &'static str, config: &std::path::Path, url: &str) -> Self {
        let child = Command::new(BIN)
            .args(["replicate", "--config"])
            .arg(config)
            .env("OPENSEARCH_URL", url)
            .env("WORKER_ID", name)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tsunagu replicate");
        Self { name, child }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {} failed", self.name);
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "worker {} still runs {within:?} after the signal",
                self.name
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Live owners of the consumer's leases and how many each holds.
async fn owners(state: &EmbeddedState) -> BTreeMap<String, usize> {
    let mut load = BTreeMap::new();
    for lease in state.leases("search").await.expect("leases") {
        if let Some(owner) = lease.owner.filter(|_| lease.expires_at_ms > now_ms()) {
            *load.entry(owner).or_default() += 1;
        }
    }
    load
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_moves_its_shards_with_nothing_lost() {
    let Ok(url) = std::env::var("TSUNAGU_TEST_OPENSEARCH_URL") else {
        eprintln!(
            "skipped: TSUNAGU_TEST_OPENSEARCH_URL is not set (scripts/test-peers/osmem.sh start)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let index = format!("scale-out-{}", std::process::id());
    let config_path = dir.path().join("tsunagu.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"version = 1
data_dir = "{data}"
[store]
shard_count = {SHARDS}
external_poll_interval_ms = 10
[leases]
type = "embedded"
worker_id = "${{WORKER_ID}}"
lease_duration_ms = 1500
renew_interval_ms = 250
[sinks.search]
type = "opensearch"
url = "${{OPENSEARCH_URL}}"
index = "{index}"
refresh = "false"
[[consumers]]
name = "search"
sink = "search"
batch_size = 50
checkpoint_interval_ms = 50
"#,
            data = dir.path().join("data").display()
        ),
    )
    .expect("write config");

    // The store exists before the workers start, so they all agree on its shards.
    let store = EmbeddedStore::open(
        &dir.path().join("data").join("primary.db"),
        StoreOptions {
            shard_count: SHARDS,
            ..StoreOptions::default()
        },
    )
    .expect("open store");
    let state = EmbeddedState::open(&dir.path().join("data").join("state.db")).expect("state");

    let mut a = Worker::start("a", &config_path, &url);
    let mut b = Worker::start("b", &config_path, &url);
    let mut c = Worker::start("c", &config_path, &url);
    wait_for(
        "three workers holding two shards each",
        Duration::from_secs(30),
        || async {
            owners(&state).await
                == BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2)])
        },
    )
    .await;

    // Writes go on while b is killed.
    let mut killed_at = None;
    let mut sample = Sample::new(7, 40, chrono::Utc::now());
    let mut live: Vec<ActivityLog> = Vec::new();
    for n in 0..1_500usize {
        if n % 13 == 0 && !live.is_empty() {
            let gone = live.swap_remove(n % live.len());
            store
                .delete(gone.key(), Condition::None)
                .await
                .expect("delete");
        } else {
            let activity = if n % 5 == 0 && !live.is_empty() {
                let i = n % live.len();
                live[i] = sample.edit(live[i].clone());
                live[i].clone()
            } else {
                let activity = sample.activity();
                live.push(activity.clone());
                activity
            };
            store
                .put(
                    activity.key(),
                    Entity::ActivityLog(activity).to_json(),
                    Condition::None,
                )
                .await
                .expect("put");
        }
        if n == 500 {
            b.signal("-KILL");
            b.wait(Duration::from_secs(5));
            killed_at = Some(Instant::now());
        }
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_for(
        "a and c taking over b's shards",
        Duration::from_secs(30),
        || async { owners(&state).await == BTreeMap::from([("a".into(), 3), ("c".into(), 3)]) },
    )
    .await;
    assert!(
        killed_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(700)),
        "b's shards moved before its leases could expire"
    );

    let sink = OpenSearchSink::new(&opensearch_config(&url, &index)).expect("sink");
    let primary: BTreeMap<ItemKey, Version> = store
        .versions()
        .await
        .expect("versions")
        .into_iter()
        .collect();
    wait_for(
        "the index to equal the primary",
        Duration::from_secs(60),
        || async {
            let _ = sink.refresh().await;
            match sink.live_versions().await {
                Ok(held) => held.into_iter().collect::<BTreeMap<_, _>>() == primary,
                Err(_) => false,
            }
        },
    )
    .await;

    for worker in [&a, &c] {
        worker.signal("-TERM");
    }
    assert!(
        a.wait(Duration::from_secs(30)).success(),
        "a did not stop cleanly"
    );
    assert!(
        c.wait(Duration::from_secs(30)).success(),
        "c did not stop cleanly"
    );
    for lease in state.leases("search").await.expect("leases") {
        assert_eq!(
            lease.owner, None,
            "a stopped worker released its lease: {lease:?}"
        );
    }
    store.close();
}

fn opensearch_config(url: &str, index: &str) -> OpenSearchConfig {
    let text = format!("url = {url:?}\nindex = {index:?}\n");
    toml::from_str(&text).expect("opensearch config")
}

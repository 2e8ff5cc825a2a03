//! One lag run: the pipeline in this process (the embedded defaults, or whatever adapters
//! a config file names, with one or several lease-sharing workers), an open-loop writer
//! at a fixed rate, every write's commit → searchable and scheduled → searchable latency,
//! then the loss, order and sink-equals-primary checks.

use super::measure::{summarize, write_id, SeriesPoint, VisibilityTracker, WriteSample};
use super::schedule::Schedule;
use super::sys::{cpu_seconds, current_anon_mib, peak_rss_mib, sample_rss, PipelineMemory};
use super::workload::{Mix, Skew, Workload};
use crate::lag::LagSummary;
use crate::verify::drift;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tsunagu_embedded_store::WriteOp;
use tsunagu_engine::ports::ApplyObserver;
use tsunagu_engine::ConsumerConfig;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::outln;
use tsunagu_runtime::Runtime;

/// Everything that shapes a run.
#[derive(Debug, Clone, Serialize)]
pub struct LagParams {
    pub rate: f64,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    pub parallelization_factor: u32,
    pub batch_size: usize,
    pub batching_window_ms: u64,
    pub refresh_interval_ms: u64,
    pub shards: u32,
    pub deals: u32,
    pub skew: Skew,
    pub mix: Mix,
    pub seed: u64,
    #[serde(serialize_with = "seconds")]
    pub drain_timeout: Duration,
    /// The config file whose adapters and consumer ran (none: the embedded defaults with
    /// the knobs above).
    pub config: Option<String>,
    /// Workers sharing the stream through leases (1 without leases).
    pub workers: u32,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftCounts {
    pub checked: u64,
    pub missing: usize,
    pub extra: usize,
    pub stale: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BacklogPoint {
    pub t_s: f64,
    /// Changes committed but not yet searchable.
    pub backlog: u64,
}

/// The result of a run, as printed and written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    pub params: LagParams,
    pub rate_target: f64,
    /// Committed writes per second over the run.
    pub rate_achieved: f64,
    /// Writes measured (committed after the warm-up).
    pub count: u64,
    /// Writes committed, warm-up included.
    pub writes_committed: u64,
    pub write_errors: u64,
    /// Replication lag: commit in the primary → visible to a search.
    pub lag_ms: LagSummary,
    /// End to end: scheduled time → visible to a search.
    pub e2e_ms: LagSummary,
    pub lost: u64,
    pub order_violations: u64,
    pub duplicate_deliveries: u64,
    pub dead_letters: u64,
    pub index_matches_primary: bool,
    pub drift: DriftCounts,
    pub duration_s: f64,
    pub cpu_seconds: f64,
    /// CPU time over wall time, in percent of one core (200 = both cores of a 2-core machine).
    pub cpu_percent: f64,
    pub peak_rss_mib: f64,
    /// The pipeline's memory while it ran, apart from the benchmark's.
    pub pipeline_memory: PipelineMemory,
    pub backlog_over_time: Vec<BacklogPoint>,
    pub lag_over_time: Vec<SeriesPoint>,
    /// The correctness check: nothing lost, no order violation, index equals primary.
    pub passed: bool,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Runs the benchmark on the embedded defaults in `data_dir` (created if missing), with
/// the consumer knobs of `params`.
pub async fn run_lag(params: &LagParams, data_dir: &Path) -> anyhow::Result<LagReport> {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.store.shard_count = params.shards;
    for sink in config.sinks.values_mut() {
        if let tsunagu_runtime::config::SinkConfig::EmbeddedIndex {
            refresh_interval_ms,
            ..
        } = sink
        {
            *refresh_interval_ms = params.refresh_interval_ms;
        }
    }
    config.consumers = vec![ConsumerConfig {
        batch_size: params.batch_size,
        batching_window_ms: params.batching_window_ms,
        parallelization_factor: params.parallelization_factor,
        max_in_flight_records: params.batch_size.max(20_000),
        ..ConsumerConfig::named("search")
    }];
    config.validate()?;
    run_lag_on(config, params).await
}

/// Runs the benchmark over the adapters and the first consumer of `config`.
pub async fn run_lag_on(config: Config, params: &LagParams) -> anyhow::Result<LagReport> {
    let mut params = params.clone();
    let consumer = config
        .consumers
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the config has no consumer"))?;
    let config = Config {
        consumers: vec![consumer.clone()],
        ..config
    };
    // The report states what actually ran.
    params.batch_size = consumer.batch_size;
    params.batching_window_ms = consumer.batching_window_ms;
    params.parallelization_factor = consumer.parallelization_factor;
    let baseline_anon = current_anon_mib();
    let runtime = Runtime::open(config).await?;
    params.shards = runtime.source.shards().await?.len() as u32;
    if params.workers > 1 && !runtime.leased() {
        anyhow::bail!(
            "--workers {} needs [leases] in the config: workers share the stream's shards through leases",
            params.workers
        );
    }
    let sinks = runtime.open_sinks().await?;
    let sink = sinks
        .get(&consumer.sink)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("sink {:?} is not open", consumer.sink))?;
    let tracker = Arc::new(VisibilityTracker::default());
    let mut pipelines = Vec::new();
    for w in 0..params.workers.max(1) {
        let worker = (params.workers > 1).then(|| format!("bench-worker-{w}"));
        pipelines.push(
            runtime
                .start_pipeline(
                    &sinks,
                    vec![Arc::clone(&tracker) as Arc<dyn ApplyObserver>],
                    worker.as_deref(),
                )
                .await?,
        );
    }
    if runtime.leased() {
        // Leases move while workers join; writes start once they have settled, so that
        // no hand-over replays what the run measures.
        runtime
            .wait_for_balanced_leases(
                &consumer.name,
                params.workers.max(1),
                Duration::from_secs(60),
            )
            .await?;
        // ...and once the workers that lost a lease have stopped reading it.
        wait_one_reader_per_shard(&pipelines, Duration::from_secs(60)).await?;
    }

    let writes: Arc<Mutex<Vec<WriteSample>>> = Arc::new(Mutex::new(Vec::new()));
    let committed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let write_errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cpu_before = cpu_seconds();
    let stop_rss = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rss_sampler = sample_rss(Arc::clone(&stop_rss));
    let wall = Instant::now();
    let start_us = now_us();

    // Backlog sampler, every 100 ms until told to stop.
    let stop_sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let tracker = Arc::clone(&tracker);
        let committed = Arc::clone(&committed);
        let stop = Arc::clone(&stop_sampling);
        tokio::spawn(async move {
            let mut points = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let c = committed.load(Relaxed);
                let a = tracker.applied.load(Relaxed);
                points.push(BacklogPoint {
                    t_s: wall.elapsed().as_secs_f64(),
                    backlog: c.saturating_sub(a),
                });
                if stop.load(Relaxed) || points.len() >= 1_000_000 {
                    break points;
                }
            }
        })
    };

    // The open-loop writer: at each wake-up, every write whose time has come is sent in
    // one request, without waiting for earlier requests to be answered.
    let total_time = params.warmup + params.duration;
    let schedule = Schedule::new(Instant::now(), params.rate, total_time);
    let mut workload = Workload::new(params.seed, params.deals, params.skew, params.mix);
    let mut writers = tokio::task::JoinSet::new();
    let mut next = 0u64;
    while next < schedule.total() {
        let due = schedule.due_by(Instant::now());
        if due > next {
            let ops: Vec<WriteOp> = (next..due).map(|_| workload.next_op()).collect();
            let scheduled: Vec<i64> = (next..due)
                .map(|i| start_us + schedule.offset(i).as_micros() as i64)
                .collect();
            next = due;
            let store = Arc::clone(&runtime.store);
            let keys: Vec<tsunagu_domain::ItemKey> =
                ops.iter().map(|op| op.key().clone()).collect();
            let writes = Arc::clone(&writes);
            let committed = Arc::clone(&committed);
            let write_errors = Arc::clone(&write_errors);
            writers.spawn(async move {
                match store.write_many(ops).await {
                    Ok(results) => {
                        let mut samples = Vec::with_capacity(results.len());
                        for ((result, scheduled_us), key) in
                            results.into_iter().zip(scheduled).zip(keys)
                        {
                            match result {
                                Ok(outcome) => {
                                    if let (Some(_), Some(version)) =
                                        (outcome.change, outcome.version)
                                    {
                                        samples.push(WriteSample {
                                            id: write_id(&key, version.0),
                                            scheduled_us,
                                            committed_us: outcome.committed_at_us,
                                        });
                                    }
                                }
                                Err(_) => {
                                    write_errors.fetch_add(1, Relaxed);
                                }
                            }
                        }
                        committed.fetch_add(samples.len() as u64, Relaxed);
                        if let Ok(mut w) = writes.lock() {
                            w.extend(samples);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "bench write failed");
                        write_errors.fetch_add(1, Relaxed);
                    }
                }
            });
            // Reap finished requests so the set stays small.
            while writers.try_join_next().is_some() {}
        }
        if next < schedule.total() {
            tokio::time::sleep_until(schedule.due_at(next).into()).await;
        }
    }
    while writers.join_next().await.is_some() {}
    let writes_done = wall.elapsed();

    // Wait until every committed write is searchable, or give up after the drain timeout.
    let ids: Vec<_> = writes
        .lock()
        .map(|w| w.iter().map(|s| s.id).collect())
        .unwrap_or_default();
    let deadline = Instant::now() + params.drain_timeout;
    while Instant::now() < deadline && !ids.iter().rev().all(|id| tracker.has_seen(*id)) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = wall.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    stop_sampling.store(true, Relaxed);
    stop_rss.store(true, Relaxed);
    let run_peak = rss_sampler.await.unwrap_or((0.0, 0.0));
    let bookkeeping = tracker.bytes()
        + writes
            .lock()
            .map_or(0, |w| w.capacity() * std::mem::size_of::<WriteSample>());
    let pipeline_memory = PipelineMemory::new(
        baseline_anon,
        run_peak,
        bookkeeping as f64 / (1 << 20) as f64,
    );
    let backlog_over_time = sampler.await.unwrap_or_default();

    let drift = drift(&runtime, &sink).await?;
    let dead_letters = runtime.state.dlq.count(&consumer.name).await?;
    for pipeline in pipelines {
        pipeline.shutdown().await;
    }
    drop(sinks);
    sink.close().await;
    runtime.close();

    let writes = writes.lock().map(|w| w.clone()).unwrap_or_default();
    let measure_from_us = start_us + params.warmup.as_micros() as i64;
    let latencies = summarize(
        &writes,
        &tracker.visible_at(),
        start_us,
        measure_from_us,
        250,
    );
    let order_violations = tracker.order_violations.load(Relaxed);
    let index_matches_primary = drift.is_clean();
    // With several workers, a lease that moves replays from its checkpoint: repeats are
    // expected there, and the sink's version guard makes them no-ops.
    let passed = latencies.lost == 0 && order_violations == 0 && index_matches_primary;
    Ok(LagReport {
        params: params.clone(),
        rate_target: params.rate,
        rate_achieved: writes.len() as f64 / writes_done.as_secs_f64().max(1e-9),
        count: latencies.measured,
        writes_committed: writes.len() as u64,
        write_errors: write_errors.load(Relaxed),
        lag_ms: latencies.lag_ms,
        e2e_ms: latencies.e2e_ms,
        lost: latencies.lost,
        order_violations,
        duplicate_deliveries: tracker.duplicates.load(Relaxed),
        dead_letters,
        index_matches_primary,
        drift: DriftCounts {
            checked: drift.checked,
            missing: drift.missing.len(),
            extra: drift.extra.len(),
            stale: drift.stale.len(),
        },
        duration_s: elapsed.as_secs_f64(),
        cpu_seconds: cpu,
        cpu_percent: 100.0 * cpu / elapsed.as_secs_f64().max(1e-9),
        peak_rss_mib: peak_rss_mib(),
        pipeline_memory,
        backlog_over_time,
        lag_over_time: latencies.series,
        passed,
    })
}

/// Waits until every shard runs in exactly one of `pipelines`.
async fn wait_one_reader_per_shard(
    pipelines: &[tsunagu_engine::Pipeline],
    within: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut readers: std::collections::BTreeMap<String, usize> = Default::default();
        for pipeline in pipelines {
            for consumer in pipeline.status() {
                for shard in consumer.shards {
                    if shard.state == tsunagu_engine::status::ShardState::Running {
                        *readers.entry(shard.shard.to_string()).or_default() += 1;
                    }
                }
            }
        }
        if readers.values().all(|n| *n == 1) {
            return Ok(());
        }
        if start.elapsed() > within {
            anyhow::bail!("shards still read by several workers after {within:?}: {readers:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl LagReport {
    /// A human summary.
    pub fn print(&self) -> Result<(), tsunagu_runtime::output::OutputError> {
        let p = &self.params;
        if let Some(config) = &p.config {
            outln!(
                "bench lag over the adapters of {config}, {} worker(s)",
                p.workers
            )?;
        }
        outln!(
            "bench lag: {:.0} writes/s for {:.0} s (+{:.0} s warm-up), parallelization {}, batch {}, window {} ms, refresh {} ms, {} shards, {} deals ({}), mix {}",
            p.rate,
            p.duration.as_secs_f64(),
            p.warmup.as_secs_f64(),
            p.parallelization_factor,
            p.batch_size,
            p.batching_window_ms,
            p.refresh_interval_ms,
            p.shards,
            p.deals,
            p.skew,
            p.mix
        )?;
        outln!(
            "  achieved {:.0} writes/s · {} writes measured ({} committed, {} errors)",
            self.rate_achieved,
            self.count,
            self.writes_committed,
            self.write_errors
        )?;
        outln!("  lag commit → searchable   {}", self.lag_ms)?;
        outln!("  end to end sched → search {}", self.e2e_ms)?;
        let peak_backlog = self
            .backlog_over_time
            .iter()
            .map(|b| b.backlog)
            .max()
            .unwrap_or(0);
        outln!(
            "  peak backlog {peak_backlog} · CPU {:.0}% of a core · peak RSS {:.0} MiB",
            self.cpu_percent,
            self.peak_rss_mib
        )?;
        outln!("  memory: {}", self.pipeline_memory)?;
        if self.passed {
            outln!(
                "  check: 0 lost, 0 order violations, index equals primary ({} items) ✓",
                self.drift.checked
            )?;
        } else {
            outln!(
                "  CHECK FAILED: {} lost, {} order violations, index vs primary: {} missing, {} extra, {} stale, {} dead letters",
                self.lost,
                self.order_violations,
                self.drift.missing,
                self.drift.extra,
                self.drift.stale,
                self.dead_letters
            )?;
        }
        Ok(())
    }
}

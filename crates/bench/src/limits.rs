//! `tsunagu bench limits`: what this machine can do at most, measured in one run with the
//! same documents: the store's raw commit rate, the index's raw indexing rate, and the
//! pipeline's rate with both at work, as a fraction of the lower limit.

use super::measure::VisibilityTracker;
use super::workload::{Mix, Skew, Workload};
use super::{LimitsArgs, RunDir};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_domain::ChangeRecord;
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};
use tsunagu_embedded_store::WriteOp;
use tsunagu_engine::ports::{ApplyObserver, ChangeSource, ReadFrom, Sink};
use tsunagu_engine::ConsumerConfig;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::outln;
use tsunagu_runtime::Embedded;

/// Writes per request and concurrent requests when writing flat out.
const WRITE_CHUNK: usize = 500;
const WRITERS: usize = 4;

#[derive(Debug, Serialize)]
struct LimitsReport {
    items: u64,
    store_commits_per_s: f64,
    index_docs_per_s: f64,
    pipeline_per_s: f64,
    /// Pipeline rate over the lower of the two limits.
    pipeline_fraction_of_limit: f64,
}

fn config_for(dir: &std::path::Path, args: &LimitsArgs) -> anyhow::Result<Config> {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.store.shard_count = args.shards;
    config.consumers = vec![ConsumerConfig {
        batch_size: args.batch_size as usize,
        parallelization_factor: args.parallelization_factor,
        max_in_flight_records: (args.batch_size as usize).max(20_000),
        ..ConsumerConfig::named("search")
    }];
    config.validate()?;
    Ok(config)
}

/// Writes `items` inserts as fast as the store takes them; returns the elapsed time.
pub(crate) async fn write_flat_out(
    embedded: &Embedded,
    items: u64,
    seed: u64,
) -> anyhow::Result<Duration> {
    let mix = Mix {
        insert: 100,
        update: 0,
        delete: 0,
    };
    let mut workload = Workload::new(seed, 10_000, Skew::Uniform, mix);
    let ops: Vec<WriteOp> = (0..items).map(|_| workload.next_op()).collect();
    let chunks: Vec<Vec<WriteOp>> = ops.chunks(WRITE_CHUNK).map(<[WriteOp]>::to_vec).collect();
    let queue = Arc::new(std::sync::Mutex::new(chunks));
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let queue = Arc::clone(&queue);
        let store = embedded.store.clone();
        writers.spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(chunk) = next else {
                    return Ok::<_, anyhow::Error>(());
                };
                for result in store.write_many(chunk).await? {
                    result?;
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

pub async fn run(args: &LimitsArgs) -> anyhow::Result<ExitCode> {
    // 1. The store alone.
    let store_dir = RunDir::new(None, "limits-store")?;
    let embedded = Embedded::open(config_for(&store_dir.path, args)?)?;
    let store_time = write_flat_out(&embedded, args.items, args.seed).await?;
    let store_rate = args.items as f64 / store_time.as_secs_f64();
    outln!(
        "store alone:    {} commits in {:.2} s = {store_rate:.0} writes/s",
        args.items,
        store_time.as_secs_f64()
    )?;

    // 2. The index alone, fed the very change records the store just produced.
    let mut records: Vec<ChangeRecord> = Vec::new();
    for shard in embedded.store.shards().await? {
        let batch = embedded
            .store
            .read(
                &shard.id,
                &ReadFrom::TrimHorizon,
                usize::MAX >> 1,
                Duration::ZERO,
            )
            .await?;
        records.extend(batch.records);
    }
    embedded.store.close();
    let index_dir = RunDir::new(None, "limits-index")?;
    let index = Arc::new(ActivityIndex::open(
        &index_dir.path,
        IndexOptions::default(),
    )?);
    let batches: Vec<Vec<ChangeRecord>> = records
        .chunks(args.batch_size as usize)
        .map(<[ChangeRecord]>::to_vec)
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut feeders = tokio::task::JoinSet::new();
    for _ in 0..args.parallelization_factor.max(1) {
        let queue = Arc::clone(&queue);
        let index = Arc::clone(&index);
        feeders.spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(batch) = next else {
                    return Ok::<_, anyhow::Error>(());
                };
                index
                    .apply(&batch)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        });
    }
    while let Some(done) = feeders.join_next().await {
        done??;
    }
    let index_time = started.elapsed();
    let index_rate = records.len() as f64 / index_time.as_secs_f64();
    outln!(
        "index alone:    {} documents in {:.2} s = {index_rate:.0} docs/s",
        records.len(),
        index_time.as_secs_f64()
    )?;
    if let Ok(index) = Arc::try_unwrap(index) {
        index.close().await;
    }

    // 3. The pipeline: write flat out while it replicates; the rate is items over the
    //    time until the last one is searchable.
    let pipe_dir = RunDir::new(None, "limits-pipeline")?;
    let embedded = Embedded::open(config_for(&pipe_dir.path, args)?)?;
    let sinks = embedded.open_sinks()?;
    let tracker = Arc::new(VisibilityTracker::default());
    let pipeline = embedded
        .start_pipeline(&sinks, vec![Arc::clone(&tracker) as Arc<dyn ApplyObserver>])
        .await?;
    let started = Instant::now();
    write_flat_out(&embedded, args.items, args.seed + 1).await?;
    while tracker.applied.load(Relaxed) < args.items {
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the pipeline did not catch up within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pipe_time = started.elapsed();
    pipeline.shutdown().await;
    drop(sinks);
    embedded.store.close();
    let pipe_rate = args.items as f64 / pipe_time.as_secs_f64();
    let limit = store_rate.min(index_rate);
    outln!(
        "pipeline:       {} writes searchable in {:.2} s = {pipe_rate:.0} writes/s ({:.0}% of the lower limit, {:.0}/s)",
        args.items,
        pipe_time.as_secs_f64(),
        100.0 * pipe_rate / limit,
        limit
    )?;
    let report = LimitsReport {
        items: args.items,
        store_commits_per_s: store_rate,
        index_docs_per_s: index_rate,
        pipeline_per_s: pipe_rate,
        pipeline_fraction_of_limit: pipe_rate / limit,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

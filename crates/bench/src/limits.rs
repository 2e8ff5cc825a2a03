//! `tsunagu bench limits`: what this machine can do at most, measured in one run with the
//! same documents: the store's raw commit rate, the sink's raw indexing rate, and the
//! pipeline's rate with both at work, as a fraction of the lower limit.
//!
//! On the embedded defaults each phase gets a data directory of its own. With `--config`
//! the phases run on the config's adapters and its first consumer:
//!
//! - the store phase writes to the config's primary;
//! - the sink phase writes the change records it produced into a scratch copy of the
//!   consumer's sink: a fresh directory for an embedded index, a new index
//!   `<index>-limits-sink-<pid>` for OpenSearch / Elasticsearch (deleted afterwards). For
//!   OpenSearch a raw `_bulk` loader then sends the very same request bodies to a second
//!   scratch index, with the same concurrency and refresh policy, checking only the HTTP
//!   status: the sink's rate over the raw loader's is what the sink's own work costs;
//! - the pipeline first catches up with the store phase's writes (not timed), then is
//!   timed over as many new writes.
//!
//! Memory is not separated here: the phases before the pipeline's leave the allocator
//! holding memory the pipeline then reuses, so subtracting resident sets misleads. `bench
//! lag` at the highest sustained rate measures the pipeline's own peak
//! ([`super::sys::PipelineMemory`]).

use super::measure::VisibilityTracker;
use super::sys::peak_rss_mib;
use super::workload::{Mix, Skew, Workload};
use super::{LimitsArgs, RunDir};
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_domain::ChangeRecord;
use tsunagu_embedded_store::WriteOp;
use tsunagu_engine::ports::{ApplyObserver, ChangeSource, ItemStore, ReadFrom};
use tsunagu_engine::ConsumerConfig;
use tsunagu_runtime::config::{Config, SinkConfig};
use tsunagu_runtime::outln;
use tsunagu_runtime::{Runtime, SinkHandle};

/// Writes per request and concurrent requests when writing flat out.
const WRITE_CHUNK: usize = 500;
const WRITERS: usize = 4;

/// The longest a phase may take before the run gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
struct LimitsReport {
    items: u64,
    /// `embedded_index` or `opensearch`.
    sink: &'static str,
    batch_size: usize,
    parallelization_factor: u32,
    store_commits_per_s: f64,
    /// The sink alone, fed the store phase's change records.
    index_docs_per_s: f64,
    /// OpenSearch only: a raw `_bulk` loader sending the same bodies.
    raw_bulk_docs_per_s: Option<f64>,
    /// OpenSearch only: the sink's rate over the raw loader's.
    sink_fraction_of_raw_bulk: Option<f64>,
    /// Embedded index only: the bytes of the sink-alone phase's index directory once
    /// closed (every document, as many segments as it left), and per document.
    index_bytes: Option<u64>,
    index_bytes_per_doc: Option<f64>,
    pipeline_per_s: f64,
    /// Pipeline rate over the lower of the store and sink rates.
    pipeline_fraction_of_limit: f64,
    /// The process's peak resident set over the whole run (VmHWM), all phases and the
    /// benchmark's own data included.
    process_peak_rss_mib: f64,
}

/// The embedded defaults with the benchmark's knobs, in `dir`.
fn embedded_config(dir: &Path, args: &LimitsArgs) -> anyhow::Result<Config> {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.store.shard_count = args.shards;
    let sink = config
        .sinks
        .keys()
        .next()
        .cloned()
        .context("the default config has no sink")?;
    if let Some(SinkConfig::EmbeddedIndex { dictionary, .. }) = config.sinks.get_mut(&sink) {
        dictionary.clone_from(&args.dictionary);
    }
    config.consumers = vec![ConsumerConfig {
        batch_size: args.batch_size as usize,
        parallelization_factor: args.parallelization_factor,
        max_in_flight_records: (args.batch_size as usize).max(20_000),
        sink,
        ..ConsumerConfig::named("search")
    }];
    config.validate()?;
    Ok(config)
}

/// `items` inserts of fresh items, in requests of [`WRITE_CHUNK`].
fn insert_chunks(items: u64, seed: u64) -> Vec<Vec<WriteOp>> {
    let mix = Mix {
        insert: 100,
        update: 0,
        delete: 0,
    };
    let mut workload = Workload::new(seed, 10_000, Skew::Uniform, mix);
    let ops: Vec<WriteOp> = (0..items).map(|_| workload.next_op()).collect();
    ops.chunks(WRITE_CHUNK).map(<[WriteOp]>::to_vec).collect()
}

/// Writes `items` inserts as fast as the store takes them; returns the elapsed time.
pub(crate) async fn write_flat_out(
    store: Arc<dyn ItemStore>,
    items: u64,
    seed: u64,
) -> anyhow::Result<Duration> {
    write_chunks(store, insert_chunks(items, seed)).await
}

/// Writes `chunks` with [`WRITERS`] concurrent requests; returns the elapsed time.
async fn write_chunks(
    store: Arc<dyn ItemStore>,
    chunks: Vec<Vec<WriteOp>>,
) -> anyhow::Result<Duration> {
    feed_all(chunks, WRITERS as u32, move |chunk| {
        let store = Arc::clone(&store);
        async move {
            for result in store.write_many(chunk).await? {
                result?;
            }
            Ok(())
        }
    })
    .await
}

/// Every change record of the source, shard by shard in commit order, until `expected`
/// are read.
async fn read_back(source: &dyn ChangeSource, expected: u64) -> anyhow::Result<Vec<ChangeRecord>> {
    let started = Instant::now();
    let mut records: Vec<ChangeRecord> = Vec::new();
    let shards = source.shards().await?;
    let mut positions: Vec<ReadFrom> = shards.iter().map(|_| ReadFrom::TrimHorizon).collect();
    while (records.len() as u64) < expected {
        if started.elapsed() > PHASE_TIMEOUT {
            anyhow::bail!(
                "read back {} of the {expected} change records within {} s",
                records.len(),
                PHASE_TIMEOUT.as_secs()
            );
        }
        for (shard, from) in shards.iter().zip(positions.iter_mut()) {
            loop {
                let batch = source
                    .read(&shard.id, from, 10_000, Duration::from_millis(200))
                    .await?;
                let Some(last) = batch.records.last() else {
                    break;
                };
                *from = ReadFrom::After(last.position.clone());
                records.extend(batch.records);
            }
        }
    }
    Ok(records)
}

/// The config with the consumer's sink pointed at a scratch target: `dir` for an
/// embedded index, a new index for OpenSearch.
fn scratch_sink_config(
    config: &Config,
    sink: &str,
    tag: &str,
    dir: &Path,
) -> anyhow::Result<Config> {
    let mut config = config.clone();
    config.data_dir = dir.to_path_buf();
    match config.sinks.get_mut(sink) {
        Some(SinkConfig::EmbeddedIndex { .. }) => {}
        Some(SinkConfig::Opensearch(opensearch)) => {
            opensearch.index = format!("{}-limits-{tag}-{}", opensearch.index, std::process::id());
        }
        Some(SinkConfig::Kinesis(_)) => anyhow::bail!(
            "sinks.{sink} is a kinesis forwarder; bench limits measures a search index sink"
        ),
        None => anyhow::bail!("no sink named {sink:?} in the config"),
    }
    Ok(config)
}

/// Runs `feed` on `parallelization` tasks over `batches` until they are all taken;
/// returns the elapsed time.
async fn feed_all<T, F, Fut>(
    batches: Vec<T>,
    parallelization: u32,
    feed: F,
) -> anyhow::Result<Duration>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut feeders = tokio::task::JoinSet::new();
    for _ in 0..parallelization.max(1) {
        let queue = Arc::clone(&queue);
        let feed = feed.clone();
        feeders.spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(batch) = next else {
                    return Ok::<_, anyhow::Error>(());
                };
                feed(batch).await?;
            }
        });
    }
    while let Some(done) = feeders.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// The sink alone (and for OpenSearch the raw loader): docs/s of each.
/// What the sink-alone phase measured.
struct SinkMeasure {
    docs_per_s: f64,
    raw_bulk_docs_per_s: Option<f64>,
    index_bytes: Option<u64>,
}

async fn measure_sink(
    config: &Config,
    consumer: &ConsumerConfig,
    records: &[ChangeRecord],
) -> anyhow::Result<SinkMeasure> {
    let dir = RunDir::new(None, "limits-sink")?;
    let scratch = scratch_sink_config(config, &consumer.sink, "sink", &dir.path)?;
    let handle = tsunagu_runtime::open_sink(&scratch, &consumer.sink).await?;
    let sink = handle.sink();
    let batches: Vec<Vec<ChangeRecord>> = records
        .chunks(consumer.batch_size.max(1))
        .map(<[ChangeRecord]>::to_vec)
        .collect();
    let elapsed = feed_all(batches, consumer.parallelization_factor, move |batch| {
        let sink = Arc::clone(&sink);
        async move {
            sink.apply(&batch)
                .await
                .map_err(|e| anyhow::anyhow!("the sink refused a batch: {e}"))
        }
    })
    .await?;
    let sink_rate = records.len() as f64 / elapsed.as_secs_f64();
    let raw_rate = match &handle {
        SinkHandle::OpenSearch(sink) => {
            let result = raw_bulk(config, consumer, sink, records).await;
            if let Err(e) = sink.delete_index().await {
                tracing::warn!(error = %e, "deleting the scratch index failed");
            }
            Some(result?)
        }
        _ => None,
    };
    let embedded = matches!(handle, SinkHandle::Embedded(_));
    handle.close().await;
    let index_bytes = if embedded {
        Some(bytes_under(&scratch.index_dir(&consumer.sink))?)
    } else {
        None
    };
    Ok(SinkMeasure {
        docs_per_s: sink_rate,
        raw_bulk_docs_per_s: raw_rate,
        index_bytes,
    })
}

/// The bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            bytes_under(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// A raw `_bulk` loader: the bodies the sink would send for the same batches, posted to
/// a scratch index with the same concurrency; docs/s.
async fn raw_bulk(
    config: &Config,
    consumer: &ConsumerConfig,
    rendering: &tsunagu_opensearch::OpenSearchSink,
    records: &[ChangeRecord],
) -> anyhow::Result<f64> {
    let dir = RunDir::new(None, "limits-raw")?;
    let scratch = scratch_sink_config(config, &consumer.sink, "raw", &dir.path)?;
    let SinkHandle::OpenSearch(target) =
        tsunagu_runtime::open_sink(&scratch, &consumer.sink).await?
    else {
        anyhow::bail!("sinks.{} is not an OpenSearch sink", consumer.sink);
    };
    // Rendered before the clock starts: the loader only sends.
    let bodies: Vec<Vec<u8>> = records
        .chunks(consumer.batch_size.max(1))
        .flat_map(|batch| rendering.bulk_bodies(batch))
        .collect();
    let loader = Arc::clone(&target);
    let elapsed = feed_all(bodies, consumer.parallelization_factor, move |body| {
        let target = Arc::clone(&loader);
        async move { Ok(target.send_raw_bulk(body).await?) }
    })
    .await;
    if let Err(e) = target.delete_index().await {
        tracing::warn!(error = %e, "deleting the scratch index failed");
    }
    Ok(records.len() as f64 / elapsed?.as_secs_f64())
}

pub async fn run(args: &LimitsArgs, data_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    // One data directory for every phase with a config (its adapters are shared); one
    // per phase on the embedded defaults.
    let store_dir = RunDir::new(None, "limits-store")?;
    let config = match &args.config {
        Some(path) => tsunagu_runtime::resolve_config(Some(path), data_dir)?,
        None => embedded_config(&store_dir.path, args)?,
    };
    let consumer = config
        .consumers
        .first()
        .cloned()
        .context("the config has no consumer")?;
    let config = Config {
        consumers: vec![consumer.clone()],
        ..config
    };
    let sink_kind = match config.sinks.get(&consumer.sink) {
        Some(SinkConfig::Opensearch(_)) => "opensearch",
        _ => "embedded_index",
    };
    outln!(
        "bench limits: {} items per phase, sink {} ({sink_kind}{}), batch {}, parallelization {}",
        args.items,
        consumer.sink,
        match &args.dictionary {
            Some(dir) => format!(", dictionary {}", dir.display()),
            None => String::new(),
        },
        consumer.batch_size,
        consumer.parallelization_factor
    )?;

    // 1. The store alone.
    let runtime = Runtime::open(config.clone()).await?;
    let store_time = write_flat_out(Arc::clone(&runtime.store), args.items, args.seed).await?;
    let store_rate = args.items as f64 / store_time.as_secs_f64();
    outln!(
        "store alone:    {} commits in {:.2} s = {store_rate:.0} writes/s",
        args.items,
        store_time.as_secs_f64()
    )?;

    // 2. The sink alone, fed the very change records the store just produced.
    let records = read_back(runtime.source.as_ref(), args.items).await?;
    let SinkMeasure {
        docs_per_s: index_rate,
        raw_bulk_docs_per_s: raw_rate,
        index_bytes,
    } = measure_sink(&config, &consumer, &records).await?;
    outln!(
        "sink alone:     {} documents = {index_rate:.0} docs/s",
        records.len()
    )?;
    let index_bytes_per_doc = index_bytes.map(|b| b as f64 / records.len().max(1) as f64);
    if let (Some(bytes), Some(per_doc)) = (index_bytes, index_bytes_per_doc) {
        outln!(
            "index on disk:  {:.1} MiB = {per_doc:.0} bytes/doc",
            bytes as f64 / (1 << 20) as f64
        )?;
    }
    if let Some(raw) = raw_rate {
        outln!(
            "raw _bulk:      {} documents = {raw:.0} docs/s (the sink at {:.0}% of it)",
            records.len(),
            100.0 * index_rate / raw
        )?;
    }
    drop(records);

    // 3. The pipeline: write flat out while it replicates; the rate is items over the
    //    time until the last one is searchable. With a config it first catches up with
    //    the store phase's writes; on the defaults it starts on a fresh directory.
    let pipe_dir = RunDir::new(None, "limits-pipeline")?;
    let (runtime, already) = if args.config.is_some() {
        (runtime, args.items)
    } else {
        runtime.close();
        drop(runtime);
        (
            Runtime::open(embedded_config(&pipe_dir.path, args)?).await?,
            0,
        )
    };
    let sinks = runtime.open_sinks().await?;
    let tracker = Arc::new(VisibilityTracker::default());
    let pipeline = runtime
        .start_pipeline(
            &sinks,
            vec![Arc::clone(&tracker) as Arc<dyn ApplyObserver>],
            None,
        )
        .await?;
    wait_applied(&tracker.applied, already).await?;
    let chunks = insert_chunks(args.items, args.seed + 1);
    let started = Instant::now();
    write_chunks(Arc::clone(&runtime.store), chunks).await?;
    wait_applied(&tracker.applied, already + args.items).await?;
    let pipe_time = started.elapsed();
    pipeline.shutdown().await;
    for handle in sinks.into_values() {
        handle.close().await;
    }
    runtime.close();

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
        sink: sink_kind,
        batch_size: consumer.batch_size,
        parallelization_factor: consumer.parallelization_factor,
        store_commits_per_s: store_rate,
        index_docs_per_s: index_rate,
        raw_bulk_docs_per_s: raw_rate,
        sink_fraction_of_raw_bulk: raw_rate.map(|raw| index_rate / raw),
        index_bytes,
        index_bytes_per_doc,
        pipeline_per_s: pipe_rate,
        pipeline_fraction_of_limit: pipe_rate / limit,
        process_peak_rss_mib: peak_rss_mib(),
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until `applied` reaches `target`.
async fn wait_applied(applied: &AtomicU64, target: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    while applied.load(Relaxed) < target {
        if started.elapsed() > PHASE_TIMEOUT {
            anyhow::bail!(
                "the pipeline applied {} of {target} records within {} s",
                applied.load(Relaxed),
                PHASE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

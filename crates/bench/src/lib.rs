//! `tsunagu bench`: the load tests the original team ran by hand, as commands that print
//! their figures, in their own crate so the product's core carries none of them. The
//! binary parses `tsunagu bench ...` into [`BenchCommand`] and calls [`run`].
//!
//! - `lag`: one open-loop run at a fixed rate ([`run`]), with the correctness check.
//! - `sweep`: the original four scenarios, then the highest sustained rate ([`sweep`]).
//! - `limits`: the store's and the index's raw rates beside the pipeline's ([`limits`]).
//! - `api`: search latency and write throughput of the HTTP API ([`api`]).
//! - `drift`: backfill and reconcile on many items with injected drift ([`drift`]).
//! - `search-quality`: memo search on the judged query set ([`search_quality`]).
//!
//! Supporting modules: [`schedule`] (fixed write times), [`workload`] (what is written),
//! [`measure`] (joining writes with visibility into histograms), [`chart`] (SVG),
//! [`sys`] (CPU and memory), [`lag`] (commit → searchable lag recording) and [`sample`]
//! (a realistic generator of sales activity, which the demo writes too), [`verify`]
//! (the exact index-equals-primary check runs end with).

// Every line goes through `outln!`, which survives `| head` (`tsunagu_runtime::output`).
#![deny(clippy::print_stdout)]

pub mod api;
pub mod chart;
pub mod drift;
pub mod lag;
pub mod limits;
pub mod measure;
pub mod run;
pub mod sample;
pub mod schedule;
pub mod search_quality;
pub mod sweep;
pub mod sys;
pub mod verify;
pub mod workload;

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// One run at a fixed rate: lag percentiles, backlog, CPU, memory, and the
    /// correctness check (exits non-zero when it fails).
    Lag(LagArgs),
    /// The original team's four load tests, then the highest rate sustained with p99 lag
    /// ≤ 1 s, side by side with the original figures.
    Sweep(SweepArgs),
    /// Raw commit rate of the store, raw indexing rate of the index, and the pipeline's
    /// sustained rate as a fraction of the lower one.
    Limits(LimitsArgs),
    /// Backfill items/s and reconcile time on many items with injected drift, and the
    /// share of items reconcile had to read one by one.
    Drift(drift::DriftArgs),
    /// The HTTP API: search latency on many activities (three filters and a text term),
    /// then write throughput over HTTP with the replication lag meanwhile.
    Api(api::ApiArgs),
    /// Memo search quality on the judged query set: precision, recall and nDCG@10 per
    /// class, failing under a class's recorded floor.
    SearchQuality(search_quality::SearchQualityArgs),
}

/// Knobs shared by every run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Measured time per run after the warm-up (e.g. 20s, 1m).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Time written at the target rate before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Lanes per shard.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelization_factor: u32,
    /// Records per sink call.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// How long a lane waits to fill a batch (0: send what is there).
    #[arg(long, default_value_t = 0)]
    pub batching_window_ms: u64,
    /// The index's least time between two commits.
    #[arg(long, default_value_t = tsunagu_embedded_index::DEFAULT_REFRESH_INTERVAL_MS)]
    pub refresh_interval_ms: u64,
    /// Shards of the change stream.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// Deals (partition keys) written to.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub deals: u32,
    /// How deals are picked: uniform, zipf or zipf:EXPONENT.
    #[arg(long, default_value = "uniform")]
    pub skew: workload::Skew,
    /// Insert,update,delete percentages.
    #[arg(long, default_value = "70,25,5")]
    pub mix: workload::Mix,
    /// Seed of the workload generator (the same seed writes the same items).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// How long to wait after the last write for everything to become searchable.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

impl RunArgs {
    pub fn params(&self, rate: f64) -> run::LagParams {
        run::LagParams {
            rate,
            duration: self.duration,
            warmup: self.warmup,
            parallelization_factor: self.parallelization_factor,
            batch_size: self.batch_size as usize,
            batching_window_ms: self.batching_window_ms,
            refresh_interval_ms: self.refresh_interval_ms,
            shards: self.shards,
            deals: self.deals,
            skew: self.skew,
            mix: self.mix,
            seed: self.seed,
            drain_timeout: self.drain_timeout,
            config: None,
            workers: 1,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LagArgs {
    /// Target rate, writes per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[command(flatten)]
    pub run: RunArgs,
    /// Write the full report (figures, parameters, series) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the lag-over-time chart (SVG) here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Run over the adapters this config file names (store, stream, sinks, leases) and
    /// its first consumer's knobs, instead of the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Workers (in this process) sharing the stream through the config's leases.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Batch size, parallelization and shards used while searching for the highest
    /// sustained rate (the four original scenarios always use batch size 1).
    #[arg(long, default_value_t = 1_000)]
    pub search_batch_size: usize,
    /// Lanes per shard while searching for the highest sustained rate.
    #[arg(long, default_value_t = 2)]
    pub search_parallelization_factor: u32,
    /// First rate tried by the search; it doubles until p99 lag passes 1 s, then bisects.
    #[arg(long, default_value_t = 2_000.0)]
    pub search_start_rate: f64,
    /// Skip the search for the highest sustained rate.
    #[arg(long)]
    pub no_search: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Directory for one lag chart per run.
    #[arg(long)]
    pub charts: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// Items written for each measurement.
    #[arg(long, default_value_t = 200_000)]
    pub items: u64,
    /// Shards of the change stream.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// Consumer knobs for the pipeline measurement.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// Lanes per shard for the pipeline measurement.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelization_factor: u32,
    /// Seed of the workload generator (the same seed writes the same items).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run over the adapters this config file names (store, stream, the first consumer's
    /// sink and its knobs, which then replace --shards, --batch-size and
    /// --parallelization-factor) instead of the embedded defaults. With an OpenSearch
    /// sink, a raw `_bulk` loader is measured beside it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// On the embedded defaults: index memos with the Japanese word analysis of the
    /// MeCab IPADIC sources in DIR (`sinks.activities.dictionary`), to measure its cost.
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub dictionary: Option<PathBuf>,
}

/// A directory for one run: under `base` if given (kept), else a temporary one (removed).
pub(crate) struct RunDir {
    pub path: PathBuf,
    remove: bool,
}

impl RunDir {
    pub fn new(base: Option<&Path>, name: &str) -> anyhow::Result<Self> {
        let (path, remove) = match base {
            Some(base) => (base.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "tsunagu-bench-{name}-{}-{}",
                    std::process::id(),
                    chrono::Utc::now().timestamp_millis()
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&path)?;
        Ok(Self { path, remove })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub async fn run(command: BenchCommand, data_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Api(args) => api::run(&args, data_dir).await,
        BenchCommand::Lag(args) => {
            let mut params = args.run.params(args.rate);
            params.workers = args.workers;
            let report = match &args.config {
                Some(path) => {
                    params.config = Some(path.display().to_string());
                    let config = tsunagu_runtime::resolve_config(Some(path), data_dir)?;
                    run::run_lag_on(config, &params).await?
                }
                None => {
                    if args.workers > 1 {
                        anyhow::bail!("--workers needs --config with a [leases] section");
                    }
                    let dir = RunDir::new(data_dir, "lag")?;
                    run::run_lag(&params, &dir.path).await?
                }
            };
            report.print()?;
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
            }
            if let Some(path) = &args.chart {
                let title = format!(
                    "lag at {:.0} writes/s, parallelization {}, batch {}",
                    args.rate, args.run.parallelization_factor, args.run.batch_size
                );
                chart::write_lag_chart(path, &title, &report.lag_over_time)?;
            }
            if !report.passed {
                eprintln!("error: the correctness check failed (see above)");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Sweep(args) => sweep::run(&args).await,
        BenchCommand::Limits(args) => limits::run(&args, data_dir).await,
        BenchCommand::Drift(args) => drift::run(&args, data_dir).await,
        BenchCommand::SearchQuality(args) => search_quality::run(&args).await,
    }
}

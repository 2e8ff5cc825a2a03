//! `tsunagu migrate`: graph → relational migration (see docs/migration.md).

use crate::{out, outln};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tsunagu_migrate::{bench, fixture, plan, run, spec, verify};

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Write a realistic APOC JSON-lines export of the sales domain, with a share of
    /// invalid records (listed in injected.tsv, expected counts in expected.tsv).
    GenFixture(GenFixtureArgs),
    /// Validate a spec, print the load order and write the migration spec document and
    /// runbook (Markdown) generated from it.
    Plan(PlanArgs),
    /// Run a migration: export, load through staging tables, swap, verify, report.
    Run(RunArgs),
    /// Benchmark: generate a fixture, migrate it, then load the same chunks raw with
    /// LOAD DATA into foreign-key-less copies; print end-to-end and raw rows/s, their
    /// ratio and the peak memory.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Records to generate (nodes and relationships), approximately.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rows: u64,
    /// Target database, mysql://USER[:PASSWORD]@HOST:PORT/DB (created if missing; its
    /// migrated tables are replaced).
    #[arg(long, env = "TSUNAGU_MIGRATE_TARGET")]
    pub target: String,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the fixture, chunks and report go (kept for inspection).
    #[arg(long, default_value = "migrate-bench.work")]
    pub work_dir: PathBuf,
    /// Share of invalid records in the fixture, 0 to 1.
    #[arg(long, default_value_t = 0.01)]
    pub invalid_share: f64,
    /// Random seed of the fixture.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// A spec for the fixture; default: the schema's built-in spec
    /// (examples/migration/sales.toml, or original-31.toml for --schema original31).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Which fixture: `sales` (8 tables) or `original31` (31 tables shaped like the
    /// original system's).
    #[arg(long, default_value = "sales", value_parser = fixture::Schema::parse)]
    pub schema: fixture::Schema,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct GenFixtureArgs {
    /// Output directory (created if missing).
    #[arg(long, required_unless_present = "print_spec")]
    pub out: Option<PathBuf>,
    /// Records to generate (nodes and relationships), approximately.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), required_unless_present = "print_spec")]
    pub rows: Option<u64>,
    /// Share of invalid records, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub invalid_share: f64,
    /// Random seed; the same seed and sizes give the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which fixture: `sales` (8 tables, examples/migration/sales.toml) or `original31`
    /// (31 tables shaped like the original system's, examples/migration/original-31.toml).
    #[arg(long, default_value = "sales", value_parser = fixture::Schema::parse)]
    pub schema: fixture::Schema,
    /// Print the schema's spec (TOML) to standard output instead of generating.
    #[arg(long)]
    pub print_spec: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// Where to write migration-spec.md and runbook.md.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// The graph: a directory of APOC JSON-lines export files (*.json, *.jsonl), or a live
    /// graph at bolt://[USER:PASSWORD@]HOST:PORT[/DATABASE][?workers=N&page_size=N] (read
    /// in id ranges by N workers; needed for cypher tables). Only needed when a table reads the graph: DynamoDB,
    /// OpenSearch and embedded-store tables read the spec's [sources.NAME] connections.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Target database, mysql://USER[:PASSWORD]@HOST:PORT/DB (created if missing).
    #[arg(long, env = "TSUNAGU_MIGRATE_TARGET")]
    pub target: String,
    /// Where to write the JSON report.
    #[arg(long)]
    pub report: PathBuf,
    /// Work directory (partitions, chunks, reject files, state); default: next to the
    /// report, `<report name>.work`.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the CSV chunks in an S3 bucket, s3://BUCKET/PREFIX, instead of the work
    /// directory (overrides the spec's [settings] chunks). Region, credentials and
    /// endpoint (AWS_ENDPOINT_URL) come from the standard AWS chain.
    #[arg(long, value_parser = tsunagu_migrate::chunk_store::S3Location::parse)]
    pub chunks: Option<tsunagu_migrate::chunk_store::S3Location>,
    /// Continue an interrupted run from its state file.
    #[arg(long)]
    pub resume: bool,
    /// Overrides the spec's max_reject_share (0 to 1).
    #[arg(long)]
    pub max_reject_share: Option<f64>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(command: MigrateCommand) -> anyhow::Result<ExitCode> {
    match command {
        MigrateCommand::GenFixture(a) => {
            if a.print_spec {
                out!("{}", a.schema.spec())?;
                return Ok(ExitCode::SUCCESS);
            }
            let (Some(out), Some(rows)) = (a.out.clone(), a.rows) else {
                anyhow::bail!("--out and --rows are needed");
            };
            let opts = fixture::FixtureOptions {
                rows,
                invalid_share: a.invalid_share,
                seed: a.seed,
            };
            let dir = out.clone();
            let schema = a.schema;
            let expected =
                tokio::task::spawn_blocking(move || schema.generate(&dir, &opts)).await??;
            let (mut total, mut invalid) = (0, 0);
            for (table, e) in &expected {
                outln!(
                    "{table:<20} {:>10} records, {:>8} invalid",
                    e.read,
                    e.rejected
                )?;
                total += e.read;
                invalid += e.rejected;
            }
            outln!(
                "{total} records ({invalid} invalid) in {}",
                out.join("export.json").display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Plan(a) => {
            let model = spec::load(&a.spec)?;
            let p = plan::plan(&model)?;
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?;
            let name = a.spec.display().to_string();
            let doc = a.out.join("migration-spec.md");
            std::fs::write(&doc, plan::spec_document(&model, &p, &name))
                .with_context(|| format!("writing {}", doc.display()))?;
            let book = a.out.join("runbook.md");
            std::fs::write(&book, plan::runbook(&model, &p, &name))
                .with_context(|| format!("writing {}", book.display()))?;
            outln!("load order:")?;
            for (n, level) in p.levels.iter().enumerate() {
                let names: Vec<&str> = level
                    .iter()
                    .map(|&i| model.tables[i].name.as_str())
                    .collect();
                outln!("  {}. {}", n + 1, names.join(", "))?;
            }
            outln!("wrote {} and {}", doc.display(), book.display())?;
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Bench(a) => {
            let opts = bench::BenchOptions {
                rows: a.rows,
                invalid_share: a.invalid_share,
                seed: a.seed,
                target: a.target,
                work_dir: a.work_dir,
                spec: a.spec,
                schema: a.schema,
                progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let report = bench::bench(&opts).await?;
            out!("{}", bench::render(&report))?;
            if let Some(path) = &a.json {
                let json = serde_json::to_vec_pretty(&report)?;
                std::fs::write(path, json)
                    .with_context(|| format!("writing {}", path.display()))?;
                outln!("figures: {}", path.display())?;
            }
            if report.verified {
                Ok(ExitCode::SUCCESS)
            } else {
                anyhow::bail!(
                    "the migration did not verify; see {}",
                    opts.work_dir.join("report.json").display()
                )
            }
        }
        MigrateCommand::Run(a) => {
            let work_dir = a
                .work_dir
                .clone()
                .unwrap_or_else(|| run::RunOptions::default_work_dir(&a.report));
            let opts = run::RunOptions {
                spec: a.spec,
                source: a.source,
                target: a.target,
                report: a.report.clone(),
                work_dir,
                chunks: a.chunks,
                resume: a.resume,
                max_reject_share: a.max_reject_share,
                progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let report = run::run(&opts).await?;
            out!("{}", verify::render(&report))?;
            outln!("report: {}", a.report.display())?;
            if report.ok {
                Ok(ExitCode::SUCCESS)
            } else {
                anyhow::bail!("verification failed: {}", report.problems.join("; "))
            }
        }
    }
}

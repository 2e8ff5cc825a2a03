//! `tsunagu migrate bench`: the migration benchmark as a command.
//!
//! Generates the sales fixture (or, with [`fixture::Schema::Original31`], the 31-table
//! one), runs the whole migration into the target (read →
//! verified), then loads the very same final chunk files raw with `LOAD DATA LOCAL
//! INFILE` into copies of the migrated tables made with `CREATE TABLE ... LIKE` (which
//! copies columns and keys but not foreign keys) through the same server, with the
//! same number of connections per table, tables one after the other. The raw figure
//! is therefore an upper bound: no transforms, no checks, no foreign keys. A second raw
//! pass loads the same chunks into copies that keep the spec's foreign keys, which
//! separates the cost of the server's row-by-row checks from the rest. Peak memory
//! is the process's high-water mark (`VmHWM`) of the migration run, reset after the
//! fixture is generated; its CPU time is the process's own (user and system) during the
//! run, so that a run on shared cores tells how much of them the migration took from
//! the server.

use crate::error::{Error, Result};
use crate::export::csv::LOAD_DATA_FORMAT;
use crate::fixture::{self, FixtureOptions};
use crate::load::{self, Target};
use crate::run::{self, RunOptions};
use crate::{plan, spec};
use mysql_async::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The spec matching [`fixture::generate`], used unless the bench is given another.
pub const SALES_SPEC: &str = include_str!("../../../examples/migration/sales.toml");

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub rows: u64,
    pub invalid_share: f64,
    pub seed: u64,
    pub target: String,
    /// Fixture, chunks and reports go here (kept for inspection).
    pub work_dir: PathBuf,
    /// A spec file; `None`: the schema's own ([`SALES_SPEC`] by default).
    pub spec: Option<PathBuf>,
    /// Which fixture to generate.
    pub schema: fixture::Schema,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchTable {
    pub name: String,
    pub written: u64,
    pub export_seconds: f64,
    pub load_seconds: f64,
    pub raw_seconds: f64,
    /// The raw load into copies with the spec's foreign keys.
    pub raw_fk_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub records: u64,
    pub fixture_bytes: u64,
    pub fixture_seconds: f64,
    pub rows_read: u64,
    pub rows_written: u64,
    /// Read → verified, the whole `migrate run`.
    pub seconds: f64,
    /// Rows read per second, end to end.
    pub rows_per_second: f64,
    pub raw_rows: u64,
    pub raw_seconds: f64,
    pub raw_rows_per_second: f64,
    /// The same raw load into copies that keep the spec's foreign keys (checked by the
    /// server row by row): the share of the gap the checks themselves explain.
    pub raw_fk_seconds: f64,
    pub raw_fk_rows_per_second: f64,
    /// `written_per_second / raw_rows_per_second`: both count rows loaded into the
    /// target (rejected rows are not loaded by either).
    pub ratio: f64,
    /// Rows written per second, end to end (the same rows the raw load loads).
    pub written_per_second: f64,
    pub peak_rss_bytes: Option<u64>,
    /// CPU time (user and system) of this process during the migration run, all its
    /// threads: with `seconds`, the cores tsunagu kept busy on average.
    pub cpu_seconds: Option<f64>,
    pub load_connections: u32,
    pub verified: bool,
    pub fk_violations: u64,
    pub tables: Vec<BenchTable>,
}

/// The process's peak resident set size (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    tsunagu_process::status_kib("VmHWM:").map(|kib| kib as u64 * 1024)
}

/// Resets the peak RSS (Linux: writing 5 to `/proc/self/clear_refs`); false if it could
/// not, in which case the figure includes what ran before.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub async fn bench(opts: &BenchOptions) -> Result<BenchReport> {
    let w = &opts.work_dir;
    std::fs::create_dir_all(w).map_err(|e| Error::io(w, e))?;
    let spec_path = match &opts.spec {
        Some(p) => p.clone(),
        None => {
            let p = w.join(match opts.schema {
                fixture::Schema::Sales => "sales.toml",
                fixture::Schema::Original31 => "original-31.toml",
            });
            std::fs::write(&p, opts.schema.spec()).map_err(|e| Error::io(&p, e))?;
            p
        }
    };
    let model = spec::load(&spec_path)?;
    if let Some(chunks) = &model.settings.chunks {
        // The raw pass loads the final chunk files from the work directory.
        return Err(Error::Other(format!(
            "the benchmark keeps chunks in its work directory; remove `chunks = \"{chunks}\"` from the spec's [settings]"
        )));
    }
    let order: Vec<usize> = plan::plan(&model)?.order().collect();

    let fixture_dir = w.join("fixture");
    let started = std::time::Instant::now();
    let fopts = FixtureOptions {
        rows: opts.rows,
        invalid_share: opts.invalid_share,
        seed: opts.seed,
    };
    let dir = fixture_dir.clone();
    let schema = opts.schema;
    let expected = tokio::task::spawn_blocking(move || schema.generate(&dir, &fopts))
        .await
        .map_err(|e| Error::Other(format!("fixture task: {e}")))??;
    let fixture_seconds = started.elapsed().as_secs_f64();
    let export_file = fixture_dir.join("export.json");
    let fixture_bytes = std::fs::metadata(&export_file)
        .map_err(|e| Error::io(&export_file, e))?
        .len();
    let records = expected.values().map(|e| e.read).sum();

    reset_peak_rss();
    let report_path = w.join("report.json");
    let run_opts = RunOptions {
        spec: spec_path,
        source: Some(fixture_dir),
        target: opts.target.clone(),
        report: report_path.clone(),
        work_dir: w.join("work"),
        chunks: None,
        resume: false,
        max_reject_share: None,
        progress: opts.progress,
    };
    let cpu_before = tsunagu_process::cpu_seconds();
    let report = run::run(&run_opts).await?;
    let peak = peak_rss_bytes();
    let cpu_seconds = tsunagu_process::cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);

    let target = Target::connect(&opts.target).await?;
    let connections = model.settings.load_connections.max(1);
    let mut tables = Vec::new();
    let mut raw_rows = 0u64;
    let mut raw_seconds = 0.0;
    let mut fk_seconds = 0.0;
    let mut conn = target.conn().await?;
    for &ti in &order {
        let t = &model.tables[ti];
        // Raw: a copy made LIKE the table (columns and keys, no foreign keys).
        let raw = format!("raw_{}", t.name);
        let create = [format!("CREATE TABLE `{raw}` LIKE `{}`", t.name)];
        let started = std::time::Instant::now();
        raw_rows += raw_load(
            &target,
            &t.name,
            &raw,
            &create,
            &run_opts.work_dir,
            connections,
        )
        .await?;
        let raw_s = started.elapsed().as_secs_f64();
        raw_seconds += raw_s;
        conn.query_drop(format!("DROP TABLE `{raw}`")).await?;
        // The same with the spec's foreign keys (to copies of the parents loaded just
        // before), to tell the cost of the checks from the rest of the migration.
        let fk = format!("rawfk_{}", t.name);
        let create: Vec<String> = std::iter::once(load::create_table_sql(t, &fk))
            .chain(load::add_foreign_keys_sql(&model, t, &fk, |p| {
                format!("rawfk_{p}")
            }))
            .collect();
        let started = std::time::Instant::now();
        raw_load(
            &target,
            &t.name,
            &fk,
            &create,
            &run_opts.work_dir,
            connections,
        )
        .await?;
        let fk_s = started.elapsed().as_secs_f64();
        fk_seconds += fk_s;
        let r = report.tables.get(&t.name).cloned().unwrap_or_default();
        tables.push(BenchTable {
            name: t.name.clone(),
            written: r.written,
            export_seconds: r.export_seconds,
            load_seconds: r.load_seconds,
            raw_seconds: raw_s,
            raw_fk_seconds: fk_s,
        });
    }
    let fk_tables: Vec<String> = order
        .iter()
        .rev()
        .map(|&ti| format!("`rawfk_{}`", model.tables[ti].name))
        .collect();
    for t in fk_tables {
        conn.query_drop(format!("DROP TABLE IF EXISTS {t}")).await?;
    }
    let rows_read: u64 = report.tables.values().map(|t| t.read).sum();
    let rows_written: u64 = report.tables.values().map(|t| t.written).sum();
    let per_sec = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let written_per_second = per_sec(rows_written, report.seconds);
    let raw_rows_per_second = per_sec(raw_rows, raw_seconds);
    Ok(BenchReport {
        records,
        fixture_bytes,
        fixture_seconds,
        rows_read,
        rows_written,
        seconds: report.seconds,
        rows_per_second: per_sec(rows_read, report.seconds),
        raw_rows,
        raw_seconds,
        raw_rows_per_second,
        raw_fk_seconds: fk_seconds,
        raw_fk_rows_per_second: per_sec(raw_rows, fk_seconds),
        ratio: if raw_rows_per_second > 0.0 {
            written_per_second / raw_rows_per_second
        } else {
            0.0
        },
        written_per_second,
        peak_rss_bytes: peak,
        cpu_seconds,
        load_connections: connections,
        verified: report.ok,
        fk_violations: report.fk_violations,
        tables,
    })
}

/// Loads a table's chunk files into `raw` (created by `create`), `connections` at a time;
/// returns the rows loaded. Warnings fail it, as in the migration.
async fn raw_load(
    target: &Target,
    table: &str,
    raw: &str,
    create: &[String],
    work: &Path,
    connections: u32,
) -> Result<u64> {
    let raw = raw.to_string();
    let mut conn = target.conn().await?;
    conn.query_drop(format!("DROP TABLE IF EXISTS `{raw}`"))
        .await?;
    for statement in create {
        conn.query_drop(statement).await?;
    }
    let dir = work.join("chunks").join(table);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    files.sort();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(files));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (queue, target, raw) = (queue.clone(), target.clone(), raw.clone());
        set.spawn(async move {
            let mut conn = target.conn().await?;
            let mut rows = 0u64;
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| Error::Other("queue lock poisoned".into()))?
                    .pop();
                let Some(path) = next else { break };
                let name = path
                    .display()
                    .to_string()
                    .replace('\\', "\\\\")
                    .replace('\'', "\\'");
                conn.set_infile_handler(async move {
                    let f = tokio::fs::File::open(path).await?;
                    Ok(
                        Box::pin(tokio_util::io::ReaderStream::with_capacity(f, 1 << 16))
                            as mysql_async::InfileData,
                    )
                });
                conn.query_drop(format!(
                    "LOAD DATA LOCAL INFILE '{name}' INTO TABLE `{raw}` {LOAD_DATA_FORMAT}"
                ))
                .await?;
                if conn.get_warnings() > 0 {
                    return Err(Error::Other(format!(
                        "raw load of `{raw}` raised {} warning(s)",
                        conn.get_warnings()
                    )));
                }
                rows += conn.affected_rows();
            }
            Ok::<u64, Error>(rows)
        });
    }
    let mut rows = 0;
    while let Some(r) = set.join_next().await {
        rows += r.map_err(|e| Error::Other(format!("raw loader: {e}")))??;
    }
    Ok(rows)
}

/// The figures as text, for the terminal.
pub fn render(r: &BenchReport) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut s = format!(
        "fixture: {} records, {:.0} MB, generated in {:.1} s\n",
        r.records,
        r.fixture_bytes as f64 / 1e6,
        r.fixture_seconds
    );
    s.push_str(&format!(
        "end to end (read → verified): {} rows read, {} written in {:.1} s = {:.0} rows/s read, {:.0} rows/s written{}\n",
        r.rows_read,
        r.rows_written,
        r.seconds,
        r.rows_per_second,
        r.written_per_second,
        if r.verified { ", verified" } else { ", VERIFICATION FAILED" }
    ));
    s.push_str(&format!(
        "raw LOAD DATA of the same chunks (no foreign keys, {} connection(s) per table): {} rows in {:.1} s = {:.0} rows/s\n",
        r.load_connections, r.raw_rows, r.raw_seconds, r.raw_rows_per_second
    ));
    s.push_str(&format!(
        "raw LOAD DATA with the spec's foreign keys: {:.1} s = {:.0} rows/s\n",
        r.raw_fk_seconds, r.raw_fk_rows_per_second
    ));
    s.push_str(&format!(
        "ratio (rows written/s end to end ÷ raw rows/s): {:.2}\n",
        r.ratio
    ));
    match r.peak_rss_bytes {
        Some(b) => s.push_str(&format!("peak RSS of the migration: {:.0} MiB\n", mib(b))),
        None => s.push_str("peak RSS: not available on this system\n"),
    }
    if let Some(cpu) = r.cpu_seconds {
        s.push_str(&format!(
            "CPU of the migration (this process, user + system): {cpu:.1} s = {:.2} cores on average\n",
            if r.seconds > 0.0 { cpu / r.seconds } else { 0.0 }
        ));
    }
    s.push_str(&format!(
        "{:<20} {:>11} {:>9} {:>9} {:>9} {:>9}\n",
        "table", "written", "export s", "load s", "raw s", "raw+fk s"
    ));
    for t in &r.tables {
        s.push_str(&format!(
            "{:<20} {:>11} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            t.name, t.written, t.export_seconds, t.load_seconds, t.raw_seconds, t.raw_fk_seconds
        ));
    }
    s
}

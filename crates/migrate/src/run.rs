//! `tsunagu migrate run`: the whole migration, resumable.
//!
//! Steps: validate the spec and plan the order; resolve the source connections; read
//! every table's source into a partition file (the export split by label and
//! relationship type, Bolt reads, DynamoDB, OpenSearch, the embedded store, all at once);
//! create the staging tables; then level by level (tables of one
//! level in parallel), export each table into chunks while a loader task loads every
//! finished chunk; add deferred foreign keys; swap all tables in at once; verify and
//! write the report. Each finished step is recorded in the [`State`] file, each loaded
//! chunk in the target's ledger, so `--resume` redoes nothing that is done. Chunks go
//! through the run's [`ChunkStore`] (the work directory or an S3 bucket): the exporter
//! hands each finished chunk to a publisher task, which puts it in the store before the
//! loaders see it.

use crate::chunk_store::{ChunkStore, Published, S3Location};
use crate::error::{Error, Result};
use crate::export::{self, chunk_path, ChunkReady, ExportPaths, ExportStats, TableKeys};
use crate::load::{self, Target};
use crate::plan::{self, Plan};
use crate::source::apoc;
use crate::source::bolt::{self, BoltOptions};
use crate::source::{external, PartitionKey};
use crate::spec::{self, Model};
use crate::state::{State, TableState};
use crate::verify::{self, Report, TableReport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub spec: PathBuf,
    /// The graph: a directory of APOC JSON-lines files, or
    /// `bolt://[USER:PASSWORD@]HOST:PORT[/DB]`. Needed only when a table reads the graph
    /// (a node, relationship or cypher source).
    pub source: Option<PathBuf>,
    pub target: String,
    pub report: PathBuf,
    /// Partitions, chunks, reject files and the state file live here.
    pub work_dir: PathBuf,
    /// Chunks go to this bucket instead of the work directory; overrides the spec's
    /// `[settings] chunks`.
    pub chunks: Option<S3Location>,
    pub resume: bool,
    /// Overrides the spec's `max_reject_share`.
    pub max_reject_share: Option<f64>,
    pub progress: bool,
}

impl RunOptions {
    /// The default work directory for a report file: `report.json` → `report.work/`.
    pub fn default_work_dir(report: &Path) -> PathBuf {
        let stem = report
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("migration");
        report.with_file_name(format!("{stem}.work"))
    }
}

struct Ctx {
    model: Model,
    target: Target,
    store: ChunkStore,
    work_dir: PathBuf,
    state: Mutex<State>,
    /// Key files of exported tables that children reference (on disk; see
    /// [`export::keys`]).
    keys: Mutex<HashMap<usize, Arc<TableKeys>>>,
    /// Tables whose keys a child needs for its foreign key checks.
    referenced: HashSet<usize>,
    /// Per table: `Some(true)` once exported (resp. loaded into its staging table),
    /// `Some(false)` if it failed.
    exported: Vec<tokio::sync::watch::Sender<Option<bool>>>,
    loaded: Vec<tokio::sync::watch::Sender<Option<bool>>>,
    /// One permit per table exporting (`parallel_tables`): a table whose parents are
    /// exported waits for one, in the order they became ready.
    exports: tokio::sync::Semaphore,
    progress: MultiProgress,
}

impl Ctx {
    fn update(&self, f: impl FnOnce(&mut State)) -> Result<()> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| Error::Other("state lock poisoned".into()))?;
        f(&mut s);
        s.write(&self.work_dir)
    }

    fn snapshot(&self) -> Result<State> {
        Ok(self
            .state
            .lock()
            .map_err(|_| Error::Other("state lock poisoned".into()))?
            .clone())
    }

    fn keys_dir(&self, table: &str) -> PathBuf {
        self.work_dir.join("keys").join(table)
    }

    fn rejects_file(&self, table: &str) -> PathBuf {
        self.work_dir.join("rejects").join(format!("{table}.jsonl"))
    }
}

/// Waits until every parent of `ti` has reached a step (`ctx.exported` or
/// `ctx.loaded`); parents through deferred foreign keys only when `deferred_too`.
async fn wait_parents(
    ctx: &Ctx,
    ti: usize,
    step: &[tokio::sync::watch::Sender<Option<bool>>],
    deferred_too: bool,
) -> Result<()> {
    let parents: HashSet<usize> = ctx.model.tables[ti]
        .foreign_keys
        .iter()
        .filter(|fk| (deferred_too || !fk.deferred) && fk.parent != ti)
        .map(|fk| fk.parent)
        .collect();
    for p in parents {
        let mut rx = step[p].subscribe();
        let state = *rx
            .wait_for(|v| v.is_some())
            .await
            .map_err(|_| Error::Upstream)?;
        if state != Some(true) {
            return Err(Error::Upstream);
        }
    }
    Ok(())
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Runs a migration; returns the report (also written to `opts.report`). A report whose
/// `ok` is false means verification found a difference.
pub async fn run(opts: &RunOptions) -> Result<Report> {
    let started = std::time::Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let mut model = spec::load(&opts.spec)?;
    if let Some(m) = opts.max_reject_share {
        if !(0.0..=1.0).contains(&m) {
            return Err(Error::Other(
                "--max-reject-share must be between 0 and 1".into(),
            ));
        }
        model.settings.max_reject_share = m;
    }
    let plan = plan::plan(&model)?;
    let (mut bolt, source) = graph_source(&model, opts.source.as_deref())?;
    if let Some(b) = &mut bolt {
        b.start_labels = crate::source::start_labels(&model);
    }
    let connections = external::resolve(&model)?;
    let sources: BTreeMap<String, String> = connections
        .iter()
        .map(|(name, c)| (name.clone(), c.describe()))
        .collect();
    std::fs::create_dir_all(&opts.work_dir).map_err(|e| Error::io(&opts.work_dir, e))?;
    let store = ChunkStore::connect(
        &opts.work_dir,
        opts.chunks.as_ref().or(model.settings.chunks.as_ref()),
    )
    .await?;
    let state = if opts.resume {
        let s = State::read(&opts.work_dir)?.ok_or_else(|| Error::State {
            path: State::path(&opts.work_dir),
            message: "no state to resume from; run without --resume".into(),
        })?;
        if s.spec_fingerprint != model.fingerprint {
            return Err(Error::State {
                path: State::path(&opts.work_dir),
                message:
                    "the spec changed since the interrupted run; run without --resume to start over"
                        .into(),
            });
        }
        if s.source != source {
            return Err(Error::State {
                path: State::path(&opts.work_dir),
                message: format!(
                    "the interrupted run read {}, not {}; run without --resume to start over",
                    s.source.display(),
                    source.display()
                ),
            });
        }
        if s.sources != sources {
            let changed: Vec<String> = sources
                .iter()
                .filter(|(n, d)| s.sources.get(*n) != Some(*d))
                .map(|(n, d)| format!("`{n}` is now {d}"))
                .chain(
                    s.sources
                        .keys()
                        .filter(|n| !sources.contains_key(*n))
                        .map(|n| format!("`{n}` is no longer read")),
                )
                .collect();
            return Err(Error::State {
                path: State::path(&opts.work_dir),
                message: format!(
                    "the sources changed since the interrupted run ({}); run without --resume to start over",
                    changed.join("; ")
                ),
            });
        }
        if s.chunks != store.location() {
            return Err(Error::State {
                path: State::path(&opts.work_dir),
                message: format!(
                    "the interrupted run kept its chunks in {}, not {}; resume with the same chunk location or run without --resume",
                    s.chunks,
                    store.location()
                ),
            });
        }
        s
    } else {
        let tables: Vec<&str> = model.tables.iter().map(|t| t.name.as_str()).collect();
        store.clear(&tables).await?;
        for sub in ["partitions", "rejects", "keys"] {
            let d = opts.work_dir.join(sub);
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            }
        }
        let s = State {
            spec_fingerprint: model.fingerprint,
            source: source.clone(),
            sources: sources.clone(),
            chunks: store.location(),
            ..Default::default()
        };
        s.write(&opts.work_dir)?;
        s
    };
    let progress = MultiProgress::with_draw_target(if opts.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });

    let mut phases = verify::Phases::default();
    // 1. Partition the source files.
    let t = std::time::Instant::now();
    let partitions = match state.partitions.clone() {
        Some(p) => p,
        None => {
            let keys = crate::source::partition_keys(&model);
            let out = opts.work_dir.join("partitions");
            let pb = progress.add(ProgressBar::new_spinner());
            pb.set_style(style(
                "{spinner} partitioning source: {human_pos} records ({per_sec}) {elapsed}",
            ));
            let src = source.clone();
            let pb2 = pb.clone();
            let bolt = bolt.clone();
            let graph_keys = keys.clone();
            let out2 = out.clone();
            let threads = model.settings.workers.max(1) as usize;
            // The graph (one pass over the export, or Bolt reads) and the other sources
            // are read at the same time.
            let graph = tokio::task::spawn_blocking(move || {
                if !graph_keys.iter().any(PartitionKey::reads_graph) {
                    return Ok(apoc::Partitions::default());
                }
                match bolt {
                    Some(b) => bolt::fetch(&b, &graph_keys, &out2, &pb2),
                    None => apoc::partition(&src, &graph_keys, &out2, threads, &pb2),
                }
            });
            let others = external::fetch(&keys, &connections, &out, &pb).await;
            let mut p = graph
                .await
                .map_err(|e| Error::Other(format!("partition task: {e}")))??;
            p.merge(others?);
            pb.finish();
            p
        }
    };
    phases.partition_seconds = t.elapsed().as_secs_f64();
    let mut state = state;
    state.partitions = Some(partitions.clone());
    state.write(&opts.work_dir)?;

    // 2. Target and staging tables.
    let target = Target::connect(&opts.target).await?;
    let referenced: HashSet<usize> = model
        .tables
        .iter()
        .flat_map(|t| {
            t.foreign_keys
                .iter()
                .filter(|fk| !fk.deferred)
                .map(|fk| fk.parent)
        })
        .collect();
    let ctx = Arc::new(Ctx {
        model: model.clone(),
        target: target.clone(),
        store,
        work_dir: opts.work_dir.clone(),
        state: Mutex::new(state),
        keys: Mutex::new(HashMap::new()),
        referenced,
        exported: model
            .tables
            .iter()
            .map(|_| tokio::sync::watch::channel(None).0)
            .collect(),
        loaded: model
            .tables
            .iter()
            .map(|_| tokio::sync::watch::channel(None).0)
            .collect(),
        exports: tokio::sync::Semaphore::new(model.settings.parallel_tables.max(1) as usize),
        progress: progress.clone(),
    });
    let snapshot = ctx.snapshot()?;
    let mut swapped = snapshot.swapped;
    // Verification queries on swapped-in tables run on this many connections at once.
    let parallel = model.settings.load_connections.max(1) as usize;
    if !swapped && snapshot.swapping {
        // Interrupted around the swap: it happened if no staging table is left.
        let mut any_stage = false;
        for t in &model.tables {
            any_stage |= target.table_exists(&load::stage_name(&t.name)).await?;
        }
        swapped = !any_stage;
    }
    if !swapped {
        load::prepare(&target, &model, &plan, !opts.resume).await?;
        // 3. Export and load.
        // Every table runs as its own task: its export starts when its parents are
        // exported (their keys are known), and each finished chunk is loaded at once:
        // the staging tables have no constraints yet (see `load`), so loads need not
        // wait for the parents' loads.
        let t = std::time::Instant::now();
        let tasks: Vec<_> = plan
            .order()
            .map(|ti| {
                let ctx = ctx.clone();
                let partitions = partitions.clone();
                tokio::spawn(async move {
                    let r = migrate_table(ctx.clone(), ti, &partitions).await;
                    if r.is_err() {
                        ctx.exported[ti].send_replace(Some(false));
                        ctx.loaded[ti].send_replace(Some(false));
                    }
                    r
                })
            })
            .collect();
        let mut first_error = None;
        for t in tasks {
            let r = t
                .await
                .map_err(|e| Error::Other(format!("table task: {e}")))
                .and_then(|r| r);
            match r {
                Err(Error::Upstream) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
                Ok(()) => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        phases.transfer_seconds = t.elapsed().as_secs_f64();
        // 4. Foreign keys: counted on the staging tables, declared only if none is broken.
        let t = std::time::Instant::now();
        let state = ctx.snapshot()?;
        let checks: Vec<verify::FkCheck> = model
            .tables
            .iter()
            .filter_map(|t| state.tables.get(&t.name))
            .flat_map(|t| t.fk_checks.iter().flatten().cloned())
            .collect();
        let broken: Vec<String> = checks
            .iter()
            .filter(|c| c.violations > 0)
            .map(|c| {
                format!(
                    "{} row(s) of `{}` ({}) reference no row of `{}`",
                    c.violations,
                    c.table,
                    c.columns.join(", "),
                    c.references
                )
            })
            .collect();
        if !broken.is_empty() {
            return Err(Error::ForeignKeys {
                details: broken.join("; "),
            });
        }
        load::add_foreign_keys(&target, &model).await?;
        phases.foreign_keys_seconds = t.elapsed().as_secs_f64();
        // 5. Swap.
        let t = std::time::Instant::now();
        ctx.update(|s| s.swapping = true)?;
        load::swap(&target, &model, &plan).await?;
        phases.swap_seconds = t.elapsed().as_secs_f64();
    }
    ctx.update(|s| {
        s.swapping = false;
        s.swapped = true;
    })?;
    let t = std::time::Instant::now();
    let mut report = verify_and_report(
        &ctx,
        &plan,
        opts,
        &partitions,
        parallel,
        Timing {
            started,
            started_at,
            phases,
        },
    )
    .await?;
    report.phases.verify_seconds = t.elapsed().as_secs_f64();
    report.seconds = started.elapsed().as_secs_f64();
    write_report(opts, &report)?;
    progress.clear().ok();
    Ok(report)
}

/// The graph a run reads (`--source`) and how it is recorded in the state file (a
/// canonical directory, or a Bolt URL without credentials; empty when no table reads the
/// graph). Checked before any work: a graph table needs `--source`, a cypher table needs
/// Bolt.
fn graph_source(model: &Model, source: Option<&Path>) -> Result<(Option<BoltOptions>, PathBuf)> {
    let graph_table = model.tables.iter().find(|t| t.source.reads_graph());
    let Some(source) = source else {
        return match graph_table {
            Some(t) => Err(Error::Other(format!(
                "table `{}` reads {} from the graph; give the graph with --source (an APOC export directory or bolt://HOST:PORT)",
                t.name,
                t.source.describe()
            ))),
            None => Ok((None, PathBuf::new())),
        };
    };
    let bolt = source
        .to_str()
        .filter(|s| s.starts_with("bolt://") || s.starts_with("neo4j://"))
        .map(BoltOptions::parse)
        .transpose()?;
    match &bolt {
        // Recorded without credentials.
        Some(b) => {
            let recorded = PathBuf::from(format!(
                "bolt://{}:{}/{}",
                b.host,
                b.port,
                b.database.as_deref().unwrap_or("")
            ));
            Ok((bolt, recorded))
        }
        None => {
            if let Some(t) = model
                .tables
                .iter()
                .find(|t| matches!(t.source, crate::spec::SourceKind::Cypher { .. }))
            {
                return Err(Error::Other(format!(
                    "table `{}` reads a cypher query, which needs a live graph: give --source bolt://HOST:PORT (an APOC export directory cannot run queries)",
                    t.name
                )));
            }
            let dir = std::fs::canonicalize(source).map_err(|e| Error::io(source, e))?;
            Ok((None, dir))
        }
    }
}

async fn migrate_table(ctx: Arc<Ctx>, ti: usize, partitions: &apoc::Partitions) -> Result<()> {
    let table = ctx.model.tables[ti].clone();
    let name = table.name.clone();
    let tstate = ctx
        .snapshot()?
        .tables
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let chunk_dir = ctx.store.dir(&name);
    if let (true, Some(stats)) = (tstate.loaded, &tstate.exported) {
        ensure_keys(&ctx, ti, &stats.chunks).await?;
        ctx.exported[ti].send_replace(Some(true));
        return check_loaded(&ctx, ti, tstate).await;
    }
    let key = PartitionKey::of(&table.source).name();
    let input = partitions
        .files
        .get(&key)
        .cloned()
        .ok_or_else(|| Error::Other(format!("internal: no partition for {key}")))?;
    let total = partitions.records.get(&key).copied().unwrap_or(0);
    let pb = ctx.progress.add(ProgressBar::new(total));
    pb.set_style(style(
        "{prefix:<22} [{bar:30}] {human_pos}/{human_len} rows {per_sec} loaded {msg}",
    ));
    pb.set_prefix(name.clone());
    pb.set_message("0");

    let already = load::loaded_chunks(&ctx.target, &name).await?;
    // Published chunks wait in the store, so the exporter never waits for the loader.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ChunkReady>();
    // `load_connections` loaders take chunks from the same queue, each on its own
    // connection: every chunk is its own transaction with its ledger row, so the order
    // in which chunks commit does not matter.
    let loader = {
        let ctx = ctx.clone();
        let table = table.clone();
        let pb = pb.clone();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let loaded_rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let already = Arc::new(already);
        tokio::spawn(async move {
            let connections = ctx.model.settings.load_connections.max(1);
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..connections {
                let (ctx, table, pb) = (ctx.clone(), table.clone(), pb.clone());
                let (rx, loaded_rows, already) = (rx.clone(), loaded_rows.clone(), already.clone());
                set.spawn(async move {
                    let mut conn = ctx.target.conn().await?;
                    let mut busy = std::time::Duration::ZERO;
                    loop {
                        let Some(chunk) = rx.lock().await.recv().await else {
                            break;
                        };
                        if !already.contains(&chunk.index) {
                            let t = std::time::Instant::now();
                            let data = ctx.store.open(&table.name, chunk.index).await?;
                            load::load_chunk(&mut conn, &table, &chunk, data).await?;
                            busy += t.elapsed();
                        }
                        let n = loaded_rows
                            .fetch_add(chunk.rows, std::sync::atomic::Ordering::Relaxed)
                            + chunk.rows;
                        pb.set_message(n.to_string());
                    }
                    Ok::<std::time::Duration, Error>(busy)
                });
            }
            // The table's load time: the longest any connection spent loading.
            let mut longest = std::time::Duration::ZERO;
            let mut first_error = None;
            while let Some(r) = set.join_next().await {
                match r
                    .map_err(|e| Error::Other(format!("loader task: {e}")))
                    .and_then(|r| r)
                {
                    Ok(busy) => longest = longest.max(busy),
                    Err(e) => {
                        // Stop the other connections: the table failed.
                        set.abort_all();
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok::<f64, Error>(longest.as_secs_f64()),
            }
        })
    };

    let export_result: Result<ExportStats> = match tstate.exported.clone() {
        Some(stats) => {
            // Exported before the interruption: feed its chunks to the loader again
            // (already loaded ones are skipped).
            pb.set_position(stats.read);
            for &(index, rows) in &stats.chunks {
                let chunk = ChunkReady {
                    index,
                    path: chunk_path(&chunk_dir, index),
                    rows,
                };
                if tx.send(chunk).is_err() {
                    break;
                }
            }
            drop(tx);
            ensure_keys(&ctx, ti, &stats.chunks).await.map(|_| stats)
        }
        None => {
            wait_parents(&ctx, ti, &ctx.exported, false).await?;
            // Held until the table's export ends; the loads go on without it.
            let _exporting = ctx
                .exports
                .acquire()
                .await
                .map_err(|_| Error::Other("internal: the export slots were closed".into()))?;
            ctx.store.reset_table(&name)?;
            // Finished chunk files go to the publisher through a small queue (local disk
            // stays bounded while chunks are uploaded), which puts each in the store and
            // then hands it to the loaders.
            let (publish_tx, mut publish_rx) = tokio::sync::mpsc::channel::<ChunkReady>(2);
            let publisher = {
                let (ctx, name) = (ctx.clone(), name.clone());
                tokio::spawn(async move {
                    let mut published = Vec::new();
                    while let Some(chunk) = publish_rx.recv().await {
                        published.push(ctx.store.publish(&name, &chunk).await?);
                        tx.send(chunk)
                            .map_err(|_| Error::Other("the loader stopped".into()))?;
                    }
                    Ok::<Vec<Published>, Error>(published)
                })
            };
            let parents: HashMap<usize, Arc<TableKeys>> = ctx
                .keys
                .lock()
                .map_err(|_| Error::Other("keys lock poisoned".into()))?
                .clone();
            let ctx2 = ctx.clone();
            let pb2 = pb.clone();
            let rejects = ctx.rejects_file(&name);
            let keys_dir = ctx.keys_dir(&name);
            let relationships = partitions.files.clone();
            let r = tokio::task::spawn_blocking(move || {
                let paths = ExportPaths {
                    input: &input,
                    chunk_dir: &chunk_dir,
                    rejects: &rejects,
                    keys_dir: &keys_dir,
                    relationships: &relationships,
                };
                export::export_table(
                    &ctx2.model,
                    ti,
                    paths,
                    &parents,
                    |chunk| {
                        publish_tx
                            .blocking_send(chunk)
                            .map_err(|_| Error::Other("the chunk publisher stopped".into()))
                    },
                    &pb2,
                )
            })
            .await
            .map_err(|e| Error::Other(format!("export task: {e}")))?;
            let published = publisher
                .await
                .map_err(|e| Error::Other(format!("publisher task: {e}")))
                .and_then(|p| p);
            // A failed publish stops the export: its error is the one to report.
            let r = match (r, published) {
                (Ok(exported), Ok(published)) => Ok((exported, published)),
                (Err(e), Ok(_)) | (_, Err(e)) => Err(e),
            };
            async {
                let ((stats, keys), published) = r?;
                ctx.store.finish_table(&name, &stats, &published).await?;
                if ctx.referenced.contains(&ti) {
                    ctx.keys
                        .lock()
                        .map_err(|_| Error::Other("keys lock poisoned".into()))?
                        .insert(ti, Arc::new(keys));
                }
                // Every chunk is in the store: a resumed run loads them from there.
                ctx.update(|s| {
                    s.tables.entry(name.clone()).or_default().exported = Some(stats.clone())
                })?;
                Ok(stats)
            }
            .await
        }
    };
    if export_result.is_ok() {
        ctx.exported[ti].send_replace(Some(true));
    }
    let load_result = loader
        .await
        .map_err(|e| Error::Other(format!("loader task: {e}")))?;
    let load_seconds = load_result?;
    let stats = export_result?;
    pb.finish();
    let share = if stats.read == 0 {
        0.0
    } else {
        stats.rejected as f64 / stats.read as f64
    };
    if share > ctx.model.settings.max_reject_share {
        return Err(Error::RejectThreshold {
            table: name.clone(),
            read: stats.read,
            rejected: stats.rejected,
            share,
            max: ctx.model.settings.max_reject_share,
            rejects: ctx.rejects_file(&name),
        });
    }
    tracing::info!(table = %name, read = stats.read, written = stats.written, rejected = stats.rejected, "table loaded into staging");
    let mut loaded = TableState::default();
    ctx.update(|s| {
        let load_seconds =
            s.tables.get(&name).map(|t| t.load_seconds).unwrap_or(0.0) + load_seconds;
        loaded = TableState {
            exported: Some(stats),
            loaded: true,
            load_seconds,
            target: None,
            fk_checks: None,
        };
        s.tables.insert(name.clone(), loaded.clone());
    })?;
    check_loaded(&ctx, ti, loaded).await
}

/// Verifies a loaded staging table while the other tables still export and load, three
/// things at once on their own connections: builds its foreign key indexes, takes its
/// count and checksum, and counts its foreign key violations (all keys at once) once its
/// parents are loaded too. The figures are kept in the state, so a resumed run does not
/// query them again.
async fn check_loaded(ctx: &Arc<Ctx>, ti: usize, mut tstate: TableState) -> Result<()> {
    ctx.loaded[ti].send_replace(Some(true));
    let table = &ctx.model.tables[ti];
    let stage = load::stage_name(&table.name);
    let indexes = load::build_indexes(&ctx.target, table, &stage);
    let checksum = async {
        match tstate.target {
            Some(figures) => Ok(figures),
            None => verify::table_checksum(&ctx.target, table, &stage).await,
        }
    };
    let fk_checks = async {
        match &tstate.fk_checks {
            Some(checks) => Ok(checks.clone()),
            None => {
                wait_parents(ctx, ti, &ctx.loaded, true).await?;
                let parallel = table.foreign_keys.len();
                verify::foreign_key_violations(
                    &ctx.target,
                    &ctx.model,
                    &[ti],
                    load::stage_name,
                    parallel,
                )
                .await
            }
        }
    };
    let ((), target, fk_checks) = tokio::try_join!(indexes, checksum, fk_checks)?;
    tstate.target = Some(target);
    tstate.fk_checks = Some(fk_checks);
    ctx.update(|s| {
        s.tables.insert(table.name.clone(), tstate);
    })
}

/// Makes the keys of an already exported table available to its children, read back
/// from the chunk store.
async fn ensure_keys(ctx: &Arc<Ctx>, ti: usize, chunks: &[(u32, u64)]) -> Result<()> {
    if !ctx.referenced.contains(&ti) {
        return Ok(());
    }
    let chunks = chunks.to_vec();
    let keys_dir = ctx.keys_dir(&ctx.model.tables[ti].name);
    let runtime = tokio::runtime::Handle::current();
    let ctx2 = ctx.clone();
    let keys = tokio::task::spawn_blocking(move || {
        let table = &ctx2.model.tables[ti].name;
        export::rebuild_keys(
            &ctx2.model,
            ti,
            &chunks,
            |index| ctx2.store.open_blocking(&runtime, table, index),
            &keys_dir,
        )
    })
    .await
    .map_err(|e| Error::Other(format!("key rebuild task: {e}")))??;
    ctx.keys
        .lock()
        .map_err(|_| Error::Other("keys lock poisoned".into()))?
        .insert(ti, Arc::new(keys));
    Ok(())
}

/// When the run started, and the steps' times so far.
struct Timing {
    started: std::time::Instant,
    started_at: String,
    phases: verify::Phases,
}

/// Compares every table's count and checksum on the target with the export's, and
/// reports the foreign key counts. Both were taken on the staging tables as they
/// finished loading; a table whose figures are missing from the state (a state file
/// of an older version) is queried again on the swapped-in table.
async fn verify_and_report(
    ctx: &Arc<Ctx>,
    plan: &Plan,
    opts: &RunOptions,
    partitions: &apoc::Partitions,
    parallel: usize,
    timing: Timing,
) -> Result<Report> {
    let state = ctx.snapshot()?;
    let mut report = Report {
        spec: opts.spec.display().to_string(),
        source: state.source.display().to_string(),
        sources: state.sources.clone(),
        target: ctx.target.display.clone(),
        started_at: timing.started_at,
        resumed: opts.resume,
        source_malformed: partitions.malformed,
        phases: timing.phases,
        ..Default::default()
    };
    let mut unchecked = Vec::new();
    for ti in plan.order() {
        let t = &ctx.model.tables[ti];
        let ts = state.tables.get(&t.name).cloned().unwrap_or_default();
        let (count, sum) = match ts.target {
            Some(target) => target,
            None => verify::table_checksum(&ctx.target, t, &t.name).await?,
        };
        match &ts.fk_checks {
            Some(checks) => report.fk_checks.extend(checks.iter().cloned()),
            None => unchecked.push(ti),
        }
        let stats = ts.exported.unwrap_or_default();
        if count != stats.written {
            report.problems.push(format!(
                "`{}`: {} rows written, {count} in the target",
                t.name, stats.written
            ));
        }
        if sum != stats.checksum {
            report.problems.push(format!(
                "`{}`: checksum {} written, {} in the target",
                t.name,
                verify::hex(stats.checksum),
                verify::hex(sum)
            ));
        }
        report.tables.insert(
            t.name.clone(),
            TableReport {
                read: stats.read,
                written: stats.written,
                rejected: stats.rejected,
                rejected_by_reason: stats.rejected_by_reason.clone(),
                checksum: verify::hex(stats.checksum),
                target_count: count,
                target_checksum: verify::hex(sum),
                export_seconds: stats.seconds,
                load_seconds: ts.load_seconds,
                rejects_file: ctx.rejects_file(&t.name).display().to_string(),
            },
        );
    }
    report.fk_checks.extend(
        verify::foreign_key_violations(
            &ctx.target,
            &ctx.model,
            &unchecked,
            |n| n.to_string(),
            parallel,
        )
        .await?,
    );
    report.fk_violations = report.fk_checks.iter().map(|c| c.violations).sum();
    if report.fk_violations > 0 {
        report
            .problems
            .push(format!("{} foreign key violation(s)", report.fk_violations));
    }
    report.ok = report.problems.is_empty();
    report.seconds = timing.started.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes the report as JSON to `opts.report`.
fn write_report(opts: &RunOptions, report: &Report) -> Result<()> {
    if let Some(dir) = opts.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let json =
        serde_json::to_vec_pretty(report).map_err(|e| Error::Other(format!("report: {e}")))?;
    std::fs::write(&opts.report, json).map_err(|e| Error::io(&opts.report, e))
}

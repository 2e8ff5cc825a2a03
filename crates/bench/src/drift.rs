//! `tsunagu bench drift`: backfill and reconcile at scale, on the embedded defaults or on
//! whatever a `--config` file names (DynamoDB + OpenSearch...). Writes N items, times a raw
//! parallel scan of the primary (what the primary alone gives), backfills a consumer from
//! them (items/s), injects drift through the sink's public door (documents of items that
//! do not exist), then times a reconcile that finds it and one that repairs it, with the
//! share of items read one by one.

use super::limits::write_flat_out;
use super::RunDir;
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::backfill::BackfillOptions;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::outln;
use tsunagu_runtime::Runtime;

#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    /// Items in the primary.
    #[arg(long, default_value_t = 1_000_000)]
    pub items: u64,
    /// Extra documents injected into the index.
    #[arg(long, default_value_t = 10)]
    pub drift: u64,
    /// Seed of the workload generator (the same seed writes the same items).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Run on the adapters this config names (its first consumer), not a fresh embedded
    /// data directory; the primary and the sink should be empty.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct DriftReport {
    items: u64,
    /// Items/s of a parallel scan of the primary alone (every segment at once, nothing
    /// applied): the ceiling a backfill could reach.
    raw_scan_items_per_s: f64,
    backfill_items_per_s: f64,
    backfill_s: f64,
    injected: u64,
    reconcile_s: f64,
    found_extra: u64,
    read_individually: u64,
    read_individually_fraction: f64,
    repair_s: f64,
    repaired: u64,
    clean_after_repair: bool,
}

pub async fn run(args: &DriftArgs, data_dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let dir;
    let config = match &args.config {
        Some(path) => tsunagu_runtime::resolve_config(Some(path), data_dir)?,
        None => {
            dir = RunDir::new(data_dir, "drift")?;
            Config {
                data_dir: dir.path.clone(),
                ..Config::default()
            }
        }
    };
    let runtime = Runtime::open(config).await?;
    let consumer = runtime
        .config
        .consumers
        .first()
        .context("the config has no consumer")?
        .clone();
    outln!("writing {} items…", args.items)?;
    match &runtime.embedded {
        Some(_) => {
            write_flat_out(Arc::clone(&runtime.store), args.items, args.seed).await?;
        }
        None => write_through(runtime.store.as_ref(), args.items, args.seed).await?,
    }

    let started = Instant::now();
    let scanned = scan_all(runtime.scanner.as_ref()).await?;
    let raw_scan_s = started.elapsed().as_secs_f64();
    outln!(
        "raw scan of the primary: {scanned} items in {raw_scan_s:.1} s = {:.0} items/s",
        scanned as f64 / raw_scan_s
    )?;

    let handle = runtime.open_sink(&consumer.sink).await?;
    let index = handle
        .digest()
        .context("the consumer's sink cannot be read back")?;
    let sink = handle.sink();
    let started = Instant::now();
    let report = runtime
        .backfill(
            &consumer.name,
            sink.as_ref(),
            &BackfillOptions::default(),
            &|_| {},
        )
        .await?;
    let backfill_s = started.elapsed().as_secs_f64();
    outln!(
        "backfill: {} items in {backfill_s:.1} s = {:.0} items/s",
        report.items,
        report.items as f64 / backfill_s
    )?;

    // Drift the pipeline would never make: documents of items that do not exist.
    let records: Vec<ChangeRecord> = (0..args.drift)
        .map(|i| {
            let key = ItemKey::new(format!("drift-deal-{i}"), format!("activity#drift-{i}"));
            let body = json!({
                "type": "activity_log", "id": format!("drift-{i}"), "tenant_id": "t", "deal_id": format!("drift-deal-{i}"),
                "company_id": "c", "user_id": "u", "action": "call", "memo": "",
                "occurred_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
            });
            ChangeRecord {
                shard: ShardId("0".into()),
                position: Position("1".into()),
                key,
                kind: ChangeKind::Insert,
                version: Version(1),
                old_image: None,
                new_image: Some(Image { version: Version(1), body }),
                committed_at_us: 0,
            }
        })
        .collect();
    sink.apply(&records)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    sink.flush().await.map_err(|e| anyhow::anyhow!("{e}"))?;

    let reconcile = |repair: bool| {
        let (runtime, index, sink, consumer) = (&runtime, &index, &sink, &consumer.name);
        async move {
            runtime
                .reconcile(consumer, index.as_ref(), Some(sink.as_ref()), repair)
                .await
        }
    };
    let started = Instant::now();
    let found = reconcile(false).await?;
    let reconcile_s = started.elapsed().as_secs_f64();
    outln!(
        "reconcile: {} items checked in {reconcile_s:.2} s; found {} extra, {} missing, {} stale; read {} individually ({:.4}%)",
        found.checked,
        found.extra,
        found.missing,
        found.stale,
        found.read_individually,
        100.0 * found.read_individually_fraction
    )?;
    let started = Instant::now();
    let repaired = reconcile(true).await?;
    let repair_s = started.elapsed().as_secs_f64();
    let after = reconcile(false).await?;
    outln!(
        "reconcile --repair: {} repaired in {repair_s:.2} s; afterwards {} drift",
        repaired.repaired,
        after.missing + after.extra + after.stale
    )?;
    drop((index, sink));
    handle.close().await;
    runtime.close();
    let report = DriftReport {
        items: args.items,
        raw_scan_items_per_s: scanned as f64 / raw_scan_s,
        backfill_items_per_s: report.items as f64 / backfill_s,
        backfill_s,
        injected: args.drift,
        reconcile_s,
        found_extra: found.extra,
        read_individually: found.read_individually,
        read_individually_fraction: found.read_individually_fraction,
        repair_s,
        repaired: repaired.repaired,
        clean_after_repair: after.missing + after.extra + after.stale == 0,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(
        if report.clean_after_repair && report.found_extra == args.drift {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Writes `items` sample activities through the store port, 8 requests of 100 at a time.
async fn write_through(
    store: &dyn tsunagu_engine::ports::ItemStore,
    items: u64,
    seed: u64,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use tsunagu_domain::Entity;
    use tsunagu_engine::ports::{Condition, WriteOp};
    let mut sample = crate::sample::Sample::new(seed, 10_000, chrono::Utc::now());
    let mut batches = Vec::new();
    let mut left = items;
    while left > 0 {
        let n = left.min(100);
        left -= n;
        batches.push(
            (0..n)
                .map(|_| {
                    let a = sample.activity();
                    WriteOp::Put {
                        key: a.key(),
                        body: Entity::ActivityLog(a).to_json(),
                        condition: Condition::None,
                    }
                })
                .collect::<Vec<_>>(),
        );
    }
    let mut writes = futures::stream::iter(batches)
        .map(|ops| store.write_many(ops))
        .buffer_unordered(8);
    while let Some(results) = writes.next().await {
        for result in results? {
            result?;
        }
    }
    Ok(())
}

/// Scans every segment of the primary at once, applying nothing; returns the item count.
async fn scan_all(scanner: &dyn tsunagu_engine::ports::ItemScanner) -> anyhow::Result<u64> {
    let segments = scanner.scan_segments().max(1);
    let counts = futures::future::try_join_all((0..segments).map(|segment| async move {
        let (mut after, mut count) = (None, 0u64);
        loop {
            let page = scanner
                .scan(segment, segments, after.as_ref(), 1_000)
                .await?;
            count += page.records.len() as u64;
            match page.next {
                Some(next) => after = Some(next),
                None => return anyhow::Ok(count),
            }
        }
    }))
    .await?;
    Ok(counts.into_iter().sum())
}

//! `tsunagu bench drift`: backfill and reconcile at scale. Writes N items, backfills a
//! consumer from them (items/s), injects drift through the sink's public door (documents
//! of items that do not exist), then times a reconcile that finds it and one that repairs
//! it, with the share of items read one by one.

use super::limits::write_flat_out;
use super::RunDir;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tsunagu_domain::{ChangeKind, ChangeRecord, Image, ItemKey, Position, ShardId, Version};
use tsunagu_engine::backfill::BackfillOptions;
use tsunagu_engine::drift::{ReconcileOptions, ReconcileReport, Reconciler};
use tsunagu_engine::ports::Sink;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Embedded;

#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    /// Items in the primary.
    #[arg(long, default_value_t = 1_000_000)]
    pub items: u64,
    /// Extra documents injected into the index.
    #[arg(long, default_value_t = 10)]
    pub drift: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct DriftReport {
    items: u64,
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

pub async fn run(args: &DriftArgs) -> anyhow::Result<ExitCode> {
    let dir = RunDir::new(None, "drift")?;
    let config = Config {
        data_dir: dir.path.clone(),
        ..Config::default()
    };
    let embedded = Embedded::open(config)?;
    println!("writing {} items…", args.items);
    write_flat_out(&embedded, args.items, args.seed).await?;

    let index = embedded.open_sink("activities")?;
    let started = Instant::now();
    let report = embedded
        .backfill("search", index.as_ref())
        .run(None, &BackfillOptions::default(), &|_| {})
        .await?;
    let backfill_s = started.elapsed().as_secs_f64();
    println!(
        "backfill: {} items in {backfill_s:.1} s = {:.0} items/s",
        report.items,
        report.items as f64 / backfill_s
    );

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
    index
        .apply(&records)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    index.flush().await.map_err(|e| anyhow::anyhow!("{e}"))?;

    let reconcile = |repair: bool| {
        let (embedded, index) = (&embedded, &index);
        async move {
            let report: ReconcileReport = Reconciler {
                consumer: "search",
                primary: &embedded.store,
                index: index.as_ref(),
                sink: Some(index.as_ref()),
                source: &embedded.store,
                checkpoints: &embedded.state,
            }
            .run(&ReconcileOptions {
                repair,
                ..ReconcileOptions::default()
            })
            .await?;
            anyhow::Ok(report)
        }
    };
    let started = Instant::now();
    let found = reconcile(false).await?;
    let reconcile_s = started.elapsed().as_secs_f64();
    println!(
        "reconcile: {} items checked in {reconcile_s:.2} s; found {} extra, {} missing, {} stale; read {} individually ({:.4}%)",
        found.checked,
        found.extra,
        found.missing,
        found.stale,
        found.read_individually,
        100.0 * found.read_individually_fraction
    );
    let started = Instant::now();
    let repaired = reconcile(true).await?;
    let repair_s = started.elapsed().as_secs_f64();
    let after = reconcile(false).await?;
    println!(
        "reconcile --repair: {} repaired in {repair_s:.2} s; afterwards {} drift",
        repaired.repaired,
        after.missing + after.extra + after.stale
    );
    if let Ok(index) = Arc::try_unwrap(index) {
        index.close().await;
    }
    embedded.store.close();
    let report = DriftReport {
        items: args.items,
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

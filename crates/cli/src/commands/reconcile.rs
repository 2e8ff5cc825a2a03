//! `tsunagu reconcile --consumer NAME [--repair] [--json FILE] [--every 5m]`: compares the
//! primary with the consumer's sink (see [`tsunagu_engine::drift`] for how), on any
//! deployment, prints a summary, optionally writes the report as JSON, and with `--repair`
//! re-sends the right versions through the sink.
//!
//! Without `--repair` an embedded index is opened read-only (it works while `tsunagu
//! replicate` runs, and sees the index as of its last durable point, which is what
//! checkpoints cover). `--repair` on an embedded index needs its writer: it fails with a
//! clear message while `tsunagu replicate` holds it. OpenSearch / Elasticsearch sinks are
//! read and repaired while workers run.
//!
//! `--every DURATION` runs again and again until Ctrl-C or SIGTERM, logging the drift found
//! and repaired per run and running totals (`reconcile_drift_found_total`,
//! `reconcile_repaired_total`). With `--repair` the writer is opened for each run only.
//!
//! Exit codes: 0 when the index is clean or every drifted document was repaired, 3 when
//! drift remains (for `--every`: after the last run), 1 when reconcile itself failed.

use crate::cli::ReconcileArgs;
use crate::outln;
use crate::output::OutputError;
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;
use tsunagu_engine::drift::{DriftedKey, ReconcileReport};
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Runtime;

/// The exit code when drift remains.
pub const EXIT_DRIFT: u8 = 3;

/// Drifted keys printed per kind in the human summary (the JSON report lists more).
const PRINTED_KEYS: usize = 20;

pub async fn run(config: Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    // Without --repair nothing is written: everything opens read-only.
    let runtime = if args.repair {
        Runtime::open(config).await?
    } else {
        Runtime::open_read_only(config).await?
    };
    let consumer = runtime.consumer(&args.consumer)?;
    let Some(every) = args.every else {
        let report = run_once(&runtime, &consumer.name, &consumer.sink, &args).await?;
        runtime.close();
        return Ok(exit_code(&report));
    };

    let every = every.max(Duration::from_millis(100));
    tracing::info!(
        consumer = %consumer.name,
        sink = %consumer.sink,
        every = %humantime::format_duration(every),
        repair = args.repair,
        "reconciling continuously; Ctrl-C or SIGTERM stops"
    );
    let (mut runs, mut found_total, mut repaired_total, mut failed_runs) = (0u64, 0u64, 0u64, 0u64);
    let mut last_code = ExitCode::SUCCESS;
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = &mut stop => break,
            result = run_once(&runtime, &consumer.name, &consumer.sink, &args) => {
                runs += 1;
                match result {
                    Ok(report) => {
                        found_total += report.drift();
                        repaired_total += report.repaired;
                        last_code = exit_code(&report);
                        tracing::info!(
                            consumer = %consumer.name,
                            run = runs,
                            checked = report.checked,
                            reconcile_drift_found = report.drift(),
                            missing = report.missing,
                            extra = report.extra,
                            stale = report.stale,
                            reconcile_repaired = report.repaired,
                            remaining = report.remaining,
                            in_flight = report.in_flight,
                            read_individually = report.read_individually,
                            elapsed_ms = report.elapsed_ms,
                            reconcile_drift_found_total = found_total,
                            reconcile_repaired_total = repaired_total,
                            reconcile_runs_total = runs,
                            reconcile_failed_runs_total = failed_runs,
                            "reconcile run"
                        );
                    }
                    Err(error) => {
                        failed_runs += 1;
                        last_code = ExitCode::FAILURE;
                        tracing::error!(
                            consumer = %consumer.name,
                            run = runs,
                            error = format!("{error:#}"),
                            reconcile_failed_runs_total = failed_runs,
                            "reconcile run failed; trying again at the next interval"
                        );
                    }
                }
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(started + every) => {}
        }
    }
    tracing::info!(
        runs,
        reconcile_drift_found_total = found_total,
        reconcile_repaired_total = repaired_total,
        "stopped"
    );
    runtime.close();
    Ok(last_code)
}

fn exit_code(report: &ReconcileReport) -> ExitCode {
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DRIFT)
    }
}

/// One reconciliation: opens the index (the writer only for `--repair`, and only for this
/// run), reconciles, prints, writes the JSON report.
async fn run_once(
    runtime: &Runtime,
    consumer: &str,
    sink: &str,
    args: &ReconcileArgs,
) -> anyhow::Result<ReconcileReport> {
    let mut report = if args.repair {
        let handle = runtime.open_sink(sink).await.context(
            "--repair writes to the sink; without --repair, reconcile only reports drift (that works while replicate runs)",
        )?;
        let index = handle
            .digest()
            .with_context(|| format!("sinks.{sink} forwards changes and cannot be read back"))?;
        let result = runtime
            .reconcile(consumer, index.as_ref(), Some(handle.sink().as_ref()), true)
            .await;
        drop(index);
        // Closes the writer opened for the repair, so the lock is free between runs.
        handle.close().await;
        result?
    } else {
        let index = runtime.open_sink_reader(sink).await?;
        runtime
            .reconcile(consumer, index.as_ref(), None, false)
            .await?
    };
    report.sink = Some(sink.to_string());
    print_summary(&report)?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok(report)
}

fn print_summary(r: &ReconcileReport) -> Result<(), OutputError> {
    outln!(
        "reconcile {} → {}: {} items in the primary, {} documents in the index",
        r.consumer,
        r.sink.as_deref().unwrap_or("?"),
        r.checked,
        r.indexed
    )?;
    outln!(
        "  hash tree: levels of {:?} bits, {} buckets compared, {} leaves differ; {} items compared one by one ({:.4}% of the primary)",
        r.tree.level_bits,
        r.tree.buckets_compared,
        r.tree.leaves_differing,
        r.read_individually,
        r.read_individually_fraction * 100.0
    )?;
    outln!(
        "  drift: {} missing, {} extra, {} stale; {} in flight (carried by the stream, ignored)",
        r.missing,
        r.extra,
        r.stale,
        r.in_flight
    )?;
    if r.repaired + r.unrepairable + r.repair_failed + r.superseded > 0 {
        outln!(
            "  repair: {} repaired, {} unrepairable (newer in the index), {} failed, {} changed meanwhile",
            r.repaired, r.unrepairable, r.repair_failed, r.superseded
        )?;
    }
    if !r.checkpointed {
        outln!("  note: the consumer has no checkpoint on some shards; their differences count as in flight")?;
    } else if !r.settled {
        outln!("  note: the consumer did not catch up with the stream in time; differences on lagging shards count as in flight")?;
    }
    for (kind, keys) in [
        ("missing", &r.missing_keys),
        ("extra", &r.extra_keys),
        ("stale", &r.stale_keys),
    ] {
        for d in keys.iter().take(PRINTED_KEYS) {
            print_key(kind, d)?;
        }
        if keys.len() > PRINTED_KEYS {
            outln!(
                "  ... {} more {kind} (see --json)",
                keys.len() - PRINTED_KEYS
            )?;
        }
    }
    outln!(
        "  {} in {} ms",
        if r.is_clean() {
            "clean".to_string()
        } else {
            format!("{} drifted documents remain", r.remaining)
        },
        r.elapsed_ms
    )?;
    Ok(())
}

fn print_key(kind: &str, d: &DriftedKey) -> Result<(), OutputError> {
    let v = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    outln!(
        "  {kind:<7} {}  primary {}  index {}  {}{}",
        d.key(),
        v(d.primary_version),
        v(d.index_version),
        serde_json::to_value(d.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        d.error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    )
}

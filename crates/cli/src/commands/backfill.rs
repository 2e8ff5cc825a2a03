//! `tsunagu backfill`: bootstrap a consumer from the items already in the primary, then
//! hand over to the change stream (see `tsunagu_engine::backfill`), on any primary and any
//! sink the config names. Resumable: run it again after an interruption and it continues
//! where it stopped.

use crate::cli::BackfillArgs;
use crate::outln;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use tsunagu_engine::backfill::BackfillOptions;
use tsunagu_runtime::config::{Config, PrimaryConfig};
use tsunagu_runtime::Runtime;

pub async fn run(mut config: Config, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    // On the embedded defaults a new consumer gets its own index, named after it; a
    // deployment with shared sinks names its consumers in the config.
    let created = if config.consumer(&args.consumer).is_none()
        && matches!(config.primary, PrimaryConfig::Embedded)
        && config.leases.is_none()
    {
        config.add_consumer(&args.consumer, &args.consumer)
    } else {
        false
    };
    config.validate()?;
    let runtime = Runtime::open(config).await?;
    let consumer = runtime.consumer(&args.consumer)?;
    if created {
        runtime
            .local_state
            .register_consumer(&consumer.name, &consumer.sink)
            .await?;
        outln!(
            "created consumer {:?} writing to index {:?}",
            consumer.name,
            consumer.sink
        )?;
    }
    let sink = runtime
        .open_sink(&consumer.sink)
        .await
        .context("a backfill writes to the consumer's sink")?;
    let total = runtime.primary.approximate_items().await.unwrap_or(0);
    // A resumed backfill starts its bar at the items earlier runs saved.
    let saved = saved_items(&runtime, &consumer.name).await;
    if saved > 0 {
        outln!(
            "resuming the backfill of consumer {:?}: {saved} items already done",
            consumer.name
        )?;
    }
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total.max(saved))
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} backfill {msg} [{bar:30}] {human_pos}/{human_len} items · {per_sec} · ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(consumer.name.clone());
    bar.set_position(saved);
    bar.reset_eta();
    let options = BackfillOptions {
        batch_size: args.batch_size as usize,
        max_items_per_second: args.rate,
        parallelism: args.parallelism as usize,
        ..BackfillOptions::default()
    };
    let on_items = |n: u64| {
        if bar.position() + n > bar.length().unwrap_or(0) {
            // The primary's item count is an estimate on DynamoDB.
            bar.set_length(bar.position() + n);
        }
        bar.inc(n)
    };
    let target = sink.sink();
    let outcome = {
        let _logs_around_the_bar = crate::progress::shown(&bar);
        tokio::select! {
            result = runtime.backfill(&consumer.name, target.as_ref(), &options, &on_items) => Some(result),
            _ = super::shutdown_signal() => None,
        }
    };
    drop(target);
    bar.finish_and_clear();
    // What was applied is made durable; progress was saved at the last durable point.
    sink.close().await;
    let Some(report) = outcome else {
        let saved = saved_items(&runtime, &consumer.name).await;
        runtime.close();
        eprintln!(
            "backfill of consumer {:?} interrupted: progress is saved ({saved} items; the last {} s of work is done again)\nresume with: {}",
            consumer.name,
            options.save_interval.as_secs(),
            resume_command()
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    let report = report.context("backfill interrupted; run the same command again to resume")?;
    runtime.close();
    let secs = report.elapsed_ms as f64 / 1000.0;
    outln!(
        "backfilled consumer {:?}: {} items over {} shards in {:.1} s ({:.0} items/s), {} dead-lettered; the stream takes over from the recorded positions",
        consumer.name,
        report.items,
        report.shards,
        secs,
        report.items as f64 / secs.max(1e-9),
        report.dead_lettered
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The exit code after Ctrl-C or SIGTERM (128 + SIGINT, as shells report an interrupt).
const EXIT_INTERRUPTED: u8 = 130;

/// Items earlier runs applied and saved in the consumer's backfill progress (0 when none
/// or unreadable: it only places the bar).
async fn saved_items(runtime: &Runtime, consumer: &str) -> u64 {
    match runtime.state.progress.load_backfill(consumer).await {
        Ok(states) => states.values().map(|s| s.items).sum(),
        Err(e) => {
            tracing::debug!(error = %e, "backfill progress unreadable");
            0
        }
    }
}

/// The command line this process was started with, quoted for a POSIX shell.
fn resume_command() -> String {
    std::env::args()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

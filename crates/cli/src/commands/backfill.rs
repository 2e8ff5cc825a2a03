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
    let sink = runtime.open_sink(&consumer.sink).await.context(
        "the consumer's sink must be opened for writing: stop `tsunagu replicate` on this data directory first",
    )?;
    let total = runtime.primary.approximate_items().await.unwrap_or(0);
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} backfill {msg} [{bar:30}] {human_pos}/{human_len} items · {per_sec} · ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(consumer.name.clone());
    let options = BackfillOptions {
        batch_size: args.batch_size as usize,
        max_items_per_second: (args.rate > 0).then_some(args.rate),
        parallelism: args.parallelism as usize,
        ..BackfillOptions::default()
    };
    let report = runtime
        .backfill(&consumer.name, sink.sink().as_ref(), &options, &|n| {
            if bar.position() + n > bar.length().unwrap_or(0) {
                // The primary's item count is an estimate on DynamoDB.
                bar.set_length(bar.position() + n);
            }
            bar.inc(n)
        })
        .await
        .context("backfill interrupted; run the same command again to resume")?;
    bar.finish_and_clear();
    sink.close().await;
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

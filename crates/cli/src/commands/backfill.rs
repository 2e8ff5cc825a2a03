//! `tsunagu backfill`: bootstrap a consumer from the items already in the primary, then
//! hand over to the change stream (see `tsunagu_engine::backfill`). Resumable: run it again
//! after an interruption and it continues where it stopped.

use crate::app::Embedded;
use crate::cli::BackfillArgs;
use crate::config::Config;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use tsunagu_engine::backfill::BackfillOptions;

pub async fn run(mut config: Config, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    // A new consumer gets its own index, named after it.
    let created = config.add_consumer(&args.consumer, &args.consumer);
    config.validate()?;
    let embedded = Embedded::open(config)?;
    let consumer = embedded
        .config
        .consumer(&args.consumer)
        .context("the consumer vanished from the config")?
        .clone();
    if created {
        embedded
            .state
            .register_consumer(&consumer.name, &consumer.sink)
            .await?;
        println!(
            "created consumer {:?} writing to index {:?}",
            consumer.name, consumer.sink
        );
    }
    let sink = embedded.open_sink(&consumer.sink).context(
        "the consumer's index must be opened for writing: stop `tsunagu replicate` on this data directory first",
    )?;
    let total = embedded.store.item_count().await?;
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
    let backfill = embedded.backfill(&consumer.name, sink.as_ref());
    let report = backfill
        .run(None, &options, &|n| bar.inc(n))
        .await
        .context("backfill interrupted; run the same command again to resume")?;
    bar.finish_and_clear();
    if let Ok(index) = std::sync::Arc::try_unwrap(sink) {
        index.close().await;
    }
    embedded.store.close();
    let secs = report.elapsed_ms as f64 / 1000.0;
    println!(
        "backfilled consumer {:?}: {} items over {} shards in {:.1} s ({:.0} items/s), {} dead-lettered; the stream takes over from the recorded positions",
        consumer.name,
        report.items,
        report.shards,
        secs,
        report.items as f64 / secs.max(1e-9),
        report.dead_lettered
    );
    Ok(ExitCode::SUCCESS)
}

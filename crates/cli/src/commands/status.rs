//! `tsunagu status`: where every consumer stands on every shard, read from the store and
//! the replication state (works while `tsunagu replicate` runs).

use crate::app::Embedded;
use crate::cli::StatusArgs;
use crate::config::Config;
use serde::Serialize;
use std::process::ExitCode;
use tsunagu_domain::ShardId;
use tsunagu_engine::ports::{ChangeSource, CheckpointStore, DeadLetterQueue, ReadFrom};

#[derive(Debug, Serialize)]
struct ShardRow {
    shard: ShardId,
    checkpoint: Option<String>,
    newest: Option<String>,
    backlog: Option<u64>,
    /// Records after the checkpoint were trimmed: the consumer needs a backfill.
    behind_retention: bool,
}

#[derive(Debug, Serialize)]
struct ConsumerRow {
    consumer: String,
    sink: String,
    dead_letters: u64,
    shards: Vec<ShardRow>,
}

pub async fn run(config: Config, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let embedded = Embedded::open(config)?;
    let shards = embedded.store.shards().await?;
    let mut rows = Vec::new();
    for consumer in &embedded.config.consumers {
        let checkpoints = embedded.state.load(&consumer.name).await?;
        let mut shard_rows = Vec::new();
        for shard in &shards {
            let checkpoint = checkpoints.get(&shard.id).cloned();
            let from = checkpoint
                .clone()
                .map_or(ReadFrom::TrimHorizon, ReadFrom::After);
            let behind_retention = matches!(
                embedded
                    .store
                    .read(&shard.id, &from, 1, std::time::Duration::ZERO)
                    .await,
                Err(tsunagu_engine::ports::SourceError::Trimmed { .. })
            );
            shard_rows.push(ShardRow {
                shard: shard.id.clone(),
                checkpoint: checkpoint.map(|p| p.0),
                newest: embedded
                    .store
                    .latest_position(&shard.id)
                    .await?
                    .map(|p| p.0),
                backlog: embedded.store.backlog(&shard.id, &from).await?,
                behind_retention,
            });
        }
        rows.push(ConsumerRow {
            consumer: consumer.name.clone(),
            sink: consumer.sink.clone(),
            dead_letters: embedded.state.count(&consumer.name).await?,
            shards: shard_rows,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("data directory: {}", embedded.config.data_dir.display());
        println!("items: {}", embedded.store.item_count().await?);
        for row in &rows {
            let backlog: u64 = row.shards.iter().filter_map(|s| s.backlog).sum();
            println!(
                "consumer {} → sink {}: backlog {backlog}, dead letters {}",
                row.consumer, row.sink, row.dead_letters
            );
            println!(
                "  {:>5}  {:>12}  {:>12}  {:>8}",
                "shard", "checkpoint", "newest", "backlog"
            );
            for s in &row.shards {
                println!(
                    "  {:>5}  {:>12}  {:>12}  {:>8}{}",
                    s.shard.0,
                    s.checkpoint.as_deref().unwrap_or("-"),
                    s.newest.as_deref().unwrap_or("-"),
                    s.backlog.map_or("?".to_string(), |b| b.to_string()),
                    if s.behind_retention {
                        "  BEHIND RETENTION: backfill needed"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

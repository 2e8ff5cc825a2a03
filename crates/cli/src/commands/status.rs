//! `tsunagu status`: where every consumer stands on every shard (checkpoint, lease owner,
//! newest record, backlog, age of the oldest unapplied record, dead letters), on any deployment; reads only, so it works from
//! any machine with the config while workers run.

use crate::cli::StatusArgs;
use crate::outln;
use std::process::ExitCode;
use tsunagu_runtime::config::{Config, PrimaryConfig};
use tsunagu_runtime::Runtime;

pub async fn run(config: Config, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open_read_only(config).await?;
    let rows = runtime.status().await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        match &runtime.config.primary {
            PrimaryConfig::Embedded => {
                outln!("data directory: {}", runtime.config.data_dir.display())?;
            }
            PrimaryConfig::Dynamodb(table) => {
                outln!("primary: DynamoDB table {:?}", table.table_name)?;
            }
        }
        if let Ok(items) = runtime.primary.approximate_items().await {
            outln!("items: {items}")?;
        }
        for row in &rows {
            let backlog: u64 = row.shards.iter().filter_map(|s| s.backlog).sum();
            outln!(
                "consumer {} → sink {}: backlog {backlog}, dead letters {}",
                row.consumer,
                row.sink,
                row.dead_letters
            )?;
            outln!(
                "  {:>28}  {:>24}  {:>24}  {:>8}  {:>10}  owner",
                "shard",
                "checkpoint",
                "newest",
                "backlog",
                "oldest"
            )?;
            for s in &row.shards {
                outln!(
                    "  {:>28}  {:>24}  {:>24}  {:>8}  {:>10}  {}{}{}",
                    s.shard.0,
                    s.checkpoint.as_deref().unwrap_or("-"),
                    s.newest.as_deref().unwrap_or("-"),
                    s.backlog.map_or("?".to_string(), |b| b.to_string()),
                    format!("{:.1}s", s.oldest_unapplied_age_seconds),
                    s.owner.as_deref().unwrap_or("-"),
                    if s.finished { "  finished" } else { "" },
                    if s.behind_retention {
                        "  BEHIND RETENTION: backfill needed"
                    } else {
                        ""
                    }
                )?;
            }
        }
    }
    runtime.close();
    Ok(ExitCode::SUCCESS)
}

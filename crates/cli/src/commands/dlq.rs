//! `tsunagu dlq`: list, show and redrive dead letters.

use crate::app::Embedded;
use crate::cli::DlqCommand;
use crate::config::Config;
use anyhow::Context;
use std::process::ExitCode;
use tsunagu_engine::ports::DeadLetterQueue;
use tsunagu_engine::redrive::redrive;

pub async fn run(config: Config, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let embedded = Embedded::open(config)?;
    let dlq = &embedded.state;
    match command {
        DlqCommand::List {
            consumer,
            limit,
            json,
        } => {
            let letters = dlq.list(consumer.as_deref(), 0, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else if letters.is_empty() {
                println!("the dead-letter queue is empty");
            } else {
                println!(
                    "{:>6}  {:<10} {:>5} {:>10}  {:<7} {:>3}  {:<32} error",
                    "id", "consumer", "shard", "position", "kind", "try", "key"
                );
                for l in &letters {
                    let error: String = l.error.chars().take(60).collect();
                    println!(
                        "{:>6}  {:<10} {:>5} {:>10}  {:<7} {:>3}  {:<32} {error}",
                        l.id,
                        l.consumer,
                        l.record.shard.0,
                        l.record.position.0,
                        l.record.kind.as_str(),
                        l.attempts,
                        l.record.key.to_string(),
                    );
                }
            }
        }
        DlqCommand::Show { id } => {
            let letter = dlq
                .get(id)
                .await?
                .with_context(|| format!("no dead letter with id {id}"))?;
            println!("{}", serde_json::to_string_pretty(&letter)?);
        }
        DlqCommand::Redrive { consumer, ids } => {
            let consumer_config = embedded
                .config
                .consumer(&consumer)
                .with_context(|| format!("no consumer named {consumer:?} in the config"))?;
            let sink = embedded.open_sink(&consumer_config.sink).context(
                "the sink must be opened for writing: stop `tsunagu replicate` on this data directory first",
            )?;
            let only = (!ids.is_empty()).then_some(ids.as_slice());
            let report = redrive(dlq, sink.as_ref(), &consumer, only).await?;
            println!(
                "redriven: {}  still failing: {}",
                report.redriven.len(),
                report.failed.len()
            );
            for (id, error) in &report.failed {
                println!("  {id}: {error}");
            }
            if let Ok(index) = std::sync::Arc::try_unwrap(sink) {
                index.close().await;
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

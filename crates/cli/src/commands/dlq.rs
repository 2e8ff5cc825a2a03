//! `tsunagu dlq`: list, show and redrive dead letters, wherever the config keeps them (the
//! data directory, or a DynamoDB table every worker and operator machine reaches).

use crate::cli::DlqCommand;
use crate::outln;
use anyhow::Context;
use std::process::ExitCode;
use tsunagu_engine::redrive::redrive;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Runtime;

pub async fn run(config: Config, command: DlqCommand) -> anyhow::Result<ExitCode> {
    // Only a redrive writes (the sink and the queue); listing and showing open read-only.
    let runtime = if matches!(command, DlqCommand::Redrive { .. }) {
        Runtime::open(config).await?
    } else {
        Runtime::open_read_only(config).await?
    };
    let dlq = runtime.state.dlq.as_ref();
    match command {
        DlqCommand::List {
            consumer,
            limit,
            json,
        } => {
            let letters = dlq.list(consumer.as_deref(), 0, limit as usize).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&letters)?)?;
            } else if letters.is_empty() {
                outln!("the dead-letter queue is empty")?;
            } else {
                outln!(
                    "{:>6}  {:<10} {:>5} {:>10}  {:<7} {:>3}  {:<32} error",
                    "id",
                    "consumer",
                    "shard",
                    "position",
                    "kind",
                    "try",
                    "key"
                )?;
                for l in &letters {
                    let error: String = l.error.chars().take(60).collect();
                    outln!(
                        "{:>6}  {:<10} {:>5} {:>10}  {:<7} {:>3}  {:<32} {error}",
                        l.id,
                        l.consumer,
                        l.record.shard.0,
                        l.record.position.0,
                        l.record.kind.as_str(),
                        l.attempts,
                        l.record.key.to_string(),
                    )?;
                }
            }
        }
        DlqCommand::Show { id } => {
            let letter = dlq
                .get(id)
                .await?
                .with_context(|| format!("no dead letter with id {id}"))?;
            outln!("{}", serde_json::to_string_pretty(&letter)?)?;
        }
        DlqCommand::Redrive { consumer, ids } => {
            let consumer_config = runtime.consumer(&consumer)?;
            let sink = runtime
                .open_sink(&consumer_config.sink)
                .await
                .context("a redrive writes to the consumer's sink")?;
            let only = (!ids.is_empty()).then_some(ids.as_slice());
            let report = redrive(dlq, sink.sink().as_ref(), &consumer, only).await?;
            outln!(
                "redriven: {}  still failing: {}",
                report.redriven.len(),
                report.failed.len()
            )?;
            for (id, error) in &report.failed {
                outln!("  {id}: {error}")?;
            }
            sink.close().await;
            if !report.failed.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    runtime.close();
    Ok(ExitCode::SUCCESS)
}

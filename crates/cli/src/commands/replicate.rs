//! `tsunagu replicate`: run the pipeline over the adapters of the config until Ctrl-C or
//! SIGTERM, then drain gracefully (and, with leases, hand the shards over at once).

use super::DataDirCreation;
use std::process::ExitCode;
use std::time::Duration;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Runtime;

/// How long a graceful stop may take before in-flight work is abandoned (it is replayed
/// on the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn run(config: Config, created: DataDirCreation) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(config).await?;
    created.report()?;
    let sinks = runtime.open_sinks().await?;
    let pipeline = runtime.start_pipeline(&sinks, Vec::new(), None).await?;
    tracing::info!(
        data_dir = %runtime.config.data_dir.display(),
        consumers = runtime.config.consumers.len(),
        leased = runtime.leased(),
        "replicating; Ctrl-C or SIGTERM stops after draining"
    );
    let mut report = tokio::time::interval(Duration::from_secs(30));
    report.tick().await;
    loop {
        tokio::select! {
            _ = super::shutdown_signal() => break,
            _ = report.tick() => {
                for consumer in pipeline.status() {
                    let applied: u64 = consumer.shards.iter().map(|s| s.applied).sum();
                    let dead: u64 = consumer.shards.iter().map(|s| s.dead_lettered).sum();
                    let in_flight: u64 = consumer.shards.iter().map(|s| s.in_flight).sum();
                    let shards: Vec<String> = consumer.shards.iter().map(|s| s.shard.to_string()).collect();
                    tracing::info!(consumer = %consumer.consumer, applied, dead_lettered = dead, in_flight, shards = %shards.join(","), "progress");
                }
            }
        }
    }
    tracing::info!("stopping: draining in-flight records");
    let drained = pipeline.shutdown_within(SHUTDOWN_GRACE).await;
    for (_, sink) in sinks {
        sink.close().await;
    }
    runtime.close();
    tracing::info!(drained, "stopped");
    Ok(ExitCode::SUCCESS)
}

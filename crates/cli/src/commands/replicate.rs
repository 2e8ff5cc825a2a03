//! `tsunagu replicate`: run the pipeline until Ctrl-C or SIGTERM, then drain gracefully.

use crate::app::Embedded;
use crate::config::Config;
use std::process::ExitCode;
use std::time::Duration;

/// How long a graceful stop may take before in-flight work is abandoned (it is replayed
/// on the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let embedded = Embedded::open(config)?;
    let sinks = embedded.open_sinks()?;
    let pipeline = embedded.start_pipeline(&sinks, Vec::new()).await?;
    tracing::info!(
        data_dir = %embedded.config.data_dir.display(),
        consumers = embedded.config.consumers.len(),
        shards = embedded.config.store.shard_count,
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
                    tracing::info!(consumer = %consumer.consumer, applied, dead_lettered = dead, in_flight, "progress");
                }
            }
        }
    }
    tracing::info!("stopping: draining in-flight records");
    let drained = pipeline.shutdown_within(SHUTDOWN_GRACE).await;
    for (_, sink) in sinks {
        if let Ok(index) = std::sync::Arc::try_unwrap(sink) {
            index.close().await;
        }
    }
    embedded.store.close();
    tracing::info!(drained, "stopped");
    Ok(ExitCode::SUCCESS)
}

//! One module per subcommand. Each takes the resolved config and its own arguments and
//! returns the process's exit code.

mod backfill;
mod check;
pub mod demo;
mod dlq;
pub mod migrate;
mod reconcile;
mod replicate;
mod search;
mod serve;
mod status;
mod tenant;

use crate::cli::{Cli, Command};
use std::process::ExitCode;
use tsunagu_runtime::resolve_config;

/// Runs the command. Only the commands meant to set up a data directory create a missing
/// one (`demo`, `replicate`, `serve`, `tenant create`) and say so; every other command
/// refuses it, naming the path and where it came from, so a mistyped `--data-dir` never
/// becomes a new empty store. Commands that only read open everything read-only.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone();
    let origin = data_dir_origin(&cli);
    let resolve = || resolve_config(cli.config.as_deref(), data_dir.as_deref());
    match cli.command {
        Command::Demo(args) => {
            // The demo makes its own directory unless told where to work.
            let dir = match (&data_dir, &cli.config) {
                (Some(dir), _) => Some(dir.clone()),
                (None, None) => Some(demo::fresh_dir()?),
                (None, Some(_)) => None,
            };
            let config = resolve_config(cli.config.as_deref(), dir.as_deref())?;
            demo::run(config, args).await
        }
        Command::Check(args) => check::run(resolve()?, args.json).await,
        Command::Replicate => {
            let config = resolve()?;
            let created = DataDirCreation::watch(&config);
            replicate::run(config, created).await
        }
        Command::Search(args) => {
            let config = resolve()?;
            tsunagu_runtime::require_existing_store(&config, &origin)?;
            search::run(&config, *args).await
        }
        Command::Dlq { command } => {
            let config = resolve()?;
            tsunagu_runtime::require_existing_store(&config, &origin)?;
            dlq::run(config, command).await
        }
        Command::Backfill(args) => {
            let config = resolve()?;
            tsunagu_runtime::require_existing_store(&config, &origin)?;
            backfill::run(config, args).await
        }
        Command::Reconcile(args) => {
            let config = resolve()?;
            tsunagu_runtime::require_existing_store(&config, &origin)?;
            reconcile::run(config, args).await
        }
        Command::Serve(args) => {
            let config = resolve()?;
            let created = DataDirCreation::watch(&config);
            serve::run(config, args.listen, created).await
        }
        Command::Tenant { command } => {
            let config = resolve()?;
            let created = DataDirCreation::watch(&config);
            if !matches!(command, crate::cli::TenantCommand::Create { .. })
                && matches!(
                    config.tenants,
                    tsunagu_runtime::config::TenantsConfig::Embedded {}
                )
            {
                tsunagu_runtime::require_data_dir(&config, &origin)?;
            }
            tenant::run(&config, command, created).await
        }
        Command::Migrate { command } => migrate::run(command).await,
        Command::Bench { command } => tsunagu_bench::run(command, data_dir.as_deref()).await,
        Command::Status(args) => {
            let config = resolve()?;
            tsunagu_runtime::require_existing_store(&config, &origin)?;
            status::run(config, args).await
        }
    }
}

/// Where the data directory's path came from, named when it is wrong.
fn data_dir_origin(cli: &Cli) -> String {
    match (&cli.data_dir, &cli.config) {
        (Some(_), _) => "--data-dir / TSUNAGU_DATA_DIR".to_string(),
        (None, Some(file)) => format!("data_dir in {}", file.display()),
        (None, None) => {
            "the default data_dir; set --data-dir or data_dir in the config file".to_string()
        }
    }
}

/// Notices whether a command that sets up a data directory created it, to say so.
pub(crate) struct DataDirCreation {
    dir: std::path::PathBuf,
    existed: bool,
}

impl DataDirCreation {
    fn watch(config: &tsunagu_runtime::config::Config) -> Self {
        Self {
            dir: config.data_dir.clone(),
            existed: config.data_dir.exists(),
        }
    }

    /// Prints "created data directory DIR" once the command made it.
    pub(crate) fn report(&self) -> Result<(), crate::output::OutputError> {
        if !self.existed && self.dir.is_dir() {
            crate::outln!("created data directory {}", self.dir.display())?;
        }
        Ok(())
    }
}

/// Waits until every consumer's checkpoints have reached the newest record of every
/// shard, i.e. everything written so far is searchable.
pub async fn wait_caught_up(
    embedded: &tsunagu_runtime::Embedded,
    pipeline: &tsunagu_engine::Pipeline,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use tsunagu_engine::ports::ChangeSource;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut latest = std::collections::HashMap::new();
    for shard in embedded.store.shards().await? {
        if let Some(p) = embedded.store.latest_position(&shard.id).await? {
            latest.insert(shard.id, p.0.parse::<u64>().unwrap_or(0));
        }
    }
    loop {
        let caught_up = pipeline.status().iter().all(|consumer| {
            latest.iter().all(|(shard, newest)| {
                consumer.shards.iter().any(|s| {
                    &s.shard == shard
                        && s.checkpoint
                            .as_ref()
                            .and_then(|p| p.0.parse::<u64>().ok())
                            .is_some_and(|cp| cp >= *newest)
                })
            })
        });
        if caught_up {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("replication did not catch up within {timeout:?}; see `tsunagu status`");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! `tsunagu serve`: the application on the config's deployment (see
//! [`tsunagu_runtime::serving`]), until Ctrl-C or SIGTERM.

use super::DataDirCreation;
use crate::outln;
use std::process::ExitCode;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::serving;

/// The `serve` command: runs until Ctrl-C or SIGTERM.
pub async fn run(
    config: Config,
    listen: Option<String>,
    created: DataDirCreation,
) -> anyhow::Result<ExitCode> {
    let listen = match listen {
        Some(listen) => listen,
        None => {
            crate::cli::parse_listen(&config.server.listen)
                .map_err(|e| anyhow::anyhow!("[server] listen: {e}"))?;
            config.server.listen.clone()
        }
    };
    let data_dir = config.data_dir.clone();
    let mut server = serving::start_at(config, &listen).await?;
    if let Err(e) = created.report() {
        tracing::debug!(error = %e, "the data directory's creation was not printed");
    }
    // Tests and scripts wait for this line. A server outlives a reader that closed its
    // output (`serve | head -1`): the line is information, not the command's result.
    if let Err(e) = outln!("listening on http://{}", server.addr) {
        tracing::debug!(error = %e, "the listening line was not printed");
    }
    tracing::info!(addr = %server.addr, data_dir = %data_dir.display(), "serving; Ctrl-C or SIGTERM stops gracefully");
    tokio::select! {
        _ = super::shutdown_signal() => {}
        result = server.wait() => {
            result?;
            anyhow::bail!("the server stopped on its own");
        }
    }
    server.stop().await?;
    Ok(ExitCode::SUCCESS)
}

//! `tsunagu serve`: the application on the config's deployment (see
//! [`tsunagu_runtime::serving`]), until Ctrl-C or SIGTERM.

use anyhow::Context;
use std::net::SocketAddr;
use std::process::ExitCode;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::serving;

/// The `serve` command: runs until Ctrl-C or SIGTERM.
pub async fn run(config: Config, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let listen = match listen {
        Some(addr) => addr,
        None => config
            .server
            .listen
            .parse()
            .context("server.listen is not an address")?,
    };
    let data_dir = config.data_dir.clone();
    let mut server = serving::start(config, listen).await?;
    // Tests and scripts wait for this line.
    println!("listening on http://{}", server.addr);
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

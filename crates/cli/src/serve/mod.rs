//! `tsunagu serve`: the application in one process — the embedded store, the replication
//! pipeline into the index, and the HTTP API over them. [`start`] is also what the tests
//! use (port 0, a fresh data directory).
//!
//! Shutdown drains in order: stop accepting connections, finish in-flight requests, drain
//! the pipeline (bounded by `server.shutdown_grace_ms`), make the index durable, close the
//! store.

pub mod adapters;

use adapters::{
    EmbeddedOps, EmbeddedPrimary, EmbeddedSearch, EmbeddedVisibility, LagWindow, MetricsObserver,
};
use anyhow::Context;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tsunagu_api::{AppState, Metrics};
use tsunagu_embedded_store::TenantRegistry;
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Embedded;
use tsunagu_service::ports::SystemClock;
use tsunagu_service::{Service, ServiceOptions};

/// A running server.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Stops gracefully (see the module docs) and waits until everything is closed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.context("the server task panicked")?
    }

    /// Waits until the server stops on its own (it does not unless it fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("the server task panicked")?
    }
}

/// Opens the data directory, starts the pipeline and serves the API on `listen`.
pub async fn start(config: Config, listen: SocketAddr) -> anyhow::Result<RunningServer> {
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let request_timeout = Duration::from_millis(config.server.request_timeout_ms);
    let search_consumer = match &config.server.search_consumer {
        Some(name) => name.clone(),
        None => config
            .consumers
            .first()
            .map(|c| c.name.clone())
            .context("the config has no consumer, so there is no index to search")?,
    };
    let tenants = TenantRegistry::open(&config.tenants_path())?;
    let consistency_wait = Duration::from_millis(config.server.consistency_wait_ms);
    let embedded = Embedded::open(config)?;
    let sinks = embedded.open_sinks()?;
    let search_sink = embedded
        .config
        .consumer(&search_consumer)
        .map(|c| c.sink.clone())
        .with_context(|| format!("no consumer named {search_consumer:?}"))?;
    let index = Arc::clone(
        sinks
            .get(&search_sink)
            .with_context(|| format!("sink {search_sink:?} is not open"))?,
    );
    let metrics = Arc::new(Metrics::new());
    for consumer in &embedded.config.consumers {
        metrics.register_consumer(&consumer.name);
    }
    let lag = Arc::new(LagWindow::new(Duration::from_secs(60))?);
    let observer = Arc::new(MetricsObserver {
        metrics: Arc::clone(&metrics),
        lag: Arc::clone(&lag),
    });
    let pipeline = embedded.start_pipeline(&sinks, vec![observer]).await?;
    let pipeline = Arc::new(Mutex::new(Some(pipeline)));
    let service = Service::new(
        Arc::new(EmbeddedPrimary(embedded.store.clone())),
        Arc::new(EmbeddedSearch(Arc::clone(&index))),
        Arc::new(EmbeddedVisibility {
            index: Arc::clone(&index),
            store: embedded.store.clone(),
            pipeline: Arc::clone(&pipeline),
            consumer: search_consumer.clone(),
        }),
        Arc::new(SystemClock),
        ServiceOptions { consistency_wait },
    );
    let state = AppState {
        service,
        tenants: Arc::new(tenants),
        ops: Arc::new(EmbeddedOps {
            embedded: embedded.clone(),
            pipeline: Arc::clone(&pipeline),
            lag,
        }),
        metrics,
    };
    let app = tsunagu_api::router(state, request_timeout);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    drop(index);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
                tracing::info!("stopping: finishing in-flight requests");
            })
            .await;
        tracing::info!("requests finished; draining the pipeline");
        let taken = pipeline.lock().ok().and_then(|mut p| p.take());
        let drained = match taken {
            Some(p) => p.shutdown_within(grace).await,
            None => true,
        };
        for (_, sink) in sinks {
            match Arc::try_unwrap(sink) {
                Ok(index) => index.close().await,
                Err(shared) => {
                    // Still referenced by a request that outlived the grace period:
                    // make it durable; the handle closes when the last user drops it.
                    if let Err(e) = tsunagu_engine::ports::Sink::flush(shared.as_ref()).await {
                        tracing::warn!(error = %e, "flushing the index on shutdown failed");
                    }
                }
            }
        }
        embedded.store.close();
        tracing::info!(drained, "stopped");
        served.context("the HTTP server failed")
    });
    Ok(RunningServer {
        addr,
        stop: Some(stop_tx),
        task,
    })
}

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
    let mut server = start(config, listen).await?;
    // Tests and scripts wait for this line.
    println!("listening on http://{}", server.addr);
    tracing::info!(addr = %server.addr, data_dir = %data_dir.display(), "serving; Ctrl-C or SIGTERM stops gracefully");
    tokio::select! {
        _ = crate::commands::shutdown_signal() => {}
        result = server.wait() => {
            result?;
            anyhow::bail!("the server stopped on its own");
        }
    }
    server.stop().await?;
    Ok(ExitCode::SUCCESS)
}

//! The application served over HTTP, on any deployment: the use cases over the config's
//! primary, the search consumer's index and the tenant registry, the replication
//! pipeline in the same process unless `[server] replicate = false`, and the API.
//! [`start`] is what `tsunagu serve` and the tests run (port 0 for a free one).
//!
//! - `primary`: any [`tsunagu_engine::ports::ItemStore`] as the service's primary.
//! - `visibility`: read-your-writes, in process (embedded) or from the checkpoints (any
//!   process, any deployment).
//! - `ops`: the lag window, the metrics observer and the operations probe.
//!
//! Start-up binds the address first (a busy port fails before anything is opened), then
//! opens the runtime. Shutdown drains in order: stop accepting connections, finish
//! in-flight requests, drain the pipeline (bounded by `server.shutdown_grace_ms`), make
//! the sinks durable, close the store.

mod ops;
mod primary;
mod visibility;

pub use ops::{LagWindow, MetricsObserver, PipelineOps};
pub use primary::StorePrimary;
pub use visibility::{InProcessVisibility, StreamVisibility};

use crate::config::{Config, PrimaryConfig, SourceConfig};
use crate::{Runtime, SinkHandle};
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tsunagu_api::{AppState, Metrics};
use tsunagu_engine::Pipeline;
use tsunagu_service::ports::{SearchIndex, SystemClock, WriteVisibility};
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

/// The consumer whose index the API searches: `[server] search_consumer`, else the first.
fn search_consumer(config: &Config) -> anyhow::Result<String> {
    match &config.server.search_consumer {
        Some(name) => Ok(name.clone()),
        None => config
            .consumers
            .first()
            .map(|c| c.name.clone())
            .context("the config has no consumer, so there is no index to search"),
    }
}

/// Binds `listen`, opens everything the config names, starts the pipeline (unless
/// `[server] replicate = false`) and serves the API.
pub async fn start(config: Config, listen: SocketAddr) -> anyhow::Result<RunningServer> {
    start_at(config, &listen.to_string()).await
}

/// [`start`] on `listen` as a user writes it: an address or a host name with a port
/// (`localhost:8080`), resolved; the first of its addresses that binds is used.
pub async fn start_at(config: Config, listen: &str) -> anyhow::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen / [server] listen)"))?;
    let addr = listener.local_addr()?;
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let request_timeout = Duration::from_millis(config.server.request_timeout_ms);
    let consistency_wait = Duration::from_millis(config.server.consistency_wait_ms);
    let replicate = config.server.replicate;
    let consumer = search_consumer(&config)?;
    let search_sink = config
        .consumer(&consumer)
        .map(|c| c.sink.clone())
        .with_context(|| format!("[server] search_consumer: no consumer named {consumer:?}"))?;
    if !replicate
        && matches!(
            config.sinks.get(&search_sink),
            Some(crate::config::SinkConfig::EmbeddedIndex { .. })
        )
    {
        anyhow::bail!(
            "[server] replicate = false needs an index other processes write (OpenSearch / Elasticsearch); sinks.{search_sink} is an embedded index, which has one writer: serve it from the process that replicates (replicate = true)"
        );
    }
    let tenants = crate::tenants::open_tenant_directory(&config).await?;
    let runtime = Arc::new(Runtime::open(config).await?);

    let metrics = Arc::new(Metrics::new());
    for consumer in &runtime.config.consumers {
        metrics.register_consumer(&consumer.name);
    }
    let lag = Arc::new(LagWindow::new(Duration::from_secs(60))?);

    // The sinks: every consumer's when this process replicates, else the searched one.
    let sinks: BTreeMap<String, SinkHandle> = if replicate {
        runtime.open_sinks().await?
    } else {
        BTreeMap::from([(search_sink.clone(), runtime.open_sink(&search_sink).await?)])
    };
    let index: Arc<dyn SearchIndex> = sinks
        .get(&search_sink)
        .with_context(|| format!("sink {search_sink:?} is not open"))?
        .search_index()
        .with_context(|| {
            format!("sinks.{search_sink} cannot be searched; set [server] search_consumer to a consumer whose sink is an index")
        })?;
    let pipeline = if replicate {
        let observer = Arc::new(MetricsObserver {
            metrics: Arc::clone(&metrics),
            lag: Arc::clone(&lag),
        });
        let pipeline = runtime.start_pipeline(&sinks, vec![observer], None).await?;
        Some(Arc::new(Mutex::new(Some(pipeline))))
    } else {
        None
    };
    let visibility: Arc<dyn WriteVisibility> = match (&runtime.embedded, &pipeline) {
        (Some(embedded), Some(pipeline))
            if matches!(runtime.config.primary, PrimaryConfig::Embedded)
                && matches!(runtime.config.source, SourceConfig::Embedded) =>
        {
            Arc::new(InProcessVisibility {
                index: Arc::clone(&index),
                store: embedded.store.clone(),
                pipeline: Arc::clone(pipeline),
                consumer: consumer.clone(),
            })
        }
        _ => Arc::new(StreamVisibility::new(
            Arc::clone(&index),
            Arc::clone(&runtime.source),
            runtime.checkpoints(),
            consumer.clone(),
            runtime.config.source_propagation_delay(),
        )),
    };
    let service = Service::new(
        Arc::new(StorePrimary(Arc::clone(&runtime.store))),
        index,
        visibility,
        Arc::new(SystemClock),
        ServiceOptions { consistency_wait },
    );
    let state = AppState {
        service,
        tenants,
        ops: Arc::new(PipelineOps::new(
            Arc::clone(&runtime),
            pipeline.clone(),
            lag,
        )),
        metrics,
    };
    let app = tsunagu_api::router(state, request_timeout);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
                tracing::info!("stopping: finishing in-flight requests");
            })
            .await;
        let drained = match pipeline {
            Some(pipeline) => {
                tracing::info!("requests finished; draining the pipeline");
                drain(&pipeline, grace).await
            }
            None => true,
        };
        for (_, sink) in sinks {
            sink.close().await;
        }
        runtime.close();
        tracing::info!(drained, "stopped");
        served.context("the HTTP server failed")
    });
    Ok(RunningServer {
        addr,
        stop: Some(stop_tx),
        task,
    })
}

async fn drain(pipeline: &Mutex<Option<Pipeline>>, grace: Duration) -> bool {
    let taken = pipeline.lock().ok().and_then(|mut p| p.take());
    match taken {
        Some(p) => p.shutdown_within(grace).await,
        None => true,
    }
}

//! An open sink, with what the checks and drift repair need besides the [`Sink`] port.

use std::sync::Arc;
use tsunagu_aws::KinesisForwarder;
use tsunagu_domain::{ItemKey, Version};
use tsunagu_embedded_index::ActivityIndex;
use tsunagu_engine::drift::VersionDigest;
use tsunagu_engine::ports::Sink;
use tsunagu_opensearch::OpenSearchSink;
use tsunagu_service::ports::SearchIndex;

/// An open sink of any kind.
#[derive(Clone)]
pub enum SinkHandle {
    Embedded(Arc<ActivityIndex>),
    OpenSearch(Arc<OpenSearchSink>),
    /// Forwards into a Kinesis stream; it cannot be read back.
    Kinesis(Arc<KinesisForwarder>),
}

impl SinkHandle {
    pub fn sink(&self) -> Arc<dyn Sink> {
        match self {
            SinkHandle::Embedded(index) => Arc::clone(index) as Arc<dyn Sink>,
            SinkHandle::OpenSearch(sink) => Arc::clone(sink) as Arc<dyn Sink>,
            SinkHandle::Kinesis(sink) => Arc::clone(sink) as Arc<dyn Sink>,
        }
    }

    /// The sink read back, for drift detection (`None`: a forwarder, which cannot be).
    pub fn digest(&self) -> Option<Arc<dyn VersionDigest>> {
        match self {
            SinkHandle::Embedded(index) => Some(Arc::clone(index) as Arc<dyn VersionDigest>),
            SinkHandle::OpenSearch(sink) => Some(Arc::clone(sink) as Arc<dyn VersionDigest>),
            SinkHandle::Kinesis(_) => None,
        }
    }

    /// Every live (not deleted) item the sink holds, with its version.
    pub async fn live_versions(&self) -> anyhow::Result<Vec<(ItemKey, Version)>> {
        match self {
            SinkHandle::Embedded(index) => Ok(index.live_versions()?.into_iter().collect()),
            SinkHandle::OpenSearch(sink) => {
                sink.refresh().await?;
                Ok(sink.live_versions().await?)
            }
            SinkHandle::Kinesis(_) => anyhow::bail!(
                "a kinesis sink forwards changes and cannot be read back; check the consumer that reads the stream instead"
            ),
        }
    }

    /// The sink as the application's search port (`None`: a forwarder).
    pub fn search_index(&self) -> Option<Arc<dyn SearchIndex>> {
        match self {
            SinkHandle::Embedded(index) => Some(Arc::clone(index) as Arc<dyn SearchIndex>),
            SinkHandle::OpenSearch(_) => None, // TEMP until the OpenSearch search lands
            SinkHandle::Kinesis(_) => None,
        }
    }

    /// Makes everything durable and releases the sink (the embedded index's lock). An
    /// index still referenced elsewhere (a request that outlived the shutdown grace) is
    /// made durable; it closes when the last user drops it.
    pub async fn close(self) {
        match self {
            SinkHandle::Embedded(index) => match Arc::try_unwrap(index) {
                Ok(index) => index.close().await,
                Err(shared) => {
                    if let Err(e) = Sink::flush(shared.as_ref()).await {
                        tracing::warn!(error = %e, "making the index durable on close failed");
                    }
                }
            },
            SinkHandle::OpenSearch(_) | SinkHandle::Kinesis(_) => {}
        }
    }
}

//! An open sink, with what the checks and drift repair need besides the [`Sink`] port.

use crate::config::{Config, SinkConfig};
use anyhow::Context;
use std::sync::Arc;
use tsunagu_aws::KinesisForwarder;
use tsunagu_domain::{ItemKey, Version};
use tsunagu_embedded_index::{ActivityIndex, Dictionary};
use tsunagu_engine::drift::VersionDigest;
use tsunagu_engine::ports::Sink;
use tsunagu_opensearch::{OpenSearchSearch, OpenSearchSink};
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
            SinkHandle::OpenSearch(sink) => Some(Arc::new(OpenSearchSearch::from_client(
                sink.as_ref().clone(),
            ))),
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

/// Opens one sink (`sinks.NAME` of `config`) for writing.
pub async fn open_sink(config: &Config, name: &str) -> anyhow::Result<SinkHandle> {
    let sink = config
        .sinks
        .get(name)
        .with_context(|| format!("no sink named {name:?} in the config"))?;
    Ok(match sink {
        SinkConfig::EmbeddedIndex { .. } => {
            SinkHandle::Embedded(crate::embedded::open_index(config, name)?)
        }
        SinkConfig::Opensearch(opensearch) => {
            let sink = opensearch_client(config, name, opensearch)?;
            sink.ensure_index()
                .await
                .with_context(|| format!("cannot open sinks.{name}"))?;
            SinkHandle::OpenSearch(Arc::new(sink))
        }
        SinkConfig::Kinesis(kinesis) => {
            let aws = config
                .aws
                .as_ref()
                .context("[aws] is required by a kinesis sink")?;
            SinkHandle::Kinesis(Arc::new(
                KinesisForwarder::connect(aws, kinesis)
                    .await
                    .with_context(|| format!("cannot open sinks.{name}"))?,
            ))
        }
    })
}

/// Opens a sink to be searched only, by a process that does not write it (`tsunagu
/// search`): an embedded index read-only (at its last durable point, beside a running
/// pipeline), an OpenSearch / Elasticsearch index over HTTP.
pub async fn open_search_reader(
    config: &Config,
    name: &str,
) -> anyhow::Result<Arc<dyn SearchIndex>> {
    match config.sinks.get(name) {
        None => anyhow::bail!(
            "no sink named {name:?} in the config (sinks: {})",
            config.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        Some(SinkConfig::EmbeddedIndex { .. }) => {
            let dir = config.index_dir(name);
            if !dir.exists() {
                anyhow::bail!(
                    "sinks.{name}: no index at {} yet (check --data-dir / data_dir; `tsunagu replicate` or `serve` creates it)",
                    dir.display()
                );
            }
            let dictionary = sink_dictionary(config, name)?;
            Ok(Arc::new(
                ActivityIndex::open_read_only_with(&dir, dictionary)
                    .with_context(|| format!("cannot open the index at {}", dir.display()))?,
            ))
        }
        Some(SinkConfig::Opensearch(opensearch)) => {
            let search = OpenSearchSearch::from_client(opensearch_client(config, name, opensearch)?);
            search
                .check()
                .await
                .with_context(|| format!("cannot open sinks.{name}"))?;
            Ok(Arc::new(search))
        }
        Some(SinkConfig::Kinesis(_)) => anyhow::bail!(
            "sinks.{name} forwards changes into a Kinesis stream and cannot be searched; search the index of the consumer that reads that stream"
        ),
    }
}

/// The client of OpenSearch sink `name`, with its dictionary loaded when it has one
/// (see [`tsunagu_opensearch::OpenSearchSink::with_words`]); no request is sent.
fn opensearch_client(
    config: &Config,
    name: &str,
    opensearch: &tsunagu_opensearch::OpenSearchConfig,
) -> anyhow::Result<OpenSearchSink> {
    let words = sink_dictionary(config, name)?;
    Ok(OpenSearchSink::new(opensearch)
        .with_context(|| format!("cannot open sinks.{name}"))?
        .with_words(words))
}

/// The Japanese dictionary of sink `name` (`sinks.NAME.dictionary`, an embedded index's
/// or an OpenSearch index's), loaded from its compiled copy in `data_dir/dictionaries/`
/// or compiled there; `None` when the sink has none.
pub(crate) fn sink_dictionary(
    config: &Config,
    name: &str,
) -> anyhow::Result<Option<Arc<Dictionary>>> {
    let source = match config.sinks.get(name) {
        Some(SinkConfig::EmbeddedIndex {
            dictionary: Some(source),
            ..
        }) => source,
        Some(SinkConfig::Opensearch(os)) => match &os.dictionary {
            Some(source) => source,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let cache = config.dictionaries_dir();
    let dictionary =
        Dictionary::load(source, &cache).with_context(|| format!("sinks.{name}.dictionary"))?;
    Ok(Some(Arc::new(dictionary)))
}

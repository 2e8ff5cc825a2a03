//! Prometheus metrics (text exposition at `/metrics`): HTTP requests, writes, replication
//! lag, sink errors by kind, and, read at scrape time, backlog per shard and dead letters.

use crate::state::PipelineReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    entity: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkErrorLabels {
    consumer: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    consumer: String,
    shard: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process, in one registry.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    writes: Family<WriteLabels, Counter>,
    lag: HistogramFamily<ConsumerLabels>,
    sink_errors: Family<SinkErrorLabels, Counter>,
    backlog: Family<ShardLabels, Gauge>,
    dead_letters: Family<ConsumerLabels, Gauge>,
}

fn latency_buckets() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tsunagu");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            http_duration.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "Writes accepted by the primary store through the API, by entity and operation",
            writes.clone(),
        );
        let lag: HistogramFamily<ConsumerLabels> = Family::new_with_constructor(latency_buckets);
        registry.register(
            "replication_lag_seconds",
            "Time from the primary's commit to the record being searchable, per consumer",
            lag.clone(),
        );
        let sink_errors = Family::<SinkErrorLabels, Counter>::default();
        registry.register(
            "sink_errors",
            "Sink failures by consumer and kind (batch_retryable, batch_permanent, record_retryable, record_permanent)",
            sink_errors.clone(),
        );
        let backlog = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "shard_backlog_records",
            "Change records not yet checkpointed, per consumer and shard",
            backlog.clone(),
        );
        let dead_letters = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "dead_letters",
            "Records in the dead-letter queue, per consumer",
            dead_letters.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            writes,
            lag,
            sink_errors,
            backlog,
            dead_letters,
        }
    }

    /// Creates a consumer's series at zero, so they exist before the first error.
    pub fn register_consumer(&self, consumer: &str) {
        for kind in [
            "batch_retryable",
            "batch_permanent",
            "record_retryable",
            "record_permanent",
        ] {
            self.sink_error(consumer, kind, 0);
        }
        let _ = self.dead_letters.get_or_create(&ConsumerLabels {
            consumer: consumer.to_string(),
        });
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }

    pub fn write(&self, entity: &str, op: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                entity: entity.to_string(),
                op: op.to_string(),
            })
            .inc();
    }

    /// The lags of one applied batch (one label lookup for the batch).
    pub fn replication_lags(&self, consumer: &str, seconds: impl IntoIterator<Item = f64>) {
        let histogram = self.lag.get_or_create(&ConsumerLabels {
            consumer: consumer.to_string(),
        });
        for s in seconds {
            histogram.observe(s);
        }
    }

    pub fn sink_error(&self, consumer: &str, kind: &str, count: u64) {
        self.sink_errors
            .get_or_create(&SinkErrorLabels {
                consumer: consumer.to_string(),
                kind: kind.to_string(),
            })
            .inc_by(count);
    }

    /// The text exposition, with the gauges read from `pipeline` first.
    pub fn render(&self, pipeline: Option<&PipelineReport>) -> Result<String, std::fmt::Error> {
        if let Some(report) = pipeline {
            for consumer in &report.consumers {
                self.dead_letters
                    .get_or_create(&ConsumerLabels {
                        consumer: consumer.consumer.clone(),
                    })
                    .set(consumer.dead_letters as i64);
                for shard in &consumer.shards {
                    if let Some(backlog) = shard.backlog {
                        self.backlog
                            .get_or_create(&ShardLabels {
                                consumer: consumer.consumer.clone(),
                                shard: shard.shard.clone(),
                            })
                            .set(backlog.min(i64::MAX as u64) as i64);
                    }
                }
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

//! Prometheus metrics (text exposition at `/metrics`): HTTP requests, writes, replication
//! lag, records applied, sink errors by kind, build info and, read at scrape time, per
//! shard the backlog, the age of the oldest unapplied record and the state, dead letters,
//! and the process's CPU, memory and file descriptors (`process_*`, from `/proc`).
//!
//! The stall signal is `tsunagu_shard_oldest_unapplied_age_seconds`: it keeps growing
//! while a shard applies nothing, where the lag histogram simply stops getting samples.

use crate::state::PipelineReport;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardStateLabels {
    consumer: String,
    shard: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every value of the `state` label of `tsunagu_shard_state` (bounded: a shard run by
/// another worker is `running`, whoever runs it).
pub const SHARD_STATES: [&str; 9] = [
    "starting",
    "waiting_for_parent",
    "running",
    "backfilling",
    "behind_retention",
    "failed",
    "finished",
    "stopped",
    "unowned",
];

/// The `state` label for a shard report's state (`running on worker-1` is `running`).
fn shard_state_label(state: &str) -> &'static str {
    let state = if state.starts_with("running on ") {
        "running"
    } else {
        state
    };
    SHARD_STATES
        .into_iter()
        .find(|s| *s == state)
        .unwrap_or("unowned")
}

/// Every metric of the process, in one registry.
pub struct Metrics {
    registry: Registry,
    /// The standard unprefixed `process_*` metrics.
    process: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    writes: Family<WriteLabels, Counter>,
    lag: HistogramFamily<ConsumerLabels>,
    sink_errors: Family<SinkErrorLabels, Counter>,
    applied: Family<ConsumerLabels, Counter>,
    backlog: Family<ShardLabels, Gauge>,
    oldest_unapplied: Family<ShardLabels, FloatGauge>,
    shard_state: Family<ShardStateLabels, Gauge>,
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
        let applied = Family::<ConsumerLabels, Counter>::default();
        registry.register(
            "records_applied",
            "Change records applied to the sink, per consumer",
            applied.clone(),
        );
        let backlog = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "shard_backlog_records",
            "Change records not yet checkpointed, per consumer and shard",
            backlog.clone(),
        );
        let oldest_unapplied = Family::<ShardLabels, FloatGauge>::default();
        registry.register(
            "shard_oldest_unapplied_age_seconds",
            "Seconds since the commit of the oldest record not yet checkpointed, per consumer and shard (0 when caught up; grows while the shard stalls)",
            oldest_unapplied.clone(),
        );
        let shard_state = Family::<ShardStateLabels, Gauge>::default();
        registry.register(
            "shard_state",
            "1 for the state each shard of each consumer is in, 0 for the others",
            shard_state.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("build_info", "The running build (always 1)", build_info);
        let mut process = Registry::default();
        process.register_collector(Box::new(ProcessCollector));
        let dead_letters = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "dead_letters",
            "Records in the dead-letter queue, per consumer",
            dead_letters.clone(),
        );
        Self {
            registry,
            process,
            http_requests,
            http_duration,
            writes,
            lag,
            sink_errors,
            applied,
            backlog,
            oldest_unapplied,
            shard_state,
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
        let labels = ConsumerLabels {
            consumer: consumer.to_string(),
        };
        let _ = self.dead_letters.get_or_create(&labels);
        let _ = self.applied.get_or_create(&labels);
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

    /// The records of one applied batch.
    pub fn records_applied(&self, consumer: &str, count: u64) {
        self.applied
            .get_or_create(&ConsumerLabels {
                consumer: consumer.to_string(),
            })
            .inc_by(count);
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
                    let labels = ShardLabels {
                        consumer: consumer.consumer.clone(),
                        shard: shard.shard.clone(),
                    };
                    if let Some(backlog) = shard.backlog {
                        self.backlog
                            .get_or_create(&labels)
                            .set(backlog.min(i64::MAX as u64) as i64);
                    }
                    self.oldest_unapplied
                        .get_or_create(&labels)
                        .set(shard.oldest_unapplied_age_seconds);
                    let current = shard_state_label(&shard.state);
                    for state in SHARD_STATES {
                        self.shard_state
                            .get_or_create(&ShardStateLabels {
                                consumer: consumer.consumer.clone(),
                                shard: shard.shard.clone(),
                                state: state.to_string(),
                            })
                            .set(i64::from(state == current));
                    }
                }
            }
        }
        use prometheus_client::encoding::text;
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry)?;
        text::encode_registry(&mut out, &self.process)?;
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The standard process metrics, read from `/proc/self` at scrape time (Linux; absent
/// elsewhere or when `/proc` cannot be read).
#[derive(Debug)]
struct ProcessCollector;

/// Resident memory in bytes from the text of `/proc/self/status` (`VmRSS: N kB`).
fn resident_bytes(status: &str) -> Option<f64> {
    tsunagu_process::status_kib_of(status, "VmRSS:").map(|kib| kib * 1024.0)
}

/// The soft limit on open files from the text of `/proc/self/limits`.
fn max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        if let Some(cpu) = read("/proc/self/stat")
            .as_deref()
            .and_then(tsunagu_process::cpu_seconds_of)
        {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let mut gauge = |name: &str, help: &str, value: Option<f64>| {
            let Some(value) = value else {
                return Ok(());
            };
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            read("/proc/self/status")
                .as_deref()
                .and_then(resident_bytes),
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as f64),
        )?;
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors",
            read("/proc/self/limits").as_deref().and_then(max_fds),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_files_are_parsed() {
        let stat = "4242 (tsunagu (serve)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 8 0 100 2000000 3000 18446744073709551615";
        assert_eq!(tsunagu_process::cpu_seconds_of(stat), Some(3.0));
        assert_eq!(
            resident_bytes("Name:\ttsunagu\nVmRSS:\t   2048 kB\n"),
            Some(2048.0 * 1024.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_fds(limits), Some(1024.0));
    }

    #[test]
    fn shard_states_are_bounded_labels() {
        assert_eq!(shard_state_label("running on worker-7"), "running");
        assert_eq!(shard_state_label("behind_retention"), "behind_retention");
        assert_eq!(shard_state_label("something new"), "unowned");
    }

    #[test]
    fn the_exposition_has_the_operators_signals() {
        let metrics = Metrics::new();
        metrics.register_consumer("search");
        metrics.records_applied("search", 3);
        let report = PipelineReport {
            consumers: vec![crate::state::ConsumerReport {
                consumer: "search".into(),
                sink: "index".into(),
                dead_letters: 0,
                shards: vec![crate::state::ShardReport {
                    shard: "0".into(),
                    state: "running on worker-1".into(),
                    backlog: Some(2),
                    checkpoint: None,
                    applied: 3,
                    oldest_unapplied_age_seconds: 12.5,
                }],
            }],
            lag: Default::default(),
            dead_letters_total: 0,
        };
        let text = metrics.render(Some(&report)).unwrap();
        for needle in [
            "tsunagu_records_applied_total{consumer=\"search\"} 3",
            "tsunagu_shard_oldest_unapplied_age_seconds{consumer=\"search\",shard=\"0\"} 12.5",
            "tsunagu_shard_state{consumer=\"search\",shard=\"0\",state=\"running\"} 1",
            "tsunagu_shard_state{consumer=\"search\",shard=\"0\",state=\"stopped\"} 0",
            "tsunagu_build_info{version=\"",
            "# TYPE tsunagu_records_applied counter",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        if cfg!(target_os = "linux") {
            for needle in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
            ] {
                assert!(text.contains(needle), "missing {needle} in\n{text}");
            }
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

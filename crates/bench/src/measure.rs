//! Bookkeeping of a lag run: what the writer committed (and when it was scheduled), what
//! became searchable (and when), joined at the end into HDR histograms, a lag-over-time
//! series, and the loss and order checks.

use crate::lag::{new_histogram, LagSummary};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tsunagu_domain::{ChangeRecord, ItemKey};
use tsunagu_engine::ports::ApplyObserver;

/// Identifies one committed change: the item (by its stable hash) and the version the
/// change gave it. Versions are per item in general (DynamoDB), so both are needed.
pub type WriteId = (u64, u64);

/// The id of the change that gave `key` the version `version`.
pub fn write_id(key: &ItemKey, version: u64) -> WriteId {
    (key.stable_hash(), version)
}

/// One write the primary committed with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSample {
    pub id: WriteId,
    /// When the write was due, microseconds since the epoch.
    pub scheduled_us: i64,
    /// When the primary committed it.
    pub committed_us: i64,
}

/// Watches what the pipeline applies: when each version became searchable, and whether
/// any item's changes arrived out of commit order.
#[derive(Default)]
pub struct VisibilityTracker {
    visible_us: Mutex<HashMap<WriteId, i64>>,
    last_version: Mutex<HashMap<ItemKey, u64>>,
    pub applied: AtomicU64,
    pub order_violations: AtomicU64,
    pub duplicates: AtomicU64,
}

impl VisibilityTracker {
    pub fn visible_at(&self) -> HashMap<WriteId, i64> {
        self.visible_us
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Bytes its records hold (table capacities and key strings): the benchmark's own
    /// memory, reported apart from the pipeline's.
    pub fn bytes(&self) -> usize {
        let visible = self.visible_us.lock().map_or(0, |v| {
            v.capacity() * (std::mem::size_of::<(WriteId, i64)>() + 1)
        });
        let last = self.last_version.lock().map_or(0, |l| {
            l.capacity() * (std::mem::size_of::<(ItemKey, u64)>() + 1)
                + l.keys()
                    .map(|k| k.partition.capacity() + k.sort.capacity())
                    .sum::<usize>()
        });
        visible + last
    }

    pub fn has_seen(&self, id: WriteId) -> bool {
        self.visible_us
            .lock()
            .map(|v| v.contains_key(&id))
            .unwrap_or(false)
    }
}

impl ApplyObserver for VisibilityTracker {
    fn applied(&self, _consumer: &str, records: &[ChangeRecord], visible_at: SystemTime) {
        let visible_us = visible_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        if let Ok(mut last) = self.last_version.lock() {
            for r in records {
                match last.get(&r.key) {
                    Some(&v) if v > r.version.0 => {
                        self.order_violations.fetch_add(1, Relaxed);
                    }
                    Some(&v) if v == r.version.0 => {
                        self.duplicates.fetch_add(1, Relaxed);
                    }
                    _ => {
                        last.insert(r.key.clone(), r.version.0);
                    }
                }
            }
        }
        if let Ok(mut visible) = self.visible_us.lock() {
            for r in records {
                visible
                    .entry(write_id(&r.key, r.version.0))
                    .or_insert(visible_us);
            }
        }
        self.applied.fetch_add(records.len() as u64, Relaxed);
    }
}

/// Latency figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Commit in the primary → searchable.
    pub lag_ms: LagSummary,
    /// Scheduled time → searchable.
    pub e2e_ms: LagSummary,
    /// Measured writes (after the warm-up).
    pub measured: u64,
    /// Committed writes never seen searchable.
    pub lost: u64,
    /// Lag over time, per bucket of scheduled time.
    pub series: Vec<SeriesPoint>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SeriesPoint {
    /// Seconds since the start of the run (bucket start).
    pub t_s: f64,
    pub count: u64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
}

/// Joins writes with their visibility. Writes scheduled before `measure_from_us` (the
/// warm-up) count for loss but not for the histograms. The series uses buckets of
/// `bucket_ms` from `start_us`.
pub fn summarize(
    writes: &[WriteSample],
    visible: &HashMap<WriteId, i64>,
    start_us: i64,
    measure_from_us: i64,
    bucket_ms: u64,
) -> Latencies {
    let mut lag = new_histogram();
    let mut e2e = new_histogram();
    let mut lost = 0;
    let bucket_us = (bucket_ms.max(1) * 1000) as i64;
    let mut buckets: Vec<Histogram<u64>> = Vec::new();
    for w in writes {
        let Some(&seen) = visible.get(&w.id) else {
            lost += 1;
            continue;
        };
        let lag_us = (seen - w.committed_us).max(1) as u64;
        if w.scheduled_us >= measure_from_us {
            lag.saturating_record(lag_us);
            e2e.saturating_record((seen - w.scheduled_us).max(1) as u64);
        }
        let b = ((w.scheduled_us - start_us).max(0) / bucket_us) as usize;
        if buckets.len() <= b {
            buckets.resize_with(b + 1, new_histogram);
        }
        buckets[b].saturating_record(lag_us);
    }
    let series = buckets
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(i, h)| SeriesPoint {
            t_s: (i as u64 * bucket_ms) as f64 / 1000.0,
            count: h.len(),
            lag_p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            lag_p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            lag_max_ms: h.max() as f64 / 1000.0,
        })
        .collect();
    Latencies {
        measured: lag.len(),
        lag_ms: LagSummary::of(&lag),
        e2e_ms: LagSummary::of(&e2e),
        lost,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagu_domain::{ChangeKind, Position, ShardId, Version};

    fn w(version: u64, scheduled_us: i64, committed_us: i64) -> WriteSample {
        WriteSample {
            id: (0, version),
            scheduled_us,
            committed_us,
        }
    }

    #[test]
    fn latencies_are_measured_from_commit_and_from_schedule() {
        let writes = [w(1, 1_000_000, 1_001_000), w(2, 1_010_000, 1_030_000)];
        let visible = HashMap::from([((0, 1), 1_006_000), ((0, 2), 1_040_000)]);
        let l = summarize(&writes, &visible, 1_000_000, 0, 1000);
        assert_eq!(l.measured, 2);
        assert_eq!(l.lost, 0);
        // Lags: 5 ms and 10 ms; end to end: 6 ms and 30 ms.
        assert!((l.lag_ms.max - 10.0).abs() < 0.05, "{:?}", l.lag_ms);
        assert!((l.lag_ms.p50 - 5.0).abs() < 0.05, "{:?}", l.lag_ms);
        assert!((l.e2e_ms.max - 30.0).abs() < 0.05, "{:?}", l.e2e_ms);
    }

    #[test]
    fn warm_up_is_left_out_of_the_histograms_but_not_out_of_the_loss_check() {
        let writes = [
            w(1, 100, 200),
            w(2, 5_000_000, 5_000_100),
            w(3, 6_000_000, 6_000_100),
        ];
        let visible = HashMap::from([((0, 1), 900_000), ((0, 2), 5_000_600)]);
        let l = summarize(&writes, &visible, 0, 1_000_000, 1000);
        assert_eq!(l.measured, 1, "write 1 is warm-up, write 3 was lost");
        assert_eq!(l.lost, 1);
        assert!(l.lag_ms.max < 1.0);
        assert_eq!(l.series.len(), 2, "buckets at 0 s and 5 s");
        assert_eq!(l.series[1].t_s, 5.0);
    }

    fn record(key: &str, version: u64) -> ChangeRecord {
        ChangeRecord {
            shard: ShardId("0".into()),
            position: Position(version.to_string()),
            key: ItemKey::new(key, "s"),
            kind: ChangeKind::Modify,
            version: Version(version),
            old_image: None,
            new_image: None,
            committed_at_us: 0,
        }
    }

    #[test]
    fn the_tracker_counts_out_of_order_and_duplicate_deliveries() {
        let t = VisibilityTracker::default();
        let now = SystemTime::now();
        t.applied("c", &[record("a", 1), record("b", 2), record("a", 3)], now);
        t.applied("c", &[record("a", 2)], now);
        t.applied("c", &[record("b", 2)], now);
        assert_eq!(t.order_violations.load(Relaxed), 1);
        assert_eq!(t.duplicates.load(Relaxed), 1);
        assert_eq!(t.applied.load(Relaxed), 5);
        let a = ItemKey::new("a", "s");
        assert!(t.has_seen(write_id(&a, 3)) && !t.has_seen(write_id(&a, 4)));
    }
}

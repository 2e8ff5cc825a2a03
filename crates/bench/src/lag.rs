//! Lag measured the honest way: from the primary's commit timestamp of a change to the
//! moment the sink acknowledged it as searchable, recorded in an HDR histogram.

use hdrhistogram::Histogram;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tsunagu_domain::ChangeRecord;
use tsunagu_engine::ports::ApplyObserver;

/// Records commit → visible lag of every applied record (microseconds, 3 significant
/// digits, up to one hour).
pub struct LagRecorder {
    histogram: Mutex<Histogram<u64>>,
}

/// A histogram's percentiles in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LagSummary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LagSummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

impl std::fmt::Display for LagSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.1}ms p90={:.1}ms p99={:.1}ms p99.9={:.1}ms max={:.1}ms",
            self.count, self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; failure here is a programming error.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Default for LagRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LagRecorder {
    pub fn new() -> Self {
        Self {
            histogram: Mutex::new(new_histogram()),
        }
    }

    /// The figures so far, and a fresh start.
    pub fn take(&self) -> LagSummary {
        match self.histogram.lock() {
            Ok(mut h) => {
                let summary = LagSummary::of(&h);
                h.reset();
                summary
            }
            Err(_) => LagSummary::of(&new_histogram()),
        }
    }
}

impl ApplyObserver for LagRecorder {
    fn applied(&self, _consumer: &str, records: &[ChangeRecord], visible_at: SystemTime) {
        let visible_us = visible_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        if let Ok(mut h) = self.histogram.lock() {
            for record in records {
                h.saturating_record((visible_us - record.committed_at_us).max(1) as u64);
            }
        }
    }
}

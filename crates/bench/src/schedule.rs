//! Open-loop pacing: write `i` is due at `start + i / rate`, fixed before the run, never
//! moved by how fast the pipeline or the store answers (no coordinated omission).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    /// Nanoseconds between two writes.
    interval_ns: f64,
    total: u64,
}

impl Schedule {
    /// `rate` writes per second for `duration`, starting at `start`.
    pub fn new(start: Instant, rate: f64, duration: Duration) -> Self {
        let rate = rate.max(1e-9);
        Self {
            start,
            interval_ns: 1e9 / rate,
            total: (rate * duration.as_secs_f64()).round() as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// When write `i` is due.
    pub fn due_at(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }

    /// Offset of write `i` from the start.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }

    /// How many writes are due at `now` (all of `0..n` have their time ≤ `now`).
    pub fn due_by(&self, now: Instant) -> u64 {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return 0;
        };
        let n = (elapsed.as_nanos() as f64 / self.interval_ns).floor() as u64 + 1;
        n.min(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_are_due_at_fixed_times() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0, Duration::from_secs(2));
        assert_eq!(s.total(), 2000);
        assert_eq!(s.due_by(start), 1);
        assert_eq!(s.due_by(start + Duration::from_micros(9_999)), 10);
        assert_eq!(s.due_by(start + Duration::from_millis(10)), 11);
        assert_eq!(
            s.due_by(start + Duration::from_secs(60)),
            2000,
            "capped at the total"
        );
        assert_eq!(s.due_at(500), start + Duration::from_millis(500));
    }

    #[test]
    fn a_late_writer_finds_every_missed_write_due_at_once() {
        // The schedule does not wait for the writer: after a 1 s stall, 1 s of writes is due.
        let start = Instant::now();
        let s = Schedule::new(start, 200.0, Duration::from_secs(10));
        assert_eq!(s.due_by(start + Duration::from_secs(1)), 201);
    }

    proptest! {
        #[test]
        fn due_counts_never_decrease_and_match_due_times(rate in 1.0f64..50_000.0, t1 in 0u64..5_000_000, dt in 0u64..5_000_000) {
            let start = Instant::now();
            let s = Schedule::new(start, rate, Duration::from_secs(3));
            let a = s.due_by(start + Duration::from_micros(t1));
            let b = s.due_by(start + Duration::from_micros(t1 + dt));
            prop_assert!(a <= b);
            if a > 0 && a < s.total() {
                // The last due write is due by then, the next one is not.
                prop_assert!(s.due_at(a - 1) <= start + Duration::from_micros(t1) + Duration::from_micros(1));
                prop_assert!(s.due_at(a) + Duration::from_micros(1) > start + Duration::from_micros(t1));
            }
        }
    }
}

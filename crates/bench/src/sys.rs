//! CPU time and memory of this process (read by `tsunagu_process` from Linux's `/proc`;
//! zero elsewhere), and the pipeline's own memory apart from the benchmark's.

/// User + system CPU time of the process so far, in seconds.
pub fn cpu_seconds() -> f64 {
    tsunagu_process::cpu_seconds().unwrap_or(0.0)
}

/// Peak resident memory (VmHWM) in MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:").map_or(0.0, |kib| kib / 1024.0)
}

/// Resident memory now (VmRSS) in MiB.
pub fn current_rss_mib() -> f64 {
    status_kib("VmRSS:").map_or(0.0, |kib| kib / 1024.0)
}

/// Anonymous resident memory now (RssAnon: the heap and stacks, not mapped files such as
/// the store's memory-mapped database or the index's segments) in MiB.
pub fn current_anon_mib() -> f64 {
    status_kib("RssAnon:").map_or(0.0, |kib| kib / 1024.0)
}

/// Samples the resident memory every 20 ms until `stop` is set; the highest resident set
/// and the highest anonymous part, in MiB.
pub fn sample_rss(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(f64, f64)> {
    tokio::spawn(async move {
        let mut peak = (current_rss_mib(), current_anon_mib());
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            peak.0 = peak.0.max(current_rss_mib());
            peak.1 = peak.1.max(current_anon_mib());
        }
        peak
    })
}

/// The pipeline's memory, apart from the benchmark's, from the process's anonymous
/// resident memory (heap): its value before the pipeline was opened (the binary's and
/// runtime's own), its highest while the pipeline ran, and the benchmark's own data then
/// (its record of every write and of every applied version). The pipeline's own peak is
/// the highest value minus the other two. Mapped files (the store's database, the index's
/// segments: page cache the kernel can reclaim) are in the resident set, reported beside.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineMemory {
    pub baseline_anon_mib: f64,
    pub run_peak_anon_mib: f64,
    pub bookkeeping_mib: f64,
    pub pipeline_own_peak_mib: f64,
    /// The highest resident set while the pipeline ran, mapped files included.
    pub run_peak_rss_mib: f64,
}

impl PipelineMemory {
    pub fn new(
        baseline_anon_mib: f64,
        (run_peak_rss_mib, run_peak_anon_mib): (f64, f64),
        bookkeeping_mib: f64,
    ) -> Self {
        Self {
            baseline_anon_mib,
            run_peak_anon_mib,
            bookkeeping_mib,
            pipeline_own_peak_mib: run_peak_anon_mib - baseline_anon_mib - bookkeeping_mib,
            run_peak_rss_mib,
        }
    }
}

impl std::fmt::Display for PipelineMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pipeline's own peak {:.0} MiB (heap peak {:.0} MiB − {:.0} MiB before it opened − {:.0} MiB of benchmark data); resident set peak {:.0} MiB with mapped files",
            self.pipeline_own_peak_mib,
            self.run_peak_anon_mib,
            self.baseline_anon_mib,
            self.bookkeeping_mib,
            self.run_peak_rss_mib
        )
    }
}

/// A field of `/proc/self/status` given in kB (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(field: &str) -> Option<f64> {
    tsunagu_process::status_kib(field)
}

#[cfg(test)]
mod tests {
    #[test]
    fn figures_are_read_on_linux() {
        if cfg!(target_os = "linux") {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = x.wrapping_add(i * i);
            }
            assert!(x > 0);
            assert!(super::cpu_seconds() > 0.0);
            assert!(super::peak_rss_mib() > 1.0);
        }
    }
}

//! This process's CPU time and memory, from Linux's `/proc/self` (`None` elsewhere, or
//! when `/proc` cannot be read). The parsers take the files' text, so they are tested on
//! any system; the readers read the files.

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux
/// architecture (the value Prometheus's own process collector assumes too).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system, all threads) from the text of `/proc/self/stat`.
pub fn cpu_seconds_of(stat: &str) -> Option<f64> {
    // The command name is in parentheses and may hold spaces: fields count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU seconds (user + system, all threads) this process has used so far.
pub fn cpu_seconds() -> Option<f64> {
    cpu_seconds_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// A field of the text of `/proc/self/status` given in kB (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib_of(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A field of this process's `/proc/self/status` given in kB, in KiB.
pub fn status_kib(field: &str) -> Option<f64> {
    status_kib_of(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_files_are_parsed() {
        let stat = "4242 (tsunagu (serve)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 8 0 100 2000000 3000 18446744073709551615";
        assert_eq!(cpu_seconds_of(stat), Some(3.0));
        assert_eq!(cpu_seconds_of("no name"), None);
        let status = "Name:\ttsunagu\nVmHWM:\t   4096 kB\nVmRSS:\t   2048 kB\n";
        assert_eq!(status_kib_of(status, "VmRSS:"), Some(2048.0));
        assert_eq!(status_kib_of(status, "VmHWM:"), Some(4096.0));
        assert_eq!(status_kib_of(status, "RssAnon:"), None);
    }

    #[test]
    fn this_process_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(cpu_seconds().is_some());
            assert!(status_kib("VmRSS:").is_some_and(|kib| kib > 0.0));
        }
    }
}

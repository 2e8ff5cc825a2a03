//! `tsunagu`: one binary, several jobs. This file only parses the command line, sets up
//! logging and the async runtime, and hands over to the library's commands; errors are
//! printed with their whole chain, each cause once.

use clap::Parser;
use std::process::ExitCode;
use tsunagu::{cli, commands};

/// mimalloc instead of the system allocator: the migration's export and the replication
/// path allocate many short-lived strings, and glibc's malloc spent a quarter of the
/// export's CPU time on them (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The long-running commands: how soon freed memory goes back, and no huge pages.
    let purge_delay = if matches!(cli.command, cli::Command::Migrate { .. }) {
        Some(RETURN_IDLE_MEMORY_AFTER_MS)
    } else if cli.command.runs_pipeline() {
        Some(RETURN_FREED_MEMORY_AFTER_MS)
    } else {
        None
    };
    if let Some(delay_ms) = purge_delay {
        set_allocator_option(MI_OPTION_PURGE_DELAY, delay_ms);
        disable_transparent_huge_pages();
    }
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        // `tsunagu status | head -1`: the reader has all it wanted.
        Err(error) if tsunagu::output::closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", tsunagu::output::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// An option of mimalloc (see `mimalloc.h`; the binding names no constants for them), and
/// the environment variable that overrides it.
struct AllocatorOption {
    id: libmimalloc_sys::mi_option_t,
    env: &'static str,
}

/// `purge_delay`: how long freed memory is held before it goes back to the OS (ms).
const MI_OPTION_PURGE_DELAY: AllocatorOption = AllocatorOption {
    id: 15,
    env: "MIMALLOC_PURGE_DELAY",
};

/// `allow_thp`: whether mimalloc asks for transparent huge pages.
const MI_OPTION_ALLOW_THP: AllocatorOption = AllocatorOption {
    id: 43,
    env: "MIMALLOC_ALLOW_THP",
};

/// A migration frees and reallocates its row buffers block after block. Keeping
/// everything it frees (no purge at all) spared the page faults of the next block
/// (12,000 → 1,400 at 1M rows) but cost memory: each table's threads held on to the
/// pages of their finished blocks, and the peak grew with the run (31 tables: ~400, ~500
/// and 531 MiB at 2M, 10M and 50M rows). Pages idle for a second go back: a block's
/// buffers are reused well within that, and at 10M rows the peak fell from 450 to 301
/// MiB with no loss of speed (docs/benchmarks.md, 2026-12-07). A second is also the
/// default of the mimalloc built here (v3); it is set explicitly so that the choice does
/// not move with the allocator's version.
const RETURN_IDLE_MEMORY_AFTER_MS: std::ffi::c_long = 1_000;

/// The replication pipeline frees each batch's records, documents and segment buffers as
/// soon as they are applied, and the next commit allocates as much again. Two things
/// bound how long freed pages are kept:
/// - memory at a high rate: under a sustained 10,000 writes/s, what mimalloc held back
///   for a second (its default) was as large as what is live (heap peak 379–418 MiB
///   against 194 MiB returned at once);
/// - CPU and lag at a low rate: returned at once, every one-record commit gave its pages
///   back and the next faulted them in again. At 200 writes/s with batch 1 that was
///   ~7,700 `madvise` calls a second, each followed by page faults and zeroing.
///
/// 20 ms is longer than the time between two small commits, so they reuse each other's
/// pages, and short enough that a high rate holds back little: at 200 writes/s, batch 1,
/// CPU 97–101 → 85–94 % of a core and lag p99 20.4–24.0 → 14.8–18.4 ms; at 20,000 asked,
/// the pipeline's own peak 223–249 MiB against 235–261 MiB (docs/benchmarks.md,
/// 2026-12-07).
const RETURN_FREED_MEMORY_AFTER_MS: std::ffi::c_long = 20;

/// Transparent huge pages cost both kinds of long-running command:
/// - the pipeline returns freed memory soon, so each index commit's fresh buffers
///   landed in newly faulted huge pages: the kernel zeroed 2 MiB for a few KiB used, on
///   the path of a one-document commit to searchable. Without them, lag p99 at 20 and 63
///   writes/s with batch 1 dropped by a quarter to a half (to 7–10 ms) and the pipeline's
///   own memory by a quarter to two thirds, for 5–11 % of `bench limits`' peak pipeline
///   rate;
/// - a migration's growing row and key buffers were faulted in 2 MiB at a time: the
///   kernel zeroing them took a tenth of its CPU, and its peak resident set was 15–25 %
///   higher (31 tables, 2M rows: system time 1.6–1.8 s against 0.9 s, peak RSS 451–533
///   MiB against 382–421 MiB).
///
/// Figures in docs/benchmarks.md (2026-12-07). mimalloc is told not to ask for them, and
/// the process opts out for the memory mapped before `main` too (what
/// `MIMALLOC_ALLOW_THP=0` does when mimalloc starts); `MIMALLOC_ALLOW_THP` in the
/// environment decides instead.
fn disable_transparent_huge_pages() {
    if !set_allocator_option(MI_OPTION_ALLOW_THP, 0) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes no memory of ours.
        let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if result != 0 {
            // Not fatal: the command works with huge pages, only slower and larger.
            eprintln!(
                "warning: could not opt out of transparent huge pages: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Sets one of mimalloc's options, unless its variable in the environment already decides;
/// whether it did.
fn set_allocator_option(option: AllocatorOption, value: std::ffi::c_long) -> bool {
    if std::env::var_os(option.env).is_some() {
        return false;
    }
    // SAFETY: called first thing in `main`, before any other thread exists (the option
    // setter is not thread safe).
    unsafe { libmimalloc_sys::mi_option_set(option.id, value) };
    true
}

/// Logs go to stderr, as text or JSON lines (`--log-format` / `TSUNAGU_LOG_FORMAT`),
/// around a progress bar rather than through it. `RUST_LOG` overrides the level; the
/// default is `info` for long-running commands and `warn` for the others, so that their
/// output stays readable. Colours only on a terminal, and never with `NO_COLOR` set
/// (no-color.org).
fn init_tracing(cli: &cli::Cli) {
    use tracing_subscriber::EnvFilter;
    let default = if cli.command.is_long_running() {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .with_writer(|| tsunagu::progress::LogWriter);
    match cli.log_format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
}

//! The `tsunagu` binary's library: the command line and printing, over
//! `tsunagu-runtime` (which assembles everything from the config) and `tsunagu-bench`
//! (the load tests).
//!
//! - [`cli`]: subcommands and flags.
//! - [`commands`]: one module per subcommand.
//! - `output` (from `tsunagu_runtime::output`, shared with the load tests): standard
//!   output that reports a closed pipe instead of panicking.
//! - [`progress`]: log lines written around a progress bar instead of through it.

// Every line goes through `outln!`, which survives `| head` (see `output`).
#![deny(clippy::print_stdout)]

pub mod cli;
pub mod commands;
pub use tsunagu_runtime::output;
pub use tsunagu_runtime::{out, outln};
pub mod progress;

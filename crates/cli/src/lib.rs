//! The `tsunagu` binary's library: the command line and printing, over
//! `tsunagu-runtime` (which assembles everything from the config) and `tsunagu-bench`
//! (the load tests).
//!
//! - [`cli`]: subcommands and flags.
//! - [`commands`]: one module per subcommand.

pub mod cli;
pub mod commands;

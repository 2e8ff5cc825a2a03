//! The `tsunagu` binary's library: everything between the command line and the crates
//! that do the work.
//!
//! - [`cli`]: subcommands and flags.
//! - [`bench`]: the load-test commands.
//! - [`commands`]: one module per subcommand.
//! - [`lag`]: commit → searchable lag recording.
//! - [`sample`]: a realistic generator of sales activity.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod lag;
pub mod sample;

//! The `tsunagu` binary's library: everything between the command line and the crates
//! that do the work.
//!
//! - [`cli`]: subcommands and flags.
//! - [`config`]: the versioned TOML config and its validation.
//! - [`bench`]: the load-test commands.
//! - [`app`]: wiring of the embedded adapters, and the one engine start every command uses.
//! - [`runtime`]: the adapters a config names (embedded, AWS, OpenSearch) behind the ports.
//! - [`commands`]: one module per subcommand.
//! - [`check`]: compares an index with the primary.
//! - [`lag`]: commit → searchable lag recording.
//! - [`serve`]: `tsunagu serve`, the application (store, pipeline, HTTP API) in one
//!   process, and the embedded adapters behind the API's ports.
//! - [`sample`]: a realistic generator of sales activity.

pub mod app;
pub mod bench;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod lag;
pub mod reconcile;
pub mod runtime;
pub mod sample;
pub mod serve;

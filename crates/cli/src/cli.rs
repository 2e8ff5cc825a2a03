//! The command line: subcommands and their flags (clap). Values are checked here, before
//! anything is opened.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tsunagu",
    version,
    about = "Replicate the activity log from its primary store into a search index, in order and without loss."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Config file (TOML). Without one, the embedded defaults are used.
    #[arg(long, global = true, env = "TSUNAGU_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (store, replication state, indexes); overrides the config's data_dir.
    #[arg(long, global = true, env = "TSUNAGU_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TSUNAGU_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the embedded pipeline, write a realistic sample, search it and report the
    /// write-to-searchable lag. Exits on its own.
    Demo(DemoArgs),
    /// Run the replication pipeline until stopped (Ctrl-C or SIGTERM drain it gracefully).
    Replicate,
    /// Validate the config, then check that every adapter it names (store, stream, sinks,
    /// leases) is reachable and set up as expected, changing nothing. Exits non-zero when
    /// a check fails.
    Check(CheckArgs),
    /// Search the activity index (several filters combine with AND).
    Search(Box<SearchArgs>),
    /// Inspect and redrive the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Per consumer and shard: checkpoint, newest record, backlog, dead letters.
    Status(StatusArgs),
    /// Load tests: lag at a rate, the original scenarios, the machine's limits.
    Bench {
        #[command(subcommand)]
        command: tsunagu_bench::BenchCommand,
    },
    /// Bootstrap a consumer from the items already in the primary, then hand over to the
    /// change stream with no gap (creates the consumer if it does not exist).
    Backfill(BackfillArgs),
    /// Compare the primary with a consumer's index, report missing, extra and stale
    /// documents, and optionally repair them through the sink.
    Reconcile(ReconcileArgs),
    /// Serve the application's HTTP API (and its web page), with the replication pipeline
    /// running in the same process. Ctrl-C or SIGTERM stop it gracefully.
    Serve(ServeArgs),
    /// Manage tenants (accounts) and their API tokens.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Graph → relational migration: generate a fixture, plan from a spec, run into MySQL.
    Migrate {
        #[command(subcommand)]
        command: crate::commands::migrate::MigrateCommand,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address or host name and port to listen on, e.g. 127.0.0.1:8080 or localhost:8080
    /// (port 0 picks a free one); overrides `server.listen` of the config.
    #[arg(long, env = "TSUNAGU_LISTEN", value_parser = parse_listen)]
    pub listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its first bearer token (on the last line).
    Create {
        /// The tenant's name (unique; not shaped like a tenant id).
        name: String,
        /// The tenant's IANA time zone (Asia/Tokyo): the calendar of its API's `day`, `week`
        /// and `month` groupings and date-only `from`/`to` when a request names no `tz`
        /// (default UTC).
        #[arg(long, value_name = "ZONE")]
        time_zone: Option<String>,
    },
    /// Change a tenant's settings (by id or name).
    Set {
        /// The tenant's id (tn_...) or name.
        tenant: String,
        /// The tenant's IANA time zone (Asia/Tokyo; UTC to go back to the default).
        #[arg(long, value_name = "ZONE")]
        time_zone: String,
    },
    /// Show a tenant's synonyms (by id or name), or replace them all with `--set FILE`.
    ///
    /// A memo search for a term of a group finds memos with any term of the group (`MTG`
    /// also finds ミーティング and 打ち合わせ; `-MTG` excludes them all), from the next
    /// search on, without reindexing. The file has one group per line, its terms separated
    /// by `=` or `,` (full-width `＝` `，` too): `MTG = ミーティング = 打ち合わせ`. Blank
    /// lines and lines starting with `#` are skipped; an empty file removes the list. The
    /// listing is in the same format. Limits: 200 groups of 2 to 10 terms; a term is one
    /// search word (no space, quote, leading `-`, not `OR`) of at most 40 characters, in
    /// one group only (compared with width, case and kana folded).
    Synonyms {
        /// The tenant's id (tn_...) or name.
        tenant: String,
        /// Replace the whole list with this file's (`-` reads standard input).
        #[arg(long, value_name = "FILE")]
        set: Option<std::path::PathBuf>,
    },
    /// List tenants and how many live tokens each has.
    List,
    /// Issue another token to a tenant (by id or name); printed on the last line.
    Token {
        /// The tenant's id (tn_...) or name.
        tenant: String,
    },
    /// Revoke every token of a tenant (by id or name).
    Revoke {
        /// The tenant's id (tn_...) or name.
        tenant: String,
    },
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The consumer to backfill; created (with its own index) if it does not exist.
    #[arg(long)]
    pub consumer: String,
    /// Most items written per second, so live writes are not starved (default: no limit).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_rate)]
    pub rate: Option<u64>,
    /// Items per sink call.
    #[arg(long, default_value_t = 1_000, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// Shards scanned at the same time.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallelism: u32,
    /// No progress bar (logs only).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The consumer whose sink is compared with the primary.
    #[arg(long)]
    pub consumer: String,
    /// Re-send the primary's current version of every differing item through the sink.
    #[arg(long)]
    pub repair: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Run again every this long (e.g. 5m; at least 100ms), logging drift found and
    /// repaired, until stopped.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_every)]
    pub every: Option<std::time::Duration>,
}

impl Command {
    /// Commands that run the replication pipeline (and so allocate and free a batch's
    /// worth of memory over and over).
    pub fn runs_pipeline(&self) -> bool {
        self.is_long_running()
            || matches!(self, Command::Demo(_))
            || matches!(
                self,
                Command::Bench {
                    command: tsunagu_bench::BenchCommand::Lag(_)
                        | tsunagu_bench::BenchCommand::Limits(_)
                        | tsunagu_bench::BenchCommand::Sweep(_),
                    ..
                }
            )
    }

    pub fn is_long_running(&self) -> bool {
        matches!(
            self,
            Command::Replicate | Command::Backfill(_) | Command::Serve(_)
        ) || matches!(self, Command::Reconcile(args) if args.every.is_some())
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Deals (営業案件) in the sample.
    #[arg(long, default_value_t = 300, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub deals: u32,
    /// Activities written in bulk before the searches.
    #[arg(long, default_value_t = 5_000, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub activities: u32,
    /// Activities written one by one at a steady rate, to measure lag.
    #[arg(long, default_value_t = 400, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub paced_writes: u32,
    /// Rate of the paced writes, per second.
    #[arg(long, default_value_t = 200, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub paced_rate: u32,
    /// Seed of the sample generator.
    #[arg(long, default_value_t = 7, allow_negative_numbers = true)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Sink (index) to search.
    #[arg(long, default_value = "activities")]
    pub index: String,
    /// Tenant id; without it, every tenant's activities are searched.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Deal id; repeat for any of several.
    #[arg(long = "deal")]
    pub deals: Vec<String>,
    /// Company id; repeat for any of several.
    #[arg(long = "company")]
    pub companies: Vec<String>,
    /// User id (who acted); repeat for any of several.
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// call, email, visit, online_meeting, letter or other; repeat for any of several.
    #[arg(long = "action", value_parser = parse_action)]
    pub actions: Vec<tsunagu_domain::ActionType>,
    /// Result (e.g. proposal_sent); repeat for any of several.
    #[arg(long = "result")]
    pub results: Vec<String>,
    /// Tag; repeat to require every one.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Occurred at or after (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Occurred before (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Memo search, as the API's `q`: words that must all occur (Japanese works without
    /// spaces), `-word` to exclude, `A OR B`, `"a phrase"`. A leading `-` is part of the
    /// query (`--text -見積`).
    #[arg(long, allow_hyphen_values = true)]
    pub text: Option<String>,
    /// Hits per page (0: only the count).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub limit: u32,
    /// Resume after a previous page (its next_cursor).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Count matches by action, user, deal, company, result, tag or day instead of listing them.
    #[arg(long)]
    pub group_by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// Only this consumer's dead letters.
        #[arg(long)]
        consumer: Option<String>,
        /// Most dead letters listed.
        #[arg(long, default_value_t = 50, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its whole record.
    Show {
        /// The dead letter's id (see `dlq list`).
        id: u64,
    },
    /// Apply dead letters to their consumer's sink again and remove those that succeed.
    /// Stop the process writing the index (`replicate` or `serve`) first: an embedded
    /// index accepts one writer at a time.
    Redrive {
        /// The consumer whose dead letters are applied again.
        #[arg(long, default_value = "search")]
        consumer: String,
        /// Only these ids (default: all of the consumer's).
        #[arg(long = "id")]
        ids: Vec<u64>,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_action(s: &str) -> Result<tsunagu_domain::ActionType, String> {
    tsunagu_domain::ActionType::parse(s)
}

/// `backfill --rate`: a positive number of items per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(rate) if rate > 0 => Ok(rate),
        _ => Err(format!(
            "{s:?} is not a rate: items per second, at least 1 (leave --rate out for no limit)"
        )),
    }
}

/// `--every`: a duration (humantime: 5m, 30s, 1h) of at least 100 ms.
fn parse_every(s: &str) -> Result<std::time::Duration, String> {
    let every = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration (5m, 30s, 1h): {e}"))?;
    if every < std::time::Duration::from_millis(100) {
        return Err(format!("{s:?} is too short: at least 100ms"));
    }
    Ok(every)
}

/// `HOST:PORT` (a host name, an IPv4 address or a bracketed IPv6 address), checked
/// before anything is opened; the host is resolved when the server binds.
pub fn parse_listen(s: &str) -> Result<String, String> {
    let bad =
        || format!("{s:?} is not HOST:PORT (e.g. 127.0.0.1:8080, localhost:8080, [::1]:8080)");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// RFC 3339, or a bare date taken as midnight UTC: the domain's rule
/// ([`tsunagu_domain::search::parse_time`]), which the API applies too.
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    tsunagu_domain::search::parse_time(s, tsunagu_domain::search::TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn times_accept_rfc3339_and_dates() {
        assert_eq!(
            parse_time("2026-04-01").unwrap().to_rfc3339(),
            "2026-04-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-04-01T09:00:00+09:00")
                .unwrap()
                .to_rfc3339(),
            "2026-04-01T00:00:00+00:00"
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}

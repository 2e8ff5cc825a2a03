//! `tsunagu search`: multi-axis queries and counts against a sink's index, on any
//! deployment. Reads only (an embedded index read-only), so it works while `tsunagu
//! replicate` or `serve` runs.

use crate::cli::SearchArgs;
use crate::outln;
use crate::output::OutputError;
use anyhow::Context;
use std::process::ExitCode;
use tsunagu_domain::search::{ActivityQuery, Bucket, Cursor, GroupBy, SearchPage};
use tsunagu_domain::synonyms::Synonyms;
use tsunagu_runtime::config::Config;
use tsunagu_service::tenants::{TenantError, TENANT_ID_PREFIX};

pub async fn run(config: &Config, args: SearchArgs) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if from >= to {
            anyhow::bail!(
                "--from ({}) must be before --to ({}): the range holds activities at or after --from and before --to",
                from.to_rfc3339(),
                to.to_rfc3339()
            );
        }
    }
    let group_by = args
        .group_by
        .as_deref()
        .map(GroupBy::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let cursor = args.cursor.as_deref().map(Cursor::parse).transpose()?;
    let synonyms = match (&args.tenant, &args.text) {
        (Some(tenant), Some(_)) => tenant_synonyms(config, tenant).await?,
        _ => Synonyms::default(),
    };
    let query = ActivityQuery {
        tenant_id: args.tenant,
        deal_ids: args.deals,
        company_ids: args.companies,
        user_ids: args.users,
        actions: args.actions,
        results: args.results,
        tags_all: args.tags,
        occurred_from: args.from,
        occurred_to: args.to,
        text: args.text,
        synonyms,
        limit: args.limit as usize,
        cursor,
        sort: Default::default(),
    };
    let index = tsunagu_runtime::open_search_reader(config, &args.index).await?;
    match group_by {
        Some(by) => {
            let buckets = index
                .aggregate_activities(&query, by)
                .await
                .context("aggregation failed")?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&buckets)?)?;
            } else {
                print_buckets(by, &buckets)?;
            }
        }
        None => {
            let page = index
                .search_activities(&query)
                .await
                .context("search failed")?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&page)?)?;
            } else {
                print_page(&page)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The synonyms of the tenant searched (`tenant synonyms`), as the API applies them; none
/// for a tenant id the registry does not know (an index may hold tenants registered
/// elsewhere, like the demo's). `--tenant` is an id: it is never looked up as a name,
/// which would give another tenant's synonyms.
async fn tenant_synonyms(config: &Config, tenant: &str) -> anyhow::Result<Synonyms> {
    if !tenant.starts_with(TENANT_ID_PREFIX) {
        return Ok(Synonyms::default());
    }
    let registry = tsunagu_runtime::tenants::open_tenant_directory_read_only(config).await?;
    match registry.synonyms(tenant).await {
        Ok(synonyms) => Ok(synonyms),
        Err(TenantError::NotFound(_)) => Ok(Synonyms::default()),
        Err(e) => Err(e).context("reading the tenant's synonyms"),
    }
}

/// One line per hit, newest first.
pub(crate) fn print_page(page: &SearchPage) -> Result<(), OutputError> {
    outln!("{} match(es)", page.total)?;
    for hit in &page.hits {
        let a = &hit.activity;
        let memo: String = a.memo.chars().take(48).collect();
        let ellipsis = if a.memo.chars().count() > 48 {
            "…"
        } else {
            ""
        };
        outln!(
            "  {}  {:<14} {:<10} {:<11} {:<13} [{}] {memo}{ellipsis}",
            a.occurred_at.format("%Y-%m-%d %H:%M"),
            a.action.as_str(),
            a.user_id,
            a.deal_id,
            a.result.as_deref().unwrap_or("-"),
            a.tags.join(", "),
        )?;
    }
    if let Some(cursor) = &page.next_cursor {
        outln!("  next page: --cursor {cursor}")?;
    }
    Ok(())
}

pub(crate) fn print_buckets(by: GroupBy, buckets: &[Bucket]) -> Result<(), OutputError> {
    outln!("count by {}:", by.as_str())?;
    for b in buckets {
        outln!("  {:<20} {:>8}", b.key, b.count)?;
    }
    Ok(())
}

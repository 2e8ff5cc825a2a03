//! `tsunagu demo`: the embedded pipeline end to end on a realistic sample. It writes
//! activities in bulk and then at a steady rate, waits until they are searchable, runs
//! multi-axis searches, reports the commit → searchable lag, and checks that the index
//! equals the primary.

use super::search::{print_buckets, print_page};
use super::wait_caught_up;
use crate::cli::DemoArgs;
use crate::outln;
use anyhow::Context;
use chrono::{Duration as Days, Utc};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_bench::lag::LagRecorder;
use tsunagu_bench::sample::{Sample, TENANTS};
use tsunagu_bench::verify::index_drift;
use tsunagu_domain::search::{ActivityQuery, GroupBy};
use tsunagu_domain::{ActionType, ActivityLog, Entity};
use tsunagu_engine::ports::{ApplyObserver, Condition, WriteOp};
use tsunagu_runtime::config::Config;
use tsunagu_runtime::Embedded;
use tsunagu_service::ports::SearchIndex;

/// A new directory under the system's temporary directory.
pub fn fresh_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "tsunagu-demo-{}-{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

pub async fn run(config: Config, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let embedded = Embedded::open(config)?;
    let config = Arc::clone(&embedded.config);
    let consumer = &config.consumers[0];
    outln!("tsunagu demo")?;
    outln!(
        "  data directory {}  ·  {} shards  ·  consumer {:?}: batch size {}, parallelization {}",
        config.data_dir.display(),
        config.store.shard_count,
        consumer.name,
        consumer.batch_size,
        consumer.parallelization_factor
    )?;
    let sinks = embedded.open_sinks()?;
    let lag = Arc::new(LagRecorder::new());
    let pipeline = embedded
        .start_pipeline(&sinks, vec![Arc::clone(&lag) as Arc<dyn ApplyObserver>])
        .await?;
    let index = sinks
        .get(&consumer.sink)
        .context("the first consumer's sink is not open")?;
    let search: &dyn SearchIndex = index.as_ref();
    let run_id = Utc::now().timestamp_millis();
    let mut sample = Sample::new(args.seed, args.deals, Utc::now());

    // 1. Bulk load, with some edits and deletes, as a migration or a busy morning would.
    let started = Instant::now();
    let mut written: Vec<ActivityLog> = Vec::with_capacity(args.activities as usize);
    for chunk_start in (0..args.activities).step_by(500) {
        let n = (args.activities - chunk_start).min(500);
        let activities: Vec<ActivityLog> = (0..n)
            .map(|_| with_run_id(sample.activity(), run_id))
            .collect();
        write_all(&embedded, &activities).await?;
        written.extend(activities);
    }
    let edits: Vec<ActivityLog> = written
        .iter()
        .step_by(20)
        .map(|a| sample.edit(a.clone()))
        .collect();
    write_all(&embedded, &edits).await?;
    let deletes: Vec<WriteOp> = written
        .iter()
        .skip(7)
        .step_by(100)
        .map(|a| WriteOp::Delete {
            key: a.key(),
            condition: Condition::Exists,
        })
        .collect();
    let deleted = deletes.len();
    for result in embedded.store.write_many(deletes).await? {
        result?;
    }
    let writes = written.len() + edits.len() + deleted;
    let write_secs = started.elapsed().as_secs_f64();
    wait_caught_up(&embedded, &pipeline, Duration::from_secs(120)).await?;
    let caught_up_secs = started.elapsed().as_secs_f64();
    outln!()?;
    outln!(
        "1. bulk: {} activities, {} edits, {} deletes written in {:.2} s ({:.0} writes/s); all replicated and durably checkpointed after {:.2} s",
        written.len(),
        edits.len(),
        deleted,
        write_secs,
        writes as f64 / write_secs.max(1e-9),
        caught_up_secs
    )?;
    outln!("   lag commit → searchable: {}", lag.take())?;

    // 2. Steady writes at a fixed rate, each scheduled on the clock (open loop).
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.paced_rate));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.paced_writes {
        tokio::time::sleep_until(start + interval * i).await;
        let activity = with_run_id(
            sample.activity_on(
                &sample.deals[i as usize % sample.deals.len()].clone(),
                Utc::now(),
            ),
            run_id,
        );
        let store = embedded.store.clone();
        tasks.spawn(async move {
            store
                .put(
                    activity.key(),
                    Entity::ActivityLog(activity).to_json(),
                    Condition::NotExists,
                )
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    wait_caught_up(&embedded, &pipeline, Duration::from_secs(60)).await?;
    outln!()?;
    outln!(
        "2. steady: {} single writes at {}/s",
        args.paced_writes,
        args.paced_rate
    )?;
    outln!("   lag commit → searchable: {}", lag.take())?;

    // 3. Searches on several axes at once.
    outln!()?;
    outln!("3. searches (tenant {})", TENANTS[0])?;
    let now = Utc::now();
    let tenant = Some(TENANTS[0].to_string());
    let searches: Vec<(&str, ActivityQuery)> = vec![
        (
            "visits or online meetings tagged 重点 in the last 30 days",
            ActivityQuery {
                tenant_id: tenant.clone(),
                actions: vec![ActionType::Visit, ActionType::OnlineMeeting],
                tags_all: vec!["重点".into()],
                occurred_from: Some(now - Days::days(30)),
                limit: 5,
                ..ActivityQuery::default()
            },
        ),
        (
            "memo mentions 「アポ獲得」 and the result was an appointment",
            ActivityQuery {
                tenant_id: tenant.clone(),
                text: Some("アポ獲得".into()),
                results: vec!["appointment".into()],
                limit: 5,
                ..ActivityQuery::default()
            },
        ),
        (
            "calls by sato or suzuki with no answer in the last 14 days, memo mentions 見積",
            ActivityQuery {
                tenant_id: tenant.clone(),
                actions: vec![ActionType::Call],
                user_ids: vec!["sato".into(), "suzuki".into()],
                results: vec!["no_answer".into()],
                occurred_from: Some(now - Days::days(14)),
                text: Some("見積".into()),
                limit: 5,
                ..ActivityQuery::default()
            },
        ),
    ];
    for (title, query) in &searches {
        let t = Instant::now();
        let page = search.search_activities(query).await?;
        outln!()?;
        outln!(
            "   ▸ {title}  ({:.1} ms)",
            t.elapsed().as_secs_f64() * 1000.0
        )?;
        print_page(&page)?;
    }
    let tenant_only = ActivityQuery {
        tenant_id: tenant.clone(),
        ..ActivityQuery::default()
    };
    outln!()?;
    outln!("   ▸ across all deals of the tenant, by action type")?;
    print_buckets(
        GroupBy::Action,
        &search
            .aggregate_activities(&tenant_only, GroupBy::Action)
            .await?,
    )?;
    outln!()?;
    outln!("   ▸ the last 7 days, by day")?;
    let last_week = ActivityQuery {
        occurred_from: Some(now - Days::days(7)),
        ..tenant_only.clone()
    };
    print_buckets(
        GroupBy::Day,
        &search
            .aggregate_activities(&last_week, GroupBy::Day)
            .await?,
    )?;

    // 4. The index must hold exactly what the primary holds.
    outln!()?;
    let drift = index_drift(&embedded, index).await?;
    let ok = drift.is_clean();
    if ok {
        outln!(
            "4. check: the index equals the primary ({} items, same versions) ✓",
            drift.checked
        )?;
    } else {
        outln!(
            "4. CHECK FAILED: the index differs from the primary: {} missing, {} extra, {} stale",
            drift.missing.len(),
            drift.extra.len(),
            drift.stale.len()
        )?;
    }
    pipeline.shutdown().await;
    drop(sinks);
    embedded.store.close();
    outln!()?;
    outln!(
        "try: tsunagu search --data-dir {} --tenant {} --text 見積 --action call",
        config.data_dir.display(),
        TENANTS[0]
    )?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Makes ids unique per run, so the demo can run again on the same directory.
fn with_run_id(mut activity: ActivityLog, run_id: i64) -> ActivityLog {
    activity.id = format!("{}-{run_id}", activity.id);
    activity
}

/// Validates and writes activities in one group (edits replace, new ones must be new).
async fn write_all(embedded: &Embedded, activities: &[ActivityLog]) -> anyhow::Result<()> {
    let now = Utc::now();
    let ops = activities
        .iter()
        .map(|a| {
            a.validate(now)
                .with_context(|| format!("sample activity {} is invalid", a.id))?;
            Ok(WriteOp::Put {
                key: a.key(),
                body: Entity::ActivityLog(a.clone()).to_json(),
                condition: Condition::None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for result in embedded.store.write_many(ops).await? {
        result?;
    }
    Ok(())
}

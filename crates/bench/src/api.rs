//! `tsunagu bench api`: the application's HTTP API under load, through a real socket, on
//! the embedded defaults (a fresh data directory) or on the deployment `--config` names
//! (DynamoDB + OpenSearch: fresh tables and index are the caller's to choose).
//!
//! 1. Loads a tenant with `--deals` deals (and their companies) and `--activities`
//!    activities straight into the primary, then backfills the index.
//! 2. Starts the server (primary, pipeline, API) on a free port.
//! 3. Search latency: `--queries` sequential searches, each with three filters (action,
//!    salesperson, the last 30 days) and a Japanese text term.
//! 4. Writes: `--concurrency` clients record activities for `--write-time`, as fast as
//!    they are answered or at `--write-rate` in total; request latency, writes/s, and the
//!    pipeline's commit-to-searchable lag meanwhile.

use super::RunDir;
use crate::sample::{Sample, USERS};
use anyhow::Context;
use chrono::{Duration as ChronoDuration, Utc};
use clap::Args;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_domain::{Company, Deal, DealStage, Entity};
use tsunagu_engine::backfill::BackfillOptions;
use tsunagu_engine::ports::{Condition, ItemStore, WriteOp};
use tsunagu_runtime::config::Config;
use tsunagu_runtime::outln;
use tsunagu_runtime::Runtime;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Activities loaded before the searches.
    #[arg(long, default_value_t = 1_000_000)]
    pub activities: u64,
    /// Deals they are spread over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub deals: u32,
    /// Searches measured (after 100 warm-up searches).
    #[arg(long, default_value_t = 2_000)]
    pub queries: u64,
    /// How long the write phase runs.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub write_time: Duration,
    /// Total writes per second in the write phase, spread over the clients at fixed
    /// times; 0 writes as fast as the clients get answers (throughput at saturation).
    #[arg(long, default_value_t = 0.0)]
    pub write_rate: f64,
    /// Concurrent clients in the write phase.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Seed of the workload generator (the same seed writes the same items).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Run on this deployment (for example `examples/aws-local.toml`) instead of a fresh
    /// embedded data directory.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    count: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |v: u64| v as f64 / 1e3;
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

#[derive(Debug, Serialize)]
struct ApiReport {
    activities: u64,
    deals: u32,
    load_s: f64,
    backfill_items_per_s: f64,
    search: Percentiles,
    search_mean_hits: f64,
    writes: u64,
    write_errors: u64,
    writes_per_s: f64,
    write_latency: Percentiles,
    lag: Value,
    peak_rss_mib: f64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

pub async fn run(args: &ApiArgs, data_dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let (_dir, config) = match &args.config {
        Some(path) => (None, tsunagu_runtime::resolve_config(Some(path), data_dir)?),
        None => {
            let dir = RunDir::new(data_dir, "api")?;
            let config = Config {
                data_dir: dir.path.clone(),
                ..Config::default()
            };
            (Some(dir), config)
        }
    };
    let consumer = config
        .consumers
        .first()
        .context("the config has no consumer")?
        .clone();
    let registry = tsunagu_runtime::tenants::open_tenant_directory(&config).await?;
    let (tenant, token) = registry
        .create(&format!(
            "bench-{}-{}",
            std::process::id(),
            Utc::now().timestamp()
        ))
        .await?;
    drop(registry);

    // 1. Load.
    let now = Utc::now();
    let mut sample = Sample::new(args.seed, args.deals, now);
    let runtime = Runtime::open(config.clone()).await?;
    let started = Instant::now();
    let mut records = Vec::new();
    let mut companies = std::collections::BTreeSet::new();
    for (i, d) in sample.deals.iter().enumerate() {
        if companies.insert(d.company_id.clone()) {
            let prefecture = tsunagu_domain::prefecture::PREFECTURES[i % 47];
            records.push(Entity::Company(Company {
                id: d.company_id.clone(),
                tenant_id: tenant.id.clone(),
                name: d.company_name.clone(),
                prefecture: Some(prefecture.to_string()),
                address: "中央1-1-1".into(),
                industry: Some(["製造業", "小売業", "情報通信業"][i % 3].to_string()),
                created_at: now,
                updated_at: now,
            }));
        }
        records.push(Entity::Deal(Deal {
            id: d.id.clone(),
            tenant_id: tenant.id.clone(),
            company_id: d.company_id.clone(),
            title: format!("{}様 案件", d.company_name),
            owner_id: d.owner.clone(),
            stage: DealStage::ALL[i % 6],
            amount: (i as i64 % 100) * 100_000,
            expected_close_date: None,
            tags: vec![["重点", "新規", "既存"][i % 3].to_string()],
            created_at: now,
            updated_at: now,
        }));
    }
    write_entities(runtime.store.as_ref(), records).await?;
    let mut written = 0u64;
    let mut in_flight = tokio::task::JoinSet::new();
    while written < args.activities {
        let n = (args.activities - written).min(2_000);
        let chunk: Vec<WriteOp> = (0..n)
            .map(|_| {
                let mut a = sample.activity();
                a.tenant_id = tenant.id.clone();
                WriteOp::Put {
                    key: a.key(),
                    body: Entity::ActivityLog(a).to_json(),
                    condition: Condition::None,
                }
            })
            .collect();
        written += n;
        let store = Arc::clone(&runtime.store);
        in_flight.spawn(async move { store.write_many(chunk).await });
        while in_flight.len() >= 4 {
            if let Some(done) = in_flight.join_next().await {
                for r in done?? {
                    r?;
                }
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        for r in done?? {
            r?;
        }
    }
    let load_s = started.elapsed().as_secs_f64();
    outln!(
        "loaded {} activities over {} deals in {load_s:.1} s",
        args.activities,
        args.deals
    )?;
    let index = runtime.open_sink(&consumer.sink).await?;
    let started = Instant::now();
    let backfill = runtime
        .backfill(
            &consumer.name,
            index.sink().as_ref(),
            &BackfillOptions::default(),
            &|_| {},
        )
        .await?;
    let backfill_rate = backfill.items as f64 / started.elapsed().as_secs_f64();
    outln!(
        "indexed {} items at {backfill_rate:.0} items/s",
        backfill.items
    )?;
    index.close().await;
    runtime.close();
    drop(runtime);

    // 2. Serve.
    let server = tsunagu_runtime::serving::start(config, "127.0.0.1:0".parse()?).await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;

    // 3. Search latency.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let words = ["見積", "訪問", "導入", "予算", "比較資料", "トライアル"];
    let actions = ["call", "visit", "email", "online_meeting"];
    let from = (now - ChronoDuration::days(30))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut search = histogram()?;
    let mut hits = 0u64;
    for i in 0..(100 + args.queries) {
        let url = format!(
            "{base}/api/v1/activities?action={}&user_id={}&from={from}&q={}&limit=20",
            actions[rng.random_range(0..actions.len())],
            USERS[rng.random_range(0..USERS.len())],
            words[rng.random_range(0..words.len())],
        );
        let t = Instant::now();
        let resp = http.get(&url).bearer_auth(&token).send().await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "search failed: {}",
            resp.status()
        );
        let page: Value = resp.json().await?;
        let elapsed = t.elapsed();
        if i >= 100 {
            search.record(elapsed.as_micros().max(1) as u64)?;
            hits += page["total"].as_u64().unwrap_or(0);
        }
    }
    let search_p = percentiles(&search);
    outln!(
        "search (3 filters + text, {} queries, sequential): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; mean matches {:.0}",
        search_p.count,
        search_p.p50_ms,
        search_p.p90_ms,
        search_p.p99_ms,
        search_p.max_ms,
        hits as f64 / args.queries.max(1) as f64
    )?;

    // 4. Writes.
    let deal_ids: Arc<Vec<String>> = Arc::new(sample.deals.iter().map(|d| d.id.clone()).collect());
    let deadline = Instant::now() + args.write_time;
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..args.concurrency {
        let (http, base, token, deals) = (
            http.clone(),
            base.clone(),
            token.clone(),
            Arc::clone(&deal_ids),
        );
        let seed = args.seed + u64::from(c) + 1;
        // With a rate, client `c` of `n` writes at start + (k + c/n) × n/rate.
        let n = f64::from(args.concurrency);
        let interval =
            (args.write_rate > 0.0).then(|| Duration::from_secs_f64(n / args.write_rate));
        let offset = interval.map(|i| i.mul_f64(f64::from(c) / n));
        clients.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut latency = histogram()?;
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut last_token = None;
            let mut k = 0u32;
            while Instant::now() < deadline {
                if let (Some(interval), Some(offset)) = (interval, offset) {
                    let due = started + offset + interval * k;
                    k += 1;
                    tokio::time::sleep_until(due.into()).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let deal = &deals[rng.random_range(0..deals.len())];
                let body = json!({
                    "user_id": USERS[rng.random_range(0..USERS.len())],
                    "action": actions[rng.random_range(0..actions.len())],
                    "occurred_at": Utc::now().to_rfc3339(),
                    "memo": format!("{}について打ち合わせ", words[rng.random_range(0..words.len())]),
                    "result": "appointment",
                });
                let t = Instant::now();
                let resp = http
                    .post(format!("{base}/api/v1/deals/{deal}/activities"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 201 => {
                        latency.record(t.elapsed().as_micros().max(1) as u64)?;
                        ok += 1;
                        let v: Value = r.json().await?;
                        last_token = v["consistency_token"].as_str().map(str::to_string);
                    }
                    _ => failed += 1,
                }
            }
            Ok::<_, anyhow::Error>((latency, ok, failed, last_token))
        });
    }
    let mut latency = histogram()?;
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut tokens = Vec::new();
    while let Some(done) = clients.join_next().await {
        let (h, o, f, t) = done??;
        latency.add(&h)?;
        ok += o;
        failed += f;
        tokens.extend(t);
    }
    let write_s = started.elapsed().as_secs_f64();
    // Everything written is searchable before the lag is read.
    for t in tokens {
        let resp = http
            .get(format!(
                "{base}/api/v1/activities?limit=1&consistency_token={t}"
            ))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "a write never became searchable"
        );
    }
    let status: Value = http
        .get(format!("{base}/api/v1/pipeline/status"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await
        .context("reading the pipeline status")?;
    let write_p = percentiles(&latency);
    let lag = status["lag"].clone();
    outln!(
        "writes ({} clients, {write_s:.1} s): {ok} ok, {failed} failed = {:.0} writes/s; request p50 {:.2} ms, p99 {:.2} ms",
        args.concurrency,
        ok as f64 / write_s,
        write_p.p50_ms,
        write_p.p99_ms
    )?;
    outln!(
        "commit→searchable lag meanwhile: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} records)",
        lag["p50_ms"],
        lag["p90_ms"],
        lag["p99_ms"],
        lag["max_ms"],
        lag["count"]
    )?;
    server.stop().await?;
    let report = ApiReport {
        activities: args.activities,
        deals: args.deals,
        load_s,
        backfill_items_per_s: backfill_rate,
        search: search_p,
        search_mean_hits: hits as f64 / args.queries.max(1) as f64,
        writes: ok,
        write_errors: failed,
        writes_per_s: ok as f64 / write_s,
        write_latency: write_p,
        lag,
        peak_rss_mib: super::sys::peak_rss_mib(),
    };
    outln!("peak RSS {:.0} MiB", report.peak_rss_mib)?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn write_entities(store: &dyn ItemStore, entities: Vec<Entity>) -> anyhow::Result<()> {
    for chunk in entities.chunks(2_000) {
        let ops = chunk
            .iter()
            .map(|e| WriteOp::Put {
                key: e.key(),
                body: e.to_json(),
                condition: Condition::None,
            })
            .collect();
        for r in store.write_many(ops).await? {
            r?;
        }
    }
    Ok(())
}

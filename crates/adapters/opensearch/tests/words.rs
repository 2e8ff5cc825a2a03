//! Japanese word analysis on OpenSearch (a `dictionary` in the config), against
//! osmem-server and the IPADIC sources (skipped without TSUNAGU_TEST_OPENSEARCH_URL or
//! TSUNAGU_TEST_IPADIC_DIR, both set in CI): the judged query set of `tsunagu bench
//! search-quality` finds exactly what the embedded index with the same dictionary finds,
//! and an index is never read or written with another analysis than it was built with.

mod common;

use chrono::{Duration, TimeZone, Utc};
use std::sync::Arc;
use tsunagu_dictionary::{test_dictionary, Dictionary, TEST_DICTIONARY_ENV};
use tsunagu_domain::search::{ActivityQuery, MAX_LIMIT};
use tsunagu_domain::{
    ActionType, ActivityLog, ChangeKind, ChangeRecord, Entity, Image, Position, ShardId, Version,
};
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};
use tsunagu_engine::ports::Sink;
use tsunagu_opensearch::{OpenSearchConfig, OpenSearchSearch, OpenSearchSink};
use tsunagu_service::ports::SearchIndex;
use tsunagu_service::ServiceError;

/// The judged set's data (`crates/bench/data/search-quality`).
fn data(file: &str) -> String {
    let path = format!(
        "{}/../../bench/data/search-quality/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The tab-separated rows of a data file, comments and blank lines left out.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The memos as activities of one tenant, a minute apart (so the default order is
/// fixed), in one batch.
fn memo_changes() -> Vec<ChangeRecord> {
    let base = Utc
        .with_ymd_and_hms(2026, 4, 1, 9, 0, 0)
        .single()
        .expect("a date");
    rows(&data("memos.tsv"))
        .into_iter()
        .enumerate()
        .map(|(n, row)| {
            let entity = Entity::ActivityLog(ActivityLog {
                id: row[0].clone(),
                tenant_id: "t1".into(),
                deal_id: "deal-1".into(),
                company_id: "company-1".into(),
                user_id: "user-1".into(),
                action: ActionType::Visit,
                result: None,
                occurred_at: base + Duration::minutes(n as i64),
                memo: row[1].clone(),
                tags: Vec::new(),
                created_at: base,
                updated_at: base,
            });
            let version = Version(n as u64 + 1);
            ChangeRecord {
                shard: ShardId("0".into()),
                position: Position(format!("{:020}", version.0)),
                key: entity.key(),
                kind: ChangeKind::Insert,
                version,
                old_image: None,
                new_image: Some(Image {
                    version,
                    body: entity.to_json(),
                }),
                committed_at_us: 1_772_000_000_000_000,
            }
        })
        .collect()
}

/// The ids `index` finds for `text`, newest first (or the kind of error).
async fn found(
    index: &dyn SearchIndex,
    text: &str,
) -> Result<Vec<String>, std::mem::Discriminant<ServiceError>> {
    let q = ActivityQuery {
        tenant_id: Some("t1".into()),
        text: Some(text.into()),
        limit: MAX_LIMIT,
        ..ActivityQuery::default()
    };
    match index.search_activities(&q).await {
        Ok(page) => Ok(page.hits.iter().map(|h| h.activity.id.clone()).collect()),
        Err(e) => Err(std::mem::discriminant(&e)),
    }
}

/// A config of a fresh index with the test dictionary.
fn config_with(url: &str, test: &str) -> OpenSearchConfig {
    let mut config = common::config(url, test);
    config.dictionary = std::env::var_os(TEST_DICTIONARY_ENV).map(Into::into);
    config
}

async fn open(config: &OpenSearchConfig, words: Option<Arc<Dictionary>>) -> OpenSearchSink {
    let sink = OpenSearchSink::new(config)
        .expect("a client")
        .with_words(words);
    sink.ensure_index()
        .await
        .unwrap_or_else(|e| panic!("creating the index: {e}"));
    sink
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judged_queries_find_what_the_embedded_index_finds() {
    let test = "the_judged_queries_find_what_the_embedded_index_finds";
    let Some(url) = common::server_url(test) else {
        return;
    };
    let Some(dictionary) = test_dictionary(test) else {
        return;
    };
    let config = config_with(&url, "judged");
    let sink = open(&config, Some(dictionary.clone())).await;
    let search = OpenSearchSearch::from_client(sink.clone());
    search.check().await.expect("the index has its word fields");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = ActivityIndex::open(
        dir.path(),
        IndexOptions {
            writer_memory_bytes: 20 << 20,
            refresh_interval: std::time::Duration::ZERO,
            dictionary: Some(dictionary),
            ..IndexOptions::default()
        },
    )
    .expect("opening the embedded index");
    let changes = memo_changes();
    assert!(changes.len() >= 150, "{} memos", changes.len());
    sink.apply(&changes).await.expect("opensearch apply");
    embedded.apply(&changes).await.expect("embedded apply");
    sink.refresh().await.expect("refresh");

    let queries = rows(&data("queries.tsv"));
    assert!(queries.len() >= 150, "{} queries", queries.len());
    let mut hits = 0;
    for row in &queries {
        let text = &row[1];
        let expected = found(&embedded, text).await;
        let actual = found(&search, text).await;
        assert_eq!(actual, expected, "{} query {text:?}", row[0]);
        hits += expected.map_or(0, |e| e.len());
    }
    assert!(hits > 500, "the queries found {hits} memos in all");
    // What the word analysis is for, on the cluster: 京都 is not 東京都 (m12), while
    // 京都府 and 京都市 are found; okurigana variants meet.
    let kyoto = found(&search, "京都").await.expect("京都");
    assert!(kyoto.contains(&"m13".to_string()) && kyoto.contains(&"m69".to_string()));
    assert!(!kyoto.contains(&"m12".to_string()), "{kyoto:?}");
    assert_eq!(
        found(&search, "打合せ").await,
        found(&search, "打ち合わせ").await
    );
}

#[tokio::test]
async fn an_index_is_used_only_with_the_analysis_it_was_built_with() {
    let test = "an_index_is_used_only_with_the_analysis_it_was_built_with";
    let Some(url) = common::server_url(test) else {
        return;
    };
    let Some(dictionary) = test_dictionary(test) else {
        return;
    };
    // Built without word analysis: opening it with a dictionary fails, naming the
    // setting and the way out, for writing and for searching.
    let plain = common::config(&url, "plain");
    open(&plain, None).await;
    let mut with = plain.clone();
    with.dictionary = config_with(&url, "x").dictionary;
    let client = OpenSearchSink::new(&with)
        .expect("a client")
        .with_words(Some(dictionary.clone()));
    let err = client.ensure_index().await.expect_err("another analysis");
    let message = err.to_string();
    assert!(
        message.contains("without Japanese word analysis"),
        "{message}"
    );
    assert!(message.contains("backfill"), "{message}");
    let err = OpenSearchSearch::from_client(client)
        .check()
        .await
        .expect_err("another analysis");
    assert!(err.to_string().contains("`dictionary`"), "{err}");

    // Built with it: opening it without fails the same way.
    let worded = config_with(&url, "worded");
    open(&worded, Some(dictionary.clone())).await;
    let mut without = worded.clone();
    without.dictionary = None;
    let err = OpenSearchSink::new(&without)
        .expect("a client")
        .ensure_index()
        .await
        .expect_err("no dictionary");
    assert!(
        err.to_string()
            .contains("built with Japanese word analysis"),
        "{err}"
    );
    // A config naming a dictionary that was not loaded into the client is refused
    // before any request.
    let err = OpenSearchSink::new(&worded)
        .expect("a client")
        .ensure_index()
        .await
        .expect_err("not loaded");
    assert!(err.to_string().contains("with_words"), "{err}");
}

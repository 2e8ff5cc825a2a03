//! The search port against osmem-server (`scripts/test-peers/osmem.sh`; skipped when
//! TSUNAGU_TEST_OPENSEARCH_URL is unset, required in CI where it is set): the search
//! conformance suite, and hit-for-hit parity with the embedded index on a generated
//! dataset (the embedded index wrapped as the API server wraps it, a test-only copy).

mod common;

use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use tsunagu_domain::search::{ActivityQuery, GroupBy, RecordKind, RecordQuery};
use tsunagu_domain::{
    ActionType, ActivityLog, ChangeKind, ChangeRecord, Deal, DealStage, Entity, Image, ItemKey,
    Position, ShardId, Version,
};
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};
use tsunagu_engine::ports::Sink;
use tsunagu_opensearch::{OpenSearchSearch, OpenSearchSink};
use tsunagu_service::ports::SearchIndex;
use tsunagu_service::ServiceError;

#[tokio::test]
async fn opensearch_answers_the_search_suite() {
    let Some(url) = common::server_url("opensearch_answers_the_search_suite") else {
        return;
    };
    let config = common::config(&url, "search-suite");
    let sink = common::connect(&config).await;
    let search = OpenSearchSearch::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("opening the search side: {e}"));
    tsunagu_conformance::search::check_all(&search, &sink).await;
}

#[tokio::test]
async fn a_bad_cluster_answer_is_unavailable_with_the_url() {
    let Some(url) = common::server_url("a_bad_cluster_answer_is_unavailable") else {
        return;
    };
    // An index that does not exist: every method fails as Unavailable, naming the URL
    // and the status, and none panics.
    let config = common::config(&url, "missing");
    let search = OpenSearchSearch::new(&config).expect("a reader");
    let err = search
        .search_activities(&ActivityQuery::default())
        .await
        .unwrap_err();
    match err {
        ServiceError::Unavailable(message) => {
            assert!(message.contains(&url), "{message}");
            assert!(message.contains("404"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        search.visible_version(&ItemKey::new("d", "x")).await,
        Err(ServiceError::Unavailable(_))
    ));
    assert!(OpenSearchSearch::connect(&config).await.is_err());
}

// --- parity with the embedded index -------------------------------------------------------

/// A small deterministic generator (xorshift64*), so the dataset is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Memo fragments: Japanese with half-width katakana, full-width and mixed-case Latin,
/// punctuation, one-character words, digits.
const FRAGMENTS: &[&str] = &[
    "来週訪問",
    "のアポ獲得",
    "ｱﾎﾟ確定",
    "ＺＯＯＭで商談",
    "Zoom商談",
    "2回目",
    "部長同席",
    "株 先方了承",
    "株式会社サーバー",
    "見積もり送付",
    "Web会議",
    "電話不在",
    "折り返し依頼",
    "MixedCase",
    "メモ",
    "、",
    "。",
    "「了承」",
    "価格交渉 3.5%",
    "担当者変更",
    "ﾃｽﾄ",
    "色々相談",
    "ミ―ティング",
    "みーてぃんぐ",
    "ｻｰﾊﾞｰ",
];

/// Query words, each tried alone and some in pairs.
const WORDS: &[&str] = &[
    "訪問",
    "週訪",
    "アポ",
    "ｱﾎﾟ",
    "zoom",
    "ＺＯＯＭ",
    "zoom商談",
    "商談",
    "株",
    "式",
    "了",
    "サーバー",
    "web会議",
    "mixedcase",
    "2回目",
    "テスト",
    "送付",
    "交渉",
    "メモ",
    "不在",
    // Latin prefixes; quoted, exact.
    "mix",
    "\"mixedcase\"",
    "zoo",
    // Spelling variants.
    "ミーティング",
    "みーてぃんぐ",
    "色色",
    "色々",
    "サ-バ-",
    "さーばー",
    // The search syntax: exclusions, OR, phrases.
    "-株",
    "商談 -zoom",
    "アポ OR 株",
    "zoom OR 交渉 -2回目",
    "\"zoom 商談\"",
    "-\"部長同席\"",
];

fn change(key: &ItemKey, kind: ChangeKind, version: u64, entity: Option<&Entity>) -> ChangeRecord {
    ChangeRecord {
        shard: ShardId("0".into()),
        position: Position(format!("{version:020}")),
        key: key.clone(),
        kind,
        version: Version(version),
        old_image: None,
        new_image: entity.map(|e| Image {
            version: Version(version),
            body: e.to_json(),
        }),
        committed_at_us: 1_772_000_000_000_000,
    }
}

/// A seeded dataset: 400 activities of two tenants over 12 deals, with many at the same
/// instant (ties ordered by hash), some deleted; 12 deals.
fn generated() -> Vec<Vec<ChangeRecord>> {
    let mut rng = Rng(0x7375_6e61_6775_0001);
    let base = Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("a date");
    // 60 instants over ten days, some on either side of midnight.
    let instants: Vec<DateTime<Utc>> = (0..60)
        .map(|i| {
            base + chrono::Duration::microseconds(
                (rng.below(10 * 86_400) as i64) * 1_000_000 + i64::from(i % 3 == 0) * 999_999,
            )
        })
        .collect();
    let mut version = 1000u64;
    let mut inserts = Vec::new();
    let mut changes = Vec::new();
    let tenants = ["t1", "t2"];
    for n in 0..12 {
        let tenant = tenants[n % 2];
        version += 1;
        let deal = Entity::Deal(Deal {
            id: format!("deal-{n}"),
            tenant_id: tenant.into(),
            company_id: format!("company-{}", n % 4),
            title: rng.pick(FRAGMENTS).to_string(),
            owner_id: format!("user-{}", n % 3),
            stage: *rng.pick(&DealStage::ALL),
            amount: rng.below(5) as i64 * 100_000,
            expected_close_date: None,
            tags: vec![format!("tag-{}", n % 3)],
            created_at: *rng.pick(&instants),
            updated_at: base,
        });
        inserts.push(change(
            &deal.key(),
            ChangeKind::Insert,
            version,
            Some(&deal),
        ));
    }
    for n in 0..400 {
        let deal = rng.below(12);
        let words: Vec<&str> = (0..1 + rng.below(4))
            .map(|_| *rng.pick(FRAGMENTS))
            .collect();
        let activity = Entity::ActivityLog(ActivityLog {
            id: format!("a{n}"),
            tenant_id: tenants[deal % 2].into(),
            deal_id: format!("deal-{deal}"),
            company_id: format!("company-{}", deal % 4),
            user_id: format!("user-{}", rng.below(5)),
            action: *rng.pick(&ActionType::ALL),
            result: [
                None,
                Some("connected"),
                Some("no_answer"),
                Some("meeting_set"),
            ][rng.below(4)]
            .map(str::to_string),
            occurred_at: *rng.pick(&instants),
            memo: words.join(if rng.below(2) == 0 { "" } else { " " }),
            tags: (0..rng.below(3))
                .map(|_| format!("tag-{}", rng.below(4)))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            created_at: base,
            updated_at: base,
        });
        version += 1;
        let key = activity.key();
        inserts.push(change(&key, ChangeKind::Insert, version, Some(&activity)));
        if n % 17 == 0 {
            changes.push(change(&key, ChangeKind::Remove, version + 10_000, None));
        }
    }
    vec![inserts, changes]
}

/// Every page of `q` at a small limit: hit keys and versions, totals and cursors.
async fn all_pages(index: &dyn SearchIndex, q: &ActivityQuery) -> Vec<String> {
    let mut q = q.clone();
    q.limit = 7;
    let mut out = Vec::new();
    loop {
        let page = index
            .search_activities(&q)
            .await
            .unwrap_or_else(|e| panic!("{q:?}: {e}"));
        out.push(format!("total {}", page.total));
        out.extend(
            page.hits
                .iter()
                .map(|h| format!("{} v{} {}", h.key, h.version.0, h.activity.memo)),
        );
        match page.next_cursor {
            Some(cursor) => {
                out.push(format!("cursor {cursor}"));
                q.cursor = Some(cursor);
            }
            None => return out,
        }
    }
}

/// What both indexes answer for `q`, as comparable text.
async fn answers(index: &dyn SearchIndex, q: &ActivityQuery) -> Vec<String> {
    let mut out = all_pages(index, q).await;
    for by in GroupBy::ALL {
        let buckets = index.aggregate_activities(q, by).await.expect("aggregate");
        out.push(format!("{by:?} {buckets:?}"));
    }
    let deals: BTreeMap<String, ()> = index
        .deals_with_activity(q)
        .await
        .expect("deals")
        .into_iter()
        .map(|d| (d, ()))
        .collect();
    out.push(format!("deals {:?}", deals.keys().collect::<Vec<_>>()));
    // Only the time: among activities at the same latest instant the embedded index keeps
    // the first it reads, which is not defined.
    let latest: BTreeMap<String, DateTime<Utc>> = index
        .latest_activity_per_deal(q)
        .await
        .expect("latest")
        .into_iter()
        .map(|(d, l)| (d, l.occurred_at))
        .collect();
    out.push(format!("latest {latest:?}"));
    out
}

async fn record_answers(index: &dyn SearchIndex, q: &RecordQuery) -> Vec<String> {
    let mut q = q.clone();
    q.limit = 5;
    let mut out = Vec::new();
    loop {
        let page = index.search_records(&q).await.expect("records");
        out.push(format!("total {}", page.total));
        out.extend(
            page.hits
                .iter()
                .map(|h| format!("{} v{}", h.key, h.version.0)),
        );
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
    }
    let mut ids = index.record_ids(&q).await.expect("record_ids");
    ids.sort();
    out.push(format!("ids {ids:?}"));
    out.push(format!(
        "tags {:?}",
        index.tag_counts(&q).await.expect("tags")
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_and_the_embedded_index_answer_alike() {
    let Some(url) = common::server_url("opensearch_and_the_embedded_index_answer_alike") else {
        return;
    };
    let config = common::config(&url, "parity");
    let sink: OpenSearchSink = common::connect(&config).await;
    let search = OpenSearchSearch::connect(&config).await.expect("search");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = Arc::new(
        ActivityIndex::open(
            dir.path(),
            IndexOptions {
                writer_memory_bytes: 20 << 20,
                refresh_interval: std::time::Duration::ZERO,
                ..IndexOptions::default()
            },
        )
        .expect("opening the embedded index"),
    );
    for batch in generated() {
        sink.apply(&batch).await.expect("opensearch apply");
        embedded.apply(&batch).await.expect("embedded apply");
    }
    let reference: &ActivityIndex = embedded.as_ref();

    let mut queries = vec![ActivityQuery::default()];
    for tenant in ["t1", "t2"] {
        let t = || ActivityQuery {
            tenant_id: Some(tenant.into()),
            ..ActivityQuery::default()
        };
        queries.push(t());
        for word in WORDS {
            queries.push(ActivityQuery {
                text: Some(word.to_string()),
                ..t()
            });
        }
        queries.push(ActivityQuery {
            text: Some("商談 株".into()),
            ..t()
        });
        queries.push(ActivityQuery {
            user_ids: vec!["user-1".into(), "user-3".into()],
            actions: vec![ActionType::Call, ActionType::Visit],
            ..t()
        });
        queries.push(ActivityQuery {
            results: vec!["connected".into()],
            tags_all: vec!["tag-1".into()],
            ..t()
        });
        queries.push(ActivityQuery {
            deal_ids: vec!["deal-0".into(), "deal-3".into(), "deal-4".into()],
            company_ids: vec!["company-0".into()],
            ..t()
        });
        queries.push(ActivityQuery {
            occurred_from: Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).single(),
            occurred_to: Utc.with_ymd_and_hms(2026, 3, 6, 0, 0, 0).single(),
            ..t()
        });
    }
    let mut compared = 0;
    for q in &queries {
        let expected = answers(reference, q).await;
        let actual = answers(&search, q).await;
        assert_eq!(actual, expected, "answers to {q:?}");
        compared += expected.len();
    }
    assert!(compared > 1_000, "the queries compared {compared} answers");

    for kind in [RecordKind::Deal] {
        for tenant in ["t1", "t2"] {
            let mut q = RecordQuery::new(kind);
            q.tenant_id = Some(tenant.into());
            let mut variants = vec![q.clone()];
            for word in ["商談", "株", "zoom", "アポ"] {
                let mut v = q.clone();
                v.text = Some(word.into());
                variants.push(v);
            }
            let mut v = q.clone();
            v.owner_ids = vec!["user-1".into()];
            v.amount_min = Some(100_000);
            variants.push(v);
            for v in variants {
                assert_eq!(
                    record_answers(&search, &v).await,
                    record_answers(reference, &v).await,
                    "records {v:?}"
                );
            }
        }
    }
    // What searches see of every key, tombstones included.
    for batch in generated() {
        for record in batch.iter().step_by(5) {
            assert_eq!(
                search
                    .visible_version(&record.key)
                    .await
                    .expect("opensearch"),
                reference
                    .visible_version(&record.key)
                    .await
                    .expect("embedded"),
                "visible version of {}",
                record.key
            );
        }
    }
    let _ = Deal::key_for("deal-0");
}

/// An index created before the sort fields existed: the sink adds them on start, and the
/// reader refuses an index without them with a message saying what to do.
#[tokio::test]
async fn the_sink_adds_the_search_fields_to_an_older_index() {
    let Some(url) = common::server_url("the_sink_adds_the_search_fields_to_an_older_index") else {
        return;
    };
    let config = common::config(&url, "older-index");
    let mut body = tsunagu_opensearch::document::index_body(&config, None);
    for (field, _) in tsunagu_opensearch::document::SEARCH_FIELDS {
        body["mappings"]["properties"]
            .as_object_mut()
            .expect("properties")
            .remove(field);
    }
    reqwest::Client::new()
        .put(format!("{url}/{}", config.index))
        .json(&body)
        .send()
        .await
        .expect("creating the older index")
        .error_for_status()
        .expect("created");
    let refused = OpenSearchSearch::connect(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("occurred_at_us") || refused.contains("sort_key"),
        "{refused}"
    );
    assert!(refused.contains("docs/opensearch.md"), "{refused}");
    common::connect(&config).await;
    OpenSearchSearch::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("the sink added the search fields: {e}"));
}

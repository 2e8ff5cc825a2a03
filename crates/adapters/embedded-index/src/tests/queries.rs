//! Queries and aggregations on a small, hand-made data set.

use super::*;
use crate::{ActivityQuery, Bucket, Cursor, GroupBy, IndexError};
use std::collections::HashSet;
use tsunagu_engine::ports::Sink;

/// id, deal, action, result, hours after t0, memo, tags.
type Row = (
    &'static str,
    &'static str,
    ActionType,
    Option<&'static str>,
    i64,
    &'static str,
    &'static [&'static str],
);

/// Two tenants; tenant t2 mirrors t1's data so that any leak shows up in counts.
fn data() -> Vec<ActivityLog> {
    let mut out = Vec::new();
    let rows: [Row; 6] = [
        (
            "a1",
            "d1",
            ActionType::Visit,
            Some("appointment"),
            0,
            "先方の部長と面談。来週訪問のアポ獲得",
            &["重点", "新規"],
        ),
        (
            "a2",
            "d1",
            ActionType::Call,
            Some("no_answer"),
            1,
            "不在。ｱﾎﾟ取り直し",
            &["重点"],
        ),
        (
            "a3",
            "d2",
            ActionType::Visit,
            Some("appointment"),
            2,
            "Zoom商談で来週訪問を約束",
            &["重点", "新規"],
        ),
        (
            "a4",
            "d2",
            ActionType::OnlineMeeting,
            None,
            26,
            "訪問は再来週",
            &["新規"],
        ),
        (
            "a5",
            "d3",
            ActionType::Email,
            Some("sent"),
            50,
            "資料送付",
            &[],
        ),
        (
            "a6",
            "d3",
            ActionType::Visit,
            Some("appointment"),
            51,
            "来週の訪問アポ",
            &["重点", "新規"],
        ),
    ];
    for tenant in ["t1", "t2"] {
        for (id, deal, action, result, hours, memo, tags) in rows {
            let mut a = activity(&format!("{tenant}-{id}"), &format!("{tenant}-{deal}"));
            a.tenant_id = tenant.into();
            a.company_id = format!("{tenant}-c{}", &deal[1..]);
            a.user_id = if hours < 24 { "u1".into() } else { "u2".into() };
            a.action = action;
            a.result = result.map(Into::into);
            a.occurred_at = t0() + Duration::hours(hours);
            a.memo = memo.into();
            a.tags = tags.iter().map(|t| t.to_string()).collect();
            out.push(a);
        }
    }
    out
}

async fn loaded(dir: &std::path::Path) -> ActivityIndex {
    let index = open(dir);
    let records: Vec<_> = data().iter().map(|a| upsert(a, 1)).collect();
    index.apply(&records).await.expect("apply");
    index
}

fn ids(index: &ActivityIndex, q: &ActivityQuery) -> Vec<String> {
    index
        .search(q)
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.activity.id)
        .collect()
}

fn t1() -> ActivityQuery {
    ActivityQuery {
        tenant_id: Some("t1".into()),
        ..ActivityQuery::default()
    }
}

#[tokio::test]
async fn axes_combine_with_and_and_values_with_or() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = loaded(dir.path()).await;

    // Tenant + action + tag + range + Japanese text, all at once.
    let q = ActivityQuery {
        actions: vec![ActionType::Visit],
        tags_all: vec!["重点".into(), "新規".into()],
        occurred_from: Some(t0()),
        occurred_to: Some(t0() + Duration::hours(51)),
        text: Some("来週訪問".into()),
        ..t1()
    };
    assert_eq!(ids(&index, &q), ["t1-a3", "t1-a1"]);

    // Several values on one axis: OR.
    let q = ActivityQuery {
        deal_ids: vec!["t1-d1".into(), "t1-d3".into()],
        actions: vec![ActionType::Call, ActionType::Email],
        ..t1()
    };
    assert_eq!(ids(&index, &q), ["t1-a5", "t1-a2"]);

    // The upper bound is exclusive, the lower inclusive, to the microsecond.
    let q = ActivityQuery {
        occurred_from: Some(t0() + Duration::hours(26)),
        occurred_to: Some(t0() + Duration::hours(51)),
        ..t1()
    };
    assert_eq!(ids(&index, &q), ["t1-a5", "t1-a4"]);
    let q = ActivityQuery {
        occurred_from: Some(t0() + Duration::hours(26) + Duration::microseconds(1)),
        occurred_to: Some(t0() + Duration::hours(51) + Duration::microseconds(1)),
        ..t1()
    };
    assert_eq!(ids(&index, &q), ["t1-a6", "t1-a5"]);

    let q = ActivityQuery {
        results: vec!["appointment".into()],
        company_ids: vec!["t1-c3".into()],
        user_ids: vec!["u2".into()],
        ..t1()
    };
    assert_eq!(ids(&index, &q), ["t1-a6"]);
}

#[tokio::test]
async fn memo_text_matches_phrases_words_and_normalized_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = loaded(dir.path()).await;
    memo_text_matches(&index);
}

/// Issue 19: the same answers with a dictionary (whole words, okurigana variants and
/// word boundaries are `tests::words`').
#[tokio::test]
async fn memo_text_matches_the_same_with_a_dictionary() {
    let Some(dictionary) =
        crate::morphology::test_dictionary("memo_text_matches_the_same_with_a_dictionary")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let index = ActivityIndex::open(
        dir.path(),
        IndexOptions {
            dictionary: Some(dictionary),
            ..options()
        },
    )
    .expect("open index");
    let records: Vec<_> = data().iter().map(|a| upsert(a, 1)).collect();
    index.apply(&records).await.expect("apply");
    memo_text_matches(&index);
}

fn memo_text_matches(index: &ActivityIndex) {
    let text = |t: &str| {
        let q = ActivityQuery {
            text: Some(t.into()),
            ..t1()
        };
        let mut found = ids(index, &q);
        found.sort();
        found
    };
    // A phrase: 来週 and 訪問 adjacent (a6 has 来週の訪問, which does not match).
    assert_eq!(text("来週訪問"), ["t1-a1", "t1-a3"]);
    // Every word must match, anywhere (a4: 訪問は再来週).
    assert_eq!(text("来週 訪問"), ["t1-a1", "t1-a3", "t1-a4", "t1-a6"]);
    // Half-width katakana in the memo, full-width in the query, and the other way round.
    assert_eq!(text("アポ"), ["t1-a1", "t1-a2", "t1-a6"]);
    assert_eq!(text("ｱﾎﾟ取り"), ["t1-a2"]);
    // Latin words are case-insensitive; Latin next to kanji.
    assert_eq!(text("ZOOM"), ["t1-a3"]);
    assert_eq!(text("zoom商談"), ["t1-a3"]);
    // A single kanji: alone, at the start or the end of a run.
    assert_eq!(text("送"), ["t1-a5"]);
    assert_eq!(text("付"), ["t1-a5"]);
    // Blank text does not filter; punctuation-only text is refused (issue 19: it used to
    // match everything).
    assert_eq!(text("  ").len(), 6);
    let refused = ActivityQuery {
        text: Some("、。".into()),
        ..ActivityQuery::default()
    };
    assert!(matches!(
        index.search(&refused),
        Err(IndexError::InvalidQuery(_))
    ));
    assert!(text("存在しない言葉").is_empty());
}

#[tokio::test]
async fn the_tenant_filter_never_leaks_another_tenants_activities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = loaded(dir.path()).await;
    for tenant in ["t1", "t2"] {
        let q = ActivityQuery {
            tenant_id: Some(tenant.into()),
            // Filters that match in both tenants: deal ids of the other tenant must not
            // widen the result either.
            deal_ids: vec![
                "t1-d1".into(),
                "t2-d1".into(),
                "t1-d2".into(),
                "t2-d2".into(),
            ],
            text: Some("訪問".into()),
            limit: 1000,
            ..ActivityQuery::default()
        };
        let page = index.search(&q).expect("search");
        assert_eq!(page.total, 3);
        assert!(page.hits.iter().all(|h| h.activity.tenant_id == tenant));
        let buckets = index.aggregate(&q, GroupBy::Deal).expect("aggregate");
        assert!(
            buckets.iter().all(|b| b.key.starts_with(tenant)),
            "{buckets:?}"
        );
    }
    let nobody = ActivityQuery {
        tenant_id: Some("t3".into()),
        ..ActivityQuery::default()
    };
    assert_eq!(index.search(&nobody).expect("search").total, 0);
}

#[tokio::test]
async fn aggregations_count_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = loaded(dir.path()).await;
    let b = |key: &str, count: u64| Bucket {
        key: key.into(),
        count,
    };
    assert_eq!(
        index.aggregate(&t1(), GroupBy::Action).expect("action"),
        [
            b("visit", 3),
            b("call", 1),
            b("email", 1),
            b("online_meeting", 1)
        ]
    );
    assert_eq!(
        index.aggregate(&t1(), GroupBy::Tag).expect("tag"),
        [b("新規", 4), b("重点", 4)]
    );
    assert_eq!(
        index.aggregate(&t1(), GroupBy::Result).expect("result"),
        [b("appointment", 3), b("no_answer", 1), b("sent", 1)]
    );
    assert_eq!(
        index.aggregate(&t1(), GroupBy::Day).expect("day"),
        [b("2026-03-02", 3), b("2026-03-03", 1), b("2026-03-04", 2)]
    );
    assert_eq!(
        index.aggregate(&t1(), GroupBy::User).expect("user"),
        [b("u1", 3), b("u2", 3)]
    );
    let all = ActivityQuery::default();
    assert_eq!(
        index.aggregate(&all, GroupBy::Company).expect("company"),
        [
            b("t1-c1", 2),
            b("t1-c2", 2),
            b("t1-c3", 2),
            b("t2-c1", 2),
            b("t2-c2", 2),
            b("t2-c3", 2)
        ]
    );
    // Filters apply to aggregations, and deleted items no longer count.
    let gone = data()[0].clone();
    index
        .apply(&[remove(&gone.key(), 2)])
        .await
        .expect("delete");
    let visits = ActivityQuery {
        actions: vec![ActionType::Visit],
        ..t1()
    };
    assert_eq!(
        index.aggregate(&visits, GroupBy::Deal).expect("deal"),
        [b("t1-d2", 1), b("t1-d3", 1)]
    );
}

#[tokio::test]
async fn many_groups_are_not_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open(dir.path());
    let records: Vec<_> = (0..300)
        .map(|i| {
            let mut a = activity(&format!("a{i}"), &format!("d{i}"));
            a.user_id = format!("u{}", i % 150);
            upsert(&a, 1)
        })
        .collect();
    index.apply(&records).await.expect("apply");
    let buckets = index
        .aggregate(&ActivityQuery::default(), GroupBy::User)
        .expect("user");
    assert_eq!(buckets.len(), 150);
    assert!(buckets.iter().all(|b| b.count == 2));
    assert_eq!(
        index
            .aggregate(&ActivityQuery::default(), GroupBy::Deal)
            .expect("deal")
            .len(),
        300
    );
}

#[tokio::test]
async fn cursor_pagination_returns_every_hit_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = open(dir.path());
    // 250 activities on only 7 distinct instants, in several commits (several segments).
    let all: Vec<_> = (0..250)
        .map(|i| {
            let mut a = activity(&format!("a{i}"), &format!("d{}", i % 13));
            a.occurred_at = t0() + Duration::minutes(i % 7);
            a
        })
        .collect();
    for chunk in all.chunks(60) {
        let records: Vec<_> = chunk.iter().map(|a| upsert(a, 1)).collect();
        index.apply(&records).await.expect("apply");
    }
    let mut expected: Vec<_> = all
        .iter()
        .map(|a| {
            (
                std::cmp::Reverse(a.occurred_at),
                a.key().stable_hash(),
                a.id.clone(),
            )
        })
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, _, id)| id).collect();

    let mut seen = Vec::new();
    let mut q = ActivityQuery {
        limit: 17,
        ..ActivityQuery::default()
    };
    let mut pages = 0;
    loop {
        let page = index.search(&q).expect("search");
        assert_eq!(page.total, 250, "total ignores the cursor");
        assert!(page.hits.len() <= 17);
        seen.extend(page.hits.into_iter().map(|h| h.activity.id));
        pages += 1;
        match page.next_cursor {
            // Cursors survive a round trip through text (CLI, HTTP).
            Some(cursor) => q.cursor = Some(cursor.to_string().parse().expect("cursor")),
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    assert_eq!(pages, 15);
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250);
    assert_eq!(seen, expected);

    // Count-only queries.
    let count = index
        .search(&ActivityQuery {
            limit: 0,
            ..ActivityQuery::default()
        })
        .expect("count");
    assert_eq!(
        (count.total, count.hits.len(), count.next_cursor),
        (250, 0, None)
    );
}

#[test]
fn bad_cursors_and_limits_are_clear_errors() {
    for text in [
        "",
        "zz",
        "0123456789abcdef0123456789abcdeg",
        "00000000000000000000000000000000ff",
    ] {
        let err = Cursor::parse(text).expect_err("bad cursor");
        assert_eq!(err.cursor, text);
        assert!(err.to_string().contains("next_cursor"), "{err}");
    }
    let q: Result<ActivityQuery, _> = serde_json::from_str(r#"{"cursor": "nope"}"#);
    assert!(q.is_err());
    let q: ActivityQuery = serde_json::from_str(r#"{"tenant_id": "t1"}"#).expect("defaults");
    assert_eq!(q.limit, crate::DEFAULT_LIMIT);

    let dir = tempfile::tempdir().expect("tempdir");
    let index = open(dir.path());
    let err = index
        .search(&ActivityQuery {
            limit: crate::MAX_LIMIT + 1,
            ..ActivityQuery::default()
        })
        .expect_err("too large");
    assert!(matches!(err, IndexError::InvalidQuery(_)), "{err}");
}

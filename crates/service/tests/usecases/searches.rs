//! Activity searches and aggregations through the service: the caller's tenant is always
//! the query's, every grouping counts what it says, limits and cursors are checked, and
//! a cursor walk reproduces the full result exactly once.

use crate::harness::*;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use std::collections::HashSet;
use tsunagu_domain::search::{ActivityQuery, Bucket, GroupBy, MAX_LIMIT};
use tsunagu_domain::ActionType;
use tsunagu_service::usecases::activities::{activity_query, NewActivity};
use tsunagu_service::{ServiceError, TenantId};

fn buckets(pairs: &[(&str, u64)]) -> Vec<Bucket> {
    pairs
        .iter()
        .map(|(key, count)| Bucket {
            key: key.to_string(),
            count: *count,
        })
        .collect()
}

/// The ids of every hit of `query`, following cursors page by page.
async fn walk(h: &Harness, t: &TenantId, mut query: ActivityQuery) -> (Vec<String>, u64, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = h
            .service
            .search_activities(t, query.clone(), None)
            .await
            .unwrap();
        pages += 1;
        ids.extend(page.hits.into_iter().map(|hit| hit.activity.id));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return (ids, page.total, pages),
        }
    }
}

#[tokio::test]
async fn every_grouping_counts_the_tenants_activities_across_deals() {
    let h = Harness::new();
    let t = tenant("t1");
    let tokyo = h.company(&t, "東京商事", "東京都港区").await;
    let osaka = h.company(&t, "大阪物産", "大阪府大阪市北区").await;
    let a = h.deal(&t, &tokyo.id, "A", &[]).await.id;
    let b = h.deal(&t, &osaka.id, "B", &[]).await.id;
    let day = |d: u32| {
        DateTime::parse_from_rfc3339(&format!("2026-11-{d:02}T23:30:00+00:00"))
            .unwrap()
            .with_timezone(&Utc)
    };
    let rows = [
        (
            &a,
            ActionType::Call,
            "u1",
            Some("no_answer"),
            day(1),
            vec!["重点", "新規"],
        ),
        (
            &a,
            ActionType::Call,
            "u2",
            Some("appointment"),
            day(1),
            vec!["重点"],
        ),
        (
            &a,
            ActionType::Visit,
            "u1",
            Some("appointment"),
            day(3),
            vec![],
        ),
        (&b, ActionType::Email, "u1", None, day(3), vec!["新規"]),
        (&b, ActionType::Call, "u1", None, day(20), vec![]),
    ];
    for (deal, action, user, result, at, tags) in rows {
        h.activity(
            &t,
            deal,
            NewActivity {
                result: result.map(str::to_string),
                tags: tags.into_iter().map(str::to_string).collect(),
                ..approach(action, user, at)
            },
        )
        .await;
    }
    // Another tenant's activities are never counted.
    let other = tenant("t2");
    let co = h.company(&other, "他社", "東京都港区").await;
    let d = h.deal(&other, &co.id, "他社案件", &[]).await;
    h.activity(&other, &d.id, visit_days_ago(1, "appointment"))
        .await;

    let mut by_deal = vec![(a.as_str(), 3), (b.as_str(), 2)];
    by_deal.sort_by_key(|(k, c)| (std::cmp::Reverse(*c), *k));
    let mut by_company = vec![(tokyo.id.as_str(), 3), (osaka.id.as_str(), 2)];
    by_company.sort_by_key(|(k, c)| (std::cmp::Reverse(*c), *k));
    let expected = [
        (
            GroupBy::Action,
            buckets(&[("call", 3), ("email", 1), ("visit", 1)]),
        ),
        (GroupBy::User, buckets(&[("u1", 4), ("u2", 1)])),
        (GroupBy::Deal, buckets(&by_deal)),
        (GroupBy::Company, buckets(&by_company)),
        // Activities without a result are not counted.
        (
            GroupBy::Result,
            buckets(&[("appointment", 2), ("no_answer", 1)]),
        ),
        // An activity counts once per tag.
        (GroupBy::Tag, buckets(&[("新規", 2), ("重点", 2)])),
        // UTC days, in day order.
        (
            GroupBy::Day,
            buckets(&[("2026-11-01", 2), ("2026-11-03", 2), ("2026-11-20", 1)]),
        ),
    ];
    for (by, want) in expected {
        let got = h
            .service
            .aggregate_activities(&t, ActivityQuery::default(), by, None)
            .await
            .unwrap();
        assert_eq!(got, want, "{by:?}");
    }
    // Filters apply before counting; the query's own tenant is replaced by the caller's.
    let query = ActivityQuery {
        tenant_id: Some("t2".into()),
        actions: vec![ActionType::Call],
        ..ActivityQuery::default()
    };
    let got = h
        .service
        .aggregate_activities(&t, query, GroupBy::User, None)
        .await
        .unwrap();
    assert_eq!(got, buckets(&[("u1", 2), ("u2", 1)]));
}

#[tokio::test]
async fn a_search_combines_axes_and_matches_japanese_memo_words() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "株式会社つなぐ", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &[]).await.id;
    let mut expected = HashSet::new();
    for i in 0..12i64 {
        let memo = if i % 2 == 0 {
            "見積を提出した。来週訪問の予定"
        } else {
            "雑談のみ"
        };
        let action = if i % 3 == 0 {
            ActionType::Call
        } else {
            ActionType::Visit
        };
        let user = format!("u{}", i % 2);
        let written = h
            .activity(
                &t,
                &deal,
                NewActivity {
                    memo: memo.into(),
                    ..approach(action, &user, start_of_test() - Duration::days(i))
                },
            )
            .await;
        if i % 2 == 0 && action == ActionType::Visit && i < 10 {
            expected.insert(written.value.id);
        }
    }
    let query = ActivityQuery {
        text: Some("見積 来週訪問".into()),
        actions: vec![ActionType::Visit],
        user_ids: vec!["u0".into()],
        // Inclusive from, exclusive to.
        occurred_from: Some(start_of_test() - Duration::days(9)),
        occurred_to: Some(start_of_test() + Duration::seconds(1)),
        limit: 100,
        ..ActivityQuery::default()
    };
    let page = h.service.search_activities(&t, query, None).await.unwrap();
    let got: HashSet<String> = page.hits.into_iter().map(|h| h.activity.id).collect();
    assert_eq!(got, expected);
    // A phrase word must occur as written: "訪問来週" is not in any memo.
    let query = ActivityQuery {
        text: Some("訪問来週".into()),
        ..ActivityQuery::default()
    };
    assert_eq!(
        h.service
            .search_activities(&t, query, None)
            .await
            .unwrap()
            .total,
        0
    );
}

/// Issue 19: text the search syntax cannot read is refused on `q`, naming the problem,
/// by the search, the aggregation and the record searches alike; never read another way
/// (a lone `・` used to match every memo).
#[tokio::test]
async fn unreadable_search_text_is_refused_naming_the_problem() {
    let h = Harness::new();
    let t = tenant("t1");
    for (text, says) in [
        ("・", "no letter, digit, kana or kanji"),
        ("見積 -", "excludes nothing"),
        ("\"見積", "not closed"),
        ("見積 OR", "needs a word or phrase on each side"),
    ] {
        let query = ActivityQuery {
            text: Some(text.into()),
            ..ActivityQuery::default()
        };
        let errors = [
            h.service
                .search_activities(&t, query.clone(), None)
                .await
                .map(|_| ()),
            h.service
                .aggregate_activities(&t, query, GroupBy::Action, None)
                .await
                .map(|_| ()),
        ];
        for error in errors {
            match error {
                Err(ServiceError::Invalid(issues)) => {
                    assert_eq!(issues.len(), 1, "{text:?}: {issues:?}");
                    assert_eq!(issues[0].field, "q");
                    assert!(issues[0].message.contains(says), "{text:?}: {issues:?}");
                }
                other => panic!("{text:?} must be refused, got {other:?}"),
            }
        }
    }
    // Blank text does not filter.
    let blank = ActivityQuery {
        text: Some("  ".into()),
        ..ActivityQuery::default()
    };
    assert!(h.service.search_activities(&t, blank, None).await.is_ok());
}

#[test]
fn limits_and_cursors_of_a_search_are_checked() {
    assert_eq!(activity_query(None, None).unwrap().limit, 20);
    assert_eq!(
        activity_query(Some(MAX_LIMIT), None).unwrap().limit,
        MAX_LIMIT
    );
    for limit in [0, MAX_LIMIT + 1] {
        assert_eq!(invalid_fields(activity_query(Some(limit), None)), ["limit"]);
    }
    for cursor in ["", "xyz", "0123456789abcdef0123456789abcdeg", "00"] {
        assert_eq!(
            invalid_fields(activity_query(None, Some(cursor))),
            ["cursor"]
        );
    }
    let cursor = "0000000000000001ffffffffffffffff";
    assert_eq!(
        activity_query(None, Some(cursor))
            .unwrap()
            .cursor
            .map(|c| c.to_string())
            .as_deref(),
        Some(cursor)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Following `next_cursor` from the first page returns every matching activity
    /// exactly once, in the order of one big page (occurred_at descending; ties, which
    /// are frequent here, broken by the key), whatever the page size; another tenant's
    /// activities never appear.
    #[test]
    fn a_cursor_walk_reproduces_the_full_result_exactly_once(
        // (tenant 0 or 1, minutes before now: few distinct values, so many ties)
        rows in prop::collection::vec((0u8..2, 0i64..6), 1..40),
        limit in 1usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = Harness::new();
            let tenants = [tenant("t1"), tenant("t2")];
            let mut deals = Vec::new();
            for t in &tenants {
                let co = h.company(t, "会社", "東京都港区").await;
                deals.push(h.deal(t, &co.id, "案件", &[]).await.id);
            }
            let mut mine = HashSet::new();
            for (who, minutes) in &rows {
                let who = usize::from(*who);
                let at = start_of_test() - Duration::minutes(*minutes);
                let a = h.activity(&tenants[who], &deals[who], approach(ActionType::Call, "u1", at)).await;
                if who == 0 {
                    mine.insert(a.value.id);
                }
            }
            let t = &tenants[0];
            let full = h.service.search_activities(t, ActivityQuery {
                limit: MAX_LIMIT,
                ..ActivityQuery::default()
            }, None).await.unwrap();
            let full_ids: Vec<String> = full.hits.iter().map(|h| h.activity.id.clone()).collect();
            let times: Vec<_> = full.hits.iter().map(|h| h.activity.occurred_at).collect();
            prop_assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
            prop_assert_eq!(full_ids.iter().cloned().collect::<HashSet<_>>(), mine.clone());

            let (walked, total, pages) = walk(&h, t, ActivityQuery {
                limit,
                ..ActivityQuery::default()
            }).await;
            prop_assert_eq!(&walked, &full_ids);
            prop_assert_eq!(total, mine.len() as u64);
            prop_assert_eq!(pages, mine.len().div_ceil(limit).max(1));
            Ok(())
        })?;
    }
}

//! Deals: creation on the tenant's own company, tags kept normalized, tagging retried
//! over competing writers, tag counts, and the deal search combining company filters,
//! tags, list membership and facts about activities relative to the clock.

use crate::harness::*;
use chrono::{Duration, NaiveDate};
use std::collections::BTreeSet;
use tsunagu_domain::search::Bucket;
use tsunagu_domain::{ActionType, DealStage, Entity};
use tsunagu_service::usecases::deals::{
    DealPatch, DealSearch, LastActivity, NoActivity, MAX_WITHIN_DAYS,
};
use tsunagu_service::usecases::sales_lists::NewSalesList;
use tsunagu_service::{ServiceError, TenantId};

/// The ids of a deal search (every page), sorted.
async fn found(h: &Harness, t: &TenantId, search: DealSearch) -> BTreeSet<String> {
    let page = h.service.search_deals(t, search).await.unwrap();
    assert_eq!(
        page.total as usize,
        page.deals.len(),
        "one page holds them all"
    );
    page.deals.into_iter().map(|(_, d)| d.id).collect()
}

fn ids<'a>(deals: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    deals.into_iter().cloned().collect()
}

#[tokio::test]
async fn a_deal_is_created_on_the_tenants_company_with_its_tags_normalized() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let written = h
        .service
        .create_deal(
            &t,
            NewDeal {
                expected_close_date: NaiveDate::from_ymd_opt(2027, 3, 31),
                ..new_deal(
                    &co.id,
                    "  基幹システム刷新 ",
                    &[" 重点", "新規", "重点 ", "新規"],
                )
            },
        )
        .await
        .unwrap();
    let d = &written.value;
    assert!(d.id.starts_with("dl_"));
    assert_eq!(d.title, "基幹システム刷新");
    assert_eq!(
        d.tags,
        ["新規", "重点"],
        "trimmed, sorted, without duplicates"
    );
    assert_eq!(
        (d.company_id.as_str(), d.stage),
        (co.id.as_str(), DealStage::Lead)
    );
    assert_eq!(
        h.service.get_deal(&t, &d.id).await.unwrap(),
        (written.version, d.clone())
    );
    assert_not_found(
        h.service
            .create_deal(&t, new_deal("co_missing", "案件", &[]))
            .await,
        "company",
        "co_missing",
    );
    // The stage defaults to lead when the input leaves it out.
    let input: NewDeal = serde_json::from_value(
        serde_json::json!({"company_id": co.id, "title": "t", "owner_id": "u1"}),
    )
    .unwrap();
    assert_eq!((input.stage, input.amount), (DealStage::Lead, 0));
    let err = serde_json::from_value::<NewDeal>(
        serde_json::json!({"company_id": co.id, "title": "t", "owner_id": "u1", "stage": "maybe"}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("negotiation"), "the choices are listed: {err}");
}

#[tokio::test]
async fn broken_deal_fields_are_named() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    for (input, fields) in [
        (
            NewDeal {
                amount: -1,
                owner_id: String::new(),
                ..new_deal(&co.id, " ", &[])
            },
            vec!["owner_id", "title", "amount"],
        ),
        (
            NewDeal {
                amount: 1_000_000_000_001,
                ..new_deal(&co.id, "案件", &[])
            },
            vec!["amount"],
        ),
        (new_deal(&co.id, "案件", &["  "]), vec!["tags"]),
        (
            NewDeal {
                tags: (0..33).map(|i| format!("t{i}")).collect(),
                ..new_deal(&co.id, "案件", &[])
            },
            vec!["tags"],
        ),
    ] {
        assert_eq!(
            invalid_fields(h.service.create_deal(&t, input.clone()).await),
            fields,
            "{input:?}"
        );
    }
}

#[tokio::test]
async fn an_edit_replaces_the_tags_normalized_and_null_clears_the_close_date() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let created = h
        .service
        .create_deal(
            &t,
            NewDeal {
                expected_close_date: NaiveDate::from_ymd_opt(2027, 3, 31),
                ..new_deal(&co.id, "案件", &["重点"])
            },
        )
        .await
        .unwrap();
    let edited = h
        .service
        .edit_deal(
            &t,
            &created.value.id,
            DealPatch {
                tags: Some(vec!["b".into(), " a".into(), "b".into()]),
                expected_close_date: Some(None),
                stage: Some(DealStage::Won),
                title: Some(" 受注 ".into()),
                ..deal_patch(created.version)
            },
        )
        .await
        .unwrap();
    let d = &edited.value;
    assert_eq!(d.tags, ["a", "b"]);
    assert_eq!(d.expected_close_date, None);
    assert_eq!(
        (d.stage, d.title.as_str(), d.amount),
        (DealStage::Won, "受注", 1_000_000)
    );
    let stale = h
        .service
        .edit_deal(&t, &d.id, deal_patch(created.version))
        .await;
    assert!(
        matches!(stale, Err(ServiceError::Conflict { what: "deal", current: Some(v), .. }) if v == edited.version),
        "{stale:?}"
    );
}

#[tokio::test]
async fn tagging_adds_or_removes_one_tag_and_changing_nothing_writes_nothing() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &["b"]).await;
    let tagged = h.service.tag_deal(&t, &deal.id, " a ", true).await.unwrap();
    assert_eq!(tagged.value.tags, ["a", "b"]);
    let attempts = h.primary.write_attempts();
    let again = h.service.tag_deal(&t, &deal.id, "a", true).await.unwrap();
    assert_eq!(
        again.version, tagged.version,
        "already tagged: same version"
    );
    assert_eq!(again.token.version, tagged.version);
    assert_eq!(again.token.committed_at_us, 0, "nothing committed");
    let absent = h
        .service
        .tag_deal(&t, &deal.id, "zzz", false)
        .await
        .unwrap();
    assert_eq!(absent.version, tagged.version);
    assert_eq!(
        h.primary.write_attempts(),
        attempts,
        "no write for no change"
    );
    let untagged = h.service.tag_deal(&t, &deal.id, " b", false).await.unwrap();
    assert_eq!(untagged.value.tags, ["a"], "the tag to remove is trimmed");
    assert!(untagged.version > tagged.version);
    assert_eq!(
        invalid_fields(
            h.service
                .tag_deal(&t, &deal.id, &"タ".repeat(65), true)
                .await
        ),
        ["tags"]
    );
    assert_not_found(
        h.service.tag_deal(&t, "dl_missing", "a", true).await,
        "deal",
        "dl_missing",
    );
}

#[tokio::test]
async fn tagging_is_retried_when_another_writer_wins_and_keeps_their_change() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &[]).await;
    // Three competing writes: the fourth attempt wins.
    h.primary.interfere(deal.key(), 3, |e| {
        if let Entity::Deal(d) = e {
            d.amount += 1;
            d.tags.push(format!("other{}", d.amount % 10));
        }
    });
    let attempts = h.primary.write_attempts();
    let tagged = h
        .service
        .tag_deal(&t, &deal.id, "重点", true)
        .await
        .unwrap();
    assert_eq!(h.primary.write_attempts(), attempts + 4);
    assert_eq!(
        tagged.value.amount,
        deal.amount + 3,
        "the other writes are kept"
    );
    assert_eq!(tagged.value.tags, ["other1", "other2", "other3", "重点"]);
    assert_eq!(
        h.primary.stored(&deal.key()),
        Some((tagged.version, Entity::Deal(tagged.value.clone())))
    );
    // Four competing writes: after three retries the conflict is the caller's.
    h.primary.interfere(deal.key(), 4, |e| {
        if let Entity::Deal(d) = e {
            d.amount += 1;
        }
    });
    let lost = h.service.tag_deal(&t, &deal.id, "新規", true).await;
    let (current, _) = h.primary.stored(&deal.key()).unwrap();
    assert!(
        matches!(lost, Err(ServiceError::Conflict { current: Some(c), .. }) if c == current),
        "{lost:?}"
    );
    // A deletion by another writer meanwhile: the retry finds no deal.
    h.primary.delete_before_next_write(deal.key());
    assert_not_found(
        h.service.tag_deal(&t, &deal.id, "新規", true).await,
        "deal",
        &deal.id,
    );
}

#[tokio::test]
async fn tag_counts_are_the_tenants_most_used_first() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    h.deal(&t, &co.id, "A", &["重点", "新規"]).await;
    h.deal(&t, &co.id, "B", &["重点"]).await;
    let c = h.deal(&t, &co.id, "C", &["既存"]).await;
    let other = tenant("t2");
    let co2 = h.company(&other, "他社", "東京都港区").await;
    h.deal(&other, &co2.id, "X", &["既存", "既存2"]).await;
    h.service.tag_deal(&t, &c.id, "重点", true).await.unwrap();
    let tags = h.service.deal_tags(&t, None).await.unwrap();
    let expected = [("重点", 3), ("新規", 1), ("既存", 1)];
    let mut expected: Vec<Bucket> = expected
        .into_iter()
        .map(|(k, n)| Bucket {
            key: k.into(),
            count: n,
        })
        .collect();
    expected[1..].sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(tags, expected);
}

/// The deals of the HTTP scenario, with activities relative to the clock.
struct Scenario {
    h: Harness,
    t: TenantId,
    /// A: called 2 days ago; last visit no_answer (1 day ago) after an appointment.
    a: String,
    /// B: called 20 days ago; last visit an appointment (3 days ago) after no_answer.
    b: String,
    /// C: no activity.
    c: String,
    /// D: no tag.
    d: String,
    /// E: in 大阪府; last visit an appointment.
    e: String,
    tokyo: String,
}

async fn scenario() -> Scenario {
    let h = Harness::new();
    let t = tenant("t1");
    let tokyo = h
        .company_in(
            &t,
            "東京商事",
            "〒163-8001 東京都新宿区西新宿2-8-1",
            Some("商社"),
        )
        .await;
    let osaka = h
        .company_in(&t, "大阪物産", "大阪市北区梅田1-1", Some("製造業"))
        .await;
    let a = h.deal(&t, &tokyo.id, "A 最近電話あり", &["重点"]).await.id;
    let b = h.deal(&t, &tokyo.id, "B 電話は20日前", &["重点"]).await.id;
    let c = h.deal(&t, &tokyo.id, "C 活動なし", &["重点"]).await.id;
    let d = h.deal(&t, &tokyo.id, "D タグなし", &[]).await.id;
    let e = h.deal(&t, &osaka.id, "E 大阪", &["重点"]).await.id;
    h.activity(&t, &a, call_days_ago(2)).await;
    h.activity(&t, &b, call_days_ago(20)).await;
    h.activity(&t, &b, visit_days_ago(10, "no_answer")).await;
    h.activity(&t, &b, visit_days_ago(3, "appointment")).await;
    h.activity(&t, &a, visit_days_ago(9, "appointment")).await;
    h.activity(&t, &a, visit_days_ago(1, "no_answer")).await;
    h.activity(&t, &e, visit_days_ago(4, "appointment")).await;
    // Another tenant's deal that would match every condition.
    let other = tenant("t2");
    let co = h.company(&other, "他社", "東京都新宿区").await;
    let x = h.deal(&other, &co.id, "X", &["重点"]).await;
    h.activity(&other, &x.id, visit_days_ago(1, "appointment"))
        .await;
    Scenario {
        h,
        t,
        a,
        b,
        c,
        d,
        e,
        tokyo: tokyo.id,
    }
}

#[tokio::test]
async fn the_deal_search_combines_company_tags_lists_and_activity_facts() {
    let s = scenario().await;
    let (h, t) = (&s.h, &s.t);
    let no_call_14 = || NoActivity {
        action: Some(ActionType::Call),
        within_days: 14,
    };
    let appointment = || LastActivity {
        action: Some(ActionType::Visit),
        result: "appointment".into(),
    };
    let cases = [
        (
            DealSearch {
                prefectures: vec!["東京".into()],
                tags: vec!["重点".into()],
                no_activity: Some(no_call_14()),
                ..DealSearch::default()
            },
            ids([&s.b, &s.c]),
        ),
        (
            DealSearch {
                last_activity: Some(appointment()),
                ..DealSearch::default()
            },
            ids([&s.b, &s.e]),
        ),
        (
            DealSearch {
                prefectures: vec!["東京都".into()],
                last_activity: Some(appointment()),
                ..DealSearch::default()
            },
            ids([&s.b]),
        ),
        // Any kind of activity: A's latest is a no_answer visit.
        (
            DealSearch {
                last_activity: Some(LastActivity {
                    action: None,
                    result: "no_answer".into(),
                }),
                ..DealSearch::default()
            },
            ids([&s.a]),
        ),
        // No activity of any kind within 2 days: A's visit was yesterday.
        (
            DealSearch {
                no_activity: Some(NoActivity {
                    action: None,
                    within_days: 2,
                }),
                ..DealSearch::default()
            },
            ids([&s.b, &s.c, &s.d, &s.e]),
        ),
        (
            DealSearch {
                industries: vec!["製造業".into()],
                ..DealSearch::default()
            },
            ids([&s.e]),
        ),
        // Company ids intersect with the company filters.
        (
            DealSearch {
                prefectures: vec!["大阪".into()],
                company_ids: vec![s.tokyo.clone()],
                ..DealSearch::default()
            },
            ids([]),
        ),
        (
            DealSearch {
                prefectures: vec!["沖縄".into()],
                ..DealSearch::default()
            },
            ids([]),
        ),
        (
            DealSearch {
                text: Some("電話".into()),
                tags: vec!["重点".into()],
                ..DealSearch::default()
            },
            ids([&s.a, &s.b]),
        ),
    ];
    for (search, want) in cases {
        assert_eq!(found(h, t, search.clone()).await, want, "{search:?}");
    }
    // Sales-list membership, combined with the tags and the activity facts.
    let list = h
        .service
        .create_sales_list(
            t,
            NewSalesList {
                name: "今月の重点".into(),
                deal_ids: vec![s.a.clone(), s.d.clone(), s.b.clone()],
            },
        )
        .await
        .unwrap()
        .value;
    let in_list = |extra: DealSearch| DealSearch {
        sales_list_id: Some(list.id.clone()),
        ..extra
    };
    assert_eq!(
        found(h, t, in_list(DealSearch::default())).await,
        ids([&s.a, &s.b, &s.d])
    );
    assert_eq!(
        found(
            h,
            t,
            in_list(DealSearch {
                tags: vec!["重点".into()],
                ..DealSearch::default()
            })
        )
        .await,
        ids([&s.a, &s.b])
    );
    assert_eq!(
        found(
            h,
            t,
            in_list(DealSearch {
                last_activity: Some(appointment()),
                ..DealSearch::default()
            })
        )
        .await,
        ids([&s.b])
    );
    let empty = h
        .service
        .create_sales_list(
            t,
            NewSalesList {
                name: "空".into(),
                deal_ids: vec![],
            },
        )
        .await
        .unwrap()
        .value;
    let page = h
        .service
        .search_deals(
            t,
            DealSearch {
                sales_list_id: Some(empty.id),
                ..DealSearch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (page.total, page.deals.len(), page.next_cursor),
        (0, 0, None)
    );
    assert_not_found(
        h.service
            .search_deals(
                t,
                DealSearch {
                    sales_list_id: Some("sl_missing".into()),
                    ..DealSearch::default()
                },
            )
            .await,
        "sales list",
        "sl_missing",
    );
}

#[tokio::test]
async fn no_activity_looks_back_from_the_clock_with_an_inclusive_bound() {
    let s = scenario().await;
    let (h, t) = (&s.h, &s.t);
    let no_call = |days| DealSearch {
        no_activity: Some(NoActivity {
            action: Some(ActionType::Call),
            within_days: days,
        }),
        ..DealSearch::default()
    };
    // A's call was exactly 2 days before now: within 2 days (the bound is inclusive).
    assert!(!found(h, t, no_call(2)).await.contains(&s.a));
    // A second later it is not.
    h.clock.advance(Duration::seconds(1));
    assert!(found(h, t, no_call(2)).await.contains(&s.a));
    // B's call (20 days ago) stops counting within 20 days a day later.
    assert!(!found(h, t, no_call(21)).await.contains(&s.b));
    h.clock.advance(Duration::days(1));
    assert!(found(h, t, no_call(21)).await.contains(&s.b));
    assert_eq!(
        found(h, t, no_call(MAX_WITHIN_DAYS)).await,
        ids([&s.c, &s.d, &s.e])
    );
    for days in [0, MAX_WITHIN_DAYS + 1] {
        assert_eq!(
            invalid_fields(h.service.search_deals(t, no_call(days)).await),
            ["no_activity.within_days"]
        );
    }
}

#[tokio::test]
async fn the_latest_activity_decides_even_when_it_has_no_result_or_is_edited() {
    let s = scenario().await;
    let (h, t) = (&s.h, &s.t);
    let appointment = DealSearch {
        last_activity: Some(LastActivity {
            action: Some(ActionType::Visit),
            result: "appointment".into(),
        }),
        ..DealSearch::default()
    };
    // A visit without a result after E's appointment: E's last visit has no result.
    let latest = h
        .activity(
            t,
            &s.e,
            tsunagu_service::usecases::activities::NewActivity {
                result: None,
                ..visit_days_ago(1, "x")
            },
        )
        .await;
    assert_eq!(found(h, t, appointment.clone()).await, ids([&s.b]));
    // Deleting that visit makes the appointment the latest again.
    h.service
        .delete_activity(t, &s.e, &latest.value.id, latest.version.0)
        .await
        .unwrap();
    assert_eq!(found(h, t, appointment).await, ids([&s.b, &s.e]));
}

#[tokio::test]
async fn deal_pages_follow_the_cursor_and_bad_paging_is_named() {
    let s = scenario().await;
    let (h, t) = (&s.h, &s.t);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = h
            .service
            .search_deals(
                t,
                DealSearch {
                    limit: Some(2),
                    cursor,
                    ..DealSearch::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 5);
        assert!(page.deals.len() <= 2);
        seen.extend(page.deals.into_iter().map(|(_, d)| d.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(ids(&seen), ids([&s.a, &s.b, &s.c, &s.d, &s.e]));
    for (search, field) in [
        (
            DealSearch {
                limit: Some(1001),
                ..DealSearch::default()
            },
            "limit",
        ),
        (
            DealSearch {
                cursor: Some("x".into()),
                ..DealSearch::default()
            },
            "cursor",
        ),
        (
            DealSearch {
                prefectures: vec!["ニューヨーク".into()],
                ..DealSearch::default()
            },
            "prefecture",
        ),
    ] {
        assert_eq!(
            invalid_fields(h.service.search_deals(t, search).await),
            [field]
        );
    }
}

use tsunagu_service::usecases::deals::NewDeal;

/// Regression: the deal search compared its tags untrimmed while tags are stored trimmed
/// (creation, edits and tagging all trim), so `" 重点"` found no deal tagged 重点.
#[tokio::test]
async fn the_deal_search_trims_its_tags_as_they_are_stored() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let tagged = h.deal(&t, &co.id, "A", &[" 重点 "]).await;
    h.deal(&t, &co.id, "B", &["新規"]).await;
    let search = DealSearch {
        tags: vec![" 重点".into(), "重点 ".into()],
        ..DealSearch::default()
    };
    assert_eq!(found(&h, &t, search).await, ids([&tagged.id]));
}

/// Four taggers at once on one deal: each conflict means another tagger won, so none
/// loses more than three times and the three retries make every one succeed; the deal
/// ends with every tag, and the store's versions of it strictly increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_taggers_all_succeed_and_every_tag_stays() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &[]).await;
    let tags: [&'static str; 4] = ["a", "b", "c", "d"];
    let tasks: Vec<_> = tags
        .into_iter()
        .map(|tag| {
            let (service, t, id) = (h.service.clone(), t.clone(), deal.id.clone());
            tokio::spawn(async move { service.tag_deal(&t, &id, tag, true).await })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap().version);
    }
    let (_, stored) = h.service.get_deal(&t, &deal.id).await.unwrap();
    assert_eq!(stored.tags, tags);
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 4, "each tagger made its own version");
    let of_deal: Vec<_> = h
        .primary
        .log()
        .into_iter()
        .filter(|r| r.key == deal.key())
        .map(|r| r.version)
        .collect();
    assert!(of_deal.windows(2).all(|w| w[0] < w[1]), "{of_deal:?}");
}

/// A deal search whose range cannot match anything is refused, naming the upper bound,
/// as the activity search refuses `from` after `to`.
#[tokio::test]
async fn a_deal_search_with_an_empty_range_is_refused() {
    let h = Harness::new();
    let t = tenant("t1");
    let amounts = DealSearch {
        amount_min: Some(2_000_000),
        amount_max: Some(1_000_000),
        ..DealSearch::default()
    };
    assert_eq!(
        invalid_fields(h.service.search_deals(&t, amounts).await),
        ["amount_max"]
    );
    let dates = DealSearch {
        close_from: chrono::NaiveDate::from_ymd_opt(2026, 12, 31),
        close_to: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
        ..DealSearch::default()
    };
    assert_eq!(
        invalid_fields(h.service.search_deals(&t, dates).await),
        ["close_to"]
    );
    let equal = DealSearch {
        amount_min: Some(1_000_000),
        amount_max: Some(1_000_000),
        ..DealSearch::default()
    };
    assert!(h.service.search_deals(&t, equal).await.is_ok());
}

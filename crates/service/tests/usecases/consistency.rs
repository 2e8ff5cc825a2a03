//! Read-your-writes through the use cases: a search given a write's token waits for the
//! index, returns `NotConsistentYet` after the bounded wait, and sees the write once it
//! is applied; a token that no write handed out is invalid on every search.

use crate::harness::*;
use std::time::{Duration, Instant};
use tsunagu_domain::search::{ActivityQuery, GroupBy};
use tsunagu_service::usecases::companies::CompanySearch;
use tsunagu_service::usecases::deals::DealSearch;
use tsunagu_service::{ConsistencyToken, ServiceError};

#[tokio::test]
async fn a_search_with_an_unapplied_writes_token_waits_then_is_not_consistent_yet() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &[]).await;
    h.feed.set_delivery(Delivery::Held);
    let written = h.activity(&t, &deal.id, call_days_ago(1)).await;
    let token = written.token.to_string();
    assert_eq!(h.feed.held(), 1);

    // Without the token the search answers at once, without the write.
    let page = h
        .service
        .search_activities(&t, ActivityQuery::default(), None)
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    let started = Instant::now();
    let result = h
        .service
        .search_activities(&t, ActivityQuery::default(), Some(&token))
        .await;
    let waited = started.elapsed();
    match result {
        Err(ServiceError::NotConsistentYet { waited_ms }) => {
            assert!(
                waited_ms >= CONSISTENCY_WAIT.as_millis() as u64,
                "{waited_ms}"
            );
        }
        other => panic!("expected not consistent yet, got {other:?}"),
    }
    assert!(
        waited >= CONSISTENCY_WAIT && waited < CONSISTENCY_WAIT * 10,
        "{waited:?}"
    );

    h.feed.release_all().await;
    let page = h
        .service
        .search_activities(&t, ActivityQuery::default(), Some(&token))
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.hits[0].activity, written.value);
    assert_eq!(page.hits[0].version, written.version);
}

#[tokio::test]
async fn a_write_released_during_the_wait_is_seen_by_the_waiting_search() {
    let h = Harness::new();
    let t = tenant("t1");
    h.feed.set_delivery(Delivery::Held);
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &["重点"]).await;
    let tagged = h
        .service
        .tag_deal(&t, &deal.id, "新規", true)
        .await
        .unwrap();
    let token = tagged.token.to_string();
    let search = h.service.clone();
    let t2 = t.clone();
    let waiting = tokio::spawn(async move { search.deal_tags(&t2, Some(&token)).await });
    tokio::time::sleep(CONSISTENCY_WAIT / 4).await;
    h.feed.release_all().await;
    let tags = waiting.await.unwrap().unwrap();
    let keys: Vec<&str> = tags.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(keys, ["新規", "重点"]);
}

#[tokio::test]
async fn a_token_also_waits_for_every_write_committed_before_it() {
    // Two writes, the first still unapplied: the second's token is not shown even if
    // the index had the second (the feed applies in commit order; here only the first
    // is released, then both).
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &[]).await;
    h.feed.set_delivery(Delivery::Held);
    let first = h.activity(&t, &deal.id, call_days_ago(1)).await;
    let second = h.activity(&t, &deal.id, call_days_ago(2)).await;
    h.feed.release(1).await;
    let page = h
        .service
        .search_activities(&t, ActivityQuery::default(), Some(&first.token.to_string()))
        .await
        .unwrap();
    assert_eq!(page.total, 1, "the first is seen, the second is still held");
    let result = h
        .service
        .search_activities(
            &t,
            ActivityQuery::default(),
            Some(&second.token.to_string()),
        )
        .await;
    assert!(
        matches!(result, Err(ServiceError::NotConsistentYet { .. })),
        "{result:?}"
    );
    h.feed.release_all().await;
    let page = h
        .service
        .search_activities(
            &t,
            ActivityQuery::default(),
            Some(&second.token.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(page.total, 2);
}

#[tokio::test]
async fn a_deletions_token_makes_the_search_miss_the_deleted_activity() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &[]).await;
    let a = h.activity(&t, &deal.id, call_days_ago(1)).await;
    h.feed.set_delivery(Delivery::Held);
    let deleted = h
        .service
        .delete_activity(&t, &deal.id, &a.value.id, a.version.0)
        .await
        .unwrap();
    let token = deleted.token.to_string();
    // The index still has it until the deletion is applied.
    let page = h
        .service
        .search_activities(&t, ActivityQuery::default(), None)
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    h.feed.release_all().await;
    let page = h
        .service
        .search_activities(&t, ActivityQuery::default(), Some(&token))
        .await
        .unwrap();
    assert_eq!(page.total, 0);
}

#[tokio::test]
async fn the_token_of_a_write_that_changed_nothing_is_shown_at_once() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &["重点"]).await;
    h.feed.set_delivery(Delivery::Held);
    let unchanged = h
        .service
        .tag_deal(&t, &deal.id, "重点", true)
        .await
        .unwrap();
    assert_eq!(h.feed.held(), 0);
    let token = unchanged.token.to_string();
    assert_eq!(ConsistencyToken::parse(&token).unwrap(), unchanged.token);
    let tags = h.service.deal_tags(&t, Some(&token)).await.unwrap();
    assert_eq!(tags.len(), 1);
}

#[tokio::test]
async fn every_search_refuses_a_token_no_write_handed_out() {
    let h = Harness::new();
    let t = tenant("t1");
    let s = &h.service;
    for garbage in ["", "ct1.", "ct1.zz", "ct0.4142", "トークン", "ct1.31"] {
        let g = Some(garbage);
        let outcomes = [
            invalid_fields(s.search_activities(&t, ActivityQuery::default(), g).await),
            invalid_fields(
                s.aggregate_activities(&t, ActivityQuery::default(), GroupBy::Action, g)
                    .await,
            ),
            invalid_fields(s.search_companies(&t, CompanySearch::default(), g).await),
            invalid_fields(s.deal_tags(&t, g).await),
            invalid_fields(
                s.search_deals(
                    &t,
                    DealSearch {
                        consistency_token: Some(garbage.into()),
                        ..DealSearch::default()
                    },
                )
                .await,
            ),
            invalid_fields(s.list_sales_lists(&t, None, None, g).await),
        ];
        for fields in outcomes {
            assert_eq!(fields, ["consistency_token"], "{garbage:?}");
        }
    }
    // A well-formed token of a write that never happened is refused at once (issue 18:
    // it waited out the bound and answered 503 "retry").
    let forged = ConsistencyToken {
        key: tsunagu_domain::ItemKey::new("dl_none", "deal"),
        version: tsunagu_domain::Version(1),
        committed_at_us: 1,
        tenant: Some(t.0.clone()),
    };
    let started = Instant::now();
    let result = s.deal_tags(&t, Some(&forged.to_string())).await;
    assert_eq!(invalid_fields(result), ["consistency_token"]);
    assert!(
        started.elapsed() < CONSISTENCY_WAIT,
        "{:?}",
        started.elapsed()
    );
}

/// Issue 18: a token is bound to the tenant whose write it is.
#[tokio::test]
async fn a_token_of_another_tenant_is_refused_at_once() {
    let h = Harness::new();
    let (t1, t2) = (tenant("t1"), tenant("t2"));
    let co = h.company(&t1, "東京商事", "東京都港区").await;
    let deal = h.deal(&t1, &co.id, "案件", &[]).await;
    h.feed.set_delivery(Delivery::Held);
    let written = h.activity(&t1, &deal.id, call_days_ago(1)).await;
    let token = written.token.to_string();
    // Bound to t1 in the token itself.
    let started = Instant::now();
    let result = h
        .service
        .search_activities(&t2, ActivityQuery::default(), Some(&token))
        .await;
    assert_eq!(invalid_fields(result), ["consistency_token"]);
    // A token handed out before the binding (no tenant in it): the primary says whose
    // item it is.
    let legacy = ConsistencyToken {
        tenant: None,
        ..written.token.clone()
    }
    .to_string();
    let result = h
        .service
        .search_activities(&t2, ActivityQuery::default(), Some(&legacy))
        .await;
    assert_eq!(invalid_fields(result), ["consistency_token"]);
    assert!(
        started.elapsed() < CONSISTENCY_WAIT,
        "{:?}",
        started.elapsed()
    );
    // The owner's searches still wait for it, with either form.
    h.feed.release_all().await;
    for token in [&token, &legacy] {
        let page = h
            .service
            .search_activities(&t1, ActivityQuery::default(), Some(token))
            .await
            .unwrap();
        assert_eq!(page.total, 1);
    }
}

/// Issue 18: a token whose version the primary never reached is refused at once; a
/// delete's token (its item gone from the primary) is waited on as before.
#[tokio::test]
async fn a_version_the_primary_never_had_is_refused_and_a_deletes_token_is_waited_on() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let deal = h.deal(&t, &co.id, "案件", &[]).await;
    let written = h.activity(&t, &deal.id, call_days_ago(1)).await;
    let ahead = ConsistencyToken {
        version: tsunagu_domain::Version(written.version.0 + 5),
        ..written.token.clone()
    };
    let result = h
        .service
        .search_activities(&t, ActivityQuery::default(), Some(&ahead.to_string()))
        .await;
    assert_eq!(invalid_fields(result), ["consistency_token"]);

    // Created and deleted while replication is held: neither the primary nor the index
    // has the item, and the token is fresh, so the search waits (and succeeds once
    // replicated) instead of refusing it.
    h.feed.set_delivery(Delivery::Held);
    let written = h.activity(&t, &deal.id, call_days_ago(1)).await;
    let deleted = h
        .service
        .delete_activity(&t, &deal.id, &written.value.id, written.version.0)
        .await
        .unwrap();
    let token = deleted.token.to_string();
    let result = h
        .service
        .search_activities(&t, ActivityQuery::default(), Some(&token))
        .await;
    assert!(
        matches!(result, Err(ServiceError::NotConsistentYet { .. })),
        "{result:?}"
    );
    h.feed.release_all().await;
    let page = h
        .service
        .search_activities(&t, ActivityQuery::default(), Some(&token))
        .await
        .unwrap();
    assert_eq!(page.total, 1, "the first activity only");
    // Long after, the delete's token still works: the index keeps the tombstone.
    h.clock.advance(chrono::Duration::hours(1));
    h.service
        .search_activities(&t, ActivityQuery::default(), Some(&token))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_wait_is_bounded_by_the_services_option() {
    // The bound is the option, not a constant: the harness's 100 ms, far below the
    // default 5 s.
    let h = Harness::new();
    let t = tenant("t1");
    h.feed.set_delivery(Delivery::Held);
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let started = Instant::now();
    let result = h
        .service
        .search_companies(&t, CompanySearch::default(), Some(&h_token(&co.id)))
        .await;
    assert!(
        matches!(result, Err(ServiceError::NotConsistentYet { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A token for the company `id`'s creation (version 1).
fn h_token(id: &str) -> String {
    ConsistencyToken {
        key: tsunagu_domain::Company::key_for(id),
        version: tsunagu_domain::Version(1),
        committed_at_us: 1,
        tenant: Some("t1".into()),
    }
    .to_string()
}

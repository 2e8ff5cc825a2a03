//! Tenant isolation: another tenant's ids are not found on every use case that takes an
//! id (and nothing is written), and searches never return another tenant's data.

use crate::harness::*;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use tsunagu_domain::search::{ActivityQuery, GroupBy};
use tsunagu_domain::ActionType;
use tsunagu_service::usecases::activities::{ActivityPatch, NewActivity};
use tsunagu_service::usecases::companies::{CompanyPatch, CompanySearch};
use tsunagu_service::usecases::deals::{DealPatch, DealSearch};
use tsunagu_service::usecases::sales_lists::{AddDeals, NewSalesList};

#[tokio::test]
async fn another_tenants_ids_are_not_found_on_every_use_case_and_nothing_is_written() {
    let h = Harness::new();
    let a = tenant("a");
    let b = tenant("b");
    let co = h.company(&a, "A社", "東京都港区").await;
    let deal = h.deal(&a, &co.id, "A案件", &["重点"]).await;
    let act = h.activity(&a, &deal.id, call_days_ago(1)).await;
    let list = h
        .service
        .create_sales_list(
            &a,
            NewSalesList {
                name: "Aのリスト".into(),
                deal_ids: vec![deal.id.clone()],
            },
        )
        .await
        .unwrap();
    // B's own deal, to add to A's list, and B's own list, to add A's deal to.
    let b_co = h.company(&b, "B社", "大阪府大阪市").await;
    let b_deal = h.deal(&b, &b_co.id, "B案件", &[]).await;
    let b_list = h
        .service
        .create_sales_list(
            &b,
            NewSalesList {
                name: "Bのリスト".into(),
                deal_ids: vec![],
            },
        )
        .await
        .unwrap();
    let log = h.primary.log().len();
    let s = &h.service;
    let (co_id, deal_id, act_id, list_id) = (&co.id, &deal.id, &act.value.id, &list.value.id);
    let current = |version| CompanyPatch {
        name: Some("乗っ取り".into()),
        ..company_patch(version)
    };

    assert_not_found(s.company(&b, co_id).await, "company", co_id);
    let (cv, _) = s.company(&a, co_id).await.unwrap();
    assert_not_found(
        s.edit_company(&b, co_id, current(cv)).await,
        "company",
        co_id,
    );
    assert_not_found(
        s.create_deal(&b, new_deal(co_id, "B案件", &[])).await,
        "company",
        co_id,
    );
    assert_not_found(s.get_deal(&b, deal_id).await, "deal", deal_id);
    let (dv, _) = s.get_deal(&a, deal_id).await.unwrap();
    assert_not_found(
        s.edit_deal(
            &b,
            deal_id,
            DealPatch {
                title: Some("乗っ取り".into()),
                ..deal_patch(dv)
            },
        )
        .await,
        "deal",
        deal_id,
    );
    assert_not_found(s.tag_deal(&b, deal_id, "x", true).await, "deal", deal_id);
    assert_not_found(
        s.tag_deal(&b, deal_id, "重点", false).await,
        "deal",
        deal_id,
    );
    assert_not_found(
        s.record_activity(&b, deal_id, call_days_ago(1)).await,
        "deal",
        deal_id,
    );
    assert_not_found(s.activity(&b, deal_id, act_id).await, "activity", act_id);
    assert_not_found(
        s.edit_activity(
            &b,
            deal_id,
            act_id,
            ActivityPatch {
                memo: Some("乗っ取り".into()),
                ..activity_patch(act.version)
            },
        )
        .await,
        "activity",
        act_id,
    );
    assert_not_found(
        s.delete_activity(&b, deal_id, act_id, act.version.0).await,
        "activity",
        act_id,
    );
    assert_not_found(s.sales_list(&b, list_id).await, "sales list", list_id);
    assert_not_found(
        s.add_deals_to_list(
            &b,
            list_id,
            AddDeals {
                deal_ids: vec![b_deal.id.clone()],
            },
        )
        .await,
        "sales list",
        list_id,
    );
    assert_not_found(
        s.add_deals_to_list(
            &b,
            &b_list.value.id,
            AddDeals {
                deal_ids: vec![deal_id.clone()],
            },
        )
        .await,
        "deal",
        deal_id,
    );
    assert_not_found(
        s.create_sales_list(
            &b,
            NewSalesList {
                name: "盗み見".into(),
                deal_ids: vec![deal_id.clone()],
            },
        )
        .await,
        "deal",
        deal_id,
    );
    assert_not_found(
        s.search_deals(
            &b,
            DealSearch {
                sales_list_id: Some(list_id.clone()),
                ..DealSearch::default()
            },
        )
        .await,
        "sales list",
        list_id,
    );
    assert_eq!(
        h.primary.log().len(),
        log,
        "no write of B's reached the store"
    );
    // A's data is as A left it.
    assert_eq!(s.get_deal(&a, deal_id).await.unwrap().1, deal);
    assert_eq!(s.activity(&a, deal_id, act_id).await.unwrap().1, act.value);
}

#[tokio::test]
async fn an_item_of_another_tenant_under_a_key_the_caller_names_is_not_found() {
    // The key says nothing of the tenant: an activity seeded under B's deal id but owned
    // by A is still A's.
    let h = Harness::new();
    let a = tenant("a");
    let b = tenant("b");
    let co = h.company(&b, "B社", "東京都港区").await;
    let b_deal = h.deal(&b, &co.id, "B案件", &[]).await;
    let mut foreign = h.activity(&b, &b_deal.id, call_days_ago(1)).await.value;
    foreign.id = "ac_foreign".into();
    foreign.tenant_id = "a".into();
    h.primary
        .seed(tsunagu_domain::Entity::ActivityLog(foreign.clone()))
        .await;
    assert_not_found(
        h.service.activity(&b, &b_deal.id, "ac_foreign").await,
        "activity",
        "ac_foreign",
    );
    assert_eq!(
        h.service
            .activity(&a, &b_deal.id, "ac_foreign")
            .await
            .unwrap()
            .1,
        foreign
    );
}

#[tokio::test]
async fn searches_never_return_another_tenants_data() {
    let h = Harness::new();
    let a = tenant("a");
    let b = tenant("b");
    for t in [&a, &b] {
        let co = h
            .company_in(t, "東京商事", "東京都港区", Some("製造業"))
            .await;
        let deal = h.deal(t, &co.id, "共通の案件名", &["重点"]).await;
        let tagged = NewActivity {
            tags: vec!["重点".into()],
            ..visit_days_ago(1, "appointment")
        };
        h.activity(t, &deal.id, tagged).await;
        h.service
            .create_sales_list(
                t,
                NewSalesList {
                    name: "共通".into(),
                    deal_ids: vec![deal.id],
                },
            )
            .await
            .unwrap();
    }
    let s = &h.service;
    let page = s
        .search_activities(&b, ActivityQuery::default(), None)
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert!(page.hits.iter().all(|hit| hit.activity.tenant_id == "b"));
    for by in GroupBy::ALL {
        let buckets = s
            .aggregate_activities(&b, ActivityQuery::default(), by, None)
            .await
            .unwrap();
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 1, "{by:?}");
    }
    let (companies, total, _) = s
        .search_companies(
            &b,
            CompanySearch {
                prefectures: vec!["東京都".into()],
                ..CompanySearch::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert!(companies.iter().all(|(_, c)| c.tenant_id == "b"));
    let deals = s
        .search_deals(
            &b,
            DealSearch {
                prefectures: vec!["東京".into()],
                industries: vec!["製造業".into()],
                tags: vec!["重点".into()],
                text: Some("共通".into()),
                last_activity: Some(tsunagu_service::usecases::deals::LastActivity {
                    action: Some(ActionType::Visit),
                    result: "appointment".into(),
                }),
                ..DealSearch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(deals.total, 1);
    assert!(deals.deals.iter().all(|(_, d)| d.tenant_id == "b"));
    let tags = s.deal_tags(&b, None).await.unwrap();
    assert_eq!(tags.iter().map(|t| t.count).sum::<u64>(), 1);
    let (lists, total, _) = s.list_sales_lists(&b, None, None, None).await.unwrap();
    assert_eq!(total, 1);
    assert!(lists.iter().all(|(_, l)| l.tenant_id == "b"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Whatever the mix of tenants, and whatever tenant a query names, a tenant's
    /// activity search and per-deal counts are exactly its own activities.
    #[test]
    fn activity_searches_and_counts_are_exactly_the_callers(
        rows in prop::collection::vec((0usize..3, 0usize..2, 0i64..30), 0..30),
        named in prop::option::of(0usize..3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = Harness::new();
            let tenants = [tenant("t0"), tenant("t1"), tenant("t2")];
            let mut deals = Vec::new();
            for t in &tenants {
                let co = h.company(t, "会社", "東京都港区").await;
                let mut mine = Vec::new();
                for title in ["X", "Y"] {
                    mine.push(h.deal(t, &co.id, title, &[]).await.id);
                }
                deals.push(mine);
            }
            let mut expected: Vec<BTreeSet<String>> = vec![BTreeSet::new(); 3];
            let mut per_deal: HashMap<String, u64> = HashMap::new();
            for (who, deal, days) in rows {
                let deal_id = &deals[who][deal];
                let a = h.activity(&tenants[who], deal_id, call_days_ago(days)).await;
                expected[who].insert(a.value.id);
                *per_deal.entry(deal_id.clone()).or_default() += 1;
            }
            for (i, t) in tenants.iter().enumerate() {
                let query = ActivityQuery {
                    tenant_id: named.map(|n| format!("t{n}")),
                    limit: 1000,
                    ..ActivityQuery::default()
                };
                let page = h.service.search_activities(t, query.clone(), None).await.unwrap();
                let got: BTreeSet<String> = page.hits.into_iter().map(|h| h.activity.id).collect();
                prop_assert_eq!(&got, &expected[i]);
                let buckets = h.service
                    .aggregate_activities(t, query, GroupBy::Deal, None).await.unwrap();
                for bucket in buckets {
                    prop_assert!(deals[i].contains(&bucket.key), "{} is not t{i}'s", bucket.key);
                    prop_assert_eq!(Some(&bucket.count), per_deal.get(&bucket.key));
                }
            }
            Ok(())
        })?;
    }
}

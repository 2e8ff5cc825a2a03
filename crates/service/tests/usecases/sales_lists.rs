//! Sales lists: created with the tenant's deals (order kept, duplicates dropped), deals
//! added with retries over competing writers, and listing with a cursor.

use crate::harness::*;
use tsunagu_domain::Entity;
use tsunagu_service::usecases::sales_lists::{AddDeals, NewSalesList};
use tsunagu_service::{ServiceError, TenantId};

async fn three_deals(h: &Harness, t: &TenantId) -> Vec<String> {
    let co = h.company(t, "東京商事", "東京都港区").await;
    let mut deals = Vec::new();
    for title in ["A", "B", "C"] {
        deals.push(h.deal(t, &co.id, title, &[]).await.id);
    }
    deals
}

fn new_list(name: &str, deal_ids: &[&String]) -> NewSalesList {
    NewSalesList {
        name: name.into(),
        deal_ids: deal_ids.iter().map(|d| d.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_list_keeps_its_deals_in_order_without_duplicates() {
    let h = Harness::new();
    let t = tenant("t1");
    let d = three_deals(&h, &t).await;
    let list = h
        .service
        .create_sales_list(&t, new_list(" 今月の重点 ", &[&d[2], &d[0], &d[2]]))
        .await
        .unwrap();
    assert!(list.value.id.starts_with("sl_"));
    assert_eq!(list.value.name, "今月の重点");
    assert_eq!(list.value.deal_ids, [d[2].clone(), d[0].clone()]);
    let added = h
        .service
        .add_deals_to_list(
            &t,
            &list.value.id,
            AddDeals {
                deal_ids: vec![d[1].clone(), d[2].clone(), d[1].clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        added.value.deal_ids,
        [d[2].clone(), d[0].clone(), d[1].clone()]
    );
    assert!(added.version > list.version);
    // Adding members only: nothing to write, the same version.
    let attempts = h.primary.write_attempts();
    let again = h
        .service
        .add_deals_to_list(
            &t,
            &list.value.id,
            AddDeals {
                deal_ids: vec![d[0].clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (again.version, again.token.committed_at_us),
        (added.version, 0)
    );
    assert_eq!(h.primary.write_attempts(), attempts);
    assert_eq!(
        h.service.sales_list(&t, &list.value.id).await.unwrap(),
        (added.version, added.value.clone())
    );
}

#[tokio::test]
async fn a_list_takes_only_existing_deals_and_a_name() {
    let h = Harness::new();
    let t = tenant("t1");
    let d = three_deals(&h, &t).await;
    let missing = "dl_missing".to_string();
    let attempts = h.primary.write_attempts();
    assert_not_found(
        h.service
            .create_sales_list(&t, new_list("重点", &[&d[0], &missing]))
            .await,
        "deal",
        "dl_missing",
    );
    assert_eq!(
        invalid_fields(h.service.create_sales_list(&t, new_list("　", &[])).await),
        ["name"]
    );
    assert_eq!(h.primary.write_attempts(), attempts, "nothing written");
    let list = h
        .service
        .create_sales_list(&t, new_list("重点", &[&d[0]]))
        .await
        .unwrap();
    assert_eq!(
        invalid_fields(
            h.service
                .add_deals_to_list(&t, &list.value.id, AddDeals { deal_ids: vec![] })
                .await
        ),
        ["deal_ids"]
    );
    assert_not_found(
        h.service
            .add_deals_to_list(
                &t,
                &list.value.id,
                AddDeals {
                    deal_ids: vec![d[1].clone(), missing.clone()],
                },
            )
            .await,
        "deal",
        "dl_missing",
    );
    assert_not_found(
        h.service
            .add_deals_to_list(
                &t,
                "sl_missing",
                AddDeals {
                    deal_ids: vec![d[1].clone()],
                },
            )
            .await,
        "sales list",
        "sl_missing",
    );
    assert_eq!(
        h.service
            .sales_list(&t, &list.value.id)
            .await
            .unwrap()
            .1
            .deal_ids,
        [d[0].clone()],
        "no deal of a refused addition was added"
    );
}

#[tokio::test]
async fn adding_deals_is_retried_over_another_writers_addition_and_keeps_it() {
    let h = Harness::new();
    let t = tenant("t1");
    let d = three_deals(&h, &t).await;
    let list = h
        .service
        .create_sales_list(&t, new_list("重点", &[&d[0]]))
        .await
        .unwrap();
    let theirs = d[1].clone();
    h.primary.interfere(list.value.key(), 1, move |e| {
        if let Entity::SalesList(l) = e {
            l.deal_ids.push(theirs.clone());
        }
    });
    let added = h
        .service
        .add_deals_to_list(
            &t,
            &list.value.id,
            AddDeals {
                deal_ids: vec![d[2].clone(), d[1].clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        added.value.deal_ids,
        [d[0].clone(), d[1].clone(), d[2].clone()]
    );
    let (version, stored) = h.primary.stored(&list.value.key()).unwrap();
    assert_eq!(
        (version, stored),
        (added.version, Entity::SalesList(added.value))
    );
    // Always losing: a conflict after three retries.
    h.primary.interfere(list.value.key(), 4, |e| {
        if let Entity::SalesList(l) = e {
            l.name.push('!');
        }
    });
    let co = h.company(&t, "別会社", "東京都港区").await;
    let late = h.deal(&t, &co.id, "D", &[]).await;
    let lost = h
        .service
        .add_deals_to_list(
            &t,
            &list.value.id,
            AddDeals {
                deal_ids: vec![late.id],
            },
        )
        .await;
    assert!(
        matches!(
            lost,
            Err(ServiceError::Conflict {
                what: "sales list",
                ..
            })
        ),
        "{lost:?}"
    );
}

#[tokio::test]
async fn lists_are_listed_page_by_page_for_their_tenant_only() {
    let h = Harness::new();
    let t = tenant("t1");
    let mut created = Vec::new();
    for i in 0..5 {
        let list = h
            .service
            .create_sales_list(&t, new_list(&format!("リスト{i}"), &[]))
            .await
            .unwrap();
        created.push(list.value.id);
    }
    h.service
        .create_sales_list(&tenant("t2"), new_list("他社のリスト", &[]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (lists, total, next) = h
            .service
            .list_sales_lists(&t, Some(2), cursor.as_deref(), None)
            .await
            .unwrap();
        assert_eq!(total, 5);
        seen.extend(lists.into_iter().map(|(_, l)| l.id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    created.sort();
    assert_eq!(seen, created);
    assert_eq!(
        invalid_fields(h.service.list_sales_lists(&t, Some(0), None, None).await),
        ["limit"]
    );
    assert_eq!(
        invalid_fields(h.service.list_sales_lists(&t, None, Some("?"), None).await),
        ["cursor"]
    );
}

/// Concurrent additions to one list all land (see the taggers' test for why three
/// retries suffice for four writers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_additions_all_land_once() {
    let h = Harness::new();
    let t = tenant("t1");
    let co = h.company(&t, "東京商事", "東京都港区").await;
    let mut deals = Vec::new();
    for i in 0..4 {
        deals.push(h.deal(&t, &co.id, &format!("案件{i}"), &[]).await.id);
    }
    let list = h
        .service
        .create_sales_list(&t, new_list("重点", &[]))
        .await
        .unwrap()
        .value;
    let tasks: Vec<_> = deals
        .iter()
        .map(|deal| {
            let (service, t, id) = (h.service.clone(), t.clone(), list.id.clone());
            // Each adds its own deal and one shared with every other adder.
            let input = AddDeals {
                deal_ids: vec![deal.clone(), deals[0].clone()],
            };
            tokio::spawn(async move { service.add_deals_to_list(&t, &id, input).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let (_, stored) = h.service.sales_list(&t, &list.id).await.unwrap();
    let mut members = stored.deal_ids.clone();
    members.sort();
    members.dedup();
    assert_eq!(members.len(), stored.deal_ids.len(), "no duplicates");
    deals.sort();
    assert_eq!(members, deals);
}

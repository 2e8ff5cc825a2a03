//! Companies, deals and sales lists in the index: record queries, and a property test of
//! the per-deal activity facts (latest activity, deals with activity) against a model.

use super::{activity, open, record, t0, upsert};
use crate::query::ActivityQuery;
use crate::records::{RecordKind, RecordQuery};
use chrono::Duration;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use tsunagu_domain::{ActionType, ChangeKind, Company, Deal, DealStage, Entity, SalesList};
use tsunagu_engine::ports::Sink;

fn put(entity: Entity, version: u64) -> tsunagu_domain::ChangeRecord {
    record(
        entity.key(),
        ChangeKind::Modify,
        version,
        Some(entity.to_json()),
    )
}

fn company(id: &str, prefecture: &str) -> Entity {
    Entity::Company(Company {
        id: id.into(),
        tenant_id: "t1".into(),
        name: format!("{id} 株式会社"),
        prefecture: Some(prefecture.into()),
        address: String::new(),
        industry: Some("製造業".into()),
        created_at: t0(),
        updated_at: t0(),
    })
}

fn deal(id: &str, company: &str, tags: &[&str], minutes: i64) -> Entity {
    Entity::Deal(Deal {
        id: id.into(),
        tenant_id: "t1".into(),
        company_id: company.into(),
        title: format!("{id} 基幹システム刷新"),
        owner_id: "u1".into(),
        stage: DealStage::Proposal,
        amount: 1_000_000,
        expected_close_date: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        created_at: t0() + Duration::minutes(minutes),
        updated_at: t0() + Duration::minutes(minutes),
    })
}

#[tokio::test]
async fn records_are_searched_by_their_fields_and_paged_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    let mut v = 0;
    let mut next = || {
        v += 1;
        v
    };
    let records = vec![
        put(company("co1", "東京都"), next()),
        put(company("co2", "大阪府"), next()),
        put(deal("d1", "co1", &["重点"], 1), next()),
        put(deal("d2", "co1", &[], 2), next()),
        put(deal("d3", "co2", &["重点"], 3), next()),
        put(
            Entity::SalesList(SalesList {
                id: "sl1".into(),
                tenant_id: "t1".into(),
                name: "今月".into(),
                deal_ids: vec!["d1".into(), "d3".into()],
                created_at: t0(),
                updated_at: t0(),
            }),
            next(),
        ),
    ];
    index.apply(&records).await.unwrap();

    let mut q = RecordQuery::new(RecordKind::Company);
    q.prefectures = vec!["東京都".into()];
    assert_eq!(index.record_ids(&q).unwrap(), ["co1"]);

    let mut q = RecordQuery::new(RecordKind::Deal);
    q.tenant_id = Some("t1".into());
    q.limit = 2;
    let page = index.search_records(&q).unwrap();
    let ids: Vec<_> = page.hits.iter().map(|h| h.key.partition.clone()).collect();
    assert_eq!(
        (ids, page.total),
        (vec!["d3".to_string(), "d2".to_string()], 3)
    );
    q.cursor = page.next_cursor;
    let rest = index.search_records(&q).unwrap();
    assert_eq!(rest.hits.len(), 1);
    assert_eq!(rest.next_cursor, None);

    let mut q = RecordQuery::new(RecordKind::Deal);
    q.tags_all = vec!["重点".into()];
    q.exclude_ids = vec!["d3".into()];
    q.text = Some("刷新".into());
    assert_eq!(index.record_ids(&q).unwrap(), ["d1"]);
    q.only_ids = Some(vec![]);
    assert!(index.record_ids(&q).unwrap().is_empty());
    q.tenant_id = Some("other".into());
    q.only_ids = None;
    assert!(index.record_ids(&q).unwrap().is_empty(), "tenant-scoped");

    let lists = index
        .search_records(&RecordQuery::new(RecordKind::SalesList))
        .unwrap();
    assert_eq!(lists.total, 1);
    assert!(matches!(&lists.hits[0].entity, Entity::SalesList(l) if l.deal_ids == ["d1", "d3"]));
    // Activity searches never return records.
    assert_eq!(index.search(&ActivityQuery::default()).unwrap().total, 0);
    index.close().await;
}

#[derive(Debug, Clone)]
struct Act {
    deal: usize,
    action: ActionType,
    result: Option<&'static str>,
    minutes: i64,
}

fn act() -> impl Strategy<Value = Act> {
    (
        0usize..5,
        prop::sample::select(vec![ActionType::Call, ActionType::Visit]),
        prop::option::of(prop::sample::select(vec!["appointment", "no_answer"])),
        0i64..10_000,
    )
        .prop_map(|(deal, action, result, minutes)| Act {
            deal,
            action,
            result,
            minutes,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The latest matching activity per deal, and the deals with a matching activity in a
    /// time window, equal a straightforward computation over the same activities.
    #[test]
    fn per_deal_activity_facts_match_a_model(acts in prop::collection::vec(act(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let index = open(dir.path());
            let records: Vec<_> = acts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let mut log = activity(&format!("a{i}"), &format!("d{}", a.deal));
                    log.action = a.action;
                    log.result = a.result.map(str::to_string);
                    // Distinct instants, so "the latest" is well defined.
                    log.occurred_at = t0() + Duration::minutes(a.minutes) + Duration::microseconds(i as i64);
                    upsert(&log, i as u64 + 1)
                })
                .collect();
            index.apply(&records).await.unwrap();

            let visits = ActivityQuery { actions: vec![ActionType::Visit], limit: 0, ..ActivityQuery::default() };
            let got: HashMap<String, Option<String>> = index
                .latest_activity_per_deal(&visits)
                .unwrap()
                .into_iter()
                .map(|(deal, latest)| (deal, latest.result))
                .collect();
            let mut model: HashMap<String, (i64, usize, Option<String>)> = HashMap::new();
            for (i, a) in acts.iter().enumerate().filter(|(_, a)| a.action == ActionType::Visit) {
                let deal = format!("d{}", a.deal);
                let key = (a.minutes, i);
                match model.get(&deal) {
                    Some((m, j, _)) if (*m, *j) >= key => {}
                    _ => {
                        model.insert(deal, (a.minutes, i, a.result.map(str::to_string)));
                    }
                }
            }
            let want: HashMap<String, Option<String>> =
                model.into_iter().map(|(d, (_, _, r))| (d, r)).collect();
            assert_eq!(got, want);

            let since = t0() + Duration::minutes(5_000);
            let recent_calls = ActivityQuery {
                actions: vec![ActionType::Call],
                occurred_from: Some(since),
                limit: 0,
                ..ActivityQuery::default()
            };
            let got = index.deals_with_activity(&recent_calls).unwrap();
            let want: HashSet<String> = acts
                .iter()
                .enumerate()
                .filter(|(i, a)| {
                    a.action == ActionType::Call
                        && t0() + Duration::minutes(a.minutes) + Duration::microseconds(*i as i64) >= since
                })
                .map(|(_, a)| format!("d{}", a.deal))
                .collect();
            assert_eq!(got, want);
            index.close().await;
        });
    }
}

#[tokio::test]
async fn held_version_counts_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    let a = activity("a1", "d1");
    assert_eq!(index.held_version(&a.key()).unwrap(), None);
    index.apply(&[upsert(&a, 3)]).await.unwrap();
    assert_eq!(
        index.held_version(&a.key()).unwrap(),
        Some(tsunagu_domain::Version(3))
    );
    index.apply(&[super::remove(&a.key(), 7)]).await.unwrap();
    assert_eq!(
        index.held_version(&a.key()).unwrap(),
        Some(tsunagu_domain::Version(7))
    );
    index.close().await;
}

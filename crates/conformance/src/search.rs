//! Conformance checks of the service's search port ([`tsunagu_service::ports::SearchIndex`]):
//! the same answers from every index for the same data.
//!
//! [`check_all`] loads a fixed, hand-written dataset through the index's sink
//! ([`tsunagu_engine::ports::Sink`], change records as the pipeline applies them) into a
//! **fresh, empty** index, then compares every method's answers with expectations worked
//! out by hand from the dataset below (the only thing computed is the order of activities
//! at the same instant, which the contract defines by the key's stable hash).
//!
//! The dataset: two tenants (`acme`, `beta`); activities with Japanese memos (half-width
//! katakana, full-width Latin, mixed case, a one-character word, a memo changed after it
//! was written), several actions, users, deals, companies, results, tags and UTC days
//! (with an instant at each side of midnight and two at the same instant); one activity
//! and one deal deleted; companies, deals (tags, stages, amounts, close dates) and sales
//! lists. The checks: each filter axis, OR within an axis and AND across axes, Japanese
//! text (a substring inside a word, width and case folding, a one-character word, several
//! words), pagination with a small limit reproducing the full order, `total`, every
//! [`GroupBy`], record searches of each kind with their filters, text and pages,
//! `record_ids`, `tag_counts`, `deals_with_activity`, `latest_activity_per_deal`,
//! `visible_version` (live, deleted, unknown) and tenant isolation through every method.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tsunagu_domain::search::{
    parse_time_zone, ActivityQuery, Bucket, Cursor, GroupBy, RecordKind, RecordQuery, SortOrder,
    MAX_LIMIT,
};
use tsunagu_domain::synonyms::Synonyms;
use tsunagu_domain::{
    ActionType, ActivityLog, ChangeKind, ChangeRecord, Company, Deal, DealStage, Entity, Image,
    ItemKey, Position, SalesList, ShardId, Version,
};
use tsunagu_engine::ports::Sink;
use tsunagu_service::ports::SearchIndex;
use tsunagu_service::ServiceError;

/// The tenants of the dataset.
pub const ACME: &str = "acme";
pub const BETA: &str = "beta";

/// An instant of March 2026 (UTC), to the microsecond.
fn at(day: u32, hour: u32, minute: u32, second: u32, micros: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, minute, second)
        .single()
        .map(|t| t + chrono::Duration::microseconds(i64::from(micros)))
        .unwrap_or_default()
}

/// February 28th, 2026 at `hour`:00 UTC.
fn feb28(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 28, hour, 0, 0)
        .single()
        .unwrap_or_default()
}

fn created(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn date(month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, month, day).unwrap_or_default()
}

/// One activity of the dataset.
struct Act {
    id: &'static str,
    tenant: &'static str,
    deal: &'static str,
    company: &'static str,
    user: &'static str,
    action: ActionType,
    result: Option<&'static str>,
    tags: &'static [&'static str],
    occurred_at: DateTime<Utc>,
    memo: &'static str,
}

fn activities() -> Vec<Act> {
    use ActionType::*;
    let a = |id, tenant, deal, company, user, action, result, tags, occurred_at, memo| Act {
        id,
        tenant,
        deal,
        company,
        user,
        action,
        result,
        tags,
        occurred_at,
        memo,
    };
    vec![
        a(
            "a1",
            ACME,
            "d1",
            "c1",
            "u1",
            Call,
            Some("connected"),
            &["hot", "q1"],
            at(1, 9, 0, 0, 0),
            "来週訪問のアポ獲得",
        ),
        a(
            "a2",
            ACME,
            "d1",
            "c1",
            "u2",
            Visit,
            Some("meeting_set"),
            &["hot"],
            at(1, 13, 0, 0, 0),
            "ｱﾎﾟ確定、部長同席",
        ),
        a(
            "a3",
            ACME,
            "d2",
            "c1",
            "u1",
            Email,
            None,
            &["q1"],
            at(2, 10, 0, 0, 0),
            "ＺＯＯＭで商談の日程調整",
        ),
        // The same instant as a3: the key's stable hash orders them.
        a(
            "a4",
            ACME,
            "d1",
            "c1",
            "u1",
            OnlineMeeting,
            Some("connected"),
            &[],
            at(2, 10, 0, 0, 0),
            "Zoom商談 2回目",
        ),
        a(
            "a5",
            ACME,
            "d3",
            "c2",
            "u3",
            Call,
            Some("no_answer"),
            &["cold"],
            at(3, 8, 30, 0, 0),
            "不在。株式会社サーバー担当へ折り返し依頼",
        ),
        // The last microsecond of March 3rd, and the first of March 4th.
        a(
            "a6",
            ACME,
            "d3",
            "c2",
            "u2",
            Call,
            Some("connected"),
            &["cold", "q1"],
            at(3, 23, 59, 59, 999_999),
            "株 先方了承",
        ),
        a(
            "a7",
            ACME,
            "d4",
            "c3",
            "u3",
            Letter,
            None,
            &["hot", "cold"],
            at(4, 0, 0, 0, 0),
            "資料送付 Web会議の案内",
        ),
        // Deleted after it was written.
        a(
            "a8",
            ACME,
            "d1",
            "c1",
            "u1",
            Other,
            Some("lost"),
            &["q1"],
            at(4, 15, 0, 0, 0),
            "deleted later",
        ),
        // Written with another memo, then changed to this one.
        a(
            "a9",
            ACME,
            "d4",
            "c3",
            "u1",
            Visit,
            Some("connected"),
            &[],
            feb28(17),
            "訪問 MixedCase Memo",
        ),
        a(
            "b1",
            BETA,
            "d9",
            "c9",
            "u1",
            Call,
            Some("connected"),
            &["hot"],
            at(1, 9, 0, 0, 0),
            "来週訪問のアポ獲得",
        ),
        a(
            "b2",
            BETA,
            "d9",
            "c9",
            "u9",
            Visit,
            None,
            &["q1"],
            at(2, 11, 0, 0, 0),
            "株式会社ベータ 訪問",
        ),
    ]
}

fn activity(a: &Act, memo: &str) -> ActivityLog {
    ActivityLog {
        id: a.id.into(),
        tenant_id: a.tenant.into(),
        deal_id: a.deal.into(),
        company_id: a.company.into(),
        user_id: a.user.into(),
        action: a.action,
        result: a.result.map(str::to_string),
        occurred_at: a.occurred_at,
        memo: memo.into(),
        tags: a.tags.iter().map(|t| t.to_string()).collect(),
        created_at: a.occurred_at,
        updated_at: a.occurred_at,
    }
}

fn company(
    id: &str,
    tenant: &str,
    name: &str,
    prefecture: Option<&str>,
    industry: Option<&str>,
    day: u32,
) -> Company {
    Company {
        id: id.into(),
        tenant_id: tenant.into(),
        name: name.into(),
        prefecture: prefecture.map(str::to_string),
        address: String::new(),
        industry: industry.map(str::to_string),
        created_at: created(1, day),
        updated_at: created(1, day),
    }
}

#[allow(clippy::too_many_arguments)]
fn deal(
    id: &str,
    tenant: &str,
    company: &str,
    title: &str,
    owner: &str,
    stage: DealStage,
    amount: i64,
    close: Option<NaiveDate>,
    tags: &[&str],
    day: u32,
) -> Deal {
    Deal {
        id: id.into(),
        tenant_id: tenant.into(),
        company_id: company.into(),
        title: title.into(),
        owner_id: owner.into(),
        stage,
        amount,
        expected_close_date: close,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        created_at: created(2, day),
        updated_at: created(2, day),
    }
}

fn sales_list(id: &str, tenant: &str, name: &str, deals: &[&str], day: u32) -> SalesList {
    SalesList {
        id: id.into(),
        tenant_id: tenant.into(),
        name: name.into(),
        deal_ids: deals.iter().map(|d| d.to_string()).collect(),
        created_at: created(2, day),
        updated_at: created(2, day),
    }
}

fn records() -> Vec<Entity> {
    use DealStage::*;
    vec![
        Entity::Company(company(
            "c1",
            ACME,
            "株式会社アクメ",
            Some("東京都"),
            Some("it"),
            1,
        )),
        Entity::Company(company(
            "c2",
            ACME,
            "サーバー工業",
            Some("大阪府"),
            Some("manufacturing"),
            2,
        )),
        Entity::Company(company("c3", ACME, "ＡＢＣ商事", Some("東京都"), None, 3)),
        Entity::Company(company(
            "c9",
            BETA,
            "ベータ株式会社",
            Some("東京都"),
            Some("it"),
            4,
        )),
        Entity::Deal(deal(
            "d1",
            ACME,
            "c1",
            "新規導入 アクメ",
            "u1",
            Negotiation,
            1_000_000,
            Some(date(3, 31)),
            &["hot", "renewal"],
            1,
        )),
        Entity::Deal(deal(
            "d2",
            ACME,
            "c1",
            "追加ライセンス",
            "u2",
            Proposal,
            300_000,
            Some(date(4, 15)),
            &["hot"],
            2,
        )),
        Entity::Deal(deal(
            "d3",
            ACME,
            "c2",
            "サーバー更改",
            "u1",
            Qualified,
            5_000_000,
            None,
            &["renewal"],
            3,
        )),
        Entity::Deal(deal(
            "d4",
            ACME,
            "c3",
            "Web会議システム",
            "u3",
            Won,
            0,
            Some(date(3, 1)),
            &[],
            4,
        )),
        // Deleted after it was written.
        Entity::Deal(deal(
            "d5",
            ACME,
            "c2",
            "消える案件",
            "u2",
            Lead,
            1,
            None,
            &["hot"],
            5,
        )),
        Entity::Deal(deal(
            "d9",
            BETA,
            "c9",
            "新規導入 ベータ",
            "u1",
            Lead,
            2_000_000,
            Some(date(3, 31)),
            &["hot"],
            6,
        )),
        Entity::SalesList(sales_list("l1", ACME, "重点リスト", &["d1", "d2"], 10)),
        Entity::SalesList(sales_list("l2", ACME, "春の訪問リスト", &["d3"], 11)),
        Entity::SalesList(sales_list("l9", BETA, "重点リスト", &["d9"], 12)),
    ]
}

/// What loading wrote: the version searches must show per key.
pub struct Loaded {
    /// Activity id → key.
    pub activity_keys: HashMap<String, ItemKey>,
    /// Key → the version of its last change (a deletion's for deleted items).
    pub versions: HashMap<ItemKey, Version>,
}

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
        committed_at_us: 1_772_000_000_000_000 + version as i64,
    }
}

/// Applies the dataset to a fresh index through its sink.
pub async fn load<S: Sink>(sink: &S) -> Loaded {
    let mut batch = Vec::new();
    let mut versions = HashMap::new();
    let mut activity_keys = HashMap::new();
    let mut next = 100u64;
    let mut write =
        |batch: &mut Vec<ChangeRecord>, key: &ItemKey, kind, entity: Option<&Entity>| {
            next += 1;
            batch.push(change(key, kind, next, entity));
            versions.insert(key.clone(), Version(next));
        };
    for a in activities() {
        let first_memo = if a.id == "a9" { "古いメモ" } else { a.memo };
        let entity = Entity::ActivityLog(activity(&a, first_memo));
        let key = entity.key();
        activity_keys.insert(a.id.to_string(), key.clone());
        write(&mut batch, &key, ChangeKind::Insert, Some(&entity));
    }
    for entity in records() {
        write(&mut batch, &entity.key(), ChangeKind::Insert, Some(&entity));
    }
    sink.apply(&batch).await.expect("loading the dataset");
    let mut batch = Vec::new();
    for a in activities() {
        if a.id == "a9" {
            let entity = Entity::ActivityLog(activity(&a, a.memo));
            write(&mut batch, &entity.key(), ChangeKind::Modify, Some(&entity));
        }
    }
    write(&mut batch, &activity_keys["a8"], ChangeKind::Remove, None);
    write(&mut batch, &Deal::key_for("d5"), ChangeKind::Remove, None);
    sink.apply(&batch).await.expect("changing and deleting");
    Loaded {
        activity_keys,
        versions,
    }
}

/// Loads the dataset into a fresh index through `sink`, then runs every check.
pub async fn check_all<I: SearchIndex, S: Sink>(index: &I, sink: &S) {
    let loaded = load(sink).await;
    let s = Suite {
        index,
        loaded: &loaded,
    };
    s.filters_on_each_axis().await;
    s.japanese_text().await;
    s.query_syntax().await;
    s.synonyms_expand_the_query().await;
    s.highlights_and_relevance().await;
    s.pages_reproduce_the_whole_order().await;
    s.aggregations_count_every_bucket().await;
    s.calendar_groupings_follow_the_time_zone().await;
    s.deal_facts().await;
    s.companies().await;
    s.deals().await;
    s.sales_lists().await;
    s.visible_versions().await;
    s.tenants_are_isolated().await;
}

struct Suite<'a, I> {
    index: &'a I,
    loaded: &'a Loaded,
}

fn acme() -> ActivityQuery {
    ActivityQuery {
        tenant_id: Some(ACME.into()),
        limit: MAX_LIMIT,
        ..ActivityQuery::default()
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn buckets(expected: &[(&str, u64)]) -> Vec<Bucket> {
    expected
        .iter()
        .map(|(key, count)| Bucket {
            key: key.to_string(),
            count: *count,
        })
        .collect()
}

fn records_of(kind: RecordKind, tenant: &str) -> RecordQuery {
    let mut q = RecordQuery::new(kind);
    q.tenant_id = Some(tenant.into());
    q.limit = MAX_LIMIT;
    q
}

impl<I: SearchIndex> Suite<'_, I> {
    /// Activity ids in the result order: `groups` in time order (newest first), the ids
    /// of one group at the same instant, ordered by their keys' stable hash.
    fn order(&self, groups: &[&[&str]]) -> Vec<String> {
        let mut out = Vec::new();
        for group in groups {
            let mut group: Vec<&str> = group.to_vec();
            group.sort_by_key(|id| self.loaded.activity_keys[*id].stable_hash());
            out.extend(group.into_iter().map(str::to_string));
        }
        out
    }

    /// Every hit's activity id (one page of up to MAX_LIMIT), checking `total` too.
    async fn ids(&self, q: &ActivityQuery) -> Vec<String> {
        let page = self
            .index
            .search_activities(q)
            .await
            .unwrap_or_else(|e| panic!("searching {q:?}: {e}"));
        assert_eq!(
            page.total,
            page.hits.len() as u64,
            "total counts every match: {q:?}"
        );
        assert_eq!(page.next_cursor, None, "one page holds every match: {q:?}");
        for hit in &page.hits {
            assert_eq!(
                Some(hit.version),
                self.loaded.versions.get(&hit.key).copied(),
                "a hit shows the item's last version: {}",
                hit.key
            );
            assert_eq!(hit.key, hit.activity.key(), "a hit's key is its activity's");
        }
        page.hits.into_iter().map(|h| h.activity.id).collect()
    }

    async fn expect(&self, what: &str, q: ActivityQuery, groups: &[&[&str]]) {
        assert_eq!(self.ids(&q).await, self.order(groups), "{what}: {q:?}");
    }

    async fn filters_on_each_axis(&self) {
        let everything: &[&[&str]] = &[
            &["a7"],
            &["a6"],
            &["a5"],
            &["a3", "a4"],
            &["a2"],
            &["a1"],
            &["a9"],
        ];
        self.expect(
            "every live activity of the tenant, newest first; the deleted a8 never",
            acme(),
            everything,
        )
        .await;
        let q = |f: &dyn Fn(&mut ActivityQuery)| {
            let mut q = acme();
            f(&mut q);
            q
        };
        self.expect(
            "one deal",
            q(&|q| q.deal_ids = strings(&["d1"])),
            &[&["a4"], &["a2"], &["a1"]],
        )
        .await;
        self.expect(
            "deals OR",
            q(&|q| q.deal_ids = strings(&["d1", "d4"])),
            &[&["a7"], &["a4"], &["a2"], &["a1"], &["a9"]],
        )
        .await;
        self.expect(
            "company",
            q(&|q| q.company_ids = strings(&["c2"])),
            &[&["a6"], &["a5"]],
        )
        .await;
        self.expect(
            "user",
            q(&|q| q.user_ids = strings(&["u1"])),
            &[&["a3", "a4"], &["a1"], &["a9"]],
        )
        .await;
        self.expect(
            "users OR",
            q(&|q| q.user_ids = strings(&["u2", "u3"])),
            &[&["a7"], &["a6"], &["a5"], &["a2"]],
        )
        .await;
        self.expect(
            "action",
            q(&|q| q.actions = vec![ActionType::Call]),
            &[&["a6"], &["a5"], &["a1"]],
        )
        .await;
        self.expect(
            "actions OR",
            q(&|q| q.actions = vec![ActionType::Call, ActionType::Visit]),
            &[&["a6"], &["a5"], &["a2"], &["a1"], &["a9"]],
        )
        .await;
        self.expect(
            "result",
            q(&|q| q.results = strings(&["connected"])),
            &[&["a6"], &["a4"], &["a1"], &["a9"]],
        )
        .await;
        self.expect(
            "results OR",
            q(&|q| q.results = strings(&["connected", "no_answer"])),
            &[&["a6"], &["a5"], &["a4"], &["a1"], &["a9"]],
        )
        .await;
        self.expect(
            "a tag",
            q(&|q| q.tags_all = strings(&["hot"])),
            &[&["a7"], &["a2"], &["a1"]],
        )
        .await;
        self.expect(
            "every tag (AND)",
            q(&|q| q.tags_all = strings(&["hot", "q1"])),
            &[&["a1"]],
        )
        .await;
        self.expect(
            "user AND action",
            q(&|q| {
                q.user_ids = strings(&["u1"]);
                q.actions = vec![ActionType::Call]
            }),
            &[&["a1"]],
        )
        .await;
        self.expect(
            "company AND result AND tag",
            q(&|q| {
                q.company_ids = strings(&["c1", "c2"]);
                q.results = strings(&["connected"]);
                q.tags_all = strings(&["q1"])
            }),
            &[&["a6"], &["a1"]],
        )
        .await;
        self.expect(
            "axes with no common match",
            q(&|q| {
                q.deal_ids = strings(&["d2"]);
                q.actions = vec![ActionType::Call]
            }),
            &[],
        )
        .await;
        self.expect(
            "unknown value",
            q(&|q| q.user_ids = strings(&["nobody"])),
            &[],
        )
        .await;
        // Time: from inclusive, to exclusive, to the microsecond.
        self.expect(
            "a day",
            q(&|q| {
                q.occurred_from = Some(at(3, 0, 0, 0, 0));
                q.occurred_to = Some(at(4, 0, 0, 0, 0))
            }),
            &[&["a6"], &["a5"]],
        )
        .await;
        self.expect(
            "from is inclusive",
            q(&|q| q.occurred_from = Some(at(4, 0, 0, 0, 0))),
            &[&["a7"]],
        )
        .await;
        self.expect(
            "to is exclusive to the microsecond",
            q(&|q| {
                q.occurred_from = Some(at(3, 0, 0, 0, 0));
                q.occurred_to = Some(at(3, 23, 59, 59, 999_999))
            }),
            &[&["a5"]],
        )
        .await;
        self.expect(
            "one microsecond later",
            q(&|q| {
                q.occurred_from = Some(at(3, 0, 0, 0, 0));
                q.occurred_to = Some(at(3, 23, 59, 59, 999_999) + chrono::Duration::microseconds(1))
            }),
            &[&["a6"], &["a5"]],
        )
        .await;
        self.expect(
            "until",
            q(&|q| q.occurred_to = Some(at(1, 13, 0, 0, 0))),
            &[&["a1"], &["a9"]],
        )
        .await;
    }

    async fn japanese_text(&self) {
        let text = |t: &str| ActivityQuery {
            text: Some(t.into()),
            ..acme()
        };
        let cases: &[(&str, &[&[&str]])] = &[
            ("訪問", &[&["a1"], &["a9"]]),
            // A substring inside a word.
            ("週訪", &[&["a1"]]),
            ("来週訪問", &[&["a1"]]),
            ("訪問来週", &[]),
            // Half-width katakana in the memo, and in the query.
            ("アポ", &[&["a2"], &["a1"]]),
            ("ｱﾎﾟ", &[&["a2"], &["a1"]]),
            // Full-width and mixed-case Latin.
            ("zoom", &[&["a3", "a4"]]),
            ("ＺＯＯＭ", &[&["a3", "a4"]]),
            ("ZOOM商談", &[&["a4"]]),
            ("mixedcase", &[&["a9"]]),
            ("MIXEDCASE", &[&["a9"]]),
            // A Latin word of three letters or more also matches as a prefix (meet finds
            // meeting); quoted, it is exact; shorter ones are whole words.
            ("mixed", &[&["a9"]]),
            ("\"mixed\"", &[]),
            ("mem", &[&["a9"]]),
            ("zo", &[]),
            ("web会議", &[&["a7"]]),
            ("サーバー", &[&["a5"]]),
            // Spelling variants fold: hiragana for katakana, dashes for ー, runs of ー.
            ("あぽ", &[&["a2"], &["a1"]]),
            ("さーばー", &[&["a5"]]),
            ("サ－バ―", &[&["a5"]]),
            ("サーーバー", &[&["a5"]]),
            ("らいしゅう", &[]),
            // One CJK character: alone, or inside a bigram at either end.
            ("株", &[&["a6"], &["a5"]]),
            ("式", &[&["a5"]]),
            ("了", &[&["a6"]]),
            // Every word must occur (AND).
            ("商談 2回目", &[&["a4"]]),
            ("商談 日程", &[&["a3"]]),
            ("訪問 memo", &[&["a9"]]),
            // A deleted activity's memo and a changed memo's old text are gone.
            ("deleted", &[]),
            ("古いメモ", &[]),
            // Another tenant's memo.
            ("ベータ", &[]),
        ];
        for (t, expected) in cases {
            self.expect("memo text", text(t), expected).await;
        }
    }

    /// The search syntax (`tsunagu_domain::text_query`): exclusions, OR, phrases, and
    /// text it cannot read refused as invalid input on every index.
    async fn query_syntax(&self) {
        let text = |t: &str| ActivityQuery {
            text: Some(t.into()),
            ..acme()
        };
        let cases: &[(&str, &[&[&str]])] = &[
            // Only an exclusion: everything else.
            (
                "-訪問",
                &[&["a7"], &["a6"], &["a5"], &["a3", "a4"], &["a2"]],
            ),
            (
                "－訪問",
                &[&["a7"], &["a6"], &["a5"], &["a3", "a4"], &["a2"]],
            ),
            ("商談 -2回目", &[&["a3"]]),
            ("zoom -日程", &[&["a4"]]),
            ("-\"2回目\" 商談", &[&["a3"]]),
            ("アポ OR 株", &[&["a6"], &["a5"], &["a2"], &["a1"]]),
            (
                "アポ OR 株 OR mixedcase",
                &[&["a6"], &["a5"], &["a2"], &["a1"], &["a9"]],
            ),
            // OR binds tighter than the space: 訪問 AND (アポ OR memo).
            ("訪問 アポ OR memo", &[&["a1"], &["a9"]]),
            ("訪問 OR 商談 -zoom", &[&["a1"], &["a9"]]),
            // Lower-case `or` is a word.
            ("アポ or 株", &[]),
            // A phrase: its words in a row, whatever separates them in the memo.
            ("\"zoom 商談\"", &[&["a4"]]),
            ("zoom 商談", &[&["a3", "a4"]]),
            ("\"web会議の案内\"", &[&["a7"]]),
            ("\"案内 web会議\"", &[]),
            ("“部長同席”", &[&["a2"]]),
        ];
        for (t, expected) in cases {
            self.expect("query syntax", text(t), expected).await;
        }
        for bad in [
            "、。",
            "・",
            "見積 -",
            "-",
            "\"訪問",
            "訪問 OR",
            "OR 訪問",
            "アポ OR -株",
            "\"\"",
        ] {
            match self.index.search_activities(&text(bad)).await {
                Err(ServiceError::Invalid(_)) => {}
                other => panic!("{bad:?} is unreadable and must be refused, got {other:?}"),
            }
            let mut records = records_of(RecordKind::Company, ACME);
            records.text = Some(bad.into());
            match self.index.search_records(&records).await {
                Err(ServiceError::Invalid(_)) => {}
                other => panic!("{bad:?} in a record search must be refused, got {other:?}"),
            }
        }
    }

    /// Issue 19: a tenant's synonyms, applied to the parsed query in the domain
    /// (`ActivityQuery::synonyms`), find the same memos on every index: a term of a group
    /// finds any term of it, an excluded one excludes them all, and the highlights mark
    /// the synonym that matched.
    async fn synonyms_expand_the_query(&self) {
        let synonyms = Synonyms::new(vec![vec![
            "オンライン".into(),
            "zoom".into(),
            "web会議".into(),
        ]])
        .expect("a valid list");
        let text = |t: &str| ActivityQuery {
            text: Some(t.into()),
            synonyms: synonyms.clone(),
            ..acme()
        };
        let cases: &[(&str, &[&[&str]])] = &[
            ("オンライン", &[&["a7"], &["a3", "a4"]]),
            ("ｵﾝﾗｲﾝ 商談", &[&["a3", "a4"]]),
            (
                "-オンライン",
                &[&["a6"], &["a5"], &["a2"], &["a1"], &["a9"]],
            ),
            ("商談 -オンライン", &[]),
            (
                "\"web会議\" OR 株",
                &[&["a7"], &["a6"], &["a5"], &["a3", "a4"]],
            ),
        ];
        for (t, expected) in cases {
            self.expect("synonyms", text(t), expected).await;
        }
        let without = ActivityQuery {
            synonyms: Synonyms::default(),
            ..text("オンライン")
        };
        self.expect("no synonyms", without, &[]).await;
        let page = self.index.search_activities(&text("オンライン")).await;
        let page = page.unwrap_or_else(|e| panic!("searching オンライン: {e}"));
        let marked: BTreeMap<String, Vec<String>> = page
            .hits
            .into_iter()
            .map(|h| (h.activity.id, h.highlights))
            .collect();
        assert_eq!(marked["a4"], ["<mark>Zoom</mark>商談 2回目"], "{marked:?}");
        assert_eq!(
            marked["a3"],
            ["<mark>ＺＯＯＭ</mark>で商談の日程調整"],
            "{marked:?}"
        );
        assert!(marked["a7"][0].contains("<mark>"), "{marked:?}");
    }

    /// Issue 19: highlights (the same fragments on every index: one implementation in
    /// the domain) and the relevance order (BM25 of the memo text, then newest first),
    /// paged by cursors that carry the score.
    async fn highlights_and_relevance(&self) {
        let text = |t: &str| ActivityQuery {
            text: Some(t.into()),
            ..acme()
        };
        let page = self.index.search_activities(&text("アポ -部長")).await;
        let page = page.unwrap_or_else(|e| panic!("searching アポ: {e}"));
        let highlights: Vec<(String, Vec<String>)> = page
            .hits
            .into_iter()
            .map(|h| (h.activity.id, h.highlights))
            .collect();
        assert_eq!(
            highlights,
            [(
                "a1".to_string(),
                vec!["来週訪問の<mark>アポ</mark>獲得".to_string()]
            )],
            "highlights mark the matches, not the exclusions"
        );
        let page = self.index.search_activities(&text("ｱﾎﾟ OR 株")).await;
        let page = page.unwrap_or_else(|e| panic!("searching: {e}"));
        let highlights: Vec<Vec<String>> = page.hits.into_iter().map(|h| h.highlights).collect();
        assert_eq!(
            highlights,
            [
                vec!["<mark>株</mark> 先方了承".to_string()],
                vec!["不在。<mark>株</mark>式会社サーバー担当へ折り返し依頼".to_string()],
                vec!["<mark>ｱﾎﾟ</mark>確定、部長同席".to_string()],
                vec!["来週訪問の<mark>アポ</mark>獲得".to_string()],
            ]
        );
        let page = self.index.search_activities(&acme()).await.expect("search");
        assert!(page.hits.iter().all(|h| h.highlights.is_empty()));

        let relevance = |t: &str| ActivityQuery {
            sort: SortOrder::Relevance,
            ..text(t)
        };
        // The short memo that is mostly 訪問 first, though older.
        self.expect("relevance", relevance("訪問"), &[&["a9"], &["a1"]])
            .await;
        assert_eq!(
            self.ids(&relevance("商談")).await,
            ["a4", "a3"],
            "the shorter memo first at the same instant"
        );
        // Without text every hit scores alike: newest first.
        self.expect(
            "relevance without text",
            ActivityQuery {
                sort: SortOrder::Relevance,
                ..acme()
            },
            &[
                &["a7"],
                &["a6"],
                &["a5"],
                &["a3", "a4"],
                &["a2"],
                &["a1"],
                &["a9"],
            ],
        )
        .await;
        // Pages of one reproduce the order; their cursors belong to it.
        for t in ["訪問", "商談 OR アポ OR 株", "-訪問"] {
            let full = self.ids(&relevance(t)).await;
            let mut q = ActivityQuery {
                limit: 1,
                ..relevance(t)
            };
            let mut seen = Vec::new();
            loop {
                let page = self.index.search_activities(&q).await.expect("a page");
                seen.extend(page.hits.into_iter().map(|h| h.activity.id));
                match page.next_cursor {
                    Some(cursor) => {
                        assert!(cursor.score().is_some(), "a relevance cursor has the score");
                        let mut other = text(t);
                        other.cursor = Some(cursor);
                        assert!(
                            matches!(
                                self.index.search_activities(&other).await,
                                Err(ServiceError::Invalid(_))
                            ),
                            "a relevance cursor in the newest-first order is refused"
                        );
                        q.cursor = Some(cursor);
                    }
                    None => break,
                }
                assert!(seen.len() <= full.len(), "pages of {t:?} never end");
            }
            assert_eq!(seen, full, "pages in the relevance order of {t:?}");
        }
    }

    async fn pages_reproduce_the_whole_order(&self) {
        let full = self.ids(&acme()).await;
        assert_eq!(full.len(), 8);
        for limit in [1, 3, 7, 8] {
            let mut q = ActivityQuery { limit, ..acme() };
            let mut seen = Vec::new();
            let mut pages = 0;
            loop {
                let page = self.index.search_activities(&q).await.expect("a page");
                assert_eq!(
                    page.total, 8,
                    "total ignores cursor and limit (limit {limit})"
                );
                assert!(page.hits.len() <= limit);
                seen.extend(page.hits.iter().map(|h| h.activity.id.clone()));
                pages += 1;
                match page.next_cursor {
                    Some(cursor) => {
                        assert_eq!(page.hits.len(), limit, "only a full page has a next one");
                        q.cursor = Some(cursor);
                    }
                    None => break,
                }
                assert!(pages <= 8, "pages end");
            }
            assert_eq!(seen, full, "pages of {limit} reproduce the whole order");
            assert_eq!(
                pages,
                8usize.div_ceil(limit),
                "no empty last page (limit {limit})"
            );
        }
        let count_only = self
            .index
            .search_activities(&ActivityQuery { limit: 0, ..acme() })
            .await
            .expect("limit 0");
        assert!(count_only.hits.is_empty());
        assert_eq!(count_only.total, 8);
        assert_eq!(count_only.next_cursor, None);
        // A cursor from the text form resumes after the hit it names.
        let first = self
            .index
            .search_activities(&ActivityQuery { limit: 2, ..acme() })
            .await
            .expect("first page");
        let cursor = first.next_cursor.expect("a next page");
        let parsed = Cursor::parse(&cursor.to_string()).expect("the cursor's text form");
        let second = self
            .index
            .search_activities(&ActivityQuery {
                limit: 2,
                cursor: Some(parsed),
                ..acme()
            })
            .await
            .expect("second page");
        let ids: Vec<String> = second.hits.into_iter().map(|h| h.activity.id).collect();
        assert_eq!(ids, full[2..4].to_vec());
        // A cursor past everything: no hits, still the whole total.
        let past = self
            .index
            .search_activities(&ActivityQuery {
                cursor: Some(Cursor::new(i64::MIN, u64::MAX)),
                ..acme()
            })
            .await
            .expect("a cursor past the end");
        assert!(past.hits.is_empty());
        assert_eq!(past.total, 8);
        let too_many = self
            .index
            .search_activities(&ActivityQuery {
                limit: MAX_LIMIT + 1,
                ..acme()
            })
            .await;
        assert!(
            matches!(too_many, Err(ServiceError::Invalid(_))),
            "a limit above MAX_LIMIT is invalid input: {too_many:?}"
        );
    }

    async fn aggregate(&self, q: &ActivityQuery, by: GroupBy) -> Vec<Bucket> {
        self.index
            .aggregate_activities(q, by)
            .await
            .unwrap_or_else(|e| panic!("aggregating by {by:?}: {e}"))
    }

    async fn aggregate_in(&self, q: &ActivityQuery, by: GroupBy, zone: &str) -> Vec<Bucket> {
        let zone = parse_time_zone(zone).expect("a time zone");
        self.index
            .aggregate_activities_in(q, by, zone)
            .await
            .unwrap_or_else(|e| panic!("aggregating by {by:?} in {zone}: {e}"))
    }

    /// Issue 18: days, ISO weeks and months are counted in the asked time zone. a6
    /// (2026-03-03T23:59:59.999999Z) is 08:59 on March 4th in Tokyo; a9
    /// (2026-02-28T17:00Z) is 02:00 on March 1st there. March 1st 2026 is a Sunday: its
    /// week starts Monday February 23rd.
    async fn calendar_groupings_follow_the_time_zone(&self) {
        let q = acme();
        type Case = (GroupBy, &'static str, &'static [(&'static str, u64)]);
        let cases: [Case; 6] = [
            (
                GroupBy::Day,
                "Asia/Tokyo",
                &[
                    ("2026-03-01", 3),
                    ("2026-03-02", 2),
                    ("2026-03-03", 1),
                    ("2026-03-04", 2),
                ],
            ),
            // Eight hours behind UTC: a7 (00:00Z on the 4th) is the afternoon of the 3rd.
            (
                GroupBy::Day,
                "America/Los_Angeles",
                &[
                    ("2026-02-28", 1),
                    ("2026-03-01", 2),
                    ("2026-03-02", 2),
                    ("2026-03-03", 3),
                ],
            ),
            (
                GroupBy::Week,
                "UTC",
                &[("2026-02-23", 3), ("2026-03-02", 5)],
            ),
            (
                GroupBy::Week,
                "Asia/Tokyo",
                &[("2026-02-23", 3), ("2026-03-02", 5)],
            ),
            (GroupBy::Month, "UTC", &[("2026-02", 1), ("2026-03", 7)]),
            (GroupBy::Month, "Asia/Tokyo", &[("2026-03", 8)]),
        ];
        for (by, zone, expected) in cases {
            assert_eq!(
                self.aggregate_in(&q, by, zone).await,
                buckets(expected),
                "by {by:?} in {zone}"
            );
        }
        // Without a zone: UTC.
        assert_eq!(
            self.aggregate(&q, GroupBy::Month).await,
            buckets(&[("2026-02", 1), ("2026-03", 7)])
        );
    }

    async fn aggregations_count_every_bucket(&self) {
        // Limit and cursor do not cut aggregations.
        let q = ActivityQuery {
            limit: 1,
            cursor: Some(Cursor::new(i64::MIN, u64::MAX)),
            ..acme()
        };
        let expected: [(GroupBy, &[(&str, u64)]); 7] = [
            (
                GroupBy::Action,
                &[
                    ("call", 3),
                    ("visit", 2),
                    ("email", 1),
                    ("letter", 1),
                    ("online_meeting", 1),
                ],
            ),
            (GroupBy::User, &[("u1", 4), ("u2", 2), ("u3", 2)]),
            (GroupBy::Deal, &[("d1", 3), ("d3", 2), ("d4", 2), ("d2", 1)]),
            (GroupBy::Company, &[("c1", 4), ("c2", 2), ("c3", 2)]),
            // a3 and a7 have no result and are not counted.
            (
                GroupBy::Result,
                &[("connected", 4), ("meeting_set", 1), ("no_answer", 1)],
            ),
            // Once per tag; equal counts by key.
            (GroupBy::Tag, &[("cold", 3), ("hot", 3), ("q1", 3)]),
            // UTC days in day order; 23:59:59.999999 and 00:00 fall on their own days.
            (
                GroupBy::Day,
                &[
                    ("2026-02-28", 1),
                    ("2026-03-01", 2),
                    ("2026-03-02", 2),
                    ("2026-03-03", 2),
                    ("2026-03-04", 1),
                ],
            ),
        ];
        for (by, buckets_expected) in expected {
            assert_eq!(
                self.aggregate(&q, by).await,
                buckets(buckets_expected),
                "by {by:?}"
            );
        }
        let calls = ActivityQuery {
            actions: vec![ActionType::Call],
            ..acme()
        };
        assert_eq!(
            self.aggregate(&calls, GroupBy::Day).await,
            buckets(&[("2026-03-01", 1), ("2026-03-03", 2)]),
            "filtered days; empty days are not buckets"
        );
        let zoom = ActivityQuery {
            text: Some("zoom".into()),
            ..acme()
        };
        assert_eq!(
            self.aggregate(&zoom, GroupBy::Deal).await,
            buckets(&[("d1", 1), ("d2", 1)])
        );
        let none = ActivityQuery {
            user_ids: strings(&["nobody"]),
            ..acme()
        };
        for by in GroupBy::ALL {
            assert!(
                self.aggregate(&none, by).await.is_empty(),
                "no match, no bucket ({by:?})"
            );
        }
    }

    async fn deal_facts(&self) {
        let deals = |q: ActivityQuery| async move {
            let set = self
                .index
                .deals_with_activity(&q)
                .await
                .expect("deals_with_activity");
            set.into_iter().collect::<BTreeSet<_>>()
        };
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(deals(acme()).await, set(&["d1", "d2", "d3", "d4"]));
        assert_eq!(
            deals(ActivityQuery {
                results: strings(&["no_answer"]),
                ..acme()
            })
            .await,
            set(&["d3"])
        );
        assert_eq!(
            deals(ActivityQuery {
                text: Some("zoom".into()),
                ..acme()
            })
            .await,
            set(&["d1", "d2"])
        );
        // a8 (d1, lost) is deleted.
        assert_eq!(
            deals(ActivityQuery {
                results: strings(&["lost"]),
                ..acme()
            })
            .await,
            set(&[])
        );

        let latest = |q: ActivityQuery| async move {
            let map = self
                .index
                .latest_activity_per_deal(&q)
                .await
                .expect("latest_activity_per_deal");
            map.into_iter()
                .map(|(deal, l)| (deal, (l.occurred_at, l.result)))
                .collect::<BTreeMap<_, _>>()
        };
        let expect = |rows: &[(&str, DateTime<Utc>, Option<&str>)]| {
            rows.iter()
                .map(|(d, t, r)| (d.to_string(), (*t, r.map(str::to_string))))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            latest(acme()).await,
            expect(&[
                // Not the deleted a8 of March 4th.
                ("d1", at(2, 10, 0, 0, 0), Some("connected")),
                ("d2", at(2, 10, 0, 0, 0), None),
                ("d3", at(3, 23, 59, 59, 999_999), Some("connected")),
                ("d4", at(4, 0, 0, 0, 0), None),
            ]),
            "each deal's latest live activity"
        );
        assert_eq!(
            latest(ActivityQuery {
                results: strings(&["connected"]),
                ..acme()
            })
            .await,
            expect(&[
                ("d1", at(2, 10, 0, 0, 0), Some("connected")),
                ("d3", at(3, 23, 59, 59, 999_999), Some("connected")),
                ("d4", feb28(17), Some("connected")),
            ]),
            "the latest among the matching activities"
        );
    }

    async fn record_ids_in_order(&self, q: &RecordQuery) -> Vec<String> {
        let page = self
            .index
            .search_records(q)
            .await
            .unwrap_or_else(|e| panic!("searching records {q:?}: {e}"));
        assert_eq!(page.total, page.hits.len() as u64, "total: {q:?}");
        assert_eq!(page.next_cursor, None);
        page.hits
            .into_iter()
            .map(|h| {
                assert_eq!(Some(h.version), self.loaded.versions.get(&h.key).copied());
                assert_eq!(h.key, h.entity.key());
                match h.entity {
                    Entity::Company(c) => c.id,
                    Entity::Deal(d) => d.id,
                    Entity::SalesList(l) => l.id,
                    Entity::ActivityLog(a) => panic!("an activity among records: {}", a.id),
                }
            })
            .collect()
    }

    async fn expect_records(&self, what: &str, q: RecordQuery, expected: &[&str]) {
        assert_eq!(
            self.record_ids_in_order(&q).await,
            strings(expected),
            "{what}: {q:?}"
        );
        let mut ids = self.index.record_ids(&q).await.expect("record_ids");
        ids.sort();
        let mut sorted = strings(expected);
        sorted.sort();
        assert_eq!(ids, sorted, "record_ids, {what}: {q:?}");
    }

    async fn companies(&self) {
        let q = |f: &dyn Fn(&mut RecordQuery)| {
            let mut q = records_of(RecordKind::Company, ACME);
            f(&mut q);
            q
        };
        self.expect_records(
            "every company, newest first",
            q(&|_| {}),
            &["c3", "c2", "c1"],
        )
        .await;
        self.expect_records(
            "prefecture",
            q(&|q| q.prefectures = strings(&["東京都"])),
            &["c3", "c1"],
        )
        .await;
        self.expect_records("industry", q(&|q| q.industries = strings(&["it"])), &["c1"])
            .await;
        self.expect_records(
            "prefecture AND industry",
            q(&|q| {
                q.prefectures = strings(&["大阪府"]);
                q.industries = strings(&["it"])
            }),
            &[],
        )
        .await;
        self.expect_records(
            "industries OR",
            q(&|q| q.industries = strings(&["it", "manufacturing"])),
            &["c2", "c1"],
        )
        .await;
        self.expect_records(
            "an axis of deals matches no company",
            q(&|q| q.stages = vec![DealStage::Lead]),
            &[],
        )
        .await;
        self.expect_records("name text", q(&|q| q.text = Some("アクメ".into())), &["c1"])
            .await;
        self.expect_records(
            "full-width name, half-width query",
            q(&|q| q.text = Some("abc".into())),
            &["c3"],
        )
        .await;
        self.expect_records("one character", q(&|q| q.text = Some("株".into())), &["c1"])
            .await;
        self.expect_records(
            "katakana",
            q(&|q| q.text = Some("サーバー".into())),
            &["c2"],
        )
        .await;
        self.expect_records(
            "name syntax: OR",
            q(&|q| q.text = Some("アクメ OR 商事".into())),
            &["c3", "c1"],
        )
        .await;
        self.expect_records(
            "name syntax: exclusion",
            q(&|q| q.text = Some("-アクメ".into())),
            &["c3", "c2"],
        )
        .await;
        self.expect_records(
            "only ids",
            q(&|q| q.only_ids = Some(strings(&["c1", "c3", "c9"]))),
            &["c3", "c1"],
        )
        .await;
        self.expect_records("only no ids", q(&|q| q.only_ids = Some(Vec::new())), &[])
            .await;
        self.expect_records(
            "excluded ids",
            q(&|q| q.exclude_ids = strings(&["c1"])),
            &["c3", "c2"],
        )
        .await;
        assert!(self
            .index
            .tag_counts(&q(&|_| {}))
            .await
            .expect("tag_counts")
            .is_empty());
    }

    async fn deals(&self) {
        let q = |f: &dyn Fn(&mut RecordQuery)| {
            let mut q = records_of(RecordKind::Deal, ACME);
            f(&mut q);
            q
        };
        // d5 is deleted.
        self.expect_records(
            "every deal, newest first",
            q(&|_| {}),
            &["d4", "d3", "d2", "d1"],
        )
        .await;
        self.expect_records(
            "company",
            q(&|q| q.company_ids = strings(&["c1"])),
            &["d2", "d1"],
        )
        .await;
        self.expect_records(
            "owner",
            q(&|q| q.owner_ids = strings(&["u1"])),
            &["d3", "d1"],
        )
        .await;
        self.expect_records(
            "stages OR",
            q(&|q| q.stages = vec![DealStage::Proposal, DealStage::Won]),
            &["d4", "d2"],
        )
        .await;
        self.expect_records(
            "a tag",
            q(&|q| q.tags_all = strings(&["hot"])),
            &["d2", "d1"],
        )
        .await;
        self.expect_records(
            "every tag",
            q(&|q| q.tags_all = strings(&["hot", "renewal"])),
            &["d1"],
        )
        .await;
        self.expect_records(
            "amount from",
            q(&|q| q.amount_min = Some(300_000)),
            &["d3", "d2", "d1"],
        )
        .await;
        self.expect_records(
            "amount to",
            q(&|q| q.amount_max = Some(300_000)),
            &["d4", "d2"],
        )
        .await;
        self.expect_records(
            "amount between, inclusive",
            q(&|q| {
                q.amount_min = Some(300_000);
                q.amount_max = Some(1_000_000)
            }),
            &["d2", "d1"],
        )
        .await;
        self.expect_records(
            "amount zero",
            q(&|q| {
                q.amount_min = Some(0);
                q.amount_max = Some(0)
            }),
            &["d4"],
        )
        .await;
        self.expect_records(
            "close from, inclusive",
            q(&|q| q.close_from = Some(date(3, 31))),
            &["d2", "d1"],
        )
        .await;
        self.expect_records(
            "close to, inclusive",
            q(&|q| q.close_to = Some(date(3, 31))),
            &["d4", "d1"],
        )
        .await;
        self.expect_records(
            "close between",
            q(&|q| {
                q.close_from = Some(date(3, 2));
                q.close_to = Some(date(3, 31))
            }),
            &["d1"],
        )
        .await;
        self.expect_records("title text", q(&|q| q.text = Some("会議".into())), &["d4"])
            .await;
        self.expect_records(
            "title words",
            q(&|q| q.text = Some("導入 アクメ".into())),
            &["d1"],
        )
        .await;
        self.expect_records("title Latin", q(&|q| q.text = Some("WEB".into())), &["d4"])
            .await;
        self.expect_records(
            "a prefecture matches no deal",
            q(&|q| q.prefectures = strings(&["東京都"])),
            &[],
        )
        .await;
        self.expect_records(
            "only and exclude",
            q(&|q| {
                q.only_ids = Some(strings(&["d1", "d2", "d5"]));
                q.exclude_ids = strings(&["d2"])
            }),
            &["d1"],
        )
        .await;
        // Pages of records.
        let mut paged = q(&|q| q.limit = 3);
        let first = self.index.search_records(&paged).await.expect("first page");
        assert_eq!(first.total, 4);
        assert_eq!(first.hits.len(), 3);
        paged.cursor = Some(first.next_cursor.expect("a second page"));
        let second = self
            .index
            .search_records(&paged)
            .await
            .expect("second page");
        assert_eq!(second.total, 4);
        assert_eq!(second.next_cursor, None);
        let ids: Vec<ItemKey> = first
            .hits
            .iter()
            .chain(&second.hits)
            .map(|h| h.key.clone())
            .collect();
        let expected: Vec<ItemKey> = ["d4", "d3", "d2", "d1"]
            .iter()
            .map(|d| Deal::key_for(d))
            .collect();
        assert_eq!(ids, expected, "record pages reproduce the order");
        // Tags, most used first, then by name.
        assert_eq!(
            self.index
                .tag_counts(&q(&|_| {}))
                .await
                .expect("tag_counts"),
            buckets(&[("hot", 2), ("renewal", 2)])
        );
        assert_eq!(
            self.index
                .tag_counts(&q(&|q| q.company_ids = strings(&["c1"])))
                .await
                .expect("tag_counts"),
            buckets(&[("hot", 2), ("renewal", 1)])
        );
        let too_many = self
            .index
            .search_records(&q(&|q| q.limit = MAX_LIMIT + 1))
            .await;
        assert!(
            matches!(too_many, Err(ServiceError::Invalid(_))),
            "{too_many:?}"
        );
    }

    async fn sales_lists(&self) {
        let q = |f: &dyn Fn(&mut RecordQuery)| {
            let mut q = records_of(RecordKind::SalesList, ACME);
            f(&mut q);
            q
        };
        self.expect_records("every list, newest first", q(&|_| {}), &["l2", "l1"])
            .await;
        self.expect_records(
            "name text",
            q(&|q| q.text = Some("リスト".into())),
            &["l2", "l1"],
        )
        .await;
        self.expect_records("name word", q(&|q| q.text = Some("訪問".into())), &["l2"])
            .await;
        self.expect_records("exclude", q(&|q| q.exclude_ids = strings(&["l2"])), &["l1"])
            .await;
        self.expect_records(
            "an owner matches no list",
            q(&|q| q.owner_ids = strings(&["u1"])),
            &[],
        )
        .await;
    }

    async fn visible_versions(&self) {
        let version = |key: ItemKey| async move {
            self.index
                .visible_version(&key)
                .await
                .unwrap_or_else(|e| panic!("visible_version({key}): {e}"))
        };
        let live = self.loaded.activity_keys["a1"].clone();
        assert_eq!(
            version(live.clone()).await,
            self.loaded.versions.get(&live).copied()
        );
        let changed = self.loaded.activity_keys["a9"].clone();
        assert_eq!(
            version(changed.clone()).await,
            self.loaded.versions.get(&changed).copied(),
            "the newest version"
        );
        let deleted = self.loaded.activity_keys["a8"].clone();
        assert_eq!(
            version(deleted.clone()).await,
            self.loaded.versions.get(&deleted).copied(),
            "a deletion's version"
        );
        assert_eq!(
            version(Deal::key_for("d5")).await,
            self.loaded.versions.get(&Deal::key_for("d5")).copied()
        );
        assert_eq!(
            version(Company::key_for("c1")).await,
            self.loaded.versions.get(&Company::key_for("c1")).copied()
        );
        assert_eq!(
            version(ItemKey::new("d1", "activity#nope")).await,
            None,
            "an unknown key"
        );
    }

    async fn tenants_are_isolated(&self) {
        let beta = ActivityQuery {
            tenant_id: Some(BETA.into()),
            limit: MAX_LIMIT,
            ..ActivityQuery::default()
        };
        self.expect("the other tenant", beta.clone(), &[&["b2"], &["b1"]])
            .await;
        self.expect(
            "the other tenant's memo",
            ActivityQuery {
                text: Some("来週訪問".into()),
                ..beta.clone()
            },
            &[&["b1"]],
        )
        .await;
        self.expect(
            "another tenant's deal",
            ActivityQuery {
                deal_ids: strings(&["d9"]),
                ..acme()
            },
            &[],
        )
        .await;
        self.expect(
            "a shared user id",
            ActivityQuery {
                user_ids: strings(&["u1"]),
                ..beta.clone()
            },
            &[&["b1"]],
        )
        .await;
        assert_eq!(
            self.aggregate(&beta, GroupBy::User).await,
            buckets(&[("u1", 1), ("u9", 1)])
        );
        assert_eq!(
            self.aggregate(&beta, GroupBy::Day).await,
            buckets(&[("2026-03-01", 1), ("2026-03-02", 1)])
        );
        let deals = self.index.deals_with_activity(&beta).await.expect("deals");
        assert_eq!(deals.into_iter().collect::<Vec<_>>(), strings(&["d9"]));
        let latest = self
            .index
            .latest_activity_per_deal(&beta)
            .await
            .expect("latest");
        assert_eq!(latest.keys().cloned().collect::<Vec<_>>(), strings(&["d9"]));
        assert_eq!(latest["d9"].occurred_at, at(2, 11, 0, 0, 0));
        self.expect_records(
            "the other tenant's companies",
            records_of(RecordKind::Company, BETA),
            &["c9"],
        )
        .await;
        self.expect_records(
            "the other tenant's deals",
            records_of(RecordKind::Deal, BETA),
            &["d9"],
        )
        .await;
        self.expect_records(
            "the other tenant's lists",
            records_of(RecordKind::SalesList, BETA),
            &["l9"],
        )
        .await;
        let mut only = records_of(RecordKind::Company, ACME);
        only.only_ids = Some(strings(&["c9"]));
        self.expect_records("another tenant's id", only, &[]).await;
        let mut text = records_of(RecordKind::Deal, ACME);
        text.text = Some("ベータ".into());
        self.expect_records("another tenant's title", text, &[])
            .await;
        assert_eq!(
            self.index
                .tag_counts(&records_of(RecordKind::Deal, BETA))
                .await
                .expect("tag_counts"),
            buckets(&[("hot", 1)])
        );
        // Without a tenant (a single-tenant caller) every tenant's activities match.
        let all = ActivityQuery {
            limit: 0,
            ..ActivityQuery::default()
        };
        assert_eq!(
            self.index.search_activities(&all).await.expect("all").total,
            10
        );
    }
}

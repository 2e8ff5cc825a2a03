//! The non-graph sources end to end against real servers: a DynamoDB table (moto), an
//! OpenSearch index (osmem) and an embedded store migrated into MariaDB by
//! `tsunagu_migrate::run`, with counts, rejects, foreign keys and the report checked, and
//! every source left exactly as it was (items, file bytes and mtime, no point in time
//! left open). The servers come from `scripts/test-peers/{moto,osmem,mariadb}.sh start`;
//! without `AWS_ENDPOINT_URL`, `TSUNAGU_TEST_OPENSEARCH_URL` or `TSUNAGU_TEST_MYSQL_URL`
//! the test says so and passes without running. The checks that need no server (a
//! missing `--source`, a cypher table on an export directory) always run.

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use mysql_async::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tsunagu_domain::{Company, Deal, DealStage, Entity};
use tsunagu_embedded_store::{Condition, EmbeddedStore, StoreOptions};
use tsunagu_migrate::run::{run, RunOptions};
use tsunagu_opensearch::{Method, OpenSearchConfig, OpenSearchSink};

fn options(dir: &Path, spec: &Path, source: Option<PathBuf>, target: &str) -> RunOptions {
    let report = dir.join("report.json");
    RunOptions {
        spec: spec.to_path_buf(),
        source,
        target: target.to_string(),
        work_dir: RunOptions::default_work_dir(&report),
        report,
        chunks: None,
        resume: false,
        max_reject_share: None,
        progress: false,
    }
}

const GRAPH_SPEC: &str = r#"version = 1
[[tables]]
name = "regions"
source = { type = "cypher", query = "MATCH (r:Region) RETURN id(r) AS id, r.name AS name" }
primary_key = ["id"]
columns = [{ name = "id", type = "bigint", from = "_id" }, { name = "name", type = "varchar(20)" }]
"#;

#[tokio::test]
async fn graph_tables_need_the_right_source_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, GRAPH_SPEC).unwrap();
    // The target is never contacted: both errors come first.
    let target = "mysql://nobody@127.0.0.1:1/none";
    let e = run(&options(dir.path(), &spec, None, target))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("table `regions` reads rows of the Cypher query") && e.contains("--source"),
        "{e}"
    );
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    let e = run(&options(dir.path(), &spec, Some(export), target))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("needs a live graph: give --source bolt://"),
        "{e}"
    );
    assert!(!dir.path().join("report.work").exists(), "no work done");
}

struct Servers {
    opensearch: String,
}

fn servers() -> Option<Servers> {
    let vars = (
        std::env::var("TSUNAGU_TEST_MYSQL_URL"),
        std::env::var("AWS_ENDPOINT_URL"),
        std::env::var("TSUNAGU_TEST_OPENSEARCH_URL"),
    );
    match vars {
        (Ok(_), Ok(_), Ok(opensearch)) => Some(Servers { opensearch }),
        _ => {
            eprintln!("skipped: needs MariaDB, moto and osmem; eval \"$(scripts/test-peers/mariadb.sh start)\" \"$(scripts/test-peers/moto.sh start)\" \"$(scripts/test-peers/osmem.sh start)\" (TSUNAGU_TEST_MYSQL_URL, AWS_ENDPOINT_URL, TSUNAGU_TEST_OPENSEARCH_URL)");
            None
        }
    }
}

async fn dynamo() -> aws_sdk_dynamodb::Client {
    let mut aws = tsunagu_aws::AwsConfig::new("us-east-1");
    aws.endpoint_url = std::env::var("AWS_ENDPOINT_URL").ok();
    aws_sdk_dynamodb::Client::new(&tsunagu_aws::sdk_config(&aws).await.unwrap())
}

/// Every item of a table, sorted, as text (to compare before and after).
async fn all_items(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            let sorted: BTreeMap<_, _> = item.iter().collect();
            out.push(format!("{sorted:?}"));
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    out.sort();
    out
}

/// 40 legacy deals keyed by `pk` (S) + `rev` (N), so ids are `pk#rev`. D39 belongs to a
/// company that is rejected, D40's amount is not a number.
async fn seed_dynamodb(client: &aws_sdk_dynamodb::Client, table: &str) {
    let _ = client.delete_table().table_name(table).send().await;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("rev")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("rev")
                .key_type(KeyType::Range)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for i in 1..=40 {
        let company = match i {
            39 => "co_6".to_string(),
            _ => format!("co_{}", (i - 1) % 5 + 1),
        };
        let amount = match i {
            40 => AttributeValue::S("many".into()),
            _ => AttributeValue::N(format!("{}", i * 1000)),
        };
        let item: HashMap<String, AttributeValue> = [
            ("pk", AttributeValue::S(format!("D{i:02}"))),
            ("rev", AttributeValue::N("1".into())),
            ("company", AttributeValue::S(company)),
            ("amount", amount),
            ("won", AttributeValue::Bool(i % 2 == 0)),
            (
                "precise",
                AttributeValue::N("12345678901234567890123456789".into()),
            ),
            (
                "tags",
                AttributeValue::Ss(vec!["重点".into(), "新規".into()]),
            ),
            ("note", AttributeValue::Null(true)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
}

/// 25 activities, the last one on the rejected deal D40, and a tombstone of tsunagu's
/// replication index that must not become a row.
async fn seed_opensearch(client: &OpenSearchSink, index: &str) {
    let _ = client
        .request_json(Method::DELETE, &[index], &[], None, "delete index")
        .await;
    client
        .request_json(Method::PUT, &[index], &[], Some(&json!({})), "create index")
        .await
        .unwrap();
    for i in 1..=25 {
        let deal = if i == 25 { 40 } else { i };
        let doc = json!({"deal_id": format!("D{deal:02}#1"), "memo": format!("訪問 {i}"), "kind": "visit"});
        client
            .request_json(
                Method::PUT,
                &[index, "_doc", &format!("A{i:02}")],
                &[("refresh", "true")],
                Some(&doc),
                "index",
            )
            .await
            .unwrap();
    }
    let tombstone = json!({"key": "deal-9|deal", "kind": "tombstone", "version": 7, "sort_hash": 1, "committed_at_us": 1, "indexed_at_us": 2});
    client
        .request_json(
            Method::PUT,
            &[index, "_doc", "deal-9|deal"],
            &[("refresh", "true")],
            Some(&tombstone),
            "index",
        )
        .await
        .unwrap();
}

async fn open_pits(client: &OpenSearchSink) -> usize {
    let v = client
        .request_json(
            Method::GET,
            &["_search", "point_in_time", "_all"],
            &[],
            None,
            "list points in time",
        )
        .await
        .unwrap();
    v["pits"].as_array().map(Vec::len).unwrap_or(0)
}

/// Six companies (the sixth with an empty name, rejected) and two deals, which a
/// `company` table must not read.
async fn seed_embedded(data_dir: &Path) {
    let store = EmbeddedStore::open(&data_dir.join("primary.db"), StoreOptions::default()).unwrap();
    let now = chrono::Utc::now();
    for i in 1..=6 {
        let company = Company {
            id: format!("co_{i}"),
            tenant_id: "t1".into(),
            name: if i == 6 {
                String::new()
            } else {
                format!("株式会社{i}")
            },
            prefecture: None,
            address: format!("東京都千代田区丸の内{i}"),
            industry: None,
            created_at: now,
            updated_at: now,
        };
        store
            .put(
                company.key(),
                Entity::Company(company).to_json(),
                Condition::None,
            )
            .await
            .unwrap();
    }
    for i in 1..=2 {
        let deal = Deal {
            id: format!("dl_{i}"),
            tenant_id: "t1".into(),
            company_id: "co_1".into(),
            title: "刷新".into(),
            owner_id: "u1".into(),
            stage: DealStage::Proposal,
            amount: 1,
            expected_close_date: None,
            tags: vec![],
            created_at: now,
            updated_at: now,
        };
        store
            .put(deal.key(), Entity::Deal(deal).to_json(), Condition::None)
            .await
            .unwrap();
    }
    store.close();
}

/// The files of a directory with a hash of their bytes and their modification times.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            (
                path.file_name().unwrap().to_string_lossy().to_string(),
                (
                    xxhash_rust::xxh3::xxh3_64(&std::fs::read(&path).unwrap()),
                    meta.modified().unwrap(),
                ),
            )
        })
        .collect()
}

fn spec_text(table: &str, index: &str, data_dir: &Path) -> String {
    format!(
        r#"version = 1
[settings]
chunk_rows = 10

[sources.crm]
type = "dynamodb"
region = "us-east-1"
endpoint_url = "${{AWS_ENDPOINT_URL}}"
segments = 3

[sources.search]
type = "opensearch"
url = "${{TSUNAGU_TEST_OPENSEARCH_URL}}"
page_size = 7

[sources.app]
type = "embedded"
data_dir = "{data_dir}"

[[tables]]
name = "companies"
source = {{ type = "embedded", from = "app", item_type = "company" }}
primary_key = ["id"]
columns = [
  {{ name = "id", type = "varchar(32)" }},
  {{ name = "name", type = "varchar(100)", required = true, transforms = ["null_if_empty"] }},
  {{ name = "prefecture", type = "varchar(8)", from = "address", transforms = ["prefecture"] }},
  {{ name = "store_key", type = "varchar(64)", from = "_id" }},
  {{ name = "version", type = "bigint", from = "_version" }},
]

[[tables]]
name = "deals"
source = {{ type = "dynamodb", from = "crm", table = "{table}" }}
primary_key = ["id"]
columns = [
  {{ name = "id", type = "varchar(32)", from = "_id" }},
  {{ name = "company_id", type = "varchar(32)", from = "company", required = true }},
  {{ name = "amount", type = "bigint" }},
  {{ name = "won", type = "boolean" }},
  {{ name = "precise", type = "varchar(64)" }},
  {{ name = "tags", type = "text" }},
  {{ name = "note", type = "varchar(10)", default = "-" }},
]
[[tables.foreign_keys]]
columns = ["company_id"]
references = "companies"

[[tables]]
name = "activities"
source = {{ type = "opensearch", from = "search", index = "{index}" }}
primary_key = ["id"]
columns = [
  {{ name = "id", type = "varchar(32)", from = "_id" }},
  {{ name = "deal_id", type = "varchar(32)", required = true }},
  {{ name = "memo", type = "text" }},
]
[[tables.foreign_keys]]
columns = ["deal_id"]
references = "deals"
"#,
        data_dir = data_dir.display()
    )
}

#[tokio::test]
async fn dynamodb_opensearch_and_the_embedded_store_into_mariadb() {
    let Some(servers) = servers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (table, index) = ("LegacyDeals-mig", "activity-mig");
    let dynamo = dynamo().await;
    seed_dynamodb(&dynamo, table).await;
    let search = OpenSearchSink::new(&OpenSearchConfig::new(servers.opensearch.clone())).unwrap();
    seed_opensearch(&search, index).await;
    seed_embedded(&data_dir).await;

    let items_before = all_items(&dynamo, table).await;
    let store_before = snapshot(&data_dir);
    let pits_before = open_pits(&search).await;

    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, spec_text(table, index, &data_dir)).unwrap();
    let target = common::database("mig_sources")
        .await
        .expect("servers() checked TSUNAGU_TEST_MYSQL_URL");
    let opts = options(dir.path(), &spec, None, &target);
    let report = run(&opts).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.fk_violations, 0);
    let counts: BTreeMap<&str, (u64, u64, u64)> = report
        .tables
        .iter()
        .map(|(k, t)| (k.as_str(), (t.read, t.written, t.rejected)))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("companies", (6, 5, 1)),
            ("deals", (40, 38, 2)),
            ("activities", (25, 24, 1)),
        ])
    );
    assert_eq!(
        report.tables["deals"].rejected_by_reason,
        BTreeMap::from([
            ("bad_type".to_string(), 1),
            ("dangling_foreign_key".to_string(), 1)
        ])
    );
    assert_eq!(
        report.tables["companies"].rejected_by_reason,
        BTreeMap::from([("missing_required".to_string(), 1)])
    );
    for t in report.tables.values() {
        assert_eq!(t.target_count, t.written);
        assert_eq!(t.target_checksum, t.checksum);
    }
    assert!(report.source.is_empty(), "no graph read");
    assert!(report.sources["crm"].starts_with("dynamodb region=us-east-1"));
    assert!(report.sources["app"].contains(&data_dir.canonicalize().unwrap().display().to_string()));
    let rejects = std::fs::read_to_string(opts.work_dir.join("rejects/deals.jsonl")).unwrap();
    assert!(
        rejects.contains("\"id\":\"D40#1\"") && rejects.contains("bad_type"),
        "{rejects}"
    );
    assert!(rejects.contains("\"id\":\"D39#1\""), "{rejects}");

    // What landed in the database.
    let mut conn = mysql_async::Conn::from_url(target.as_str()).await.unwrap();
    let row: Option<(String, Option<String>, String, i64)> = conn
        .query_first("SELECT name, prefecture, store_key, version FROM companies WHERE id = 'co_2'")
        .await
        .unwrap();
    let (name, prefecture, store_key, version) = row.unwrap();
    assert_eq!(
        (name.as_str(), prefecture.as_deref(), store_key.as_str()),
        ("株式会社2", Some("東京都"), "co_2|company")
    );
    assert!(version > 0);
    let row: Option<(String, i64, bool, String, String, String)> = conn
        .query_first(
            "SELECT company_id, amount, won, precise, tags, note FROM deals WHERE id = 'D02#1'",
        )
        .await
        .unwrap();
    assert_eq!(
        row.unwrap(),
        (
            "co_2".to_string(),
            2000,
            true,
            "12345678901234567890123456789".to_string(),
            r#"["新規","重点"]"#.to_string(),
            "-".to_string()
        )
    );
    let tombstones: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM activities WHERE id LIKE 'deal-%'")
        .await
        .unwrap();
    assert_eq!(tombstones, Some(0));
    conn.disconnect().await.unwrap();

    // The sources are unchanged.
    assert_eq!(all_items(&dynamo, table).await, items_before);
    assert_eq!(
        snapshot(&data_dir),
        store_before,
        "store files, bytes and mtimes"
    );
    assert_eq!(
        open_pits(&search).await,
        pits_before,
        "the point in time is deleted"
    );

    // A changed source is refused on resume.
    let state_path = opts.work_dir.join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["sources"]["crm"] =
        json!("dynamodb region=eu-west-1 endpoint=(aws) profile=(default) segments=3");
    std::fs::write(&state_path, state.to_string()).unwrap();
    let e = run(&RunOptions {
        resume: true,
        ..opts.clone()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "the sources changed since the interrupted run (`crm` is now dynamodb region=us-east-1"
        ),
        "{e}"
    );
}

/// A store that is running while it is read: the reader sees its committed items through
/// the WAL, and the store keeps writing.
#[tokio::test]
async fn a_running_embedded_store_is_read_beside_its_writer() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    seed_embedded(&data_dir).await;
    let store = EmbeddedStore::open(&data_dir.join("primary.db"), StoreOptions::default()).unwrap();
    let out = dir.path().join("companies.jsonl");
    let (d, o) = (data_dir.clone(), out.clone());
    let n = tokio::task::spawn_blocking(move || {
        tsunagu_migrate::source::embedded::fetch(
            &d,
            "company",
            &o,
            &indicatif::ProgressBar::hidden(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, 6);
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["id"], "co_1|company");
    assert_eq!(first["properties"]["type"], "company");
    assert_eq!(first["properties"]["_partition"], "co_1");
    store
        .put(
            Company::key_for("co_7"),
            json!({"type": "company"}),
            Condition::None,
        )
        .await
        .unwrap();
    store.close();
}

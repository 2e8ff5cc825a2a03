//! End to end from a live graph: a small sales graph written into FalkorDB (Bolt 5) with
//! Cypher `CREATE`, migrated with `--source bolt://...` into MariaDB, gives exactly the
//! tables, rejects, checksums and report of the same graph migrated from an APOC export,
//! and the expected counts, a column taken from a relationship (`from_relationship`)
//! included. `scripts/test-peers/falkordb.sh test` runs it inside the
//! network namespace where both servers run; without `TSUNAGU_TEST_BOLT_URL` and
//! `TSUNAGU_TEST_MYSQL_URL` it says so and passes.

mod common;

use common::{database, options, outcome, query_u64, rejects};
use neo4j::ValueReceive;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tsunagu_migrate::run::{run, RunOptions};
use tsunagu_migrate::source::bolt::BoltOptions;

/// Labels and a type of their own (made unique per run by [`unique`]).
const SPEC: &str = r#"version = 1
[[tables]]
name = "companies"
source = { type = "node", label = "E2eCompany" }
primary_key = ["code"]
columns = [
  { name = "code", type = "varchar(8)", required = true },
  { name = "name", type = "varchar(50)", required = true, transforms = ["trim", "nfkc", "null_if_empty"] },
  { name = "prefecture", type = "varchar(4)", from = "address", transforms = ["trim", "nfkc", "prefecture"] },
  { name = "address", type = "varchar(100)", from = "address", transforms = ["trim", "nfkc", "strip_prefecture"] },
  { name = "employees", type = "int" },
]

[[tables]]
name = "deals"
source = { type = "node", label = "E2eDeal" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "company_code", type = "varchar(8)", from = "companyCode", required = true },
  { name = "title", type = "varchar(50)", required = true },
  { name = "amount_yen", type = "bigint", from = "amount" },
  { name = "status", type = "varchar(8)", required = true, map = { "商談中" = "open", "受注" = "won", "失注" = "lost" } },
]
[[tables.foreign_keys]]
columns = ["company_code"]
references = "companies"

[[tables]]
name = "tags"
source = { type = "node", label = "E2eTag" }
primary_key = ["id"]
unique = [["name"]]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "name", type = "varchar(20)", required = true },
]

[[tables]]
name = "deal_tags"
source = { type = "relationship", rel_type = "E2E_TAGGED", start_label = "E2eDeal", end_label = "E2eTag" }
primary_key = ["deal_id", "tag_id"]
columns = [
  { name = "deal_id", type = "bigint", from = "_start" },
  { name = "tag_id", type = "bigint", from = "_end" },
  { name = "weight", type = "int" },
]
[[tables.foreign_keys]]
columns = ["deal_id"]
references = "deals"
[[tables.foreign_keys]]
columns = ["tag_id"]
references = "tags"

[[tables]]
name = "deal_notes"
source = { type = "node", label = "E2eNote" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "deal_id", type = "bigint", from_relationship = { type = "E2E_ON", direction = "out", label = "E2eDeal" }, required = true },
  { name = "text", type = "varchar(50)" },
]
[[tables.foreign_keys]]
columns = ["deal_id"]
references = "deals"
"#;

/// The graph: (label, name in this test, properties). Invalid on purpose: C3 (no name),
/// C4 (employees not a number), D4 (unknown company), D5 (status not in the map), D6
/// (its company C3 is rejected), T3/T4 (the same name: whichever comes second).
fn nodes() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "E2eCompany",
            "C1",
            json!({"code": "C1", "name": "株式会社アルファ", "address": "東京都新宿区西新宿2-8-1", "employees": 120}),
        ),
        (
            "E2eCompany",
            "C2",
            json!({"code": "C2", "name": " ベータ合同会社 ", "address": "大阪市北区梅田1-1", "employees": 45}),
        ),
        (
            "E2eCompany",
            "C3",
            json!({"code": "C3", "address": "札幌市中央区北1条"}),
        ),
        (
            "E2eCompany",
            "C4",
            json!({"code": "C4", "name": "デルタ", "employees": "多数"}),
        ),
        (
            "E2eDeal",
            "D1",
            json!({"companyCode": "C1", "title": "導入", "amount": 1_000_000, "status": "商談中"}),
        ),
        (
            "E2eDeal",
            "D2",
            json!({"companyCode": "C2", "title": "更新", "amount": 500_000, "status": "受注"}),
        ),
        (
            "E2eDeal",
            "D3",
            json!({"companyCode": "C1", "title": "追加", "status": "失注"}),
        ),
        (
            "E2eDeal",
            "D4",
            json!({"companyCode": "C9", "title": "幽霊", "status": "商談中"}),
        ),
        (
            "E2eDeal",
            "D5",
            json!({"companyCode": "C2", "title": "保留", "status": "保留"}),
        ),
        (
            "E2eDeal",
            "D6",
            json!({"companyCode": "C3", "title": "名無し", "status": "受注"}),
        ),
        ("E2eTag", "T1", json!({"name": "重要"})),
        ("E2eTag", "T2", json!({"name": "新規"})),
        ("E2eTag", "T3", json!({"name": "旧"})),
        ("E2eTag", "T4", json!({"name": "旧"})),
        ("E2eNote", "N1", json!({"text": "初回訪問"})),
        ("E2eNote", "N2", json!({"text": "見積"})),
        ("E2eNote", "N3", json!({"text": "案件なし"})),
        ("E2eNote", "N4", json!({"text": "二重"})),
        ("E2eNote", "N5", json!({"text": "幽霊案件"})),
        ("E2eNote", "N6", json!({"text": "タグにも"})),
    ]
}

/// `E2E_ON` relationships, (note, deal or tag): N1 and N2 have one deal each, N3 none
/// (`missing_relationship`), N4 two (`multiple_relationships`), N5 the rejected D4
/// (`dangling_foreign_key`), N6 one deal and one tag (not a deal: not counted).
const ON: &[(&str, &str)] = &[
    ("N1", "D1"),
    ("N2", "D2"),
    ("N4", "D1"),
    ("N4", "D2"),
    ("N5", "D4"),
    ("N6", "T1"),
    ("N6", "D3"),
];

/// `E2E_TAGGED` relationships: (deal, tag, weight). D4→T1 and D5→T2 dangle (their deals
/// are rejected).
const TAGGED: &[(&str, &str, i64)] = &[
    ("D1", "T1", 3),
    ("D1", "T2", 1),
    ("D2", "T2", 2),
    ("D3", "T1", 5),
    ("D4", "T1", 1),
    ("D5", "T2", 1),
];

/// A property value as a Cypher literal (the test's own strings and integers; FalkorDB
/// does not answer writes that take parameters over Bolt).
fn literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Number(n) => n.as_i64().expect("integer properties only").to_string(),
        other => panic!("unsupported property {other}"),
    }
}

/// Runs a write (FalkorDB over Bolt does not answer a write that returns records).
fn write(driver: &neo4j::driver::Driver, query: &str) {
    driver
        .execute_query(query)
        .run()
        .unwrap_or_else(|e| panic!("{query}: {e}"));
}

/// The server's id of every element a read query returns as `id`, by its `key`.
fn ids(driver: &neo4j::driver::Driver, query: &str) -> HashMap<String, i64> {
    let result = driver
        .execute_query(query)
        .with_routing_control(neo4j::driver::RoutingControl::Read)
        .run()
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    result
        .records
        .into_iter()
        .map(
            |mut rec| match (rec.take_value("key"), rec.take_value("id")) {
                (Some(ValueReceive::String(k)), Some(ValueReceive::Integer(i))) => (k, i),
                other => panic!("{query}: {other:?}"),
            },
        )
        .collect()
}

/// Labels and the type made unique to one run (`E2e` → `E2e<run>`, `E2E` → `E2E<run>`):
/// nothing needs deleting first, and a second run on the same server reads only its own
/// graph.
fn unique(text: &str, run: &str) -> String {
    text.replace("E2e", &format!("E2e{run}"))
        .replace("E2E", &format!("E2E{run}"))
}

/// Writes the graph into the server; returns the same graph as APOC JSON lines, with the
/// ids the server gave, in the order the Bolt source reads (nodes by id, relationships
/// by start node id, then id). Every
/// element carries a `key` property (its name in this test), which the spec ignores.
fn write_graph(opts: &BoltOptions, run: &str) -> (Vec<String>, neo4j::driver::Driver) {
    let driver = opts.driver();
    let mut node_ids: HashMap<String, (i64, String)> = HashMap::new();
    let nodes: Vec<(String, &str, Value)> = nodes()
        .into_iter()
        .map(|(label, name, mut props)| {
            props["key"] = json!(name);
            (unique(label, run), name, props)
        })
        .collect();
    for (label, _, props) in &nodes {
        let fields: Vec<String> = props
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}: {}", literal(v)))
            .collect();
        write(
            &driver,
            &format!("CREATE (:{label} {{{}}})", fields.join(", ")),
        );
    }
    // (nodes 0, relationships 1; start node id or 0; id; line)
    let mut lines: Vec<(i64, i64, i64, String)> = Vec::new();
    for (label, name, props) in &nodes {
        if !node_ids.contains_key(*name) {
            let found = ids(
                &driver,
                &format!("MATCH (n:{label}) RETURN id(n) AS id, n.key AS key"),
            );
            for (k, id) in found {
                node_ids.insert(k, (id, label.clone()));
            }
        }
        let id = node_ids[*name].0;
        lines.push((
            0,
            0,
            id,
            json!({"type": "node", "id": id.to_string(), "labels": [label], "properties": props})
                .to_string(),
        ));
    }
    let rel_type = unique("E2E_TAGGED", run);
    for &(deal, tag, weight) in TAGGED {
        let ((_, sl), (_, el)) = (&node_ids[deal], &node_ids[tag]);
        write(&driver, &format!("MATCH (a:{sl} {{key: '{deal}'}}), (b:{el} {{key: '{tag}'}}) CREATE (a)-[:{rel_type} {{key: '{deal}-{tag}', weight: {weight}}}]->(b)"));
    }
    let rel_ids = ids(
        &driver,
        &format!("MATCH ()-[r:{rel_type}]->() RETURN id(r) AS id, r.key AS key"),
    );
    for &(deal, tag, weight) in TAGGED {
        let ((s, sl), (e, el)) = (&node_ids[deal], &node_ids[tag]);
        let key = format!("{deal}-{tag}");
        let id = rel_ids[&key];
        lines.push((1, *s, id, json!({"type": "relationship", "id": id.to_string(), "label": rel_type,
            "properties": {"key": key, "weight": weight},
            "start": {"id": s.to_string(), "labels": [sl]}, "end": {"id": e.to_string(), "labels": [el]}})
        .to_string()));
    }
    let on_type = unique("E2E_ON", run);
    for &(note, other) in ON {
        let ((_, sl), (_, el)) = (&node_ids[note], &node_ids[other]);
        write(&driver, &format!("MATCH (a:{sl} {{key: '{note}'}}), (b:{el} {{key: '{other}'}}) CREATE (a)-[:{on_type} {{key: '{note}-{other}'}}]->(b)"));
    }
    let on_ids = ids(
        &driver,
        &format!("MATCH ()-[r:{on_type}]->() RETURN id(r) AS id, r.key AS key"),
    );
    for &(note, other) in ON {
        let ((s, sl), (e, el)) = (&node_ids[note], &node_ids[other]);
        let key = format!("{note}-{other}");
        let id = on_ids[&key];
        lines.push((1, *s, id, json!({"type": "relationship", "id": id.to_string(), "label": on_type,
            "properties": {"key": key},
            "start": {"id": s.to_string(), "labels": [sl]}, "end": {"id": e.to_string(), "labels": [el]}})
        .to_string()));
    }
    lines.sort_by_key(|&(kind, start, id, _)| (kind, start, id));
    (lines.into_iter().map(|(_, _, _, l)| l).collect(), driver)
}

/// Options of a run of the test's spec.
fn e2e_options(dir: &Path, run: &str, source: &str, url: &str, name: &str) -> RunOptions {
    let spec = dir.join("e2e.toml");
    std::fs::write(&spec, unique(SPEC, run)).unwrap();
    options(dir, &spec, source, url, name)
}

/// The graph is written over Bolt, then migrated over Bolt into one database and from its
/// APOC export into another: the same tables, rejects and checksums.
///
/// The writer's driver stays open until the end: FalkorDB 4.16 stops answering once a
/// Bolt client has closed its connections (the source's reads then wait for an answer
/// that never comes), and `scripts/test-peers/falkordb.sh test` gives each test a fresh
/// server for the same reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_graph_migrates_like_its_apoc_export() {
    let Ok(bolt) = std::env::var("TSUNAGU_TEST_BOLT_URL") else {
        eprintln!("skipped: needs a Bolt server and MariaDB in one network namespace; run scripts/test-peers/falkordb.sh test");
        return;
    };
    if std::env::var("TSUNAGU_TEST_MYSQL_URL").is_err() {
        eprintln!("skipped: needs MariaDB next to the Bolt server; run scripts/test-peers/falkordb.sh test");
        return;
    }
    let opts = BoltOptions::parse(&bolt).unwrap();
    let run_id = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let r = run_id.clone();
    let (lines, _writer) = std::thread::spawn(move || write_graph(&opts, &r))
        .join()
        .unwrap();
    let Some(from_bolt) = database("tsunagu_t_bolt").await else {
        return;
    };
    let Some(from_apoc) = database("tsunagu_t_bolt_apoc").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("apoc");
    std::fs::create_dir_all(&export).unwrap();
    std::fs::write(export.join("export.json"), lines.join("\n")).unwrap();

    // Ranges of 2 ids read by 3 workers: many ranges for a small graph.
    let bolt_url = format!("{bolt}?workers=3&page_size=2");
    let bolt_opts = e2e_options(dir.path(), &run_id, &bolt_url, &from_bolt, "bolt");
    let bolt_report = run(&bolt_opts).await.unwrap();
    let apoc_opts = e2e_options(
        dir.path(),
        &run_id,
        export.to_str().unwrap(),
        &from_apoc,
        "apoc",
    );
    let apoc_report = run(&apoc_opts).await.unwrap();

    for r in [&bolt_report, &apoc_report] {
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!((r.fk_violations, r.source_malformed), (0, 0));
    }
    assert_eq!(outcome(&bolt_report), outcome(&apoc_report));
    assert_eq!(rejects(&bolt_opts.work_dir), rejects(&apoc_opts.work_dir));

    let counts: BTreeMap<&str, (u64, u64, u64)> = bolt_report
        .tables
        .iter()
        .map(|(k, t)| (k.as_str(), (t.read, t.written, t.rejected)))
        .collect();
    let want: BTreeMap<&str, (u64, u64, u64)> = [
        ("companies", (4, 2, 2)),
        ("deals", (6, 3, 3)),
        ("tags", (4, 3, 1)),
        ("deal_tags", (6, 4, 2)),
        ("deal_notes", (6, 3, 3)),
    ]
    .into();
    assert_eq!(counts, want);
    let reasons = |t: &str| bolt_report.tables[t].rejected_by_reason.clone();
    assert_eq!(
        reasons("companies"),
        [("bad_type".into(), 1), ("missing_required".into(), 1)].into()
    );
    assert_eq!(
        reasons("deals"),
        [
            ("dangling_foreign_key".into(), 2),
            ("unknown_value".into(), 1)
        ]
        .into()
    );
    assert_eq!(reasons("tags"), [("duplicate_key".into(), 1)].into());
    assert_eq!(
        reasons("deal_tags"),
        [("dangling_foreign_key".into(), 2)].into()
    );
    // The relationship column: one reason per rejected note, the deal ids joined over
    // Bolt as from the export.
    assert_eq!(
        reasons("deal_notes"),
        [
            ("dangling_foreign_key".into(), 1),
            ("missing_relationship".into(), 1),
            ("multiple_relationships".into(), 1)
        ]
        .into()
    );
    // The transforms reached the database the same way.
    for url in [&from_bolt, &from_apoc] {
        assert_eq!(
            query_u64(url, "SELECT COUNT(*) FROM companies WHERE (code = 'C1' AND prefecture = '東京都' AND address = '新宿区西新宿2-8-1') OR (code = 'C2' AND prefecture = '大阪府' AND name = 'ベータ合同会社')").await,
            2
        );
        assert_eq!(
            query_u64(url, "SELECT SUM(weight) FROM deal_tags").await,
            11
        );
        // N1 → D1, N2 → D2, N6 → D3 (its tag is not a deal).
        assert_eq!(
            query_u64(url, "SELECT COUNT(*) FROM deal_notes n JOIN deals d ON d.id = n.deal_id WHERE (n.text = '初回訪問' AND d.title = '導入') OR (n.text = '見積' AND d.title = '更新') OR (n.text = 'タグにも' AND d.title = '追加')").await,
            3
        );
    }
}

//! The Bolt source against a real Bolt 5 server (FalkorDB, started in a network namespace
//! by `scripts/test-peers/falkordb.sh`): keyset paging over several id classes reads
//! every record exactly once, in the APOC format the rest of a run reads; cypher queries
//! are paged by keyset or streamed. Without
//! `TSUNAGU_TEST_BOLT_URL` the test says so and passes without running.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use tsunagu_migrate::source::apoc::{parse_record, PartitionKey};
use tsunagu_migrate::source::bolt::{fetch, BoltOptions};
use tsunagu_migrate::spec::SourceKind;

/// The tests share one graph, which each of them clears: one at a time.
static GRAPH: Mutex<()> = Mutex::new(());

/// The server's options and the graph to oneself, or `None` (with a message) without one.
fn graph() -> Option<(BoltOptions, MutexGuard<'static, ()>)> {
    let Ok(url) = std::env::var("TSUNAGU_TEST_BOLT_URL") else {
        eprintln!("skipped: needs a Bolt server; set TSUNAGU_TEST_BOLT_URL=bolt://127.0.0.1:7687 (scripts/test-peers/falkordb.sh test)");
        return None;
    };
    let guard = GRAPH.lock().unwrap_or_else(|e| e.into_inner());
    Some((BoltOptions::parse(&url).unwrap(), guard))
}

#[test]
fn keyset_paging_over_id_classes_reads_every_record_once() {
    let Some((mut opts, _graph)) = graph() else {
        return;
    };
    // The test writes its graph; the source under test only reads.
    let driver = opts.driver();
    for q in [
        "MATCH (n) DETACH DELETE n",
        "UNWIND range(1, 250) AS i CREATE (:Company {name: '株式会社' + toString(i), employees: i})",
        "UNWIND range(1, 250) AS i CREATE (:Tag {name: 'tag' + toString(i), n: i})",
        "MATCH (c:Company), (t:Tag) WHERE t.n = c.employees CREATE (c)-[:TAGGED {weight: c.employees}]->(t)",
    ] {
        driver.execute_query(q).run().unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    opts.page_size = 7;
    opts.partitions = 3;
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        PartitionKey::Label("Company".into()),
        PartitionKey::RelType("TAGGED".into()),
    ];
    let parts = fetch(&opts, &keys, dir.path(), &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(parts.records["label:Company"], 250);
    assert_eq!(parts.records["rel:TAGGED"], 250);

    let read = |key: &str| -> Vec<String> {
        std::fs::read_to_string(&parts.files[key][0])
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    let company_lines = read("label:Company");
    let companies = parse(&company_lines);
    let ids: BTreeSet<&str> = companies.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 250, "no record twice");
    let employees: BTreeMap<String, i64> = companies
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.properties.value("employees").as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        employees.values().copied().collect::<BTreeSet<_>>(),
        (1..=250).collect()
    );
    assert!(companies.iter().all(|c| c.labels == vec!["Company"]
        && c.properties
            .value("name")
            .as_str()
            .unwrap()
            .starts_with("株式会社")));

    let tagged_lines = read("rel:TAGGED");
    let tagged = parse(&tagged_lines);
    assert_eq!(
        tagged
            .iter()
            .map(|r| r.id.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        250
    );
    for r in &tagged {
        let (start, end) = (r.start.as_ref().unwrap(), r.end.as_ref().unwrap());
        assert_eq!(start.labels, ["Company"]);
        assert_eq!(end.labels, ["Tag"]);
        assert_eq!(
            r.properties.value("weight").as_i64(),
            employees.get(&start.id).copied(),
            "the start node is the company"
        );
    }
}

fn cypher(query: &str) -> PartitionKey {
    PartitionKey::Source(SourceKind::Cypher {
        query: query.into(),
        paged: query.contains("$after"),
    })
}

/// A `cypher` table's query: paged by keyset through `$after` / `$limit` (pages of 7 over
/// 40 rows), or streamed; the `id` column is the record id, the others its properties.
///
/// FalkorDB 4.16 stops answering once a Bolt client has closed its connections, so
/// `scripts/test-peers/falkordb.sh test` runs every test of this file against a fresh
/// server of its own.
#[test]
fn cypher_queries_page_by_keyset_or_stream() {
    let Some((mut opts, _graph)) = graph() else {
        return;
    };
    let driver = opts.driver();
    for q in [
        "MATCH (n) DETACH DELETE n",
        "UNWIND range(1, 4) AS i CREATE (:Region {name: '地域' + toString(i), n: i})",
        "UNWIND range(1, 40) AS i MATCH (r:Region) WHERE r.n = i % 4 + 1 CREATE (:Company {name: '株式会社' + toString(i), n: i})-[:LOCATED_IN]->(r)",
    ] {
        driver.execute_query(q).run().unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    opts.page_size = 7;
    let paged = "MATCH (c:Company)-[:LOCATED_IN]->(r:Region) WHERE id(c) > $after RETURN id(c) AS id, c.name AS name, r.name AS region, c.n AS n ORDER BY id LIMIT $limit";
    let streamed =
        "MATCH (c:Company)-[:LOCATED_IN]->(r:Region) RETURN toString(c.n) AS id, r.name AS region";
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        cypher(paged),
        cypher(streamed),
        PartitionKey::Label("Region".into()),
    ];
    let parts = fetch(&opts, &keys, dir.path(), &indicatif::ProgressBar::hidden()).unwrap();
    let read = |key: &PartitionKey| -> Vec<String> {
        std::fs::read_to_string(&parts.files[&key.name()][0])
            .unwrap()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let lines = read(&keys[0]);
    let rows: Vec<_> = lines.iter().map(|l| parse_record(l).unwrap()).collect();
    assert_eq!(parts.records[&keys[0].name()], 40);
    let ids: Vec<i64> = rows.iter().map(|r| r.id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "keyset order, no row twice: {ids:?}"
    );
    for r in &rows {
        let n = r.properties.value("n").as_i64().unwrap();
        assert_eq!(r.properties.value("name"), format!("株式会社{n}"));
        assert_eq!(r.properties.value("region"), format!("地域{}", n % 4 + 1));
        assert!(r.properties.get("id").is_none(), "the id is the record id");
    }
    let lines = read(&keys[1]);
    assert_eq!(
        parse(&lines)
            .iter()
            .map(|r| r.id.clone())
            .collect::<BTreeSet<_>>(),
        (1..=40).map(|n| n.to_string()).collect()
    );
    assert_eq!(parts.records["label:Region"], 4);
}

/// A query without an `id` column is refused with a message saying what to return.
#[test]
fn a_cypher_query_without_an_id_column_is_refused() {
    let Some((opts, _graph)) = graph() else {
        return;
    };
    let driver = opts.driver();
    driver
        .execute_query("UNWIND range(1, 3) AS i CREATE (:Company {n: i})")
        .run()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = [cypher("MATCH (c:Company) RETURN c.n AS n")];
    let err = fetch(&opts, &keys, dir.path(), &indicatif::ProgressBar::hidden())
        .unwrap_err()
        .to_string();
    assert!(err.contains("returns no `id` column"), "{err}");
}

/// The records of a partition's lines (they borrow from the lines).
fn parse(lines: &[String]) -> Vec<tsunagu_migrate::source::Record<'_>> {
    lines.iter().map(|l| parse_record(l).unwrap()).collect()
}

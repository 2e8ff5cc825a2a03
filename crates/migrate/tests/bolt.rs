//! The Bolt source against a real Bolt 5 server (FalkorDB, started in a network namespace
//! by `scripts/test-peers/falkordb.sh`): id ranges read by several workers read every
//! record exactly once, in id order, in the APOC format the rest of a run reads, with
//! relationships read from their start labels' ranges or from all nodes' alike, and a
//! resumed read reads only the ranges it misses; cypher queries are paged by keyset or
//! streamed. Without
//! `TSUNAGU_TEST_BOLT_URL` the test says so and passes without running.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use tsunagu_migrate::source::apoc::{parse_record, PartitionKey};
use tsunagu_migrate::source::bolt::{fetch, fetch_with, BoltOptions};
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
fn id_ranges_over_workers_read_every_record_once_in_id_order() {
    let Some((mut opts, _graph)) = graph() else {
        return;
    };
    // The test writes its graph; the source under test only reads.
    let driver = opts.driver();
    write(
        &driver,
        &[
            "MATCH (n) DETACH DELETE n",
            "UNWIND range(1, 250) AS i CREATE (:Company {name: '株式会社' + toString(i), employees: i})",
            "UNWIND range(1, 250) AS i CREATE (:Tag {name: 'tag' + toString(i), n: i})",
            "MATCH (c:Company), (t:Tag) WHERE t.n = c.employees CREATE (c)-[:TAGGED {weight: c.employees}]->(t)",
        ],
    );
    // 250 companies in ranges of about 7 ids, read by 3 workers.
    opts.page_size = 7;
    opts.workers = 3;
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        PartitionKey::Label("Company".into()),
        PartitionKey::RelType("TAGGED".into()),
    ];
    let parts = fetch_with(
        &driver,
        &opts,
        &keys,
        dir.path(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    assert_eq!(parts.records["label:Company"], 250);
    assert_eq!(parts.records["rel:TAGGED"], 250);
    // Only the partition files are left.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["p000.jsonl", "p001.jsonl"]);

    let read = |key: &str| -> Vec<String> {
        std::fs::read_to_string(&parts.files[key][0])
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    let company_lines = read("label:Company");
    let companies = parse(&company_lines);
    let ids: Vec<i64> = companies.iter().map(|c| c.id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "id order, no record twice"
    );
    assert_eq!(ids.len(), 250);
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
    let order: Vec<(i64, i64)> = tagged
        .iter()
        .map(|r| {
            (
                r.start.as_ref().unwrap().id.parse().unwrap(),
                r.id.parse().unwrap(),
            )
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "start node id, then id"
    );

    // The same type read from its start label's ranges, from two start labels (a node
    // with both is read once), with one worker, and with other range widths: the
    // same file.
    for (labels, workers, page) in [
        (Some(vec!["Company"]), 1, 1000),
        (Some(vec!["Company", "Tag"]), 2, 3),
        (Some(vec!["Tag", "Company"]), 4, 64),
        (None, 2, 50),
    ] {
        let mut o = opts.clone();
        o.workers = workers;
        o.page_size = page;
        if let Some(labels) = &labels {
            o.start_labels = [(
                "TAGGED".to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
            )]
            .into();
        }
        let d = tempfile::tempdir().unwrap();
        let again = fetch_with(
            &driver,
            &o,
            &keys,
            d.path(),
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        for key in ["label:Company", "rel:TAGGED"] {
            assert_eq!(
                std::fs::read(&again.files[key][0]).unwrap(),
                std::fs::read(&parts.files[key][0]).unwrap(),
                "{key} with start labels {labels:?}, {workers} workers, ranges of {page}"
            );
        }
    }
}

/// A read interrupted after it cut its ranges and read some of them is resumed: the
/// ranges already read are kept as they are (the test marks one), the others are read,
/// and the partition is the same as an uninterrupted read's.
#[test]
fn a_resumed_read_reads_only_the_missing_ranges() {
    let Some((mut opts, _graph)) = graph() else {
        return;
    };
    let driver = opts.driver();
    write(
        &driver,
        &[
            "MATCH (n) DETACH DELETE n",
            "UNWIND range(1, 100) AS i CREATE (:Company {n: i})",
            "CREATE (:Company:Tag {n: 0})",
            "MATCH (c:Company) WHERE c.n % 2 = 0 CREATE (c)-[:TAGGED {n: c.n}]->(c)",
        ],
    );
    opts.page_size = 10;
    opts.workers = 2;
    opts.start_labels = [(
        "TAGGED".to_string(),
        vec!["Company".to_string(), "Tag".to_string()],
    )]
    .into();
    let keys = [
        PartitionKey::Label("Company".into()),
        PartitionKey::RelType("TAGGED".into()),
    ];
    let whole = tempfile::tempdir().unwrap();
    let expected = fetch_with(
        &driver,
        &opts,
        &keys,
        whole.path(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    assert_eq!(expected.records["label:Company"], 101);
    assert_eq!(
        expected.records["rel:TAGGED"], 51,
        "the node with both start labels is read once"
    );
    let expected_lines: Vec<String> = std::fs::read_to_string(&expected.files["label:Company"][0])
        .unwrap()
        .lines()
        .map(String::from)
        .collect();

    // The interrupted run: its plan for the label, the first range read, the second
    // range read too (marked, so a re-read would show), the rest not yet.
    let ids: Vec<i64> = parse(&expected_lines)
        .iter()
        .map(|r| r.id.parse().unwrap())
        .collect();
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    let ranges = tsunagu_migrate::source::bolt::cut_ranges(first, last, 101, 10);
    assert!(ranges.len() >= 5, "{ranges:?}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p000.ranges.json"),
        serde_json::to_vec(&ranges).unwrap(),
    )
    .unwrap();
    let in_range = |k: usize| -> Vec<&String> {
        expected_lines
            .iter()
            .zip(&ids)
            .filter(|(_, id)| (ranges[k].first..=ranges[k].last).contains(*id))
            .map(|(l, _)| l)
            .collect()
    };
    let range0: String = in_range(0).iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("p000.r000000.jsonl"), &range0).unwrap();
    let mut range1: Vec<String> = in_range(1).iter().map(|l| l.to_string()).collect();
    range1[0] = range1[0].replace("\"n\":", "\"marked\":true,\"n\":");
    std::fs::write(
        dir.path().join("p000.r000001.jsonl"),
        range1.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    // A range file being written when the run stopped does not count.
    std::fs::write(dir.path().join("p000.r000002.jsonl.tmp"), "partial").unwrap();

    let resumed = fetch_with(
        &driver,
        &opts,
        &keys,
        dir.path(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    assert_eq!(resumed.records, expected.records);
    let got = std::fs::read_to_string(&resumed.files["label:Company"][0]).unwrap();
    let want = expected_lines.join("\n") + "\n";
    assert_ne!(got, want, "the range read before was not read again");
    assert_eq!(
        got.replace("\"marked\":true,", ""),
        want,
        "the other ranges were read"
    );
    assert_eq!(
        std::fs::read(&resumed.files["rel:TAGGED"][0]).unwrap(),
        std::fs::read(&expected.files["rel:TAGGED"][0]).unwrap()
    );
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
    write(
        &driver,
        &[
            "MATCH (n) DETACH DELETE n",
            "UNWIND range(1, 4) AS i CREATE (:Region {name: '地域' + toString(i), n: i})",
            "UNWIND range(1, 40) AS i MATCH (r:Region) WHERE r.n = i % 4 + 1 CREATE (:Company {name: '株式会社' + toString(i), n: i})-[:LOCATED_IN]->(r)",
        ],
    );
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

/// Runs the test's writes (the source under test only reads).
fn write(driver: &neo4j::driver::Driver, queries: &[&str]) {
    for q in queries {
        driver
            .execute_query(*q)
            .run()
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

/// The records of a partition's lines (they borrow from the lines).
fn parse(lines: &[String]) -> Vec<tsunagu_migrate::source::Record<'_>> {
    lines.iter().map(|l| parse_record(l).unwrap()).collect()
}

//! The Bolt source against a real Bolt 5 server (FalkorDB, started in a network namespace
//! by `scripts/test-peers/falkordb.sh`): keyset paging over several id classes reads
//! every record exactly once, in the APOC format the rest of a run reads. Without
//! `TSUNAGU_TEST_BOLT_URL` the test says so and passes without running.

use std::collections::{BTreeMap, BTreeSet};
use tsunagu_migrate::source::apoc::{parse_record, PartitionKey};
use tsunagu_migrate::source::bolt::{fetch, BoltOptions};

#[test]
fn keyset_paging_over_id_classes_reads_every_record_once() {
    let Ok(url) = std::env::var("TSUNAGU_TEST_BOLT_URL") else {
        eprintln!("skipped: needs a Bolt server; set TSUNAGU_TEST_BOLT_URL=bolt://127.0.0.1:7687 (scripts/test-peers/falkordb.sh test)");
        return;
    };
    let mut opts = BoltOptions::parse(&url).unwrap();
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

    let read = |key: &str| -> Vec<tsunagu_migrate::source::Record> {
        std::fs::read_to_string(&parts.files[key])
            .unwrap()
            .lines()
            .map(|l| parse_record(l).unwrap())
            .collect()
    };
    let companies = read("label:Company");
    let ids: BTreeSet<&str> = companies.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 250, "no record twice");
    let employees: BTreeMap<String, i64> = companies
        .iter()
        .map(|c| (c.id.clone(), c.properties["employees"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        employees.values().copied().collect::<BTreeSet<_>>(),
        (1..=250).collect()
    );
    assert!(companies.iter().all(|c| c.labels == vec!["Company"]
        && c.properties["name"]
            .as_str()
            .unwrap()
            .starts_with("株式会社")));

    let tagged = read("rel:TAGGED");
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
        assert_eq!(
            (start.labels.as_slice(), end.labels.as_slice()),
            (&["Company".to_string()][..], &["Tag".to_string()][..])
        );
        assert_eq!(
            r.properties["weight"].as_i64(),
            employees.get(&start.id).copied(),
            "the start node is the company"
        );
    }
}

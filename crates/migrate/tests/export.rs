//! The generated fixture through partitioning and export, without a database: exactly
//! the injected invalid records are rejected, with the injected reason, and every valid
//! one is written.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use tsunagu_migrate::export::{self, ExportPaths};
use tsunagu_migrate::fixture::{generate, FixtureOptions};
use tsunagu_migrate::source::apoc::{partition, PartitionKey};
use tsunagu_migrate::{plan, spec};

fn spec_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migration/sales.toml")
}

fn injected(dir: &Path) -> BTreeSet<(String, String, String)> {
    std::fs::read_to_string(dir.join("injected.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn exactly_the_injected_rows_are_rejected_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    let expected = generate(
        &fixture,
        &FixtureOptions {
            rows: 30_000,
            invalid_share: 0.08,
            seed: 3,
        },
    )
    .unwrap();
    let model = spec::load(&spec_path()).unwrap();
    let plan = plan::plan(&model).unwrap();
    let keys = tsunagu_migrate::source::partition_keys(&model);
    let parts = partition(
        &fixture,
        &keys,
        &dir.path().join("parts"),
        2,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    assert_eq!(parts.malformed, 0);

    let mut key_sets = HashMap::new();
    let mut rejected = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut sources: HashMap<String, Vec<String>> = HashMap::new();
    let mut checked_lines = 0;
    for ti in plan.order() {
        let t = &model.tables[ti];
        let input = &parts.files[&PartitionKey::of(&t.source).name()];
        let chunk_dir = dir.path().join("chunks").join(&t.name);
        let rejects = dir.path().join("rejects").join(format!("{}.jsonl", t.name));
        let keys_dir = dir.path().join("keys").join(&t.name);
        let mut chunk_rows = 0;
        let (stats, keys) = export::export_table(
            &model,
            ti,
            ExportPaths {
                input,
                chunk_dir: &chunk_dir,
                rejects: &rejects,
                keys_dir: &keys_dir,
                relationships: &parts.files,
            },
            &key_sets,
            |c| {
                chunk_rows += c.rows;
                Ok(())
            },
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        key_sets.insert(ti, Arc::new(keys));
        let e = &expected[&t.name];
        assert_eq!(
            (stats.read, stats.written, stats.rejected),
            (e.read, e.written, e.rejected),
            "{}",
            t.name
        );
        assert_eq!(chunk_rows, stats.written);
        for line in std::fs::read_to_string(&rejects).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let reason = v["reason"].as_str().unwrap().to_string();
            // `file` and `line` are the record's own line in the export (the export is
            // partitioned by 2 threads, so this also covers a file cut into segments).
            let file = v["file"].as_str().unwrap().to_string();
            let no = v["line"].as_u64().unwrap() as usize;
            let lines = sources.entry(file.clone()).or_insert_with(|| {
                std::fs::read_to_string(&file)
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect()
            });
            let record: serde_json::Value = serde_json::from_str(&lines[no - 1]).unwrap();
            assert_eq!(record["id"], v["id"], "{file}:{no} for {line}");
            match &t.source {
                spec::SourceKind::Node { label } => {
                    assert_eq!(
                        (v["record"].as_str(), v["label"].as_str()),
                        (Some("node"), Some(label.as_str()))
                    );
                    assert_eq!(record["type"], "node");
                }
                spec::SourceKind::Relationship { rel_type, .. } => {
                    assert_eq!(
                        (v["record"].as_str(), v["type"].as_str()),
                        (Some("relationship"), Some(rel_type.as_str()))
                    );
                    assert_eq!(record["label"].as_str(), Some(rel_type.as_str()));
                }
                other => panic!("unexpected source {other:?}"),
            }
            // The relationship rejects say what was found, on the column.
            let detail = v["detail"].as_str().unwrap();
            match reason.as_str() {
                "multiple_relationships" => assert!(
                    detail.starts_with("2 outgoing ") && detail.contains(" relationships to a :"),
                    "{line}"
                ),
                "missing_relationship" => {
                    assert!(detail.starts_with("no outgoing "), "{line}")
                }
                _ => {}
            }
            if reason.ends_with("_relationship") || reason.ends_with("_relationships") {
                assert!(
                    ["company_id", "deal_id"].contains(&v["column"].as_str().unwrap()),
                    "{line}"
                );
            }
            checked_lines += 1;
            kinds.insert(reason.clone());
            rejected.insert((
                t.name.clone(),
                v["id"].as_str().unwrap().to_string(),
                reason,
            ));
        }
    }
    assert_eq!(rejected, injected(&fixture));
    assert_eq!(checked_lines, rejected.len());
    let all: BTreeSet<String> = [
        "missing_required",
        "bad_type",
        "too_long",
        "unknown_value",
        "duplicate_key",
        "dangling_foreign_key",
        "missing_relationship",
        "multiple_relationships",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds, all, "every kind of invalid data is exercised");
}

#[test]
fn the_fixture_is_deterministic_and_the_export_does_not_depend_on_workers() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    generate(
        &a,
        &FixtureOptions {
            rows: 3_000,
            invalid_share: 0.1,
            seed: 9,
        },
    )
    .unwrap();
    generate(
        &b,
        &FixtureOptions {
            rows: 3_000,
            invalid_share: 0.1,
            seed: 9,
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read(a.join("export.json")).unwrap(),
        std::fs::read(b.join("export.json")).unwrap()
    );

    let mut model = spec::load(&spec_path()).unwrap();
    model.settings.chunk_rows = 97;
    let keys = tsunagu_migrate::source::partition_keys(&model);
    let parts = partition(
        &a,
        &keys,
        &dir.path().join("parts"),
        2,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let ti = model
        .tables
        .iter()
        .position(|t| t.name == "companies")
        .unwrap();
    let input = &parts.files[&PartitionKey::of(&model.tables[ti].source).name()];
    let mut results = Vec::new();
    for workers in [1, 3] {
        model.settings.workers = workers;
        let out = dir.path().join(format!("w{workers}"));
        let (stats, _) = export::export_table(
            &model,
            ti,
            ExportPaths {
                input,
                chunk_dir: &out,
                rejects: &out.join("rejects.jsonl"),
                keys_dir: &out.join("keys"),
                relationships: &parts.files,
            },
            &HashMap::new(),
            |_| Ok(()),
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        let mut chunks = Vec::new();
        for (i, _) in &stats.chunks {
            chunks.push(std::fs::read(export::chunk_path(&out, *i)).unwrap());
        }
        results.push((stats.written, stats.checksum, stats.chunks.clone(), chunks));
    }
    assert_eq!(results[0], results[1]);
    assert!(results[0].2.len() > 1);
}

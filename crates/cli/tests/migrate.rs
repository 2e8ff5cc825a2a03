//! `tsunagu migrate` against a real MariaDB: full run with counts, rejects, checksums and
//! foreign keys checked in the database; idempotent re-run; a run killed mid-way then
//! resumed; a failing load and a reject threshold both leaving the previous tables
//! intact. The server comes from `scripts/test-peers/mariadb.sh` (run by `.ci/run`);
//! without `TSUNAGU_TEST_MYSQL_URL` these tests say so and pass without running.

#[path = "../../migrate/tests/common/mod.rs"]
mod common;

use common::{database, options, outcome, query_u64, rejects};
use mysql_async::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tsunagu_migrate::fixture::{generate, Expected, FixtureOptions};
use tsunagu_migrate::run::run;
use tsunagu_migrate::verify::Report;

const BIN: &str = env!("CARGO_BIN_EXE_tsunagu");

fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migration/sales.toml")
}

/// The tables of a database (none while it does not exist yet).
async fn tables(url: &str) -> BTreeSet<String> {
    let Ok(mut conn) = mysql_async::Conn::from_url(url).await else {
        return BTreeSet::new();
    };
    let names: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    conn.disconnect().await.unwrap();
    names.into_iter().collect()
}

fn expected(dir: &Path) -> BTreeMap<String, Expected> {
    std::fs::read_to_string(dir.join("expected.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            (
                f[0].to_string(),
                Expected {
                    read: n(1),
                    written: n(2),
                    rejected: n(3),
                },
            )
        })
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_run_loads_exactly_the_valid_rows_and_a_rerun_is_idempotent() {
    let Some(url) = database("tsunagu_t_full").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    generate(
        &fixture,
        &FixtureOptions {
            rows: 8_000,
            invalid_share: 0.06,
            seed: 11,
        },
    )
    .unwrap();
    let opts = options(dir.path(), &spec_path(), &fixture, &url, "report");
    let report = run(&opts).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.fk_violations, 0);
    let want = expected(&fixture);
    assert_eq!(
        report.tables.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, t) in &report.tables {
        let e = &want[name];
        assert_eq!(
            (t.read, t.written, t.rejected),
            (e.read, e.written, e.rejected),
            "{name}"
        );
        assert_eq!(t.checksum, t.target_checksum, "{name}");
        // Counted again straight from the database.
        assert_eq!(
            query_u64(&url, &format!("SELECT COUNT(*) FROM `{name}`")).await,
            e.written,
            "{name}"
        );
    }
    assert_eq!(rejects(&opts.work_dir), injected(&fixture));
    // Foreign keys checked independently of the report.
    for (child, col, parent) in [
        ("deals", "company_id", "companies"),
        ("activity_logs", "deal_id", "deals"),
        ("deal_tags", "tag_id", "tags"),
        ("sales_list_deals", "sales_list_id", "sales_lists"),
    ] {
        let orphans = query_u64(&url, &format!("SELECT COUNT(*) FROM `{child}` c LEFT JOIN `{parent}` p ON p.id = c.{col} WHERE p.id IS NULL")).await;
        assert_eq!(orphans, 0, "{child}.{col}");
    }
    // Transforms reached the database: prefecture split off, value map applied.
    assert!(query_u64(&url, "SELECT COUNT(*) FROM companies WHERE prefecture IS NOT NULL AND address LIKE CONCAT(prefecture, '%')").await == 0);
    assert!(
        query_u64(
            &url,
            "SELECT COUNT(*) FROM companies WHERE prefecture = '東京都'"
        )
        .await
            > 0
    );
    assert_eq!(
        query_u64(
            &url,
            "SELECT COUNT(*) FROM deals WHERE status NOT IN ('open', 'won', 'lost')"
        )
        .await,
        0
    );
    let left: BTreeSet<String> = tables(&url).await;
    assert!(
        left.iter()
            .all(|t| !t.ends_with("__tsunagu_stage") && !t.ends_with("__tsunagu_old")),
        "{left:?}"
    );
    let on_disk: Report = serde_json::from_slice(&std::fs::read(&opts.report).unwrap()).unwrap();
    assert_eq!(outcome(&on_disk), outcome(&report));

    // Run again from scratch, one table exporting at a time: same rows, same checksums,
    // nothing doubled.
    let serial = dir.path().join("serial.toml");
    let text = std::fs::read_to_string(spec_path()).unwrap();
    assert!(text.contains("\nworkers = 2\n"));
    std::fs::write(
        &serial,
        text.replace("\nworkers = 2\n", "\nworkers = 2\nparallel_tables = 1\n"),
    )
    .unwrap();
    let again = run(&options(dir.path(), &serial, &fixture, &url, "again"))
        .await
        .unwrap();
    assert!(again.ok, "{:?}", again.problems);
    assert_eq!(outcome(&again), outcome(&report));
    assert_eq!(
        query_u64(&url, "SELECT COUNT(*) FROM activity_logs").await,
        want["activity_logs"].written
    );
    // The staging tables were loaded without constraints; the swapped-in tables carry
    // every foreign key of the spec, after both runs.
    let declared = |child: &str, parent: &str| {
        format!("SELECT COUNT(*) FROM information_schema.referential_constraints WHERE constraint_schema = DATABASE() AND table_name = '{child}' AND referenced_table_name = '{parent}'")
    };
    for (child, parent) in [
        ("deals", "companies"),
        ("deals", "users"),
        ("sales_lists", "users"),
        ("activity_logs", "deals"),
        ("activity_logs", "users"),
        ("deal_tags", "deals"),
        ("deal_tags", "tags"),
        ("sales_list_deals", "sales_lists"),
        ("sales_list_deals", "deals"),
    ] {
        assert_eq!(
            query_u64(&url, &declared(child, parent)).await,
            1,
            "{child} → {parent}"
        );
    }
    let phases = &again.phases;
    assert!(
        phases.transfer_seconds > 0.0 && phases.verify_seconds >= 0.0,
        "{phases:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_duplicates_or_losses() {
    let Some(url) = database("tsunagu_t_resume").await else {
        return;
    };
    let Some(reference_url) = database("tsunagu_t_resume_ref").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    generate(
        &fixture,
        &FixtureOptions {
            rows: 30_000,
            invalid_share: 0.05,
            seed: 5,
        },
    )
    .unwrap();
    // Small chunks, so the run is killed between many committed chunks.
    let spec = dir.path().join("spec.toml");
    let text = std::fs::read_to_string(spec_path())
        .unwrap()
        .replace("chunk_rows = 100000", "chunk_rows = 150");
    std::fs::write(&spec, text).unwrap();
    let reference = run(&options(
        dir.path(),
        &spec,
        &fixture,
        &reference_url,
        "reference",
    ))
    .await
    .unwrap();
    assert!(reference.ok);

    let report = dir.path().join("killed.json");
    let args = |resume: bool| {
        let mut a = vec![
            "migrate",
            "run",
            "--quiet",
            "--spec",
            spec.to_str().unwrap(),
            "--source",
            fixture.to_str().unwrap(),
            "--target",
            &url,
            "--report",
            report.to_str().unwrap(),
        ];
        if resume {
            a.push("--resume");
        }
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let mut child = std::process::Command::new(BIN)
        .args(args(false))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed; use a larger fixture"
        );
        let loaded = if tables(&url).await.contains("_tsunagu_migrate_chunks") {
            query_u64(
                &url,
                "SELECT COUNT(*) FROM _tsunagu_migrate_chunks WHERE table_name = 'activity_logs'",
            )
            .await
        } else {
            0
        };
        if loaded >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no chunk loaded in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    assert!(
        tables(&url).await.contains("activity_logs__tsunagu_stage"),
        "killed mid-load"
    );

    let status = std::process::Command::new(BIN)
        .args(args(true))
        .status()
        .unwrap();
    assert!(status.success());
    let resumed: Report = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(resumed.ok, "{:?}", resumed.problems);
    assert!(resumed.resumed);
    assert_eq!(outcome(&resumed), outcome(&reference));
    for (name, t) in &resumed.tables {
        assert_eq!(
            query_u64(&url, &format!("SELECT COUNT(*) FROM `{name}`")).await,
            t.written,
            "{name}"
        );
    }
}

/// Writes an APOC export of tags.
fn tags_source(dir: &Path, names: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let lines: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| serde_json::json!({"type": "node", "id": i.to_string(), "labels": ["Tag"], "properties": {"name": n}}).to_string())
        .collect();
    std::fs::write(dir.join("export.json"), lines.join("\n")).unwrap();
    dir.to_path_buf()
}

const TAGS_SPEC: &str = r#"version = 1
[[tables]]
name = "tags"
source = { type = "node", label = "Tag" }
primary_key = ["id"]
unique = [["name"]]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "name", type = "varchar(20)", required = true },
]
"#;

/// Chunks sent to an S3 endpoint nobody listens on: the run stops before any work with a
/// message that names the endpoint and the settings to check, and leaves the tables of
/// the previous run alone. (A child process, since the AWS settings come from the
/// environment.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_chunk_bucket_stops_the_run_and_says_what_to_check() {
    let Some(url) = database("tsunagu_t_s3_down").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tags.toml");
    std::fs::write(&spec, TAGS_SPEC).unwrap();
    let source = tags_source(&dir.path().join("src"), &["重要", "新規"]);
    assert!(
        run(&options(dir.path(), &spec, &source, &url, "first"))
            .await
            .unwrap()
            .ok
    );
    // A port that was free a moment ago: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(BIN)
        .args(["migrate", "run", "--quiet", "--spec"])
        .arg(&spec)
        .arg("--source")
        .arg(&source)
        .args([
            "--target",
            &url,
            "--chunks",
            "s3://tsunagu-chunks/run1",
            "--report",
        ])
        .arg(dir.path().join("second.json"))
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach http://127.0.0.1:{port}"))
            && stderr.contains("check AWS_ENDPOINT_URL"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("AWS_SECRET_ACCESS_KEY=") && !stderr.contains("test@"),
        "{stderr}"
    );
    assert_eq!(query_u64(&url, "SELECT COUNT(*) FROM tags").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_warning_fails_the_run_and_keeps_the_old_tables() {
    let Some(url) = database("tsunagu_t_warn").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tags.toml");
    std::fs::write(&spec, TAGS_SPEC).unwrap();
    let good = tags_source(&dir.path().join("good"), &["重要", "新規"]);
    let first = run(&options(dir.path(), &spec, &good, &url, "first"))
        .await
        .unwrap();
    assert!(first.ok);
    // "a" and "a " are different to the exporter but the same key to MariaDB's PAD SPACE
    // collation: LOAD DATA LOCAL would skip the second row with a mere warning.
    let bad = tags_source(&dir.path().join("bad"), &["a", "a ", "b"]);
    let err = run(&options(dir.path(), &spec, &bad, &url, "second"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("warning") && err.contains("Duplicate entry"),
        "{err}"
    );
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    let names: Vec<String> = conn
        .query("SELECT name FROM tags ORDER BY id")
        .await
        .unwrap();
    assert_eq!(names, vec!["重要", "新規"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reject_threshold_aborts_before_the_swap() {
    let Some(url) = database("tsunagu_t_threshold").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    generate(
        &clean,
        &FixtureOptions {
            rows: 2_000,
            invalid_share: 0.0,
            seed: 1,
        },
    )
    .unwrap();
    let first = run(&options(dir.path(), &spec_path(), &clean, &url, "first"))
        .await
        .unwrap();
    assert!(first.ok);
    assert!(first.tables.values().all(|t| t.rejected == 0));
    let dirty = dir.path().join("dirty");
    generate(
        &dirty,
        &FixtureOptions {
            rows: 2_000,
            invalid_share: 0.3,
            seed: 2,
        },
    )
    .unwrap();
    let mut opts = options(dir.path(), &spec_path(), &dirty, &url, "second");
    opts.max_reject_share = Some(0.1);
    let err = run(&opts).await.unwrap_err();
    assert!(
        matches!(err, tsunagu_migrate::Error::RejectThreshold { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("above max_reject_share 0.1"),
        "{err}"
    );
    for (name, t) in &first.tables {
        assert_eq!(
            query_u64(&url, &format!("SELECT COUNT(*) FROM `{name}`")).await,
            t.written,
            "{name} untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_migrates_then_loads_the_same_chunks_raw_and_prints_the_ratio() {
    let Some(url) = database("tsunagu_cli_bench").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (stdout, figures) = bench_cli(&url, dir.path(), &[]);
    assert!(stdout.contains("ratio"), "{stdout}");
    assert_eq!(figures["verified"], true);
    assert_eq!(figures["fk_violations"], 0);
    // The raw passes load exactly the rows the migration wrote.
    assert_eq!(figures["raw_rows"], figures["rows_written"]);
    assert!(figures["rows_written"].as_u64().unwrap() > 0);
    assert!(figures["ratio"].as_f64().unwrap() > 0.0);
    if cfg!(target_os = "linux") {
        assert!(figures["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
    // The migration's own CPU: some, and no more than every core for the whole run.
    let cpu = figures["cpu_seconds"].as_f64().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(cpu > 0.0, "{figures}");
    assert!(
        cpu <= figures["seconds"].as_f64().unwrap() * cores * 1.05,
        "{figures}"
    );
    assert!(stdout.contains("CPU of the migration"), "{stdout}");
    // The raw copies are gone; the migrated tables stay.
    let names = tables(&url).await;
    assert!(names.contains("deals"), "{names:?}");
    assert!(!names.iter().any(|t| t.starts_with("raw")), "{names:?}");
}

/// The 31-table fixture shaped like the original system's, at a few thousand records:
/// every table loads, with exactly the generator's counts and rejects, the foreign keys
/// (9 of them read from relationships) hold in the database, and a second run is
/// idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_31_table_fixture_loads_every_table_with_the_expected_rejects() {
    use tsunagu_migrate::fixture::original31;
    let Some(url) = database("tsunagu_t_original31").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    let returned = original31::generate(
        &fixture,
        &FixtureOptions {
            rows: 6_000,
            invalid_share: 0.05,
            seed: 21,
        },
    )
    .unwrap();
    let want = expected(&fixture);
    assert_eq!(returned, want);
    assert_eq!(want.len(), 31);
    let mut names: Vec<&str> = original31::table_names();
    names.sort();
    assert_eq!(want.keys().map(String::as_str).collect::<Vec<_>>(), names);
    // Every kind of injected invalid record is there.
    let injected = injected(&fixture);
    let reasons: BTreeSet<&str> = injected.iter().map(|(_, _, r)| r.as_str()).collect();
    for reason in [
        "missing_required",
        "too_long",
        "bad_type",
        "unknown_value",
        "duplicate_key",
        "dangling_foreign_key",
        "missing_relationship",
        "multiple_relationships",
    ] {
        assert!(
            reasons.contains(reason),
            "{reason} not injected: {reasons:?}"
        );
    }
    let spec =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migration/original-31.toml");
    let opts = options(dir.path(), &spec, &fixture, &url, "report");
    let report = run(&opts).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.fk_violations, 0);
    assert_eq!(report.tables.len(), 31);
    for (name, e) in &want {
        let t = &report.tables[name];
        assert_eq!(
            (t.read, t.written, t.rejected),
            (e.read, e.written, e.rejected),
            "{name}"
        );
        assert!(e.written > 0, "{name}: nothing valid generated");
        assert_eq!(t.checksum, t.target_checksum, "{name}");
        assert_eq!(
            query_u64(&url, &format!("SELECT COUNT(*) FROM `{name}`")).await,
            e.written,
            "{name}"
        );
    }
    assert_eq!(rejects(&opts.work_dir), injected);
    // Every foreign key of the spec is declared, and no row is an orphan.
    let model = tsunagu_migrate::spec::load(&spec).unwrap();
    let mut fks = 0;
    for t in &model.tables {
        for fk in &t.foreign_keys {
            let col = &t.columns[fk.columns[0]].name;
            let parent = &model.tables[fk.parent].name;
            let orphans = query_u64(&url, &format!("SELECT COUNT(*) FROM `{}` c LEFT JOIN `{parent}` p ON p.id = c.`{col}` WHERE c.`{col}` IS NOT NULL AND p.id IS NULL", t.name)).await;
            assert_eq!(orphans, 0, "{}.{col}", t.name);
            fks += 1;
        }
    }
    assert_eq!(
        query_u64(&url, "SELECT COUNT(*) FROM information_schema.referential_constraints WHERE constraint_schema = DATABASE()").await,
        fks
    );
    // Relationship-sourced parents and the prefecture split reached the database.
    for (table, col) in [
        ("companies", "industry_id"),
        ("offices", "company_id"),
        ("activities", "deal_id"),
    ] {
        assert_eq!(
            query_u64(
                &url,
                &format!("SELECT COUNT(*) FROM `{table}` WHERE `{col}` IS NULL")
            )
            .await,
            0,
            "{table}.{col}"
        );
    }
    for table in ["companies", "offices"] {
        assert_eq!(query_u64(&url, &format!("SELECT COUNT(*) FROM `{table}` WHERE prefecture IS NOT NULL AND address LIKE CONCAT(prefecture, '%')")).await, 0, "{table}");
        assert!(
            query_u64(
                &url,
                &format!("SELECT COUNT(*) FROM `{table}` WHERE prefecture = '東京都'")
            )
            .await
                > 0,
            "{table}"
        );
    }
    assert_eq!(
        query_u64(
            &url,
            "SELECT COUNT(*) FROM deals WHERE status NOT IN ('open', 'won', 'lost')"
        )
        .await,
        0
    );

    // Again: same rows, same checksums, nothing doubled.
    let again = run(&opts).await.unwrap();
    assert!(again.ok, "{:?}", again.problems);
    assert_eq!(outcome(&again), outcome(&report));
    assert_eq!(rejects(&opts.work_dir), injected);
}

#[test]
fn gen_fixture_original31_is_deterministic_and_prints_its_spec() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |name: &str, seed: &str| {
        let out = std::process::Command::new(BIN)
            .args([
                "migrate",
                "gen-fixture",
                "--schema",
                "original31",
                "--rows",
                "3000",
                "--invalid-share",
                "0.05",
                "--seed",
                seed,
                "--out",
            ])
            .arg(dir.path().join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(dir.path().join(name).join("export.json")).unwrap()
    };
    let (a, b, c) = (gen("a", "5"), gen("b", "5"), gen("c", "6"));
    assert!(a == b, "same seed, different files");
    assert!(a != c, "different seeds, same file");
    // Only the export is a `*.json` file (the side file of relationships is gone).
    let jsons: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json") || n.ends_with(".part"))
        .collect();
    assert_eq!(jsons, ["export.json"]);
    let out = std::process::Command::new(BIN)
        .args([
            "migrate",
            "gen-fixture",
            "--schema",
            "original31",
            "--print-spec",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migration/original-31.toml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), spec);
    // The default stays the sales fixture.
    let out = std::process::Command::new(BIN)
        .args(["migrate", "gen-fixture", "--rows", "500", "--out"])
        .arg(dir.path().join("sales"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let expected = std::fs::read_to_string(dir.path().join("sales/expected.tsv")).unwrap();
    assert_eq!(expected.lines().count(), 1 + 8, "{expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_the_31_table_schema() {
    let Some(url) = database("tsunagu_cli_bench31").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, figures) = bench_cli(&url, dir.path(), &["--schema", "original31"]);
    assert_eq!(figures["verified"], true);
    assert_eq!(figures["tables"].as_array().unwrap().len(), 31);
    assert_eq!(figures["raw_rows"], figures["rows_written"]);
    let names = tables(&url).await;
    assert!(
        names.contains("activity_participants") && names.contains("prefectures"),
        "{names:?}"
    );
    assert!(!names.iter().any(|t| t.starts_with("raw")), "{names:?}");
}

/// `tsunagu migrate bench --rows 3000` with `extra` arguments: its output and figures.
fn bench_cli(url: &str, dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let json = dir.join("bench.json");
    let out = std::process::Command::new(BIN)
        .args([
            "migrate", "bench", "--rows", "3000", "--quiet", "--target", url,
        ])
        .args(extra)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, figures)
}

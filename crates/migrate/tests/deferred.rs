//! A cycle of foreign keys broken by `deferred = true`, against a real MariaDB
//! (`scripts/test-peers/mariadb.sh`): the load succeeds, the deferred constraint exists
//! afterwards and holds, and a dangling reference in it fails the run before the swap,
//! leaving the previous tables as they were (docs/migration.md). Without
//! `TSUNAGU_TEST_MYSQL_URL` the test says so and passes.

mod common;

use common::{database, options, query_u64};
use std::path::{Path, PathBuf};
use tsunagu_migrate::run::run;
use tsunagu_migrate::{plan, spec, Error};

/// Companies point to their contact user (deferred), users to their company.
const SPEC: &str = r#"version = 1
[[tables]]
name = "companies"
source = { type = "node", label = "Company" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "name", type = "varchar(50)", required = true },
  { name = "contact_id", type = "bigint", from = "contactId" },
]
[[tables.foreign_keys]]
columns = ["contact_id"]
references = "users"
deferred = true

[[tables]]
name = "users"
source = { type = "node", label = "User" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "company_id", type = "bigint", from = "companyId", required = true },
]
[[tables.foreign_keys]]
columns = ["company_id"]
references = "companies"
"#;

/// An APOC export: companies (id, contact) and users (id, company).
fn source(dir: &Path, companies: &[(u32, Option<u32>)], users: &[(u32, u32)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut lines: Vec<String> = companies
        .iter()
        .map(|&(id, contact)| {
            serde_json::json!({"type": "node", "id": id.to_string(), "labels": ["Company"],
                "properties": {"name": format!("会社{id}"), "contactId": contact}})
            .to_string()
        })
        .collect();
    lines.extend(users.iter().map(|&(id, company)| {
        serde_json::json!({"type": "node", "id": id.to_string(), "labels": ["User"],
            "properties": {"companyId": company}})
        .to_string()
    }));
    std::fs::write(dir.join("export.json"), lines.join("\n")).unwrap();
    dir.to_path_buf()
}

#[test]
fn the_cycle_is_an_error_without_the_deferred_constraint() {
    let model = spec::parse(&SPEC.replace("deferred = true\n", ""), "cycle.toml").unwrap();
    let err = plan::plan(&model).unwrap_err();
    assert!(matches!(err, Error::Cycle { .. }), "{err}");
    assert!(err.to_string().contains("deferred = true"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_foreign_key_breaks_the_cycle_and_is_enforced_after_loading() {
    let Some(url) = database("tsunagu_t_deferred").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("cycle.toml");
    std::fs::write(&spec, SPEC).unwrap();

    // User 12 points to no company: a non-deferred foreign key, rejected while exporting.
    let good = source(
        &dir.path().join("good"),
        &[(1, Some(10)), (2, Some(11)), (3, None)],
        &[(10, 1), (11, 2), (12, 99)],
    );
    let report = run(&options(dir.path(), &spec, &good, &url, "good"))
        .await
        .unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.fk_violations, 0);
    let (companies, users) = (&report.tables["companies"], &report.tables["users"]);
    assert_eq!((companies.written, companies.rejected), (3, 0));
    assert_eq!((users.written, users.rejected), (2, 1));
    assert_eq!(users.rejected_by_reason["dangling_foreign_key"], 1);
    assert!(
        report
            .fk_checks
            .iter()
            .any(|c| c.table == "companies" && c.references == "users" && c.violations == 0),
        "{:?}",
        report.fk_checks
    );
    // The deferred constraint is on the live table, and enforced.
    let constraint = "SELECT COUNT(*) FROM information_schema.referential_constraints WHERE constraint_schema = DATABASE() AND table_name = 'companies' AND referenced_table_name = 'users'";
    assert_eq!(query_u64(&url, constraint).await, 1);
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    let refused = mysql_async::prelude::Queryable::query_drop(
        &mut conn,
        "UPDATE companies SET contact_id = 77 WHERE id = 1",
    )
    .await;
    assert!(
        refused.is_err(),
        "the constraint refuses a dangling contact"
    );
    conn.disconnect().await.unwrap();

    // Company 4's contact 77 does not exist: the set-wise check on the staging tables
    // finds it, the run fails before the swap and the tables stay as the first run left
    // them.
    let bad = source(
        &dir.path().join("bad"),
        &[(1, Some(10)), (4, Some(77))],
        &[(10, 1), (11, 4)],
    );
    let err = run(&options(dir.path(), &spec, &bad, &url, "bad"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 row(s) of `companies` (contact_id) reference no row of `users`"),
        "{err}"
    );
    assert_eq!(query_u64(&url, "SELECT COUNT(*) FROM companies").await, 3);
    assert_eq!(query_u64(&url, "SELECT COUNT(*) FROM users").await, 2);
    assert_eq!(
        query_u64(&url, "SELECT COUNT(*) FROM companies WHERE id = 4").await,
        0
    );
    assert_eq!(query_u64(&url, constraint).await, 1);
}

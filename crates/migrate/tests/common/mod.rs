//! Helpers the tests against real servers share: a fresh MariaDB database per test, one
//! figure from a query, a report's outcome without timings, and the reject files.

#![allow(dead_code)] // each test binary uses its own share of these

use mysql_async::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tsunagu_migrate::run::RunOptions;
use tsunagu_migrate::verify::Report;

/// Options of a run writing `dir/NAME.json` (work directory beside it, local chunks).
pub fn options(
    dir: &Path,
    spec: &Path,
    source: impl Into<PathBuf>,
    url: &str,
    name: &str,
) -> RunOptions {
    let report = dir.join(format!("{name}.json"));
    RunOptions {
        spec: spec.to_path_buf(),
        source: Some(source.into()),
        target: url.to_string(),
        work_dir: RunOptions::default_work_dir(&report),
        report,
        chunks: None,
        resume: false,
        max_reject_share: None,
        progress: false,
    }
}

/// A fresh database for one test, or `None` (with a message) when no server is set.
pub async fn database(name: &str) -> Option<String> {
    let Ok(base) = std::env::var("TSUNAGU_TEST_MYSQL_URL") else {
        eprintln!("skipped: needs MariaDB; set TSUNAGU_TEST_MYSQL_URL=mysql://root@127.0.0.1:PORT/DB (eval \"$(scripts/test-peers/mariadb.sh start)\")");
        return None;
    };
    let (server, _) = base
        .rsplit_once('/')
        .expect("TSUNAGU_TEST_MYSQL_URL ends with /DB");
    let mut conn = mysql_async::Conn::from_url(format!("{server}/mysql"))
        .await
        .unwrap();
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    Some(format!("{server}/{name}"))
}

pub async fn query_u64(url: &str, sql: &str) -> u64 {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    let n: Option<u64> = conn.query_first(sql).await.unwrap();
    conn.disconnect().await.unwrap();
    n.unwrap_or(0)
}

/// Per table: read, written, rejected, checksum, target count and target checksum.
pub type Outcome = BTreeMap<String, (u64, u64, u64, String, u64, String)>;

/// Counts and checksums per table, without timings.
pub fn outcome(r: &Report) -> Outcome {
    r.tables
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                (
                    t.read,
                    t.written,
                    t.rejected,
                    t.checksum.clone(),
                    t.target_count,
                    t.target_checksum.clone(),
                ),
            )
        })
        .collect()
}

/// Every rejected row of a run: (table, source id, reason).
pub fn rejects(work: &Path) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(work.join("rejects")).unwrap() {
        let path = entry.unwrap().path();
        let table = path.file_stem().unwrap().to_str().unwrap().to_string();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.insert((
                table.clone(),
                v["id"].as_str().unwrap().to_string(),
                v["reason"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

//! Verification and the run report: per table rows read / written / rejected and time
//! spent, source vs target counts, an order-independent checksum of the loaded rows
//! computed the same way on both sides (Rust while exporting, SQL on the target), and a
//! foreign key integrity query per constraint.

use crate::error::Result;
use crate::load::Target;
use crate::spec::{Model, Table};
use mysql_async::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The JSON report of a run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Report {
    pub spec: String,
    /// The graph read (directory or Bolt URL without credentials; empty if none).
    pub source: String,
    /// The other connections read, by name, without secrets.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    pub target: String,
    pub started_at: String,
    pub seconds: f64,
    pub resumed: bool,
    /// Source lines that are not APOC records.
    pub source_malformed: u64,
    /// Keyed by target table name, in load order.
    pub tables: BTreeMap<String, TableReport>,
    /// Rows violating a foreign key in the target after the swap (all constraints).
    pub fk_violations: u64,
    pub fk_checks: Vec<FkCheck>,
    /// True when every count, checksum and foreign key matched.
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct TableReport {
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Checksum of the rows written, computed while exporting (16 hex digits).
    pub checksum: String,
    pub target_count: u64,
    /// The same checksum computed by the target over the loaded table.
    pub target_checksum: String,
    pub export_seconds: f64,
    pub load_seconds: f64,
    pub rejects_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FkCheck {
    pub table: String,
    pub columns: Vec<String>,
    pub references: String,
    pub violations: u64,
}

pub fn hex(checksum: u64) -> String {
    format!("{checksum:016x}")
}

/// The SQL computing a table's row count and checksum (see [`crate::export::row_hash`]).
pub fn checksum_sql(table: &Table, name: &str) -> String {
    let fields = table
        .columns
        .iter()
        .map(|c| format!("IF(`{0}` IS NULL, 'N', CONCAT('V', `{0}`))", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(MD5(CONCAT_WS(CHAR(31 USING utf8mb4), {fields})), 1, 16), 16, 10) AS UNSIGNED)), 0) % 18446744073709551616 AS CHAR) FROM `{name}`"
    )
}

/// Row count and checksum of a table in the target.
pub async fn table_checksum(target: &Target, table: &Table, name: &str) -> Result<(u64, u64)> {
    let mut conn = target.conn().await?;
    let row: Option<(u64, String)> = conn.query_first(checksum_sql(table, name)).await?;
    let (count, sum) = row.unwrap_or((0, "0".into()));
    let sum = sum.parse::<u64>().map_err(|e| {
        crate::Error::Verify(format!("checksum of `{name}` is not a number ({sum}): {e}"))
    })?;
    Ok((count, sum))
}

/// Counts, per foreign key, the rows of the child whose non-null key has no parent.
pub async fn foreign_key_violations(target: &Target, model: &Model) -> Result<Vec<FkCheck>> {
    let mut conn = target.conn().await?;
    let mut out = Vec::new();
    for t in &model.tables {
        for fk in &t.foreign_keys {
            let p = &model.tables[fk.parent];
            let on = fk
                .columns
                .iter()
                .zip(&fk.parent_columns)
                .map(|(&c, &pc)| format!("p.`{}` = c.`{}`", p.columns[pc].name, t.columns[c].name))
                .collect::<Vec<_>>()
                .join(" AND ");
            let not_null = fk
                .columns
                .iter()
                .map(|&c| format!("c.`{}` IS NOT NULL", t.columns[c].name))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = format!(
                "SELECT COUNT(*) FROM `{}` c WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM `{}` p WHERE {on})",
                t.name, p.name
            );
            let n: Option<u64> = conn.query_first(sql).await?;
            out.push(FkCheck {
                table: t.name.clone(),
                columns: fk
                    .columns
                    .iter()
                    .map(|&c| t.columns[c].name.clone())
                    .collect(),
                references: p.name.clone(),
                violations: n.unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// A plain-text table of the report, for the terminal.
pub fn render(report: &Report) -> String {
    let mut s = format!(
        "{:<24} {:>11} {:>11} {:>9} {:>11} {:>9} {:>9}  {}\n",
        "table", "read", "written", "rejected", "in target", "export s", "load s", "checksum"
    );
    for (name, t) in &report.tables {
        let same = if t.checksum == t.target_checksum {
            "="
        } else {
            "≠"
        };
        s.push_str(&format!(
            "{:<24} {:>11} {:>11} {:>9} {:>11} {:>9.1} {:>9.1}  {} {same} target\n",
            name,
            t.read,
            t.written,
            t.rejected,
            t.target_count,
            t.export_seconds,
            t.load_seconds,
            t.checksum
        ));
    }
    if report.source_malformed > 0 {
        s.push_str(&format!("source lines that are not APOC records: {} (see _source.rejects.jsonl in the work directory)\n", report.source_malformed));
    }
    s.push_str(&format!(
        "foreign key violations: {}; {} in {:.1} s{}\n",
        report.fk_violations,
        if report.ok {
            "verified"
        } else {
            "VERIFICATION FAILED"
        },
        report.seconds,
        if report.problems.is_empty() {
            String::new()
        } else {
            format!(": {}", report.problems.join("; "))
        }
    ));
    s
}

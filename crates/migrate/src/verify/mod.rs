//! Verification and the run report: per table rows read / written / rejected and time
//! spent, source vs target counts, an order-independent checksum of the loaded rows
//! computed the same way on both sides (Rust while exporting, SQL on the target), and a
//! foreign key integrity query per constraint.

use crate::error::Result;
use crate::load::Target;
use crate::spec::{ForeignKey, Model, Table};
use futures::{StreamExt, TryStreamExt};
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
    /// Rows violating a foreign key (all constraints), counted on the loaded tables
    /// before the swap, which does not happen unless this is 0.
    pub fk_violations: u64,
    pub fk_checks: Vec<FkCheck>,
    /// Seconds spent in each step of this invocation (a resumed run counts only what it
    /// did itself).
    pub phases: Phases,
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

/// Wall-clock seconds per step of a run.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Phases {
    /// Reading the source into one partition per label, relationship type or source.
    pub partition_seconds: f64,
    /// Exporting and loading every table (they overlap).
    pub transfer_seconds: f64,
    /// Counting rows without a parent on the staging tables, then declaring the
    /// foreign keys.
    pub foreign_keys_seconds: f64,
    pub swap_seconds: f64,
    /// Counts and checksums on the target.
    pub verify_seconds: f64,
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

/// The SQL computing a table's row count and checksum: the sum of
/// [`crate::export::row_hash`] over its rows.
pub fn checksum_sql(table: &Table, name: &str) -> String {
    let maps = table
        .columns
        .chunks(crate::export::NULL_MAP_COLUMNS)
        .map(|group| {
            group
                .iter()
                .enumerate()
                .map(|(i, c)| match i {
                    0 => format!("ISNULL(`{}`)", c.name),
                    _ => format!("(ISNULL(`{}`) << {i})", c.name),
                })
                .collect::<Vec<_>>()
                .join(" | ")
        });
    let values = table.columns.iter().map(|c| format!("`{}`", c.name));
    let fields = maps.chain(values).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS(CHAR(31 USING utf8mb4), {fields}))), 0) % 18446744073709551616 AS CHAR) FROM `{name}`"
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

/// The query counting the rows of `child` whose non-null key has no row in `parent`.
///
/// An outer join kept where no parent row matched, not `NOT EXISTS`: the referenced
/// columns are a key of the parent (the spec requires it), so a child row meets at most
/// one parent row, and the server walks the child's key index probing the parent's key
/// in order ("Not exists" in `EXPLAIN`). MariaDB turns the `NOT EXISTS` form into a
/// materialized copy of the whole parent key, built again for every query: at 10M rows
/// that cost the server 5-11 s of CPU per foreign key against 0.8-2.3 s for the join.
fn violations_sql(
    child: &Table,
    child_name: &str,
    parent: &Table,
    parent_name: &str,
    fk: &ForeignKey,
) -> String {
    let on = fk
        .columns
        .iter()
        .zip(&fk.parent_columns)
        .map(|(&c, &pc)| {
            format!(
                "p.`{}` = c.`{}`",
                parent.columns[pc].name, child.columns[c].name
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let not_null = fk
        .columns
        .iter()
        .map(|&c| format!("c.`{}` IS NOT NULL", child.columns[c].name))
        .collect::<Vec<_>>()
        .join(" AND ");
    // A matched parent row has its referenced columns equal to the child's non-null
    // values, so the first of them is null exactly when no parent row matched.
    let unmatched = &parent.columns[fk.parent_columns[0]].name;
    format!(
        "SELECT COUNT(*) FROM `{child_name}` c LEFT JOIN `{parent_name}` p ON {on} WHERE {not_null} AND p.`{unmatched}` IS NULL"
    )
}

/// Counts, per foreign key of the tables `tables` (indexes into the model), the rows of
/// the child whose non-null key has no parent, in the tables named `name(table)` (the
/// staging tables before the swap), `parallel` queries at a time.
pub async fn foreign_key_violations(
    target: &Target,
    model: &Model,
    tables: &[usize],
    name: impl Fn(&str) -> String,
    parallel: usize,
) -> Result<Vec<FkCheck>> {
    // The queries are built first, so the stream below owns everything it awaits.
    let queries: Vec<(FkCheck, String)> = tables
        .iter()
        .flat_map(|&ti| {
            let t = &model.tables[ti];
            t.foreign_keys.iter().map(move |fk| (t, fk))
        })
        .map(|(t, fk)| {
            let p = &model.tables[fk.parent];
            let check = FkCheck {
                table: t.name.clone(),
                columns: fk
                    .columns
                    .iter()
                    .map(|&c| t.columns[c].name.clone())
                    .collect(),
                references: p.name.clone(),
                violations: 0,
            };
            (
                check,
                violations_sql(t, &name(&t.name), p, &name(&p.name), fk),
            )
        })
        .collect();
    futures::stream::iter(queries.into_iter().map(|(check, sql)| {
        let target = target.clone();
        async move {
            let mut conn = target.conn().await?;
            let n: Option<u64> = conn.query_first(sql).await?;
            Ok::<_, crate::Error>(FkCheck {
                violations: n.unwrap_or(0),
                ..check
            })
        }
    }))
    .buffered(parallel.max(1))
    .try_collect()
    .await
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
    let p = &report.phases;
    s.push_str(&format!(
        "steps: partition {:.1} s, export + load {:.1} s, foreign keys {:.1} s, swap {:.1} s, verify {:.1} s\n",
        p.partition_seconds, p.transfer_seconds, p.foreign_keys_seconds, p.swap_seconds, p.verify_seconds
    ));
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

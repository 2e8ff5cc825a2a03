//! Loading into MySQL/MariaDB.
//!
//! Every target table `t` is first built as a staging table `t__tsunagu_stage` (same
//! columns and keys; the indexes of its foreign keys are built in one pass once its
//! rows are in, see [`build_indexes`]), loaded chunk by chunk with `LOAD
//! DATA LOCAL INFILE`. Each chunk is one transaction that also records the chunk in
//! `_tsunagu_migrate_chunks`, so a resumed run knows exactly which chunks are in. Since
//! `LOAD DATA LOCAL` implies `IGNORE`, a duplicate key would only be a warning and the
//! row would vanish: after every chunk the warning count and the affected rows are
//! checked and any difference rolls the chunk back and fails the run.
//!
//! Foreign keys are checked set-wise, not row by row: the exporter already rejected
//! every row whose reference has no accepted parent, so the staging tables are loaded
//! without constraints, all of them at once (a child does not wait for its parents'
//! loads), then [`crate::verify::foreign_key_violations`] counts the rows without a
//! parent on the staging tables. Any such row fails the run before the swap, which
//! leaves the previous tables intact; only when there is none does [`add_foreign_keys`]
//! declare the constraints, so the swapped-in tables carry every foreign key of the
//! spec and hold no row that breaks one.
//!
//! When everything is loaded, one `RENAME TABLE` statement swaps all staging tables in
//! at once (the previous tables become `t__tsunagu_old` and are dropped), so readers see
//! either the old tables or the new ones and a failed run leaves the old ones intact.
//! Text columns use `utf8mb4_bin`, so the database's notion of a duplicate is the same
//! byte equality the exporter checks.

use crate::error::{Error, Result};
use crate::export::{csv::LOAD_DATA_FORMAT, ChunkReady};
use crate::plan::Plan;
use crate::spec::{Model, Table};
use mysql_async::prelude::*;
use std::collections::HashSet;

pub const CHUNKS_TABLE: &str = "_tsunagu_migrate_chunks";

pub fn stage_name(table: &str) -> String {
    format!("{table}__tsunagu_stage")
}

pub fn old_name(table: &str) -> String {
    format!("{table}__tsunagu_old")
}

/// A MySQL/MariaDB target database.
#[derive(Clone)]
pub struct Target {
    pub pool: mysql_async::Pool,
    pub database: String,
    /// The URL without its password, for reports and messages.
    pub display: String,
}

impl Target {
    /// Connects to `mysql://USER[:PASSWORD]@HOST:PORT/DB`, creating the database if it
    /// does not exist.
    pub async fn connect(url: &str) -> Result<Target> {
        let opts = mysql_async::Opts::from_url(url).map_err(|e| {
            Error::Other(format!(
                "target url: {e}; expected mysql://USER[:PASSWORD]@HOST:PORT/DB"
            ))
        })?;
        let database = opts
            .db_name()
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::Other(
                    "target url names no database; expected mysql://USER@HOST:PORT/DB".into(),
                )
            })?;
        if database.contains('`') {
            return Err(Error::Other(
                "target database name must not contain a backquote".into(),
            ));
        }
        let display = format!(
            "mysql://{}@{}:{}/{}",
            opts.user().unwrap_or(""),
            opts.ip_or_hostname(),
            opts.tcp_port(),
            database
        );
        let admin = mysql_async::OptsBuilder::from_opts(opts.clone()).db_name(None::<String>);
        // Where and which flag, so a refused connection or a bad password says what to fix.
        let unreachable = |e: mysql_async::Error| {
            Error::Other(format!(
                "cannot use the target database {display} (--target / TSUNAGU_MIGRATE_TARGET): {e}"
            ))
        };
        let mut conn = mysql_async::Conn::new(admin).await.map_err(unreachable)?;
        conn.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4"
        ))
        .await
        .map_err(unreachable)?;
        conn.disconnect().await?;
        let pool = mysql_async::Pool::new(opts);
        Ok(Target {
            pool,
            database,
            display,
        })
    }

    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        Ok(self.pool.get_conn().await?)
    }

    pub async fn table_exists(&self, name: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        let n: Option<u64> = c
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                (&self.database, name),
            )
            .await?;
        Ok(n.unwrap_or(0) > 0)
    }
}

/// `CREATE TABLE` for a table under `name`: columns, primary key and unique keys. The
/// indexes on foreign key columns ([`foreign_key_indexes`]) are built by
/// [`build_indexes`] once the rows are in, and the constraints themselves are added by
/// [`add_foreign_keys`].
pub fn create_table_sql(table: &Table, name: &str) -> String {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let not_null = c.required || table.primary_key.contains(&i);
            format!(
                "`{}` {}{}",
                c.name,
                c.ty.sql(),
                if not_null { " NOT NULL" } else { "" }
            )
        })
        .collect();
    let cols = |idx: &[usize]| table.quoted_columns(idx);
    parts.push(format!("PRIMARY KEY ({})", cols(&table.primary_key)));
    let mut names = HashSet::new();
    for u in &table.unique {
        let name = index_name(table, "uq", u, &mut names);
        parts.push(format!("UNIQUE KEY `{name}` ({})", cols(u)));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS `{name}` (\n  {}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        parts.join(",\n  ")
    )
}

/// A name for the index of `cols`: `PREFIX_col1_col2`, at most 64 characters, made
/// unique among `taken` with a `_N` suffix.
fn index_name(table: &Table, prefix: &str, cols: &[usize], taken: &mut HashSet<String>) -> String {
    let base: String = std::iter::once(prefix)
        .chain(cols.iter().map(|&c| table.columns[c].name.as_str()))
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .take(60)
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// The indexes a table's foreign keys need, as (name, columns): one per foreign key whose
/// columns no key (nor an earlier such index) already starts with, as InnoDB would
/// create for the constraint. They are not in [`create_table_sql`]: an index built in
/// one sorted pass over a loaded table costs the server about a third less than one
/// kept up to date row by row while the chunks load.
pub fn foreign_key_indexes(table: &Table) -> Vec<(String, Vec<usize>)> {
    let mut names: HashSet<String> = HashSet::new();
    for u in &table.unique {
        index_name(table, "uq", u, &mut names);
    }
    let mut indexed: Vec<&[usize]> = std::iter::once(table.primary_key.as_slice())
        .chain(table.unique.iter().map(Vec::as_slice))
        .collect();
    let mut out = Vec::new();
    for fk in &table.foreign_keys {
        if !indexed.iter().any(|k| k.starts_with(&fk.columns)) {
            out.push((
                index_name(table, "fk", &fk.columns, &mut names),
                fk.columns.clone(),
            ));
            indexed.push(&fk.columns);
        }
    }
    out
}

/// Builds the [`foreign_key_indexes`] of a loaded staging table that it does not have
/// yet (a resumed run may have built them already), in one `ALTER TABLE`.
pub async fn build_indexes(target: &Target, table: &Table, name: &str) -> Result<()> {
    let wanted = foreign_key_indexes(table);
    if wanted.is_empty() {
        return Ok(());
    }
    let mut conn = target.conn().await?;
    let existing: HashSet<String> = conn
        .exec::<String, _, _>(
            "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = ? AND table_name = ?",
            (&target.database, name),
        )
        .await?
        .into_iter()
        .collect();
    let clauses: Vec<String> = wanted
        .iter()
        .filter(|(index, _)| !existing.contains(index))
        .map(|(index, cols)| format!("ADD INDEX `{index}` ({})", table.quoted_columns(cols)))
        .collect();
    if clauses.is_empty() {
        return Ok(());
    }
    conn.query_drop(format!(
        "ALTER TABLE `{name}` {}, ALGORITHM=INPLACE",
        clauses.join(", ")
    ))
    .await
    .map_err(|e| Error::Other(format!("building the indexes of `{}`: {e}", table.name)))
}

/// `ALTER TABLE` adding every foreign key of `table` (under `name`) to
/// `parent_name(parent)`, in one statement; `None` for a table without any.
pub fn add_foreign_keys_sql(
    model: &Model,
    table: &Table,
    name: &str,
    parent_name: impl Fn(&str) -> String,
) -> Option<String> {
    let clauses: Vec<String> = table
        .foreign_keys
        .iter()
        .map(|fk| {
            let parent = &model.tables[fk.parent];
            format!(
                "ADD FOREIGN KEY ({}) REFERENCES `{}` ({})",
                table.quoted_columns(&fk.columns),
                parent_name(&parent.name),
                parent.quoted_columns(&fk.parent_columns)
            )
        })
        .collect();
    (!clauses.is_empty()).then(|| format!("ALTER TABLE `{name}` {}", clauses.join(", ")))
}

/// Drops tables, children first. Foreign key checks are off for these statements only:
/// they drop tables this tool created (staging or previous copies), they never load data.
async fn drop_tables(conn: &mut mysql_async::Conn, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let r = conn
        .query_drop(format!("DROP TABLE IF EXISTS {list}"))
        .await;
    conn.query_drop("SET SESSION foreign_key_checks = 1")
        .await?;
    Ok(r?)
}

/// Creates the chunk ledger and the staging tables. A fresh run first drops any staging
/// tables and ledger rows left by an earlier run; a resumed run keeps them.
pub async fn prepare(target: &Target, model: &Model, plan: &Plan, fresh: bool) -> Result<()> {
    let mut conn = target.conn().await?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS `{CHUNKS_TABLE}` (table_name VARCHAR(64) NOT NULL, chunk INT NOT NULL, row_count BIGINT NOT NULL, loaded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (table_name, chunk)) ENGINE=InnoDB"
    ))
    .await?;
    if fresh {
        let order: Vec<usize> = plan.order().collect();
        let stages: Vec<String> = order
            .iter()
            .rev()
            .map(|&i| stage_name(&model.tables[i].name))
            .collect();
        drop_tables(&mut conn, &stages).await?;
        conn.query_drop(format!("DELETE FROM `{CHUNKS_TABLE}`"))
            .await?;
    }
    for i in plan.order() {
        let t = &model.tables[i];
        conn.query_drop(create_table_sql(t, &stage_name(&t.name)))
            .await?;
    }
    Ok(())
}

/// The chunks of a table already committed into its staging table.
pub async fn loaded_chunks(target: &Target, table: &str) -> Result<HashSet<u32>> {
    let mut conn = target.conn().await?;
    let rows: Vec<u32> = conn
        .exec(
            format!("SELECT chunk FROM `{CHUNKS_TABLE}` WHERE table_name = ?"),
            (table,),
        )
        .await?;
    Ok(rows.into_iter().collect())
}

/// Loads one chunk into the table's staging table in one transaction, with the ledger
/// row; fails (and rolls back) on any warning or a row count that differs. `data` is the
/// chunk's bytes (a file or an S3 object, see [`crate::chunk_store`]), streamed to the
/// server as the `LOCAL INFILE`.
pub async fn load_chunk(
    conn: &mut mysql_async::Conn,
    table: &Table,
    chunk: &ChunkReady,
    data: mysql_async::InfileData,
) -> Result<()> {
    let file_name = chunk
        .path
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('\'', "\\'");
    let columns = table
        .columns
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    conn.query_drop("START TRANSACTION").await?;
    // The handler must be `Sync`; the stream is only `Send`, hence the mutex.
    let data = std::sync::Mutex::new(data);
    conn.set_infile_handler(
        async move { Ok(data.into_inner().unwrap_or_else(|p| p.into_inner())) },
    );
    let sql = format!(
        "LOAD DATA LOCAL INFILE '{file_name}' INTO TABLE `{}` {LOAD_DATA_FORMAT} ({columns})",
        stage_name(&table.name)
    );
    let outcome = conn.query_drop(sql).await;
    if let Err(e) = outcome {
        let _ = conn.query_drop("ROLLBACK").await;
        return Err(e.into());
    }
    let warnings = conn.get_warnings();
    let affected = conn.affected_rows();
    if warnings > 0 || affected != chunk.rows {
        let shown: Vec<(String, u32, String)> = conn
            .query("SHOW WARNINGS LIMIT 5")
            .await
            .unwrap_or_default();
        let _ = conn.query_drop("ROLLBACK").await;
        let mut text: Vec<String> = shown
            .into_iter()
            .map(|(level, code, msg)| format!("{level} {code}: {msg}"))
            .collect();
        if affected != chunk.rows {
            text.push(format!(
                "{affected} rows loaded, {} in the file",
                chunk.rows
            ));
        }
        return Err(Error::LoadWarnings {
            table: table.name.clone(),
            chunk: chunk.index,
            count: u64::from(warnings).max(1),
            warnings: text.join("; "),
        });
    }
    conn.exec_drop(
        format!("INSERT INTO `{CHUNKS_TABLE}` (table_name, chunk, row_count) VALUES (?, ?, ?)"),
        (&table.name, chunk.index, chunk.rows),
    )
    .await?;
    conn.query_drop("COMMIT").await?;
    Ok(())
}

/// Declares every foreign key on the staging tables, once [`crate::verify`] found that no
/// row breaks any of them. The statement runs with `foreign_key_checks = 0` for that
/// session only, so InnoDB adds the constraints in place instead of copying each table
/// to check again what was just checked set-wise; nothing is loaded under it. A table
/// whose constraints exist already (a resumed run) is skipped: one `ALTER TABLE` adds
/// all of a table's constraints or none.
pub async fn add_foreign_keys(target: &Target, model: &Model) -> Result<()> {
    let mut conn = target.conn().await?;
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    let mut result = Ok(());
    for t in &model.tables {
        let stage = stage_name(&t.name);
        let Some(sql) = add_foreign_keys_sql(model, t, &stage, stage_name) else {
            continue;
        };
        let existing: Option<u64> = match conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.referential_constraints WHERE constraint_schema = ? AND table_name = ?",
                (&target.database, &stage),
            )
            .await
        {
            Ok(n) => n,
            Err(e) => {
                result = Err(e.into());
                break;
            }
        };
        if existing.unwrap_or(0) > 0 {
            continue;
        }
        if let Err(e) = conn.query_drop(format!("{sql}, ALGORITHM=INPLACE")).await {
            result = Err(Error::Other(format!(
                "adding the foreign keys of `{}`: {e}",
                t.name
            )));
            break;
        }
    }
    conn.query_drop("SET SESSION foreign_key_checks = 1")
        .await?;
    result
}

/// Swaps every staging table in with one `RENAME TABLE`, then drops the previous tables.
pub async fn swap(target: &Target, model: &Model, plan: &Plan) -> Result<()> {
    let mut renames = Vec::new();
    let mut olds = Vec::new();
    for i in plan.order() {
        let t = &model.tables[i].name;
        if target.table_exists(t).await? {
            renames.push(format!("`{t}` TO `{}`", old_name(t)));
            olds.push(old_name(t));
        }
    }
    for i in plan.order() {
        let t = &model.tables[i].name;
        renames.push(format!("`{}` TO `{t}`", stage_name(t)));
    }
    let mut conn = target.conn().await?;
    // A previous swap interrupted before its drop may have left old copies.
    let leftovers: Vec<String> = plan
        .order()
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .map(|&i| old_name(&model.tables[i].name))
        .collect();
    drop_tables(&mut conn, &leftovers).await?;
    conn.query_drop(format!("RENAME TABLE {}", renames.join(", ")))
        .await?;
    olds.reverse();
    drop_tables(&mut conn, &olds).await?;
    conn.query_drop(format!("DELETE FROM `{CHUNKS_TABLE}`"))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[tokio::test]
    async fn an_unreachable_target_is_named_with_its_flag() {
        // A port nothing listens on any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let Err(error) =
            Target::connect(&format!("mysql://loader:secret@127.0.0.1:{port}/sales")).await
        else {
            panic!("connected to a closed port");
        };
        let message = error.to_string();
        assert!(
            message.contains(&format!("mysql://loader@127.0.0.1:{port}/sales")),
            "{message}"
        );
        assert!(message.contains("--target"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}

//! tsunagu's embedded store (`<data_dir>/primary.db`, SQLite) as a migration source.
//!
//! The file is opened **read-only** (`SQLITE_OPEN_READ_ONLY`, `query_only`): nothing is
//! created, migrated or written, so a missing file is an error rather than a new empty
//! store. A running store (its `-wal` file exists) may keep running while it is read:
//! WAL mode gives the reader a consistent snapshot beside the writer. A closed store is
//! opened `immutable` so that SQLite does not create `-wal` / `-shm` files beside it;
//! it must then stay closed until the run's first step (reading the sources) is over. The items of one entity type are those whose
//! body's `type` is that type (`company`, `deal`, `activity_log`, `sales_list`, as the
//! domain's `Entity` tags them); they are read in key order within one read transaction.
//! The record id is the item key (`partition|sort`, `%` and `|` escaped as `%25` and
//! `%7C`: the document id the replication index uses), the properties are the body, plus
//! `_partition`, `_sort` and `_version`.

use super::node_line;
use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tsunagu_domain::ItemKey;

/// The store file of a data directory.
pub fn primary_path(data_dir: &Path) -> PathBuf {
    data_dir.join("primary.db")
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("embedded store {}: {e}", path.display()))
}

/// Opens the store file read-only and checks it is a tsunagu store of the schema this
/// build reads.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(store_error(
            path,
            "no such file; `data_dir` must be the directory of an existing store (the one holding primary.db)",
        ));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let running = wal_path(path).exists();
    let conn = if running {
        // A store that is open (or was not closed cleanly) has its WAL and shared-memory
        // files: read beside the writer, through them.
        Connection::open_with_flags(path, flags)
    } else {
        // A closed store has neither; a read-only WAL reader would create both beside
        // it. As nothing writes the file, it is read as immutable instead: no lock, no
        // file created.
        Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            flags | OpenFlags::SQLITE_OPEN_URI,
        )
    }
    .map_err(|e| store_error(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| store_error(path, e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| store_error(path, e))?;
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| store_error(path, format!("not a tsunagu store ({e})")))?;
    let expected = tsunagu_embedded_store::sqlite::SCHEMA_VERSION.to_string();
    if version != expected {
        return Err(store_error(
            path,
            format!("schema version {version}; this build reads version {expected}"),
        ));
    }
    Ok(conn)
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

/// A path as the path of a `file:` URI (`%`, `?` and `#` escaped).
fn uri_path(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

/// Reads every item whose body has `type` = `item_type` into `out`; returns the items
/// written. Blocking (SQLite).
pub fn fetch(
    data_dir: &Path,
    item_type: &str,
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<u64> {
    let path = primary_path(data_dir);
    let conn = open_read_only(&path)?;
    let f = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let tx = conn
        .unchecked_transaction()
        .map_err(|e| store_error(&path, e))?;
    let mut written = 0u64;
    {
        let mut stmt = tx
            .prepare(
                "SELECT partition, sort, version, body FROM items \
                 WHERE json_extract(body, '$.type') = ?1 ORDER BY partition, sort",
            )
            .map_err(|e| store_error(&path, e))?;
        let mut rows = stmt.query([item_type]).map_err(|e| store_error(&path, e))?;
        while let Some(row) = rows.next().map_err(|e| store_error(&path, e))? {
            let partition: String = row.get(0).map_err(|e| store_error(&path, e))?;
            let sort: String = row.get(1).map_err(|e| store_error(&path, e))?;
            let version: i64 = row.get(2).map_err(|e| store_error(&path, e))?;
            let body: String = row.get(3).map_err(|e| store_error(&path, e))?;
            let key = ItemKey::new(partition, sort);
            let mut properties = match serde_json::from_str::<Value>(&body) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(store_error(
                        &path,
                        format!("item {key} has a body that is not a JSON object"),
                    ))
                }
            };
            add_key_fields(&mut properties, &key, version);
            let line = node_line(
                &tsunagu_opensearch::document::doc_id(&key),
                item_type,
                properties,
            );
            writeln!(w, "{line}").map_err(|e| Error::io(out, e))?;
            written += 1;
            if written.is_multiple_of(1024) {
                progress.inc(1024);
            }
        }
    }
    progress.inc(written % 1024);
    tx.finish().map_err(|e| store_error(&path, e))?;
    w.flush().map_err(|e| Error::io(out, e))?;
    w.get_ref().sync_all().map_err(|e| Error::io(out, e))?;
    Ok(written)
}

fn add_key_fields(properties: &mut Map<String, Value>, key: &ItemKey, version: i64) {
    properties.insert("_partition".into(), Value::String(key.partition.clone()));
    properties.insert("_sort".into(), Value::String(key.sort.clone()));
    properties.insert("_version".into(), Value::from(version));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_paths_are_escaped() {
        assert_eq!(
            uri_path(Path::new("/d/a?b#c%d/primary.db")),
            "/d/a%3fb%23c%25d/primary.db"
        );
        assert_eq!(
            wal_path(Path::new("/d/primary.db")),
            Path::new("/d/primary.db-wal")
        );
    }

    #[test]
    fn a_missing_store_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = primary_path(dir.path());
        let e = open_read_only(&path).unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        assert!(!path.exists());
        std::fs::write(&path, b"").unwrap();
        let e = open_read_only(&path).unwrap_err().to_string();
        assert!(e.contains("not a tsunagu store"), "{e}");
    }
}

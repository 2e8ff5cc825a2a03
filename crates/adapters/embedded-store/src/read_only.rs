//! The primary store file opened **read-only**, for readers outside the store's own
//! process that must not change it (a migration reading the store as its source).
//!
//! `SQLITE_OPEN_READ_ONLY` and `query_only`: nothing is created, migrated or written, so
//! a missing file is an error rather than a new empty store, and a file of another
//! schema version is refused. A running store (its `-wal` file exists) may keep running
//! while it is read: WAL mode gives the reader a consistent snapshot beside the writer.
//! A closed store is opened `immutable`, so that SQLite does not create `-wal` / `-shm`
//! files beside it; it must then stay closed while it is read.

use crate::sqlite::SCHEMA_VERSION;
use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use tsunagu_domain::{ItemKey, Version};

/// A store file opened read-only; see the module docs.
pub struct ReadOnlyStore {
    conn: Connection,
    path: PathBuf,
}

fn unreadable(path: &Path, message: impl std::fmt::Display) -> StoreError {
    StoreError::Unreadable {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl ReadOnlyStore {
    /// Opens the store file `path` (`<data_dir>/primary.db`) and checks it is a tsunagu
    /// store of the schema this build reads.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(unreadable(
                path,
                "no such file; `data_dir` must be the directory of an existing store (the one holding primary.db)",
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if wal_path(path).exists() {
            // A store that is open (or was not closed cleanly) has its WAL and
            // shared-memory files: read beside the writer, through them.
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
        .map_err(|e| unreadable(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| unreadable(path, e))?;
        conn.pragma_update(None, "query_only", true)
            .map_err(|e| unreadable(path, e))?;
        let version: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| unreadable(path, format!("not a tsunagu store ({e})")))?;
        if version != SCHEMA_VERSION.to_string() {
            return Err(unreadable(
                path,
                format!("schema version {version}; this build reads version {SCHEMA_VERSION}"),
            ));
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Calls `f(key, version, body)` for every item whose body's `type` is `item_type`,
    /// in key order, within one read transaction (one snapshot); returns how many.
    /// Stops at the first error `f` returns.
    pub fn for_each_item_of_type<E: From<StoreError>>(
        &self,
        item_type: &str,
        mut f: impl FnMut(ItemKey, Version, &str) -> Result<(), E>,
    ) -> Result<u64, E> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| unreadable(&self.path, e))?;
        let mut count = 0u64;
        {
            let mut stmt = tx
                .prepare(
                    "SELECT partition, sort, version, body FROM items \
                     WHERE json_extract(body, '$.type') = ?1 ORDER BY partition, sort",
                )
                .map_err(|e| unreadable(&self.path, e))?;
            let mut rows = stmt
                .query([item_type])
                .map_err(|e| unreadable(&self.path, e))?;
            while let Some(row) = rows.next().map_err(|e| unreadable(&self.path, e))? {
                let read = |i: usize| -> Result<String, StoreError> {
                    row.get(i).map_err(|e| unreadable(&self.path, e))
                };
                let key = ItemKey::new(read(0)?, read(1)?);
                let version: i64 = row.get(2).map_err(|e| unreadable(&self.path, e))?;
                f(key, Version(version as u64), &read(3)?)?;
                count += 1;
            }
        }
        tx.finish().map_err(|e| unreadable(&self.path, e))?;
        Ok(count)
    }
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
        let path = dir.path().join("primary.db");
        let e = ReadOnlyStore::open(&path).err().unwrap().to_string();
        assert!(e.contains("no such file"), "{e}");
        assert!(!path.exists());
        std::fs::write(&path, b"").unwrap();
        let e = ReadOnlyStore::open(&path).err().unwrap().to_string();
        assert!(e.contains("not a tsunagu store"), "{e}");
    }
}

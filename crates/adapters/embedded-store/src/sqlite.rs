//! Connection set-up and the schema of the primary and state files.

use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Schema version written into `meta`; a file with another version is refused.
pub const SCHEMA_VERSION: i64 = 1;

pub(crate) const PRIMARY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    partition     TEXT NOT NULL,
    sort          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (partition, sort)
) WITHOUT ROWID;
-- The change stream. seq is the global commit order (AUTOINCREMENT: never reused, even
-- after trimming) and doubles as the item's version after the change.
CREATE TABLE IF NOT EXISTS changes (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    shard           INTEGER NOT NULL,
    partition       TEXT NOT NULL,
    sort            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    old_version     INTEGER,
    old_body        TEXT,
    new_body        TEXT,
    committed_at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_shard ON changes (shard, seq);
-- Per shard, the newest sequence number removed by trimming: a reader positioned before
-- it would miss records.
CREATE TABLE IF NOT EXISTS trims (
    shard        INTEGER PRIMARY KEY,
    through_seq  INTEGER NOT NULL
);
";

pub(crate) const STATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer      TEXT NOT NULL,
    shard         TEXT NOT NULL,
    position      TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (consumer, shard)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer     TEXT NOT NULL,
    shard        TEXT NOT NULL,
    position     TEXT NOT NULL,
    record       TEXT NOT NULL,
    error        TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    failed_at_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_consumer ON dead_letters (consumer, id);
CREATE TABLE IF NOT EXISTS backfills (
    consumer TEXT NOT NULL,
    shard    TEXT NOT NULL,
    state    TEXT NOT NULL,
    PRIMARY KEY (consumer, shard)
) WITHOUT ROWID;
-- Consumers created from the command line (backfill of a new consumer), beside those of
-- the config file.
CREATE TABLE IF NOT EXISTS consumers (
    name          TEXT PRIMARY KEY,
    sink          TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
) WITHOUT ROWID;
-- Shard leases of workers sharing a stream, with the checkpoint only the owner may move.
CREATE TABLE IF NOT EXISTS leases (
    consumer        TEXT NOT NULL,
    shard           TEXT NOT NULL,
    parent          TEXT,
    adjacent_parent TEXT,
    owner           TEXT,
    counter         INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    checkpoint      TEXT,
    finished        INTEGER NOT NULL,
    PRIMARY KEY (consumer, shard)
) WITHOUT ROWID;
";

/// Bytes of the database file mapped into memory per connection (address space, not RAM).
const MMAP_BYTES: i64 = 1 << 30;
/// Page cache per connection, in KiB.
const CACHE_KIB: i64 = 32 * 1024;

/// Opens a connection with the settings every connection of the store uses: WAL so
/// readers never block the writer, `synchronous=NORMAL` (durable at every WAL checkpoint,
/// and a crash never corrupts; the group commit makes the fsync rate moot), and a busy
/// timeout so a second process waits for the write lock instead of failing.
/// Opens (creating it and its directory if needed) a database file for writing.
pub(crate) fn open_creating(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    open_connection(path)
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    tune_reads(conn, path)
}

/// Opens an existing database file **read-only**: nothing is created, migrated or
/// written, so it works on files and a directory the process cannot write (an operator
/// reading a service's data directory). A file in use (its `-wal` exists) is read
/// beside its writer through the WAL; a closed one is opened `immutable`, as a read-only
/// WAL reader would otherwise create `-wal` / `-shm` files beside it (and cannot in a
/// directory it may not write). A missing file is an error.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    if !path.is_file() {
        return Err(StoreError::Unreadable {
            path: path.display().to_string(),
            message: "no such file".into(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if wal_path(path).exists() {
        Connection::open_with_flags(path, flags)
    } else {
        Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            flags | OpenFlags::SQLITE_OPEN_URI,
        )
    }
    .map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_err)?;
    tune_reads(conn, path)
}

/// The file's schema version, checked without writing (a read-only connection).
pub(crate) fn check_schema_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| StoreError::Unreadable {
            path: path.display().to_string(),
            message: format!("not a tsunagu file ({e})"),
        })?;
    if version != SCHEMA_VERSION.to_string() {
        return Err(StoreError::Unreadable {
            path: path.display().to_string(),
            message: format!("schema version {version}; this build reads version {SCHEMA_VERSION}"),
        });
    }
    Ok(())
}

/// The `-wal` file beside a database file.
pub(crate) fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    std::path::PathBuf::from(name)
}

/// A path as the path of a `file:` URI (`%`, `?` and `#` escaped).
pub(crate) fn uri_path(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

/// The read settings and functions every connection has, writing or not.
fn tune_reads(conn: Connection, path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    // Read pages through a memory map and keep a bigger page cache than SQLite's 2 MiB
    // default: without them every B-tree step of a busy store is a pread system call.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(open_err)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(open_err)?;
    // `tsunagu_shard(partition, n)`: the shard of a partition key among n, the same hash
    // the change stream uses, so a scan can take one shard's items.
    conn.create_scalar_function(
        "tsunagu_shard",
        2,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let partition = ctx
                .get_raw(0)
                .as_str()
                .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            let n: i64 = ctx.get(1)?;
            Ok((tsunagu_domain::item::stable_partition_hash(partition) % n.max(1) as u64) as i64)
        },
    )
    .map_err(open_err)?;
    Ok(conn)
}

/// Creates the schema if missing and checks the file's schema version.
pub(crate) fn init_schema(conn: &Connection, ddl: &str, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch(ddl)?;
    let existing: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })?;
    match existing {
        None => {
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => {
            return Err(StoreError::Corrupt(format!(
                "{} has schema version {v}; this build reads version {SCHEMA_VERSION}",
                path.display()
            )))
        }
    }
    Ok(())
}

/// A small pool of read connections, so concurrent readers do not open a file each time.
pub(crate) struct ReadPool {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<Connection>>,
    /// Connections opened with [`open_read_only`] (a store opened read-only).
    read_only: bool,
}

impl ReadPool {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: std::sync::Mutex::new(Vec::new()),
            read_only: false,
        }
    }

    pub(crate) fn read_only(path: &Path) -> Self {
        Self {
            read_only: true,
            ..Self::new(path)
        }
    }

    /// Runs `f` on a pooled connection (blocking; call from `spawn_blocking`).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(c) => c,
            None if self.read_only => open_read_only(&self.path)?,
            None => open_connection(&self.path)?,
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < 16 {
                idle.push(conn);
            }
        }
        result
    }
}

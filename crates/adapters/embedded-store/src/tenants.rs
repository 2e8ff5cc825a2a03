//! Tenants and their API tokens, in their own SQLite file beside the store: the
//! embedded [`TenantDirectory`]. Only a token's digest is stored (the rules are
//! `tsunagu_service::tenants`'), so a copy of the file does not give access.

use crate::sqlite::{open_creating, open_read_only};
use crate::{now_us, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tsunagu_domain::synonyms::Synonyms;
use tsunagu_service::tenants::{
    looks_like_token, new_tenant_id, new_token, tenant_name, time_zone_name, token_digest, Tenant,
    TenantDirectory, TenantError, TenantSettings, TENANT_ID_PREFIX,
};

const TENANTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_us INTEGER NOT NULL,
    time_zone     TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    digest        TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    created_at_us INTEGER NOT NULL,
    revoked_at_us INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant_synonyms (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    groups_json   TEXT NOT NULL
) WITHOUT ROWID;
";

/// The synonym table as a registry written before tenants had synonyms reads it:
/// empty, in this connection's memory only.
const TEMP_SYNONYMS: &str = "
CREATE TEMP TABLE tenant_synonyms (
    tenant_id     TEXT PRIMARY KEY,
    groups_json   TEXT NOT NULL
) WITHOUT ROWID;
";

/// The tenant registry. Cheap to clone.
#[derive(Clone)]
pub struct TenantRegistry {
    conn: Arc<Mutex<Connection>>,
}

fn failed(e: impl std::fmt::Display) -> TenantError {
    TenantError::Unavailable(e.to_string())
}

impl TenantRegistry {
    /// Opens (creating) the registry file at `path`. A registry written before tenants
    /// had synonyms gets their table here (`CREATE TABLE IF NOT EXISTS`).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_creating(path)?;
        conn.execute_batch(TENANTS_SCHEMA)?;
        // Registries created before tenants had a time zone.
        if !has_time_zone_column(&conn)? {
            conn.execute_batch("ALTER TABLE tenants ADD COLUMN time_zone TEXT")?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens the registry file at `path` **read-only** (listing and authenticating only;
    /// see [`crate::sqlite::open_read_only`]); a missing file reads as an empty registry,
    /// in memory, so nothing is created. Creating, issuing and revoking fail. A registry
    /// written before tenants had a time zone or synonyms is read as it is (every tenant
    /// in UTC, without synonyms).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = if path.exists() {
            let conn = open_read_only(path)?;
            if !has_table(&conn, "tenant_synonyms")? {
                conn.execute_batch(&format!(
                    "PRAGMA query_only = false; {TEMP_SYNONYMS} PRAGMA query_only = true;"
                ))?;
            }
            if !has_time_zone_column(&conn)? {
                // A temporary view (in this connection's memory; the file stays untouched)
                // shadows the table, adding the column as NULL.
                conn.execute_batch(
                    "PRAGMA query_only = false;
                     CREATE TEMP VIEW tenants AS
                     SELECT id, name, created_at_us, NULL AS time_zone FROM main.tenants;
                     PRAGMA query_only = true;",
                )?;
            }
            conn
        } else {
            let conn = Connection::open_in_memory()?;
            conn.execute_batch(TENANTS_SCHEMA)?;
            conn.pragma_update(None, "query_only", true)?;
            conn
        };
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| failed("tenant registry connection poisoned"))?;
            f(&mut conn)
        })
        .await
        .map_err(failed)?
    }
}

#[async_trait]
impl TenantDirectory for TenantRegistry {
    async fn create_with(
        &self,
        name: &str,
        settings: &TenantSettings,
    ) -> Result<(Tenant, String), TenantError> {
        let name = tenant_name(name)?;
        let time_zone = settings
            .time_zone
            .as_deref()
            .map(time_zone_name)
            .transpose()?;
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(failed)?;
            let taken: Option<String> = tx
                .query_row("SELECT id FROM tenants WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(failed)?;
            if taken.is_some() {
                return Err(TenantError::NameTaken(name));
            }
            let id = new_tenant_id();
            let now = now_us();
            tx.execute(
                "INSERT INTO tenants (id, name, created_at_us, time_zone) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, now, time_zone],
            )
            .map_err(failed)?;
            let token = insert_token(&tx, &id, now)?;
            tx.commit().map_err(failed)?;
            Ok((
                Tenant {
                    id,
                    name,
                    created_at_us: now,
                    active_tokens: 1,
                    time_zone,
                },
                token,
            ))
        })
        .await
    }

    async fn issue_token(&self, tenant: &str) -> Result<(Tenant, String), TenantError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(failed)?;
            let found = find(&tx, &tenant)?.ok_or(TenantError::NotFound(tenant))?;
            let token = insert_token(&tx, &found.id, now_us())?;
            tx.commit().map_err(failed)?;
            let tenant = find(conn, &found.id)?.unwrap_or(found);
            Ok((tenant, token))
        })
        .await
    }

    async fn set_time_zone(
        &self,
        tenant: &str,
        time_zone: Option<&str>,
    ) -> Result<Tenant, TenantError> {
        let time_zone = time_zone.map(time_zone_name).transpose()?;
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            let found = find(conn, &tenant)?.ok_or(TenantError::NotFound(tenant))?;
            conn.execute(
                "UPDATE tenants SET time_zone = ?2 WHERE id = ?1",
                params![found.id, time_zone],
            )
            .map_err(failed)?;
            Ok(Tenant { time_zone, ..found })
        })
        .await
    }

    async fn synonyms(&self, tenant: &str) -> Result<Synonyms, TenantError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            let found = find(conn, &tenant)?.ok_or(TenantError::NotFound(tenant))?;
            let stored: Option<String> = conn
                .query_row(
                    "SELECT groups_json FROM tenant_synonyms WHERE tenant_id = ?1",
                    [&found.id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(failed)?;
            match stored {
                None => Ok(Synonyms::default()),
                Some(json) => serde_json::from_str(&json).map_err(|e| {
                    failed(format!(
                        "the synonyms of tenant {:?} in the registry are unreadable: {e}",
                        found.id
                    ))
                }),
            }
        })
        .await
    }

    async fn set_synonyms(
        &self,
        tenant: &str,
        synonyms: &Synonyms,
    ) -> Result<Synonyms, TenantError> {
        let tenant = tenant.to_string();
        let synonyms = synonyms.clone();
        let json = serde_json::to_string(&synonyms).map_err(failed)?;
        self.with_conn(move |conn| {
            let found = find(conn, &tenant)?.ok_or(TenantError::NotFound(tenant))?;
            if synonyms.is_empty() {
                conn.execute(
                    "DELETE FROM tenant_synonyms WHERE tenant_id = ?1",
                    [&found.id],
                )
            } else {
                conn.execute(
                    "INSERT INTO tenant_synonyms (tenant_id, groups_json) VALUES (?1, ?2)
                     ON CONFLICT (tenant_id) DO UPDATE SET groups_json = excluded.groups_json",
                    params![found.id, json],
                )
            }
            .map_err(failed)?;
            Ok(synonyms)
        })
        .await
    }

    async fn revoke_tokens(&self, tenant: &str) -> Result<u64, TenantError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            let found = find(conn, &tenant)?.ok_or(TenantError::NotFound(tenant))?;
            let revoked = conn
                .execute(
                    "UPDATE tokens SET revoked_at_us = ?2 WHERE tenant_id = ?1 AND revoked_at_us IS NULL",
                    params![found.id, now_us()],
                )
                .map_err(failed)?;
            Ok(revoked as u64)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Tenant>, TenantError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(&format!("{TENANT_SELECT} ORDER BY t.created_at_us, t.id"))
                .map_err(failed)?;
            let rows = stmt.query_map([], tenant_row).map_err(failed)?;
            rows.collect::<Result<_, _>>().map_err(failed)
        })
        .await
    }

    async fn authenticate(&self, token: &str) -> Result<Option<Tenant>, TenantError> {
        if !looks_like_token(token) {
            return Ok(None);
        }
        let digest = token_digest(token);
        self.with_conn(move |conn| {
            let tenant_id: Option<String> = conn
                .query_row(
                    "SELECT tenant_id FROM tokens WHERE digest = ?1 AND revoked_at_us IS NULL",
                    [digest],
                    |r| r.get(0),
                )
                .optional()
                .map_err(failed)?;
            match tenant_id {
                Some(id) => find(conn, &id),
                None => Ok(None),
            }
        })
        .await
    }
}

const TENANT_SELECT: &str = "SELECT t.id, t.name, t.created_at_us, t.time_zone,
    (SELECT COUNT(*) FROM tokens k WHERE k.tenant_id = t.id AND k.revoked_at_us IS NULL)
    FROM tenants t";

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at_us: r.get(2)?,
        time_zone: r.get(3)?,
        active_tokens: r.get::<_, i64>(4)?.max(0) as u64,
    })
}

fn has_table(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

fn has_time_zone_column(conn: &Connection) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('tenants')")?;
    let columns = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for column in columns {
        if column? == "time_zone" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The tenant with this id, or else with this name. An id is looked up first, so a name
/// can never shadow another tenant's id.
fn find(conn: &Connection, id_or_name: &str) -> Result<Option<Tenant>, TenantError> {
    let by = |column: &str| {
        conn.query_row(
            &format!("{TENANT_SELECT} WHERE t.{column} = ?1"),
            [id_or_name],
            tenant_row,
        )
        .optional()
        .map_err(failed)
    };
    if id_or_name.starts_with(TENANT_ID_PREFIX) {
        if let Some(found) = by("id")? {
            return Ok(Some(found));
        }
    }
    by("name")
}

fn insert_token(conn: &Connection, tenant_id: &str, now: i64) -> Result<String, TenantError> {
    let token = new_token();
    conn.execute(
        "INSERT INTO tokens (digest, tenant_id, created_at_us) VALUES (?1, ?2, ?3)",
        params![token_digest(&token), tenant_id, now],
    )
    .map_err(failed)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.db");
        let registry = TenantRegistry::open(&path).unwrap();
        let (_, token_b) = registry.create("globex").await.unwrap();
        drop(registry);
        let bytes = std::fs::read(&path).unwrap();
        let needle = token_b.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the token itself must not be stored"
        );
    }

    /// A registry written before tenants had a time zone or synonyms is read as it is
    /// (read-only: the file stays untouched, every tenant in UTC without synonyms) and upgraded when opened for writing.
    #[tokio::test]
    async fn a_registry_without_time_zones_or_synonyms_is_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.db");
        let token = new_token();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                     created_at_us INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE TABLE tokens (digest TEXT PRIMARY KEY, tenant_id TEXT NOT NULL
                     REFERENCES tenants (id), created_at_us INTEGER NOT NULL,
                     revoked_at_us INTEGER) WITHOUT ROWID;
                 INSERT INTO tenants VALUES ('tn_00000000000000aa', 'acme', 1);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tokens VALUES (?1, 'tn_00000000000000aa', 1, NULL)",
                [token_digest(&token)],
            )
            .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let read_only = TenantRegistry::open_read_only(&path).unwrap();
        let listed = read_only.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].time_zone, None);
        let found = read_only.authenticate(&token).await.unwrap().unwrap();
        assert_eq!(found.name, "acme");
        assert!(read_only.synonyms("acme").await.unwrap().is_empty());
        drop(read_only);
        assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");

        let registry = TenantRegistry::open(&path).unwrap();
        let tokyo = registry
            .set_time_zone("acme", Some("Asia/Tokyo"))
            .await
            .unwrap();
        assert_eq!(tokyo.time_zone.as_deref(), Some("Asia/Tokyo"));
        assert_eq!(
            registry.authenticate(&token).await.unwrap(),
            Some(tokyo),
            "the old token authenticates, with the new zone"
        );
        let synonyms = Synonyms::new(vec![vec!["MTG".into(), "打ち合わせ".into()]]).unwrap();
        registry.set_synonyms("acme", &synonyms).await.unwrap();
        drop(registry);
        let read_only = TenantRegistry::open_read_only(&path).unwrap();
        assert_eq!(read_only.synonyms("acme").await.unwrap(), synonyms);
    }
}

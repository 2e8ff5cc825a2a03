//! Tenants and their API tokens, in their own SQLite file beside the store.
//!
//! A token is shown once, when it is issued; only its SHA-256 digest is stored, so a copy
//! of the file does not give access. Tokens are 256 random bits, so a plain digest (no
//! slow password hash) cannot be brute-forced.

use crate::sqlite::open_creating;
use crate::{now_us, StoreError};
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The prefix of every token, so a leaked one is easy to recognize in a secret scanner.
pub const TOKEN_PREFIX: &str = "tsu_";

const TENANTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    digest        TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    created_at_us INTEGER NOT NULL,
    revoked_at_us INTEGER
) WITHOUT ROWID;
";

/// A tenant (one customer account): every item it owns carries its id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at_us: i64,
    /// Tokens not revoked.
    pub active_tokens: u64,
}

/// The tenant registry. Cheap to clone.
#[derive(Clone)]
pub struct TenantRegistry {
    conn: Arc<Mutex<Connection>>,
}

impl TenantRegistry {
    /// Opens (creating) the registry file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_creating(path)?;
        conn.execute_batch(TENANTS_SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Invalid("tenant registry connection poisoned".into()))
    }

    /// Creates a tenant and issues its first token: (tenant, token). Names are unique.
    pub fn create(&self, name: &str) -> Result<(Tenant, String), StoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "a tenant name must be 1 to 200 characters without control characters".into(),
            ));
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let taken: Option<String> = tx
            .query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = taken {
            return Err(StoreError::Invalid(format!(
                "a tenant named {name:?} already exists ({id}); issue it another token with `tenant token`"
            )));
        }
        let id = format!("tn_{}", random_hex(8));
        let now = now_us();
        tx.execute(
            "INSERT INTO tenants (id, name, created_at_us) VALUES (?1, ?2, ?3)",
            params![id, name, now],
        )?;
        let token = insert_token(&tx, &id, now)?;
        tx.commit()?;
        Ok((
            Tenant {
                id,
                name: name.to_string(),
                created_at_us: now,
                active_tokens: 1,
            },
            token,
        ))
    }

    /// Issues another token to the tenant with this id or name.
    pub fn issue_token(&self, tenant: &str) -> Result<(Tenant, String), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let found = find(&tx, tenant)?
            .ok_or_else(|| StoreError::Invalid(format!("no tenant with id or name {tenant:?}")))?;
        let token = insert_token(&tx, &found.id, now_us())?;
        tx.commit()?;
        let tenant = find(&conn, &found.id)?.unwrap_or(found);
        Ok((tenant, token))
    }

    /// Revokes every token of the tenant; returns how many were active.
    pub fn revoke_tokens(&self, tenant: &str) -> Result<usize, StoreError> {
        let conn = self.conn()?;
        let found = find(&conn, tenant)?
            .ok_or_else(|| StoreError::Invalid(format!("no tenant with id or name {tenant:?}")))?;
        Ok(conn.execute(
            "UPDATE tokens SET revoked_at_us = ?2 WHERE tenant_id = ?1 AND revoked_at_us IS NULL",
            params![found.id, now_us()],
        )?)
    }

    pub fn list(&self) -> Result<Vec<Tenant>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!("{TENANT_SELECT} ORDER BY t.created_at_us, t.id"))?;
        let rows = stmt.query_map([], tenant_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The tenant a presented token belongs to, if it is a live token.
    pub fn authenticate(&self, token: &str) -> Result<Option<Tenant>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let conn = self.conn()?;
        let tenant_id: Option<String> = conn
            .query_row(
                "SELECT tenant_id FROM tokens WHERE digest = ?1 AND revoked_at_us IS NULL",
                [digest(token)],
                |r| r.get(0),
            )
            .optional()?;
        match tenant_id {
            Some(id) => find(&conn, &id),
            None => Ok(None),
        }
    }
}

const TENANT_SELECT: &str = "SELECT t.id, t.name, t.created_at_us,
    (SELECT COUNT(*) FROM tokens k WHERE k.tenant_id = t.id AND k.revoked_at_us IS NULL)
    FROM tenants t";

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at_us: r.get(2)?,
        active_tokens: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

fn find(conn: &Connection, id_or_name: &str) -> Result<Option<Tenant>, StoreError> {
    Ok(conn
        .query_row(
            &format!("{TENANT_SELECT} WHERE t.id = ?1 OR t.name = ?1"),
            [id_or_name],
            tenant_row,
        )
        .optional()?)
}

fn insert_token(conn: &Connection, tenant_id: &str, now: i64) -> Result<String, StoreError> {
    let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
    conn.execute(
        "INSERT INTO tokens (digest, tenant_id, created_at_us) VALUES (?1, ?2, ?3)",
        params![digest(&token), tenant_id, now],
    )?;
    Ok(token)
}

fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_their_tenant_until_revoked_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.db");
        let registry = TenantRegistry::open(&path).unwrap();
        let (a, token_a) = registry.create("acme").unwrap();
        let (b, token_b) = registry.create("globex").unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(registry.authenticate(&token_a).unwrap().unwrap().id, a.id);
        assert_eq!(registry.authenticate(&token_b).unwrap().unwrap().id, b.id);
        assert_eq!(registry.authenticate("tsu_nope").unwrap(), None);
        assert!(registry.create("acme").is_err(), "names are unique");
        let (_, second) = registry.issue_token("acme").unwrap();
        assert_eq!(registry.revoke_tokens(&a.id).unwrap(), 2);
        assert_eq!(registry.authenticate(&token_a).unwrap(), None);
        assert_eq!(registry.authenticate(&second).unwrap(), None);
        drop(registry);
        let bytes = std::fs::read(&path).unwrap();
        let needle = token_b.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the token itself must not be stored"
        );
    }
}

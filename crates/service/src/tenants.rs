//! Tenants and their bearer tokens: the [`TenantDirectory`] port every registry implements
//! (the embedded SQLite file, a DynamoDB table), and the token rules they share.
//!
//! A token is shown once, when it is issued; only its SHA-256 digest ([`token_digest`]) is
//! stored, so a copy of the registry does not give access. Tokens are 256 random bits, so
//! a plain digest (no slow password hash) cannot be brute-forced.

use async_trait::async_trait;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tsunagu_domain::search::{parse_time_zone, TimeZone};
use tsunagu_domain::synonyms::{SynonymError, Synonyms};

/// The prefix of every token, so a leaked one is easy to recognize in a secret scanner.
pub const TOKEN_PREFIX: &str = "tsu_";

/// The prefix of every tenant id, so an id is never taken for a name.
pub const TENANT_ID_PREFIX: &str = "tn_";

/// The longest tenant name, in characters.
pub const MAX_TENANT_NAME_CHARS: usize = 200;

/// A tenant (one customer account): every item it owns carries its id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at_us: i64,
    /// Tokens not revoked.
    pub active_tokens: u64,
    /// The IANA time zone of the tenant's calendar (days, weeks and months of an
    /// aggregation) when a request names none; `None` is UTC.
    pub time_zone: Option<String>,
}

impl Tenant {
    /// The tenant's time zone: its own, or UTC.
    pub fn zone(&self) -> TimeZone {
        self.time_zone
            .as_deref()
            .and_then(|name| parse_time_zone(name).ok())
            .unwrap_or(TimeZone::UTC)
    }
}

/// What a tenant is created with beyond its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSettings {
    /// An IANA time zone name (`Asia/Tokyo`); `None` is UTC. Checked by [`time_zone_name`].
    pub time_zone: Option<String>,
}

/// Why a registry refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("no tenant with id or name {0:?}; `tsunagu tenant list` shows them")]
    NotFound(String),
    #[error("a tenant named {0:?} already exists")]
    NameTaken(String),
    #[error("invalid tenant name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{reason}")]
    InvalidTimeZone { zone: String, reason: String },
    #[error("invalid synonyms: {0}")]
    InvalidSynonyms(#[from] SynonymError),
    #[error("the tenant registry failed: {0}")]
    Unavailable(String),
}

/// The tenant registry.
#[async_trait]
pub trait TenantDirectory: Send + Sync + 'static {
    /// Creates a tenant and issues its first token: (tenant, token). Names are unique.
    async fn create_with(
        &self,
        name: &str,
        settings: &TenantSettings,
    ) -> Result<(Tenant, String), TenantError>;
    /// Creates a tenant with the default settings (UTC); see
    /// [`TenantDirectory::create_with`].
    async fn create(&self, name: &str) -> Result<(Tenant, String), TenantError> {
        self.create_with(name, &TenantSettings::default()).await
    }
    /// Sets (or, with `None`, clears to UTC) the time zone of the tenant with this id or
    /// name; returns the tenant as it now is.
    async fn set_time_zone(
        &self,
        tenant: &str,
        time_zone: Option<&str>,
    ) -> Result<Tenant, TenantError>;
    /// The synonym list of the tenant with this id or name (empty when none was set).
    /// Read on every memo search with text, so a change applies to the next search.
    async fn synonyms(&self, tenant: &str) -> Result<Synonyms, TenantError>;
    /// Replaces the whole synonym list of the tenant with this id or name (an empty list
    /// removes it); returns it as stored. The list is valid by construction
    /// ([`Synonyms::new`]), so only an unknown tenant or the registry can fail it.
    async fn set_synonyms(
        &self,
        tenant: &str,
        synonyms: &Synonyms,
    ) -> Result<Synonyms, TenantError>;
    /// Issues another token to the tenant with this id or name.
    async fn issue_token(&self, tenant: &str) -> Result<(Tenant, String), TenantError>;
    /// Revokes every token of the tenant with this id or name; returns how many were live.
    async fn revoke_tokens(&self, tenant: &str) -> Result<u64, TenantError>;
    /// Every tenant, oldest first.
    async fn list(&self) -> Result<Vec<Tenant>, TenantError>;
    /// The tenant a presented token belongs to, if it is a live token.
    async fn authenticate(&self, token: &str) -> Result<Option<Tenant>, TenantError>;
}

/// A new tenant's name, trimmed: not blank, not too long, no control characters, and not
/// shaped like a tenant id (so a name never resolves to another tenant's id).
pub fn tenant_name(name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    let invalid = |reason: &str| {
        Err(TenantError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return invalid("it is blank");
    }
    if name.chars().count() > MAX_TENANT_NAME_CHARS {
        return invalid(&format!("longer than {MAX_TENANT_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return invalid("it contains a control character");
    }
    if name.starts_with(TENANT_ID_PREFIX) {
        return invalid(&format!(
            "names may not start with {TENANT_ID_PREFIX:?}, the prefix of tenant ids"
        ));
    }
    Ok(name.to_string())
}

/// A tenant's time zone as stored: the canonical IANA name of `zone` (trimmed), or why it
/// is not one.
pub fn time_zone_name(zone: &str) -> Result<String, TenantError> {
    parse_time_zone(zone.trim())
        .map(|tz| tz.name().to_string())
        .map_err(|reason| TenantError::InvalidTimeZone {
            zone: zone.to_string(),
            reason,
        })
}

/// A new tenant id: the prefix and 64 random bits in hex.
pub fn new_tenant_id() -> String {
    format!("{TENANT_ID_PREFIX}{}", random_hex(8))
}

/// A new bearer token: the prefix and 256 random bits in hex.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(32))
}

/// What a registry stores of a token: its SHA-256 digest in hex.
pub fn token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether a presented string can be a token at all (checked before any lookup).
pub fn looks_like_token(token: &str) -> bool {
    token.len() == TOKEN_PREFIX.len() + 64
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
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
    fn tokens_are_recognised_and_digests_are_stable() {
        let t = new_token();
        assert!(looks_like_token(&t));
        assert!(!looks_like_token("tsu_short"));
        assert_eq!(token_digest(&t), token_digest(&t));
        assert_ne!(token_digest(&t), token_digest(&new_token()));
    }

    #[test]
    fn names_shaped_like_ids_are_refused() {
        assert_eq!(tenant_name(" Acme ").as_deref(), Ok("Acme"));
        assert!(tenant_name("tn_0123").is_err());
        assert!(tenant_name(" ").is_err());
        assert!(tenant_name("a\u{7}").is_err());
        assert!(tenant_name(&"x".repeat(201)).is_err());
        assert!(new_tenant_id().starts_with(TENANT_ID_PREFIX));
    }
}

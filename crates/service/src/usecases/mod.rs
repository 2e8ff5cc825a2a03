//! The use cases, as methods of [`Service`], one module per aggregate:
//! [`activities`], [`companies`], [`deals`], [`sales_lists`]. Every method takes the
//! caller's [`TenantId`] and never reads or changes another tenant's data: anything of
//! another tenant is reported as not found.

pub mod activities;
pub mod companies;
pub mod deals;
pub mod sales_lists;

use crate::consistency::ConsistencyToken;
use crate::error::ServiceError;
use crate::ports::{
    Clock, Committed, Expect, PrimaryStore, SearchIndex, WriteRejected, WriteVisibility,
};
use rand::RngCore;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::Duration;
use tsunagu_domain::{Entity, ItemKey, Version};

/// The tenant a request acts for (from its authenticated token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(pub String);

/// Settings of the use cases.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The longest a search given a consistency token waits for the index.
    pub consistency_wait: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            consistency_wait: Duration::from_secs(5),
        }
    }
}

/// A value as written, its new version and the token that makes a later search see it.
#[derive(Debug, Clone)]
pub struct Written<T> {
    pub value: T,
    pub version: Version,
    pub token: ConsistencyToken,
}

impl<T> Written<T> {
    /// A write that had nothing to change: the value as it is, at its current version.
    pub(crate) fn unchanged(value: T, key: ItemKey, version: Version) -> Self {
        Self {
            value,
            version,
            token: ConsistencyToken {
                key,
                version,
                committed_at_us: 0,
            },
        }
    }
}

/// Runs a read-modify-write again (up to three more times) when another writer changed the
/// item between its read and its write: for changes that do not depend on the rest of the
/// item (a tag, list members).
pub(crate) async fn retry_on_conflict<T, F, Fut>(mut attempt: F) -> Result<Written<T>, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Written<T>, ServiceError>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(ServiceError::Conflict { .. }) if retries < 3 => retries += 1,
            other => return other,
        }
    }
}

/// The application: its use cases over the ports.
#[derive(Clone)]
pub struct Service {
    primary: Arc<dyn PrimaryStore>,
    index: Arc<dyn SearchIndex>,
    visibility: Arc<dyn WriteVisibility>,
    clock: Arc<dyn Clock>,
    options: ServiceOptions,
}

impl Service {
    pub fn new(
        primary: Arc<dyn PrimaryStore>,
        index: Arc<dyn SearchIndex>,
        visibility: Arc<dyn WriteVisibility>,
        clock: Arc<dyn Clock>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            primary,
            index,
            visibility,
            clock,
            options,
        }
    }

    pub fn index(&self) -> &dyn SearchIndex {
        self.index.as_ref()
    }

    /// Waits for a consistency token's write to reach the index (no-op without one).
    pub async fn wait_for(&self, token: Option<&str>) -> Result<(), ServiceError> {
        match token {
            None => Ok(()),
            Some(text) => {
                ConsistencyToken::parse(text)?
                    .wait_applied(self.visibility.as_ref(), self.options.consistency_wait)
                    .await
            }
        }
    }

    /// Loads an item of the tenant; another tenant's item or another kind is not found.
    async fn load<T>(
        &self,
        tenant: &TenantId,
        key: &ItemKey,
        what: &'static str,
        id: &str,
        extract: impl FnOnce(Entity) -> Option<T>,
    ) -> Result<(Version, T), ServiceError> {
        let not_found = || ServiceError::NotFound {
            what,
            id: id.to_string(),
        };
        let (version, entity) = self.primary.get(key).await?.ok_or_else(not_found)?;
        if entity.tenant_id() != tenant.0 {
            return Err(not_found());
        }
        extract(entity)
            .map(|value| (version, value))
            .ok_or_else(not_found)
    }

    /// Writes an entity, mapping a lost condition to a conflict on `what`.
    async fn store<T>(
        &self,
        value: T,
        entity: Entity,
        expect: Expect,
        what: &'static str,
        id: &str,
    ) -> Result<Written<T>, ServiceError> {
        let key = entity.key();
        let committed = self.primary.put(&entity, expect).await;
        self.written(value, key, committed, expect, what, id)
    }

    async fn remove(
        &self,
        key: ItemKey,
        expect: Expect,
        what: &'static str,
        id: &str,
    ) -> Result<Written<()>, ServiceError> {
        let committed = self.primary.delete(&key, expect).await;
        self.written((), key, committed, expect, what, id)
    }

    fn written<T>(
        &self,
        value: T,
        key: ItemKey,
        committed: Result<Committed, WriteRejected>,
        expect: Expect,
        what: &'static str,
        id: &str,
    ) -> Result<Written<T>, ServiceError> {
        match committed {
            Ok(Committed {
                version,
                committed_at_us,
            }) => Ok(Written {
                value,
                version,
                token: ConsistencyToken {
                    key,
                    version,
                    committed_at_us,
                },
            }),
            Err(WriteRejected::Conflict { current }) => match expect {
                Expect::Version(sent) => Err(ServiceError::Conflict {
                    what,
                    id: id.to_string(),
                    sent,
                    current,
                }),
                Expect::Absent => Err(ServiceError::Unavailable(format!(
                    "a new {what} id collided with an existing one; retry"
                ))),
            },
            Err(WriteRejected::Unavailable(message)) => Err(ServiceError::Unavailable(message)),
        }
    }
}

/// A fresh random id with a kind prefix (`ac_`, `co_`, `dl_`, `sl_`): 80 random bits.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

/// For PATCH fields that may be set to null: absent → `None` (keep), `null` →
/// `Some(None)` (clear), a value → `Some(Some(v))`.
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Rejects a version of 0 (never handed out) with a message that says what to send.
pub(crate) fn expect_version(version: u64) -> Result<Expect, ServiceError> {
    if version == 0 {
        return Err(ServiceError::invalid(
            "version",
            "must be the version returned when you read or last wrote it",
        ));
    }
    Ok(Expect::Version(Version(version)))
}

/// A conflict unless the caller's version is the current one (checked before building
/// the new value; the store checks again atomically on write).
pub(crate) fn check_version(
    what: &'static str,
    id: &str,
    sent: u64,
    current: Version,
) -> Result<(), ServiceError> {
    if current.0 == sent {
        return Ok(());
    }
    Err(ServiceError::Conflict {
        what,
        id: id.to_string(),
        sent: Version(sent),
        current: Some(current),
    })
}

/// Checks a page size against the index's limit.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ServiceError> {
    use tsunagu_domain::search::{DEFAULT_LIMIT, MAX_LIMIT};
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ServiceError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIMIT}; page with the cursor for more"),
        )),
    }
}

/// Parses a cursor handed out by a previous page.
pub(crate) fn parse_cursor(
    cursor: Option<&str>,
) -> Result<Option<tsunagu_domain::search::Cursor>, ServiceError> {
    cursor
        .map(|c| {
            tsunagu_domain::search::Cursor::parse(c)
                .map_err(|e| ServiceError::invalid("cursor", e.to_string()))
        })
        .transpose()
}

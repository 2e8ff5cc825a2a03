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
    pub(crate) fn unchanged(value: T, tenant: &TenantId, key: ItemKey, version: Version) -> Self {
        Self {
            value,
            version,
            token: ConsistencyToken {
                key,
                version,
                committed_at_us: 0,
                tenant: Some(tenant.0.clone()),
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
    /// A token that cannot name a write of this tenant is refused at once (422) instead
    /// of waiting out the bound: see [`Service::check_token`].
    pub async fn wait_for(
        &self,
        tenant: &TenantId,
        token: Option<&str>,
    ) -> Result<(), ServiceError> {
        let Some(text) = token else {
            return Ok(());
        };
        let token = ConsistencyToken::parse(text)?;
        self.check_token(tenant, &token).await?;
        token
            .wait_applied(self.visibility.as_ref(), self.options.consistency_wait)
            .await
    }

    /// What can be told cheaply (one strongly consistent read of the primary, at most
    /// one lookup in the index) about whether `token` names a write of `tenant`:
    ///
    /// - a token bound to another tenant (tokens carry the tenant that received them) is
    ///   refused;
    /// - the primary has the item: it must be the tenant's (else refused, with the same
    ///   message as an unknown write, so another tenant's ids do not leak) and at the
    ///   token's version or newer (versions only grow: a lower one means the primary never
    ///   was at the token's version);
    /// - the primary does not have it: the write may be a delete, or the item was deleted
    ///   since, both legitimately waited on; but then the index shows the item (its
    ///   tombstone) once replicated. So when the index shows nothing of it either and the
    ///   write is older than the consistency wait (a write that old is replicated unless
    ///   the pipeline stalls, which ends in 503 anyway), the item never existed: refused.
    ///   A token younger than that waits as usual (bounded).
    /// - a commit time more than an hour in the future was never handed out: refused.
    async fn check_token(
        &self,
        tenant: &TenantId,
        token: &ConsistencyToken,
    ) -> Result<(), ServiceError> {
        let unknown = || {
            ServiceError::invalid(
                "consistency_token",
                "names no write of this account; pass back the token of one of your writes unchanged",
            )
        };
        if token.tenant.as_deref().is_some_and(|t| t != tenant.0) {
            return Err(ServiceError::invalid(
                "consistency_token",
                "was handed out to another account; pass the token of one of this account's writes",
            ));
        }
        let now_us = self.clock.now().timestamp_micros();
        const HOUR_US: i64 = 3_600_000_000;
        if token.committed_at_us > now_us.saturating_add(HOUR_US) {
            return Err(unknown());
        }
        match self.primary.get(&token.key).await? {
            Some((version, entity)) => {
                if entity.tenant_id() != tenant.0 || version < token.version {
                    return Err(unknown());
                }
            }
            None => {
                let wait_us =
                    i64::try_from(self.options.consistency_wait.as_micros()).unwrap_or(i64::MAX);
                let recent = token.committed_at_us > now_us.saturating_sub(wait_us);
                if !recent && self.index.visible_version(&token.key).await?.is_none() {
                    return Err(unknown());
                }
            }
        }
        Ok(())
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
        let tenant = TenantId(entity.tenant_id().to_string());
        let committed = self.primary.put(&entity, expect).await;
        self.written(value, &tenant, key, committed, expect, what, id)
    }

    async fn remove(
        &self,
        tenant: &TenantId,
        key: ItemKey,
        expect: Expect,
        what: &'static str,
        id: &str,
    ) -> Result<Written<()>, ServiceError> {
        let committed = self.primary.delete(&key, expect).await;
        self.written((), tenant, key, committed, expect, what, id)
    }

    #[allow(clippy::too_many_arguments)]
    fn written<T>(
        &self,
        value: T,
        tenant: &TenantId,
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
                    tenant: Some(tenant.0.clone()),
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
/// Checks memo or title search text against the search syntax
/// ([`tsunagu_domain::text_query`]) before an index sees it: unreadable text is a 422 on
/// `q` naming the problem. Blank text becomes `None` (it does not filter).
pub(crate) fn check_text(text: Option<String>) -> Result<Option<String>, ServiceError> {
    match text {
        Some(text) => Ok(tsunagu_domain::text_query::TextQuery::parse(&text)?.map(|_| text)),
        None => Ok(None),
    }
}

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

//! The tenant registry in one DynamoDB table ([`TenantDirectory`]), shared by every API
//! server and operator machine, so that a token issued on one machine authenticates on
//! all of them and a name is unique across the deployment. The token rules (shape,
//! SHA-256 digests, name validation) are `tsunagu_service::tenants`'; only digests are
//! stored.
//!
//! Layout (string keys: `pk` HASH, `sk` RANGE; see also `docs/aws.md`):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | tenant | `tenant#<id>` | `tenant` | `id` (S), `name` (S), `created_at_us` (N), `active_tokens` (N), `time_zone` (S, when set) |
//! | synonyms of a tenant | `tenant#<id>` | `synonyms` | `groups` (L of L of S; empty once cleared), once set |
//! | live token of a tenant | `tenant#<id>` | `token#<digest>` | `created_at_us` (N) |
//! | token | `token#<digest>` | `token` | `tenant_id` (S), `created_at_us` (N), `revoked_at_us` (N, once revoked) |
//! | name claim | `name#<name>` | `name` | `tenant_id` (S) |
//!
//! Ids start with `tn_`, digests are 64 hex digits and every partition kind has its own
//! prefix, so partitions never collide whatever a name is.
//!
//! **Every write is one `TransactWriteItems`**, so the items never disagree:
//! - *create* puts the name claim, the tenant, the token and the tenant's token entry,
//!   each on `attribute_not_exists(pk)`. Of two processes creating one name, exactly one
//!   transaction commits; the other is cancelled on the name claim and answers
//!   [`TenantError::NameTaken`] (a cancellation for a transaction conflict is retried,
//!   and then fails on the claim).
//! - *issue* adds 1 to the tenant's `active_tokens` (on the tenant existing) and puts the
//!   token and its entry.
//! - *revoke* queries the tenant's partition for its token entries (strongly consistent),
//!   then, for up to [`REVOKE_CHUNK`] tokens per transaction, deletes each entry (on it
//!   existing), sets the token's `revoked_at_us` (on it not being set) and subtracts their
//!   count from `active_tokens`. When another process revoked one of them meanwhile, the
//!   chunk is cancelled and its tokens are revoked one transaction each, so every token is
//!   counted by exactly one revoke and `active_tokens` stays exact. A revoked token's item
//!   stays (with `revoked_at_us`), its entry in the tenant's partition goes, so that
//!   partition holds exactly the live tokens.
//!
//! **Reads** are strongly consistent. `authenticate`, on every API request, is a
//! `GetItem` of the token (missing or revoked: nobody, in one read), then a `GetItem` of
//! its tenant for the exact tenant. A tenant is found by id (a `GetItem` of the tenant)
//! before by name (a `GetItem` of the name claim, then of the tenant), as in the embedded
//! registry. The synonyms of a tenant given by id (every memo search with text) are one
//! `Query` of its partition between the sort keys `synonyms` and `tenant`, which reads
//! the tenant and its list together. `list` is a `Scan` of the tenant items (filter `sk = tenant`), every page,
//! sorted oldest first: a registry holds few items.

use crate::config::{AwsConfig, TenantTableConfig};
use crate::dynamo::{n, OperationalTable, PK, SK};
use crate::{now_us, sdk_config, ApiFailure, AwsError};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::time::Duration;
use tsunagu_domain::synonyms::Synonyms;
use tsunagu_service::tenants::{
    looks_like_token, new_tenant_id, new_token, tenant_name, time_zone_name, token_digest, Tenant,
    TenantDirectory, TenantError, TenantSettings, TENANT_ID_PREFIX,
};

const TENANT_PREFIX: &str = "tenant#";
const TENANT_SK: &str = "tenant";
const SYNONYMS_SK: &str = "synonyms";
/// The sort-key prefix of a live token's entry in its tenant's partition, and the
/// partition-key prefix of a token's item.
const TOKEN_PREFIX: &str = "token#";
const TOKEN_SK: &str = "token";
const NAME_PREFIX: &str = "name#";
const NAME_SK: &str = "name";

const ID: &str = "id";
const NAME: &str = "name";
const CREATED_AT: &str = "created_at_us";
const ACTIVE_TOKENS: &str = "active_tokens";
const TENANT_ID: &str = "tenant_id";
const REVOKED_AT: &str = "revoked_at_us";
const TIME_ZONE: &str = "time_zone";
const GROUPS: &str = "groups";

/// Tokens revoked per transaction: two items each and the tenant's counter stay within
/// the 25 items of a transaction (the limit before DynamoDB raised it to 100).
pub const REVOKE_CHUNK: usize = 12;
const _: () = assert!(
    REVOKE_CHUNK * 2 < 25,
    "a revoke chunk must fit in one transaction"
);

/// Attempts of a transaction cancelled because another transaction held its items.
const CONFLICT_ATTEMPTS: u32 = 6;

/// Attempts of a create or an issue whose fresh id or token digest was already taken
/// (64 and 256 random bits: in practice never more than one).
const FRESH_ATTEMPTS: usize = 3;

type Item = HashMap<String, AttributeValue>;

/// How a transaction ended when it did not fail.
enum Transact {
    Committed,
    /// Cancelled on a condition: the cancellation reason of each item, in order (empty
    /// when the service gave none).
    Cancelled(Vec<Option<String>>),
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";

impl Transact {
    /// Whether item `index`'s condition failed, when the service said so.
    fn failed_on(&self, index: usize) -> Option<bool> {
        match self {
            Self::Committed => Some(false),
            Self::Cancelled(reasons) if reasons.is_empty() => None,
            Self::Cancelled(reasons) => {
                Some(reasons.get(index).and_then(Option::as_deref) == Some(CONDITION_FAILED))
            }
        }
    }
}

/// The tenant registry on one DynamoDB table. Cheap to clone.
#[derive(Clone)]
pub struct DynamoTenantDirectory {
    client: Client,
    table: String,
}

impl DynamoTenantDirectory {
    /// Connects, creating the table when it is missing and `create_if_missing` is set, and
    /// checks its keys.
    pub async fn connect(aws: &AwsConfig, config: &TenantTableConfig) -> Result<Self, AwsError> {
        config.validate("tenants")?;
        Self::with_client(Client::new(&sdk_config(aws).await?), config).await
    }

    /// Like [`DynamoTenantDirectory::connect`], with a client built by the caller.
    pub async fn with_client(client: Client, config: &TenantTableConfig) -> Result<Self, AwsError> {
        config.validate("tenants")?;
        let table = &config.table_name;
        Self::table_of(table)
            .open(&client, config.create_if_missing)
            .await?;
        Ok(Self {
            client,
            table: table.clone(),
        })
    }

    /// For `tsunagu check`: the table exists with string keys `pk` and `sk`. Creates
    /// nothing. Returns a one-line summary.
    pub async fn check(&self) -> Result<String, AwsError> {
        Self::table_of(&self.table).check(&self.client).await
    }

    fn table_of(name: &str) -> OperationalTable<'_> {
        OperationalTable {
            what: "tenant",
            name,
            keys: (PK, SK),
            section: "tenants",
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Maps an SDK error (throttling, network, a missing table: all `Unavailable`), naming
    /// the table.
    fn api_error<E, R>(&self, operation: &str, error: &SdkError<E, R>) -> TenantError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let failure = ApiFailure::from_sdk(operation, error);
        if failure.is("ResourceNotFoundException") {
            TenantError::Unavailable(Self::table_of(&self.table).missing())
        } else {
            TenantError::Unavailable(format!(
                "DynamoDB tenant table {:?}: {}",
                self.table, failure.message
            ))
        }
    }

    fn corrupt(&self, what: &str, detail: impl std::fmt::Display) -> TenantError {
        TenantError::Unavailable(format!(
            "{what} in DynamoDB tenant table {:?} is unreadable: {detail}",
            self.table
        ))
    }

    fn build_error(&self, error: BuildError) -> TenantError {
        TenantError::Unavailable(format!(
            "a request to DynamoDB tenant table {:?} could not be built: {error}",
            self.table
        ))
    }

    /// One item, strongly consistent.
    async fn get(&self, pk: String, sk: &str, what: &str) -> Result<Option<Item>, TenantError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.api_error(&format!("GetItem ({what})"), &e))?;
        Ok(output.item().cloned())
    }

    async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>, TenantError> {
        match self.get(tenant_pk(id), TENANT_SK, "tenant").await? {
            Some(item) => self.tenant_from(&item).map(Some),
            None => Ok(None),
        }
    }

    /// The synonyms of the tenant with this id, read with the tenant in one strongly
    /// consistent Query: the sort keys `synonyms` and `tenant` are adjacent in the
    /// tenant's partition (its token entries, `token#…`, sort after both). `None` when no
    /// tenant has this id.
    async fn synonyms_by_id(&self, id: &str) -> Result<Option<Synonyms>, TenantError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :synonyms AND :tenant")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", AttributeValue::S(tenant_pk(id)))
            .expression_attribute_values(":synonyms", AttributeValue::S(SYNONYMS_SK.into()))
            .expression_attribute_values(":tenant", AttributeValue::S(TENANT_SK.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.api_error("Query (tenant and its synonyms)", &e))?;
        let (mut tenant, mut synonyms) = (None, None);
        for item in output.items() {
            match text(item, SK) {
                Some(TENANT_SK) => tenant = Some(item),
                Some(SYNONYMS_SK) => synonyms = Some(item),
                _ => {}
            }
        }
        if tenant.is_none() {
            return Ok(None);
        }
        synonyms
            .map(|item| self.synonyms_from(id, item))
            .transpose()
            .map(|found| Some(found.unwrap_or_default()))
    }

    /// The synonym list stored in a tenant's `synonyms` item.
    fn synonyms_from(&self, tenant_id: &str, item: &Item) -> Result<Synonyms, TenantError> {
        let what = format!("the synonyms of tenant {tenant_id:?}");
        let groups = item
            .get(GROUPS)
            .and_then(|v| v.as_l().ok())
            .ok_or_else(|| self.corrupt(&what, format!("no list attribute {GROUPS:?}")))?;
        let groups = groups
            .iter()
            .map(|group| {
                group.as_l().ok().and_then(|terms| {
                    terms
                        .iter()
                        .map(|t| t.as_s().ok().cloned())
                        .collect::<Option<Vec<String>>>()
                })
            })
            .collect::<Option<Vec<Vec<String>>>>()
            .ok_or_else(|| self.corrupt(&what, "a group is not a list of strings"))?;
        Synonyms::new(groups).map_err(|e| self.corrupt(&what, e))
    }

    /// The tenant with this id, or else with this name. An id is looked up first, so a
    /// name can never shadow another tenant's id.
    async fn find(&self, id_or_name: &str) -> Result<Option<Tenant>, TenantError> {
        if id_or_name.starts_with(TENANT_ID_PREFIX) {
            if let Some(found) = self.tenant_by_id(id_or_name).await? {
                return Ok(Some(found));
            }
        }
        let Some(claim) = self
            .get(name_pk(id_or_name), NAME_SK, "tenant name")
            .await?
        else {
            return Ok(None);
        };
        let id = text(&claim, TENANT_ID)
            .ok_or_else(|| self.corrupt(&format!("the name {id_or_name:?}"), "no tenant_id"))?;
        self.tenant_by_id(id).await
    }

    fn tenant_from(&self, item: &Item) -> Result<Tenant, TenantError> {
        let pk = text(item, PK).unwrap_or("?");
        let what = format!("tenant item {pk:?}");
        let s = |name: &str| {
            text(item, name)
                .map(str::to_string)
                .ok_or_else(|| self.corrupt(&what, format!("no text attribute {name:?}")))
        };
        let num = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| self.corrupt(&what, format!("no whole-number attribute {name:?}")))
        };
        Ok(Tenant {
            id: s(ID)?,
            name: s(NAME)?,
            created_at_us: num(CREATED_AT)?,
            active_tokens: num(ACTIVE_TOKENS)?.max(0) as u64,
            time_zone: text(item, TIME_ZONE).map(str::to_string),
        })
    }

    /// Runs a transaction, again after a short backoff while it is cancelled only because
    /// other transactions held its items or it was throttled.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        what: &str,
    ) -> Result<Transact, TenantError> {
        let operation = format!("TransactWriteItems ({what})");
        for attempt in 0..CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(Transact::Committed),
                Err(error) => error,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                error.as_service_error()
            else {
                return Err(self.api_error(&operation, &error));
            };
            let reasons: Vec<Option<String>> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                .collect();
            let transient = |code: &str| {
                matches!(
                    code,
                    "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            };
            let conditions_failed = reasons.iter().flatten().any(|c| c == CONDITION_FAILED);
            let retry = !conditions_failed
                && reasons.iter().flatten().any(|c| transient(c))
                && attempt + 1 < CONFLICT_ATTEMPTS;
            if !retry {
                // A failed condition decides (whatever else was cancelled with it), and
                // so does a cancellation without reasons (the caller reads the items).
                if conditions_failed || reasons.iter().flatten().next().is_none() {
                    return Ok(Transact::Cancelled(reasons));
                }
                return Err(TenantError::Unavailable(format!(
                    "DynamoDB tenant table {:?}: {operation} was cancelled ({}); try again",
                    self.table,
                    reasons
                        .iter()
                        .map(|r| r.as_deref().unwrap_or("None"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            tracing::debug!(table = %self.table, what, attempt, ?reasons, "transaction conflict; retrying");
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(TenantError::Unavailable(format!(
            "DynamoDB tenant table {:?}: {operation} kept conflicting with other writers; try again",
            self.table
        )))
    }

    /// A `Put` of an item that must not exist yet.
    fn put_new(&self, item: Item) -> Result<TransactWriteItem, TenantError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| self.build_error(e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Adds `delta` to a tenant's `active_tokens`, on the tenant existing.
    fn count_tokens(&self, tenant_id: &str, delta: i64) -> Result<TransactWriteItem, TenantError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(tenant_id), TENANT_SK)))
            .update_expression("ADD #active :delta")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#active", ACTIVE_TOKENS)
            .expression_attribute_values(":delta", n(delta))
            .build()
            .map_err(|e| self.build_error(e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A fresh token's item and its entry in the tenant's partition.
    fn token_items(
        &self,
        tenant_id: &str,
        digest: &str,
        now: i64,
    ) -> Result<[TransactWriteItem; 2], TenantError> {
        let mut token = key(token_pk(digest), TOKEN_SK);
        token.insert(TENANT_ID.into(), AttributeValue::S(tenant_id.to_string()));
        token.insert(CREATED_AT.into(), n(now));
        let mut entry = key(tenant_pk(tenant_id), &token_sk(digest));
        entry.insert(CREATED_AT.into(), n(now));
        Ok([self.put_new(token)?, self.put_new(entry)?])
    }

    /// Revokes `digests` of one tenant in one transaction.
    fn revoke_items(
        &self,
        tenant_id: &str,
        digests: &[String],
        now: i64,
    ) -> Result<Vec<TransactWriteItem>, TenantError> {
        let mut items = Vec::with_capacity(digests.len() * 2 + 1);
        for digest in digests {
            let entry = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(tenant_pk(tenant_id), &token_sk(digest))))
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(|e| self.build_error(e))?;
            let token = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(token_pk(digest), TOKEN_SK)))
                .update_expression("SET #revoked = :now")
                .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#revoked)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#revoked", REVOKED_AT)
                .expression_attribute_values(":now", n(now))
                .build()
                .map_err(|e| self.build_error(e))?;
            items.push(TransactWriteItem::builder().delete(entry).build());
            items.push(TransactWriteItem::builder().update(token).build());
        }
        items.push(self.count_tokens(tenant_id, -(digests.len() as i64))?);
        Ok(items)
    }

    /// The digests of a tenant's live tokens (its partition's token entries).
    async fn live_digests(&self, tenant_id: &str) -> Result<Vec<String>, TenantError> {
        let mut digests = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :token)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", AttributeValue::S(tenant_pk(tenant_id)))
                .expression_attribute_values(":token", AttributeValue::S(TOKEN_PREFIX.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.api_error("Query (tokens of a tenant)", &e))?;
            for item in output.items() {
                let digest = text(item, SK)
                    .and_then(|sk| sk.strip_prefix(TOKEN_PREFIX))
                    .ok_or_else(|| {
                        self.corrupt(&format!("a token entry of tenant {tenant_id:?}"), "no sk")
                    })?;
                digests.push(digest.to_string());
            }
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(digests),
            }
        }
    }

    /// Revokes one token; whether this call revoked it (`false`: already revoked).
    async fn revoke_one(&self, tenant_id: &str, digest: &str) -> Result<bool, TenantError> {
        let items = self.revoke_items(tenant_id, &[digest.to_string()], now_us())?;
        match self.transact(items, "revoke a token").await? {
            Transact::Committed => Ok(true),
            Transact::Cancelled(reasons) => {
                // The entry or the token was gone: another revoke counted it. A token
                // entry whose token item is missing (a hand edit) is left and logged.
                if reasons.get(1).and_then(Option::as_deref) == Some(CONDITION_FAILED)
                    && reasons.first().and_then(Option::as_deref) != Some(CONDITION_FAILED)
                {
                    tracing::warn!(
                        table = %self.table,
                        tenant = tenant_id,
                        "a live token entry names a token item that is missing or already revoked; delete sk {:?} of pk {:?} by hand",
                        token_sk(digest),
                        tenant_pk(tenant_id),
                    );
                }
                Ok(false)
            }
        }
    }
}

#[async_trait]
impl TenantDirectory for DynamoTenantDirectory {
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
        for _ in 0..FRESH_ATTEMPTS {
            let id = new_tenant_id();
            let token = new_token();
            let now = now_us();
            let mut claim = key(name_pk(&name), NAME_SK);
            claim.insert(TENANT_ID.into(), AttributeValue::S(id.clone()));
            let mut tenant = key(tenant_pk(&id), TENANT_SK);
            tenant.insert(ID.into(), AttributeValue::S(id.clone()));
            tenant.insert(NAME.into(), AttributeValue::S(name.clone()));
            tenant.insert(CREATED_AT.into(), n(now));
            tenant.insert(ACTIVE_TOKENS.into(), n(1));
            if let Some(zone) = &time_zone {
                tenant.insert(TIME_ZONE.into(), AttributeValue::S(zone.clone()));
            }
            let mut items = vec![self.put_new(claim)?, self.put_new(tenant)?];
            items.extend(self.token_items(&id, &token_digest(&token), now)?);
            let outcome = self.transact(items, "create a tenant").await?;
            if let Transact::Committed = outcome {
                let tenant = Tenant {
                    id,
                    name,
                    created_at_us: now,
                    active_tokens: 1,
                    time_zone,
                };
                return Ok((tenant, token));
            }
            let name_taken = match outcome.failed_on(0) {
                Some(taken) => taken,
                // No reasons given: the claim tells.
                None => self
                    .get(name_pk(&name), NAME_SK, "tenant name")
                    .await?
                    .is_some(),
            };
            if name_taken {
                return Err(TenantError::NameTaken(name));
            }
            // The fresh id or token digest was taken: draw again.
        }
        Err(TenantError::Unavailable(format!(
            "DynamoDB tenant table {:?}: could not draw a fresh tenant id and token; try again",
            self.table
        )))
    }

    async fn issue_token(&self, tenant: &str) -> Result<(Tenant, String), TenantError> {
        let found = self
            .find(tenant)
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.to_string()))?;
        for _ in 0..FRESH_ATTEMPTS {
            let token = new_token();
            let mut items = vec![self.count_tokens(&found.id, 1)?];
            items.extend(self.token_items(&found.id, &token_digest(&token), now_us())?);
            let outcome = self.transact(items, "issue a token").await?;
            if let Transact::Committed = outcome {
                let tenant = self.tenant_by_id(&found.id).await?.unwrap_or(found);
                return Ok((tenant, token));
            }
            let gone = match outcome.failed_on(0) {
                Some(gone) => gone,
                None => self.tenant_by_id(&found.id).await?.is_none(),
            };
            if gone {
                return Err(TenantError::NotFound(tenant.to_string()));
            }
            // The fresh token's digest was taken: draw again.
        }
        Err(TenantError::Unavailable(format!(
            "DynamoDB tenant table {:?}: could not draw a fresh token; try again",
            self.table
        )))
    }

    async fn set_time_zone(
        &self,
        tenant: &str,
        time_zone: Option<&str>,
    ) -> Result<Tenant, TenantError> {
        let time_zone = time_zone.map(time_zone_name).transpose()?;
        let found = self
            .find(tenant)
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.to_string()))?;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(&found.id), TENANT_SK)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#zone", TIME_ZONE);
        let update = match &time_zone {
            Some(zone) => update
                .update_expression("SET #zone = :zone")
                .expression_attribute_values(":zone", AttributeValue::S(zone.clone())),
            None => update.update_expression("REMOVE #zone"),
        };
        match update.send().await {
            Ok(_) => Ok(Tenant { time_zone, ..found }),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(TenantError::NotFound(tenant.to_string()))
            }
            Err(error) => Err(self.api_error("UpdateItem (tenant time zone)", &error)),
        }
    }

    async fn synonyms(&self, tenant: &str) -> Result<Synonyms, TenantError> {
        // The API asks by id on every memo search: one Query reads the tenant and its
        // synonyms together. A name (or an id-shaped name) takes the general path.
        if tenant.starts_with(TENANT_ID_PREFIX) {
            if let Some(synonyms) = self.synonyms_by_id(tenant).await? {
                return Ok(synonyms);
            }
        }
        let found = self
            .find(tenant)
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.to_string()))?;
        match self
            .get(tenant_pk(&found.id), SYNONYMS_SK, "tenant synonyms")
            .await?
        {
            Some(item) => self.synonyms_from(&found.id, &item),
            None => Ok(Synonyms::default()),
        }
    }

    async fn set_synonyms(
        &self,
        tenant: &str,
        synonyms: &Synonyms,
    ) -> Result<Synonyms, TenantError> {
        let found = self
            .find(tenant)
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.to_string()))?;
        let groups = synonyms
            .groups()
            .iter()
            .map(|g| AttributeValue::L(g.iter().cloned().map(AttributeValue::S).collect()))
            .collect();
        let mut item = key(tenant_pk(&found.id), SYNONYMS_SK);
        item.insert(GROUPS.into(), AttributeValue::L(groups));
        // Tenants are never deleted, so the tenant found stays; the last writer wins. An
        // empty list is stored as one (DynamoDB allows empty lists).
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.api_error("PutItem (tenant synonyms)", &e))?;
        Ok(synonyms.clone())
    }

    async fn revoke_tokens(&self, tenant: &str) -> Result<u64, TenantError> {
        let found = self
            .find(tenant)
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.to_string()))?;
        let digests = self.live_digests(&found.id).await?;
        let mut revoked = 0u64;
        for chunk in digests.chunks(REVOKE_CHUNK) {
            let items = self.revoke_items(&found.id, chunk, now_us())?;
            match self.transact(items, "revoke tokens").await? {
                Transact::Committed => revoked += chunk.len() as u64,
                // Another process revoked some of them meanwhile: one at a time, so
                // each is counted by the revoke that did it.
                Transact::Cancelled(_) => {
                    for digest in chunk {
                        if self.revoke_one(&found.id, digest).await? {
                            revoked += 1;
                        }
                    }
                }
            }
        }
        Ok(revoked)
    }

    async fn list(&self) -> Result<Vec<Tenant>, TenantError> {
        let mut tenants = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :tenant")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":tenant", AttributeValue::S(TENANT_SK.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.api_error("Scan (tenants)", &e))?;
            for item in output.items() {
                tenants.push(self.tenant_from(item)?);
            }
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        tenants.sort_by(|a, b| (a.created_at_us, &a.id).cmp(&(b.created_at_us, &b.id)));
        Ok(tenants)
    }

    async fn authenticate(&self, token: &str) -> Result<Option<Tenant>, TenantError> {
        if !looks_like_token(token) {
            return Ok(None);
        }
        let Some(item) = self
            .get(token_pk(&token_digest(token)), TOKEN_SK, "token")
            .await?
        else {
            return Ok(None);
        };
        if item.contains_key(REVOKED_AT) {
            return Ok(None);
        }
        let tenant_id =
            text(&item, TENANT_ID).ok_or_else(|| self.corrupt("a token item", "no tenant_id"))?;
        self.tenant_by_id(tenant_id).await
    }
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(pk)),
        (SK.to_string(), AttributeValue::S(sk.to_string())),
    ])
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn tenant_pk(id: &str) -> String {
    format!("{TENANT_PREFIX}{id}")
}

fn token_pk(digest: &str) -> String {
    format!("{TOKEN_PREFIX}{digest}")
}

fn token_sk(digest: &str) -> String {
    format!("{TOKEN_PREFIX}{digest}")
}

fn name_pk(name: &str) -> String {
    format!("{NAME_PREFIX}{name}")
}

/// 20 ms doubling, with jitter from the clock so that racing processes spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 20u64 << attempt.min(6);
    let jitter = (now_us().unsigned_abs() % 1000) * base / 1000;
    Duration::from_millis(base / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagu_service::tenants::MAX_TENANT_NAME_CHARS;

    #[test]
    fn partitions_never_collide() {
        // Whatever a name is, its claim is in its own partition.
        for name in ["tenant#tn_1", "token#ab", "name#x", "tenant"] {
            let pk = name_pk(name);
            assert!(pk.starts_with(NAME_PREFIX));
            assert!(!pk.starts_with(TENANT_PREFIX) && !pk.starts_with(TOKEN_PREFIX));
        }
        let digest = token_digest(&new_token());
        assert!(!token_pk(&digest).starts_with(TENANT_PREFIX));
        assert_ne!(token_sk(&digest), TENANT_SK);
    }

    #[test]
    fn keys_fit_in_dynamodb() {
        // A partition key holds at most 2048 bytes: the longest name, 4 bytes a character.
        let name = "\u{10000}".repeat(MAX_TENANT_NAME_CHARS);
        assert!(name_pk(&name).len() <= 2048);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(0) < Duration::from_millis(30));
        assert!(backoff(5) >= Duration::from_millis(320));
        assert!(backoff(50) < Duration::from_millis(1920));
    }

    #[test]
    fn cancellation_reasons_are_read_by_position() {
        let cancelled = Transact::Cancelled(vec![Some(CONDITION_FAILED.into()), None]);
        assert_eq!(cancelled.failed_on(0), Some(true));
        assert_eq!(cancelled.failed_on(1), Some(false));
        assert_eq!(Transact::Cancelled(Vec::new()).failed_on(0), None);
        assert_eq!(Transact::Committed.failed_on(0), Some(false));
    }
}

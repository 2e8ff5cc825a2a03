//! What the use cases need from the outside world.

use crate::consistency::ConsistencyToken;
use crate::error::ServiceError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use tsunagu_domain::search::{
    ActivityQuery, Bucket, GroupBy, LatestActivity, RecordPage, RecordQuery, SearchPage, TimeZone,
};
use tsunagu_domain::{Entity, ItemKey, Version};

/// What a write requires of the item's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The item must not exist (create).
    Absent,
    /// The item must exist at exactly this version (optimistic concurrency).
    Version(Version),
}

/// The outcome of a write the store accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The item's version after the write (for a delete, the deletion's version).
    pub version: Version,
    /// When the store committed it (the change record's `committed_at_us`), µs since the
    /// epoch.
    pub committed_at_us: i64,
}

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteRejected {
    /// The condition did not hold; `current` is the item's version now.
    #[error("condition failed (current version {current:?})")]
    Conflict { current: Option<Version> },
    #[error("{0}")]
    Unavailable(String),
}

/// The primary store: the source of truth, read and written with strong consistency.
#[async_trait]
pub trait PrimaryStore: Send + Sync + 'static {
    async fn get(&self, key: &ItemKey) -> Result<Option<(Version, Entity)>, ServiceError>;
    async fn put(&self, entity: &Entity, expect: Expect) -> Result<Committed, WriteRejected>;
    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<Committed, WriteRejected>;
}

/// The search index fed by the replication pipeline: eventually consistent, and able to
/// say which version of an item it has applied. Async: an index may live behind HTTP.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    async fn search_activities(&self, query: &ActivityQuery) -> Result<SearchPage, ServiceError>;
    /// Counts per group; calendar groupings (day, week, month) in UTC.
    async fn aggregate_activities(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
    ) -> Result<Vec<Bucket>, ServiceError> {
        self.aggregate_activities_in(query, by, TimeZone::UTC).await
    }
    /// Counts per group; calendar groupings count days, ISO weeks (from Monday) and
    /// months in `zone`, labelled by [`GroupBy::calendar_key`]. Every index answers alike.
    async fn aggregate_activities_in(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
        zone: TimeZone,
    ) -> Result<Vec<Bucket>, ServiceError>;
    async fn search_records(&self, query: &RecordQuery) -> Result<RecordPage, ServiceError>;
    /// Every matching record's id (cursor and limit ignored).
    async fn record_ids(&self, query: &RecordQuery) -> Result<Vec<String>, ServiceError>;
    /// How many records matching `query` carry each tag, most used first.
    async fn tag_counts(&self, query: &RecordQuery) -> Result<Vec<Bucket>, ServiceError>;
    async fn deals_with_activity(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashSet<String>, ServiceError>;
    async fn latest_activity_per_deal(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashMap<String, LatestActivity>, ServiceError>;
    /// The version of `key` that searches see now (a tombstone's version for a deleted
    /// item), `None` when searches see nothing of it.
    async fn visible_version(&self, key: &ItemKey) -> Result<Option<Version>, ServiceError>;
}

/// Whether the search index shows a write: the item at that version (or newer) and
/// everything committed before it, so that a search after several writes sees them all.
#[async_trait]
pub trait WriteVisibility: Send + Sync + 'static {
    async fn shows(&self, write: &ConsistencyToken) -> Result<bool, ServiceError>;
}

/// The time, injectable so rules on time are testable.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

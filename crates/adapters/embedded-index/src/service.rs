//! The embedded index as the application's search port
//! ([`tsunagu_service::ports::SearchIndex`]): the writer handle serves the API of the
//! process that replicates into it.

use crate::{ActivityIndex, IndexError};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use tsunagu_domain::search::{
    ActivityQuery, Bucket, GroupBy, LatestActivity, RecordPage, RecordQuery, SearchPage,
};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_service::ports::SearchIndex;
use tsunagu_service::ServiceError;

fn search_error(e: IndexError) -> ServiceError {
    match e {
        IndexError::BadCursor(c) => ServiceError::invalid("cursor", c.to_string()),
        IndexError::InvalidQuery(m) => ServiceError::invalid("query", m),
        other => ServiceError::Unavailable(format!("the search index failed: {other}")),
    }
}

#[async_trait]
impl SearchIndex for ActivityIndex {
    async fn search_activities(&self, query: &ActivityQuery) -> Result<SearchPage, ServiceError> {
        self.search(query).map_err(search_error)
    }

    async fn aggregate_activities(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
    ) -> Result<Vec<Bucket>, ServiceError> {
        self.aggregate(query, by).map_err(search_error)
    }

    async fn search_records(&self, query: &RecordQuery) -> Result<RecordPage, ServiceError> {
        ActivityIndex::search_records(self, query).map_err(search_error)
    }

    async fn record_ids(&self, query: &RecordQuery) -> Result<Vec<String>, ServiceError> {
        ActivityIndex::record_ids(self, query).map_err(search_error)
    }

    async fn tag_counts(&self, query: &RecordQuery) -> Result<Vec<Bucket>, ServiceError> {
        Ok(ActivityIndex::tag_counts(self, query)
            .map_err(search_error)?
            .into_iter()
            .map(|(key, count)| Bucket { key, count })
            .collect())
    }

    async fn deals_with_activity(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashSet<String>, ServiceError> {
        ActivityIndex::deals_with_activity(self, query).map_err(search_error)
    }

    async fn latest_activity_per_deal(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashMap<String, LatestActivity>, ServiceError> {
        ActivityIndex::latest_activity_per_deal(self, query).map_err(search_error)
    }

    async fn visible_version(&self, key: &ItemKey) -> Result<Option<Version>, ServiceError> {
        self.held_version(key).map_err(search_error)
    }
}

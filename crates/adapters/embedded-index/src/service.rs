//! The embedded index as the application's search port
//! ([`tsunagu_service::ports::SearchIndex`]): the writer handle serves the API of the
//! process that replicates into it; the read-only handle serves `tsunagu search` beside
//! it.

use crate::{ActivityIndex, ActivityIndexReader, IndexError};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use tsunagu_domain::search::{
    ActivityQuery, Bucket, GroupBy, LatestActivity, RecordPage, RecordQuery, SearchPage, TimeZone,
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

/// Both handles answer the same way: the writer (the process that replicates) and the
/// read-only reader (another process, at the last durable point).
macro_rules! search_index_over_view {
    ($handle:ty) => {
        #[async_trait]
        impl SearchIndex for $handle {
            async fn search_activities(
                &self,
                query: &ActivityQuery,
            ) -> Result<SearchPage, ServiceError> {
                self.view().search(query).map_err(search_error)
            }

            async fn aggregate_activities_in(
                &self,
                query: &ActivityQuery,
                by: GroupBy,
                zone: TimeZone,
            ) -> Result<Vec<Bucket>, ServiceError> {
                self.view().aggregate(query, by, zone).map_err(search_error)
            }

            async fn search_records(
                &self,
                query: &RecordQuery,
            ) -> Result<RecordPage, ServiceError> {
                self.view().search_records(query).map_err(search_error)
            }

            async fn record_ids(&self, query: &RecordQuery) -> Result<Vec<String>, ServiceError> {
                self.view().record_ids(query).map_err(search_error)
            }

            async fn tag_counts(&self, query: &RecordQuery) -> Result<Vec<Bucket>, ServiceError> {
                Ok(self
                    .view()
                    .tag_counts(query)
                    .map_err(search_error)?
                    .into_iter()
                    .map(|(key, count)| Bucket { key, count })
                    .collect())
            }

            async fn deals_with_activity(
                &self,
                query: &ActivityQuery,
            ) -> Result<HashSet<String>, ServiceError> {
                self.view().deals_with_activity(query).map_err(search_error)
            }

            async fn latest_activity_per_deal(
                &self,
                query: &ActivityQuery,
            ) -> Result<HashMap<String, LatestActivity>, ServiceError> {
                self.view()
                    .latest_activity_per_deal(query)
                    .map_err(search_error)
            }

            async fn visible_version(
                &self,
                key: &ItemKey,
            ) -> Result<Option<Version>, ServiceError> {
                self.view().held_version(key).map_err(search_error)
            }
        }
    };
}

search_index_over_view!(ActivityIndex);
search_index_over_view!(ActivityIndexReader);

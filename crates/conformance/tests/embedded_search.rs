//! The search conformance suite against the embedded index, the reference implementation,
//! wrapped as the API server wraps it (`EmbeddedSearch` in the binary; a test-only copy
//! here until the embedded `SearchIndex` lives in `tsunagu-embedded-index`).

use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tsunagu_domain::search::{
    ActivityQuery, Bucket, GroupBy, LatestActivity, RecordPage, RecordQuery, SearchPage,
};
use tsunagu_domain::{ItemKey, Version};
use tsunagu_embedded_index::{ActivityIndex, IndexError, IndexOptions};
use tsunagu_service::ports::SearchIndex;
use tsunagu_service::ServiceError;

struct EmbeddedSearch(Arc<ActivityIndex>);

fn search_error(e: IndexError) -> ServiceError {
    match e {
        IndexError::BadCursor(c) => ServiceError::invalid("cursor", c.to_string()),
        IndexError::InvalidQuery(m) => ServiceError::invalid("query", m),
        other => ServiceError::Unavailable(format!("the search index failed: {other}")),
    }
}

#[async_trait]
impl SearchIndex for EmbeddedSearch {
    async fn search_activities(&self, query: &ActivityQuery) -> Result<SearchPage, ServiceError> {
        self.0.search(query).map_err(search_error)
    }

    async fn aggregate_activities(
        &self,
        query: &ActivityQuery,
        by: GroupBy,
    ) -> Result<Vec<Bucket>, ServiceError> {
        self.0.aggregate(query, by).map_err(search_error)
    }

    async fn search_records(&self, query: &RecordQuery) -> Result<RecordPage, ServiceError> {
        self.0.search_records(query).map_err(search_error)
    }

    async fn record_ids(&self, query: &RecordQuery) -> Result<Vec<String>, ServiceError> {
        self.0.record_ids(query).map_err(search_error)
    }

    async fn tag_counts(&self, query: &RecordQuery) -> Result<Vec<Bucket>, ServiceError> {
        Ok(self
            .0
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
        self.0.deals_with_activity(query).map_err(search_error)
    }

    async fn latest_activity_per_deal(
        &self,
        query: &ActivityQuery,
    ) -> Result<HashMap<String, LatestActivity>, ServiceError> {
        self.0.latest_activity_per_deal(query).map_err(search_error)
    }

    async fn visible_version(&self, key: &ItemKey) -> Result<Option<Version>, ServiceError> {
        self.0.held_version(key).map_err(search_error)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_index_answers_the_search_suite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let index = Arc::new(
        ActivityIndex::open(
            dir.path(),
            IndexOptions {
                writer_memory_bytes: 20 << 20,
                refresh_interval: std::time::Duration::ZERO,
                ..IndexOptions::default()
            },
        )
        .expect("opening the index"),
    );
    let search = EmbeddedSearch(index.clone());
    tsunagu_conformance::search::check_all(&search, index.as_ref()).await;
}

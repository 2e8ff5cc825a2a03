//! Reading a shard through shard iterators, shared by the DynamoDB Streams and Kinesis
//! sources (their APIs differ only in names).
//!
//! One [`ShardReader`] per source instance keeps, per shard, a *cursor*: the shard
//! iterator that continues right after the last position handed out, and records fetched
//! but not yet handed out. A read that continues where the previous one stopped (the
//! engine's normal case) uses it and costs one `GetRecords`; any other position gets a
//! fresh iterator (`AFTER_SEQUENCE_NUMBER`, or `TRIM_HORIZON`). One lock per shard means
//! one `GetRecords` in flight per shard per process, whatever the number of consumers.
//!
//! Iterators expire (after 5 minutes on AWS): an expired one is replaced by a new
//! iterator after the cursor's position, so nothing is skipped or repeated.

use crate::ApiFailure;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tsunagu_domain::{ChangeRecord, Position, ShardId};
use tsunagu_engine::ports::{ReadBatch, ReadFrom, SourceError};

/// Where a new iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IteratorStart {
    TrimHorizon,
    After(Position),
}

impl From<&ReadFrom> for IteratorStart {
    fn from(from: &ReadFrom) -> Self {
        match from {
            ReadFrom::TrimHorizon => IteratorStart::TrimHorizon,
            ReadFrom::After(p) => IteratorStart::After(p.clone()),
        }
    }
}

/// One `GetRecords` answer, converted.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// The records the engine sees (a source may drop some, such as the removal of an
    /// expired tombstone).
    pub records: Vec<ChangeRecord>,
    /// The newest position in the page, dropped records included.
    pub last_position: Option<Position>,
    /// The iterator for the next page; `None` when a closed shard is exhausted.
    pub next: Option<String>,
    /// Nothing newer is in the shard right now.
    pub caught_up: bool,
}

/// The two calls a stream API offers for reading a shard.
#[async_trait]
pub(crate) trait ShardApi: Send + Sync + 'static {
    async fn iterator(&self, shard: &ShardId, start: &IteratorStart) -> Result<String, ApiFailure>;
    async fn records(
        &self,
        shard: &ShardId,
        iterator: &str,
        limit: usize,
    ) -> Result<Page, ApiFailure>;
    /// The most records one `GetRecords` may ask for.
    fn max_limit(&self) -> usize;
}

#[derive(Default)]
struct Cursor {
    /// The iterator yields exactly the records after this point (after `pending`).
    from: Option<ReadFrom>,
    iterator: Option<String>,
    pending: VecDeque<ChangeRecord>,
    /// The shard is closed and `iterator` reached its end.
    ended: bool,
}

#[derive(Default)]
struct Tail {
    newest: Option<Position>,
    iterator: Option<String>,
}

pub(crate) struct ShardReader<A> {
    api: A,
    poll_interval: Duration,
    cursors: Mutex<HashMap<ShardId, Arc<tokio::sync::Mutex<Cursor>>>>,
    tails: Mutex<HashMap<ShardId, Arc<tokio::sync::Mutex<Tail>>>>,
}

/// Most pages `latest_position` reads before giving up for now.
const MAX_TAIL_PAGES: usize = 10_000;

fn slot<T: Default>(
    map: &Mutex<HashMap<ShardId, Arc<tokio::sync::Mutex<T>>>>,
    shard: &ShardId,
) -> Arc<tokio::sync::Mutex<T>> {
    match map.lock() {
        Ok(mut map) => Arc::clone(map.entry(shard.clone()).or_default()),
        // A poisoned map only loses the cache: read without it.
        Err(_) => Arc::new(tokio::sync::Mutex::new(T::default())),
    }
}

impl<A: ShardApi> ShardReader<A> {
    pub(crate) fn new(api: A, poll_interval: Duration) -> Self {
        Self {
            api,
            poll_interval,
            cursors: Mutex::new(HashMap::new()),
            tails: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn api(&self) -> &A {
        &self.api
    }

    /// The engine's `ChangeSource::read`.
    pub(crate) async fn read(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        limit: usize,
        wait: Duration,
    ) -> Result<ReadBatch, SourceError> {
        let limit = limit.max(1);
        let deadline = Instant::now() + wait;
        let cursor = slot(&self.cursors, shard);
        let mut cursor = cursor.lock().await;
        if cursor.from.as_ref() != Some(from) {
            *cursor = Cursor {
                from: Some(from.clone()),
                ..Cursor::default()
            };
        }
        let result = self.fill(shard, from, &mut cursor, limit, deadline).await;
        if result.is_err() {
            // Start afresh from the caller's position next time.
            *cursor = Cursor::default();
        }
        result?;
        let take = cursor.pending.len().min(limit);
        let records: Vec<ChangeRecord> = cursor.pending.drain(..take).collect();
        if let Some(last) = records.last() {
            cursor.from = Some(ReadFrom::After(last.position.clone()));
        }
        Ok(ReadBatch {
            end_of_shard: cursor.ended && cursor.pending.is_empty(),
            records,
        })
    }

    /// Fetches pages until the cursor holds records, the shard ends, or the deadline.
    async fn fill(
        &self,
        shard: &ShardId,
        from: &ReadFrom,
        cursor: &mut Cursor,
        limit: usize,
        deadline: Instant,
    ) -> Result<(), SourceError> {
        let mut refreshed = false;
        while cursor.pending.is_empty() && !cursor.ended {
            let iterator = match cursor.iterator.take() {
                Some(iterator) => iterator,
                None => self
                    .api
                    .iterator(shard, &IteratorStart::from(from))
                    .await
                    .map_err(|f| source_error(shard, from, f))?,
            };
            let page = match self
                .api
                .records(shard, &iterator, limit.min(self.api.max_limit()))
                .await
            {
                Ok(page) => page,
                Err(failure) if failure.is("ExpiredIteratorException") && !refreshed => {
                    // The cursor's position is still `from` (nothing was handed out since
                    // the iterator was made), so a new iterator after it loses nothing.
                    tracing::debug!(%shard, "shard iterator expired; getting a new one");
                    refreshed = true;
                    continue;
                }
                Err(failure) => return Err(source_error(shard, from, failure)),
            };
            cursor.pending.extend(page.records);
            match page.next {
                Some(next) => cursor.iterator = Some(next),
                None => cursor.ended = true,
            }
            if !cursor.pending.is_empty() || cursor.ended {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if page.caught_up {
                tokio::time::sleep((deadline - now).min(self.poll_interval)).await;
            }
        }
        Ok(())
    }

    /// The newest position in the shard, found by reading to its end from where the last
    /// call stopped (neither API can tell it otherwise). The first call on a long shard
    /// reads it all; later calls read only what is new.
    pub(crate) async fn latest_position(
        &self,
        shard: &ShardId,
    ) -> Result<Option<Position>, SourceError> {
        let tail = slot(&self.tails, shard);
        let mut tail = tail.lock().await;
        let from = tail
            .newest
            .clone()
            .map_or(ReadFrom::TrimHorizon, ReadFrom::After);
        for _ in 0..MAX_TAIL_PAGES {
            let iterator = match tail.iterator.take() {
                Some(iterator) => iterator,
                None => self
                    .api
                    .iterator(shard, &IteratorStart::from(&from))
                    .await
                    .map_err(|f| source_error(shard, &from, f))?,
            };
            let page = match self
                .api
                .records(shard, &iterator, self.api.max_limit())
                .await
            {
                Ok(page) => page,
                Err(failure) if failure.is("ExpiredIteratorException") => continue,
                Err(failure) => return Err(source_error(shard, &from, failure)),
            };
            if let Some(last) = page.last_position {
                tail.newest = Some(last);
            }
            tail.iterator = page.next;
            if page.caught_up || tail.iterator.is_none() {
                return Ok(tail.newest.clone());
            }
        }
        Err(SourceError::Transient(format!(
            "shard {shard} is still being read to find its newest record; try again"
        )))
    }
}

/// Maps a stream API failure to the engine's error contract.
pub(crate) fn source_error(shard: &ShardId, from: &ReadFrom, failure: ApiFailure) -> SourceError {
    if failure.is("TrimmedDataAccessException") {
        return SourceError::Trimmed {
            shard: shard.clone(),
            position: match from {
                ReadFrom::After(p) => p.clone(),
                ReadFrom::TrimHorizon => Position("TRIM_HORIZON".into()),
            },
        };
    }
    if failure.is("ResourceNotFoundException") {
        return SourceError::Fatal(format!(
            "shard {shard} or its stream no longer exists; check the stream name and that the stream was not deleted ({})",
            failure.message
        ));
    }
    if failure.retryable {
        SourceError::Transient(failure.message)
    } else {
        SourceError::Fatal(failure.message)
    }
}

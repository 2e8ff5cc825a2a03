//! The harness of the use-case tests: a [`Service`] over test doubles of its ports.
//!
//! - [`MemoryPrimary`]: the primary store as a map. Versions are one global sequence, so
//!   they strictly increase on every change of an item (a delete included) and never go
//!   back when an item is deleted and created again, as the port's contract asks.
//!   Conditions are checked exactly. A failure or a competing writer can be injected
//!   before a write.
//! - [`Feed`]: what replication does. Every accepted write becomes a
//!   [`ChangeRecord`] applied to the real embedded index in a tempdir, either at once
//!   ([`Delivery::Immediate`]) or held until the test releases it ([`Delivery::Held`]),
//!   so that "not yet consistent" is as testable as read-your-writes.
//! - [`FeedVisibility`]: read-your-writes over the feed: a write is shown once searches
//!   see its item at its version and no change committed up to it is still unapplied.
//! - [`TestClock`]: a settable clock.

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tempfile::TempDir;
use tsunagu_domain::{
    ActionType, ActivityLog, ChangeKind, ChangeRecord, Company, Deal, DealStage, Entity, Image,
    ItemKey, Position, ShardId, Version,
};
use tsunagu_embedded_index::{ActivityIndex, IndexOptions};
use tsunagu_engine::ports::Sink;
use tsunagu_service::ports::{
    Clock, Committed, Expect, PrimaryStore, SearchIndex, WriteRejected, WriteVisibility,
};
use tsunagu_service::usecases::activities::{ActivityPatch, NewActivity};
use tsunagu_service::usecases::companies::{CompanyPatch, NewCompany};
use tsunagu_service::usecases::deals::{DealPatch, NewDeal};
use tsunagu_service::{ConsistencyToken, Service, ServiceError, ServiceOptions, TenantId, Written};

/// Locks a mutex of the harness; a poisoned one means a test already panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A clock the test sets and moves.
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *lock(&self.0) = now;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.0);
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

/// When the feed applies an accepted write to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Before the write returns: every search sees every write.
    Immediate,
    /// When the test calls [`Feed::release_all`] (or [`Feed::release`]).
    Held,
}

/// Replication from the in-memory primary to the index, under the test's control.
pub struct Feed {
    pub index: Arc<ActivityIndex>,
    state: Mutex<FeedState>,
}

struct FeedState {
    delivery: Delivery,
    /// Held records, in commit order.
    held: VecDeque<ChangeRecord>,
    /// Versions committed but not yet applied (held or being applied).
    unapplied: BTreeSet<u64>,
}

impl Feed {
    fn new(index: Arc<ActivityIndex>) -> Self {
        Self {
            index,
            state: Mutex::new(FeedState {
                delivery: Delivery::Immediate,
                held: VecDeque::new(),
                unapplied: BTreeSet::new(),
            }),
        }
    }

    pub fn set_delivery(&self, delivery: Delivery) {
        lock(&self.state).delivery = delivery;
    }

    /// How many accepted writes wait to be released.
    pub fn held(&self) -> usize {
        lock(&self.state).held.len()
    }

    /// Applies every held write, in commit order.
    pub async fn release_all(&self) {
        let n = self.held();
        self.release(n).await;
    }

    /// Applies the `n` oldest held writes.
    pub async fn release(&self, n: usize) {
        let batch: Vec<ChangeRecord> = {
            let mut state = lock(&self.state);
            let n = n.min(state.held.len());
            state.held.drain(..n).collect()
        };
        self.apply(batch).await;
    }

    /// Called by the primary under its lock as it commits `record`, so that the held
    /// queue and the unapplied set follow commit order; returns the record when it is to
    /// be applied at once (by [`Feed::apply`], outside the primary's lock).
    fn accept(&self, record: ChangeRecord) -> Option<ChangeRecord> {
        let mut state = lock(&self.state);
        state.unapplied.insert(record.version.0);
        match state.delivery {
            Delivery::Immediate => Some(record),
            Delivery::Held => {
                state.held.push_back(record);
                None
            }
        }
    }

    async fn apply(&self, records: Vec<ChangeRecord>) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.index.apply(&records).await {
            panic!("the index refused changes of the in-memory primary: {e:?}");
        }
        let mut state = lock(&self.state);
        for r in &records {
            state.unapplied.remove(&r.version.0);
        }
    }

    /// Whether any change committed at or before `version` is not applied yet.
    fn pending_through(&self, version: Version) -> bool {
        lock(&self.state)
            .unapplied
            .first()
            .is_some_and(|&v| v <= version.0)
    }
}

/// Read-your-writes over the [`Feed`].
pub struct FeedVisibility(pub Arc<Feed>);

#[async_trait]
impl WriteVisibility for FeedVisibility {
    async fn shows(&self, write: &ConsistencyToken) -> Result<bool, ServiceError> {
        let shown = self
            .0
            .index
            .visible_version(&write.key)
            .await?
            .is_some_and(|v| v >= write.version);
        Ok(shown && !self.0.pending_through(write.version))
    }
}

/// Which operation an injected failure hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Put,
    Delete,
}

/// How a competing writer changes an entity.
type Change = Box<dyn Fn(&mut Entity) + Send>;

/// A write another client commits to the item just before the next put or delete of
/// it: the item's entity changed by `change` (or deleted when `change` is `None`).
pub struct Interference {
    pub key: ItemKey,
    /// How many of the next writes of `key` are preceded by a competing write.
    pub times: usize,
    pub change: Option<Change>,
}

/// The primary store in memory (see the module docs).
pub struct MemoryPrimary {
    clock: Arc<TestClock>,
    feed: Arc<Feed>,
    state: Mutex<PrimaryState>,
}

#[derive(Default)]
struct PrimaryState {
    items: HashMap<ItemKey, (Version, Entity)>,
    /// The last version handed out (global, so versions never go back).
    seq: u64,
    last_commit_us: i64,
    failures: VecDeque<(Op, String)>,
    interference: Option<Interference>,
    /// Every change committed, in order.
    log: Vec<ChangeRecord>,
    /// How many puts and deletes were attempted (accepted or not).
    write_attempts: usize,
}

impl PrimaryState {
    /// Commits a change: the next version, a commit time after the last one, a record.
    fn commit(
        &mut self,
        now: DateTime<Utc>,
        key: &ItemKey,
        entity: Option<Entity>,
    ) -> (Committed, ChangeRecord) {
        self.seq += 1;
        let version = Version(self.seq);
        let committed_at_us = now.timestamp_micros().max(self.last_commit_us + 1);
        self.last_commit_us = committed_at_us;
        let old = match &entity {
            Some(e) => self.items.insert(key.clone(), (version, e.clone())),
            None => self.items.remove(key),
        };
        let kind = match (&old, &entity) {
            (_, None) => ChangeKind::Remove,
            (None, Some(_)) => ChangeKind::Insert,
            (Some(_), Some(_)) => ChangeKind::Modify,
        };
        let record = ChangeRecord {
            shard: ShardId("0".into()),
            position: Position(format!("{:020}", version.0)),
            key: key.clone(),
            kind,
            version,
            old_image: old.map(|(v, e)| Image {
                version: v,
                body: e.to_json(),
            }),
            new_image: entity.map(|e| Image {
                version,
                body: e.to_json(),
            }),
            committed_at_us,
        };
        self.log.push(record.clone());
        (
            Committed {
                version,
                committed_at_us,
            },
            record,
        )
    }

    fn take_failure(&mut self, op: Op) -> Option<String> {
        let at = self.failures.iter().position(|(o, _)| *o == op)?;
        self.failures.remove(at).map(|(_, m)| m)
    }

    /// Commits the injected competing write of `key`, if one is due.
    fn interfere(&mut self, now: DateTime<Utc>, key: &ItemKey) -> Option<ChangeRecord> {
        let due = self
            .interference
            .as_ref()
            .is_some_and(|i| &i.key == key && i.times > 0);
        if !due {
            return None;
        }
        let (_, mut entity) = self.items.get(key).cloned()?;
        let interference = self.interference.as_mut()?;
        interference.times -= 1;
        let next = interference.change.as_ref().map(|change| {
            change(&mut entity);
            entity
        });
        Some(self.commit(now, key, next).1)
    }

    fn check(&self, key: &ItemKey, expect: Expect) -> Result<(), WriteRejected> {
        let current = self.items.get(key).map(|(v, _)| *v);
        let holds = match expect {
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        };
        if holds {
            Ok(())
        } else {
            Err(WriteRejected::Conflict { current })
        }
    }
}

impl MemoryPrimary {
    fn new(clock: Arc<TestClock>, feed: Arc<Feed>) -> Self {
        Self {
            clock,
            feed,
            state: Mutex::new(PrimaryState::default()),
        }
    }

    /// The next `op` fails with `Unavailable(message)` (once per call).
    pub fn fail_next(&self, op: Op, message: &str) {
        lock(&self.state)
            .failures
            .push_back((op, message.to_string()));
    }

    /// Another writer changes `key` just before each of the next `times` writes of it.
    pub fn interfere(
        &self,
        key: ItemKey,
        times: usize,
        change: impl Fn(&mut Entity) + Send + 'static,
    ) {
        lock(&self.state).interference = Some(Interference {
            key,
            times,
            change: Some(Box::new(change)),
        });
    }

    /// Another writer deletes `key` just before the next write of it.
    pub fn delete_before_next_write(&self, key: ItemKey) {
        lock(&self.state).interference = Some(Interference {
            key,
            times: 1,
            change: None,
        });
    }

    /// The item as stored now.
    pub fn stored(&self, key: &ItemKey) -> Option<(Version, Entity)> {
        lock(&self.state).items.get(key).cloned()
    }

    /// Every change committed so far, in order.
    pub fn log(&self) -> Vec<ChangeRecord> {
        lock(&self.state).log.clone()
    }

    pub fn write_attempts(&self) -> usize {
        lock(&self.state).write_attempts
    }

    /// Stores an entity as it is, bypassing the use cases (data a test needs as given,
    /// such as another tenant's item under a key the caller can name).
    pub async fn seed(&self, entity: Entity) -> Version {
        let now = self.clock.now();
        let (committed, now_applied) = {
            let mut state = lock(&self.state);
            let (committed, record) = state.commit(now, &entity.key(), Some(entity));
            (committed, self.feed.accept(record))
        };
        self.feed.apply(now_applied.into_iter().collect()).await;
        committed.version
    }

    async fn write(
        &self,
        op: Op,
        key: &ItemKey,
        expect: Expect,
        entity: Option<Entity>,
    ) -> Result<Committed, WriteRejected> {
        let now = self.clock.now();
        let (outcome, records) = {
            let mut state = lock(&self.state);
            state.write_attempts += 1;
            if let Some(message) = state.take_failure(op) {
                return Err(WriteRejected::Unavailable(message));
            }
            let mut records: Vec<ChangeRecord> = state
                .interfere(now, key)
                .and_then(|r| self.feed.accept(r))
                .into_iter()
                .collect();
            let outcome = state.check(key, expect).map(|()| {
                let unchanged = matches!(
                    (state.items.get(key), &entity),
                    (Some((_, old)), Some(new)) if old == new
                );
                if unchanged {
                    // A put of the same body changes nothing and commits nothing.
                    let version = state.items.get(key).map_or(Version(0), |(v, _)| *v);
                    Committed {
                        version,
                        committed_at_us: 0,
                    }
                } else {
                    let (committed, record) = state.commit(now, key, entity);
                    records.extend(self.feed.accept(record));
                    committed
                }
            });
            (outcome, records)
        };
        self.feed.apply(records).await;
        outcome
    }
}

#[async_trait]
impl PrimaryStore for MemoryPrimary {
    async fn get(&self, key: &ItemKey) -> Result<Option<(Version, Entity)>, ServiceError> {
        let mut state = lock(&self.state);
        if let Some(message) = state.take_failure(Op::Get) {
            return Err(ServiceError::Unavailable(message));
        }
        Ok(state.items.get(key).cloned())
    }

    async fn put(&self, entity: &Entity, expect: Expect) -> Result<Committed, WriteRejected> {
        self.write(Op::Put, &entity.key(), expect, Some(entity.clone()))
            .await
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<Committed, WriteRejected> {
        self.write(Op::Delete, key, expect, None).await
    }
}

/// A service over the doubles, with the handles a test needs to steer them.
pub struct Harness {
    pub service: Service,
    pub primary: Arc<MemoryPrimary>,
    pub feed: Arc<Feed>,
    pub clock: Arc<TestClock>,
    _dir: TempDir,
}

/// 2026-12-01T09:00:00Z: "now" in the tests unless they move the clock.
pub fn start_of_test() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

/// How long a search with a token waits in these tests before `NotConsistentYet`.
pub const CONSISTENCY_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = IndexOptions {
            // The least tantivy accepts for one indexing thread: tests run in parallel.
            writer_memory_bytes: 20 << 20,
            ..IndexOptions::default()
        };
        let index = Arc::new(ActivityIndex::open(dir.path(), options).expect("the index opens"));
        let clock = Arc::new(TestClock::at(start_of_test()));
        let feed = Arc::new(Feed::new(Arc::clone(&index)));
        let primary = Arc::new(MemoryPrimary::new(Arc::clone(&clock), Arc::clone(&feed)));
        let service = Service::new(
            primary.clone(),
            index,
            Arc::new(FeedVisibility(Arc::clone(&feed))),
            clock.clone(),
            ServiceOptions {
                consistency_wait: CONSISTENCY_WAIT,
            },
        );
        Self {
            service,
            primary,
            feed,
            clock,
            _dir: dir,
        }
    }
}

pub fn tenant(name: &str) -> TenantId {
    TenantId(name.to_string())
}

/// The fields named by an `Invalid` error, in order; panics on any other outcome.
pub fn invalid_fields<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> Vec<String> {
    match result {
        Err(ServiceError::Invalid(issues)) => issues.into_iter().map(|i| i.field).collect(),
        other => panic!("expected invalid input, got {other:?}"),
    }
}

/// Asserts a `NotFound` of `what` `id`.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(result: Result<T, ServiceError>, what: &str, id: &str) {
    match result {
        Err(ServiceError::NotFound { what: w, id: i }) if w == what && i == id => {}
        other => panic!("expected {what} {id:?} not found, got {other:?}"),
    }
}

/// Fixtures: records made through the use cases, as a caller would.
impl Harness {
    pub async fn company(&self, t: &TenantId, name: &str, address: &str) -> Company {
        self.company_in(t, name, address, None).await
    }

    pub async fn company_in(
        &self,
        t: &TenantId,
        name: &str,
        address: &str,
        industry: Option<&str>,
    ) -> Company {
        self.service
            .create_company(
                t,
                NewCompany {
                    name: name.into(),
                    address: address.into(),
                    prefecture: None,
                    industry: industry.map(str::to_string),
                },
            )
            .await
            .expect("the company is created")
            .value
    }

    pub async fn deal(&self, t: &TenantId, company_id: &str, title: &str, tags: &[&str]) -> Deal {
        self.service
            .create_deal(t, new_deal(company_id, title, tags))
            .await
            .expect("the deal is created")
            .value
    }

    pub async fn activity(
        &self,
        t: &TenantId,
        deal_id: &str,
        input: NewActivity,
    ) -> Written<ActivityLog> {
        self.service
            .record_activity(t, deal_id, input)
            .await
            .expect("the activity is recorded")
    }
}

pub fn new_deal(company_id: &str, title: &str, tags: &[&str]) -> NewDeal {
    NewDeal {
        company_id: company_id.into(),
        title: title.into(),
        owner_id: "owner-1".into(),
        stage: DealStage::Lead,
        amount: 1_000_000,
        expected_close_date: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// An activity of `action` by `user` at `at`, without result, memo or tags.
pub fn approach(action: ActionType, user: &str, at: DateTime<Utc>) -> NewActivity {
    NewActivity {
        user_id: user.into(),
        action,
        result: None,
        occurred_at: at,
        memo: String::new(),
        tags: Vec::new(),
    }
}

/// A call `days` days before the test's start.
pub fn call_days_ago(days: i64) -> NewActivity {
    approach(
        ActionType::Call,
        "u1",
        start_of_test() - Duration::days(days),
    )
}

/// A visit `days` days before the test's start that ended with `result`.
pub fn visit_days_ago(days: i64, result: &str) -> NewActivity {
    NewActivity {
        result: Some(result.into()),
        ..approach(
            ActionType::Visit,
            "u1",
            start_of_test() - Duration::days(days),
        )
    }
}

/// An empty patch at `version`.
pub fn activity_patch(version: Version) -> ActivityPatch {
    ActivityPatch {
        version: version.0,
        user_id: None,
        action: None,
        result: None,
        occurred_at: None,
        memo: None,
        tags: None,
    }
}

pub fn deal_patch(version: Version) -> DealPatch {
    DealPatch {
        version: version.0,
        title: None,
        owner_id: None,
        stage: None,
        amount: None,
        expected_close_date: None,
        tags: None,
    }
}

pub fn company_patch(version: Version) -> CompanyPatch {
    CompanyPatch {
        version: version.0,
        name: None,
        address: None,
        prefecture: None,
        industry: None,
    }
}

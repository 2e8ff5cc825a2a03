//! Sharing one stream's shards between several worker processes through leases.
//!
//! Every worker of a consumer runs the same loop (the consumer runner calls
//! [`LeaseCoordinator::tick`] every `renew_interval`):
//!
//! 1. **Renew** the leases it holds. A lease that cannot be renewed was stolen (or expired
//!    and was taken): its shard worker is stopped at once. A renewal that fails because
//!    the lease store is down keeps the shard running until the lease's own expiry.
//! 2. **Balance** ([`plan`], a pure function): count the live workers (owners of
//!    unexpired leases, itself included); the fair share is the eligible leases divided by
//!    that count, rounded up. Below its share, a worker takes free or expired leases, and
//!    if none is left, steals **one** lease per round from the most loaded worker that
//!    holds at least two more than itself. Taking is a conditional write on the lease counter, so
//!    two workers racing for one lease cannot both win.
//! 3. A lease is **eligible** only when its shard is not finished and its parent (if the
//!    parent still has a lease) is finished: children of a split or merge start only once
//!    their parents were read to the end, whichever worker read them.
//!
//! Checkpoints live in the lease and only its owner can move them ([`LeasedCheckpoints`]),
//! so a worker that lost a lease cannot record progress over the new owner's. While the
//! old owner drains its in-flight batches, both may apply the same records for a moment:
//! sinks are version-guarded, so that replays nothing backwards and loses nothing.
//! On graceful shutdown a worker drains its shards, saves their checkpoints and releases
//! its leases, so the others take them over at their next tick instead of waiting for the
//! leases to expire.

use crate::ports::{CheckpointStore, Lease, LeaseStore, StateError};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tsunagu_domain::{Position, ShardId};

/// How a worker takes part in sharing a consumer's shards.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Unique among the workers of a stream (default: host name and process id).
    pub worker_id: String,
    /// How long a lease lasts without renewal; a crashed worker's shards move after this.
    pub lease_duration: Duration,
    /// How often leases are renewed and balanced (well below `lease_duration`).
    pub renew_interval: Duration,
}

impl LeaseOptions {
    pub fn new(worker_id: impl Into<String>, lease_duration: Duration) -> Self {
        Self {
            worker_id: worker_id.into(),
            lease_duration,
            renew_interval: lease_duration / 3,
        }
    }
}

/// A default worker id: the host name and the process id.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What one balancing round decided for this worker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Free or expired leases to take, with the counter seen.
    pub take: Vec<(ShardId, u64)>,
    /// A lease to steal from an overloaded worker, with the counter seen.
    pub steal: Option<(ShardId, u64)>,
}

/// Whether a lease is held by someone at `now_ms`.
fn is_live(lease: &Lease, now_ms: i64) -> bool {
    lease.owner.is_some() && lease.expires_at_ms > now_ms
}

/// The leases of a consumer whose shards may be read now: not finished, and whose parent
/// is finished or has no lease (aged out of the stream, nothing left to read).
pub fn eligible<'a>(leases: &'a [Lease]) -> impl Iterator<Item = &'a Lease> + 'a {
    let finished: HashMap<&ShardId, bool> = leases.iter().map(|l| (&l.shard, l.finished)).collect();
    leases.iter().filter(move |l| {
        !l.finished
            && l.parent
                .iter()
                .chain(l.adjacent_parent.iter())
                .all(|p| finished.get(p).copied().unwrap_or(true))
    })
}

/// Decides which leases `me` takes or steals this round (see the module doc).
pub fn plan(leases: &[Lease], me: &str, now_ms: i64) -> Plan {
    let eligible: Vec<&Lease> = eligible(leases).collect();
    if eligible.is_empty() {
        return Plan::default();
    }
    let mut load: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    load.insert(me, Vec::new());
    for lease in leases.iter().filter(|l| is_live(l, now_ms)) {
        if let Some(owner) = &lease.owner {
            load.entry(owner.as_str()).or_default().push(lease);
        }
    }
    // Leases of finished shards do not count towards anyone's load.
    let eligible_ids: HashSet<&ShardId> = eligible.iter().map(|l| &l.shard).collect();
    for held in load.values_mut() {
        held.retain(|l| eligible_ids.contains(&l.shard));
    }
    let workers = load.len();
    let share = eligible.len().div_ceil(workers);
    let mine = load.get(me).map_or(0, Vec::len);
    if mine >= share {
        return Plan::default();
    }
    let mut want = share - mine;
    let mut plan = Plan::default();
    for lease in &eligible {
        if want == 0 {
            break;
        }
        if !is_live(lease, now_ms) {
            plan.take.push((lease.shard.clone(), lease.counter));
            want -= 1;
        }
    }
    if want > 0 {
        // Steal one from the most loaded worker holding at least two more (ties: the
        // lowest name, so every worker agrees on the victim). Each steal narrows the gap,
        // so rounds settle with loads at most one apart.
        let victim = load
            .iter()
            .filter(|(owner, held)| **owner != me && held.len() >= share - want + 2)
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)));
        if let Some((_, held)) = victim {
            if let Some(lease) = held.iter().min_by(|a, b| a.shard.cmp(&b.shard)) {
                plan.steal = Some((lease.shard.clone(), lease.counter));
            }
        }
    }
    plan
}

/// Checkpoints kept in the leases: only the lease's owner can save one. A save refused
/// because the lease moved stops that shard's worker at once, without waiting for the
/// next renewal round to notice.
pub struct LeasedCheckpoints {
    pub store: Arc<dyn LeaseStore>,
    pub worker: String,
    /// The stop switch of each running shard worker, by consumer and shard.
    stops: std::sync::Mutex<HashMap<(String, ShardId), tokio_util::sync::CancellationToken>>,
}

impl LeasedCheckpoints {
    pub fn new(store: Arc<dyn LeaseStore>, worker: String) -> Self {
        Self {
            store,
            worker,
            stops: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Registers the stop switch of a shard worker that saves through this store.
    pub(crate) fn register(
        &self,
        consumer: &str,
        shard: &ShardId,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if let Ok(mut stops) = self.stops.lock() {
            stops.retain(|_, token| !token.is_cancelled());
            stops.insert((consumer.to_string(), shard.clone()), stop);
        }
    }
}

#[async_trait]
impl CheckpointStore for LeasedCheckpoints {
    async fn load(&self, consumer: &str) -> Result<HashMap<ShardId, Position>, StateError> {
        Ok(self
            .store
            .leases(consumer)
            .await?
            .into_iter()
            .filter_map(|l| Some((l.shard, l.checkpoint?)))
            .collect())
    }

    async fn save(
        &self,
        consumer: &str,
        shard: &ShardId,
        position: &Position,
    ) -> Result<(), StateError> {
        if self
            .store
            .checkpoint(consumer, shard, &self.worker, Some(position), false)
            .await?
        {
            Ok(())
        } else {
            let stop = self
                .stops
                .lock()
                .ok()
                .and_then(|mut stops| stops.remove(&(consumer.to_string(), shard.clone())));
            if let Some(stop) = stop {
                tracing::info!(%consumer, %shard, worker = %self.worker, "lease moved to another worker; stopping the shard");
                stop.cancel();
            }
            Err(StateError(format!(
                "lease of shard {shard} is no longer held by worker {}; checkpoint not saved",
                self.worker
            )))
        }
    }
}

/// The leases one worker holds for one consumer, and the rounds that keep them.
pub(crate) struct LeaseCoordinator {
    pub store: Arc<dyn LeaseStore>,
    pub options: LeaseOptions,
    pub consumer: Arc<str>,
    /// Held leases and when each expires unless renewed.
    pub held: HashMap<ShardId, Lease>,
}

/// What changed in one round.
#[derive(Debug, Default)]
pub(crate) struct TickOutcome {
    /// Leases this worker no longer holds: stop their shard workers.
    pub lost: Vec<ShardId>,
    /// Every lease of the consumer as last read (for starting shards and parent checks).
    pub leases: Vec<Lease>,
}

impl LeaseCoordinator {
    /// Renews, then balances. Errors of the lease store are logged and retried next round.
    pub async fn tick(&mut self) -> TickOutcome {
        let mut outcome = TickOutcome::default();
        let now = now_ms();
        let expires = now + self.options.lease_duration.as_millis() as i64;
        let held: Vec<ShardId> = self.held.keys().cloned().collect();
        for shard in held {
            match self
                .store
                .renew(&self.consumer, &shard, &self.options.worker_id, expires)
                .await
            {
                Ok(Some(lease)) => {
                    self.held.insert(shard, lease);
                }
                Ok(None) => {
                    tracing::info!(consumer = %self.consumer, %shard, worker = %self.options.worker_id, "lease lost to another worker; stopping the shard");
                    self.held.remove(&shard);
                    outcome.lost.push(shard);
                }
                Err(error) => {
                    let lapsed = self.held.get(&shard).is_none_or(|l| l.expires_at_ms <= now);
                    tracing::warn!(consumer = %self.consumer, %shard, %error, lapsed, "renewing a lease failed");
                    if lapsed {
                        self.held.remove(&shard);
                        outcome.lost.push(shard);
                    }
                }
            }
        }
        let leases = match self.store.leases(&self.consumer).await {
            Ok(leases) => leases,
            Err(error) => {
                tracing::warn!(consumer = %self.consumer, %error, "reading leases failed; will retry");
                return outcome;
            }
        };
        let plan = plan(&leases, &self.options.worker_id, now);
        let steal = plan.steal.iter().map(|s| (s.clone(), true));
        for ((shard, counter), stolen) in plan.take.into_iter().map(|t| (t, false)).chain(steal) {
            match self
                .store
                .take(
                    &self.consumer,
                    &shard,
                    &self.options.worker_id,
                    counter,
                    expires,
                )
                .await
            {
                Ok(Some(lease)) => {
                    tracing::info!(consumer = %self.consumer, %shard, worker = %self.options.worker_id, stolen, "lease taken");
                    self.held.insert(shard, lease);
                }
                Ok(None) => {} // Another worker was faster.
                Err(error) => {
                    tracing::warn!(consumer = %self.consumer, %shard, %error, "taking a lease failed")
                }
            }
        }
        // What was just taken or renewed is newer than the list read above.
        let mut leases = leases;
        for lease in &mut leases {
            if let Some(held) = self.held.get(&lease.shard) {
                *lease = held.clone();
            }
        }
        outcome.leases = leases;
        outcome
    }

    /// Gives every held lease up (after the shards drained and saved their checkpoints).
    pub async fn release_all(&mut self) {
        for (shard, _) in self.held.drain() {
            if let Err(error) = self
                .store
                .release(&self.consumer, &shard, &self.options.worker_id)
                .await
            {
                tracing::warn!(consumer = %self.consumer, %shard, %error, "releasing a lease failed; it moves when it expires");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lease(shard: &str, owner: Option<&str>, expires: i64) -> Lease {
        Lease {
            shard: ShardId(shard.into()),
            parent: None,
            adjacent_parent: None,
            owner: owner.map(String::from),
            counter: 1,
            expires_at_ms: expires,
            checkpoint: None,
            finished: false,
        }
    }

    #[test]
    fn a_lone_worker_takes_everything() {
        let leases: Vec<Lease> = (0..4).map(|i| lease(&i.to_string(), None, 0)).collect();
        let p = plan(&leases, "a", 1_000);
        assert_eq!(p.take.len(), 4);
        assert!(p.steal.is_none());
    }

    #[test]
    fn a_new_worker_steals_one_at_a_time_from_the_busiest() {
        let leases: Vec<Lease> = (0..4)
            .map(|i| lease(&i.to_string(), Some("a"), 10_000))
            .collect();
        let p = plan(&leases, "b", 1_000);
        assert!(p.take.is_empty());
        assert_eq!(p.steal.map(|s| s.0), Some(ShardId("0".into())));
    }

    #[test]
    fn expired_leases_are_taken_before_stealing() {
        let mut leases: Vec<Lease> = (0..4)
            .map(|i| lease(&i.to_string(), Some("a"), 10_000))
            .collect();
        leases[3].owner = Some("dead".into());
        leases[3].expires_at_ms = 500;
        let p = plan(&leases, "b", 1_000);
        assert_eq!(p.take, vec![(ShardId("3".into()), 1)]);
        // Its share is two: with the expired one it holds one, `a` three.
        assert_eq!(p.steal.map(|s| s.0), Some(ShardId("0".into())));
    }

    #[test]
    fn children_wait_for_their_parents() {
        let mut child = lease("child", None, 0);
        child.parent = Some(ShardId("parent".into()));
        let parent = lease("parent", None, 0);
        let p = plan(&[parent.clone(), child.clone()], "a", 1_000);
        assert_eq!(p.take, vec![(ShardId("parent".into()), 1)]);
        let done = Lease {
            finished: true,
            ..parent
        };
        let p = plan(&[done, child], "a", 1_000);
        assert_eq!(p.take, vec![(ShardId("child".into()), 1)]);
    }

    /// Simulates live workers that apply their plans in turn (a take succeeds only on the
    /// counter it saw), starting from any assignment, dead workers' included. After
    /// enough rounds every shard has a live owner and loads differ by at most one.
    fn settle(shards: usize, workers: usize, owners: Vec<Option<usize>>) -> Vec<Lease> {
        let mut leases: Vec<Lease> = (0..shards)
            .map(|i| {
                let owner = owners.get(i).copied().flatten();
                // Owners beyond `workers` are dead: their leases have expired.
                let expires = if owner.is_some_and(|w| w >= workers) {
                    500
                } else {
                    10_000
                };
                let name = owner.map(|w| format!("w{w}"));
                Lease {
                    counter: 0,
                    ..lease(&format!("s{i:02}"), name.as_deref(), expires)
                }
            })
            .collect();
        for _round in 0..(shards * workers + 4) {
            for w in 0..workers {
                let me = format!("w{w}");
                let p = plan(&leases, &me, 1_000);
                for (shard, seen) in p.take.into_iter().chain(p.steal) {
                    if let Some(l) = leases.iter_mut().find(|l| l.shard == shard) {
                        if l.counter == seen {
                            l.owner = Some(me.clone());
                            l.counter += 1;
                            l.expires_at_ms = 10_000;
                        }
                    }
                }
            }
        }
        leases
    }

    proptest! {
        #[test]
        fn leases_settle_balanced(
            shards in 1usize..24,
            workers in 1usize..6,
            owners in proptest::collection::vec(proptest::option::of(0usize..8), 0..24),
        ) {
            let leases = settle(shards, workers, owners);
            let mut load: BTreeMap<String, usize> = BTreeMap::new();
            for l in &leases {
                prop_assert!(l.owner.is_some(), "shard {} has no owner", l.shard);
                *load.entry(l.owner.clone().unwrap_or_default()).or_default() += 1;
            }
            prop_assert!(load.len() <= workers, "a dead worker still holds a lease: {load:?}");
            let live: Vec<usize> = (0..workers)
                .map(|w| load.get(&format!("w{w}")).copied().unwrap_or(0))
                .collect();
            let share = shards.div_ceil(load.len());
            for (w, n) in live.iter().enumerate() {
                prop_assert!(*n <= share, "worker w{w} holds {n} > share {share}: {load:?}");
            }
            if let (Some(min), Some(max)) = (live.iter().min(), load.values().max()) {
                prop_assert!(max - min <= 1, "loads not balanced: {load:?} (min {min:?})");
            }
        }
    }
}

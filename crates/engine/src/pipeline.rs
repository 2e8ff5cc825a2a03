//! The engine's entry point: start consumers over a change source, watch them, stop them.

use crate::backfill::{
    is_whole_table_progress, shards_as_segments, whole_table_progress_id, AfterBackfill, Backfill,
    BackfillOptions, BackfillProgressStore,
};
use crate::config::{ConfigError, ConsumerConfig, RetentionPolicy};
use crate::lease::{LeaseCoordinator, LeaseOptions, LeasedCheckpoints};
use crate::ports::{
    ApplyObserver, ChangeSource, CheckpointStore, DeadLetterQueue, ItemScanner, Lease, LeaseStore,
    ReadFrom, ShardInfo, Sink, SourceError, StartingPosition, StateError,
};
use crate::shard::ShardWorker;
use crate::status::{ConsumerStatus, ShardState, ShardStats};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tsunagu_domain::ShardId;

/// How often a consumer asks the source for new shards (DynamoDB Streams and Kinesis
/// split shards; the embedded store's never change).
const SHARD_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);

/// How long a whole-table backfill after falling behind retention waits for other shards
/// of the consumer to fall behind too: a consumer that was away too long finds all its
/// shards trimmed within moments, and one scan of the table then serves them all.
const RECOVERY_GATHER: Duration = Duration::from_millis(500);

/// Attempts at the clean-up after a recovery's backfill before it is left to
/// `tsunagu reconcile --repair`.
const AFTER_BACKFILL_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The ports every consumer of one stream shares.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn ChangeSource>,
    checkpoints: Arc<dyn CheckpointStore>,
    dlq: Arc<dyn DeadLetterQueue>,
    /// What a shard that fell behind retention is backfilled from, if anything.
    backfill: Option<(Arc<dyn ItemScanner>, Arc<dyn BackfillProgressStore>)>,
    /// What runs after such a backfill (removing what was deleted meanwhile).
    after_backfill: Option<Arc<dyn AfterBackfill>>,
    observers: Vec<Arc<dyn ApplyObserver>>,
    /// When set, shards are shared with other workers through leases (and checkpoints
    /// live in them).
    leases: Option<(Arc<dyn LeaseStore>, LeaseOptions, Arc<LeasedCheckpoints>)>,
}

/// A consumer to start: its knobs and its sink.
pub struct Consumer {
    pub config: ConsumerConfig,
    pub sink: Arc<dyn Sink>,
}

impl Engine {
    pub fn new(
        source: Arc<dyn ChangeSource>,
        checkpoints: Arc<dyn CheckpointStore>,
        dlq: Arc<dyn DeadLetterQueue>,
    ) -> Self {
        Self {
            source,
            checkpoints,
            dlq,
            backfill: None,
            after_backfill: None,
            observers: Vec::new(),
            leases: None,
        }
    }

    /// Shares the stream's shards with other workers (processes) through leases: this
    /// worker reads only the shards it holds a lease on, and checkpoints live in the
    /// leases instead of the checkpoint store (see [`crate::lease`]).
    pub fn with_leases(mut self, store: Arc<dyn LeaseStore>, options: LeaseOptions) -> Self {
        let checkpoints = Arc::new(LeasedCheckpoints::new(
            Arc::clone(&store),
            options.worker_id.clone(),
        ));
        self.checkpoints = checkpoints.clone();
        self.leases = Some((store, options, checkpoints));
        self
    }

    /// Lets consumers whose checkpoint fell out of the stream's retention recover by
    /// backfilling the shard from the primary's items (per their `on_retention_exceeded`).
    pub fn with_backfill(
        mut self,
        scanner: Arc<dyn ItemScanner>,
        progress: Arc<dyn BackfillProgressStore>,
    ) -> Self {
        self.backfill = Some((scanner, progress));
        self
    }

    /// Runs `hook` after each shard backfilled because it fell behind retention.
    pub fn with_after_backfill(mut self, hook: Arc<dyn AfterBackfill>) -> Self {
        self.after_backfill = Some(hook);
        self
    }

    /// Adds an observer told about every acknowledged and dead-lettered record.
    pub fn with_observer(mut self, observer: Arc<dyn ApplyObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Starts every consumer (fan-out: each reads the whole stream with its own
    /// checkpoints, lanes and dead letters). Returns once all have loaded their
    /// checkpoints and started their shards.
    pub async fn start(&self, consumers: Vec<Consumer>) -> Result<Pipeline, EngineError> {
        let mut names = HashSet::new();
        for (i, c) in consumers.iter().enumerate() {
            c.config.validate(&format!("consumers[{i}]"))?;
            if !names.insert(c.config.name.clone()) {
                return Err(ConfigError {
                    field: format!("consumers[{i}].name"),
                    message: format!(
                        "{:?} is used by two consumers; names must be unique",
                        c.config.name
                    ),
                }
                .into());
            }
        }
        let cancel = CancellationToken::new();
        let alive = Arc::new(());
        let mut tasks = JoinSet::new();
        let mut statuses = Vec::new();
        let observers: Arc<[Arc<dyn ApplyObserver>]> = self.observers.clone().into();
        for consumer in consumers {
            let shards = Arc::new(Mutex::new(Vec::<Arc<ShardStats>>::new()));
            let runner = ConsumerRunner {
                engine: self.clone(),
                observers: Arc::clone(&observers),
                name: Arc::from(consumer.config.name.as_str()),
                config: Arc::new(consumer.config),
                sink: consumer.sink,
                shards: Arc::clone(&shards),
                cancel: cancel.clone(),
                alive: Arc::clone(&alive),
            };
            let workers = runner.start_known_shards().await?;
            statuses.push((runner.name.to_string(), shards));
            tasks.spawn(runner.run(workers));
        }
        Ok(Pipeline {
            cancel,
            tasks,
            statuses,
            alive,
        })
    }
}

/// Running consumers. Dropping it without [`Pipeline::shutdown`] aborts every task at
/// once, like a crash: nothing unacknowledged is checkpointed, so a restart replays it.
pub struct Pipeline {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    statuses: Vec<(String, SharedShardStats)>,
    /// One clone per task that can deliver records: when only this one is left, nothing
    /// of the pipeline runs any more.
    alive: Arc<()>,
}

/// The counters of a consumer's shard workers, growing as shards are discovered.
type SharedShardStats = Arc<Mutex<Vec<Arc<ShardStats>>>>;

impl Pipeline {
    /// Stops reading, lets in-flight batches finish (their retries included), saves
    /// checkpoints, and returns when every task has ended.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Like [`Pipeline::shutdown`], but gives up after `grace`: what is still in flight
    /// then is not acknowledged and is replayed after the next start. Returns whether the
    /// drain completed in time.
    pub async fn shutdown_within(mut self, grace: std::time::Duration) -> bool {
        self.cancel.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "pipeline did not drain in time; aborting in-flight work"
            );
        }
        drained
    }

    /// Stops everything at once, like a crash (nothing is drained or checkpointed), and
    /// returns once no task of the pipeline can deliver a record any more. Dropping the
    /// pipeline does the same without waiting.
    pub async fn abort(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        // Tasks nested in the aborted ones stop at their next await point.
        while Arc::strong_count(&self.alive) > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    pub fn status(&self) -> Vec<ConsumerStatus> {
        self.statuses
            .iter()
            .map(|(name, shards)| ConsumerStatus {
                consumer: name.clone(),
                shards: shards
                    .lock()
                    .map(|s| s.iter().map(|s| s.snapshot()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

struct ConsumerRunner {
    engine: Engine,
    observers: Arc<[Arc<dyn ApplyObserver>]>,
    name: Arc<str>,
    config: Arc<ConsumerConfig>,
    sink: Arc<dyn Sink>,
    shards: SharedShardStats,
    cancel: CancellationToken,
    alive: Arc<()>,
}

/// How a task of a consumer ended.
enum Ended {
    Worker(ShardId, ShardState),
    Backfilled {
        shards: Vec<ShardId>,
        /// A whole-table backfill (at most one runs per consumer at a time).
        whole_table: bool,
        result: Result<(), String>,
    },
}

/// Shards behind retention that wait for a whole-table backfill, and whether one runs.
/// Whole-table backfills of a consumer run one at a time, each for every shard waiting
/// when it starts: each reads the whole table, so running one per shard would multiply
/// the reads by the shard count.
#[derive(Default)]
struct Recovery {
    /// Shared with the backfill task, which takes what gathered once it starts.
    waiting: Arc<Mutex<BTreeSet<ShardId>>>,
    running: bool,
}

/// Shard workers of one consumer and what is known of each shard.
struct Workers {
    set: JoinSet<Ended>,
    started: HashSet<ShardId>,
    finished: HashSet<ShardId>,
    known: HashMap<ShardId, ShardInfo>,
    /// Stops one shard's worker (when its lease is lost).
    stops: HashMap<ShardId, CancellationToken>,
    /// The leases this worker holds, when shards are shared.
    lease: Option<LeaseCoordinator>,
    /// Shards whose lease is known to exist.
    ensured: HashSet<ShardId>,
    recovery: Recovery,
}

impl ConsumerRunner {
    async fn start_known_shards(&self) -> Result<Workers, EngineError> {
        let mut workers = Workers {
            set: JoinSet::new(),
            started: HashSet::new(),
            finished: HashSet::new(),
            known: HashMap::new(),
            stops: HashMap::new(),
            lease: self
                .engine
                .leases
                .as_ref()
                .map(|(store, options, _)| LeaseCoordinator {
                    store: Arc::clone(store),
                    options: options.clone(),
                    consumer: Arc::clone(&self.name),
                    held: HashMap::new(),
                }),
            ensured: HashSet::new(),
            recovery: Recovery::default(),
        };
        self.discover(&mut workers).await?;
        self.lease_round(&mut workers).await;
        Ok(workers)
    }

    /// Learns the source's shards. Without leases, starts a worker for every new shard
    /// whose parents are done (or unknown: a parent that aged out of the stream has
    /// nothing left to read). With leases, makes sure every shard has one; the lease round
    /// decides what this worker reads.
    async fn discover(&self, workers: &mut Workers) -> Result<(), EngineError> {
        let shards = self.engine.source.shards().await?;
        for info in &shards {
            workers.known.insert(info.id.clone(), info.clone());
        }
        if let Some((store, _, _)) = &self.engine.leases {
            for info in &shards {
                if !workers.ensured.contains(&info.id) {
                    store.ensure(&self.name, info).await?;
                    workers.ensured.insert(info.id.clone());
                }
            }
            return Ok(());
        }
        let checkpoints = self.engine.checkpoints.load(&self.name).await?;
        for info in shards {
            if workers.started.contains(&info.id) {
                continue;
            }
            let parent_pending = info
                .parents()
                .any(|p| workers.known.contains_key(p) && !workers.finished.contains(p));
            if parent_pending {
                continue;
            }
            let start = match checkpoints.get(&info.id) {
                Some(position) => ReadFrom::After(position.clone()),
                None => self.initial_position(&info.id).await?,
            };
            self.start_worker(workers, info.id, start);
        }
        Ok(())
    }

    /// With leases: renews and balances them, stops the shards whose lease was lost and
    /// starts those newly held, from the checkpoint in the lease.
    async fn lease_round(&self, workers: &mut Workers) {
        let Some(coordinator) = workers.lease.as_mut() else {
            return;
        };
        let outcome = coordinator.tick().await;
        let held: HashSet<ShardId> = coordinator.held.keys().cloned().collect();
        for shard in &outcome.lost {
            if let Some(stop) = workers.stops.remove(shard) {
                stop.cancel();
            }
        }
        let leases: Vec<Lease> = outcome.leases;
        for lease in &leases {
            if lease.finished {
                workers.finished.insert(lease.shard.clone());
            }
        }
        for lease in leases {
            if !held.contains(&lease.shard) || workers.started.contains(&lease.shard) {
                continue;
            }
            let start = match lease.checkpoint {
                Some(position) => ReadFrom::After(position),
                None => match self.initial_position(&lease.shard).await {
                    Ok(start) => start,
                    Err(error) => {
                        tracing::warn!(consumer = %self.name, shard = %lease.shard, %error, "cannot find where to start the shard; will retry");
                        continue;
                    }
                },
            };
            self.start_worker(workers, lease.shard, start);
        }
    }

    fn start_worker(&self, workers: &mut Workers, shard: ShardId, start: ReadFrom) {
        let stats = Arc::new(ShardStats::new(shard.clone()));
        if let ReadFrom::After(p) = &start {
            stats.set_checkpoint(p.clone());
        }
        if let Ok(mut shards) = self.shards.lock() {
            // A shard restarted after a backfill or a lease hand-over gets fresh counters.
            shards.retain(|s| s.shard != shard);
            shards.push(Arc::clone(&stats));
        }
        let stop = self.cancel.child_token();
        if let Some((_, _, checkpoints)) = &self.engine.leases {
            checkpoints.register(&self.name, &shard, stop.clone());
        }
        let worker = ShardWorker {
            consumer: Arc::clone(&self.name),
            config: Arc::clone(&self.config),
            shard: shard.clone(),
            start,
            source: Arc::clone(&self.engine.source),
            sink: Arc::clone(&self.sink),
            checkpoints: Arc::clone(&self.engine.checkpoints),
            dlq: Arc::clone(&self.engine.dlq),
            observers: Arc::clone(&self.observers),
            stats,
            cancel: stop.clone(),
            alive: Arc::clone(&self.alive),
        };
        tracing::info!(consumer = %self.name, %shard, "shard worker started");
        workers.started.insert(shard.clone());
        workers.stops.insert(shard.clone(), stop);
        workers
            .set
            .spawn(async move { Ended::Worker(shard.clone(), worker.run().await) });
    }

    async fn initial_position(&self, shard: &ShardId) -> Result<ReadFrom, EngineError> {
        Ok(match self.config.starting_position {
            StartingPosition::TrimHorizon => ReadFrom::TrimHorizon,
            StartingPosition::Latest => match self.engine.source.latest_position(shard).await? {
                Some(position) => {
                    // Saved at once: a restart before the first record must not move
                    // "latest" forward and skip what was written in between.
                    self.engine
                        .checkpoints
                        .save(&self.name, shard, &position)
                        .await?;
                    ReadFrom::After(position)
                }
                None => ReadFrom::TrimHorizon,
            },
        })
    }

    async fn run(self, mut workers: Workers) {
        let mut discovery = tokio::time::interval(SHARD_DISCOVERY_INTERVAL);
        discovery.tick().await;
        let mut lease_ticks = tokio::time::interval(
            self.engine
                .leases
                .as_ref()
                .map_or(Duration::from_secs(3600), |(_, o, _)| o.renew_interval),
        );
        lease_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        lease_ticks.tick().await;
        let leased = self.engine.leases.is_some();
        loop {
            tokio::select! {
                joined = workers.set.join_next() => match joined {
                    Some(Ok(Ended::Worker(shard, state))) => {
                        tracing::info!(consumer = %self.name, %shard, ?state, "shard worker ended");
                        workers.stops.remove(&shard);
                        match state {
                            ShardState::Finished => {
                                self.mark_finished(&mut workers, &shard).await;
                                workers.finished.insert(shard);
                            }
                            ShardState::Stopped if !self.cancel.is_cancelled() => {
                                // Its lease was lost: another worker reads it now.
                                workers.started.remove(&shard);
                                if let Ok(mut shards) = self.shards.lock() {
                                    shards.retain(|s| s.shard != shard);
                                }
                            }
                            ShardState::BehindRetention(_) if !self.cancel.is_cancelled() => {
                                self.recover_by_backfill(&mut workers, shard);
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Ended::Backfilled { shards, whole_table, result })) => {
                        if whole_table {
                            workers.recovery.running = false;
                        }
                        match result {
                            Ok(()) => {
                                for shard in &shards {
                                    tracing::info!(consumer = %self.name, %shard, "shard backfilled after falling behind retention; resuming from the stream");
                                    workers.started.remove(shard);
                                }
                                self.rediscover(&mut workers).await;
                            }
                            // Stopped by the shutdown: it resumes at the next start.
                            Err(_) if self.cancel.is_cancelled() => {}
                            Err(message) => {
                                for shard in shards {
                                    tracing::error!(consumer = %self.name, %shard, %message, "backfill after falling behind retention failed; run `tsunagu backfill`");
                                    self.set_state(&shard, ShardState::Failed(message.clone()));
                                }
                            }
                        }
                        if !self.cancel.is_cancelled() {
                            self.start_whole_table_recovery(&mut workers);
                        }
                    }
                    Some(Err(error)) => {
                        tracing::error!(consumer = %self.name, %error, "shard worker panicked");
                    }
                    None => {
                        if self.cancel.is_cancelled() {
                            break;
                        }
                        // Nothing running: wait for new shards, leases, or shutdown.
                        tokio::select! {
                            _ = discovery.tick() => self.rediscover(&mut workers).await,
                            _ = lease_ticks.tick(), if leased => self.lease_round(&mut workers).await,
                            _ = self.cancel.cancelled() => break,
                        }
                    }
                },
                _ = discovery.tick(), if !self.cancel.is_cancelled() => self.rediscover(&mut workers).await,
                _ = lease_ticks.tick(), if leased && !self.cancel.is_cancelled() => self.lease_round(&mut workers).await,
            }
        }
        // Every shard drained and saved its checkpoint: hand the leases over at once.
        if let Some(coordinator) = workers.lease.as_mut() {
            coordinator.release_all().await;
        }
    }

    /// Records in the lease that a shard was read to its end, so that any worker may
    /// start its children.
    async fn mark_finished(&self, workers: &mut Workers, shard: &ShardId) {
        let Some(coordinator) = workers.lease.as_mut() else {
            return;
        };
        let worker = coordinator.options.worker_id.clone();
        match coordinator
            .store
            .checkpoint(&self.name, shard, &worker, None, true)
            .await
        {
            Ok(true) => {
                // Nothing is left to read: the lease is no longer needed.
                coordinator.held.remove(shard);
                if let Err(error) = coordinator.store.release(&self.name, shard, &worker).await {
                    tracing::debug!(consumer = %self.name, %shard, %error, "releasing a finished shard's lease failed");
                }
            }
            Ok(false) => {
                tracing::warn!(consumer = %self.name, %shard, "shard finished after its lease was lost; the new owner finishes it")
            }
            Err(error) => {
                tracing::warn!(consumer = %self.name, %shard, %error, "recording the end of a shard failed; it is read again to its end")
            }
        }
    }

    fn set_state(&self, shard: &ShardId, state: ShardState) {
        if let Ok(shards) = self.shards.lock() {
            if let Some(stats) = shards.iter().find(|s| &s.shard == shard) {
                stats.set_state(state);
            }
        }
    }

    /// Backfills a shard that fell behind retention, if the consumer wants it and the
    /// engine can; the shard restarts from the stream when it is done. When the scanner's
    /// segments follow the shards, the shard is backfilled on its own at once; otherwise
    /// it waits for the consumer's next whole-table backfill.
    fn recover_by_backfill(&self, workers: &mut Workers, shard: ShardId) {
        let Some((scanner, _)) = &self.engine.backfill else {
            tracing::error!(consumer = %self.name, %shard, "behind retention and no backfill source: run `tsunagu backfill`");
            return;
        };
        if self.config.on_retention_exceeded == RetentionPolicy::Stop {
            tracing::error!(consumer = %self.name, %shard, "behind retention; stopped as configured (on_retention_exceeded = \"stop\"): run `tsunagu backfill`");
            return;
        }
        self.set_state(&shard, ShardState::Backfilling);
        let known: Vec<ShardInfo> = workers.known.values().cloned().collect();
        if shards_as_segments(scanner.as_ref(), &known).is_some() {
            self.spawn_backfill(workers, Some(vec![shard]), false);
            return;
        }
        tracing::info!(consumer = %self.name, %shard, "behind retention; waiting for a whole-table backfill");
        if let Ok(mut waiting) = workers.recovery.waiting.lock() {
            waiting.insert(shard);
        }
        self.start_whole_table_recovery(workers);
    }

    /// Starts a whole-table backfill for the shards waiting for one, unless one runs.
    fn start_whole_table_recovery(&self, workers: &mut Workers) {
        let waiting = workers
            .recovery
            .waiting
            .lock()
            .map(|w| !w.is_empty())
            .unwrap_or(false);
        if workers.recovery.running || !waiting {
            return;
        }
        workers.recovery.running = true;
        self.spawn_backfill(workers, None, true);
    }

    /// Spawns a backfill of `shards`, or, for a whole-table one, of the shards waiting
    /// once it starts. It stops with the pipeline (its progress is saved at durable
    /// points, so the next start resumes it).
    fn spawn_backfill(
        &self,
        workers: &mut Workers,
        shards: Option<Vec<ShardId>>,
        whole_table: bool,
    ) {
        let Some((scanner, progress)) = self.engine.backfill.clone() else {
            return;
        };
        let (consumer, engine, sink, cancel, alive) = (
            Arc::clone(&self.name),
            self.engine.clone(),
            Arc::clone(&self.sink),
            self.cancel.clone(),
            Arc::clone(&self.alive),
        );
        let waiting = Arc::clone(&workers.recovery.waiting);
        let options = BackfillOptions {
            batch_size: self.config.batch_size.max(100),
            ..BackfillOptions::default()
        };
        workers.set.spawn(async move {
            let _alive = alive;
            let shards = match shards {
                Some(shards) => shards,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(RECOVERY_GATHER) => {}
                        _ = cancel.cancelled() => {}
                    }
                    gathered(&consumer, progress.as_ref(), &waiting).await
                }
            };
            let backfill = Backfill {
                consumer: &consumer,
                source: engine.source.as_ref(),
                scanner: scanner.as_ref(),
                sink: sink.as_ref(),
                checkpoints: engine.checkpoints.as_ref(),
                dlq: engine.dlq.as_ref(),
                progress: progress.as_ref(),
            };
            let result = if shards.is_empty() {
                Ok(())
            } else {
                tokio::select! {
                    result = backfill.run(Some(shards.clone()), &options, &|_| {}) => {
                        result.map(|_| ()).map_err(|e| e.to_string())
                    }
                    // Dropping the run is safe: nothing is recorded before it is durable.
                    _ = cancel.cancelled() => Err("stopped by the shutdown".to_string()),
                }
            };
            if let (Ok(()), Some(hook)) = (&result, &engine.after_backfill) {
                clean_up_after_backfill(hook.as_ref(), &consumer, &shards, &cancel).await;
            }
            Ended::Backfilled {
                shards,
                whole_table,
                result,
            }
        });
    }

    async fn rediscover(&self, workers: &mut Workers) {
        if let Err(error) = self.discover(workers).await {
            tracing::warn!(consumer = %self.name, %error, "shard discovery failed; will retry");
        }
    }
}

/// Runs the after-backfill hook (removing what was deleted while the shards were behind
/// retention, which no scan can see), retrying a failure with backoff: a sink that is
/// briefly unavailable must not leave deleted items searchable. Gives up, saying what to
/// run, after [`AFTER_BACKFILL_ATTEMPTS`] attempts or when the pipeline stops.
async fn clean_up_after_backfill(
    hook: &dyn AfterBackfill,
    consumer: &str,
    shards: &[ShardId],
    cancel: &CancellationToken,
) {
    for attempt in 1..=AFTER_BACKFILL_ATTEMPTS {
        let message = match hook.after_backfill_shards(consumer, shards).await {
            Ok(()) => return,
            Err(message) => message,
        };
        if attempt == AFTER_BACKFILL_ATTEMPTS {
            tracing::error!(%consumer, ?shards, %message, attempts = attempt, "cleaning up after the backfill failed; `tsunagu reconcile --repair` removes what is left");
            return;
        }
        tracing::warn!(%consumer, ?shards, %message, attempt, "cleaning up after the backfill failed; retrying");
        if !crate::lane::back_off_unless_cancelled(attempt, 100, 5_000, cancel).await {
            tracing::warn!(%consumer, ?shards, "stopped before the clean-up after the backfill succeeded; `tsunagu reconcile --repair` removes what is left");
            return;
        }
    }
}

/// The shards a whole-table backfill takes from those waiting. When an earlier run was
/// interrupted (the process stopped) for shards that are all waiting again, it is taken up
/// under the same shards so that it resumes where it stopped; the other waiting shards are
/// left for the next run.
async fn gathered(
    consumer: &str,
    progress: &dyn BackfillProgressStore,
    waiting: &Mutex<BTreeSet<ShardId>>,
) -> Vec<ShardId> {
    let saved = match progress.load_backfill(consumer).await {
        Ok(saved) => saved,
        Err(error) => {
            tracing::warn!(%consumer, %error, "cannot read earlier backfill progress; starting afresh");
            HashMap::new()
        }
    };
    let Ok(mut waiting) = waiting.lock() else {
        return Vec::new();
    };
    let resumable = saved
        .iter()
        .filter(|(id, state)| is_whole_table_progress(id) && !state.done)
        .map(|(id, state)| (id, state.targets.keys().cloned().collect::<Vec<_>>()))
        // Only a record this recovery would have made (not `tsunagu backfill`'s).
        .filter(|(id, shards)| !shards.is_empty() && **id == whole_table_progress_id(Some(shards)))
        .map(|(_, shards)| shards.into_iter().collect::<BTreeSet<_>>())
        .filter(|shards| shards.is_subset(&waiting))
        .max_by_key(|shards| shards.len());
    let take = resumable.unwrap_or_else(|| waiting.clone());
    waiting.retain(|s| !take.contains(s));
    take.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A clean-up that fails its first `failures` calls.
    struct FailingFirst {
        failures: u32,
        calls: AtomicU32,
    }

    #[async_trait]
    impl AfterBackfill for FailingFirst {
        async fn after_backfill(&self, _consumer: &str, _shard: &ShardId) -> Result<(), String> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if call <= self.failures {
                Err(format!("sink unavailable (call {call})"))
            } else {
                Ok(())
            }
        }
    }

    fn shards() -> Vec<ShardId> {
        vec![ShardId("shard-0".into())]
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_clean_up_after_a_backfill_is_retried_until_it_goes_through() {
        let hook = FailingFirst {
            failures: 3,
            calls: AtomicU32::new(0),
        };
        clean_up_after_backfill(&hook, "search", &shards(), &CancellationToken::new()).await;
        assert_eq!(hook.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clean_up_that_keeps_failing_is_given_up_after_its_attempts() {
        let hook = FailingFirst {
            failures: u32::MAX,
            calls: AtomicU32::new(0),
        };
        clean_up_after_backfill(&hook, "search", &shards(), &CancellationToken::new()).await;
        assert_eq!(hook.calls.load(Ordering::SeqCst), AFTER_BACKFILL_ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_stops_the_clean_up_retries() {
        let hook = FailingFirst {
            failures: u32::MAX,
            calls: AtomicU32::new(0),
        };
        let cancel = CancellationToken::new();
        cancel.cancel();
        clean_up_after_backfill(&hook, "search", &shards(), &cancel).await;
        assert_eq!(hook.calls.load(Ordering::SeqCst), 1);
    }
}

//! The engine's entry point: start consumers over a change source, watch them, stop them.

use crate::backfill::{AfterBackfill, Backfill, BackfillOptions, BackfillProgressStore};
use crate::config::{ConfigError, ConsumerConfig, RetentionPolicy};
use crate::ports::{
    ApplyObserver, ChangeSource, CheckpointStore, DeadLetterQueue, ItemScanner, ReadFrom,
    ShardInfo, Sink, SourceError, StartingPosition, StateError,
};
use crate::shard::ShardWorker;
use crate::status::{ConsumerStatus, ShardState, ShardStats};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tsunagu_domain::ShardId;

/// How often a consumer asks the source for new shards (DynamoDB Streams and Kinesis
/// split shards; the embedded store's never change).
const SHARD_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);

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
        }
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
    Backfilled(ShardId, Result<(), String>),
}

/// Shard workers of one consumer and what is known of each shard.
struct Workers {
    set: JoinSet<Ended>,
    started: HashSet<ShardId>,
    finished: HashSet<ShardId>,
    known: HashMap<ShardId, ShardInfo>,
}

impl ConsumerRunner {
    async fn start_known_shards(&self) -> Result<Workers, EngineError> {
        let mut workers = Workers {
            set: JoinSet::new(),
            started: HashSet::new(),
            finished: HashSet::new(),
            known: HashMap::new(),
        };
        self.discover(&mut workers).await?;
        Ok(workers)
    }

    /// Starts a worker for every new shard whose parent is done (or unknown: a parent
    /// that aged out of the stream has nothing left to read).
    async fn discover(&self, workers: &mut Workers) -> Result<(), EngineError> {
        let shards = self.engine.source.shards().await?;
        let checkpoints = self.engine.checkpoints.load(&self.name).await?;
        for info in &shards {
            workers.known.insert(info.id.clone(), info.clone());
        }
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
            let stats = Arc::new(ShardStats::new(info.id.clone()));
            if let ReadFrom::After(p) = &start {
                stats.set_checkpoint(p.clone());
            }
            if let Ok(mut shards) = self.shards.lock() {
                // A shard restarted after a backfill gets fresh counters.
                shards.retain(|s| s.shard != info.id);
                shards.push(Arc::clone(&stats));
            }
            let worker = ShardWorker {
                consumer: Arc::clone(&self.name),
                config: Arc::clone(&self.config),
                shard: info.id.clone(),
                start,
                source: Arc::clone(&self.engine.source),
                sink: Arc::clone(&self.sink),
                checkpoints: Arc::clone(&self.engine.checkpoints),
                dlq: Arc::clone(&self.engine.dlq),
                observers: Arc::clone(&self.observers),
                stats,
                cancel: self.cancel.clone(),
                alive: Arc::clone(&self.alive),
            };
            tracing::info!(consumer = %self.name, shard = %info.id, "shard worker started");
            workers.started.insert(info.id.clone());
            let id = info.id.clone();
            workers
                .set
                .spawn(async move { Ended::Worker(id, worker.run().await) });
        }
        Ok(())
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
        loop {
            tokio::select! {
                joined = workers.set.join_next() => match joined {
                    Some(Ok(Ended::Worker(shard, state))) => {
                        tracing::info!(consumer = %self.name, %shard, ?state, "shard worker ended");
                        match state {
                            ShardState::Finished => {
                                workers.finished.insert(shard);
                            }
                            ShardState::BehindRetention(_) if !self.cancel.is_cancelled() => {
                                self.recover_by_backfill(&mut workers, shard);
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Ended::Backfilled(shard, result))) => match result {
                        Ok(()) => {
                            tracing::info!(consumer = %self.name, %shard, "shard backfilled after falling behind retention; resuming from the stream");
                            workers.started.remove(&shard);
                            self.rediscover(&mut workers).await;
                        }
                        Err(message) => {
                            tracing::error!(consumer = %self.name, %shard, %message, "backfill after falling behind retention failed; run `tsunagu backfill`");
                            self.set_state(&shard, ShardState::Failed(message));
                        }
                    },
                    Some(Err(error)) => {
                        tracing::error!(consumer = %self.name, %error, "shard worker panicked");
                    }
                    None => {
                        if self.cancel.is_cancelled() {
                            return;
                        }
                        // Nothing running: wait for new shards or shutdown.
                        tokio::select! {
                            _ = discovery.tick() => self.rediscover(&mut workers).await,
                            _ = self.cancel.cancelled() => return,
                        }
                    }
                },
                _ = discovery.tick(), if !self.cancel.is_cancelled() => self.rediscover(&mut workers).await,
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
    /// engine can; the shard restarts from the stream when it is done.
    fn recover_by_backfill(&self, workers: &mut Workers, shard: ShardId) {
        let Some((scanner, progress)) = self.engine.backfill.clone() else {
            tracing::error!(consumer = %self.name, %shard, "behind retention and no backfill source: run `tsunagu backfill`");
            return;
        };
        if self.config.on_retention_exceeded == RetentionPolicy::Stop {
            tracing::error!(consumer = %self.name, %shard, "behind retention; stopped as configured (on_retention_exceeded = \"stop\"): run `tsunagu backfill`");
            return;
        }
        self.set_state(&shard, ShardState::Backfilling);
        let (consumer, engine, sink) = (
            Arc::clone(&self.name),
            self.engine.clone(),
            Arc::clone(&self.sink),
        );
        let options = BackfillOptions {
            batch_size: self.config.batch_size.max(100),
            ..BackfillOptions::default()
        };
        workers.set.spawn(async move {
            let backfill = Backfill {
                consumer: &consumer,
                source: engine.source.as_ref(),
                scanner: scanner.as_ref(),
                sink: sink.as_ref(),
                checkpoints: engine.checkpoints.as_ref(),
                dlq: engine.dlq.as_ref(),
                progress: progress.as_ref(),
            };
            let result = backfill
                .run(Some(vec![shard.clone()]), &options, &|_| {})
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            if let (Ok(()), Some(hook)) = (&result, &engine.after_backfill) {
                if let Err(message) = hook.after_backfill(&consumer, &shard).await {
                    tracing::warn!(consumer = %consumer, %shard, %message, "cleaning up after the backfill failed; `tsunagu reconcile --repair` removes what is left");
                }
            }
            Ended::Backfilled(shard, result)
        });
    }

    async fn rediscover(&self, workers: &mut Workers) {
        if let Err(error) = self.discover(workers).await {
            tracing::warn!(consumer = %self.name, %error, "shard discovery failed; will retry");
        }
    }
}

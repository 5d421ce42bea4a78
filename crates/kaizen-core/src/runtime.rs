//! The runtime for hosts: the loop as a background worker and a cheap, cloneable handle — the
//! shape of tower's `Buffer::pair`.
//!
//! ```text
//! let (handle, worker) = Runtime::pair(engine, schedule);
//! tokio::spawn(worker.run());          // or: let handle = Runtime::spawn(engine, schedule);
//! handle.ready().await?;               // the state lock is held
//! let mut events = handle.subscribe(); // every event the ledger records from now on
//! handle.cycle_now().await?;
//! handle.shutdown().await?;            // finishes the step in flight, releases the lock
//! ```
//!
//! # Invariants
//! - The worker owns the engine (ledger, applier, stages). Nothing else can reach them: a host
//!   acts through the [`Handle`] (cycle, approve, revert, pause, resume), so every change still
//!   passes the guards and lands in the ledger.
//! - The engine's work runs on a blocking thread (`spawn_blocking`): git and SQLite never stall
//!   the host's async workers. Its few async calls (sources, LLM, canaries, notifiers) are
//!   driven there with `Handle::block_on`, which tokio allows on blocking threads (never on an
//!   async worker, so no `block_on` inside async code).
//! - With a state dir, the worker takes the state lock before doing anything (waiting up to
//!   [`RuntimeBuilder::lock_wait`]), so a host, `kaizen run` and a cron `kaizen cycle` never
//!   mutate at once; the refused one is told who holds it.
//! - Steps run one at a time in arrival order. While one runs, `status()` is answered from the
//!   snapshot taken after the previous step; other requests wait their turn.
//! - Shutdown (the handle's [`Handle::shutdown`], the host's cancellation token, or every handle
//!   dropped) finishes the step in flight and then stops. A step abandoned anyway (the process
//!   killed) is safe: every state change is one transaction and a pending marker brackets each
//!   git operation, so the next start reconciles it.

use crate::clock::Clock;
use crate::config::ScheduleConfig;
use crate::engine::{CycleReport, Engine, EngineError};
use crate::event::RecordedEvent as Event;
use crate::health::{BuildInfo, Counters, Health};
use crate::intervention::InterventionId;
use crate::lock::{LockError, StateLock};
use crate::schedule::{Schedule, Task};
use crate::status::StatusSnapshot;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How long the worker waits for the state lock by default (a cron cycle in progress finishes
/// well within it).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How many events a slow subscriber may fall behind before it misses some (it is told how
/// many; the ledger keeps them all).
pub const EVENT_BUFFER: usize = 1024;

/// The runtime failed or is not running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The state lock could not be taken.
    #[error("cannot start the kaizen runtime: {0}")]
    Lock(#[from] LockError),
    /// An engine operation failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The runtime is not running (stopped, or never started); `cause` is why it stopped, if
    /// it stopped on an error.
    #[error("the kaizen runtime is not running{}", cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default())]
    Stopped {
        /// The error the worker stopped on.
        #[source]
        cause: Option<Arc<RuntimeError>>,
    },
    /// A step panicked on its blocking thread; the engine is gone with it.
    #[error("a kaizen step panicked: {0}")]
    Panicked(String),
    /// A reload was refused; the runtime goes on with what it had.
    #[error("reload refused, still running on the previous config: {0}")]
    Reload(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a reload replaces: a freshly assembled engine (same state dir), the schedule's
/// intervals and the learner.
pub struct Reload {
    /// The new engine (its ledger is the same file; the state lock stays held).
    pub engine: Engine,
    /// The new intervals (when each task last ran is kept).
    pub schedule: ScheduleConfig,
    /// The new learner (`None`: keep the one in use).
    pub learner: Option<Arc<dyn Learner>>,
    /// For the event: what was reloaded (e.g. the config file's path).
    pub what: String,
}

/// Builds a [`Reload`] on the worker's blocking thread (reading and assembling files there,
/// in turn with the steps).
pub type ReloadFn =
    Box<dyn FnOnce() -> Result<Reload, Box<dyn std::error::Error + Send + Sync>> + Send>;

/// The learn step, supplied by the host (distilling lessons needs the lesson directory and,
/// optionally, an LLM: adapters' business).
#[async_trait]
pub trait Learner: Send + Sync {
    /// Distils lessons now; returns one line per change made.
    async fn learn(&self, engine: &mut Engine) -> Result<Vec<String>, EngineError>;
}

/// The learn step with a distiller and a lesson directory (inside the repository), without a
/// model: [`Engine::learn`] on the schedule. The simulator learns with it and the
/// deterministic distiller; a host that lets a model reword lessons has its own [`Learner`].
pub struct DistillLearner<D> {
    distiller: D,
    lessons_dir: std::path::PathBuf,
}

impl<D: crate::learn::Distiller> DistillLearner<D> {
    /// A learner writing lessons from `distiller` into `lessons_dir`.
    pub fn new(distiller: D, lessons_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            distiller,
            lessons_dir: lessons_dir.into(),
        }
    }
}

#[async_trait]
impl<D: crate::learn::Distiller> Learner for DistillLearner<D> {
    async fn learn(&self, engine: &mut Engine) -> Result<Vec<String>, EngineError> {
        Ok(engine.learn(&self.distiller, &self.lessons_dir)?.changes)
    }
}

/// How the last run of one kind of step went (for `/health`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// When it ended (engine clock).
    pub at: DateTime<Utc>,
    /// Whether it succeeded.
    pub ok: bool,
    /// A one-line account (the error, or what it did).
    pub detail: String,
}

/// Where the worker is in its life.
#[derive(Debug, Clone)]
enum Phase {
    Starting,
    Running,
    Stopped(Option<Arc<RuntimeError>>),
}

struct Shared {
    events: broadcast::Sender<Event>,
    status: watch::Sender<Option<StatusSnapshot>>,
    steps: Mutex<BTreeMap<&'static str, StepRecord>>,
    /// Loop progress: bumped each time the worker finishes a step or wakes idle (a wedged step
    /// stops it; the systemd watchdog pings from it).
    progress: watch::Sender<u64>,
    /// Health and counters as of the last step (served without waiting for the worker).
    health: watch::Sender<Option<(Health, Counters)>>,
    /// When the runtime was built (engine clock).
    started: DateTime<Utc>,
    /// A loop that has not finished a cycle for this long is reported degraded.
    stalled_after: Mutex<chrono::Duration>,
}

/// How long without a finished cycle counts as stalled: two cycle intervals and a minute.
fn stalled_after(schedule: &ScheduleConfig) -> chrono::Duration {
    schedule.cycle_every.to_chrono() * 2 + chrono::Duration::minutes(1)
}

enum Command {
    ObserveNow(oneshot::Sender<Result<usize, RuntimeError>>),
    CycleNow(oneshot::Sender<Result<CycleReport, RuntimeError>>),
    Approve(
        InterventionId,
        oneshot::Sender<Result<CycleReport, RuntimeError>>,
    ),
    Revert(
        InterventionId,
        String,
        oneshot::Sender<Result<CycleReport, RuntimeError>>,
    ),
    Pause(
        Option<String>,
        String,
        oneshot::Sender<Result<(), RuntimeError>>,
    ),
    Resume(Option<String>, oneshot::Sender<Result<bool, RuntimeError>>),
    Status(oneshot::Sender<Result<StatusSnapshot, RuntimeError>>),
    Reload(ReloadFn, oneshot::Sender<Result<String, RuntimeError>>),
}

/// Entry points: [`Runtime::pair`], [`Runtime::spawn`], [`Runtime::builder`].
pub struct Runtime;

impl Runtime {
    /// A builder with the defaults (lock wait [`LOCK_WAIT`], no learner, a fresh cancellation
    /// token).
    pub fn builder(engine: Engine, schedule: Schedule) -> RuntimeBuilder {
        RuntimeBuilder {
            engine,
            schedule,
            lock_wait: LOCK_WAIT,
            learner: None,
            cancel: CancellationToken::new(),
        }
    }

    /// The handle and the worker to drive (`tokio::spawn(worker.run())`).
    pub fn pair(engine: Engine, schedule: Schedule) -> (Handle, Worker) {
        Self::builder(engine, schedule).pair()
    }

    /// Spawns the worker on the current tokio runtime and returns the handle.
    pub fn spawn(engine: Engine, schedule: Schedule) -> Handle {
        Self::builder(engine, schedule).spawn()
    }
}

/// Configures a runtime before it starts.
pub struct RuntimeBuilder {
    engine: Engine,
    schedule: Schedule,
    lock_wait: Duration,
    learner: Option<Arc<dyn Learner>>,
    cancel: CancellationToken,
}

impl RuntimeBuilder {
    /// How long to wait for the state lock before giving up (default [`LOCK_WAIT`]).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The learn step run on the schedule's `learn_every` (without one, learning is skipped).
    pub fn learner(mut self, learner: Arc<dyn Learner>) -> Self {
        self.learner = Some(learner);
        self
    }

    /// Stops the runtime when the host's `token` is cancelled (the runtime uses a child token,
    /// so its own shutdown never cancels the host's).
    pub fn cancel_token(mut self, token: &CancellationToken) -> Self {
        self.cancel = token.child_token();
        self
    }

    /// The handle and the worker to drive.
    pub fn pair(self) -> (Handle, Worker) {
        let (tx, rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (status, _) = watch::channel(None);
        let (progress, _) = watch::channel(0);
        let (health, _) = watch::channel(None);
        let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
        let clock = self.engine.clock();
        let shared = Arc::new(Shared {
            events,
            status,
            steps: Mutex::new(BTreeMap::new()),
            progress,
            health,
            started: clock.now(),
            stalled_after: Mutex::new(stalled_after(self.schedule.config())),
        });
        let handle = Handle {
            clock: clock.clone(),
            tx,
            shared: shared.clone(),
            cancel: self.cancel.clone(),
            phase: phase_rx,
        };
        let worker = Worker {
            held: Some(Held {
                engine: self.engine,
                _lock: None,
            }),
            clock,
            schedule: self.schedule,
            lock_wait: self.lock_wait,
            learner: self.learner,
            cancel: self.cancel,
            rx,
            rx_closed: false,
            queued: VecDeque::new(),
            stopping: false,
            shared,
            phase: phase_tx,
            seq: 0,
            started: false,
        };
        (handle, worker)
    }

    /// Spawns the worker on the current tokio runtime and returns the handle.
    pub fn spawn(self) -> Handle {
        let (handle, worker) = self.pair();
        tokio::spawn(worker.run());
        handle
    }
}

/// A cheap, cloneable way to talk to a running worker.
#[derive(Clone)]
pub struct Handle {
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    phase: watch::Receiver<Phase>,
}

impl Handle {
    fn stopped(&self) -> RuntimeError {
        match &*self.phase.borrow() {
            Phase::Stopped(cause) => RuntimeError::Stopped {
                cause: cause.clone(),
            },
            _ => RuntimeError::Stopped { cause: None },
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, RuntimeError>>) -> Command,
    ) -> Result<T, RuntimeError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(make(reply)).await.is_err() {
            return Err(self.stopped());
        }
        match answer.await {
            Ok(r) => r,
            Err(_) => Err(self.stopped()),
        }
    }

    /// Waits until the worker holds the state lock and runs (or has stopped: its error).
    pub async fn ready(&self) -> Result<(), RuntimeError> {
        let mut phase = self.phase.clone();
        let result = phase
            .wait_for(|p| !matches!(p, Phase::Starting))
            .await
            .map(|p| p.clone());
        match result {
            Ok(Phase::Running) => Ok(()),
            _ => Err(self.stopped()),
        }
    }

    /// Whether the worker is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        matches!(&*self.phase.borrow(), Phase::Running)
    }

    /// What kaizen sees now (fresh when the worker is idle; during a step, as of the step
    /// before).
    pub async fn status(&self) -> Result<StatusSnapshot, RuntimeError> {
        self.ask(Command::Status).await
    }

    /// The snapshot taken after the last step, without waiting for the worker (`None` before
    /// the first).
    pub fn last_status(&self) -> Option<StatusSnapshot> {
        self.shared.status.borrow().clone()
    }

    /// kaizen's own health now (`/health`): the snapshot taken after the last step with this
    /// runtime's steps folded in, never waiting for the worker (a wedged step shows as a loop
    /// that stopped finishing cycles). `None` before the first snapshot.
    pub fn health(&self) -> Option<Health> {
        let (health, _) = self.shared.health.borrow().clone()?;
        let stalled = self
            .shared
            .stalled_after
            .lock()
            .map(|d| *d)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        Some(health.with_runtime(
            &self.last_steps(),
            self.shared.started,
            self.clock.now(),
            Some(stalled),
        ))
    }

    /// The Prometheus text for `/metrics` (as of the last step; `None` before the first).
    pub fn metrics(&self) -> Option<String> {
        let counters = self.shared.health.borrow().as_ref()?.1.clone();
        let health = self.health()?;
        Some(crate::health::prometheus(
            &health,
            &counters,
            &BuildInfo::default(),
        ))
    }

    /// Re-reads what `build` assembles (config, rules, lessons) and swaps it in between steps.
    /// A failure is recorded ([`EngineEvent::ReloadFailed`]) and returned, and the runtime goes
    /// on with what it had; success is recorded as [`EngineEvent::ConfigReloaded`].
    ///
    /// [`EngineEvent::ReloadFailed`]: crate::event::EngineEvent::ReloadFailed
    /// [`EngineEvent::ConfigReloaded`]: crate::event::EngineEvent::ConfigReloaded The state dir cannot change.
    pub async fn reload(&self, build: ReloadFn) -> Result<String, RuntimeError> {
        self.ask(|r| Command::Reload(build, r)).await
    }

    /// How the last run of each kind of step went (`observe`, `cycle`, `learn`, `approve`, …).
    pub fn last_steps(&self) -> BTreeMap<&'static str, StepRecord> {
        self.shared
            .steps
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Loop progress, bumped after each step and each idle wake-up; a wedged step stops it.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.shared.progress.subscribe()
    }

    /// Every event the ledger records from now on, in order.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.shared.events.subscribe(),
        }
    }

    /// Samples every source now (after any step in flight); the number of samples recorded.
    pub async fn observe_now(&self) -> Result<usize, RuntimeError> {
        self.ask(Command::ObserveNow).await
    }

    /// Runs a full cycle now (after any step in flight).
    pub async fn cycle_now(&self) -> Result<CycleReport, RuntimeError> {
        self.ask(Command::CycleNow).await
    }

    /// Applies a `proposed` intervention (manual mode), re-running the guards.
    pub async fn approve(&self, id: InterventionId) -> Result<CycleReport, RuntimeError> {
        self.ask(|r| Command::Approve(id, r)).await
    }

    /// Reverts an applied or validated intervention now.
    pub async fn revert(
        &self,
        id: InterventionId,
        why: impl Into<String>,
    ) -> Result<CycleReport, RuntimeError> {
        let why = why.into();
        self.ask(|r| Command::Revert(id, why, r)).await
    }

    /// Pauses everything (`None`) or one area.
    pub async fn pause(&self, area: Option<&str>, why: &str) -> Result<(), RuntimeError> {
        let (area, why) = (area.map(str::to_string), why.to_string());
        self.ask(|r| Command::Pause(area, why, r)).await
    }

    /// Lifts a pause; whether one was in force.
    pub async fn resume(&self, area: Option<&str>) -> Result<bool, RuntimeError> {
        let area = area.map(str::to_string);
        self.ask(|r| Command::Resume(area, r)).await
    }

    /// Stops the worker: the step in flight finishes, the lock is released. Idempotent; returns
    /// the worker's error if it had stopped on one.
    pub async fn shutdown(&self) -> Result<(), RuntimeError> {
        self.cancel.cancel();
        let mut phase = self.phase.clone();
        let stopped = phase
            .wait_for(|p| matches!(p, Phase::Stopped(_)))
            .await
            .map(|p| p.clone());
        match stopped {
            Ok(Phase::Stopped(Some(cause))) => Err(RuntimeError::Stopped { cause: Some(cause) }),
            // The worker was dropped without running: nothing left to stop.
            _ => Ok(()),
        }
    }
}

/// Why a [`Subscription`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The runtime stopped; no more events.
    #[error("the runtime stopped")]
    Closed,
    /// The subscriber fell this many events behind and missed them (they are in the ledger).
    #[error("missed {0} event(s) (read them with `kaizen events`)")]
    Lagged(u64),
}

/// A stream of the events the ledger records, in order.
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
}

impl Subscription {
    /// The next event.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        match self.rx.recv().await {
            Ok(e) => Ok(e),
            Err(broadcast::error::RecvError::Closed) => Err(RecvError::Closed),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
        }
    }
}

/// The engine and the lock, moved together so the lock outlives any step that still runs.
struct Held {
    engine: Engine,
    _lock: Option<StateLock>,
}

/// Drives the engine: runs the schedule's tasks and the handle's requests, one at a time.
pub struct Worker {
    held: Option<Held>,
    clock: Arc<dyn Clock>,
    schedule: Schedule,
    lock_wait: Duration,
    learner: Option<Arc<dyn Learner>>,
    cancel: CancellationToken,
    rx: mpsc::Receiver<Command>,
    rx_closed: bool,
    queued: VecDeque<Command>,
    stopping: bool,
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    /// The last ledger event already streamed.
    seq: i64,
    /// Whether [`Worker::start`] ran.
    started: bool,
}

/// The longest the loop sleeps without waking (progress stays visible to a watchdog).
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// What a step leaves for the handles: the events it recorded and fresh views of the ledger.
enum Published {
    /// Everything read afresh.
    Full {
        events: Vec<Event>,
        views: Box<(StatusSnapshot, Health, Counters)>,
    },
    /// An observe tick that recorded these samples and no event: the views are brought up to
    /// date from them ([`StatusSnapshot::observed`], [`Health::observed`]; counters count
    /// events and interventions, so they stand).
    Observed {
        samples: Vec<crate::signal::Sample>,
        at: DateTime<Utc>,
    },
}

/// Every event after `seq`, in batches.
fn events_after(e: &Engine, seq: i64) -> Result<Vec<Event>, EngineError> {
    let mut events = Vec::new();
    let mut from = seq;
    loop {
        let batch = e.ledger().events_after(from, 500)?;
        let full = batch.len() == 500;
        if let Some(last) = batch.last() {
            from = last.seq;
        }
        events.extend(batch);
        if !full {
            return Ok(events);
        }
    }
}

/// Whether every signal of `status` has its cadence from its data (not the fallback).
fn cadences_known(status: &StatusSnapshot) -> bool {
    status
        .signals
        .iter()
        .all(|x| x.cadence_source != crate::validate::CadenceSource::Fallback)
}

/// One observe tick on the blocking thread: samples every source, records them, and reads
/// what the handles are shown next ([`Published::after_observe`]).
fn observe_tick(
    e: &mut Engine,
    rt: &tokio::runtime::Handle,
    seq: i64,
    have_views: bool,
) -> (Result<usize, EngineError>, Result<Published, EngineError>) {
    let mut report = CycleReport {
        at: e.now(),
        ..Default::default()
    };
    match rt.block_on(e.observe_recorded(&mut report)) {
        Ok(samples) => {
            let n = samples.len();
            (Ok(n), Published::after_observe(e, seq, samples, have_views))
        }
        Err(err) => (Err(err), Published::collect(e, seq)),
    }
}

impl Published {
    /// Reads, on the blocking thread, every event after `seq` and the status, health and
    /// counters now.
    fn collect(e: &Engine, seq: i64) -> Result<Published, EngineError> {
        Self::full(e, events_after(e, seq)?)
    }

    fn full(e: &Engine, events: Vec<Event>) -> Result<Published, EngineError> {
        let status = e.status()?;
        let health = Health::compute(&status, e.ledger())?;
        let counters = Counters::compute(e.ledger())?;
        Ok(Published::Full {
            events,
            views: Box::new((status, health, counters)),
        })
    }

    /// After an observe tick that recorded `samples`: only those, if it recorded no event and
    /// the handles have views to update (`have_views`); else everything afresh.
    fn after_observe(
        e: &Engine,
        seq: i64,
        samples: Vec<crate::signal::Sample>,
        have_views: bool,
    ) -> Result<Published, EngineError> {
        let events = events_after(e, seq)?;
        if have_views && events.is_empty() {
            Ok(Published::Observed {
                samples,
                at: e.now(),
            })
        } else {
            Self::full(e, events)
        }
    }
}

/// What one scheduled task did ([`Worker::run_due`]). A failed task carries its error: the
/// loop logs it and goes on, a simulation may stop on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// An observe tick: the samples recorded.
    Observed(Result<usize, EngineError>),
    /// A full cycle: its report.
    Cycled(Result<CycleReport, EngineError>),
    /// A learn run: one line per lesson change; `None` when the runtime has no learner.
    Learned(Option<Result<Vec<String>, EngineError>>),
    /// The periodic meta-review: the files written (`None`: one is recent, or no state dir).
    Reviewed(Result<Option<crate::engine::WrittenReview>, EngineError>),
}

impl TaskOutcome {
    /// The task's error, if it failed.
    pub fn error(&self) -> Option<&EngineError> {
        match self {
            TaskOutcome::Observed(r) => r.as_ref().err(),
            TaskOutcome::Cycled(r) => r.as_ref().err(),
            TaskOutcome::Learned(r) => r.as_ref().and_then(|r| r.as_ref().err()),
            TaskOutcome::Reviewed(r) => r.as_ref().err(),
        }
    }
}

impl Worker {
    /// Runs until shutdown; returns the error the worker stopped on, if any (the handles see
    /// the same error as the cause of [`RuntimeError::Stopped`]).
    pub async fn run(mut self) -> Result<(), Arc<RuntimeError>> {
        let result = self.run_inner().await.map_err(Arc::new);
        match &result {
            Err(e) => tracing::error!("kaizen stage=runtime stopped on an error: {e}"),
            Ok(()) => tracing::info!("kaizen stage=runtime stopped"),
        }
        // Release the lock before saying so.
        self.held = None;
        self.phase
            .send_replace(Phase::Stopped(result.as_ref().err().cloned()));
        result
    }

    /// Takes the state lock (with a state dir), streams nothing older than now and publishes
    /// the first status snapshot: what [`Worker::run`] does before its loop. A host that drives
    /// the worker by steps ([`Worker::run_due`] on a clock it advances itself, as the simulator
    /// does) calls it first. Idempotent.
    pub async fn start(&mut self) -> Result<(), RuntimeError> {
        if self.started {
            return Ok(());
        }
        let dir = self
            .held
            .as_ref()
            .and_then(|h| h.engine.state_dir().map(|d| d.to_path_buf()));
        if let Some(dir) = dir {
            let wait = self.lock_wait;
            let lock = tokio::task::spawn_blocking(move || StateLock::acquire_within(&dir, wait))
                .await
                .map_err(|e| RuntimeError::Panicked(e.to_string()))??;
            if let Some(h) = self.held.as_mut() {
                h._lock = Some(lock);
            }
        }
        self.seq = self
            .on_blocking(|e| e.ledger().last_event_seq())
            .await?
            .map_err(EngineError::from)?;
        let seq = self.seq;
        let published = self
            .on_blocking(move |e| Published::collect(e, seq))
            .await??;
        self.publish(published);
        self.started = true;
        self.phase.send_replace(Phase::Running);
        tracing::info!("kaizen stage=runtime running");
        Ok(())
    }

    /// Runs every task the schedule says is due at the clock's now, in the schedule's order,
    /// exactly as the loop does when it wakes (the loop calls this): a failed task is logged,
    /// recorded for `/health` and returned in its outcome, and the next task still runs. Stops
    /// early when a shutdown is requested during a task. Call [`Worker::start`] first.
    ///
    /// The simulator drives the runtime with it: it sets a [`crate::ManualClock`] to
    /// [`Worker::next_due`] and calls this, so a simulated month runs the same dispatch, stages
    /// and learner as `kaizen run`, only without the waiting.
    pub async fn run_due(&mut self) -> Result<Vec<TaskOutcome>, RuntimeError> {
        let due = self.schedule.due(self.clock.now());
        let mut out = Vec::with_capacity(due.len());
        for task in due {
            out.push(self.task(task).await?);
            if self.stopping {
                break;
            }
        }
        Ok(out)
    }

    /// When the schedule next has something due (never before the clock's now).
    pub fn next_due(&self) -> DateTime<Utc> {
        self.schedule.next_due(self.clock.now())
    }

    /// Read access to the engine between steps (its ledger queries, status, settings); `None`
    /// if a step panicked and took the engine with it. There is no mutable access: changes go
    /// through the steps and the [`Handle`].
    pub fn engine(&self) -> Option<&Engine> {
        self.held.as_ref().map(|h| &h.engine)
    }

    async fn run_inner(&mut self) -> Result<(), RuntimeError> {
        self.start().await?;
        loop {
            while let Some(cmd) = self.queued.pop_front() {
                self.command(cmd).await?;
            }
            if self.stopping || self.cancel.is_cancelled() {
                return Ok(());
            }
            let now = self.clock.now();
            let wait = (self.schedule.next_due(now) - now)
                .to_std()
                .unwrap_or_default()
                .min(IDLE_WAKE);
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Ok(()),
                cmd = self.rx.recv(), if !self.rx_closed => match cmd {
                    Some(cmd) => self.command(cmd).await?,
                    // Every handle is gone: nobody can ask for anything or stop it later.
                    None => return Ok(()),
                },
                _ = tokio::time::sleep(wait) => {
                    self.bump();
                    // Outcomes are logged and recorded by each step; the loop goes on.
                    let _ = self.run_due().await?;
                }
            }
        }
    }

    /// One line per scheduled cycle at info level (`kaizen run -v`): the loop is alive, what
    /// the cycle did, how kaizen stands, when the next one is due.
    fn heartbeat(&self, out: Result<String, &EngineError>) {
        let state = self
            .shared
            .health
            .borrow()
            .as_ref()
            .map(|(h, _)| h.status.as_str())
            .unwrap_or("unknown");
        let next = self.schedule.next_due(self.clock.now());
        match out {
            Ok(summary) => tracing::info!(
                stage = "runtime",
                "kaizen heartbeat: cycle ok ({summary}); {state}; next task due by {}",
                next.format("%H:%M:%SZ")
            ),
            Err(e) => tracing::info!(
                stage = "runtime",
                "kaizen heartbeat: cycle failed ({e}); {state}; next task due by {}",
                next.format("%H:%M:%SZ")
            ),
        }
    }

    fn bump(&self) {
        self.shared.progress.send_modify(|p| *p = p.wrapping_add(1));
    }

    fn record_step(&self, name: &'static str, ok: bool, detail: String) {
        self.record_step_at(name, self.clock.now(), ok, detail);
    }

    fn record_step_at(&self, name: &'static str, at: DateTime<Utc>, ok: bool, detail: String) {
        if let Ok(mut steps) = self.shared.steps.lock() {
            steps.insert(name, StepRecord { at, ok, detail });
        }
    }

    /// Runs `f` on the engine on a blocking thread. While it runs, `status()` is answered from
    /// the last snapshot, other requests queue, and a shutdown request is noted (the step
    /// finishes first).
    async fn on_blocking<T, F>(&mut self, f: F) -> Result<T, RuntimeError>
    where
        F: FnOnce(&mut Engine) -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut held = self.held.take().ok_or_else(|| {
            RuntimeError::Panicked("the engine was lost in an earlier step".into())
        })?;
        let mut task = tokio::task::spawn_blocking(move || {
            let out = f(&mut held.engine);
            (held, out)
        });
        loop {
            tokio::select! {
                biased;
                done = &mut task => {
                    let (held, out) = done.map_err(|e| RuntimeError::Panicked(e.to_string()))?;
                    self.held = Some(held);
                    return Ok(out);
                }
                _ = self.cancel.cancelled(), if !self.stopping => {
                    tracing::info!("kaizen stage=runtime shutdown requested; finishing the step in flight");
                    self.stopping = true;
                }
                cmd = self.rx.recv(), if !self.rx_closed => match cmd {
                    Some(Command::Status(reply)) => {
                        let snapshot = self.shared.status.borrow().clone();
                        let _ = reply.send(snapshot.ok_or(RuntimeError::Stopped { cause: None }));
                    }
                    Some(other) => self.queued.push_back(other),
                    None => self.rx_closed = true,
                },
            }
        }
    }

    /// Streams the events of [`Published`] and swaps in its views.
    fn publish(&mut self, published: Published) {
        match published {
            Published::Full { events, views } => {
                let (status, health, counters) = *views;
                self.shared.health.send_replace(Some((health, counters)));
                for event in events {
                    self.seq = event.seq;
                    // No subscriber is fine: the ledger has it.
                    let _ = self.shared.events.send(event);
                }
                self.shared.status.send_replace(Some(status));
            }
            Published::Observed { samples, at } => {
                if let Some(held) = self.held.as_ref() {
                    let settings = held.engine.settings();
                    self.shared.status.send_modify(|s| {
                        if let Some(s) = s {
                            s.observed(&samples, settings, at);
                        }
                    });
                }
                let status = self.shared.status.borrow();
                if let Some(status) = status.as_ref() {
                    self.shared.health.send_modify(|h| {
                        if let Some((h, _)) = h {
                            h.observed(status);
                        }
                    });
                }
            }
        }
        self.bump();
    }

    /// Whether the handles' views can be brought up to date from an observe tick's samples
    /// alone: there are views, and every signal's cadence is known from its data (two samples;
    /// the cadence decides staleness, and it stands between full reads).
    fn have_views(&self) -> bool {
        self.shared.health.borrow().is_some()
            && self
                .shared
                .status
                .borrow()
                .as_ref()
                .is_some_and(cadences_known)
    }

    /// One observe tick as a step: like [`Worker::step`], but when it recorded samples only,
    /// the views are updated from them rather than read afresh (the tick runs every minute by
    /// default; a full read would cost it every signal's last day each time).
    async fn observe_step(
        &mut self,
        rt: tokio::runtime::Handle,
    ) -> Result<Result<usize, EngineError>, RuntimeError> {
        let seq = self.seq;
        let have_views = self.have_views();
        let (out, published) = self
            .on_blocking(move |e| observe_tick(e, &rt, seq, have_views))
            .await?;
        let at = self.clock.now();
        self.finish_observe(at, out.as_ref(), published);
        Ok(out)
    }

    /// Records an observe tick that ended at `at` and publishes what it read.
    fn finish_observe(
        &mut self,
        at: DateTime<Utc>,
        out: Result<&usize, &EngineError>,
        published: Result<Published, EngineError>,
    ) {
        self.finish_step_at("observe", at, out.map(|n| format!("{n} sample(s)")));
        match published {
            Ok(p) => self.publish(p),
            Err(e) => tracing::error!("kaizen stage=runtime cannot read the ledger: {e}"),
        }
    }

    /// Runs, on a clock the host moves itself (a simulation's [`ManualClock`]), the observe
    /// ticks the schedule has due from the clock's now up to `until`, stopping before the first
    /// instant where anything else is due (a cycle, a learn, a review — left to
    /// [`Worker::run_due`]), and after a tick that failed. Each tick is exactly what
    /// [`Worker::run_due`] runs at that instant — the clock set to it, the schedule marked, the
    /// engine's observe, the ledger write, the views updated and published, the step recorded
    /// at that instant — in the same order; only the hand-off to the blocking thread is shared
    /// by the run of ticks instead of paid per tick (what a simulated day of 5-minute ticks
    /// spent most on besides the ticks themselves). The handles see each tick's events and
    /// views once the run is over; a shutdown requested meanwhile is honoured after it.
    ///
    /// Returns each tick's instant and outcome, in order. `clock` must be the clock the engine
    /// and this worker were built with. Call [`Worker::start`] first.
    ///
    /// [`ManualClock`]: crate::clock::ManualClock
    pub async fn run_observe_ticks(
        &mut self,
        clock: &crate::clock::ManualClock,
        until: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Result<usize, EngineError>)>, RuntimeError> {
        let rt = tokio::runtime::Handle::current();
        let clock = clock.clone();
        let mut schedule = self.schedule.clone();
        let (mut seq, mut have_views) = (self.seq, self.have_views());
        let (ticks, schedule) = self
            .on_blocking(move |e| {
                let mut ticks = Vec::new();
                let mut now = clock.now();
                loop {
                    let next = schedule.next_due(now);
                    if next > until || next <= now {
                        break;
                    }
                    let mut marked = schedule.clone();
                    if marked.due(next) != [Task::Observe] {
                        break;
                    }
                    schedule = marked;
                    clock.set(next);
                    let (out, published) = observe_tick(e, &rt, seq, have_views);
                    if let Ok(Published::Full { events, views }) = &published {
                        if let Some(last) = events.last() {
                            seq = last.seq;
                        }
                        have_views = cadences_known(&views.0);
                    }
                    let failed = out.is_err();
                    ticks.push((next, out, published));
                    now = next;
                    if failed {
                        break;
                    }
                }
                (ticks, schedule)
            })
            .await?;
        self.schedule = schedule;
        let mut out = Vec::with_capacity(ticks.len());
        for (at, tick, published) in ticks {
            self.finish_observe(at, tick.as_ref(), published);
            out.push((at, tick));
        }
        Ok(out)
    }

    /// Records how a step went (and logs a failure).
    fn finish_step(&self, name: &'static str, out: Result<String, &EngineError>) {
        self.finish_step_at(name, self.clock.now(), out);
    }

    /// [`Worker::finish_step`] for a step that ended at `at`.
    fn finish_step_at(
        &self,
        name: &'static str,
        at: DateTime<Utc>,
        out: Result<String, &EngineError>,
    ) {
        match out {
            Ok(summary) => self.record_step_at(name, at, true, summary),
            Err(e) => {
                tracing::error!("kaizen stage=runtime step={name} failed: {e}");
                self.record_step_at(name, at, false, e.to_string());
            }
        }
    }

    /// Runs one step, records how it went, publishes; step failures are reported, never fatal
    /// (the monitor fails open, apply fails closed); a lost engine is fatal. The step and the
    /// read-back of what it recorded share one trip to the blocking thread.
    async fn step<T, F>(
        &mut self,
        name: &'static str,
        summary: impl FnOnce(&T) -> String,
        f: F,
    ) -> Result<Result<T, EngineError>, RuntimeError>
    where
        F: FnOnce(&mut Engine) -> Result<T, EngineError> + Send + 'static,
        T: Send + 'static,
    {
        let seq = self.seq;
        let (out, published) = self
            .on_blocking(move |e| {
                let out = f(e);
                (out, Published::collect(e, seq))
            })
            .await?;
        self.finish_step(name, out.as_ref().map(summary));
        match published {
            Ok(p) => self.publish(p),
            Err(e) => tracing::error!("kaizen stage=runtime cannot read the ledger: {e}"),
        }
        Ok(out)
    }

    async fn task(&mut self, task: Task) -> Result<TaskOutcome, RuntimeError> {
        let rt = tokio::runtime::Handle::current();
        Ok(match task {
            Task::Observe => TaskOutcome::Observed(self.observe_step(rt).await?),
            Task::Cycle => {
                let out = self
                    .step("cycle", cycle_summary, move |e| rt.block_on(e.cycle()))
                    .await?;
                self.heartbeat(out.as_ref().map(cycle_summary));
                TaskOutcome::Cycled(out)
            }
            Task::Review => {
                let every = self.schedule.config().review_every;
                TaskOutcome::Reviewed(
                    self.step(
                        "review",
                        |w: &Option<crate::engine::WrittenReview>| match w {
                            Some(w) => format!("written to {}", w.html.display()),
                            None => "not due (one is recent, or no state dir)".into(),
                        },
                        move |e| rt.block_on(e.periodic_review(every)),
                    )
                    .await?,
                )
            }
            Task::Learn => match self.learner.clone() {
                None => TaskOutcome::Learned(None),
                Some(learner) => TaskOutcome::Learned(Some(
                    self.step(
                        "learn",
                        |changes: &Vec<String>| format!("{} lesson change(s)", changes.len()),
                        move |e| rt.block_on(learner.learn(e)),
                    )
                    .await?,
                )),
            },
        })
    }

    async fn command(&mut self, cmd: Command) -> Result<(), RuntimeError> {
        let rt = tokio::runtime::Handle::current();
        match cmd {
            Command::ObserveNow(reply) => {
                let out = self.observe_step(rt).await?;
                let _ = reply.send(out.map_err(RuntimeError::from));
            }
            Command::CycleNow(reply) => {
                let out = self
                    .step("cycle", cycle_summary, move |e| rt.block_on(e.cycle()))
                    .await?;
                let _ = reply.send(out.map_err(RuntimeError::from));
            }
            Command::Approve(id, reply) => {
                let out = self
                    .step("approve", cycle_summary, move |e| {
                        rt.block_on(async {
                            let report = e.approve(id).await?;
                            e.notify(&report).await?;
                            Ok(report)
                        })
                    })
                    .await?;
                let _ = reply.send(out.map_err(RuntimeError::from));
            }
            Command::Revert(id, why, reply) => {
                let out = self
                    .step("revert", cycle_summary, move |e| {
                        let report = e.revert(id, &why)?;
                        rt.block_on(e.notify(&report))?;
                        Ok(report)
                    })
                    .await?;
                let _ = reply.send(out.map_err(RuntimeError::from));
            }
            Command::Pause(area, why, reply) => {
                let out = self
                    .step(
                        "pause",
                        |_| "paused".into(),
                        move |e| e.pause(area.as_deref(), &why),
                    )
                    .await?;
                let _ = reply.send(out.map_err(RuntimeError::from));
            }
            Command::Resume(area, reply) => {
                let out = self
                    .step(
                        "resume",
                        |was: &bool| if *was { "resumed" } else { "was not paused" }.into(),
                        move |e| e.resume(area.as_deref()),
                    )
                    .await?;
                let _ = reply.send(out.map_err(RuntimeError::from));
            }
            Command::Status(reply) => {
                let out = self.on_blocking(|e| e.status()).await?;
                let _ = reply.send(out.map_err(RuntimeError::from));
            }
            Command::Reload(build, reply) => {
                let out = self.reload(build).await?;
                let _ = reply.send(out);
            }
        }
        Ok(())
    }

    /// Builds the replacement on a blocking thread and swaps it in, or records why not.
    async fn reload(
        &mut self,
        build: ReloadFn,
    ) -> Result<Result<String, RuntimeError>, RuntimeError> {
        let current = self
            .held
            .as_ref()
            .and_then(|h| h.engine.state_dir().map(|d| d.to_path_buf()));
        let built = tokio::task::spawn_blocking(build)
            .await
            .map_err(|e| RuntimeError::Panicked(e.to_string()))?;
        let checked = built.and_then(|r| {
            let new = r.engine.state_dir().map(|d| d.to_path_buf());
            if new == current {
                Ok(r)
            } else {
                Err(format!(
                    "the state dir cannot change while running ({} → {}); restart kaizen to move it",
                    current.map(|d| d.display().to_string()).unwrap_or_default(),
                    new.map(|d| d.display().to_string()).unwrap_or_default()
                )
                .into())
            }
        });
        let (result, event) = match checked {
            Ok(r) => {
                let event = crate::event::EngineEvent::ConfigReloaded {
                    what: r.what.clone(),
                };
                if let Some(h) = self.held.as_mut() {
                    // The old engine (and its ledger connection) goes; the lock stays held.
                    h.engine = r.engine;
                }
                self.clock = self
                    .held
                    .as_ref()
                    .map(|h| h.engine.clock())
                    .unwrap_or_else(|| self.clock.clone());
                if let Ok(mut s) = self.shared.stalled_after.lock() {
                    *s = stalled_after(&r.schedule);
                }
                self.schedule.set_config(r.schedule);
                if let Some(l) = r.learner {
                    self.learner = Some(l);
                }
                (Ok(event.to_string()), event)
            }
            Err(e) => {
                let event = crate::event::EngineEvent::ReloadFailed {
                    error: e.to_string(),
                };
                (Err(RuntimeError::Reload(e)), event)
            }
        };
        let detail = event.to_string();
        let recorded = self
            .step("reload", |_| detail, move |e| e.record(&event))
            .await?;
        if let Err(e) = recorded {
            tracing::error!("kaizen stage=runtime cannot record the reload: {e}");
        }
        if let Err(e) = &result {
            // Degraded until a good file is reloaded: what runs is not what is on disk.
            self.record_step("reload", false, e.to_string());
        }
        Ok(result)
    }
}

fn cycle_summary(r: &CycleReport) -> String {
    format!(
        "{} sample(s), {} applied, {} validated, {} reverted, {} escalation(s)",
        r.samples,
        r.applied.len(),
        r.validated.len(),
        r.reverted.len(),
        r.escalations.len()
    )
}

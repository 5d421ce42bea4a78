//! The runtime driven by steps (`Worker::start`, `run_due`, `next_due`), as the simulator drives
//! it: the schedule's tasks at the clock's now, and snapshots that agree with a fresh read after
//! every tick (an observe tick that records only samples updates them from those samples).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use kaizen_core::clock::ManualClock;
use kaizen_core::config::{Config, ScheduleConfig};
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::health::Health;
use kaizen_core::ledger::Ledger;
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::runtime::{Runtime, TaskOutcome, Worker};
use kaizen_core::schedule::Schedule;
use kaizen_core::signal::Sample;
use kaizen_core::sim::DirectApplier;
use kaizen_core::span::Span;
use kaizen_core::validate::SimpleValidator;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `latency_ms` rising by 10 each tick; fails while `down` is set.
struct Rising {
    n: AtomicU64,
    down: Arc<AtomicBool>,
}

#[async_trait]
impl Source for Rising {
    fn name(&self) -> &str {
        "latency_ms"
    }
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SourceError::new("latency_ms", "connection refused"));
        }
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        Ok(vec![Sample::new(
            "latency_ms",
            now,
            150.0 + 10.0 * n as f64,
        )])
    }
}

fn start() -> DateTime<Utc> {
    "2026-01-05T00:00:00Z".parse().unwrap()
}

/// Signals as the handle's snapshot shows them vs. read afresh from the engine.
fn agree(worker: &Worker, handle: &kaizen_core::runtime::Handle) -> Health {
    let engine = worker.engine().unwrap();
    let fresh = engine.status().unwrap();
    // The engine answers each signal's newest samples from what it keeps between steps: the
    // same as reading them from the ledger.
    let read = kaizen_core::status::StatusSnapshot::compute(
        engine.ledger(),
        engine.settings(),
        engine.state_dir(),
        engine.now(),
    )
    .unwrap();
    assert_eq!(fresh, read);
    let shown = handle.last_status().unwrap();
    assert_eq!(shown.at, fresh.at);
    for (a, b) in shown.signals.iter().zip(&fresh.signals) {
        assert_eq!(
            (a.value, a.at, a.alerting, a.cadence),
            (b.value, b.at, b.alerting, b.cadence),
            "{}",
            a.signal
        );
    }
    let fresh_health = Health::compute(&fresh, engine.ledger()).unwrap();
    let shown_health = handle.health().unwrap();
    assert_eq!(shown_health.signals, fresh_health.signals);
    shown_health
}

#[tokio::test]
async fn stepping_runs_the_schedule_and_keeps_the_snapshots_true() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(start());
    let down = Arc::new(AtomicBool::new(false));
    let rising = Rising {
        n: AtomicU64::new(0),
        down: down.clone(),
    };
    let (handle, mut worker) = worker_with(dir.path(), &clock, Box::new(rising));
    worker.start().await.unwrap();
    worker.start().await.unwrap(); // idempotent: the lock is not taken twice
    assert!(handle.is_running());

    let mut kinds = Vec::new();
    let mut now = start();
    while now <= start() + Duration::hours(2) {
        clock.set(now);
        // The source is down for two ticks in the second hour.
        let outage =
            now >= start() + Duration::minutes(80) && now < start() + Duration::minutes(90);
        down.store(outage, Ordering::SeqCst);
        for outcome in worker.run_due().await.unwrap() {
            kinds.push(match outcome {
                TaskOutcome::Observed(Ok(_)) => "observe",
                TaskOutcome::Observed(Err(e)) => panic!("{e}"),
                TaskOutcome::Cycled(r) => {
                    r.unwrap();
                    "cycle"
                }
                TaskOutcome::Learned(None) => "learn (no learner)",
                TaskOutcome::Reviewed(r) => {
                    r.unwrap();
                    "review"
                }
                other => panic!("unexpected {other:?}"),
            });
        }
        let health = agree(&worker, &handle);
        let stale = health.signals["latency_ms"].stale.is_some();
        assert_eq!(stale, outage, "at {now}: {health:?}");
        let next = worker.next_due();
        assert!(next > now);
        now = next;
    }
    // Held for the first hour, then hourly; observing every 5 minutes in between.
    assert_eq!(
        kinds[..3],
        ["observe", "learn (no learner)", "review"],
        "{kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "cycle").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "observe").count(), 25 - 2);
    let last = handle.last_status().unwrap();
    assert!(last.signals[0].alerting, "{last:?}");
    drop(worker);
}

/// `latency_ms` from the clock alone (so two engines see the same series); down from minute
/// 80 to minute 90 of each run.
struct ByTime;

#[async_trait]
impl Source for ByTime {
    fn name(&self) -> &str {
        "latency_ms"
    }
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let minutes = (now - start()).num_minutes();
        if (80..90).contains(&(minutes % 180)) {
            return Err(SourceError::new("latency_ms", "connection refused"));
        }
        Ok(vec![Sample::new(
            "latency_ms",
            now,
            150.0 + (minutes % 97) as f64,
        )])
    }
}

/// A runtime pair on an in-memory ledger with `source` for `latency_ms`: observing every 5
/// minutes, cycles hourly but held for the first hour.
fn worker_with(
    dir: &std::path::Path,
    clock: &ManualClock,
    source: Box<dyn Source>,
) -> (kaizen_core::runtime::Handle, Worker) {
    let config = Config::parse(
        "signals:\n  latency_ms: { unit: ms, better: lower, alert_above: 200 }\n",
        &dir.join("kaizen.yaml"),
    )
    .unwrap();
    let engine = Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::in_memory().unwrap())
        .source(source)
        .applier(Box::new(DirectApplier::new(dir)))
        .validator(Box::new(SimpleValidator::default()))
        .state_dir(dir.join(".kaizen"))
        .build()
        .unwrap();
    let schedule = Schedule::new(ScheduleConfig {
        observe_every: Span::minutes(5),
        cycle_every: Span::hours(1),
        learn_every: Span::days(1),
        review_every: Span::days(7),
    })
    .hold_cycles_until(start() + Duration::hours(1));
    Runtime::pair(engine, schedule)
}

/// What a driven runtime leaves behind: its ledger's events and samples, what its handle
/// shows, and how its last steps went.
fn left_behind(worker: &Worker, handle: &kaizen_core::runtime::Handle) -> String {
    let engine = worker.engine().unwrap();
    let ledger = engine.ledger();
    let events = ledger.events_after(0, 100_000).unwrap();
    let samples = ledger
        .samples("latency_ms", start(), start() + Duration::days(30))
        .unwrap();
    format!(
        "{events:?}\n{samples:?}\n{:?}\n{:?}\n{:?}",
        handle.last_status(),
        handle.health(),
        handle.last_steps()
    )
}

#[tokio::test]
async fn observe_ticks_run_together_leave_what_ticks_run_one_by_one_leave() {
    let end = start() + Duration::hours(7);
    // One by one: the clock set to each due instant, `run_due` there.
    let dir_a = tempfile::tempdir().unwrap();
    let clock_a = ManualClock::at(start());
    let (handle_a, mut a) = worker_with(dir_a.path(), &clock_a, Box::new(ByTime));
    a.start().await.unwrap();
    let mut now = start();
    let mut observed_a = Vec::new();
    loop {
        clock_a.set(now);
        for outcome in a.run_due().await.unwrap() {
            if let TaskOutcome::Observed(n) = outcome {
                observed_a.push((now, n.map_err(|e| e.to_string())));
            }
        }
        let next = a.next_due();
        if next > end {
            break;
        }
        now = next;
    }

    // Together: `run_due` where something else is due, the observe ticks between in one run.
    let dir_b = tempfile::tempdir().unwrap();
    let clock_b = ManualClock::at(start());
    let (handle_b, mut b) = worker_with(dir_b.path(), &clock_b, Box::new(ByTime));
    b.start().await.unwrap();
    let mut now = start();
    let mut observed_b = Vec::new();
    let mut runs = 0;
    loop {
        clock_b.set(now);
        for outcome in b.run_due().await.unwrap() {
            if let TaskOutcome::Observed(n) = outcome {
                observed_b.push((now, n.map_err(|e| e.to_string())));
            }
        }
        let ticks = b.run_observe_ticks(&clock_b, end).await.unwrap();
        runs += usize::from(!ticks.is_empty());
        for (at, n) in ticks {
            observed_b.push((at, n.map_err(|e| e.to_string())));
        }
        // The snapshots agree with a fresh read after each run.
        agree(&b, &handle_b);
        let next = b.next_due();
        if next > end {
            break;
        }
        now = next;
    }
    assert_eq!(observed_a, observed_b);
    // A source that fails is a gap recorded (an event: the views are read afresh), not a
    // failed tick.
    assert!(
        observed_a.iter().any(|(_, n)| *n == Ok(0)),
        "the outage is in the run: {observed_a:?}"
    );
    assert!(runs > 6 && runs < observed_b.len(), "{runs} runs");
    assert_eq!(
        left_behind(&a, &handle_a).replace(&dir_a.path().display().to_string(), "DIR"),
        left_behind(&b, &handle_b).replace(&dir_b.path().display().to_string(), "DIR")
    );
}

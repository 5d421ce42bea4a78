//! Issue 8, no floods: while an area is frozen or a change waits in the backlog, a rule that keeps
//! firing is one row per distinct change with a repeat count — not a new intervention per cycle.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use kaizen_core::clock::{Clock, ManualClock};
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::intervention::{Outcome, Status};
use kaizen_core::ledger::Ledger;
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::signal::Sample;
use kaizen_core::sim::DirectApplier;
use kaizen_core::validate::{Figures, Look, ValidationRequest, Validator, Verdict};
use std::sync::Arc;

struct Constant;

#[async_trait]
impl Source for Constant {
    fn name(&self) -> &str {
        "constant"
    }
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        Ok(vec![Sample::new("latency_ms", now, 250.0)])
    }
}

/// Every final look: no effect (a change that truly did nothing, judged on full data).
struct NoEffect;

impl Validator for NoEffect {
    fn name(&self) -> &str {
        "no-effect"
    }
    fn validate(&self, req: &ValidationRequest<'_>) -> Verdict {
        Verdict {
            outcome: if req.look == Look::Interim {
                Outcome::Inconclusive
            } else {
                Outcome::NoEffect
            },
            summary: "no effect: the predicted -20% is ruled out".into(),
            figures: Figures::default(),
        }
    }
}

fn engine(rule_risk: &str, clock: &ManualClock, dir: &std::path::Path) -> Engine {
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/app.yaml"), "cache_mb: 64\n").unwrap();
    let config = Config::parse(
        // Threshold 0: this test is about the freeze, not calibrated autonomy (which would ask
        // for approval after two failures, before the third rollback could freeze the area).
        "confidence_threshold: 0\nsignals:\n  latency_ms: { unit: ms, better: lower }\nguards: { dedup_window: 30m, daily_budget: 50, freeze_after_rollbacks: 3, freeze_for: 24h }\nvalidate: { settle: 5m, max_extensions: 0 }\n",
        &dir.join("kaizen.yaml"),
    )
    .unwrap();
    let rules = kaizen_core::rules::RulesProposer::new(
        kaizen_core::rules::parse_rules(
            &format!("rules:\n  - id: grow\n    area: cache\n    when: {{ signal: latency_ms, above: 200 }}\n    change:\n      - config_set: {{ file: config/app.yaml, key: cache_mb, value: 256 }}\n    predict: {{ signal: latency_ms, change: \"-20%\", within: 30m }}\n    risk: {rule_risk}\n    confidence: 0.8\n    rollback: revert\n    because: misses\n"),
            &dir.join("rules.yaml"),
            &["latency_ms".to_string()].into(),
        )
        .unwrap(),
        kaizen_core::span::Span::minutes(10),
    );
    let mut engine = Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::in_memory().unwrap())
        .source(Box::new(Constant))
        .proposer(Box::new(rules))
        .applier(Box::new(DirectApplier::new(dir)))
        .validator(Box::new(NoEffect))
        .build()
        .unwrap();
    // An hour of history at the cycle's 5-minute cadence, so baselines are there from the start.
    let t0 = clock.now();
    let before: Vec<Sample> = (1..=12)
        .map(|k| Sample::new("latency_ms", t0 - Duration::minutes(5 * k), 250.0))
        .collect();
    engine.record_samples(&before).unwrap();
    engine
}

#[tokio::test]
async fn a_frozen_area_gets_one_blocked_row_with_a_repeat_count() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at("2026-04-01T00:00:00Z".parse().unwrap());
    let mut engine = engine("low", &clock, dir.path());
    let t0 = clock.now();
    // A cycle every 5 minutes for 8 hours: three no-effect rounds freeze the area, then the rule
    // keeps firing for hours.
    let mut suppressed = 0;
    for k in 0..=96 {
        clock.set(t0 + Duration::minutes(5 * k));
        suppressed += engine.cycle().await.unwrap().suppressed;
    }
    let all = engine.ledger().all().unwrap();
    let reverted = all
        .iter()
        .filter(|iv| iv.status == Status::Reverted)
        .count();
    let blocked: Vec<_> = all
        .iter()
        .filter(|iv| iv.status == Status::Blocked)
        .collect();
    assert_eq!(reverted, 3, "{all:#?}");
    assert_eq!(blocked.len(), 1, "one row for the frozen repeats: {all:#?}");
    assert!(
        blocked[0].reason.contains("frozen"),
        "{}",
        blocked[0].reason
    );
    let (repeats, last) = engine.ledger().repeats(blocked[0].id).unwrap();
    assert!(repeats >= 60, "{repeats} {last:?}");
    assert_eq!(last, Some(t0 + Duration::minutes(5 * 96)));
    assert!(suppressed as u64 >= repeats);
    let counted = engine
        .ledger()
        .repeated_since(t0 + Duration::hours(7))
        .unwrap();
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0].id, blocked[0].id);
}

#[tokio::test]
async fn a_backlog_change_is_one_row_with_a_repeat_count() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at("2026-04-01T00:00:00Z".parse().unwrap());
    // Medium risk and no canary for the area: backlog, never applied.
    let mut engine = engine("medium", &clock, dir.path());
    let t0 = clock.now();
    for k in 0..24 {
        clock.set(t0 + Duration::minutes(5 * k));
        engine.cycle().await.unwrap();
    }
    let all = engine.ledger().all().unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].status, Status::Backlog);
    assert_eq!(engine.ledger().repeats(all[0].id).unwrap().0, 23);
}

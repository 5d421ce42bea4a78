//! The engine takes interim looks only at the validator's evenly spaced points (its α is split
//! across that many), once each, and the final look once the window is due.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use kaizen_core::clock::{Clock, ManualClock};
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::intervention::{Candidate, Outcome, Status};
use kaizen_core::ledger::Ledger;
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use kaizen_core::signal::Sample;
use kaizen_core::sim::DirectApplier;
use kaizen_core::validate::{Look, ValidationRequest, Validator, Verdict};
use std::sync::{Arc, Mutex};

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

/// Proposes one fixed candidate once.
struct Once(Mutex<Option<Candidate>>);

#[async_trait]
impl Proposer for Once {
    fn name(&self) -> &str {
        "once"
    }
    async fn propose(&self, _ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        Ok(Proposals {
            candidates: self.0.lock().unwrap().take().into_iter().collect(),
            rejected: vec![],
        })
    }
}

/// When each look was taken, and which.
type Looks = Arc<Mutex<Vec<(DateTime<Utc>, Look)>>>;

/// Records the looks it is asked for; never decides before the end.
#[derive(Clone, Default)]
struct Recorder(Looks);

impl Validator for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn interim_looks(&self) -> u32 {
        10
    }
    fn validate(&self, req: &ValidationRequest<'_>) -> Verdict {
        self.0.lock().unwrap().push((req.now, req.look));
        let outcome = if req.look == Look::Interim {
            Outcome::Inconclusive
        } else {
            Outcome::Validated
        };
        Verdict {
            outcome,
            summary: "recorded".into(),
            figures: Default::default(),
        }
    }
}

#[tokio::test]
async fn interim_looks_are_spaced_and_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/app.yaml"), "cache_mb: 128\n").unwrap();
    let config = Config::parse(
        "signals:\n  latency_ms: { unit: ms, better: lower }\nvalidate: { settle: 5m }\n",
        &dir.path().join("kaizen.yaml"),
    )
    .unwrap();
    let rules = kaizen_core::rules::parse_rules(
        "rules:\n  - id: grow\n    area: cache\n    when: { signal: latency_ms, above: 200 }\n    change:\n      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }\n    predict: { signal: latency_ms, change: \"-20%\", within: 50m }\n    risk: low\n    confidence: 0.8\n    rollback: revert\n    because: misses\n",
        &dir.path().join("rules.yaml"),
        &["latency_ms".to_string()].into(),
    )
    .unwrap();
    let clock = ManualClock::at("2026-04-01T00:00:00Z".parse().unwrap());
    let recorder = Recorder::default();
    let mut engine = Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::in_memory().unwrap())
        .source(Box::new(Constant))
        .proposer(Box::new(Once(Mutex::new(Some(rules[0].candidate.clone())))))
        .applier(Box::new(DirectApplier::new(dir.path())))
        .validator(Box::new(recorder.clone()))
        .build()
        .unwrap();
    let t0 = clock.now();
    // An hour of samples before the rule fires, so its baseline is there.
    let before: Vec<Sample> = (1..=60)
        .map(|m| Sample::new("latency_ms", t0 - Duration::minutes(m), 250.0))
        .collect();
    engine.record_samples(&before).unwrap();
    // A cycle every minute through the 5m settle + 50m window and a little beyond.
    for m in 0..=60 {
        clock.set(t0 + Duration::minutes(m));
        engine.cycle().await.unwrap();
    }
    let looks = recorder.0.lock().unwrap().clone();
    let interim: Vec<i64> = looks
        .iter()
        .filter(|(_, l)| *l == Look::Interim)
        .map(|(t, _)| (*t - t0).num_minutes())
        .collect();
    // Window 50m after a 5m settle, split in 10: looks at 5+5k minutes, k = 1..9.
    assert_eq!(
        interim,
        vec![10, 15, 20, 25, 30, 35, 40, 45, 50],
        "{looks:?}"
    );
    let finals: Vec<_> = looks.iter().filter(|(_, l)| *l != Look::Interim).collect();
    assert_eq!(finals.len(), 1, "{looks:?}");
    assert_eq!((finals[0].0 - t0).num_minutes(), 55);
    let iv = engine.ledger().all().unwrap().remove(0);
    assert_eq!(iv.status, Status::Validated);
}

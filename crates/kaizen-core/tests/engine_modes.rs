//! Issue 13, modes per area: `modes: { search: manual }` over the global `mode` decides what
//! happens to each area's guarded candidates, and reconciliation leaves a manual area's
//! `proposed` rows alone in an otherwise autonomous loop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use kaizen_core::clock::{Clock as _, ManualClock};
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::intervention::{Candidate, Status};
use kaizen_core::ledger::Ledger;
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use kaizen_core::signal::Sample;
use kaizen_core::sim::DirectApplier;
use kaizen_core::validate::SimpleValidator;
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

struct Once(Mutex<Vec<Candidate>>);

#[async_trait]
impl Proposer for Once {
    fn name(&self) -> &str {
        "once"
    }
    async fn propose(&self, _ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        Ok(Proposals {
            candidates: std::mem::take(&mut *self.0.lock().unwrap()),
            rejected: vec![],
        })
    }
}

#[tokio::test]
async fn each_area_follows_its_own_mode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/app.yaml"),
        "cache_mb: 128\nsearch_threads: 2\n",
    )
    .unwrap();
    let config = Config::parse(
        "signals:\n  latency_ms: { unit: ms, better: lower }\nmode: autonomous\nmodes: { search: manual }\n",
        &dir.path().join("kaizen.yaml"),
    )
    .unwrap();
    let rules = kaizen_core::rules::parse_rules(
        "rules:\n  - id: grow\n    area: cache\n    when: { signal: latency_ms, above: 200 }\n    change:\n      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }\n    predict: { signal: latency_ms, change: \"-20%\", within: 30m }\n    risk: low\n    confidence: 0.8\n    rollback: revert\n    because: misses\n  - id: threads\n    area: search\n    when: { signal: latency_ms, above: 200 }\n    change:\n      - config_set: { file: config/app.yaml, key: search_threads, value: 4 }\n    predict: { signal: latency_ms, change: \"-10%\", within: 30m }\n    risk: low\n    confidence: 0.8\n    rollback: revert\n    because: queueing\n",
        &dir.path().join("rules.yaml"),
        &["latency_ms".to_string()].into(),
    )
    .unwrap();
    let clock = ManualClock::at("2026-04-01T00:00:00Z".parse().unwrap());
    let mut engine = Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::in_memory().unwrap())
        .source(Box::new(Constant))
        .proposer(Box::new(Once(Mutex::new(
            rules.iter().map(|r| r.candidate.clone()).collect(),
        ))))
        .applier(Box::new(DirectApplier::new(dir.path())))
        .validator(Box::new(SimpleValidator::default()))
        .build()
        .unwrap();
    let t0 = clock.now();
    let before: Vec<Sample> = (1..=60)
        .map(|m| Sample::new("latency_ms", t0 - Duration::minutes(m), 250.0))
        .collect();
    engine.record_samples(&before).unwrap();
    let report = engine.cycle().await.unwrap();
    let by_area = |e: &Engine, area: &str| {
        e.ledger()
            .all()
            .unwrap()
            .into_iter()
            .find(|i| i.candidate.area == area)
            .unwrap()
    };
    let cache = by_area(&engine, "cache");
    let search = by_area(&engine, "search");
    assert_eq!(cache.status, Status::Applied, "{:?}", report.lines);
    assert_eq!(search.status, Status::Proposed, "{:?}", report.lines);
    assert!(
        engine
            .ledger()
            .events_for(search.id)
            .unwrap()
            .iter()
            .any(|e| e.kind == "awaiting_approval")
    );
    let text = std::fs::read_to_string(dir.path().join("config/app.yaml")).unwrap();
    assert!(
        text.contains("cache_mb: 256") && text.contains("search_threads: 2"),
        "{text}"
    );
    // The next cycle's reconciliation does not block the manual area's proposal...
    clock.set(t0 + Duration::minutes(1));
    engine.cycle().await.unwrap();
    assert_eq!(by_area(&engine, "search").status, Status::Proposed);
    // ...and `kaizen check` does not call it stuck; a human applies it.
    assert!(
        !engine
            .check(false)
            .unwrap()
            .open()
            .any(|v| v.kind == "stuck_proposed")
    );
    engine.approve(search.id).await.unwrap();
    assert_eq!(by_area(&engine, "search").status, Status::Applied);
}

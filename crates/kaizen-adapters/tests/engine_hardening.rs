//! Issue 9 at the engine seam, for hosts that embed the loop with their own proposers or learn
//! refinements: an oversize payload never reaches git nor grows the ledger; a lesson that would
//! not load back is never committed. Real git repo, real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use kaizen_adapters::git::GitApplier;
use kaizen_core::clock::{Clock as _, ManualClock};
use kaizen_core::config::Config;
use kaizen_core::edit::Edit;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::intervention::{Candidate, ExpectedChange, Origin, Prediction, Risk, Status};
use kaizen_core::learn::LessonChange;
use kaizen_core::ledger::Ledger;
use kaizen_core::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use kaizen_core::signal::Sample;
use kaizen_core::span::Span;
use kaizen_core::validate::SimpleValidator;
use std::path::Path;
use std::sync::Arc;

mod support;
use support::{git, repo};

/// A proposer (as an embedding host might write one) that offers a 20 MB file every round.
struct Blob;

#[async_trait]
impl Proposer for Blob {
    fn name(&self) -> &str {
        "blob"
    }
    async fn propose(&self, _ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        Ok(Proposals {
            candidates: vec![Candidate {
                area: "blob".into(),
                kind: "file_write".into(),
                title: "write a blob".into(),
                hypothesis: "a big file helps".into(),
                change: vec![Edit::FileWrite {
                    file: "config/blob.txt".into(),
                    content: "x".repeat(20 * 1024 * 1024),
                }],
                prediction: Prediction {
                    signal: "latency_ms".into(),
                    change: ExpectedChange::Relative(-0.2),
                    within: Span::minutes(30),
                },
                risk: Risk::Low,
                confidence: 0.8,
                rollback: Some("revert".into()),
                origin: Origin {
                    proposer: "blob".into(),
                    ..Default::default()
                },
            }],
            rejected: Vec::new(),
        })
    }
}

fn engine(root: &Path, clock: &ManualClock) -> Engine {
    let config = Config::parse(
        "signals:\n  latency_ms:\n    unit: ms\n    better: lower\n    alert_above: 200\n",
        &root.join("kaizen.yaml"),
    )
    .unwrap();
    Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::open(&root.join(".kaizen/ledger.sqlite")).unwrap())
        .applier(Box::new(GitApplier::open(root, None).unwrap()))
        .validator(Box::new(SimpleValidator::default()))
        .proposer(Box::new(Blob))
        .build()
        .unwrap()
}

#[tokio::test]
async fn issue9_an_oversize_payload_is_blocked_by_the_guards_and_stored_bounded() {
    let dir = repo();
    let root = dir.path();
    let clock = ManualClock::at("2026-05-01T10:00:00Z".parse().unwrap());
    let mut e = engine(root, &clock);
    for _ in 0..5 {
        let now = clock.now();
        e.record_samples(&[Sample::new("latency_ms", now, 300.0)])
            .unwrap();
        e.cycle().await.unwrap();
        clock.advance(chrono::Duration::minutes(5));
    }
    let all = e.ledger().all().unwrap();
    assert!(!all.is_empty());
    for iv in &all {
        assert_ne!(iv.status, Status::Applied, "{iv:?}");
        assert!(iv.candidate.change[0].payload_bytes() < 2048);
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let state = root.join(".kaizen");
    let total = size(&state.join("ledger.sqlite")) + size(&state.join("ledger.sqlite-wal"));
    assert!(total < 2 * 1024 * 1024, "ledger grew to {total} bytes");
    assert!(!root.join("config/blob.txt").exists());
    assert_eq!(git(root, &["rev-list", "--count", "HEAD"]).trim(), "1");
}

const LESSON: &str = r#"id: L-cache
scope:
  area: cache
when: the cache is too small
prefer: grow it
because: misses dominate latency
falsifiable: "latency_ms median_1h above 5"
retired_when: "latency_ms median_24h outside [100, 400]"
created: 2026-03-01T00:00:00Z
"#;

#[test]
fn issue9_a_lesson_that_would_not_load_back_is_never_committed() {
    let dir = repo();
    let root = dir.path();
    let clock = ManualClock::at("2026-05-01T10:00:00Z".parse().unwrap());
    let mut e = engine(root, &clock);
    let good = kaizen_core::lesson::new_lesson_from_yaml(LESSON, Path::new("x.yaml")).unwrap();
    // What a host's refinement (an LLM's rewording) might hand back.
    let mut hostile = good.clone();
    hostile.id = "L-hostile".into();
    hostile.retired_when = "latency_ms median_99999999d outside [1, 2]".into();
    let report = e
        .commit_learn(
            vec![LessonChange::Create(hostile), LessonChange::Create(good)],
            Vec::new(),
            "test",
            &root.join("lessons"),
        )
        .unwrap();
    assert!(report.commit.is_some());
    assert!(root.join("lessons/L-cache.yaml").exists());
    assert!(!root.join("lessons/L-hostile.yaml").exists());
    assert!(
        report
            .load_errors
            .iter()
            .any(|l| l.contains("L-hostile") && l.contains("retired_when")),
        "{:?}",
        report.load_errors
    );
    let now = clock.now();
    let refused: Vec<_> = e
        .ledger()
        .events_between(Span::hours(1).before(now), now)
        .unwrap()
        .into_iter()
        .filter(|ev| ev.kind == "lesson_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(git(root, &["status", "--porcelain"]), "");
}

//! Switchback confirmation through the engine: the flip schedule, one commit per flip with its
//! `Kaizen-Switchback` trailer (checked with the `git` CLI), the ledger's block records, the
//! verdict and the end state; a crash between a flip's pending marker and its commit; a human's
//! commit mid-switchback. Real git repository, real SQLite file, a settable clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use kaizen_adapters::git::GitApplier;
use kaizen_core::apply::{Applier, Flip};
use kaizen_core::clock::{Clock as _, ManualClock};
use kaizen_core::config::Config;
use kaizen_core::engine::{CycleReport, Engine, EngineSettings};
use kaizen_core::event::EngineEvent;
use kaizen_core::intervention::{InterventionId, Outcome, Status};
use kaizen_core::ledger::{Ledger, SwitchbackState, SwitchbackTrigger};
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::signal::Sample;
use kaizen_core::validate::HonestValidator;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod support;
use support::{Once, cache_candidate, git, identity, repo};

/// `latency_ms` as the service would show it: about 300 with `cache_mb: 128`, about 150 once
/// `cache_mb: 256` is in the file (read at every sample), with a little deterministic noise.
struct FileLatency(PathBuf);

#[async_trait]
impl Source for FileLatency {
    fn name(&self) -> &str {
        "file"
    }
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let text = std::fs::read_to_string(self.0.join("config/app.yaml")).unwrap_or_default();
        Ok(vec![Sample::new("latency_ms", now, level(&text, now))])
    }
}

fn level(config: &str, at: DateTime<Utc>) -> f64 {
    let base = if config.contains("cache_mb: 256") {
        150.0
    } else {
        300.0
    };
    // ±10, fixed by the minute.
    let k = (at.timestamp() / 60) as u64;
    let noise = (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f64 / (1u64 << 24) as f64;
    base + 20.0 * (noise - 0.5)
}

const START: &str = "2026-05-01T10:00:00Z";

fn config(root: &Path) -> Config {
    Config::parse(
        "signals:\n  latency_ms:\n    unit: ms\n    better: lower\n    alert_above: 200\n\
         validate:\n  settle: 5m\n  designs: { cache: switchback }\n  switchback_blocks: 8\n",
        &root.join("kaizen.yaml"),
    )
    .unwrap()
}

fn engine(root: &Path, clock: &ManualClock, propose: bool) -> Engine {
    let mut b = Engine::builder(EngineSettings::from_config(&config(root)))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::open(&root.join(".kaizen/ledger.sqlite")).unwrap())
        .applier(Box::new(
            GitApplier::open(root, None)
                .unwrap()
                .with_clock(Arc::new(clock.clone())),
        ))
        .validator(Box::new(HonestValidator::default()))
        .source(Box::new(FileLatency(root.to_path_buf())));
    if propose {
        b = b.proposer(Box::new(Once::new(cache_candidate("once"))));
    }
    b.build().unwrap()
}

/// Two hours of samples at 5-minute cadence before `START`, so the baseline is covered and the
/// correlation time can be measured.
fn history(root: &Path) {
    let mut ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).unwrap();
    let start: DateTime<Utc> = START.parse().unwrap();
    let samples: Vec<Sample> = (1..=24)
        .rev()
        .map(|i| {
            let at = start - Duration::minutes(5 * i);
            Sample::new("latency_ms", at, level("cache_mb: 128", at))
        })
        .collect();
    ledger.record_samples(&samples).unwrap();
}

/// Every commit on HEAD carrying a `Kaizen-Switchback` trailer, oldest first: (sha, trailer,
/// state, message).
fn flips(root: &Path) -> Vec<(String, String, String, String)> {
    let log = git(
        root,
        &[
            "log",
            "--reverse",
            "--format=%H%x1f%B%x1e",
            "--grep=Kaizen-Switchback",
        ],
    );
    log.split('\u{1e}')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let (sha, body) = c.trim().split_once('\u{1f}').unwrap();
            let trailer = |name: &str| {
                body.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .to_string()
            };
            (
                sha.to_string(),
                trailer("Kaizen-Switchback"),
                trailer("Kaizen-Switchback-State"),
                body.to_string(),
            )
        })
        .collect()
}

async fn cycle_until(
    e: &mut Engine,
    clock: &ManualClock,
    id: InterventionId,
    done: impl Fn(&Engine) -> bool,
) -> Vec<CycleReport> {
    let mut reports = Vec::new();
    for _ in 0..200 {
        if done(e) {
            return reports;
        }
        clock.advance(Duration::minutes(5));
        reports.push(e.cycle().await.unwrap());
    }
    panic!(
        "{id} never got there: {:?}",
        e.ledger().get(id).map(|i| i.status)
    );
}

#[tokio::test]
async fn a_switchback_flips_in_blocks_records_every_flip_and_keeps_a_validated_change() {
    let dir = repo();
    let root = dir.path();
    history(root);
    let clock = ManualClock::at(START.parse().unwrap());
    let mut e = engine(root, &clock, true);
    let first = e.cycle().await.unwrap();
    let id = *first.applied.first().expect("applied in the first cycle");
    let apply_sha = e.ledger().get(id).unwrap().commit.unwrap();

    // After the settle time the switchback starts: the plan is stored with every block.
    let reports = cycle_until(&mut e, &clock, id, |e| {
        e.ledger().switchback(id).unwrap().is_some()
    })
    .await;
    let started = reports
        .iter()
        .flat_map(|r| &r.events)
        .find_map(|ev| match ev {
            EngineEvent::SwitchbackStarted {
                trigger,
                blocks,
                assignment,
                ..
            } => Some((*trigger, *blocks, assignment.clone())),
            _ => None,
        })
        .expect("switchback started");
    assert_eq!(started.0, SwitchbackTrigger::Design);
    assert_eq!(started.1, 8);
    assert_eq!(started.2.matches('1').count(), 4, "{}", started.2);
    let sb = e.ledger().switchback(id).unwrap().unwrap();
    assert_eq!(sb.state, SwitchbackState::Running);
    let plan = sb.plan.clone().unwrap();
    assert_eq!(plan.plan.blocks, 8);
    assert!(plan.plan.block > plan.correlation, "{plan:?}");
    assert_eq!(
        plan.seed,
        kaizen_core::validate::switchback::seed_for(&id.to_string())
    );
    assert_eq!(sb.blocks.len(), 8);
    // Still one intervention, still applied.
    assert_eq!(e.ledger().all().unwrap().len(), 1);
    assert_eq!(e.ledger().get(id).unwrap().status, Status::Applied);

    let reports = cycle_until(&mut e, &clock, id, |e| {
        e.ledger().get(id).unwrap().is_final()
    })
    .await;
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Validated, "{}", iv.reason);
    assert_eq!(iv.outcome, Some(Outcome::Validated));
    let verdict = e.ledger().verdict(id).unwrap().unwrap();
    assert_eq!(verdict.figures.method, "switchback_permutation");
    assert!(
        verdict
            .summary
            .contains("switchback permutation test over 8 of 8 blocks"),
        "{}",
        verdict.summary
    );
    assert!(reports.iter().flat_map(|r| &r.events).any(|ev| matches!(
        ev,
        EngineEvent::SwitchbackFinished {
            outcome: Outcome::Validated,
            ..
        }
    )));

    // Every state change of the schedule is one commit with its trailers, in order, and the
    // ledger records each block's flip commit; blocks that keep the state have none.
    let sb = e.ledger().switchback(id).unwrap().unwrap();
    assert_eq!(sb.state, SwitchbackState::Finished);
    let mut expected = Vec::new();
    let mut on = true;
    for b in sb.planned() {
        if b.on != on {
            expected.push((
                Flip::block_marker(id, b.index),
                if b.on { "on" } else { "off" },
            ));
            on = b.on;
        }
        assert_eq!(
            b.flip_commit.is_some(),
            expected
                .last()
                .is_some_and(|(m, _)| *m == Flip::block_marker(id, b.index)),
            "block {}",
            b.index
        );
        assert!(
            b.samples.unwrap_or(0) >= 3,
            "block {} measured {:?}",
            b.index,
            b.samples
        );
        assert!(!b.pending);
    }
    if !on {
        expected.push((Flip::end_marker(id), "on"));
    }
    let log = flips(root);
    eprintln!(
        "plan {plan:?}\nassignment {}\nflips {:?}\nverdict {}",
        started.2,
        log.iter().map(|f| &f.1).collect::<Vec<_>>(),
        verdict.summary
    );
    let got: Vec<(String, &str)> = log
        .iter()
        .map(|(_, m, s, _)| (m.clone(), s.as_str()))
        .collect();
    assert_eq!(got, expected);
    for (sha, marker, _, body) in &log {
        assert!(
            body.contains(&format!("Kaizen-Intervention: {id}")),
            "{body}"
        );
        assert!(body.contains("Kaizen-Audit: "), "{body}");
        assert!(!body.contains("Kaizen-Reverts"), "{body}");
        let row = sb
            .blocks
            .iter()
            .find(|b| b.flip_commit.as_deref() == Some(sha.as_str()))
            .unwrap_or_else(|| panic!("flip {marker} {sha} not in the ledger"));
        assert!(marker.ends_with(&row.index.to_string()) || marker.ends_with("/end"));
    }
    // Per-block values show the change: on blocks near 150, off blocks near 300.
    for b in sb.planned() {
        let v = b.value.unwrap();
        if b.on {
            assert!((130.0..170.0).contains(&v), "block {} on: {v}", b.index);
        } else {
            assert!((280.0..320.0).contains(&v), "block {} off: {v}", b.index);
        }
    }
    // The validated change stays on, and the apply commit is still the one recorded.
    assert_eq!(
        std::fs::read_to_string(root.join("config/app.yaml")).unwrap(),
        "cache_mb: 256\n"
    );
    assert_eq!(iv.commit.as_deref(), Some(apply_sha.as_str()));
    assert_eq!(git(root, &["status", "--porcelain"]), "");
    // Ledger and history agree (flip commits included).
    let check = e.check(false).unwrap();
    assert!(check.violations.is_empty(), "{:?}", check.violations);
}

#[tokio::test]
async fn a_flip_interrupted_after_its_commit_is_reconciled_by_its_trailer_once() {
    let dir = repo();
    let root = dir.path();
    history(root);
    let clock = ManualClock::at(START.parse().unwrap());
    let mut e = engine(root, &clock, true);
    let id = *e.cycle().await.unwrap().applied.first().unwrap();
    cycle_until(&mut e, &clock, id, |e| {
        e.ledger().switchback(id).unwrap().is_some()
    })
    .await;
    let sb = e.ledger().switchback(id).unwrap().unwrap();
    // The next block whose state differs from the one in force.
    let now = clock.now();
    let current = sb.current_on();
    let next = sb
        .planned()
        .find(|b| b.starts_at > now && b.on != current)
        .cloned()
        .expect("a later flip");
    drop(e);

    // The engine's flip sequence, killed right after the commit: marker set, commit made, and
    // the process dies before the ledger learns its sha.
    clock.set(next.starts_at);
    {
        let mut ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).unwrap();
        ledger
            .begin_flip(id, next.index, next.on, clock.now())
            .unwrap();
        let iv = ledger.get(id).unwrap();
        let undoes = sb.undoes(next.on, iv.commit.as_deref().unwrap()).unwrap();
        GitApplier::open(root, None)
            .unwrap()
            .flip(
                id,
                None,
                &Flip {
                    marker: Flip::block_marker(id, next.index),
                    on: next.on,
                    undoes,
                    title: iv.candidate.title.clone(),
                    reason: "test".into(),
                },
            )
            .unwrap();
    }
    let before = flips(root).len();
    let mut e = engine(root, &clock, false);
    let report = e.cycle().await.unwrap();
    assert!(
        report.events.iter().any(|ev| matches!(
            ev,
            EngineEvent::SwitchbackFlip { stage: kaizen_core::event::Stage::Reconcile, block, .. } if *block == next.index
        )),
        "{:?}",
        report.lines
    );
    let sb = e.ledger().switchback(id).unwrap().unwrap();
    let row = sb.blocks.iter().find(|b| b.index == next.index).unwrap();
    assert!(!row.pending);
    assert_eq!(
        row.flip_commit.as_deref(),
        Some(flips(root).last().unwrap().0.as_str())
    );
    // Not flipped twice.
    assert_eq!(flips(root).len(), before);
    assert_eq!(sb.current_on(), next.on);

    // Interrupted before its commit: the marker is cleared and the flip is made once.
    let later = sb
        .planned()
        .find(|b| b.starts_at > next.starts_at && b.on != next.on)
        .cloned();
    eprintln!(
        "next {} later {:?}",
        next.index,
        later.as_ref().map(|b| b.index)
    );
    if let Some(later) = later {
        drop(e);
        clock.set(later.starts_at);
        Ledger::open(&root.join(".kaizen/ledger.sqlite"))
            .unwrap()
            .begin_flip(id, later.index, later.on, clock.now())
            .unwrap();
        let before = flips(root).len();
        let mut e = engine(root, &clock, false);
        e.cycle().await.unwrap();
        let sb = e.ledger().switchback(id).unwrap().unwrap();
        let row = sb.blocks.iter().find(|b| b.index == later.index).unwrap();
        assert!(!row.pending);
        assert!(row.flip_commit.is_some());
        assert_eq!(flips(root).len(), before + 1);
        assert_eq!(
            flips(root).last().unwrap().1,
            Flip::block_marker(id, later.index)
        );
    }
}

#[tokio::test]
async fn a_human_commit_mid_switchback_stops_it_escalates_and_keeps_the_human_work() {
    let dir = repo();
    let root = dir.path();
    history(root);
    let clock = ManualClock::at(START.parse().unwrap());
    let mut e = engine(root, &clock, true);
    let id = *e.cycle().await.unwrap().applied.first().unwrap();
    cycle_until(&mut e, &clock, id, |e| {
        e.ledger().switchback(id).unwrap().is_some()
    })
    .await;
    // A human adds a key to the same file and commits it.
    let path = root.join("config/app.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}workers: 4\n")).unwrap();
    identity(root, "Human");
    git(root, &["commit", "-q", "-am", "more workers"]);
    clock.advance(Duration::minutes(5));
    let report = e.cycle().await.unwrap();
    assert!(
        report
            .events
            .iter()
            .any(|ev| matches!(ev, EngineEvent::SwitchbackStopped { reason, .. } if reason.contains("human commit"))),
        "{:?}",
        report.lines
    );
    assert!(
        report
            .escalations
            .iter()
            .any(|t| t.contains("switchback stopped")),
        "{:?}",
        report.escalations
    );
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Reverted, "{}", iv.reason);
    assert_eq!(iv.outcome, Some(Outcome::Inconclusive));
    assert_eq!(
        e.ledger().switchback(id).unwrap().unwrap().state,
        SwitchbackState::Stopped
    );
    // The change is off; the human's line stays.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("cache_mb: 128"), "{text}");
    assert!(text.contains("workers: 4"), "{text}");
    assert_eq!(git(root, &["status", "--porcelain"]), "");
}

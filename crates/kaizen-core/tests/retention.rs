//! `retention:` (issue 12): raw samples folded into hourly aggregates on a real SQLite file,
//! bounded passes, merges instead of overwrites, and never what a live intervention needs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use chrono::{DateTime, Duration, Utc};
use kaizen_core::clock::ManualClock;
use kaizen_core::config::Config;
use kaizen_core::edit::Edit;
use kaizen_core::engine::{CycleReport, Engine, EngineSettings};
use kaizen_core::event::Stage;
use kaizen_core::intervention::{Candidate, ExpectedChange, Origin, Prediction, Risk};
use kaizen_core::ledger::Ledger;
use kaizen_core::signal::Sample;
use kaizen_core::sim::DirectApplier;
use kaizen_core::span::Span;
use kaizen_core::validate::SimpleValidator;
use std::sync::Arc;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// `days` of 5-minute samples of `signal` ending at `end` (value = minute of the hour, so
/// each hour's mean is known: 27.5).
fn fill(ledger: &mut Ledger, signal: &str, end: DateTime<Utc>, days: i64) -> usize {
    let n = days * 288;
    let samples: Vec<Sample> = (0..n)
        .map(|k| {
            let at = end - Duration::minutes(5 * (n - k));
            Sample::new(signal, at, f64::from(chrono::Timelike::minute(&at)))
        })
        .collect();
    ledger.record_samples(&samples).unwrap();
    samples.len()
}

fn raw_count(path: &std::path::Path, before: DateTime<Utc>) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM samples WHERE at < ?1",
        [before.timestamp_millis()],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn old_raw_samples_fold_into_hourly_aggregates_and_recent_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut ledger = Ledger::open(&path).unwrap();
    let now = t("2026-05-01T00:00:00Z");
    fill(&mut ledger, "latency_ms", now, 20);
    fill(&mut ledger, "error_rate", now, 20);
    let cutoff = now - Duration::days(14);
    let recent_before = ledger.samples("latency_ms", cutoff, now).unwrap();

    let folded = ledger.fold_samples_before(cutoff, u64::MAX).unwrap();
    assert_eq!(folded, 2 * 6 * 288, "six days of two signals");
    assert_eq!(raw_count(&path, cutoff), 0);
    assert_eq!(
        ledger.samples("latency_ms", cutoff, now).unwrap(),
        recent_before,
        "nothing at or after the cutoff is touched"
    );
    let hours = ledger
        .hourly("latency_ms", now - Duration::days(30), now)
        .unwrap();
    assert_eq!(hours.len(), 6 * 24);
    for h in &hours {
        assert_eq!(h.n, 12, "{h:?}");
        assert!((h.mean - 27.5).abs() < 1e-9, "{h:?}");
        assert_eq!((h.min, h.max), (0.0, 55.0));
    }
    // A second pass finds nothing more to do.
    assert_eq!(ledger.fold_samples_before(cutoff, u64::MAX).unwrap(), 0);
    // Aggregates past their own retention go.
    let removed = ledger
        .prune_hourly_before(now - Duration::days(17))
        .unwrap();
    assert_eq!(removed, 2 * 3 * 24);
    assert_eq!(
        ledger
            .hourly("latency_ms", now - Duration::days(30), now)
            .unwrap()
            .len(),
        3 * 24
    );
}

#[test]
fn a_pass_is_bounded_and_the_rest_waits_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut ledger = Ledger::open(&path).unwrap();
    let now = t("2026-05-01T00:00:00Z");
    fill(&mut ledger, "latency_ms", now, 20);
    let cutoff = now - Duration::days(14);
    let first = ledger.fold_samples_before(cutoff, 500).unwrap();
    assert!(
        (500..500 + 288).contains(&first),
        "stops after the chunk that reaches the bound: {first}"
    );
    assert!(raw_count(&path, cutoff) > 0);
    let mut total = first;
    while total < 6 * 288 {
        let n = ledger.fold_samples_before(cutoff, 500).unwrap();
        assert!(n > 0);
        total += n;
    }
    assert_eq!(total, 6 * 288);
    assert_eq!(raw_count(&path, cutoff), 0);
}

#[test]
fn a_late_sample_for_a_folded_hour_is_merged_not_overwritten() {
    let mut ledger = Ledger::in_memory().unwrap();
    let hour = t("2026-03-01T10:00:00Z");
    let first: Vec<Sample> = (0..4)
        .map(|i| Sample::new("x", hour + Duration::minutes(i * 10), 10.0))
        .collect();
    ledger.record_samples(&first).unwrap();
    ledger
        .fold_samples_before(hour + Duration::hours(1), u64::MAX)
        .unwrap();
    // A sample of the same hour arrives after it was folded (a backfill), and is folded too.
    ledger
        .record_samples(&[Sample::new("x", hour + Duration::minutes(55), 60.0)])
        .unwrap();
    ledger
        .fold_samples_before(hour + Duration::hours(1), u64::MAX)
        .unwrap();
    let h = ledger.hourly("x", hour, hour).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].n, 5);
    assert!((h[0].mean - 20.0).abs() < 1e-9, "{:?}", h[0]);
    assert_eq!((h[0].min, h[0].max), (10.0, 60.0));
}

fn candidate() -> Candidate {
    Candidate {
        area: "cache".into(),
        kind: "config_set".into(),
        title: "grow cache".into(),
        hypothesis: "misses dominate".into(),
        change: vec![Edit::ConfigSet {
            file: "config/app.yaml".into(),
            key: "cache_mb".into(),
            value: serde_json::json!(256),
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
            proposer: "rules".into(),
            rule: Some("grow-cache".into()),
            ..Default::default()
        },
    }
}

#[test]
fn retention_never_removes_what_a_live_intervention_needs() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "signals:\n  latency_ms: { unit: ms, better: lower }\nretention: { raw: 14d, hourly: 366d }\n",
        &dir.path().join("kaizen.yaml"),
    )
    .unwrap();
    let now = t("2026-05-01T00:00:00Z");
    let clock = ManualClock::at(now);
    let path = dir.path().join("ledger.sqlite");
    let mut engine = Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::open(&path).unwrap())
        .applier(Box::new(DirectApplier::new(dir.path())))
        .validator(Box::new(SimpleValidator::default()))
        .build()
        .unwrap();
    // A second connection writes the history (the engine's own ledger is read-only to hosts).
    let mut writer = Ledger::open(&path).unwrap();
    fill(&mut writer, "latency_ms", now, 60);
    // Applied 30 days ago and still awaiting its verdict (a long window, extended).
    let applied = now - Duration::days(30);
    let id = writer
        .insert_proposed(&candidate(), applied, "test")
        .unwrap();
    writer
        .mark_applied(
            id,
            "abc1234",
            applied,
            now + Duration::hours(1),
            Stage::Apply,
            "applied",
        )
        .unwrap();

    let mut report = CycleReport::default();
    let pass = engine.retain(&mut report).unwrap();
    let needed_from = applied - Duration::days(9);
    assert_eq!(pass.held_by, Some(id));
    assert_eq!(pass.raw_cutoff, Some(needed_from));
    assert_eq!(
        raw_count(&path, needed_from),
        0,
        "older than it needs: folded"
    );
    let baseline = engine
        .ledger()
        .samples("latency_ms", needed_from, applied)
        .unwrap();
    assert_eq!(
        baseline.len(),
        9 * 288 + 1,
        "its 9 days of history stay raw"
    );
    let events = engine
        .ledger()
        .events_between(now - Duration::minutes(1), now + Duration::minutes(1))
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "retention" && e.detail.contains(&format!("held back by {id}"))),
        "{events:?}"
    );

    // Once it is final, its history is no longer held: the cutoff is `raw` before now.
    writer
        .mark_reverted(id, "def5678", now, Stage::Validate, "no effect")
        .unwrap();
    let pass = engine.retain(&mut report).unwrap();
    assert_eq!(pass.held_by, None);
    assert_eq!(pass.raw_cutoff, Some(now - Duration::days(14)));
    assert_eq!(raw_count(&path, now - Duration::days(14)), 0);
    assert_eq!(
        engine
            .ledger()
            .hourly("latency_ms", now - Duration::days(60), now)
            .unwrap()
            .len(),
        46 * 24,
        "every folded hour has its aggregate"
    );
}

#[test]
fn retention_config_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |text: &str| Config::parse(text, &dir.path().join("kaizen.yaml"));
    let ok = parse("retention: { raw: 30d, hourly: 366d }\n").unwrap();
    assert_eq!(ok.retention.raw, Some(Span::days(30)));
    assert_eq!(
        parse("{}\n").unwrap().retention.raw,
        None,
        "default: keep all"
    );
    for (text, field) in [
        ("retention: { raw: 7d }\n", "retention.raw"),
        ("retention: { raw: 30d, hourly: 20d }\n", "retention.hourly"),
        ("retention: { raw: 30d, daily: 2y }\n", "daily"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(field), "{text}: {e}");
    }
}

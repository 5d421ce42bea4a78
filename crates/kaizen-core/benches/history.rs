//! Benchmark 3 of issue 12: history at scale. A ledger holding 5-minute samples of 100 signals
//! (a year is ≈10.5M rows) and one intervention per 1,050 samples (a year: 10k, finalized,
//! spread over the year, with their events), then, at the end of that year:
//! - the validator's window query (one signal, the 9 days of history before an apply to now),
//! - one guard pass for a candidate (`Engine::dry_guards`: the ledger view plus the chain),
//! - `kaizen status`'s snapshot (`Engine::status`),
//! - a weekly review (`MetaReview::compute` over 7 days),
//! - and the file size per million samples.
//!
//! `cargo bench -p kaizen-core --bench history`. Knob: `KAIZEN_BENCH_HISTORY_SAMPLES` (comma
//! separated total sample counts, default `105000,1050000,10500000`: the last is the issue's
//! year, its fixture ≈ 380 MB under `target/`, built in ≈ 10 s on an idle machine).
//! Fixtures are built once (bulk inserts into a ledger the product created: one transaction,
//! prepared statements, `synchronous=OFF`; a year takes about a minute) and cached under
//! `target/`. No `ANALYZE`: a product ledger has no statistics, so the queries must plan well
//! without them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on broken fixtures

#[path = "../../kaizen-cli/benches/support/mod.rs"]
mod support;

use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kaizen_core::clock::ManualClock;
use kaizen_core::config::Config;
use kaizen_core::edit::Edit;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::event::Stage;
use kaizen_core::intervention::{Candidate, ExpectedChange, Origin, Prediction, Risk};
use kaizen_core::ledger::Ledger;
use kaizen_core::review::{MetaReview, ReviewInputs};
use kaizen_core::sim::DirectApplier;
use kaizen_core::span::Span;
use kaizen_core::validate::HonestValidator;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const SIGNALS: u64 = 100;
const STEP_MS: i64 = 300_000;
const SAMPLES_PER_INTERVENTION: u64 = 1_050;

fn t0() -> DateTime<Utc> {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

fn signal(i: u64) -> String {
    format!("signal_{i:03}")
}

fn candidate(i: u64) -> Candidate {
    Candidate {
        area: format!("area_{:02}", i % 20),
        kind: "config_set".into(),
        title: format!("tune key {i}"),
        hypothesis: "the working set no longer fits".into(),
        change: vec![Edit::ConfigSet {
            file: format!("config/area_{:02}.yaml", i % 20),
            key: format!("key_{}", i % 7),
            value: serde_json::json!(i),
        }],
        prediction: Prediction {
            signal: signal(i % SIGNALS),
            change: ExpectedChange::Relative(-0.2),
            within: Span::minutes(30),
        },
        risk: Risk::Low,
        confidence: 0.8,
        rollback: Some("revert".into()),
        origin: Origin {
            proposer: "rules".into(),
            rule: Some(format!("rule_{}", i % 50)),
            ..Default::default()
        },
    }
}

/// The config: 100 signals, each with an alert threshold (so status judges every one).
fn config(dir: &Path) -> Config {
    let mut text = String::from("signals:\n");
    for i in 0..SIGNALS {
        text.push_str(&format!(
            "  {}: {{ unit: ms, better: lower, alert_above: 500 }}\n",
            signal(i)
        ));
    }
    Config::parse(&text, &dir.join("kaizen.yaml")).unwrap()
}

/// A ledger of `samples` samples ending at the returned instant, cached under `target/`.
fn fixture(samples: u64) -> (PathBuf, DateTime<Utc>) {
    let per_signal = samples / SIGNALS;
    let end = t0() + chrono::Duration::milliseconds(per_signal as i64 * STEP_MS);
    // v2: no `ANALYZE` (the product never gathers statistics, so neither does its benchmark).
    let path = bench_dir().join(format!("ledger-v2-s{samples}.sqlite"));
    let done = bench_dir().join(format!("ledger-v2-s{samples}.complete"));
    if done.exists() {
        return (path, end);
    }
    let started = Instant::now();
    let _ = std::fs::remove_file(&path);
    let mut ledger = Ledger::open(&path).unwrap();
    // One intervention made through the product's own path: its row is the template.
    let seed = ledger.insert_proposed(&candidate(0), t0(), "seed").unwrap();
    ledger
        .mark_applied(seed, "0000000", t0(), t0(), Stage::Apply, "seed")
        .unwrap();
    ledger
        .mark_reverted(seed, "1111111", t0(), Stage::Validate, "seed")
        .unwrap();
    drop(ledger);
    let mut c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "synchronous", "OFF").unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut ins = tx
            .prepare("INSERT INTO samples(signal, at, value) VALUES (?1, ?2, ?3)")
            .unwrap();
        let base = t0().timestamp_millis();
        for s in 0..SIGNALS {
            let name = signal(s);
            for k in 0..per_signal {
                let at = base + k as i64 * STEP_MS;
                let v = 200.0
                    + 50.0 * ((k as f64) * 0.0218 + s as f64).sin()
                    + ((k * 7919 + s * 104_729) % 100) as f64 * 0.3;
                ins.execute(rusqlite::params![name, at, v]).unwrap();
            }
        }
        let n = (samples / SAMPLES_PER_INTERVENTION).max(100);
        let span_ms = (end - t0()).num_milliseconds().max(1);
        let mut iv = tx
            .prepare(
                "INSERT INTO interventions(area, kind, title, hypothesis, change_json,
                   prediction_json, risk, confidence, rollback, origin_json, targets, status,
                   outcome, reason, commit_sha, revert_commit, created_at, applied_at, due_at,
                   finalized_at, pending, extensions, verdict_json, sizing_json, branch)
                 SELECT ?1, kind, ?2, hypothesis, change_json, prediction_json, risk, confidence,
                   rollback, origin_json, targets, ?3, ?4, reason, commit_sha, ?5, ?6, ?6, ?7,
                   ?7, NULL, 0, verdict_json, sizing_json, branch
                 FROM interventions WHERE id = ?8",
            )
            .unwrap();
        let mut ev = tx
            .prepare(
                "INSERT INTO events(at, intervention_id, stage, kind, detail, data_json)
                 VALUES (?1, ?2, ?3, 'status', ?4, NULL)",
            )
            .unwrap();
        for i in 1..n {
            let at = t0().timestamp_millis() + (i as i64 * span_ms) / n as i64;
            let validated = i % 3 != 0;
            let (status, outcome, revert) = if validated {
                ("validated", "validated", None)
            } else {
                ("reverted", "no_effect", Some("2222222"))
            };
            iv.execute(rusqlite::params![
                format!("area_{:02}", i % 20),
                format!("tune key {i}"),
                status,
                outcome,
                revert,
                at,
                at + 2_100_000,
                seed.0,
            ])
            .unwrap();
            let id = tx.last_insert_rowid();
            for (stage, detail, dt) in [
                ("propose", "proposed", 0),
                ("apply", "applied", 1_000),
                ("validate", status, 2_100_000),
            ] {
                ev.execute(rusqlite::params![at + dt, id, stage, detail])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    drop(c);
    std::fs::write(&done, "").unwrap();
    eprintln!(
        "history fixture of {samples} samples built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (path, end)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("history");
    g.sample_size(20).warm_up_time(Duration::from_millis(500));
    for samples in sizes(
        "KAIZEN_BENCH_HISTORY_SAMPLES",
        &[105_000, 1_050_000, 10_500_000],
    ) {
        let (path, end) = fixture(samples);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        figure(
            "history",
            "file_mb_per_million_samples",
            samples,
            size as f64 / 1e6 / (samples as f64 / 1e6),
            "MB",
        );
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let clock = ManualClock::at(end);
        let engine = Engine::builder(EngineSettings::from_config(&config))
            .clock(Arc::new(clock))
            .ledger(Ledger::open(&path).unwrap())
            .applier(Box::new(DirectApplier::new(dir.path())))
            .validator(Box::new(HonestValidator::default()))
            .build()
            .unwrap();
        let mut time = |name: &str, f: &mut dyn FnMut()| {
            let all = RefCell::new(Vec::new());
            g.bench_function(BenchmarkId::new(name, samples), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let s = Instant::now();
                        f();
                        let d = s.elapsed();
                        all.borrow_mut().push(d);
                        total += d;
                    }
                    total
                })
            });
            let (m, w) = median_worst(&mut all.borrow_mut());
            figure_ms("history", name, samples, m);
            figure_ms("history", &format!("{name}_worst"), samples, w);
        };
        // The validator's query: 9 days before an apply an hour ago, through now.
        let applied = end - chrono::Duration::hours(1);
        let from = kaizen_core::engine::HISTORY.before(applied);
        time("validator_window_query", &mut || {
            let rows = engine.ledger().samples(&signal(42), from, end).unwrap();
            assert!(!rows.is_empty());
        });
        let cand = candidate(123_456);
        time("guard_pass", &mut || {
            let v = engine.dry_guards(&cand).unwrap();
            assert!(!v.is_empty());
        });
        time("status", &mut || {
            let s = engine.status().unwrap();
            std::hint::black_box(s);
        });
        time("weekly_review", &mut || {
            let r = MetaReview::compute(
                engine.ledger(),
                ReviewInputs {
                    signals: &engine.settings().signals,
                    policy: &engine.settings().policy,
                    confidence_threshold: engine.settings().confidence_threshold,
                },
                end,
                Span::days(7),
            )
            .unwrap();
            std::hint::black_box(r);
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

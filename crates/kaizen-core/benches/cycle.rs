//! How one cycle grows with the number of signals (issue 12's "signals ×10 → cycle time ×?"):
//! `Engine::cycle` — observe (one tick of S samples, one durable transaction), reconcile,
//! validate due, the proposers' context (every signal's recent window), propose, guard — on a
//! ledger file at the product's durability (WAL, `synchronous=FULL`) holding 24 hours of
//! 5-minute history for each of S configured signals, a rule watching each signal, no alert (a
//! quiet cycle: nothing proposed, as almost every cycle of a healthy system). A cycle every 5
//! minutes of a manual clock.
//!
//! `cargo bench -p kaizen-core --bench cycle`. Knob: `KAIZEN_BENCH_CYCLE_SIGNALS` (comma
//! separated, default `10,100,1000`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on broken fixtures

#[path = "../../kaizen-cli/benches/support/mod.rs"]
mod support;

mod host_signals;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use host_signals::{Signals, value};
use kaizen_core::clock::{Clock, ManualClock};
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::ledger::Ledger;
use kaizen_core::rules::{RulesProposer, parse_rules};
use kaizen_core::signal::Sample;
use kaizen_core::sim::DirectApplier;
use kaizen_core::span::Span;
use kaizen_core::validate::HonestValidator;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn engine(n: usize, clock: &ManualClock, dir: &Path) -> Engine {
    let source = Signals::numbered(n);
    let names = source.0.clone();
    let mut config = String::from("signals:\n");
    let mut rules = String::from("rules:\n");
    for s in &names {
        writeln!(
            config,
            "  {s}: {{ unit: ms, better: lower, alert_above: 1000 }}"
        )
        .unwrap();
        writeln!(
            rules,
            "  - id: calm-{s}\n    area: {s}\n    when: {{ signal: {s}, above: 1000 }}\n    \
             change:\n      - config_set: {{ file: config/{s}.yaml, key: workers, value: 8 }}\n    \
             predict: {{ signal: {s}, change: \"-20%\", within: 30m }}\n    risk: low\n    \
             confidence: 0.8\n    rollback: revert\n    because: bench"
        )
        .unwrap();
    }
    let config = Config::parse(&config, &dir.join("kaizen.yaml")).unwrap();
    let known: BTreeSet<String> = names.iter().cloned().collect();
    let rules = parse_rules(&rules, &dir.join("rules.yaml"), &known).unwrap();
    let mut ledger = Ledger::open(&dir.join("ledger.sqlite")).unwrap();
    // 24 hours of 5-minute history per signal, in one transaction.
    let now = clock.now();
    let mut history = Vec::with_capacity(n * 288);
    for k in 1..=288 {
        let at = now - chrono::Duration::minutes(5 * k);
        history.extend(
            names
                .iter()
                .enumerate()
                .map(|(i, s)| Sample::new(s.as_str(), at, value(at, i))),
        );
    }
    ledger.record_samples(&history).unwrap();
    Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(ledger)
        .source(Box::new(source))
        .proposer(Box::new(RulesProposer::new(rules, Span::minutes(15))))
        .applier(Box::new(DirectApplier::new(dir)))
        .validator(Box::new(HonestValidator::default()))
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("cycle");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for n in sizes("KAIZEN_BENCH_CYCLE_SIGNALS", &[10, 100, 1000]) {
        let n_us = usize::try_from(n).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at("2026-01-02T00:00:00Z".parse().unwrap());
        let mut e = engine(n_us, &clock, dir.path());
        let cycles = RefCell::new(Vec::new());
        g.bench_function(BenchmarkId::new("quiet_cycle", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    clock.advance(chrono::Duration::minutes(5));
                    let s = Instant::now();
                    let report = rt.block_on(e.cycle()).unwrap();
                    let d = s.elapsed();
                    assert_eq!(report.samples, n_us, "every signal sampled");
                    assert!(report.applied.is_empty(), "a quiet cycle applies nothing");
                    cycles.borrow_mut().push(d);
                    total += d;
                }
                total
            })
        });
        let (median, worst) = median_worst(&mut cycles.borrow_mut());
        figure_ms("cycle", "quiet_cycle", n, median);
        figure_ms("cycle", "quiet_cycle_worst", n, worst);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

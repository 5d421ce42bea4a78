//! Benchmark 2 of issue 12: samples/s written through the loop's own path (one observe tick of
//! the engine: its sources sampled, the batch written by `Ledger::record_samples` — one
//! multi-row statement up to 64 samples, else one transaction of 64-row statements) against a
//! bare rusqlite loop of one-row inserts with the same schema, pragmas and transaction size, on
//! disk at the product's durability (WAL, `synchronous=FULL`) and in memory.
//!
//! `cargo bench -p kaizen-core --bench ingest`. Knob: `KAIZEN_BENCH_INGEST_SIGNALS` (samples
//! per tick = transaction size, comma separated, default `10,100,1000`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on broken fixtures

#[path = "../../kaizen-cli/benches/support/mod.rs"]
mod support;

mod host_signals;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use host_signals::Signals;
use kaizen_core::clock::{Clock, ManualClock};
use kaizen_core::config::Config;
use kaizen_core::engine::{CycleReport, Engine, EngineSettings};
use kaizen_core::ledger::Ledger;
use kaizen_core::sim::DirectApplier;
use kaizen_core::validate::HonestValidator;
use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn engine(ledger: Ledger, n: usize, clock: &ManualClock, dir: &Path) -> Engine {
    let config = Config::parse("signals: {}\n", &dir.join("kaizen.yaml")).unwrap();
    Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(ledger)
        .source(Box::new(Signals::numbered(n)))
        .applier(Box::new(DirectApplier::new(dir)))
        .validator(Box::new(HonestValidator::default()))
        .build()
        .unwrap()
}

/// The bare loop: the ledger's `samples` table, its pragmas, one transaction of `n` rows.
fn bare(path: Option<&Path>) -> rusqlite::Connection {
    let c = match path {
        Some(p) => rusqlite::Connection::open(p).unwrap(),
        None => rusqlite::Connection::open_in_memory().unwrap(),
    };
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    c.execute_batch(
        "CREATE TABLE samples (signal TEXT NOT NULL, at INTEGER NOT NULL, value REAL NOT NULL,
         PRIMARY KEY (signal, at)) WITHOUT ROWID;",
    )
    .unwrap();
    c
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("ingest");
    g.sample_size(20).warm_up_time(Duration::from_millis(500));
    for n in sizes("KAIZEN_BENCH_INGEST_SIGNALS", &[10, 100, 1000]) {
        let n_us = usize::try_from(n).unwrap();
        g.throughput(Throughput::Elements(n));
        for disk in [true, false] {
            let place = if disk { "disk_full" } else { "memory" };
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::at("2026-01-01T00:00:00Z".parse().unwrap());
            let ledger = if disk {
                Ledger::open(&dir.path().join("ledger.sqlite")).unwrap()
            } else {
                Ledger::in_memory().unwrap()
            };
            let mut e = engine(ledger, n_us, &clock, dir.path());
            let ticks = RefCell::new(Vec::new());
            g.bench_function(BenchmarkId::new(format!("kaizen_{place}"), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        clock.advance(chrono::Duration::minutes(5));
                        let mut report = CycleReport::default();
                        let s = Instant::now();
                        let got = rt.block_on(e.observe(&mut report)).unwrap();
                        let d = s.elapsed();
                        assert_eq!(got, n_us);
                        ticks.borrow_mut().push(d);
                        total += d;
                    }
                    total
                })
            });
            let conn = bare(disk.then(|| dir.path().join("bare.sqlite")).as_deref());
            let names: Vec<String> = (0..n_us).map(|i| format!("signal_{i:04}")).collect();
            let mut at = clock.now().timestamp_millis();
            let bare_ticks = RefCell::new(Vec::new());
            let conn = RefCell::new(conn);
            g.bench_function(BenchmarkId::new(format!("bare_rusqlite_{place}"), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut conn = conn.borrow_mut();
                    for _ in 0..iters {
                        at += 300_000;
                        let s = Instant::now();
                        let tx = conn.transaction().unwrap();
                        {
                            let mut stmt = tx
                                .prepare_cached(
                                    "INSERT OR REPLACE INTO samples(signal, at, value) VALUES (?1, ?2, ?3)",
                                )
                                .unwrap();
                            for (i, name) in names.iter().enumerate() {
                                stmt.execute(rusqlite::params![name, at, 100.0 + i as f64])
                                    .unwrap();
                            }
                        }
                        tx.commit().unwrap();
                        let d = s.elapsed();
                        bare_ticks.borrow_mut().push(d);
                        total += d;
                    }
                    total
                })
            });
            let (k, _) = median_worst(&mut ticks.borrow_mut());
            let (b, _) = median_worst(&mut bare_ticks.borrow_mut());
            let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-12);
            figure(
                "ingest",
                &format!("kaizen_{place}_rows_per_s"),
                n,
                rate(k),
                "rows/s",
            );
            figure(
                "ingest",
                &format!("bare_{place}_rows_per_s"),
                n,
                rate(b),
                "rows/s",
            );
            figure(
                "ingest",
                &format!("{place}_share_of_bare"),
                n,
                rate(k) / rate(b),
                "x",
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

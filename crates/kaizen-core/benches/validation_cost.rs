//! Benchmark 6 of issue 12: the cost of one verdict of the honest validator (the default), at
//! 12 / 48 / 288 samples in the window with 8 days of minute history before the apply (what the
//! placebo calibration splits). A fresh validator per verdict, so the calibration is computed
//! every time (the engine's cache makes later looks cheaper): the figure is the worst case.
//!
//! `cargo bench -p kaizen-core --bench validation_cost`. Knob: `KAIZEN_BENCH_VALIDATION_N`
//! (window sizes, default `12,48,288`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on broken fixtures

#[path = "../../kaizen-cli/benches/support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kaizen_core::config::Scale;
use kaizen_core::intervention::{ExpectedChange, Prediction};
use kaizen_core::signal::{Better, Signal};
use kaizen_core::span::Span;
use kaizen_core::validate::benchmark::{SETTLE, Series, SeriesSpec};
use kaizen_core::validate::{HonestValidator, Look, ValidationRequest, Validator};
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};
use support::*;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("validation_cost");
    g.sample_size(20).warm_up_time(Duration::from_millis(500));
    let signal = Signal {
        name: "latency_ms".into(),
        unit: "ms".into(),
        better: Better::Lower,
        alert_above: None,
        alert_below: None,
    };
    for n in sizes("KAIZEN_BENCH_VALIDATION_N", &[12, 48, 288]) {
        let n_us = usize::try_from(n).unwrap();
        let spec = SeriesSpec {
            phi: 0.5,
            daily: true,
            spike: false,
            n: n_us,
            history_days: 8.0,
        };
        // A handful of series, so one lucky series does not make the figure.
        let series: Vec<Series> = (0..8).map(|i| Series::generate(&spec, 4242 + i)).collect();
        let prediction = Prediction {
            signal: signal.name.clone(),
            change: ExpectedChange::Relative(-0.1),
            within: Span::minutes(n),
        };
        let next = Cell::new(0usize);
        let all = RefCell::new(Vec::new());
        g.bench_function(BenchmarkId::new("honest_uncached", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let s = &series[next.get() % series.len()];
                    next.set(next.get() + 1);
                    let req = ValidationRequest {
                        prediction: &prediction,
                        signal: &signal,
                        applied_at: s.applied_at,
                        settle: Span::minutes(SETTLE as u64),
                        window_end: s.window_end,
                        now: s.window_end,
                        samples: &s.samples,
                        guardrails: Vec::new(),
                        look: Look::Final,
                        sample_every: Span::minutes(1),
                        scale: Scale::Auto,
                    };
                    let v = HonestValidator::default();
                    let t = Instant::now();
                    std::hint::black_box(v.validate(&req));
                    let d = t.elapsed();
                    all.borrow_mut().push(d);
                    total += d;
                }
                total
            })
        });
        let (m, w) = median_worst(&mut all.borrow_mut());
        figure_ms("validation_cost", "verdict_median", n, m);
        figure_ms("validation_cost", "verdict_worst", n, w);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

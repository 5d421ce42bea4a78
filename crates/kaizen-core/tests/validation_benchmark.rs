//! A reduced, seeded version of the validation benchmark (`benches/validation.rs` runs the full
//! grid and writes `docs/validation-benchmark.md`). Asserts the thresholds of issue 3 with
//! binomial margins appropriate to the smaller run count.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use kaizen_core::validate::benchmark::{Cell, SeriesSpec, run_cells};

const RUNS: usize = 80;

/// One-sided 99.5% binomial margin for a rate near `p` over `n` runs.
fn margin(p: f64, n: usize) -> f64 {
    2.576 * (p * (1.0 - p) / n as f64).sqrt()
}

/// Six cells spanning the grid's difficulties: independent noise, a daily cycle, strong
/// autocorrelation, and changes made right after a spike (n = 12, M = 1σ).
fn grid() -> Vec<Cell> {
    let shapes = [
        (0.0, false, false),
        (0.0, true, false),
        (0.8, false, false),
        (0.8, true, false),
        (0.5, false, true),
        (0.8, true, true),
    ];
    let mut cells = Vec::new();
    for (i, (phi, daily, spike)) in shapes.into_iter().enumerate() {
        let spec = SeriesSpec {
            phi,
            daily,
            spike,
            n: 12,
            history_days: 8.0,
        };
        cells.extend(run_cells(&spec, &[1.0], RUNS, 7 + 1_000_003 * i as u64));
    }
    cells
}

#[test]
fn reduced_grid_meets_the_thresholds() {
    let cells = grid();
    let mut null_runs = 0;
    let mut null_validated = 0;
    for c in &cells {
        let s = &c.spec;
        let label = format!(
            "phi={} daily={} spike={} n={} M={}",
            s.phi, s.daily, s.spike, s.n, c.m
        );
        eprintln!(
            "{label}: honest fv {:.3} pow {:.3} reg+ {:.3} ne0 {:.3} inc {:.3} cov {:.3} | MW@fv {:.3} | MW fv {:.3} | naive fv {:.3}",
            c.honest.false_validation(),
            c.honest.power(),
            c.honest.regressed_at_plus(),
            c.honest.no_effect_at_zero(),
            c.honest.inconclusive_rate(),
            c.honest.coverage().unwrap_or(0.0),
            c.mw_power_at_equal_fv,
            c.plain_mw.false_validation(),
            c.naive.false_validation(),
        );
        // False validation ≤ 0.06 in every cell (with the margin of RUNS runs).
        let fv = c.honest.false_validation();
        assert!(
            fv <= 0.06 + margin(0.06, RUNS),
            "{label}: false validation {fv}"
        );
        null_runs += c.honest.runs[0] + c.honest.runs[3];
        null_validated += c.honest.validated[0] + c.honest.validated[3];
        // Where the plain test is fooled (autocorrelation, spikes), the honest one is not.
        if c.plain_mw.false_validation() > 0.2 {
            assert!(fv < c.plain_mw.false_validation() / 2.0, "{label}");
        }
        // Power against plain Mann–Whitney at the same false-validation rate, where that is
        // meaningful: the plain test is fooled here (its nominal rate is far above 5%) and the
        // effect is large enough that either could see it.
        if c.plain_mw.false_validation() > 0.1 && c.mw_power_at_equal_fv > 0.1 {
            let (h, m) = (c.honest.power(), c.mw_power_at_equal_fv);
            assert!(
                h + margin(0.5, RUNS) * 2f64.sqrt() >= m,
                "{label}: power {h} vs Mann–Whitney {m}"
            );
        }
        // It can see a 1σ regression and a 1σ improvement in the easy cells.
        if s.phi == 0.0 && !s.spike {
            assert!(c.honest.power() > 0.5, "{label}");
            assert!(c.honest.regressed_at_plus() > 0.5, "{label}");
        }
    }
    let pooled = null_validated as f64 / null_runs as f64;
    assert!(
        pooled <= 0.06 + margin(0.06, null_runs),
        "pooled false validation {pooled}"
    );
}

//! The full validation benchmark grid of issue 3; writes `docs/validation-benchmark.md`.
//!
//! `cargo bench -p kaizen-core --bench validation` (≥ 2,000 runs per cell; takes minutes).
//! Environment: `KAIZEN_BENCH_RUNS` (runs per cell, default 2000), `KAIZEN_BENCH_OUT` (output
//! file, default `<workspace>/docs/validation-benchmark.md`; `-` prints to stdout only),
//! `KAIZEN_BENCH_FILTER` (e.g. `phi=0.8,daily=on,spike=off,n=48` to run a subset).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use kaizen_core::validate::benchmark::{
    Cell, SeriesSpec, render_markdown, run_cells, time_uncached,
};
use std::time::Instant;

fn main() {
    let runs: usize = std::env::var("KAIZEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let filter = std::env::var("KAIZEN_BENCH_FILTER").unwrap_or_default();
    let keep = |key: &str, val: &str| {
        filter
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .all(|(k, v)| k.trim() != key || v.trim() == val)
    };
    let started = Instant::now();
    let mut cells: Vec<Cell> = Vec::new();
    let mut group = 0u64;
    for phi in [0.0, 0.5, 0.8] {
        for daily in [false, true] {
            for spike in [false, true] {
                for n in [12usize, 24, 48] {
                    group += 1;
                    if !(keep("phi", &phi.to_string())
                        && keep("daily", if daily { "on" } else { "off" })
                        && keep("spike", if spike { "on" } else { "off" })
                        && keep("n", &n.to_string()))
                    {
                        continue;
                    }
                    let spec = SeriesSpec {
                        phi,
                        daily,
                        spike,
                        n,
                        history_days: 8.0,
                    };
                    let t = Instant::now();
                    let out = run_cells(&spec, &[0.5, 1.0, 2.0], runs, group * 1_000_003);
                    for c in &out {
                        eprintln!(
                            "phi={phi} daily={daily} spike={spike} n={n} M={}: honest fv {:.3} pow {:.3} reg+ {:.3} ne0 {:.3} inc {:.3} cov {:.3} | MW@fv {:.3} | MW fv {:.3} pow {:.3} | naive fv {:.3} | {:.0}us ({:.1}s)",
                            c.m,
                            c.honest.false_validation(),
                            c.honest.power(),
                            c.honest.regressed_at_plus(),
                            c.honest.no_effect_at_zero(),
                            c.honest.inconclusive_rate(),
                            c.honest.coverage().unwrap_or(0.0),
                            c.mw_power_at_equal_fv,
                            c.plain_mw.false_validation(),
                            c.plain_mw.power(),
                            c.naive.false_validation(),
                            c.honest_us,
                            t.elapsed().as_secs_f64()
                        );
                    }
                    cells.extend(out);
                }
            }
        }
    }
    let md = render_markdown(
        &cells,
        runs,
        started.elapsed().as_secs_f64(),
        "cargo bench -p kaizen-core --bench validation",
    );
    let mut md = md;
    md.push_str("\n## Cost of one uncached call\n\n| n | mean µs | max µs |\n|---|---|---|\n");
    for n in [12usize, 24, 48] {
        let (mean, max) = time_uncached(n, 40);
        md.push_str(&format!("| {n} | {mean:.0} | {max:.0} |\n"));
        eprintln!("uncached n={n}: mean {mean:.0} µs, max {max:.0} µs");
    }
    md.push_str("\n(8 days of minute samples, ρ = 0.5, daily cycle; a fresh validator per call so the placebo calibration is always computed; release build on a shared 2-core machine.)\n");
    let out = std::env::var("KAIZEN_BENCH_OUT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/validation-benchmark.md"
        )
        .to_string()
    });
    if out == "-" {
        println!("{md}");
    } else {
        if let Some(dir) = std::path::Path::new(&out).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::write(&out, &md) {
            Ok(()) => eprintln!("wrote {out}"),
            Err(e) => {
                eprintln!("cannot write {out}: {e}");
                println!("{md}");
            }
        }
    }
}

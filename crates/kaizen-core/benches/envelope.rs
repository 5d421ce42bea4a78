//! The operating-envelope grid of issue 8, through the engine path; writes its table into
//! `docs/validation-envelope.md`.
//!
//! `cargo bench -p kaizen-core --bench envelope` (500 runs per cell by default: long).
//! Environment: `KAIZEN_ENVELOPE_RUNS` (runs per cell), `KAIZEN_ENVELOPE_OUT` (output file,
//! default `<workspace>/docs/validation-envelope.md`; `-` prints only), `KAIZEN_ENVELOPE_FILTER`
//! (e.g. `cadence=5m,history=1h|6h` to run a subset), `KAIZEN_ENVELOPE_THREADS` (cells run in
//! parallel, 1 or 2; default 2).
//!
//! Only the part of the output file between the `<!-- envelope-table:begin -->` and
//! `<!-- envelope-table:end -->` markers is rewritten (after every finished cell, so a crash
//! keeps what was measured); the hand-written commentary around it stays. A file without the
//! markers gets a minimal page holding them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on broken fixtures

use kaizen_core::sim::envelope::{
    EnvelopeCell, EnvelopeTally, Gaps, HORIZON, M, Override, PHI, SIGMA, WITHIN, oracle_power,
    run_cell,
};
use kaizen_core::span::Span;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const BEGIN: &str = "<!-- envelope-table:begin -->";
const END: &str = "<!-- envelope-table:end -->";
/// The power proposal-time sizing promises when it calls a window validatable.
const PROMISED_POWER: f64 = 0.8;

fn gaps_name(g: Gaps) -> &'static str {
    match g {
        Gaps::None => "0",
        Gaps::Random10 => "10% random",
        Gaps::Outage30 => "30% outage",
    }
}

fn override_name(o: Override) -> &'static str {
    match o {
        Override::None => "none",
        Override::Matching => "matching",
        Override::Wrong => "wrong",
    }
}

/// One row of the grid: the cell (effect 0) and its group number (seeds the runs).
type Job = (u64, EnvelopeCell);
type Row = (EnvelopeCell, [EnvelopeTally; 3], f64);

fn jobs(filter: &str) -> Vec<Job> {
    let keep = |key: &str, val: &str| {
        filter
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .all(|(k, v)| k.trim() != key || v.split('|').any(|v| v.trim() == val))
    };
    let mut out = Vec::new();
    let mut group = 0u64;
    for cadence in [Span::minutes(1), Span::minutes(5)] {
        for ov in [Override::None, Override::Matching, Override::Wrong] {
            for history in [
                Span::from_secs(0),
                Span::hours(1),
                Span::hours(6),
                Span::days(2),
                Span::days(8),
            ] {
                for gaps in [Gaps::None, Gaps::Random10, Gaps::Outage30] {
                    group += 1;
                    if keep("cadence", &cadence.to_string())
                        && keep("override", override_name(ov))
                        && keep("history", &history.to_string())
                        && keep("gaps", gaps_name(gaps))
                    {
                        let cell = EnvelopeCell {
                            cadence,
                            sample_every: ov,
                            history,
                            gaps,
                            effect: 0.0,
                        };
                        out.push((group, cell));
                    }
                }
            }
        }
    }
    out
}

async fn run_row(group: u64, cell: EnvelopeCell, runs: usize, dir: &std::path::Path) -> Row {
    let t = Instant::now();
    let mut out = Vec::new();
    for effect in [0.0, -1.0, 1.0] {
        let c = EnvelopeCell { effect, ..cell };
        out.push(
            run_cell(&c, runs, group * 1_000_003, dir)
                .await
                .expect("cell runs"),
        );
    }
    let tallies: [EnvelopeTally; 3] = out.try_into().expect("three effects");
    (cell, tallies, t.elapsed().as_secs_f64())
}

fn progress_line(c: &EnvelopeCell, [z, m, p]: &[EnvelopeTally; 3], secs: f64) -> String {
    format!(
        "cadence={} override={} history={} gaps={}: P(val|0) {:.3} P(val|+M) {:.3} power {:.3} P(rev|-M) {:.3} inc(-M) {:.3} false lesson {:.3}/{:.3}/{:.3} sizing {}/{} promised {:.2} power|promised {} ({secs:.1}s)",
        c.cadence,
        override_name(c.sample_every),
        c.history,
        gaps_name(c.gaps),
        z.p_validated(),
        p.p_validated(),
        m.p_validated(),
        m.p_reverted(),
        m.p_inconclusive(),
        z.p_false_lesson(),
        m.p_false_lesson(),
        p.p_false_lesson(),
        m.median_needed()
            .map_or_else(|| "-".to_string(), |n| n.to_string()),
        m.median_available()
            .map_or_else(|| "-".to_string(), |n| n.to_string()),
        m.p_promised(),
        m.promised_power()
            .map_or_else(|| "-".to_string(), |v| format!("{v:.3}")),
    )
}

/// The generated section: the table and the bounds checked over it.
fn table(rows: &[Row], runs: usize, secs: f64, threads: usize, total: usize) -> String {
    let mut md = String::new();
    let profile = if cfg!(debug_assertions) {
        "dev (debug)"
    } else {
        "bench (release)"
    };
    let runs_done: usize = rows
        .iter()
        .map(|(_, t, _)| t.iter().map(|x| x.runs).sum::<usize>())
        .sum();
    let cpu: f64 = rows.iter().map(|(_, _, s)| s).sum();
    let per_run_ms = if runs_done > 0 {
        1000.0 * cpu / runs_done as f64
    } else {
        0.0
    };
    let _ = writeln!(
        md,
        "Generated by `cargo bench -p kaizen-core --bench envelope` on {} UTC: {} of {total} cells, {runs} runs per cell and true effect ({runs_done} runs), {secs:.0} s wall on {threads} thread(s), {per_run_ms:.1} ms per run, {profile} profile.{}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        rows.len(),
        if rows.len() < total {
            " **Partial: the run is still going or was cut short.**"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "Model: `100·exp(x)`, AR(1) φ = {PHI} per sample, Student-t(3) shocks, marginal sd σ = {SIGMA}; prediction a fall of M = {M}σ within {WITHIN} (settle 5m, 2 extensions); the engine cycles once per cadence for at most {HORIZON} after the trigger.\n"
    );
    let _ = writeln!(
        md,
        "| cadence | sample_every | history | gaps | P(val \\| no impr.) | power at −M | P(reverted \\| −M) | inconclusive(−M) | never applied | false lesson (0 / −M / +M) | sizing: needs / gives (validatable) | power promised → measured | oracle power | honest / oracle |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut worst_fv: f64 = 0.0;
    let mut fv_broken = Vec::new();
    let mut lesson_broken = Vec::new();
    let mut promise_broken = Vec::new();
    let mut promised_cells = 0usize;
    let mut shares: Vec<(f64, String)> = Vec::new();
    for (c, [z, m, p], _) in rows {
        let label = format!(
            "{} / {} / {} / {}",
            c.cadence,
            override_name(c.sample_every),
            c.history,
            gaps_name(c.gaps)
        );
        let fv = z.p_validated().max(p.p_validated());
        worst_fv = worst_fv.max(fv);
        if fv > 0.05 {
            fv_broken.push(format!("{label} ({fv:.3})"));
        }
        let fl = z.false_lesson + m.false_lesson + p.false_lesson;
        if fl > 0 {
            lesson_broken.push(format!("{label} ({fl})"));
        }
        let never = z.never_applied + m.never_applied + p.never_applied;
        let oracle = oracle_power(z, m);
        let share = oracle.filter(|o| *o > 0.0).map(|o| m.p_validated() / o);
        // The cells where the window gives the samples the sizing asks for: it promised most runs.
        if m.p_promised() >= 0.5
            && let Some(s) = share
        {
            shares.push((s, label.clone()));
        }
        let sizing = format!(
            "{} / {} ({:.0}%)",
            m.median_needed()
                .map_or_else(|| "–".to_string(), |n| n.to_string()),
            m.median_available()
                .map_or_else(|| "–".to_string(), |n| n.to_string()),
            100.0 * m.p_promised()
        );
        let promise = match m.promised_power() {
            Some(pw) => {
                promised_cells += 1;
                if pw < PROMISED_POWER {
                    promise_broken.push(format!("{label} ({pw:.3} of {} runs)", m.promised));
                    format!("{PROMISED_POWER:.2} → **{pw:.3}** ⚠")
                } else {
                    format!("{PROMISED_POWER:.2} → {pw:.3}")
                }
            }
            None => "no promise".to_string(),
        };
        let fv_txt = if fv > 0.05 {
            format!("**{fv:.3}** ⚠")
        } else {
            format!("{fv:.3}")
        };
        let fl_txt = format!(
            "{:.3} / {:.3} / {:.3}",
            z.p_false_lesson(),
            m.p_false_lesson(),
            p.p_false_lesson()
        );
        let fl_txt = if fl > 0 {
            format!("**{fl_txt}** ⚠")
        } else {
            fl_txt
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {fv_txt} | {:.3} | {:.3} | {:.3} | {never} | {fl_txt} | {sizing} | {promise} | {} | {} |",
            c.cadence,
            override_name(c.sample_every),
            c.history,
            gaps_name(c.gaps),
            m.p_validated(),
            m.p_reverted(),
            m.p_inconclusive(),
            oracle.map_or_else(|| "–".to_string(), |o| format!("{o:.3}")),
            share.map_or_else(|| "–".to_string(), |s| format!("{s:.2}")),
        );
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join("; ")
        }
    };
    let _ = writeln!(md, "\nBounds over the {} cells:\n", rows.len());
    let _ = writeln!(
        md,
        "- P(validated | no true improvement) ≤ 0.05: worst {worst_fv:.3}; cells above: {}.",
        list(&fv_broken)
    );
    let _ = writeln!(
        md,
        "- P(false lesson) = 0 at the default settings: cells with any: {}.",
        list(&lesson_broken)
    );
    let _ = writeln!(
        md,
        "- Sizing is a promise (measured power ≥ {PROMISED_POWER} over the runs it called validatable, at −M): {promised_cells} cells with a promise; broken in: {}.",
        list(&promise_broken)
    );
    shares.sort_by(|a, b| a.0.total_cmp(&b.0));
    let _ = writeln!(
        md,
        "- Honest / oracle power ≥ 0.8 where the window gives the samples the sizing asks for (sizing validatable in ≥ 50% of runs): {} cells; lowest {}; below 0.8: {}.",
        shares.len(),
        shares
            .first()
            .map_or_else(|| "–".to_string(), |(s, l)| format!("{s:.2} ({l})")),
        list(
            &shares
                .iter()
                .filter(|(s, _)| *s < 0.8)
                .map(|(s, l)| format!("{l} ({s:.2})"))
                .collect::<Vec<_>>()
        )
    );
    md
}

/// Writes the generated section into `out` between the markers (the rest of the file stays).
fn write_section(out: &str, section: &str) {
    let block = format!("{BEGIN}\n{section}{END}");
    let old = std::fs::read_to_string(out).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &old[..b], &old[e + END.len()..])
        }
        _ => format!("# The operating envelope, through the engine\n\n{block}\n"),
    };
    // Write a sibling and rename: a crash mid-write never truncates the page.
    let tmp = format!("{out}.tmp");
    std::fs::write(&tmp, new).expect("write the table");
    std::fs::rename(&tmp, out).expect("replace the page");
}

fn main() {
    let runs: usize = std::env::var("KAIZEN_ENVELOPE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let threads: usize = std::env::var("KAIZEN_ENVELOPE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .clamp(1, 2);
    let filter = std::env::var("KAIZEN_ENVELOPE_FILTER").unwrap_or_default();
    let out = std::env::var("KAIZEN_ENVELOPE_OUT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/validation-envelope.md"
        )
        .to_string()
    });
    let jobs = jobs(&filter);
    let total = jobs.len();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new(vec![None; total]);
    let publish = |rows: &[Option<Row>]| {
        let done: Vec<Row> = rows.iter().flatten().cloned().collect();
        let md = table(&done, runs, started.elapsed().as_secs_f64(), threads, total);
        if out != "-" {
            write_section(&out, &md);
        }
        md
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Each thread has its own working tree and runtime: runs share nothing.
                let dir = tempfile::tempdir().expect("tempdir");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((group, cell)) = jobs.get(i).copied() else {
                        break;
                    };
                    let row = rt.block_on(run_row(group, cell, runs, dir.path()));
                    eprintln!("{}", progress_line(&row.0, &row.1, row.2));
                    let mut all = rows.lock().expect("rows");
                    all[i] = Some(row);
                    publish(&all);
                }
            });
        }
    });
    let all = rows.into_inner().expect("rows");
    let md = publish(&all);
    if out == "-" {
        println!("{md}");
    } else {
        eprintln!("wrote {out}");
    }
}

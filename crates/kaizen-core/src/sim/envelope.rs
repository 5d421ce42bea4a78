//! The operating envelope, judged through the engine (issue 8): the same path `kaizen cycle`
//! runs — settable clock, in-memory ledger, the direct applier on a real working tree, the
//! baseline guard, the engine's interim looks and extensions, the honest validator — on seeded
//! synthetic signals sampled at an operator's cadence, with an operator's history and gaps.
//!
//! One run: history before the trigger is recorded as the source would have (with its gaps);
//! from the trigger on the engine cycles once per cadence (each cycle observes), a proposer
//! offers one candidate (`config/app.yaml#cache_mb` → 256, predicting a fall of `M·σ` within
//! [`WITHIN`]) until it has been recorded, and the run ends when that intervention is finalized
//! (or after [`HORIZON`]). The signal is `100·exp(x)`, `x` = AR(1) noise (φ = [`PHI`] per
//! sample, Student-t(3) shocks, marginal sd [`SIGMA`]) plus the true effect `effect·M·σ` while
//! the file holds the change — so a revert really removes it.

use crate::clock::ManualClock;
use crate::config::{Config, SignalConfig};
use crate::edit::Edit;
use crate::engine::{Engine, EngineSettings};
use crate::intervention::{Candidate, ExpectedChange, Origin, Outcome, Prediction, Risk, Status};
use crate::learn::{DeterministicDistiller, DistillInput, Distiller};
use crate::ledger::Ledger;
use crate::lesson::LessonStatus;
use crate::observe::{Source, SourceError};
use crate::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use crate::signal::Sample;
use crate::sim::DirectApplier;
use crate::span::Span;
use crate::validate::HonestValidator;
use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StudentT};
use std::path::Path;
use std::sync::Arc;

/// Marginal noise sd on the log scale.
pub const SIGMA: f64 = 0.1;
/// AR(1) coefficient per sample.
pub const PHI: f64 = 0.5;
/// Predicted (and, for `effect = −1`, true) magnitude in units of σ.
pub const M: f64 = 2.0;
/// The prediction's window.
pub const WITHIN: Span = Span::hours(1);
/// Longest a run lasts after the trigger.
pub const HORIZON: Span = Span::hours(8);

/// `validate.sample_every` in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// Not set (the cadence comes from the data).
    None,
    /// Set to the true cadence.
    Matching,
    /// Set to the other cadence of the grid (1m ↔ 5m): more than 2× off.
    Wrong,
}

/// Missing samples in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gaps {
    /// Every sample arrives.
    None,
    /// Each sample is missing with probability 0.1.
    Random10,
    /// One outage covering 30% of the post window (from 35% of it on).
    Outage30,
}

/// One cell of the envelope grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnvelopeCell {
    /// How often the source is sampled (and the engine cycles).
    pub cadence: Span,
    /// `validate.sample_every`.
    pub sample_every: Override,
    /// History recorded before the trigger.
    pub history: Span,
    /// Missing samples.
    pub gaps: Gaps,
    /// True effect in units of `M·σ`: 0 none, −1 the predicted improvement, +1 a regression.
    pub effect: f64,
}

/// What the runs of one cell ended as.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvelopeTally {
    /// Runs.
    pub runs: usize,
    /// Final outcome validated.
    pub validated: usize,
    /// Reverted (any outcome).
    pub reverted: usize,
    /// Final outcome no_effect.
    pub no_effect: usize,
    /// Final outcome regressed.
    pub regressed: usize,
    /// Final outcome inconclusive (the data decided).
    pub inconclusive: usize,
    /// Never applied within the horizon (waited for a baseline that never came).
    pub never_applied: usize,
    /// Runs whose verdict the deterministic distiller (with `avoid_after: 1`) turns into the
    /// wrong lesson: a prefer lesson for a change that did not help (effect ≥ 0), an avoid lesson
    /// for one that truly helped (effect < 0).
    pub false_lesson: usize,
    /// The oracle's t statistic for each run (see [`oracle_t`]): the level shift estimated by
    /// prewhitening with the true φ, over its standard error. Negative: the signal fell.
    pub oracle_t: Vec<f64>,
    /// Runs whose proposal-time sizing (the engine's [`window_sizing`](crate::engine::window_sizing),
    /// as `kaizen cycle` installs it) said "validatable: needs N samples, window gives M ≥ N".
    pub promised: usize,
    /// Of the [`promised`](Self::promised) runs, those finally validated (the promise kept).
    pub promised_validated: usize,
    /// Samples the sizing said each run needs per side (`None`: it could not size the window).
    pub needed: Vec<Option<usize>>,
    /// Samples the sizing said each run's window gives.
    pub available: Vec<usize>,
}

impl EnvelopeTally {
    fn share(&self, k: usize) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            k as f64 / self.runs as f64
        }
    }
    /// P(validated).
    pub fn p_validated(&self) -> f64 {
        self.share(self.validated)
    }
    /// P(reverted).
    pub fn p_reverted(&self) -> f64 {
        self.share(self.reverted)
    }
    /// P(inconclusive).
    pub fn p_inconclusive(&self) -> f64 {
        self.share(self.inconclusive)
    }
    /// P(false lesson evidence).
    pub fn p_false_lesson(&self) -> f64 {
        self.share(self.false_lesson)
    }
    /// Share of runs the sizing called validatable.
    pub fn p_promised(&self) -> f64 {
        self.share(self.promised)
    }
    /// P(validated | the sizing called the window validatable); `None` when it never did.
    pub fn promised_power(&self) -> Option<f64> {
        (self.promised > 0).then(|| self.promised_validated as f64 / self.promised as f64)
    }
    /// Median of the samples the sizing said a run needs (over the runs it could size).
    pub fn median_needed(&self) -> Option<usize> {
        let mut n: Vec<usize> = self.needed.iter().flatten().copied().collect();
        n.sort_unstable();
        n.get(n.len() / 2).copied()
    }
    /// Median of the samples the sizing said a run's window gives.
    pub fn median_available(&self) -> Option<usize> {
        let mut n = self.available.clone();
        n.sort_unstable();
        n.get(n.len() / 2).copied()
    }
}

/// The oracle's power in a cell: its threshold is tuned on the cell's null runs to validate
/// exactly as many of them as the honest validator did (`null.validated`), then applied to the
/// runs with the predicted improvement. `None` without null or fix runs.
pub fn oracle_power(null: &EnvelopeTally, fix: &EnvelopeTally) -> Option<f64> {
    if null.oracle_t.is_empty() || fix.oracle_t.is_empty() {
        return None;
    }
    let mut t = null.oracle_t.clone();
    t.sort_by(f64::total_cmp);
    // Validate when t < c: c is the (k+1)-th smallest null statistic, so k nulls pass (all of
    // them when the honest validator passed every null).
    let c = t.get(null.validated).copied().unwrap_or(f64::INFINITY);
    let hits = fix.oracle_t.iter().filter(|v| **v < c).count();
    Some(hits as f64 / fix.oracle_t.len() as f64)
}

/// The oracle test of one run, knowing the noise model: `y_t = μ + δ·D_t + x_t` with `x` AR(1)
/// of the true φ, `D_t` = 1 in the post window (`[trigger + settle, trigger + settle + within)`),
/// 0 before the trigger; the settle and later samples are left out. Prewhitening with the true
/// φ (`y_t − φ·y_{t−1}`, on consecutive observed pairs) makes the errors independent; δ̂ is the
/// OLS coefficient and the result its t statistic. `None` when the design is degenerate.
pub fn oracle_t(
    path: &[(i64, Option<f64>)],
    step: i64,
    trigger: i64,
    settle: i64,
    within: i64,
    shift: f64,
) -> Option<f64> {
    let (from, to) = (
        trigger.checked_add(settle)?,
        trigger.checked_add(settle)?.checked_add(within)?,
    );
    let d = |t: i64| -> Option<f64> {
        if t < trigger {
            Some(0.0)
        } else if t >= from && t < to {
            Some(1.0)
        } else {
            None
        }
    };
    // Rows: (intercept regressor 1 − φ, shift regressor D_t − φ·D_{t−1}, response).
    let mut rows: Vec<(f64, f64, f64)> = Vec::new();
    for w in path.windows(2) {
        let ((t0, x0), (t1, x1)) = (w[0], w[1]);
        let (Some(x0), Some(x1)) = (x0, x1) else {
            continue;
        };
        if t1 - t0 != step {
            continue;
        }
        let (Some(d0), Some(d1)) = (d(t0), d(t1)) else {
            continue;
        };
        let (y0, y1) = (x0 + shift * d0, x1 + shift * d1);
        rows.push((1.0 - PHI, d1 - PHI * d0, y1 - PHI * y0));
    }
    let n = rows.len() as f64;
    if rows.len() < 4 {
        return None;
    }
    let (mut saa, mut sab, mut sbb, mut say, mut sby) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (a, b, y) in &rows {
        saa += a * a;
        sab += a * b;
        sbb += b * b;
        say += a * y;
        sby += b * y;
    }
    let det = saa * sbb - sab * sab;
    if det.abs() < 1e-12 {
        return None;
    }
    let mu = (sbb * say - sab * sby) / det;
    let delta = (saa * sby - sab * say) / det;
    let rss: f64 = rows
        .iter()
        .map(|(a, b, y)| {
            let e = y - mu * a - delta * b;
            e * e
        })
        .sum();
    let s2 = rss / (n - 2.0);
    let se = (s2 * saa / det).sqrt();
    (se > 0.0 && se.is_finite()).then(|| delta / se)
}

/// Serves the precomputed series at `now`; the level follows what the working tree says.
struct SeriesSource {
    root: std::path::PathBuf,
    /// `(unix seconds, Some(x) | None for a gap)`, sorted.
    noise: Vec<(i64, Option<f64>)>,
    shift: f64,
}

#[async_trait]
impl Source for SeriesSource {
    fn name(&self) -> &str {
        "envelope"
    }
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let t = now.timestamp();
        let i = self.noise.partition_point(|(at, _)| *at < t);
        let x = match self.noise.get(i) {
            Some((at, v)) if *at == t => *v,
            _ => None,
        };
        let Some(x) = x else {
            return Err(err("source unavailable (simulated gap)"));
        };
        let applied = std::fs::read_to_string(self.root.join("config/app.yaml"))
            .map(|s| s.contains("cache_mb: 256"))
            .unwrap_or(false);
        let x = if applied { x + self.shift } else { x };
        Ok(vec![Sample::new("latency_ms", now, 100.0 * x.exp())])
    }
}

fn err(message: &str) -> SourceError {
    SourceError {
        source_name: "latency_ms".into(),
        message: message.into(),
    }
}

/// Offers the candidate every cycle until an intervention for it exists.
struct OneChange(Candidate);

#[async_trait]
impl Proposer for OneChange {
    fn name(&self) -> &str {
        "envelope"
    }
    async fn propose(&self, ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        let candidates = if ctx.interventions.is_empty() {
            vec![self.0.clone()]
        } else {
            Vec::new()
        };
        Ok(Proposals {
            candidates,
            rejected: Vec::new(),
        })
    }
}

fn candidate() -> Candidate {
    Candidate {
        area: "cache".into(),
        kind: "config_set".into(),
        title: "grow the cache".into(),
        hypothesis: "misses dominate latency".into(),
        change: vec![Edit::ConfigSet {
            file: "config/app.yaml".into(),
            key: "cache_mb".into(),
            value: serde_json::json!(256),
        }],
        prediction: Prediction {
            signal: "latency_ms".into(),
            change: ExpectedChange::Relative((-M * SIGMA).exp() - 1.0),
            within: WITHIN,
        },
        risk: Risk::Low,
        confidence: 0.8,
        rollback: Some("revert".into()),
        origin: Origin {
            proposer: "envelope".into(),
            ..Origin::default()
        },
    }
}

fn config(cell: &EnvelopeCell, dir: &Path) -> Option<Config> {
    let every = match cell.sample_every {
        Override::None => None,
        Override::Matching => Some(cell.cadence),
        Override::Wrong => Some(if cell.cadence == Span::minutes(1) {
            Span::minutes(5)
        } else {
            Span::minutes(1)
        }),
    };
    let line = every
        .map(|e| format!("  sample_every: {e}\n"))
        .unwrap_or_default();
    Config::parse(
        &format!(
            "signals:\n  latency_ms: {{ unit: ms, better: lower }}\nguards: {{ daily_budget: 50 }}\nvalidate:\n  settle: 5m\n{line}"
        ),
        &dir.join("kaizen.yaml"),
    )
    .ok()
}

/// The noise path for one run: `(unix seconds, Some(x) | None for a gap)` at every cadence
/// step from `start` to `trigger + HORIZON`.
fn noise(
    cell: &EnvelopeCell,
    rng: &mut ChaCha8Rng,
    start: DateTime<Utc>,
    trigger: DateTime<Utc>,
) -> Vec<(i64, Option<f64>)> {
    let step = cell.cadence.seconds().max(1) as i64;
    let end = trigger + HORIZON.to_chrono();
    let t3 = StudentT::new(3.0).ok();
    let shock_sd = (1.0 - PHI * PHI).sqrt() * SIGMA / 3f64.sqrt();
    let settle = Duration::minutes(5);
    let within = WITHIN.to_chrono();
    let (out_from, out_to) = (
        trigger + settle + within * 35 / 100,
        trigger + settle + within * 65 / 100,
    );
    let mut x = 0.0;
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        let z = t3.map_or(0.0, |d| d.sample(rng));
        x = PHI * x + shock_sd * z;
        let missing = match cell.gaps {
            Gaps::None => false,
            Gaps::Random10 => rng.random::<f64>() < 0.1,
            Gaps::Outage30 => t >= out_from && t < out_to,
        };
        out.push((t.timestamp(), (!missing).then_some(x)));
        t += Duration::seconds(step);
    }
    out
}

/// Runs `runs` seeded runs of `cell` in the working tree `dir` (its `config/app.yaml` is
/// rewritten for each run). `None` when the cell's config cannot be built.
pub async fn run_cell(
    cell: &EnvelopeCell,
    runs: usize,
    seed: u64,
    dir: &Path,
) -> Option<EnvelopeTally> {
    let config = config(cell, dir)?;
    let signals: std::collections::BTreeMap<String, SignalConfig> = config.signals.clone();
    let mut tally = EnvelopeTally::default();
    let start = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).single()?;
    // On the log scale: effect −1 lowers latency by M·σ (the prediction), +1 raises it.
    let shift = cell.effect * M * SIGMA;
    for r in 0..runs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(r as u64 * 7919));
        // A random phase, so the trigger falls at any time of day.
        let phase = Duration::minutes(rng.random_range(0..1440));
        let trigger = start + phase + cell.history.to_chrono();
        std::fs::create_dir_all(dir.join("config")).ok()?;
        std::fs::write(dir.join("config/app.yaml"), "cache_mb: 64\n").ok()?;
        let path = noise(cell, &mut rng, start + phase, trigger);
        if let Some(t) = oracle_t(
            &path,
            cell.cadence.seconds().max(1) as i64,
            trigger.timestamp(),
            300,
            WITHIN.seconds() as i64,
            shift,
        ) {
            tally.oracle_t.push(t);
        }
        let history: Vec<Sample> = path
            .iter()
            .filter(|(t, _)| *t < trigger.timestamp())
            .filter_map(|(t, x)| {
                let at = Utc.timestamp_opt(*t, 0).single()?;
                x.map(|x| Sample::new("latency_ms", at, 100.0 * x.exp()))
            })
            .collect();
        let clock = ManualClock::at(trigger);
        let mut settings = EngineSettings::from_config(&config);
        settings.signals = signals.clone();
        settings.repo_root = dir.to_path_buf();
        let mut engine = Engine::builder(settings)
            .clock(Arc::new(clock.clone()))
            .ledger(Ledger::in_memory().ok()?)
            .source(Box::new(SeriesSource {
                root: dir.to_path_buf(),
                noise: path,
                shift,
            }))
            .proposer(Box::new(OneChange(candidate())))
            .applier(Box::new(DirectApplier::new(dir)))
            .validator(Box::new(HonestValidator::default()))
            .sizing(crate::engine::window_sizing())
            .build()
            .ok()?;
        engine.record_samples(&history).ok()?;
        let step = cell.cadence.to_chrono();
        let end = trigger + HORIZON.to_chrono();
        let mut now = trigger;
        let mut done = None;
        while now <= end && done.is_none() {
            clock.set(now);
            engine.cycle().await.ok()?;
            done = engine
                .ledger()
                .all()
                .ok()?
                .into_iter()
                .find(|iv| matches!(iv.status, Status::Validated | Status::Reverted));
            now += step;
        }
        tally.runs += 1;
        // What proposal-time sizing promised for this run's intervention.
        let first = engine.ledger().all().ok()?.into_iter().next();
        let sizing = match &first {
            Some(iv) => engine.ledger().sizing(iv.id).ok()?,
            None => None,
        };
        let sized = sizing.as_ref().map(|v| {
            let needed = v
                .pointer("/report/needed")
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| usize::try_from(n).ok());
            let available = v
                .get("available")
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
            let sufficient = v
                .get("sufficient")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            (needed, available, sufficient)
        });
        let promised = sized.is_some_and(|(_, _, ok)| ok);
        if let Some((needed, available, _)) = sized {
            tally.needed.push(needed);
            tally.available.push(available);
        }
        if promised {
            tally.promised += 1;
        }
        let Some(iv) = done else {
            tally.never_applied += 1;
            continue;
        };
        // What the distiller would learn from this verdict, were it the `avoid_after`-th: a
        // prefer lesson from a validated change, avoid evidence from a failure it counts.
        let mut verdicts = std::collections::BTreeMap::new();
        if let Some(v) = engine.ledger().verdict(iv.id).ok().flatten() {
            verdicts.insert(iv.id.to_string(), serde_json::to_value(&v).ok()?);
        }
        let distiller = DeterministicDistiller {
            avoid_after: 1,
            ..DeterministicDistiller::default()
        };
        let finalized = vec![iv.clone()];
        let recent = std::collections::BTreeMap::new();
        let lessons = distiller
            .distill(&DistillInput {
                now,
                finalized: &finalized,
                verdicts: &verdicts,
                lessons: &[],
                recent: &recent,
            })
            .ok()?;
        let avoid = lessons.iter().any(|c| c.lesson().id.ends_with("-avoid"));
        let prefer = lessons.iter().any(|c| {
            !c.lesson().id.ends_with("-avoid") && c.lesson().status == LessonStatus::Active
        });
        if iv.status == Status::Reverted {
            tally.reverted += 1;
        }
        match iv.outcome {
            Some(Outcome::Validated) => {
                tally.validated += 1;
                if promised {
                    tally.promised_validated += 1;
                }
            }
            Some(Outcome::NoEffect) => tally.no_effect += 1,
            Some(Outcome::Regressed) => tally.regressed += 1,
            Some(Outcome::Inconclusive) | None => tally.inconclusive += 1,
        }
        let wrong = if cell.effect < 0.0 { avoid } else { prefer };
        if wrong {
            tally.false_lesson += 1;
            // `KAIZEN_ENVELOPE_TRACE` prints what taught the wrong lesson (run, verdict, figures).
            if std::env::var_os("KAIZEN_ENVELOPE_TRACE").is_some() {
                eprintln!(
                    "false lesson: {cell:?} run {r}: {} {:?} {}",
                    iv.id,
                    iv.outcome,
                    verdicts
                        .get(&iv.id.to_string())
                        .map_or_else(String::new, |v| v.to_string())
                );
            }
        }
    }
    Some(tally)
}

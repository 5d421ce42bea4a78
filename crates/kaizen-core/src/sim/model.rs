//! The simulated host's signal models and how a value is computed from them.
//!
//! A signal's value at instant `t` (all times are offsets from the simulation start):
//!
//! ```text
//! level  = (base + trend_per_day · days)
//!          × Π effect factors        (from config values in the repo's working tree)
//!          then each active `step` fault:  level = level × factor + add
//!          + each active `leak` fault:     per_hour × hours since it became active (≤ max)
//! value  = level × (1 + daily.amplitude · cos(2π (time_of_day − daily.peak) / 24h)
//!                    + weekly.amplitude · cos(2π (time_of_week − weekly.peak) / 7d))
//!          + level × spike size            (when t falls in a spike slot)
//!          + noise.sd × noisy factors × e_i (AR(1) noise, heavy-tailed innovations)
//! value  = clamp(value, min, max)
//! ```
//!
//! Effects make the host depend on its configuration: each effect reads one key of one config file
//! (YAML, JSON or TOML) through [`crate::edit::config_get`] every time the host is sampled and turns
//! its value into a factor on the level:
//! - `table: [[x0, f0], [x1, f1], ...]` — piecewise-linear in the (numeric) value, clamped at the
//!   ends;
//! - `power: {ref: R, elasticity: E}` — `factor = (R / value)^E` (e.g. latency vs cache size);
//! - `cases: {"true": 0.8, "lru": 0.9}` — exact values (compared as text), other values → 1.
//!
//! A missing file or key takes the effect's `default` (if given) else factor 1.
//!
//! Randomness comes from ChaCha8 keyed by (seed, signal, stream, index) — never from call order —
//! so the same seed gives the same noise and spikes however and whenever the host is sampled. Only
//! `leak` faults carry state (when they became active), so they depend on the observed config
//! history, which is itself deterministic in a scenario run.

use crate::edit::config_get;
use crate::span::Span;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, StudentT};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A daily or weekly cycle, relative to the level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cycle {
    /// Amplitude as a fraction of the level (0.2 = ±20%).
    pub amplitude: f64,
    /// When in the day (or week, from Monday 00:00 UTC) the cycle peaks.
    #[serde(default)]
    pub peak: Span,
}

/// AR(1) noise with optionally heavy-tailed (Student-t) innovations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Noise {
    /// Stationary standard deviation, in signal units.
    pub sd: f64,
    /// Lag-1 autocorrelation φ (0 ≤ φ < 1), per sample.
    pub ar: f64,
    /// Degrees of freedom of Student-t innovations (> 2; smaller = heavier tails). None: normal.
    pub df: Option<f64>,
}

impl Default for Noise {
    fn default() -> Self {
        Self {
            sd: 0.0,
            ar: 0.0,
            df: None,
        }
    }
}

/// Occasional spikes: each slot of `length` is a spike with probability `per_day · length / 24h`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spikes {
    /// Expected spikes per day.
    pub per_day: f64,
    /// Mean spike height as a fraction of the level (1.0 = doubles the value); each spike's
    /// height is drawn uniformly in 0.5..1.5 × `size`.
    pub size: f64,
    /// How long a spike lasts.
    #[serde(default = "default_spike_length")]
    pub length: Span,
}

fn default_spike_length() -> Span {
    Span::minutes(10)
}

/// How a config value maps to a factor on the level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Power {
    /// The reference value (factor 1).
    #[serde(rename = "ref")]
    pub reference: f64,
    /// The elasticity E in `(ref / value)^E`.
    pub elasticity: f64,
}

/// A dependency of a signal's level on one config value in the repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effect {
    /// Config file, relative to the repository root.
    pub file: String,
    /// Dotted key path in it.
    pub key: String,
    /// The value assumed when the file or key is missing.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Piecewise-linear `[value, factor]` points, sorted by value.
    #[serde(default)]
    pub table: Option<Vec<[f64; 2]>>,
    /// `(ref / value)^elasticity`.
    #[serde(default)]
    pub power: Option<Power>,
    /// Exact values (as text) → factor.
    #[serde(default)]
    pub cases: Option<BTreeMap<String, f64>>,
}

/// A condition on one config value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Config file, relative to the repository root.
    pub file: String,
    /// Dotted key path.
    pub key: String,
    /// Holds when the value is a number above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Holds when the value is a number below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Holds when the value equals this (numbers compare numerically, else as text).
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The level ramps up by `per_hour` (up to `max`) while active; goes away when inactive.
    Leak,
    /// The level becomes `level × factor + add` while active.
    Step,
    /// A burst of spikes: `per_hour`, `size`, `length` while active.
    Spikes,
    /// The noise sd is multiplied by `factor` while active.
    Noisy,
}

/// A fault injected into one signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// A name a diagnose command can see while the fault is active (`KAIZEN_SIM_FAULTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it does.
    pub kind: FaultKind,
    /// When it starts (offset from the simulation start, e.g. `2d3h`).
    #[serde(default)]
    pub at: Span,
    /// When it ends (offset from the start; none: never).
    #[serde(default)]
    pub until: Option<Span>,
    /// Active only while this config condition holds (e.g. a guardrail that worsens past a threshold).
    #[serde(default)]
    pub when: Option<Condition>,
    /// Inactive while this config condition holds (e.g. a leak that a config change fixes).
    #[serde(default)]
    pub unless: Option<Condition>,
    /// Leak: growth per hour (signal units). Spikes: spikes per hour.
    #[serde(default)]
    pub per_hour: Option<f64>,
    /// Leak: the most it adds.
    #[serde(default)]
    pub max: Option<f64>,
    /// Step: added to the level.
    #[serde(default)]
    pub add: Option<f64>,
    /// Step: multiplies the level. Noisy: multiplies the noise sd.
    #[serde(default)]
    pub factor: Option<f64>,
    /// Spikes: mean height as a fraction of the level.
    #[serde(default)]
    pub size: Option<f64>,
    /// Spikes: how long each lasts (default 10m).
    #[serde(default)]
    pub length: Option<Span>,
}

/// One simulated signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalModel {
    /// The level at the start, in signal units.
    pub base: f64,
    /// Linear drift per day (signal units).
    #[serde(default)]
    pub trend_per_day: f64,
    /// Daily cycle.
    #[serde(default)]
    pub daily: Option<Cycle>,
    /// Weekly cycle.
    #[serde(default)]
    pub weekly: Option<Cycle>,
    /// AR(1) noise.
    #[serde(default)]
    pub noise: Noise,
    /// Background spikes.
    #[serde(default)]
    pub spikes: Option<Spikes>,
    /// Config dependencies.
    #[serde(default)]
    pub effects: Vec<Effect>,
    /// Injected faults.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Lower clamp (e.g. 0 for a latency; set > 0 for log-scale validation).
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper clamp (e.g. 1 for a ratio).
    #[serde(default)]
    pub max: Option<f64>,
}

/// The host: its signals by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostModel {
    /// Signal models by signal name.
    pub signals: BTreeMap<String, SignalModel>,
}

impl HostModel {
    /// Checks the model; returns `(field path, message)` for the first problem.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (name, s) in &self.signals {
            let f = |rest: &str| format!("host.signals.{name}{rest}");
            let finite = |v: f64, rest: &str| -> Result<(), (String, String)> {
                if v.is_finite() {
                    Ok(())
                } else {
                    Err((f(rest), "must be a finite number".into()))
                }
            };
            finite(s.base, ".base")?;
            finite(s.trend_per_day, ".trend_per_day")?;
            if !(0.0..1.0).contains(&s.noise.ar) {
                return Err((
                    f(".noise.ar"),
                    format!("{} is not within 0 ≤ ar < 1", s.noise.ar),
                ));
            }
            if !(s.noise.sd >= 0.0 && s.noise.sd.is_finite()) {
                return Err((f(".noise.sd"), "must be ≥ 0".into()));
            }
            if let Some(df) = s.noise.df
                && !(df > 2.0 && df.is_finite())
            {
                return Err((
                    f(".noise.df"),
                    format!("{df} must be > 2 (finite variance)"),
                ));
            }
            for (which, c) in [(".daily", &s.daily), (".weekly", &s.weekly)] {
                if let Some(c) = c {
                    finite(c.amplitude, &format!("{which}.amplitude"))?;
                }
            }
            if let Some(sp) = &s.spikes {
                if !(sp.per_day >= 0.0 && sp.per_day.is_finite() && sp.size.is_finite()) {
                    return Err((f(".spikes"), "per_day must be ≥ 0 and size finite".into()));
                }
                if sp.length.seconds() == 0 {
                    return Err((f(".spikes.length"), "must be positive".into()));
                }
            }
            for (i, e) in s.effects.iter().enumerate() {
                let ef = |m: &str| (f(&format!(".effects[{i}]")), m.to_string());
                let n = usize::from(e.table.is_some())
                    + usize::from(e.power.is_some())
                    + usize::from(e.cases.is_some());
                if n != 1 {
                    return Err(ef("give exactly one of `table`, `power` or `cases`"));
                }
                if let Some(t) = &e.table {
                    if t.is_empty() || t.iter().any(|p| !p[0].is_finite() || !p[1].is_finite()) {
                        return Err(ef("`table` needs finite [value, factor] points"));
                    }
                    if t.windows(2).any(|w| w[1][0] <= w[0][0]) {
                        return Err(ef(
                            "`table` points must be sorted by strictly increasing value",
                        ));
                    }
                }
                if let Some(p) = &e.power
                    && (p.reference <= 0.0
                        || p.reference.is_nan()
                        || !p.elasticity.is_finite()
                        || !p.reference.is_finite())
                {
                    return Err(ef("`power.ref` must be > 0 and `elasticity` finite"));
                }
                if e.file.trim().is_empty() || e.key.trim().is_empty() {
                    return Err(ef("`file` and `key` must not be empty"));
                }
            }
            for (i, flt) in s.faults.iter().enumerate() {
                let ff = |m: String| (f(&format!(".faults[{i}]")), m);
                if let Some(u) = flt.until
                    && u <= flt.at
                {
                    return Err(ff(format!("`until` ({u}) must be after `at` ({})", flt.at)));
                }
                for c in [&flt.when, &flt.unless].into_iter().flatten() {
                    if c.above.is_none() && c.below.is_none() && c.equals.is_none() {
                        return Err(ff("a condition needs `above`, `below` or `equals`".into()));
                    }
                }
                let need = |v: Option<f64>, name: &str| -> Result<(), (String, String)> {
                    match v {
                        Some(x) if x.is_finite() => Ok(()),
                        _ => Err(ff(format!(
                            "a {:?} fault needs a finite `{name}`",
                            flt.kind
                        ))),
                    }
                };
                match flt.kind {
                    FaultKind::Leak => need(flt.per_hour, "per_hour")?,
                    FaultKind::Step => {
                        if flt.add.is_none() && flt.factor.is_none() {
                            return Err(ff("a step fault needs `add` or `factor`".into()));
                        }
                    }
                    FaultKind::Spikes => {
                        need(flt.per_hour, "per_hour")?;
                        need(flt.size, "size")?;
                    }
                    FaultKind::Noisy => need(flt.factor, "factor")?,
                }
            }
        }
        Ok(())
    }
}

/// The config values a host sees at one instant: file → content (None: missing).
#[derive(Debug, Default)]
pub struct ConfigSnapshot {
    files: HashMap<String, Option<String>>,
    parsed: std::sync::Mutex<HashMap<(String, String), Option<serde_json::Value>>>,
}

impl ConfigSnapshot {
    /// A snapshot of the given file contents.
    pub fn new(files: HashMap<String, Option<String>>) -> Self {
        Self {
            files,
            parsed: Default::default(),
        }
    }

    /// The value at `key` in `file` (None: missing file, missing key or unparsable file).
    pub fn get(&self, file: &str, key: &str) -> Option<serde_json::Value> {
        let k = (file.to_string(), key.to_string());
        if let Ok(cache) = self.parsed.lock()
            && let Some(v) = cache.get(&k)
        {
            return v.clone();
        }
        let v = self
            .files
            .get(file)
            .and_then(|c| c.as_deref())
            .and_then(|content| config_get(file, content, key).ok().flatten());
        if let Ok(mut cache) = self.parsed.lock() {
            cache.insert(k, v.clone());
        }
        v
    }
}

fn as_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Condition {
    /// Whether the condition holds on `config` (a missing value never satisfies it).
    pub fn holds(&self, config: &ConfigSnapshot) -> bool {
        let Some(v) = config.get(&self.file, &self.key) else {
            return false;
        };
        let n = as_number(&v);
        if let Some(a) = self.above
            && !n.is_some_and(|x| x > a)
        {
            return false;
        }
        if let Some(b) = self.below
            && !n.is_some_and(|x| x < b)
        {
            return false;
        }
        if let Some(e) = &self.equals {
            let same = match (as_number(e), n) {
                (Some(a), Some(b)) if !matches!(e, serde_json::Value::String(_)) => a == b,
                _ => as_text(e) == as_text(&v),
            };
            if !same {
                return false;
            }
        }
        true
    }
}

impl Effect {
    /// The factor on the level for the current config.
    pub fn factor(&self, config: &ConfigSnapshot) -> f64 {
        let Some(v) = config
            .get(&self.file, &self.key)
            .or_else(|| self.default.clone())
        else {
            return 1.0;
        };
        if let Some(cases) = &self.cases {
            return cases.get(&as_text(&v)).copied().unwrap_or(1.0);
        }
        let Some(x) = as_number(&v) else { return 1.0 };
        if let Some(t) = &self.table {
            return piecewise(t, x);
        }
        if let Some(p) = &self.power {
            if x <= 0.0 {
                return 1.0;
            }
            let f = (p.reference / x).powf(p.elasticity);
            return if f.is_finite() { f } else { 1.0 };
        }
        1.0
    }
}

fn piecewise(t: &[[f64; 2]], x: f64) -> f64 {
    let (Some(first), Some(last)) = (t.first(), t.last()) else {
        return 1.0;
    };
    if x <= first[0] {
        return first[1];
    }
    if x >= last[0] {
        return last[1];
    }
    for w in t.windows(2) {
        let ([x0, y0], [x1, y1]) = (w[0], w[1]);
        if x >= x0 && x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    last[1]
}

/// A stable 64-bit key from the parts (FNV-1a), so RNG streams never depend on call order.
pub fn stream_key(seed: u64, signal: &str, stream: &str, index: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(&seed.to_le_bytes());
    eat(signal.as_bytes());
    eat(stream.as_bytes());
    eat(&index.to_le_bytes());
    h
}

/// A ChaCha8 RNG for (seed, signal, stream, index).
pub fn rng_for(seed: u64, signal: &str, stream: &str, index: i64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stream_key(seed, signal, stream, index))
}

/// Per-signal evaluation state: cached innovations and when each leak became active.
#[derive(Debug, Default)]
pub(crate) struct SignalState {
    innovations: Innovations,
    active_since: HashMap<usize, Option<i64>>,
}

/// The innovations of a contiguous run of sample indices (`first..first + len`), the newest
/// [`Innovations::KEEP`] of them: each sample's AR(1) noise sums the innovations of the indices
/// just before it, so a sample computes one new innovation and finds the rest here. An index
/// outside the run (and not next to it) is computed and not kept; every value is keyed by its
/// index alone, so what is kept changes the speed, never a value.
#[derive(Debug, Default)]
struct Innovations {
    first: i64,
    values: std::collections::VecDeque<f64>,
}

impl Innovations {
    /// More than the longest moving average (400 terms).
    const KEEP: usize = 512;

    #[inline]
    fn get(&self, i: i64) -> Option<f64> {
        let k = usize::try_from(i.checked_sub(self.first)?).ok()?;
        self.values.get(k).copied()
    }

    /// The kept values of indices `from..to`, oldest first, when all of them are kept.
    fn run(&self, from: i64, to: i64) -> Option<std::collections::vec_deque::Iter<'_, f64>> {
        let lo = usize::try_from(from.checked_sub(self.first)?).ok()?;
        let hi = usize::try_from(to.checked_sub(self.first)?).ok()?;
        (lo <= hi && hi <= self.values.len()).then(|| self.values.range(lo..hi))
    }

    fn keep(&mut self, i: i64, z: f64) {
        let len = i64::try_from(self.values.len()).unwrap_or(i64::MAX);
        if self.values.is_empty() {
            self.first = i;
            self.values.push_back(z);
        } else if i == self.first.saturating_add(len) {
            self.values.push_back(z);
            if self.values.len() > Self::KEEP {
                self.values.pop_front();
                self.first += 1;
            }
        } else if i == self.first - 1 && self.values.len() < Self::KEEP {
            self.values.push_front(z);
            self.first = i;
        } else if i > self.first.saturating_add(len) {
            // Jumped ahead (a gap in sampling): start a new run there.
            self.values.clear();
            self.first = i;
            self.values.push_back(z);
        }
    }
}

/// Evaluates a [`SignalModel`] at offsets from the start.
#[derive(Debug, Clone)]
pub(crate) struct Evaluator<'a> {
    pub seed: u64,
    pub name: &'a str,
    pub model: &'a SignalModel,
    /// The noise step (the scenario's sample interval), in seconds.
    pub step: i64,
    /// Seconds from Monday 00:00 UTC of the start instant (for the weekly cycle).
    pub week_offset: i64,
    /// Seconds from 00:00 UTC of the start instant (for the daily cycle).
    pub day_offset: i64,
}

const DAY: f64 = 86_400.0;

impl Evaluator<'_> {
    /// The innovation at sample index `i`: kept ones are found inline (the AR(1) sum asks for
    /// dozens per sample, nearly all kept), the rest computed.
    #[inline]
    fn innovation(&self, state: &mut SignalState, i: i64) -> f64 {
        match state.innovations.get(i) {
            Some(z) => z,
            None => self.new_innovation(state, i),
        }
    }

    fn new_innovation(&self, state: &mut SignalState, i: i64) -> f64 {
        let mut rng = rng_for(self.seed, self.name, "noise", i);
        let z: f64 = match self.model.noise.df {
            Some(df) => match StudentT::new(df) {
                Ok(t) => t.sample(&mut rng) * ((df - 2.0) / df).sqrt(),
                Err(_) => StandardNormal.sample(&mut rng),
            },
            None => StandardNormal.sample(&mut rng),
        };
        state.innovations.keep(i, z);
        z
    }

    /// Unit-variance AR(1) noise at sample index `i`, as a truncated moving average of keyed
    /// innovations (exactly reproducible for any `i`, whatever was computed before).
    fn ar_noise(&self, state: &mut SignalState, i: i64) -> f64 {
        let phi = self.model.noise.ar;
        if phi <= 0.0 {
            return self.innovation(state, i);
        }
        let terms = ((1e-4f64).ln() / phi.ln()).ceil().clamp(1.0, 400.0) as i64;
        let scale = (1.0 - phi * phi).sqrt();
        // Begun as the term-by-term sum begins (0 + 1·z, and 1·z is z): a -0.0 innovation
        // gives +0.0 here too.
        let mut acc = 0.0 + self.innovation(state, i);
        let mut w = phi;
        // The older terms are nearly always all kept, in one run: summed from the run's slices
        // in the same order (so to the same bits) rather than looked up one index at a time.
        if let Some(older) = state.innovations.run(i - (terms - 1), i) {
            for z in older.rev() {
                acc += w * z;
                w *= phi;
            }
            return acc * scale;
        }
        for k in 1..terms {
            acc += w * self.innovation(state, i - k);
            w *= phi;
        }
        acc * scale
    }

    fn spike(&self, state_free_stream: &str, t: i64, per_day: f64, size: f64, length: Span) -> f64 {
        let len = length.seconds().max(1) as i64;
        let slot = t.div_euclid(len);
        let p = (per_day * len as f64 / DAY).clamp(0.0, 1.0);
        let mut rng = rng_for(self.seed, self.name, state_free_stream, slot);
        let u: f64 = rng.random();
        if u < p {
            let h: f64 = rng.random();
            size * (0.5 + h)
        } else {
            0.0
        }
    }

    /// The value at `t` seconds after the start, for `config`. Updates leak state.
    pub fn value(&self, state: &mut SignalState, t: i64, config: &ConfigSnapshot) -> f64 {
        let m = self.model;
        let mut level = m.base + m.trend_per_day * (t as f64 / DAY);
        for e in &m.effects {
            level *= e.factor(config);
        }
        let mut noise_factor = 1.0;
        let mut spike = 0.0;
        let mut leak_add = 0.0;
        for (fi, f) in m.faults.iter().enumerate() {
            let at = f.at.seconds() as i64;
            let in_time = t >= at && f.until.is_none_or(|u| t < u.seconds() as i64);
            let active = in_time
                && f.when.as_ref().is_none_or(|c| c.holds(config))
                && !f.unless.as_ref().is_some_and(|c| c.holds(config));
            let since = state.active_since.entry(fi).or_insert(None);
            if !active {
                *since = None;
                continue;
            }
            let start = *since.get_or_insert(t.max(at));
            match f.kind {
                FaultKind::Step => {
                    level = level * f.factor.unwrap_or(1.0) + f.add.unwrap_or(0.0);
                }
                FaultKind::Leak => {
                    let grown = f.per_hour.unwrap_or(0.0) * ((t - start) as f64 / 3600.0);
                    leak_add += f.max.map_or(grown, |mx| grown.min(mx));
                }
                FaultKind::Noisy => noise_factor *= f.factor.unwrap_or(1.0),
                FaultKind::Spikes => {
                    spike += self.spike(
                        &format!("fault-spikes-{fi}"),
                        t,
                        f.per_hour.unwrap_or(0.0) * 24.0,
                        f.size.unwrap_or(0.0),
                        f.length.unwrap_or(default_spike_length()),
                    );
                }
            }
        }
        level += leak_add;
        let mut cyc = 1.0;
        let tau = std::f64::consts::TAU;
        if let Some(d) = &m.daily {
            let tod = (t + self.day_offset - d.peak.seconds() as i64).rem_euclid(86_400) as f64;
            cyc += d.amplitude * (tau * tod / DAY).cos();
        }
        if let Some(w) = &m.weekly {
            let tow =
                (t + self.week_offset - w.peak.seconds() as i64).rem_euclid(7 * 86_400) as f64;
            cyc += w.amplitude * (tau * tow / (7.0 * DAY)).cos();
        }
        if let Some(sp) = &m.spikes {
            spike += self.spike("spikes", t, sp.per_day, sp.size, sp.length);
        }
        let mut value = level * cyc + level.abs() * spike;
        if m.noise.sd > 0.0 {
            let i = t.div_euclid(self.step.max(1));
            value += m.noise.sd * noise_factor * self.ar_noise(state, i);
        }
        if let Some(lo) = m.min {
            value = value.max(lo);
        }
        if let Some(hi) = m.max {
            value = value.min(hi);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innovations_keep_a_contiguous_run_of_the_newest() {
        let mut k = Innovations::default();
        // The AR sum asks for i, i-1, i-2, ...: the run grows down, then up one per sample.
        for i in (90..=100).rev() {
            k.keep(i, i as f64);
        }
        for i in 101..=700 {
            k.keep(i, i as f64);
        }
        assert_eq!(k.values.len(), Innovations::KEEP);
        assert_eq!(k.get(700), Some(700.0));
        assert_eq!(k.get(700 - Innovations::KEEP as i64 + 1), Some(189.0));
        assert_eq!(k.get(188), None, "older than the run");
        // Not next to the run: not kept; ahead of it: a new run.
        k.keep(5, 5.0);
        assert_eq!(k.get(5), None);
        k.keep(1_000, 1.5);
        assert_eq!((k.get(1_000), k.get(700)), (Some(1.5), None));
    }

    #[test]
    fn piecewise_interpolates_and_clamps() {
        let t = [[64.0, 1.0], [256.0, 0.5]];
        assert_eq!(piecewise(&t, 10.0), 1.0);
        assert_eq!(piecewise(&t, 1000.0), 0.5);
        assert!((piecewise(&t, 160.0) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn ar_noise_from_the_kept_run_equals_the_term_by_term_sum() {
        for (ar, df) in [(0.9, None), (0.5, Some(4.0)), (0.999, None), (0.01, None)] {
            let model = SignalModel {
                base: 100.0,
                trend_per_day: 0.0,
                daily: None,
                weekly: None,
                noise: Noise { sd: 1.0, ar, df },
                spikes: None,
                effects: Vec::new(),
                faults: Vec::new(),
                min: None,
                max: None,
            };
            let ev = Evaluator {
                seed: 7,
                name: "s",
                model: &model,
                step: 300,
                week_offset: 0,
                day_offset: 0,
            };
            let terms = ((1e-4f64).ln() / ar.ln()).ceil().clamp(1.0, 400.0) as i64;
            let scale = (1.0 - ar * ar).sqrt();
            let (mut fast, mut slow) = (SignalState::default(), SignalState::default());
            // In order, then a jump ahead (a new run) and back (indices outside the run).
            let order = (0..1_200).chain(5_000..5_010).chain(300..320);
            for i in order {
                let mut acc = 0.0;
                let mut w = 1.0;
                for k in 0..terms {
                    acc += w * ev.innovation(&mut slow, i - k);
                    w *= ar;
                }
                let want = acc * scale;
                let got = ev.ar_noise(&mut fast, i);
                assert_eq!(got.to_bits(), want.to_bits(), "φ {ar}, index {i}");
            }
        }
    }

    #[test]
    fn keys_differ_by_every_part() {
        let k = stream_key(1, "a", "noise", 0);
        assert_ne!(k, stream_key(2, "a", "noise", 0));
        assert_ne!(k, stream_key(1, "b", "noise", 0));
        assert_ne!(k, stream_key(1, "a", "spikes", 0));
        assert_ne!(k, stream_key(1, "a", "noise", 1));
    }
}

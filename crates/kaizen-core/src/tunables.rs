//! The safety envelope: declared tunables (knobs) with their type, bounds, allowed values and
//! largest step per intervention, plus invariants across knobs.
//!
//! Declared in `kaizen.yaml` (`tunables:` and `invariants:`) or in a separate file named by
//! `tunables: tunables.yaml` (same two keys inside; that file is then a blocked path too):
//!
//! ```yaml
//! tunables:
//!   strict: true          # a change to any undeclared key is refused
//!   cache_mb: { file: config/app.yaml, key: cache_mb, type: int, min: 16, max: 1024, max_step: 2x }
//!   workers:  { file: config/app.yaml, type: int, min: 1, max: 32, max_step: "+4", area: workers }
//!   timeout:  { file: config/app.yaml, type: duration, min: 1s, max: 60s, risk: medium }
//!   policy:   { file: config/app.yaml, key: cache.policy, type: enum, allowed: [lru, lfu] }
//! invariants:
//!   - "workers * cache_mb <= 8192"
//! ```
//!
//! [`Envelope::check`] is the pure decision the `envelope` guard makes: it computes every touched
//! file after the change and refuses, naming the knob, the bound and the value, anything outside
//! the envelope. Missing data (a knob without a value where a step or invariant needs one) is
//! refused too: it is never evidence that the change is safe.

pub mod expr;

use crate::edit::{Edit, config_get};
use crate::guard::paths::normalize_repo_path;
use crate::intervention::Risk;
use crate::quantity;
use crate::yaml::{self, YamlError};
use expr::{Expr, Ty, Val};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The type of a knob's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KnobType {
    /// A whole number.
    Int,
    /// Any finite number.
    Float,
    /// `true` / `false`.
    Bool,
    /// One of `allowed`.
    Enum,
    /// `250ms`, `30s`, `5m`, `2h`, `1d` (a bare number is seconds); compared in seconds.
    Duration,
    /// `512MB`, `64MiB`, `4k` (all binary; a bare number is bytes); compared in bytes.
    Size,
}

impl fmt::Display for KnobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KnobType::Int => "int",
            KnobType::Float => "float",
            KnobType::Bool => "bool",
            KnobType::Enum => "enum",
            KnobType::Duration => "duration",
            KnobType::Size => "size",
        })
    }
}

impl KnobType {
    fn expr_ty(self) -> Ty {
        match self {
            KnobType::Bool => Ty::Bool,
            KnobType::Enum => Ty::Text,
            _ => Ty::Num,
        }
    }

    fn numeric(self) -> bool {
        self.expr_ty() == Ty::Num
    }

    /// A number of this type from a bound or step as written (`16`, `30s`, `64MiB`).
    fn quantity(self, v: &Value) -> Option<f64> {
        match (self, v) {
            (_, Value::Number(n)) => n.as_f64().filter(|x| x.is_finite()),
            (KnobType::Duration, Value::String(s)) => quantity::parse_duration(s).map(|q| q.0),
            (KnobType::Size, Value::String(s)) => quantity::parse_size(s).map(|q| q.0),
            _ => None,
        }
    }
}

/// The largest change one intervention may make to a knob.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `2x`: the new value is within a factor of the old one (both positive).
    Factor(f64),
    /// `+50%`: the change is at most this fraction of the old value.
    Percent(f64),
    /// `+64` (or `+30s`, `+64MiB`): the change is at most this much.
    Plus(f64),
}

impl Step {
    fn parse(v: &Value, ty: KnobType) -> Result<Step, String> {
        let bad = || {
            format!(
                "invalid max_step {v} (write e.g. 2x, \"+50%\" or \"+64\"{})",
                match ty {
                    KnobType::Duration => ", \"+30s\"",
                    KnobType::Size => ", \"+64MiB\"",
                    _ => "",
                }
            )
        };
        let positive = |x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(x)
            } else {
                Err(bad())
            }
        };
        if let Some(n) = v.as_f64() {
            return positive(n).map(Step::Plus);
        }
        let s = v.as_str().ok_or_else(bad)?.trim();
        if let Some(f) = s.strip_suffix(['x', 'X']) {
            let f: f64 = f.trim().parse().map_err(|_| bad())?;
            if !(f.is_finite() && f > 1.0) {
                return Err(format!("{}: a factor must be above 1", bad()));
            }
            return Ok(Step::Factor(f));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            return positive(p / 100.0).map(Step::Percent);
        }
        let x = ty
            .quantity(&Value::String(s.to_string()))
            .or_else(|| s.parse::<f64>().ok())
            .ok_or_else(bad)?;
        positive(x).map(Step::Plus)
    }

    /// Whether going from `old` to `new` stays within the step (a hair of float slack).
    fn allows(&self, old: f64, new: f64) -> bool {
        let slack = 1e-9;
        match *self {
            Step::Factor(f) => {
                old > 0.0 && new > 0.0 && (new / old).max(old / new) <= f * (1.0 + slack)
            }
            Step::Percent(p) => (new - old).abs() <= p * old.abs() * (1.0 + slack),
            Step::Plus(d) => (new - old).abs() <= d * (1.0 + slack),
        }
    }

    /// How big the step from `old` to `new` is, in this step's own terms (`4x`, `+300%`, `+384`).
    fn measure(&self, old: f64, new: f64) -> String {
        match self {
            Step::Factor(_) if old > 0.0 && new > 0.0 => {
                format!("{}x", round3((new / old).max(old / new)))
            }
            Step::Factor(_) => "not a positive ratio".to_string(),
            Step::Percent(_) if old != 0.0 => {
                format!("{:+}%", round3((new - old) / old.abs() * 100.0))
            }
            Step::Percent(_) => "a change from 0".to_string(),
            Step::Plus(_) => format!("{:+}", round3(new - old)),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One declared knob.
#[derive(Debug, Clone, PartialEq)]
pub struct Knob {
    /// Its name (used in invariants and by the LLM).
    pub name: String,
    /// The repo-relative file holding it (normalised).
    pub file: String,
    /// The dotted key inside the file.
    pub key: String,
    /// Its type.
    pub ty: KnobType,
    /// Lower bound (seconds for durations, bytes for sizes), with its spelling.
    pub min: Option<(f64, String)>,
    /// Upper bound, with its spelling.
    pub max: Option<(f64, String)>,
    /// The values an enum may take.
    pub allowed: Vec<String>,
    /// The largest step per intervention, with its spelling.
    pub max_step: Option<(Step, String)>,
    /// The area a change to it belongs to (candidates must say the same).
    pub area: Option<String>,
    /// The least risk a change to it carries (candidates may not say less).
    pub risk: Option<Risk>,
    /// What it does, for the LLM's prompt.
    pub description: Option<String>,
}

impl Knob {
    /// The typed value of `v` as found in a file, or why it is not one of this knob's type.
    pub fn read(&self, v: &Value) -> Result<Val, String> {
        let wrong = || format!("{v} is not a valid {}", self.ty);
        match self.ty {
            KnobType::Int => match v {
                Value::Number(n) if n.is_i64() || n.is_u64() => {
                    n.as_f64().map(Val::Num).ok_or_else(wrong)
                }
                _ => Err(format!("{v} is not an int")),
            },
            KnobType::Float => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Val::Num)
                .ok_or_else(|| format!("{v} is not a number")),
            KnobType::Bool => v.as_bool().map(Val::Bool).ok_or_else(wrong),
            KnobType::Enum => v
                .as_str()
                .map(|s| Val::Text(s.to_string()))
                .ok_or_else(|| format!("{v} is not a string")),
            KnobType::Duration | KnobType::Size => {
                self.ty.quantity(v).map(Val::Num).ok_or_else(|| {
                    format!(
                        "{v} is not a {} (write e.g. {})",
                        self.ty,
                        if self.ty == KnobType::Duration {
                            "\"30s\""
                        } else {
                            "\"64MiB\""
                        }
                    )
                })
            }
        }
    }

    /// Why `v` is outside this knob's type, bounds or allowed values, if it is.
    fn out_of_bounds(&self, v: &Value) -> Option<String> {
        let val = match self.read(v) {
            Ok(val) => val,
            Err(e) => return Some(format!("knob `{}`: {e}", self.name)),
        };
        match val {
            Val::Num(x) => {
                if let Some((min, text)) = &self.min
                    && x < *min
                {
                    return Some(format!("knob `{}`: {v} is below min {text}", self.name));
                }
                if let Some((max, text)) = &self.max
                    && x > *max
                {
                    return Some(format!("knob `{}`: {v} is above max {text}", self.name));
                }
                None
            }
            Val::Text(s) if !self.allowed.contains(&s) => Some(format!(
                "knob `{}`: {s:?} is not one of the allowed values [{}]",
                self.name,
                self.allowed.join(", ")
            )),
            _ => None,
        }
    }

    /// `int 16..=1024, step 2x` — for prompts and listings.
    pub fn summary(&self) -> String {
        let mut s = self.ty.to_string();
        match (&self.min, &self.max) {
            (Some((_, a)), Some((_, b))) => s.push_str(&format!(" {a}..={b}")),
            (Some((_, a)), None) => s.push_str(&format!(" >= {a}")),
            (None, Some((_, b))) => s.push_str(&format!(" <= {b}")),
            (None, None) => {}
        }
        if !self.allowed.is_empty() {
            s.push_str(&format!(" one of [{}]", self.allowed.join(", ")));
        }
        if let Some((_, text)) = &self.max_step {
            s.push_str(&format!(", max step {text}"));
        }
        s
    }
}

/// Declared knobs and invariants.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    /// Refuse changes to undeclared keys (and whole-file writes).
    pub strict: bool,
    /// Knobs by name.
    pub knobs: BTreeMap<String, Knob>,
    /// Invariants across knobs, checked on the resulting config.
    pub invariants: Vec<Expr>,
    /// The separate envelope file, when it is not inline in `kaizen.yaml`.
    pub file: Option<PathBuf>,
}

/// What [`Envelope::check`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnvelopeReport {
    /// Why the change is refused (empty: it is inside the envelope).
    pub problems: Vec<String>,
    /// The knobs it changes, `cache_mb 128 → 256`.
    pub changed: Vec<String>,
    /// How many invariants were evaluated.
    pub invariants_checked: usize,
}

impl Envelope {
    /// The knob at `file#key`, if one is declared there.
    pub fn knob_at(&self, file: &str, key: &str) -> Option<&Knob> {
        let file = normalize_repo_path(file).ok()?;
        self.knobs.values().find(|k| k.file == file && k.key == key)
    }

    /// Checks a change against the envelope. `read` gives a repo-relative file's content now
    /// (`None`: absent); it is only asked for files that hold knobs.
    pub fn check(
        &self,
        change: &[Edit],
        area: &str,
        risk: Risk,
        mut read: impl FnMut(&str) -> Result<Option<String>, String>,
    ) -> Result<EnvelopeReport, String> {
        let mut report = EnvelopeReport::default();
        let knob_files: Vec<&str> = {
            let mut v: Vec<&str> = self.knobs.values().map(|k| k.file.as_str()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        // Before and after of every touched file that holds knobs.
        let mut files: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        for e in change {
            let norm = normalize_repo_path(e.file()).ok();
            if self.strict {
                match e {
                    Edit::ConfigSet { file, key, .. } if self.knob_at(file, key).is_none() => {
                        report.problems.push(format!(
                            "`{key}` in {file} is not a declared tunable (tunables.strict: true)"
                        ));
                    }
                    Edit::FileWrite { file, .. } => report.problems.push(format!(
                        "writing the whole of {file} is refused with tunables.strict: true (only declared tunables may change)"
                    )),
                    _ => {}
                }
            }
            let Some(norm) = norm.filter(|f| knob_files.contains(&f.as_str())) else {
                continue;
            };
            if !files.contains_key(&norm) {
                let before = read(&norm)?;
                files.insert(norm.clone(), (before.clone(), before));
            }
            if let Some(entry) = files.get_mut(&norm) {
                match e.apply_to(entry.1.as_deref()) {
                    Ok(next) => entry.1 = Some(next),
                    Err(err) => {
                        report
                            .problems
                            .push(format!("cannot compute the resulting {norm}: {err}"));
                        return Ok(report);
                    }
                }
            }
        }
        let get = |file: &str, content: Option<&str>, key: &str| -> Result<Option<Value>, String> {
            match content {
                None => Ok(None),
                Some(c) => config_get(file, c, key).map_err(|e| e.to_string()),
            }
        };
        let mut changed: Vec<&str> = Vec::new();
        // Knobs already refused for their value: invariants over them would only repeat that.
        let mut invalid: Vec<&str> = Vec::new();
        for knob in self.knobs.values() {
            let Some((before, after)) = files.get(&knob.file) else {
                continue;
            };
            let old = get(&knob.file, before.as_deref(), &knob.key)?;
            let new = match get(&knob.file, after.as_deref(), &knob.key) {
                Ok(v) => v,
                Err(e) => {
                    report.problems.push(format!("knob `{}`: {e}", knob.name));
                    continue;
                }
            };
            if old == new {
                continue;
            }
            changed.push(&knob.name);
            let Some(new) = new else {
                report.problems.push(format!(
                    "knob `{}`: the change removes {} from {}",
                    knob.name, knob.key, knob.file
                ));
                continue;
            };
            report.changed.push(format!(
                "{} {} → {new}",
                knob.name,
                old.as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "unset".into())
            ));
            if let Some(p) = knob.out_of_bounds(&new) {
                report.problems.push(p);
                invalid.push(&knob.name);
                continue;
            }
            if let Some(a) = &knob.area
                && a != area
            {
                report.problems.push(format!(
                    "knob `{}` belongs to area {a:?}, the candidate says {area:?}",
                    knob.name
                ));
            }
            if let Some(r) = knob.risk
                && risk < r
            {
                report.problems.push(format!(
                    "knob `{}` carries risk {r}, the candidate says {risk}",
                    knob.name
                ));
            }
            if let Some((step, text)) = &knob.max_step {
                let old_num = old.as_ref().map(|o| knob.read(o));
                let new_num = knob.read(&new);
                match (old_num, new_num) {
                    (Some(Ok(Val::Num(o))), Ok(Val::Num(n))) if !step.allows(o, n) => {
                        report.problems.push(format!(
                            "knob `{}`: {} → {new} is a step of {}, above max_step {text}",
                            knob.name,
                            old.as_ref().map(ToString::to_string).unwrap_or_default(),
                            step.measure(o, n)
                        ));
                    }
                    (None, _) => report.problems.push(format!(
                        "knob `{}`: no current value in {} to measure max_step {text} from (fail closed)",
                        knob.name, knob.file
                    )),
                    (Some(Err(e)), _) => report.problems.push(format!(
                        "knob `{}`: the current value {e}; cannot measure max_step {text}",
                        knob.name
                    )),
                    _ => {}
                }
            }
        }
        // Invariants that read a changed knob, on the whole resulting config.
        let mut contents: BTreeMap<String, Option<String>> = files
            .iter()
            .map(|(f, (_, after))| (f.clone(), after.clone()))
            .collect();
        for inv in &self.invariants {
            if !inv.knobs().iter().any(|k| changed.contains(&k.as_str()))
                || inv.knobs().iter().any(|k| invalid.contains(&k.as_str()))
            {
                continue;
            }
            report.invariants_checked += 1;
            let mut values = BTreeMap::new();
            let mut missing = None;
            for name in inv.knobs() {
                let Some(knob) = self.knobs.get(name) else {
                    missing = Some(format!("knob `{name}` is not declared"));
                    break;
                };
                if !contents.contains_key(&knob.file) {
                    let c = read(&knob.file)?;
                    contents.insert(knob.file.clone(), c);
                }
                let content = contents.get(&knob.file).cloned().flatten();
                match get(&knob.file, content.as_deref(), &knob.key) {
                    Ok(Some(v)) => match knob.read(&v) {
                        Ok(val) => {
                            values.insert(name.clone(), val);
                        }
                        Err(e) => {
                            missing = Some(format!("knob `{name}`: {e}"));
                            break;
                        }
                    },
                    Ok(None) => {
                        missing = Some(format!(
                            "knob `{name}` has no value in {} (fail closed)",
                            knob.file
                        ));
                        break;
                    }
                    Err(e) => {
                        missing = Some(format!("knob `{name}`: {e}"));
                        break;
                    }
                }
            }
            if let Some(why) = missing {
                report.problems.push(format!(
                    "invariant `{}` cannot be checked: {why}",
                    inv.source()
                ));
                continue;
            }
            let shown = values
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            match inv.holds(&values) {
                Ok(true) => {}
                Ok(false) => report
                    .problems
                    .push(format!("invariant `{}` broken with {shown}", inv.source())),
                Err(e) => report.problems.push(format!(
                    "invariant `{}` cannot be evaluated with {shown}: {e}",
                    inv.source()
                )),
            }
        }
        Ok(report)
    }
}

/// A knob as a proposer should see it: its value now and where one intervention may take it.
#[derive(Debug, Clone, PartialEq)]
pub struct KnobState {
    /// The knob.
    pub knob: Knob,
    /// Its value in the repository now (`None`: not set, or the file is unreadable).
    pub current: Option<Value>,
    /// For numeric knobs: the lowest and highest value reachable in one intervention (bounds
    /// intersected with `max_step` around the current value; ints rounded inward; durations in
    /// seconds, sizes in bytes). `None` on a side means unbounded there.
    pub range: (Option<f64>, Option<f64>),
    /// Whether any change is possible now (`false`: a step is declared but there is no current
    /// value to take it from, or the range is empty).
    pub changeable: bool,
}

impl KnobState {
    /// `cache_mb = 128 (int 16..=1024, max step 2x; now 64..=256; area cache)`.
    pub fn line(&self) -> String {
        let k = &self.knob;
        let now = self
            .current
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "unset".into());
        let mut s = format!("{} = {now} ({}", k.name, k.summary());
        if !self.changeable {
            s.push_str("; cannot be changed now");
        } else if k.max_step.is_some()
            && let (Some(lo), Some(hi)) = self.range
        {
            s.push_str(&format!(
                "; this time {}..={}",
                fmt_q(k.ty, lo),
                fmt_q(k.ty, hi)
            ));
        }
        if let Some(a) = &k.area {
            s.push_str(&format!("; area {a}"));
        }
        if let Some(r) = k.risk {
            s.push_str(&format!("; risk at least {r}"));
        }
        s.push(')');
        if let Some(d) = &k.description {
            s.push_str(&format!(": {d}"));
        }
        s
    }
}

fn fmt_q(ty: KnobType, x: f64) -> String {
    let x = round3(x);
    match ty {
        KnobType::Duration => format!("{x}s"),
        KnobType::Size => format!("{x}B"),
        _ => format!("{x}"),
    }
}

impl Envelope {
    /// Every knob's state now, in name order; `read` gives a repo-relative file's content.
    pub fn states(
        &self,
        mut read: impl FnMut(&str) -> Result<Option<String>, String>,
    ) -> Vec<KnobState> {
        let mut files: BTreeMap<String, Option<String>> = BTreeMap::new();
        self.knobs
            .values()
            .map(|k| {
                let content = files
                    .entry(k.file.clone())
                    .or_insert_with(|| read(&k.file).ok().flatten())
                    .clone();
                let current = content.and_then(|c| config_get(&k.file, &c, &k.key).ok().flatten());
                let mut lo = k.min.as_ref().map(|m| m.0);
                let mut hi = k.max.as_ref().map(|m| m.0);
                let mut changeable = true;
                if let Some((step, _)) = &k.max_step {
                    match current.as_ref().map(|v| k.read(v)) {
                        Some(Ok(Val::Num(o))) => {
                            let (a, b) = match *step {
                                Step::Factor(f) if o > 0.0 => (o / f, o * f),
                                Step::Factor(_) => (o, o),
                                Step::Percent(p) => (o - p * o.abs(), o + p * o.abs()),
                                Step::Plus(d) => (o - d, o + d),
                            };
                            lo = Some(lo.map_or(a, |l| l.max(a)));
                            hi = Some(hi.map_or(b, |h| h.min(b)));
                        }
                        _ => changeable = false,
                    }
                }
                if k.ty == KnobType::Int {
                    lo = lo.map(|x| (x - 1e-9).ceil());
                    hi = hi.map(|x| (x + 1e-9).floor());
                }
                if let (Some(a), Some(b)) = (lo, hi)
                    && a > b
                {
                    changeable = false;
                }
                KnobState {
                    knob: k.clone(),
                    current,
                    range: if k.ty.numeric() {
                        (lo, hi)
                    } else {
                        (None, None)
                    },
                    changeable,
                }
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobSerde {
    file: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(rename = "type")]
    ty: KnobType,
    #[serde(default)]
    min: Option<Value>,
    #[serde(default)]
    max: Option<Value>,
    #[serde(default, alias = "values")]
    allowed: Option<Vec<Value>>,
    #[serde(default)]
    max_step: Option<Value>,
    #[serde(default)]
    area: Option<String>,
    #[serde(default)]
    risk: Option<Risk>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeFileSerde {
    #[serde(default)]
    tunables: Option<Value>,
    #[serde(default)]
    invariants: Vec<String>,
}

/// Most knobs one envelope may declare (each is listed in every LLM prompt).
pub const MAX_KNOBS: usize = 200;

fn bound_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds the envelope from the `tunables:` and `invariants:` of `kaizen.yaml` (`text`, read from
/// `path`); `tunables` may name a separate file (relative to `base`). `None` when nothing is
/// declared. Errors name the file, line and field.
pub fn load(
    tunables: Option<&Value>,
    invariants: &[String],
    text: &str,
    path: &Path,
    base: &Path,
) -> Result<Option<Envelope>, YamlError> {
    let (map, file, file_text, file_path, mut all_invariants) = match tunables {
        None if invariants.is_empty() => return Ok(None),
        None => (None, None, String::new(), path.to_path_buf(), Vec::new()),
        Some(Value::String(name)) => {
            let p = PathBuf::from(name);
            let p = if p.is_absolute() { p } else { base.join(p) };
            let bytes = std::fs::read(&p).map_err(|e| {
                yaml::semantic_error(
                    text,
                    path,
                    "tunables",
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            let t = yaml::decode_utf8(bytes, &p)?;
            let raw: EnvelopeFileSerde = yaml::from_str(&t, &p)?;
            (
                raw.tunables,
                Some(p.clone()),
                t,
                p,
                raw.invariants
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| (s, i, true))
                    .collect::<Vec<_>>(),
            )
        }
        Some(v) => (
            Some(v.clone()),
            None,
            text.to_string(),
            path.to_path_buf(),
            Vec::new(),
        ),
    };
    all_invariants.extend(
        invariants
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i, false)),
    );
    let bad = |field: &str, msg: String| yaml::semantic_error(&file_text, &file_path, field, msg);
    let mut env = Envelope {
        file,
        ..Default::default()
    };
    let entries = match map {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(bad(
                "tunables",
                format!("expected a map of knobs or a file name, found {other}"),
            ));
        }
    };
    for (name, raw) in entries {
        let field = format!("tunables.{name}");
        if name == "strict" {
            env.strict = raw
                .as_bool()
                .ok_or_else(|| bad(&field, format!("must be true or false, found {raw}")))?;
            continue;
        }
        if env.knobs.len() >= MAX_KNOBS {
            return Err(bad("tunables", format!("at most {MAX_KNOBS} knobs")));
        }
        let ok_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !name.ends_with('.')
            && !matches!(name.as_str(), "true" | "false" | "and" | "or" | "not");
        if !ok_name {
            return Err(bad(
                &field,
                format!(
                    "knob name {name:?}: use letters, digits, `_` and `.` (it is used in invariants)"
                ),
            ));
        }
        let k: KnobSerde = serde_path_to_error::deserialize(raw).map_err(|e| {
            let sub = e.path().to_string();
            let f = if sub == "." || sub.is_empty() {
                field.clone()
            } else {
                format!("{field}.{sub}")
            };
            bad(&f, e.into_inner().to_string())
        })?;
        let file = normalize_repo_path(&k.file)
            .map_err(|e| bad(&format!("{field}.file"), format!("{:?}: {e}", k.file)))?;
        let key = k.key.unwrap_or_else(|| name.clone());
        if key.split('.').any(|s| s.trim().is_empty()) {
            return Err(bad(
                &format!("{field}.key"),
                format!("{key:?} is not a dotted key path"),
            ));
        }
        let bound = |which: &str, v: Option<Value>| -> Result<Option<(f64, String)>, YamlError> {
            let Some(v) = v else { return Ok(None) };
            if !k.ty.numeric() {
                return Err(bad(
                    &format!("{field}.{which}"),
                    format!("a {} knob has no {which}", k.ty),
                ));
            }
            let x = k.ty.quantity(&v).ok_or_else(|| {
                bad(
                    &format!("{field}.{which}"),
                    format!("{v} is not a {} bound", k.ty),
                )
            })?;
            Ok(Some((x, bound_text(&v))))
        };
        let min = bound("min", k.min)?;
        let max = bound("max", k.max)?;
        if let (Some((a, at)), Some((b, bt))) = (&min, &max)
            && a > b
        {
            return Err(bad(
                &format!("{field}.max"),
                format!("max {bt} is below min {at}"),
            ));
        }
        if k.ty == KnobType::Int
            && let Some((x, t)) = min.iter().chain(max.iter()).find(|(x, _)| x.fract() != 0.0)
        {
            return Err(bad(
                &field,
                format!("bound {t} of an int knob is not whole ({x})"),
            ));
        }
        let allowed = match (k.ty, k.allowed) {
            (KnobType::Enum, Some(vals)) if !vals.is_empty() => {
                let mut out = Vec::new();
                for v in vals {
                    match v {
                        Value::String(s) => out.push(s),
                        other => {
                            return Err(bad(
                                &format!("{field}.allowed"),
                                format!("enum values are strings, found {other}"),
                            ));
                        }
                    }
                }
                out
            }
            (KnobType::Enum, _) => {
                return Err(bad(
                    &format!("{field}.allowed"),
                    "an enum knob needs `allowed: [..]`".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(bad(
                    &format!("{field}.allowed"),
                    format!("only enum knobs take `allowed` (this is {})", k.ty),
                ));
            }
            (_, None) => Vec::new(),
        };
        let max_step = match k.max_step {
            None => None,
            Some(_) if !k.ty.numeric() => {
                return Err(bad(
                    &format!("{field}.max_step"),
                    format!("a {} knob has no max_step", k.ty),
                ));
            }
            Some(v) => Some((
                Step::parse(&v, k.ty).map_err(|m| bad(&format!("{field}.max_step"), m))?,
                bound_text(&v),
            )),
        };
        if k.area.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err(bad(&format!("{field}.area"), "must not be empty".into()));
        }
        if let Some(other) = env.knobs.values().find(|o| o.file == file && o.key == key) {
            return Err(bad(
                &format!("{field}.key"),
                format!("{file}#{key} is already declared as knob `{}`", other.name),
            ));
        }
        env.knobs.insert(
            name.clone(),
            Knob {
                name,
                file,
                key,
                ty: k.ty,
                min,
                max,
                allowed,
                max_step,
                area: k.area,
                risk: k.risk,
                description: k.description,
            },
        );
    }
    let types: BTreeMap<String, Ty> = env
        .knobs
        .values()
        .map(|k| (k.name.clone(), k.ty.expr_ty()))
        .collect();
    for (src, i, in_file) in all_invariants {
        let field = format!("invariants[{i}]");
        let e = Expr::parse(&src, &types).map_err(|e| {
            let msg = format!("invariant {src:?}: {e}");
            if in_file {
                bad(&field, msg)
            } else {
                yaml::semantic_error(text, path, &field, msg)
            }
        })?;
        env.invariants.push(e);
    }
    Ok(Some(env))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENVELOPE: &str = r#"tunables:
  strict: true
  cache_mb: { file: config/app.yaml, key: cache_mb, type: int, min: 16, max: 1024, max_step: 2x }
  workers:  { file: config/app.yaml, type: int, min: 1, max: 32, area: workers, risk: medium }
  timeout:  { file: config/app.yaml, type: duration, min: 1s, max: 60s, max_step: "+10s" }
  policy:   { file: config/app.yaml, key: cache.policy, type: enum, allowed: [lru, lfu] }
invariants:
  - "workers * cache_mb <= 7000"
"#;

    const APP: &str =
        "# app\ncache_mb: 128  # MiB\nworkers: 4\ntimeout: 30s\ncache:\n  policy: lru\n";

    fn envelope(text: &str) -> Result<Option<Envelope>, YamlError> {
        #[derive(Deserialize)]
        struct Doc {
            tunables: Option<Value>,
            #[serde(default)]
            invariants: Vec<String>,
        }
        let d: Doc = yaml::from_str(text, Path::new("kaizen.yaml"))?;
        load(
            d.tunables.as_ref(),
            &d.invariants,
            text,
            Path::new("kaizen.yaml"),
            Path::new("."),
        )
    }

    fn set(key: &str, value: Value) -> Edit {
        Edit::ConfigSet {
            file: "config/app.yaml".into(),
            key: key.into(),
            value,
        }
    }

    fn check(change: &[Edit], area: &str, risk: Risk) -> EnvelopeReport {
        let env = envelope(ENVELOPE).unwrap().unwrap();
        env.check(change, area, risk, |f| {
            assert_eq!(f, "config/app.yaml");
            Ok(Some(APP.to_string()))
        })
        .unwrap()
    }

    #[test]
    fn loads_the_issue_example() {
        let env = envelope(ENVELOPE).unwrap().unwrap();
        assert!(env.strict);
        assert_eq!(env.knobs.len(), 4);
        let c = &env.knobs["cache_mb"];
        assert_eq!(c.summary(), "int 16..=1024, max step 2x");
        assert_eq!(env.knobs["timeout"].min.as_ref().unwrap().0, 1.0);
        assert_eq!(env.invariants.len(), 1);
        assert!(envelope("signals: {}\n").is_err() || envelope("{}\n").unwrap().is_none());
    }

    #[test]
    fn inside_the_envelope_passes() {
        let r = check(&[set("cache_mb", json!("*2"))], "cache", Risk::Low);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.changed, ["cache_mb 128 → 256"]);
        assert_eq!(r.invariants_checked, 1);
        let r = check(&[set("timeout", json!("40s"))], "cache", Risk::Low);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn each_refusal_names_knob_bound_and_value() {
        let p = |change: &[Edit], area: &str, risk: Risk| check(change, area, risk).problems;
        assert_eq!(
            p(&[set("cache_mb", json!(2048))], "cache", Risk::Low),
            ["knob `cache_mb`: 2048 is above max 1024",]
        );
        assert_eq!(
            p(&[set("cache_mb", json!(8))], "cache", Risk::Low),
            ["knob `cache_mb`: 8 is below min 16"]
        );
        assert_eq!(
            p(&[set("cache_mb", json!(512))], "cache", Risk::Low),
            ["knob `cache_mb`: 128 → 512 is a step of 4x, above max_step 2x"]
        );
        assert_eq!(
            p(&[set("cache_mb", json!(100.5))], "cache", Risk::Low),
            ["knob `cache_mb`: 100.5 is not an int"]
        );
        assert_eq!(
            p(&[set("cache.policy", json!("fifo"))], "cache", Risk::Low),
            ["knob `policy`: \"fifo\" is not one of the allowed values [lru, lfu]"]
        );
        assert_eq!(
            p(&[set("timeout", json!("90s"))], "cache", Risk::Low),
            ["knob `timeout`: \"90s\" is above max 60s"]
        );
        assert_eq!(
            p(&[set("timeout", json!("45s"))], "cache", Risk::Low),
            ["knob `timeout`: \"30s\" → \"45s\" is a step of +15, above max_step +10s"]
        );
        assert_eq!(
            p(&[set("threads", json!(8))], "cache", Risk::Low),
            ["`threads` in config/app.yaml is not a declared tunable (tunables.strict: true)"]
        );
        let both = p(
            &[set("workers", json!(30)), set("cache_mb", json!(256))],
            "workers",
            Risk::Medium,
        );
        assert_eq!(
            both,
            ["invariant `workers * cache_mb <= 7000` broken with cache_mb=256, workers=30"]
        );
        let area_risk = p(&[set("workers", json!(5))], "cache", Risk::Low);
        assert_eq!(
            area_risk,
            [
                "knob `workers` belongs to area \"workers\", the candidate says \"cache\"",
                "knob `workers` carries risk medium, the candidate says low"
            ]
        );
        let w = Edit::FileWrite {
            file: "config/app.yaml".into(),
            content: "cache_mb: 4096\n".into(),
        };
        let ps = p(&[w], "cache", Risk::Low);
        assert!(
            ps[0].contains("writing the whole of config/app.yaml"),
            "{ps:?}"
        );
        assert!(ps.iter().any(|x| x.contains("removes workers")), "{ps:?}");
        assert!(
            ps.iter().any(|x| x.contains("4096 is above max 1024")),
            "{ps:?}"
        );
    }

    #[test]
    fn states_show_where_one_step_may_go() {
        let env = envelope(ENVELOPE).unwrap().unwrap();
        let states = env.states(|_| Ok(Some(APP.to_string())));
        let names: Vec<&str> = states.iter().map(|s| s.knob.name.as_str()).collect();
        assert_eq!(names, ["cache_mb", "policy", "timeout", "workers"]);
        assert_eq!(states[0].range, (Some(64.0), Some(256.0)));
        assert_eq!(
            states[0].line(),
            "cache_mb = 128 (int 16..=1024, max step 2x; this time 64..=256)"
        );
        assert_eq!(states[2].range, (Some(20.0), Some(40.0)));
        assert_eq!(states[3].range, (Some(1.0), Some(32.0)));
        let none = env.states(|_| Ok(None));
        assert!(!none[0].changeable && none[3].changeable);
        assert!(none[0].line().contains("unset") && none[0].line().contains("cannot be changed"));
    }

    #[test]
    fn missing_values_fail_closed() {
        let env = envelope(ENVELOPE).unwrap().unwrap();
        let r = env
            .check(&[set("cache_mb", json!(64))], "cache", Risk::Low, |_| {
                Ok(Some("cache_mb: 128\n".into()))
            })
            .unwrap();
        assert_eq!(
            r.problems,
            [
                "invariant `workers * cache_mb <= 7000` cannot be checked: knob `workers` has no value in config/app.yaml (fail closed)"
            ]
        );
        let r = env
            .check(&[set("cache_mb", json!(64))], "cache", Risk::Low, |_| {
                Ok(None)
            })
            .unwrap();
        assert!(
            r.problems[0].contains("no current value"),
            "{:?}",
            r.problems
        );
        assert!(
            env.check(&[set("cache_mb", json!(64))], "cache", Risk::Low, |_| Err(
                "unreadable".into()
            ))
            .is_err()
        );
    }

    #[test]
    fn load_errors_name_line_and_field() {
        let e = |from: &str, to: &str| {
            let t = ENVELOPE.replace(from, to);
            assert_ne!(t, ENVELOPE, "{from}");
            envelope(&t).unwrap_err().to_string()
        };
        let m = e("max_step: 2x", "max_step: 0.5x");
        assert!(
            m.starts_with("kaizen.yaml:3") && m.contains("tunables.cache_mb.max_step"),
            "{m}"
        );
        let m = e("type: int, min: 16", "type: integer, min: 16");
        assert!(
            m.contains("tunables.cache_mb.type") && m.contains("kaizen.yaml:3"),
            "{m}"
        );
        let m = e("min: 16, max: 1024", "min: 2048, max: 1024");
        assert!(m.contains("max 1024 is below min 2048"), "{m}");
        let m = e("allowed: [lru, lfu]", "allowed: []");
        assert!(m.contains("tunables.policy.allowed"), "{m}");
        let m = e("min: 1s", "min: soon");
        assert!(m.contains("\"soon\" is not a duration bound"), "{m}");
        let m = e("workers * cache_mb", "workers * cache_mib");
        assert!(
            m.starts_with("kaizen.yaml:8")
                && m.contains("invariants[0]")
                && m.contains("column 11: unknown knob `cache_mib`"),
            "{m}"
        );
        let m = e("strict: true", "strict: yes please");
        assert!(m.contains("tunables.strict"), "{m}");
        let m = e("area: workers,", "colour: red,");
        assert!(m.contains("colour"), "{m}");
    }

    #[test]
    fn a_separate_file_is_read_and_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tunables.yaml"), ENVELOPE).unwrap();
        let env = load(
            Some(&json!("tunables.yaml")),
            &[],
            "tunables: tunables.yaml\n",
            &dir.path().join("kaizen.yaml"),
            dir.path(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(env.file, Some(dir.path().join("tunables.yaml")));
        assert_eq!(env.invariants.len(), 1);
        std::fs::write(
            dir.path().join("tunables.yaml"),
            ENVELOPE.replace("max: 32", "max: lots"),
        )
        .unwrap();
        let e = load(
            Some(&json!("tunables.yaml")),
            &[],
            "tunables: tunables.yaml\n",
            &dir.path().join("kaizen.yaml"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tunables.yaml:4") && e.contains("tunables.workers.max"),
            "{e}"
        );
    }
}

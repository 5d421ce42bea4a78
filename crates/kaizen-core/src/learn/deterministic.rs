//! The deterministic distiller: finalized history in, lesson changes out, no LLM.
//!
//! Only verdicts the change decided count: `inconclusive` outcomes and any verdict marked as
//! decided by the data (`Figures::cannot_judge`: gaps, an outage, too few samples) are ignored.
//!
//! Interventions are grouped by `(area, change target)` (the target is `Candidate::targets()`
//! joined with `,`). Per group:
//!
//! - two validated, or one whose interval is certain of the whole predicted change
//!   ([`MIN_CERTAIN_SHARE`]) → a *prefer* lesson `L-<area>-<hash of target>`, evidence = every finalized
//!   intervention of the group; `falsifiable` from the latest validated prediction and baseline;
//!   `calibrated_for` from the validated verdict figures; `retired_when` = the signal's 24h median
//!   leaving `[0.5 × lowest baseline, 2 × highest baseline]`.
//! - ≥ `avoid_after` no_effect/regressed since the last validated → an *avoid* lesson
//!   `L-<area>-<hash>-avoid` (and the prefer lesson, if any, is retired as superseded); a later
//!   validated retires the avoid lesson again.
//! - A retired lesson stays as it is unless new supporting evidence arrived after it was retired,
//!   which reactivates it.
//!
//! Then every active lesson (hand-written ones too) whose `retired_when` is a condition that holds
//! on `DistillInput::recent` is retired with the observation as its reason. Missing data never
//! retires anything.
//!
//! Idempotence: a lesson is rewritten only when something other than `because` / `retired_when`
//! text would change (so an LLM rewording survives), and `version` is bumped once per change.

use super::{DistillError, DistillInput, Distiller, LessonChange};
use crate::intervention::{ExpectedChange, Intervention, Outcome, Status};
use crate::lesson::condition::{Clause, Condition, Stat, Test, fmt_num};
use crate::lesson::{Evidence, Lesson, LessonScope, LessonStatus, retirement_check};
use crate::signal::SignalsRead;
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A single validated change makes a prefer lesson only when its interval is certain of at least
/// this share of the predicted magnitude (`Figures::certain_share`); otherwise it takes two.
/// The whole prediction: a lesson states that the change does what it predicted, and a false
/// validation (≤ 5% of no-op changes) is certain of half a 2σ prediction about once in 500
/// (issue 8's envelope grid), of all of it far more rarely.
pub const MIN_CERTAIN_SHARE: f64 = 1.0;

/// A `no_effect` verdict is evidence against the change only when its interval rules out even
/// this share of the predicted relative change. At one half, a real fix that delivered what it
/// predicted was read as "no effect" once in 500 runs at the 5-minute operating point; at one
/// quarter its interval would have to miss the truth by well over 3 standard errors.
pub const AVOID_RULES_OUT_SHARE: f64 = 0.25;

/// The default distiller. Its name in the ledger is `deterministic`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeterministicDistiller {
    /// no_effect/regressed outcomes since the last validated one that make an avoid lesson (2).
    pub avoid_after: usize,
    /// Lower end of the calibrated range, as a factor of the lowest baseline seen (0.5).
    pub range_low: f64,
    /// Upper end of the calibrated range, as a factor of the highest baseline seen (2.0).
    pub range_high: f64,
    /// The window of the median that `retired_when` compares with that range (24h).
    pub retire_window: Span,
}

impl Default for DeterministicDistiller {
    fn default() -> Self {
        Self {
            avoid_after: 2,
            range_low: 0.5,
            range_high: 2.0,
            retire_window: Span::hours(24),
        }
    }
}

/// The verdict numbers the distiller reads (a tolerant view of `validate::Figures`, stored either
/// bare or inside a verdict as `figures`).
#[derive(Debug, Clone, Default, PartialEq)]
struct Fig {
    method: Option<String>,
    baseline: Option<f64>,
    post: Option<f64>,
    estimate: Option<f64>,
    lower: Option<f64>,
    upper: Option<f64>,
    level: Option<f64>,
    /// How much of the prediction the interval is certain of (`Figures::certain_share`).
    certain_share: Option<f64>,
    /// The data, not the change, decided the verdict (`Figures::cannot_judge`).
    data_decided: bool,
}

fn fig_of(v: Option<&Value>) -> Fig {
    let Some(v) = v else { return Fig::default() };
    let v = v.get("figures").unwrap_or(v);
    let num = |k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite());
    Fig {
        method: v.get("method").and_then(Value::as_str).map(str::to_string),
        baseline: num("baseline"),
        post: num("post"),
        estimate: num("estimate"),
        lower: num("lower"),
        upper: num("upper"),
        level: num("level"),
        certain_share: num("certain_share"),
        data_decided: v.get("cannot_judge").is_some_and(|x| !x.is_null()),
    }
}

/// Rounded for stable, readable YAML (same rounding as conditions).
fn r(x: f64) -> f64 {
    fmt_num(x).parse().unwrap_or(x)
}

fn when_of(i: &Intervention) -> DateTime<Utc> {
    i.finalized_at.or(i.applied_at).unwrap_or(i.created_at)
}

/// FNV-1a, 64 bit: stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn slug(area: &str) -> String {
    let mut out = String::new();
    for c in area.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(40).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "area".to_string()
    } else {
        out
    }
}

/// The id of the prefer lesson for `(area, target)`; the avoid lesson appends `-avoid`.
pub fn lesson_id(area: &str, target: &str) -> String {
    format!("L-{}-{:08x}", slug(area), fnv1a(target) & 0xffff_ffff)
}

fn ids(list: &[&Intervention]) -> String {
    list.iter()
        .map(|i| i.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn direction_word(i: &Intervention) -> &'static str {
    if i.candidate.prediction.change.direction() < 0.0 {
        "down"
    } else {
        "up"
    }
}

fn edits_text(i: &Intervention) -> String {
    let parts: Vec<String> = i
        .candidate
        .change
        .iter()
        .map(|e| match e {
            crate::edit::Edit::ConfigSet { file, key, value } => {
                format!("set {file}#{key} to {value}")
            }
            crate::edit::Edit::FileWrite { file, .. } => format!("rewrite {file}"),
        })
        .collect();
    parts.join("; ")
}

fn situation(area: &str, i: &Intervention) -> String {
    let mut s = format!(
        "`{}` needs to move {} in area `{area}`",
        i.candidate.prediction.signal,
        direction_word(i)
    );
    let trigger = i.candidate.origin.trigger.trim();
    if !trigger.is_empty() {
        s.push_str(&format!(" (as when {trigger})"));
    }
    s
}

fn measured(i: &Intervention, f: &Fig) -> String {
    let mut s = format!("{} {}", i.id, i.outcome.map(Outcome::as_str).unwrap_or("?"));
    match (f.baseline, f.post) {
        (Some(b), Some(p)) => s.push_str(&format!(": {} → {}", fmt_num(b), fmt_num(p))),
        (Some(b), None) => s.push_str(&format!(": baseline {}", fmt_num(b))),
        _ => {}
    }
    if let Some(e) = f.estimate {
        s.push_str(&format!(" (effect {})", fmt_num(e)));
    }
    s
}

fn last_n<'a>(list: &[&'a Intervention], n: usize) -> Vec<&'a Intervention> {
    list[list.len().saturating_sub(n)..].to_vec()
}

/// Verdict figures of `list` as the `verdicts` entry of `calibrated_for`.
fn verdicts_json(list: &[&Intervention], figs: &BTreeMap<String, Fig>) -> Value {
    Value::Array(
        list.iter()
            .map(|i| {
                let f = figs.get(&i.id.to_string()).cloned().unwrap_or_default();
                let mut m = serde_json::Map::new();
                m.insert("intervention".into(), json!(i.id.to_string()));
                m.insert(
                    "outcome".into(),
                    json!(i.outcome.map(Outcome::as_str).unwrap_or("?")),
                );
                m.insert(
                    "predicted".into(),
                    json!(i.candidate.prediction.to_string()),
                );
                if let Some(x) = &f.method {
                    m.insert("method".into(), json!(x));
                }
                for (k, v) in [
                    ("baseline", f.baseline),
                    ("post", f.post),
                    ("estimate", f.estimate),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), json!(r(v)));
                    }
                }
                if let (Some(lo), Some(hi)) = (f.lower, f.upper) {
                    m.insert("interval".into(), json!([r(lo), r(hi)]));
                }
                if let Some(l) = f.level {
                    m.insert("level".into(), json!(r(l)));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

impl DeterministicDistiller {
    /// The calibrated range `[low, high]` of baselines, widened by the configured factors.
    fn range(&self, baselines: &[f64]) -> Option<(f64, f64)> {
        let min = baselines.iter().copied().fold(f64::INFINITY, f64::min);
        let max = baselines.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !min.is_finite() || !max.is_finite() || (min == 0.0 && max == 0.0) {
            return None;
        }
        let lo = if min >= 0.0 {
            min * self.range_low
        } else {
            min * self.range_high
        };
        let hi = if max >= 0.0 {
            max * self.range_high
        } else {
            max * self.range_low
        };
        Some((r(lo), r(hi)))
    }

    /// `calibrated_for` + `retired_when` from the baselines of `list` on `signal`.
    fn calibration(
        &self,
        signal: &str,
        targets: &str,
        area: &str,
        list: &[&Intervention],
        figs: &BTreeMap<String, Fig>,
        extra: Vec<(&str, Value)>,
    ) -> (Value, String) {
        let baselines: Vec<f64> = list
            .iter()
            .filter(|i| i.candidate.prediction.signal == signal)
            .filter_map(|i| figs.get(&i.id.to_string()).and_then(|f| f.baseline))
            .collect();
        let mut m = serde_json::Map::new();
        m.insert("signal".into(), json!(signal));
        m.insert("targets".into(), json!(targets));
        let range = self.range(&baselines);
        if !baselines.is_empty() {
            let min = baselines.iter().copied().fold(f64::INFINITY, f64::min);
            let max = baselines.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            m.insert("baseline_range".into(), json!([r(min), r(max)]));
        }
        let mut thresholds = serde_json::Map::new();
        for (k, v) in extra {
            thresholds.insert(k.into(), v);
        }
        if let Some((lo, hi)) = range {
            thresholds.insert("retire_outside".into(), json!([lo, hi]));
        }
        if !thresholds.is_empty() {
            m.insert("thresholds".into(), Value::Object(thresholds));
        }
        m.insert("verdicts".into(), verdicts_json(list, figs));
        let retired_when = match range {
            Some((lo, hi)) => Condition {
                any: vec![vec![Clause {
                    signal: signal.to_string(),
                    stat: Stat::Median,
                    window: self.retire_window,
                    test: Test::Outside(lo, hi),
                }]],
            }
            .to_string(),
            None => format!(
                "area `{area}` or `{targets}` is redesigned (no baseline was recorded to state a range on `{signal}`)"
            ),
        };
        (Value::Object(m), retired_when)
    }

    fn prefer_lesson(
        &self,
        area: &str,
        targets: &[String],
        all: &[&Intervention],
        validated: &[&Intervention],
        figs: &BTreeMap<String, Fig>,
        now: DateTime<Utc>,
    ) -> Option<Lesson> {
        let latest = *validated.last()?;
        let target = targets.join(",");
        let signal = latest.candidate.prediction.signal.clone();
        let f = figs
            .get(&latest.id.to_string())
            .cloned()
            .unwrap_or_default();
        // One validation is a lesson only when its interval is certain of the whole prediction; a
        // bare pass (a false validation looks like one) waits for a second.
        if validated.len() < 2 && f.certain_share.is_some_and(|s| s < MIN_CERTAIN_SHARE) {
            return None;
        }
        let pred = &latest.candidate.prediction;
        let threshold = match (pred.change, f.baseline) {
            (ExpectedChange::Relative(x), Some(b)) => Some(b * (1.0 + x)),
            (ExpectedChange::Absolute(x), Some(b)) => Some(b + x),
            (ExpectedChange::Below(t) | ExpectedChange::Above(t), _) => Some(t),
            _ => None,
        };
        let within = if pred.within.seconds() == 0 {
            Span::hours(1)
        } else {
            pred.within
        };
        let (falsifiable, extra) = match threshold {
            Some(t) => {
                let t = r(t);
                let (test, key) = if pred.change.direction() < 0.0 {
                    (Test::Above(t), "falsified_above")
                } else {
                    (Test::Below(t), "falsified_below")
                };
                let c = Condition {
                    any: vec![vec![Clause {
                        signal: signal.clone(),
                        stat: Stat::Median,
                        window: within,
                        test,
                    }]],
                };
                (
                    c.to_string(),
                    vec![
                        (key, json!(t)),
                        ("predicted", json!(pred.change.to_string())),
                    ],
                )
            }
            None => (
                format!(
                    "`{signal}` no longer moves {} within {within} after {target} is changed this way",
                    direction_word(latest)
                ),
                vec![("predicted", json!(pred.change.to_string()))],
            ),
        };
        let (calibrated_for, retired_when) =
            self.calibration(&signal, &target, area, validated, figs, extra);
        let shown: Vec<String> = last_n(validated, 6)
            .iter()
            .map(|i| measured(i, figs.get(&i.id.to_string()).unwrap_or(&Fig::default())))
            .collect();
        let because = format!(
            "{} of {} finalized interventions on {target} were validated ({}); the latest predicted {pred}.",
            validated.len(),
            all.len(),
            shown.join("; ")
        );
        Some(Lesson {
            id: lesson_id(area, &target),
            scope: scope_of(area, targets, latest),
            when: situation(area, latest),
            prefer: format!("{} ({})", edits_text(latest), latest.candidate.title.trim()),
            because,
            falsifiable,
            retired_when,
            calibrated_for,
            created: now,
            status: LessonStatus::Active,
            evidence: evidence_of(all),
            version: 1,
            retired_at: None,
            retired_reason: None,
        })
    }

    fn avoid_lesson(
        &self,
        area: &str,
        targets: &[String],
        failures: &[&Intervention],
        figs: &BTreeMap<String, Fig>,
        now: DateTime<Utc>,
    ) -> Option<Lesson> {
        let latest = *failures.last()?;
        let target = targets.join(",");
        let signal = latest.candidate.prediction.signal.clone();
        let (calibrated_for, retired_when) = self.calibration(
            &signal,
            &target,
            area,
            failures,
            figs,
            vec![(
                "predicted",
                json!(latest.candidate.prediction.change.to_string()),
            )],
        );
        let shown: Vec<String> = last_n(failures, 6)
            .iter()
            .map(|i| measured(i, figs.get(&i.id.to_string()).unwrap_or(&Fig::default())))
            .collect();
        Some(Lesson {
            id: format!("{}-avoid", lesson_id(area, &target)),
            scope: scope_of(area, targets, latest),
            when: situation(area, latest),
            prefer: format!(
                "avoid changing {target} again for `{signal}`: {} attempt(s) in a row showed no effect or regressed ({}); look for another cause or target",
                failures.len(),
                ids(failures)
            ),
            because: format!("the predicted move did not show: {}.", shown.join("; ")),
            falsifiable: format!(
                "a later intervention on {target} is validated (the distiller then retires this lesson)"
            ),
            retired_when,
            calibrated_for,
            created: now,
            status: LessonStatus::Active,
            evidence: evidence_of(failures),
            version: 1,
            retired_at: None,
            retired_reason: None,
        })
    }
}

fn scope_of(area: &str, targets: &[String], i: &Intervention) -> LessonScope {
    LessonScope {
        area: area.to_string(),
        signal: Some(i.candidate.prediction.signal.clone()),
        kind: Some(i.candidate.kind.clone()).filter(|k| !k.trim().is_empty()),
        file: if targets.len() == 1 {
            targets.first().cloned()
        } else {
            None
        },
    }
}

fn evidence_of(list: &[&Intervention]) -> Vec<Evidence> {
    list.iter()
        .map(|i| Evidence {
            intervention: i.id.to_string(),
            outcome: i
                .outcome
                .map(Outcome::as_str)
                .unwrap_or("inconclusive")
                .to_string(),
        })
        .collect()
}

/// Equal but for the text an LLM may reword (`because`, `retired_when`).
fn same_facts(a: &Lesson, b: &Lesson) -> bool {
    let strip = |l: &Lesson| Lesson {
        because: String::new(),
        retired_when: String::new(),
        ..l.clone()
    };
    strip(a) == strip(b)
}

/// What the history says one lesson should be.
struct Desired {
    lesson: Lesson,
    active: bool,
    retire_reason: String,
    /// When the newest evidence supporting it (validated for prefer, failures for avoid) landed.
    newest_support: Option<DateTime<Utc>>,
}

/// The lesson after reconciling `existing` with `desired` (version not yet bumped), or `None` to
/// leave it as it is.
fn reconcile(existing: Option<&Lesson>, d: Desired, now: DateTime<Utc>) -> Option<Lesson> {
    let mut l = d.lesson;
    let Some(e) = existing else {
        if !d.active {
            l.status = LessonStatus::Retired;
            l.retired_at = Some(now);
            l.retired_reason = Some(d.retire_reason);
        }
        return Some(l);
    };
    l.created = e.created;
    l.version = e.version;
    match e.status {
        LessonStatus::Active if d.active => {
            if same_facts(&l, e) {
                None
            } else {
                Some(l)
            }
        }
        LessonStatus::Active => {
            l.status = LessonStatus::Retired;
            l.retired_at = Some(now);
            l.retired_reason = Some(d.retire_reason);
            Some(l)
        }
        LessonStatus::Retired => {
            let newer = match (d.newest_support, e.retired_at) {
                (Some(s), Some(at)) => s > at,
                _ => false,
            };
            if d.active && newer { Some(l) } else { None }
        }
    }
}

/// Whether a `no_effect` verdict is evidence against the change: its interval rules out even
/// [`AVOID_RULES_OUT_SHARE`] of the predicted relative change. A change that delivered exactly what it predicted has the
/// bound below the prediction itself at the test's α, so "the prediction is ruled out" alone
/// would teach "avoid" about real fixes. Verdicts without an interval (other validators, absolute
/// or threshold predictions) count as before.
fn rules_out_share(i: &Intervention, f: Option<&Fig>) -> bool {
    let ExpectedChange::Relative(r) = i.candidate.prediction.change else {
        return true;
    };
    let Some(f) = f else { return true };
    if f.lower.is_none() && f.upper.is_none() {
        return true;
    }
    // Only the bound on the predicted side can rule the change out; one that is unbounded there
    // (stored as null: an uncalibrated width) rules out nothing, whatever the other bound says.
    if r < 0.0 {
        f.lower.is_some_and(|lo| lo > r * AVOID_RULES_OUT_SHARE)
    } else if r > 0.0 {
        f.upper.is_some_and(|hi| hi < r * AVOID_RULES_OUT_SHARE)
    } else {
        true
    }
}

impl Distiller for DeterministicDistiller {
    fn name(&self) -> &str {
        "deterministic"
    }

    /// The signals of the retirement conditions it evaluates: those of every lesson's
    /// `retired_when` (hand-written or reworded ones included) and, for the lessons a run
    /// creates or recalibrates, the predicted signal of every finalized intervention (what
    /// [`DeterministicDistiller`]'s `retired_when` is stated on). Reading more is harmless;
    /// missing one would leave a condition "insufficient", so the lesson tests run on exactly
    /// what this names.
    fn signals_read(&self, input: &DistillInput<'_>) -> SignalsRead {
        let mut read = std::collections::BTreeSet::new();
        for l in input.lessons {
            if let crate::lesson::ConditionText::Checkable(c) =
                crate::lesson::condition_of(&l.retired_when)
            {
                read.extend(c.signals().into_iter().map(str::to_string));
            }
        }
        for iv in input.finalized {
            read.insert(iv.candidate.prediction.signal.clone());
        }
        SignalsRead::Only(read)
    }

    fn distill(&self, input: &DistillInput<'_>) -> Result<Vec<LessonChange>, DistillError> {
        if self.avoid_after == 0 || !(self.range_low > 0.0 && self.range_high >= 1.0) {
            return Err(DistillError {
                distiller: self.name().to_string(),
                message: format!(
                    "bad settings: avoid_after {} (≥ 1), range factors {} / {} (low > 0, high ≥ 1)",
                    self.avoid_after, self.range_low, self.range_high
                ),
            });
        }
        let now = input.now;
        let existing: BTreeMap<&str, &Lesson> =
            input.lessons.iter().map(|l| (l.id.as_str(), l)).collect();
        let figs: BTreeMap<String, Fig> = input
            .finalized
            .iter()
            .map(|i| {
                let k = i.id.to_string();
                let f = fig_of(input.verdicts.get(&k));
                (k, f)
            })
            .collect();

        let mut groups: BTreeMap<(String, Vec<String>), Vec<&Intervention>> = BTreeMap::new();
        for i in input.finalized {
            // Missing data is not evidence: a verdict the data decided teaches nothing.
            let counted = matches!(i.status, Status::Validated | Status::Reverted)
                && matches!(
                    i.outcome,
                    Some(Outcome::Validated | Outcome::NoEffect | Outcome::Regressed)
                )
                && !figs.get(&i.id.to_string()).is_some_and(|f| f.data_decided)
                && (i.outcome != Some(Outcome::NoEffect)
                    || rules_out_share(i, figs.get(&i.id.to_string())));
            if counted {
                groups
                    .entry((i.candidate.area.clone(), i.candidate.targets()))
                    .or_default()
                    .push(i);
            }
        }

        // The lesson state after this run, for every lesson the run touches.
        let mut next: BTreeMap<String, Lesson> = BTreeMap::new();
        for ((area, targets), mut list) in groups {
            list.sort_by_key(|i| (when_of(i), i.id));
            let validated: Vec<&Intervention> = list
                .iter()
                .copied()
                .filter(|i| i.outcome == Some(Outcome::Validated))
                .collect();
            let last_valid = validated.last().map(|i| when_of(i));
            let failures_since: Vec<&Intervention> = list
                .iter()
                .copied()
                .filter(|i| i.outcome != Some(Outcome::Validated))
                .filter(|i| last_valid.is_none_or(|t| when_of(i) > t))
                .collect();
            let avoid = failures_since.len() >= self.avoid_after;
            let avoid_id = format!("{}-avoid", lesson_id(&area, &targets.join(",")));

            if let Some(lesson) = self.prefer_lesson(&area, &targets, &list, &validated, &figs, now)
            {
                let d = Desired {
                    active: !avoid,
                    retire_reason: format!(
                        "superseded by {avoid_id}: {} intervention(s) since the last validated one ({}) showed no effect or regressed",
                        failures_since.len(),
                        ids(&failures_since)
                    ),
                    newest_support: last_valid,
                    lesson,
                };
                let id = d.lesson.id.clone();
                if let Some(l) = reconcile(existing.get(id.as_str()).copied(), d, now) {
                    next.insert(id, l);
                }
            }
            let avoid_lesson = if avoid {
                self.avoid_lesson(&area, &targets, &failures_since, &figs, now)
            } else {
                None
            };
            match avoid_lesson {
                Some(lesson) => {
                    let d = Desired {
                        active: true,
                        retire_reason: String::new(),
                        newest_support: failures_since.last().map(|i| when_of(i)),
                        lesson,
                    };
                    if let Some(l) = reconcile(existing.get(avoid_id.as_str()).copied(), d, now) {
                        next.insert(avoid_id, l);
                    }
                }
                None => {
                    // A validated change since lifts an existing avoid lesson.
                    if let (Some(e), Some(v)) = (existing.get(avoid_id.as_str()), validated.last())
                        && e.status == LessonStatus::Active
                    {
                        let mut l = (*e).clone();
                        l.status = LessonStatus::Retired;
                        l.retired_at = Some(now);
                        l.retired_reason = Some(format!(
                            "{} on the same target was validated after this lesson was written",
                            v.id
                        ));
                        if !l
                            .evidence
                            .iter()
                            .any(|x| x.intervention == v.id.to_string())
                        {
                            l.evidence.extend(evidence_of(&[v]));
                        }
                        next.insert(avoid_id, l);
                    }
                }
            }
        }

        // Retirement on current observations, for every lesson that is active after the above.
        let mut ids_all: Vec<String> = existing.keys().map(|s| s.to_string()).collect();
        ids_all.extend(next.keys().cloned());
        ids_all.sort();
        ids_all.dedup();
        for id in ids_all {
            let current = match next.get(&id) {
                Some(l) => l.clone(),
                None => match existing.get(id.as_str()) {
                    Some(l) => (*l).clone(),
                    None => continue,
                },
            };
            if current.status != LessonStatus::Active {
                continue;
            }
            match retirement_check(&current, input.recent, now) {
                Some(eval) if eval.holds() => {
                    tracing::info!("kaizen lesson={id} stage=learn retired: {}", eval.detail());
                    let mut l = current;
                    l.status = LessonStatus::Retired;
                    l.retired_at = Some(now);
                    l.retired_reason = Some(format!("retired_when held: {}", eval.detail()));
                    next.insert(id, l);
                }
                Some(eval) => {
                    tracing::debug!("kaizen lesson={id} stage=learn stays: {}", eval.detail());
                }
                None => {}
            }
        }

        let mut changes = Vec::new();
        for (id, mut l) in next {
            let change = match existing.get(id.as_str()) {
                None => {
                    l.version = 1;
                    tracing::info!("kaizen lesson={id} stage=learn created ({})", l.status);
                    LessonChange::Create(l)
                }
                Some(e) => {
                    if **e == l {
                        continue;
                    }
                    l.version = e.version.saturating_add(1);
                    if e.status == LessonStatus::Active && l.status == LessonStatus::Retired {
                        LessonChange::Retire(l)
                    } else {
                        tracing::info!("kaizen lesson={id} stage=learn updated to v{}", l.version);
                        LessonChange::Update(l)
                    }
                }
            };
            changes.push(change);
        }
        Ok(changes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_valid() {
        let id = lesson_id("Cache Tier", "config/cache.yaml#size_mb");
        assert_eq!(id, lesson_id("Cache Tier", "config/cache.yaml#size_mb"));
        assert!(id.starts_with("L-cache-tier-"), "{id}");
        assert!(crate::lesson::valid_id(&id), "{id}");
        assert!(crate::lesson::valid_id(&format!("{id}-avoid")));
        assert_ne!(id, lesson_id("Cache Tier", "config/cache.yaml#ttl"));
        assert_eq!(slug("--"), "area");
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
    }

    /// A cache change predicting −20% within 30 min, with the given edits.
    fn cache_candidate(change: Vec<crate::edit::Edit>) -> crate::intervention::Candidate {
        use crate::intervention::{Candidate, Origin, Prediction, Risk};
        Candidate {
            area: "cache".into(),
            kind: "config_set".into(),
            title: "t".into(),
            hypothesis: "h".into(),
            change,
            prediction: Prediction {
                signal: "latency_ms".into(),
                change: ExpectedChange::Relative(-0.2),
                within: Span::minutes(30),
            },
            risk: Risk::Low,
            confidence: 0.8,
            rollback: Some("revert".into()),
            origin: Origin::default(),
        }
    }

    #[test]
    fn no_effect_teaches_avoid_only_when_half_the_prediction_is_ruled_out() {
        use crate::intervention::InterventionId;
        let iv = Intervention {
            id: InterventionId(1),
            candidate: cache_candidate(vec![]),
            status: Status::Reverted,
            outcome: Some(Outcome::NoEffect),
            reason: String::new(),
            commit: None,
            revert_commit: None,
            created_at: DateTime::<Utc>::default(),
            applied_at: None,
            due_at: None,
            finalized_at: None,
        };
        let fig = |lo: f64, hi: f64| Fig {
            lower: Some(lo),
            upper: Some(hi),
            ..Fig::default()
        };
        // [−0.03, +0.02]: not even −5% is possible → evidence against the change.
        assert!(rules_out_share(&iv, Some(&fig(-0.03, 0.02))));
        // [−0.19, −0.05]: the predicted −20% is ruled out, but a −19% fix is not.
        assert!(!rules_out_share(&iv, Some(&fig(-0.19, -0.05))));
        // [−0.08, +0.01]: half the prediction is ruled out, a quarter (−5%) is not: not enough.
        assert!(!rules_out_share(&iv, Some(&fig(-0.08, 0.01))));
        // [−0.17, +∞) (the bad side unbounded, stored as null): −17% is possible, nothing is
        // ruled out on the predicted side — found in the envelope grid (1m / 8 days / outage),
        // where it taught "avoid" about a real −18% fix.
        let open = Fig {
            lower: Some(-0.17),
            upper: None,
            ..Fig::default()
        };
        assert!(!rules_out_share(&iv, Some(&open)));
        // Unbounded on the predicted side: nothing is ruled out either.
        let open = Fig {
            lower: None,
            upper: Some(0.02),
            ..Fig::default()
        };
        assert!(!rules_out_share(&iv, Some(&open)));
    }

    // A false validation looks like a bare pass; one validation teaches "prefer" only when its
    // interval is certain of the whole prediction, two always do.
    #[test]
    fn one_bare_pass_is_not_a_prefer_lesson_two_are() {
        use crate::intervention::InterventionId;
        use crate::learn::{DistillInput, Distiller};
        let t0: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        let iv = |n: i64| Intervention {
            id: InterventionId(n),
            candidate: cache_candidate(vec![crate::edit::Edit::ConfigSet {
                file: "config/app.yaml".into(),
                key: "cache_mb".into(),
                value: json!(256),
            }]),
            status: Status::Validated,
            outcome: Some(Outcome::Validated),
            reason: String::new(),
            commit: None,
            revert_commit: None,
            created_at: t0,
            applied_at: Some(t0),
            due_at: None,
            finalized_at: Some(t0 + chrono::Duration::hours(n)),
        };
        let verdict = |share: f64| {
            json!({"outcome": "validated", "summary": "s", "figures": {
                "method": "m", "baseline": 300.0, "estimate": -0.3, "lower": -0.4,
                "upper": -0.1, "certain_share": share}})
        };
        let prefers = |ivs: &[Intervention], shares: &[f64]| {
            let verdicts: BTreeMap<String, Value> = ivs
                .iter()
                .zip(shares)
                .map(|(i, s)| (i.id.to_string(), verdict(*s)))
                .collect();
            let recent = BTreeMap::new();
            DeterministicDistiller::default()
                .distill(&DistillInput {
                    now: t0 + chrono::Duration::days(1),
                    finalized: ivs,
                    verdicts: &verdicts,
                    lessons: &[],
                    recent: &recent,
                })
                .unwrap()
                .iter()
                .any(|c| !c.lesson().id.ends_with("-avoid"))
        };
        assert!(!prefers(&[iv(1)], &[0.3]), "a bare pass");
        assert!(
            !prefers(&[iv(1)], &[0.8]),
            "certain of most of the prediction, not all of it"
        );
        assert!(
            prefers(&[iv(1)], &[1.2]),
            "certain of more than the prediction"
        );
        assert!(prefers(&[iv(1), iv(2)], &[0.3, 0.3]), "two passes");
    }
}

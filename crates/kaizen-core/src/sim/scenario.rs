//! Scenario files: the host model, the repository's initial files, the kaizen config, the rules
//! and the expected outcomes, in one YAML document.

use super::SimError;
use super::model::HostModel;
use crate::config::Config;
use crate::intervention::{Intervention, Outcome, Status};
use crate::rules::parse_rules;
use crate::span::Span;
use crate::yaml::{self, YamlError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it was read from (or a label).
    pub source: PathBuf,
    /// Short name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The seed of every random draw.
    pub seed: u64,
    /// Simulated time zero.
    pub start: DateTime<Utc>,
    /// How long to simulate.
    pub duration: Span,
    /// Observe only (no cycles) for this long at the start, so validation has history.
    pub warmup: Span,
    /// Sample interval (observe steps).
    pub sample_every: Span,
    /// Full engine cycle interval (a multiple of `sample_every`).
    pub cycle_every: Span,
    /// Learn (distil lessons) interval (default: the schedule's, daily).
    pub learn_every: Span,
    /// Periodic meta-review interval (default: the schedule's, weekly).
    pub review_every: Span,
    /// How much recent history proposers see.
    pub recent_window: Span,
    /// The repository's initial files (path → content).
    pub files: BTreeMap<String, String>,
    /// The host model.
    pub host: HostModel,
    /// The `kaizen.yaml` the runner writes (repo, state dir and rules set by the runner).
    pub kaizen_yaml: String,
    /// The `rules.yaml` the runner writes.
    pub rules_yaml: String,
    /// Expected outcomes.
    pub expect: Vec<Expect>,
}

/// Checks on the interventions of a selection (`rule` and/or `area`; none: all). Every check
/// given must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Select interventions made by this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Select interventions in this area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// The first applied intervention of the selection ended with this outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_outcome: Option<Outcome>,
    /// The first intervention of the selection (applied or not) has this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_status: Option<Status>,
    /// Every intervention of the selection has this status (and there is at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// At least one intervention of the selection has this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_status: Option<Status>,
    /// With `status`/`any_status`/`first_status`: the matching interventions' reason contains this
    /// text (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_contains: Option<String>,
    /// No intervention of the selection ended with this outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never_outcome: Option<Outcome>,
    /// How many interventions of the selection match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Count>,
    /// The area was frozen at some point (an active freeze after a cycle, or a proposal in the area
    /// blocked with a reason naming a freeze) — or never, with `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<bool>,
}

/// A count check.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    /// Count only interventions with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Count only interventions with this outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Count only interventions that were applied (whatever happened next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
    /// At least this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<usize>,
    /// At most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

/// One expectation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectationResult {
    /// The expectation, in words.
    pub expectation: String,
    /// Whether it held.
    pub held: bool,
    /// What was found.
    pub detail: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioSerde {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    start: Option<DateTime<Utc>>,
    duration: Span,
    #[serde(default)]
    warmup: Option<Span>,
    #[serde(default)]
    sample_every: Option<Span>,
    #[serde(default)]
    cycle_every: Option<Span>,
    #[serde(default)]
    learn_every: Option<Span>,
    #[serde(default)]
    review_every: Option<Span>,
    #[serde(default)]
    recent_window: Option<Span>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    host: HostModel,
    #[serde(default)]
    kaizen: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    rules: Vec<serde_json::Value>,
    #[serde(default)]
    expect: Vec<Expect>,
}

/// Keys of `kaizen:` the runner sets itself.
const RUNNER_KEYS: &[&str] = &["repo", "state_dir", "rules", "lessons", "llm", "branch"];

/// The default simulated time zero: a Monday.
pub const DEFAULT_START: &str = "2026-01-05T00:00:00Z";

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks scenario text as if read from `path` (used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, SimError> {
        let raw: ScenarioSerde = yaml::from_str(text, path)?;
        let bad = |field: &str, msg: String| {
            SimError::Invalid(yaml::semantic_error(text, path, field, msg))
        };

        let sample_every = raw.sample_every.unwrap_or(Span::minutes(5));
        let cycle_every = raw.cycle_every.unwrap_or(Span::minutes(15));
        let warmup = raw.warmup.unwrap_or(Span::days(1));
        if sample_every.seconds() == 0 {
            return Err(bad("sample_every", "must be positive".into()));
        }
        if cycle_every.seconds() == 0
            || !cycle_every.seconds().is_multiple_of(sample_every.seconds())
        {
            return Err(bad(
                "cycle_every",
                format!("must be a positive multiple of sample_every ({sample_every})"),
            ));
        }
        let schedule = crate::config::ScheduleConfig::default();
        let learn_every = raw.learn_every.unwrap_or(schedule.learn_every);
        let review_every = raw.review_every.unwrap_or(schedule.review_every);
        for (field, every) in [("learn_every", learn_every), ("review_every", review_every)] {
            if every.seconds() == 0 {
                return Err(bad(field, "must be positive".into()));
            }
        }
        if raw.duration <= warmup {
            return Err(bad(
                "duration",
                format!("{} must be longer than the warmup ({warmup})", raw.duration),
            ));
        }
        if raw.duration.seconds() / sample_every.seconds() > 1_000_000 {
            return Err(bad(
                "duration",
                "more than a million samples per signal; use a longer sample_every".into(),
            ));
        }
        let start = match raw.start {
            Some(s) => s,
            None => DEFAULT_START
                .parse()
                .map_err(|e| bad("start", format!("{e}")))?,
        };
        for file in raw.files.keys() {
            if !is_safe_relative(file) {
                return Err(bad(
                    "files",
                    format!(
                        "{file:?} must be a relative path inside the repository (no `..`, not absolute)"
                    ),
                ));
            }
        }
        if let Err((field, msg)) = raw.host.check() {
            return Err(bad(&field, msg));
        }

        // The kaizen config: the scenario's section plus what the runner decides.
        let mut kaizen = raw.kaizen;
        for k in RUNNER_KEYS {
            if kaizen.contains_key(*k) {
                return Err(bad(
                    &format!("kaizen.{k}"),
                    "is set by the simulator; remove it".into(),
                ));
            }
        }
        kaizen.insert("repo".into(), "repo".into());
        kaizen.insert("state_dir".into(), "state".into());
        kaizen.insert("rules".into(), "rules.yaml".into());
        // Inside the simulated service's repository, as `kaizen init` puts them: the lessons
        // learned during the run are committed there.
        kaizen.insert("lessons".into(), "repo/lessons".into());
        let validate = kaizen
            .entry("validate")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(v) = validate {
            v.entry("sample_every")
                .or_insert_with(|| sample_every.to_string().into());
        }
        let kaizen_yaml = yaml::to_string(&kaizen).map_err(|e| bad("kaizen", e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let config =
            Config::parse(&kaizen_yaml, &dir.join("kaizen.yaml")).map_err(|e| match e {
                // Point at the field inside the scenario's `kaizen:` section.
                crate::config::ConfigError::Invalid(y) if !y.field.is_empty() => {
                    bad(&format!("kaizen.{}", y.field), y.message)
                }
                other => bad("kaizen", other.to_string()),
            })?;

        let kaizen_signals: BTreeSet<String> = config.signals.keys().cloned().collect();
        let host_signals: BTreeSet<String> = raw.host.signals.keys().cloned().collect();
        if let Some(s) = kaizen_signals.difference(&host_signals).next() {
            return Err(bad(
                &format!("kaizen.signals.{s}"),
                format!(
                    "has no model under host.signals (models: {})",
                    join(&host_signals)
                ),
            ));
        }
        if let Some(s) = host_signals.difference(&kaizen_signals).next() {
            return Err(bad(
                &format!("host.signals.{s}"),
                format!(
                    "is not configured under kaizen.signals (configured: {})",
                    join(&kaizen_signals)
                ),
            ));
        }
        for (name, s) in &config.signals {
            if s.source.is_some() {
                return Err(bad(
                    &format!("kaizen.signals.{name}.source"),
                    "the simulator feeds every signal; remove `source`".into(),
                ));
            }
        }

        let rules_doc = serde_json::json!({ "rules": raw.rules });
        let rules_yaml = yaml::to_string(&rules_doc).map_err(|e| bad("rules", e))?;
        let rules =
            parse_rules(&rules_yaml, &dir.join("rules.yaml"), &kaizen_signals).map_err(|e| {
                let field = if e.field.is_empty() {
                    "rules".to_string()
                } else {
                    e.field.clone()
                };
                bad(&field, e.message.clone())
            })?;
        let rule_ids: BTreeSet<String> = rules.iter().map(|r| r.id.clone()).collect();
        let areas: BTreeSet<String> = rules.iter().map(|r| r.candidate.area.clone()).collect();
        for (i, e) in raw.expect.iter().enumerate() {
            if let Some(r) = &e.rule
                && !rule_ids.contains(r)
            {
                return Err(bad(
                    &format!("expect[{i}].rule"),
                    format!("unknown rule {r:?} (rules: {})", join(&rule_ids)),
                ));
            }
            if let Some(a) = &e.area
                && !areas.contains(a)
            {
                return Err(bad(
                    &format!("expect[{i}].area"),
                    format!("no rule changes area {a:?} (areas: {})", join(&areas)),
                ));
            }
            if e.frozen.is_some() && e.area.is_none() {
                return Err(bad(&format!("expect[{i}].frozen"), "needs `area`".into()));
            }
            let checks = [
                e.first_outcome.is_some(),
                e.first_status.is_some(),
                e.status.is_some(),
                e.any_status.is_some(),
                e.never_outcome.is_some(),
                e.count.is_some(),
                e.frozen.is_some(),
            ];
            if !checks.iter().any(|c| *c) {
                return Err(bad(
                    &format!("expect[{i}]"),
                    "checks nothing (give e.g. first_outcome, status, count or frozen)".into(),
                ));
            }
            if e.reason_contains.is_some()
                && e.status.is_none()
                && e.any_status.is_none()
                && e.first_status.is_none()
            {
                return Err(bad(
                    &format!("expect[{i}].reason_contains"),
                    "needs status, any_status or first_status".into(),
                ));
            }
        }

        Ok(Scenario {
            source: path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            seed: raw.seed,
            start,
            duration: raw.duration,
            warmup,
            sample_every,
            cycle_every,
            learn_every,
            review_every,
            recent_window: raw.recent_window.unwrap_or(Span::hours(6)),
            files: raw.files,
            host: raw.host,
            kaizen_yaml,
            rules_yaml,
            expect: raw.expect,
        })
    }
}

impl From<YamlError> for SimError {
    fn from(e: YamlError) -> Self {
        SimError::Invalid(e)
    }
}

fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Whether `p` is a plain relative path with no `..`.
pub(crate) fn is_safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.trim().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl Expect {
    /// The expectation in words.
    pub fn describe(&self) -> String {
        let mut who = Vec::new();
        if let Some(r) = &self.rule {
            who.push(format!("rule {r}"));
        }
        if let Some(a) = &self.area {
            who.push(format!("area {a}"));
        }
        let who = if who.is_empty() {
            "all interventions".to_string()
        } else {
            who.join(", ")
        };
        let mut what = Vec::new();
        let reason = self
            .reason_contains
            .as_ref()
            .map(|r| format!(" (reason mentions {r:?})"))
            .unwrap_or_default();
        if let Some(o) = self.first_outcome {
            what.push(format!("first applied ends {o}"));
        }
        if let Some(s) = self.first_status {
            what.push(format!("first is {s}{reason}"));
        }
        if let Some(s) = self.status {
            what.push(format!("all are {s}{reason}"));
        }
        if let Some(s) = self.any_status {
            what.push(format!("some is {s}{reason}"));
        }
        if let Some(o) = self.never_outcome {
            what.push(format!("never {o}"));
        }
        if let Some(c) = &self.count {
            let mut f = Vec::new();
            if let Some(s) = c.status {
                f.push(s.to_string());
            }
            if let Some(o) = c.outcome {
                f.push(o.to_string());
            }
            if c.applied == Some(true) {
                f.push("applied".into());
            }
            let range = match (c.min, c.max) {
                (Some(a), Some(b)) if a == b => format!("exactly {a}"),
                (Some(a), Some(b)) => format!("{a}..={b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => "any number of".into(),
            };
            what.push(format!(
                "{range} {}",
                if f.is_empty() {
                    "interventions".into()
                } else {
                    f.join(" ")
                }
            ));
        }
        if let Some(f) = self.frozen {
            what.push(if f {
                "gets frozen".into()
            } else {
                "never frozen".into()
            });
        }
        format!("{who}: {}", what.join(", "))
    }

    /// Checks the expectation against every intervention of a run and the areas seen frozen.
    pub fn check(
        &self,
        all: &[Intervention],
        frozen_areas: &BTreeSet<String>,
    ) -> ExpectationResult {
        let sel: Vec<&Intervention> = all
            .iter()
            .filter(|iv| {
                self.rule
                    .as_ref()
                    .is_none_or(|r| iv.candidate.origin.rule.as_ref() == Some(r))
            })
            .filter(|iv| self.area.as_ref().is_none_or(|a| &iv.candidate.area == a))
            .collect();
        let reason_ok = |iv: &Intervention| {
            self.reason_contains
                .as_ref()
                .is_none_or(|r| iv.reason.to_lowercase().contains(&r.to_lowercase()))
        };
        let mut held = true;
        let mut found = Vec::new();
        if let Some(o) = self.first_outcome {
            let first = sel.iter().find(|iv| iv.applied_at.is_some());
            match first {
                Some(iv) => {
                    found.push(format!(
                        "first applied {} ended {} ({})",
                        iv.id,
                        iv.outcome.map_or("undecided".into(), |o| o.to_string()),
                        iv.status
                    ));
                    held &= iv.outcome == Some(o);
                }
                None => {
                    found.push("none was applied".into());
                    held = false;
                }
            }
        }
        if let Some(s) = self.first_status {
            match sel.first() {
                Some(iv) => {
                    found.push(format!("first {} is {}: {}", iv.id, iv.status, iv.reason));
                    held &= iv.status == s && reason_ok(iv);
                }
                None => {
                    found.push("no intervention".into());
                    held = false;
                }
            }
        }
        if let Some(s) = self.status {
            let bad: Vec<&&Intervention> = sel
                .iter()
                .filter(|iv| iv.status != s || !reason_ok(iv))
                .collect();
            found.push(format!("{} of {} match", sel.len() - bad.len(), sel.len()));
            if let Some(b) = bad.first() {
                found.push(format!("{} is {}: {}", b.id, b.status, b.reason));
            }
            held &= !sel.is_empty() && bad.is_empty();
        }
        if let Some(s) = self.any_status {
            let hit = sel.iter().find(|iv| iv.status == s && reason_ok(iv));
            match hit {
                Some(iv) => found.push(format!("{} is {}: {}", iv.id, iv.status, iv.reason)),
                None => {
                    found.push(format!("none of {} matches", sel.len()));
                    held = false;
                }
            }
        }
        if let Some(o) = self.never_outcome {
            let hits: Vec<String> = sel
                .iter()
                .filter(|iv| iv.outcome == Some(o))
                .map(|iv| iv.id.to_string())
                .collect();
            if hits.is_empty() {
                found.push(format!("no {o} among {}", sel.len()));
            } else {
                found.push(format!("{o}: {}", hits.join(", ")));
                held = false;
            }
        }
        if let Some(c) = &self.count {
            let n = sel
                .iter()
                .filter(|iv| c.status.is_none_or(|s| iv.status == s))
                .filter(|iv| c.outcome.is_none_or(|o| iv.outcome == Some(o)))
                .filter(|iv| c.applied.is_none_or(|a| iv.applied_at.is_some() == a))
                .count();
            found.push(format!("count {n}"));
            held &= c.min.is_none_or(|m| n >= m) && c.max.is_none_or(|m| n <= m);
        }
        if let Some(f) = self.frozen {
            let area = self.area.clone().unwrap_or_default();
            let by_reason = sel.iter().find(|iv| {
                iv.status == Status::Blocked && {
                    let r = iv.reason.to_lowercase();
                    r.contains("freeze") || r.contains("frozen")
                }
            });
            let was = frozen_areas.contains(&area) || by_reason.is_some();
            match by_reason {
                Some(iv) => found.push(format!("{} blocked: {}", iv.id, iv.reason)),
                None => found.push(if frozen_areas.contains(&area) {
                    "freeze reported".into()
                } else {
                    "no freeze seen".into()
                }),
            }
            held &= was == f;
        }
        ExpectationResult {
            expectation: self.describe(),
            held,
            detail: found.join("; "),
        }
    }
}

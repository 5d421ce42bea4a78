//! Lessons: structured experience that later proposals must cite or argue against.
//!
//! - [`condition`]: the small language of `falsifiable` / `retired_when`, evaluated on samples.
//! - [`store`]: the directory of `<id>.yaml` files, rendering and the writes for a learn commit.
//! - [`starter`]: the starter library shipped in the binary (`kaizen init` copies it).
//!
//! A lesson is checked twice: by serde (shape, unknown keys) and by [`check`] (meaning). Both kinds
//! of error name file, line and field.

pub mod condition;
pub mod starter;
pub mod store;

use crate::yaml::{self, YamlError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

pub use condition::{Condition, ConditionError, Evaluation};
pub use store::{LessonLoadError, LessonStore};

/// What a lesson is about.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonScope {
    /// The area.
    pub area: String,
    /// A signal it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// An intervention kind it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A file (or `file#key`) it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Whether a lesson is offered to proposers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LessonStatus {
    /// Offered to proposers.
    #[default]
    Active,
    /// No longer applies.
    Retired,
}

impl fmt::Display for LessonStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LessonStatus::Active => "active",
            LessonStatus::Retired => "retired",
        })
    }
}

/// One piece of evidence: an intervention and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The intervention id (`K-000042`).
    pub intervention: String,
    /// Its outcome.
    pub outcome: String,
}

/// A lesson, as stored in `lessons/*.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    /// Stable id, e.g. `L-cache-grow`.
    pub id: String,
    /// What it is about.
    pub scope: LessonScope,
    /// The situation.
    pub when: String,
    /// What to do in it.
    pub prefer: String,
    /// Why — what lets a reader tell when it no longer applies.
    pub because: String,
    /// A condition on signals that would prove it wrong.
    pub falsifiable: String,
    /// A condition under which it stops applying.
    pub retired_when: String,
    /// The conditions and thresholds in force when it was written.
    #[serde(default)]
    pub calibrated_for: serde_json::Value,
    /// When it was written.
    pub created: DateTime<Utc>,
    /// Active or retired.
    #[serde(default)]
    pub status: LessonStatus,
    /// Interventions behind it.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Bumped on every change.
    #[serde(default = "one")]
    pub version: u32,
    /// When it was retired (set by [`retire`] and the distiller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// Why it was retired: the observation that made `retired_when` hold, or a human's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_reason: Option<String>,
}

fn one() -> u32 {
    1
}

/// Longest `when` / `prefer` / `because` text accepted.
pub const MAX_TEXT: usize = 2000;
/// Longest `falsifiable` / `retired_when` text accepted.
pub const MAX_CONDITION_TEXT: usize = 500;
/// Longest lesson id accepted.
pub const MAX_ID: usize = 80;

/// A lesson that could not be read, written or accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LessonError {
    /// The file could not be read.
    #[error("{}: cannot read: {message}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// Bad shape or meaning; every error names file, line (when found) and field.
    #[error("{}", join_errors(.0))]
    Invalid(Vec<YamlError>),
}

fn join_errors(errors: &[YamlError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl LessonError {
    /// The individual errors (one for I/O).
    pub fn errors(&self) -> Vec<String> {
        match self {
            LessonError::Io { .. } => vec![self.to_string()],
            LessonError::Invalid(v) => v.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Whether `id` is a valid lesson id: `L-` then lowercase letters, digits and dashes.
pub fn valid_id(id: &str) -> bool {
    id.len() <= MAX_ID
        && id.strip_prefix("L-").is_some_and(|rest| {
            !rest.is_empty()
                && !rest.starts_with('-')
                && !rest.ends_with('-')
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn valid_intervention_id(s: &str) -> bool {
    s.strip_prefix("K-")
        .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
}

/// The semantic problems of a lesson, as `(field path, message)`. Empty when it is fine.
///
/// Rules: id `L-[a-z0-9-]+`; `scope.area` non-empty without spaces; `when`, `prefer`, `because`,
/// `falsifiable`, `retired_when` non-empty and bounded in size; `version` ≥ 1; evidence ids
/// `K-<digits>` (no duplicates) with a known outcome; `calibrated_for` an object or null; a retired
/// lesson's fields consistent. `falsifiable` / `retired_when` may be free text (never evaluated).
pub fn check(lesson: &Lesson) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut bad = |field: &str, msg: String| out.push((field.to_string(), msg));
    if !valid_id(&lesson.id) {
        bad(
            "id",
            format!(
                "{:?} is not a lesson id: write `L-` then lowercase letters, digits and dashes (e.g. L-cache-grow), at most {MAX_ID} characters",
                lesson.id
            ),
        );
    }
    let area = lesson.scope.area.trim();
    if area.is_empty() {
        bad("scope.area", "must name an area (e.g. cache)".into());
    } else if area.chars().any(char::is_whitespace) {
        bad("scope.area", format!("{area:?} must not contain spaces"));
    }
    for (field, v) in [
        ("scope.signal", &lesson.scope.signal),
        ("scope.kind", &lesson.scope.kind),
        ("scope.file", &lesson.scope.file),
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            bad(field, "is empty: leave it out instead".into());
        }
    }
    for (field, text, max) in [
        ("when", &lesson.when, MAX_TEXT),
        ("prefer", &lesson.prefer, MAX_TEXT),
        ("because", &lesson.because, MAX_TEXT),
        ("falsifiable", &lesson.falsifiable, MAX_CONDITION_TEXT),
        ("retired_when", &lesson.retired_when, MAX_CONDITION_TEXT),
    ] {
        if text.trim().is_empty() {
            bad(field, "must not be empty".into());
        } else if text.chars().count() > max {
            bad(
                field,
                format!(
                    "is {} characters long (at most {max})",
                    text.chars().count()
                ),
            );
        }
    }
    // A condition with a value out of bounds (a `99999999d` window) is a mistake, not free text:
    // refusing it here keeps it from ever reaching evaluation.
    for (field, text) in [
        ("falsifiable", &lesson.falsifiable),
        ("retired_when", &lesson.retired_when),
    ] {
        if let ConditionText::FreeText(e) = condition_of(text)
            && e.out_of_bounds
        {
            bad(field, format!("{text:?}: {}", e.why));
        }
    }
    if lesson.version < 1 {
        bad("version", "must be at least 1".into());
    }
    if !(lesson.calibrated_for.is_object() || lesson.calibrated_for.is_null()) {
        bad(
            "calibrated_for",
            "must be a mapping of conditions and thresholds".into(),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, e) in lesson.evidence.iter().enumerate() {
        if !valid_intervention_id(&e.intervention) {
            bad(
                &format!("evidence[{i}].intervention"),
                format!(
                    "{:?} is not an intervention id (write e.g. K-000042)",
                    e.intervention
                ),
            );
        } else if !seen.insert(e.intervention.as_str()) {
            bad(
                &format!("evidence[{i}].intervention"),
                format!("{} is listed twice", e.intervention),
            );
        }
        if e.outcome.parse::<crate::intervention::Outcome>().is_err() {
            bad(
                &format!("evidence[{i}].outcome"),
                format!(
                    "unknown outcome {:?} (validated, no_effect, regressed or inconclusive)",
                    e.outcome
                ),
            );
        }
    }
    match lesson.status {
        LessonStatus::Active => {
            if lesson.retired_at.is_some() || lesson.retired_reason.is_some() {
                bad(
                    "status",
                    "an active lesson has no retired_at / retired_reason".into(),
                );
            }
        }
        LessonStatus::Retired => {
            if lesson
                .retired_reason
                .as_deref()
                .is_some_and(|r| r.trim().is_empty())
            {
                bad("retired_reason", "is empty: say why or leave it out".into());
            }
        }
    }
    out
}

/// [`check`] as located errors for `text` read from `file`.
pub fn check_in(lesson: &Lesson, text: &str, file: &Path) -> Result<(), LessonError> {
    let problems = check(lesson);
    if problems.is_empty() {
        return Ok(());
    }
    Err(LessonError::Invalid(
        problems
            .into_iter()
            .map(|(field, msg)| yaml::semantic_error(text, file, &field, msg))
            .collect(),
    ))
}

/// Reads and checks one lesson document (`file` is used in messages only). This is what
/// `kaizen lessons add` runs on a hand-written lesson.
pub fn new_lesson_from_yaml(text: &str, file: &Path) -> Result<Lesson, LessonError> {
    let lesson: Lesson = yaml::from_str(text, file).map_err(|e| LessonError::Invalid(vec![e]))?;
    check_in(&lesson, text, file)?;
    Ok(lesson)
}

/// The lesson retired at `now` for `reason`, with `evidence` appended (duplicates skipped) and its
/// version bumped. Retiring a retired lesson only records the new reason and evidence.
pub fn retire(lesson: &Lesson, reason: &str, evidence: &[Evidence], now: DateTime<Utc>) -> Lesson {
    let mut out = lesson.clone();
    out.status = LessonStatus::Retired;
    out.retired_at = Some(now);
    let reason = reason.trim();
    out.retired_reason = Some(if reason.is_empty() {
        "retired by hand".to_string()
    } else {
        reason.to_string()
    });
    for e in evidence {
        if !out
            .evidence
            .iter()
            .any(|x| x.intervention == e.intervention)
        {
            out.evidence.push(e.clone());
        }
    }
    out.version = lesson.version.saturating_add(1);
    out
}

/// How a lesson's `falsifiable` / `retired_when` text reads to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionText {
    /// A condition kaizen evaluates on observations.
    Checkable(Condition),
    /// Free text: shown to proposers and humans, never evaluated automatically.
    FreeText(ConditionError),
}

/// Parses a `falsifiable` / `retired_when` text.
pub fn condition_of(text: &str) -> ConditionText {
    match text.parse::<Condition>() {
        Ok(c) => ConditionText::Checkable(c),
        Err(e) => ConditionText::FreeText(e),
    }
}

/// Evaluates a lesson's `retired_when` at `now`. `None` when it is free text (never evaluated).
pub fn retirement_check(
    lesson: &Lesson,
    recent: &std::collections::BTreeMap<String, Vec<crate::signal::Sample>>,
    now: DateTime<Utc>,
) -> Option<Evaluation> {
    match condition_of(&lesson.retired_when) {
        ConditionText::Checkable(c) => Some(c.evaluate(recent, now)),
        ConditionText::FreeText(_) => None,
    }
}

/// Evaluates a lesson's `falsifiable` at `now` (for audits and the meta-review): `Holds` means
/// the observations contradict the lesson. `None` when it is free text (never evaluated).
pub fn falsification_check(
    lesson: &Lesson,
    recent: &std::collections::BTreeMap<String, Vec<crate::signal::Sample>>,
    now: DateTime<Utc>,
) -> Option<Evaluation> {
    match condition_of(&lesson.falsifiable) {
        ConditionText::Checkable(c) => Some(c.evaluate(recent, now)),
        ConditionText::FreeText(_) => None,
    }
}

fn describe_condition(text: &str) -> String {
    match condition_of(text) {
        ConditionText::Checkable(c) => format!("{c}\n    (checked automatically on observations)"),
        ConditionText::FreeText(_) => {
            format!(
                "{}\n    (free text: never evaluated automatically)",
                text.trim()
            )
        }
    }
}

/// One line for `kaizen lessons list`: `L-… [active v2] area: prefer…`.
pub fn summary_line(lesson: &Lesson) -> String {
    let prefer: String = lesson
        .prefer
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let prefer = if prefer.chars().count() > 80 {
        format!("{}…", prefer.chars().take(79).collect::<String>())
    } else {
        prefer
    };
    format!(
        "{} [{} v{}] {}: {}",
        lesson.id, lesson.status, lesson.version, lesson.scope.area, prefer
    )
}

/// The text `kaizen lessons show` prints.
pub fn describe(lesson: &Lesson) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<14}{v}\n"));
    line("id", &lesson.id);
    line(
        "status",
        &format!("{} (version {})", lesson.status, lesson.version),
    );
    let mut scope = format!("area {}", lesson.scope.area);
    for (k, v) in [
        ("signal", &lesson.scope.signal),
        ("kind", &lesson.scope.kind),
        ("file", &lesson.scope.file),
    ] {
        if let Some(v) = v {
            scope.push_str(&format!(", {k} {v}"));
        }
    }
    line("scope", &scope);
    line("created", &lesson.created.to_rfc3339());
    line("when", lesson.when.trim());
    line("prefer", lesson.prefer.trim());
    line("because", lesson.because.trim());
    line("falsifiable", &describe_condition(&lesson.falsifiable));
    line("retired_when", &describe_condition(&lesson.retired_when));
    if !lesson.calibrated_for.is_null() {
        line(
            "calibrated",
            &serde_json::to_string(&lesson.calibrated_for).unwrap_or_default(),
        );
    }
    if lesson.evidence.is_empty() {
        line("evidence", "none");
    } else {
        let ev: Vec<String> = lesson
            .evidence
            .iter()
            .map(|e| format!("{} {}", e.intervention, e.outcome))
            .collect();
        line("evidence", &ev.join(", "));
    }
    if let Some(at) = lesson.retired_at {
        line("retired_at", &at.to_rfc3339());
    }
    if let Some(r) = &lesson.retired_reason {
        line("retired_why", r);
    }
    s
}

/// The active lessons relevant to a proposal about `area`, `signals` and `files` (paths or
/// `file#key` targets): same area, or a scope signal among `signals`, or a scope file matching one
/// of `files` (exactly, by file part of `file#key`, or as a glob). Input order is kept.
pub fn relevant_lessons<'a>(
    lessons: &'a [Lesson],
    area: &str,
    signals: &[&str],
    files: &[&str],
) -> Vec<&'a Lesson> {
    let file_part = |s: &str| s.split('#').next().unwrap_or(s).to_string();
    lessons
        .iter()
        .filter(|l| l.status == LessonStatus::Active)
        .filter(|l| {
            if l.scope.area == area {
                return true;
            }
            if l.scope
                .signal
                .as_deref()
                .is_some_and(|s| signals.contains(&s))
            {
                return true;
            }
            let Some(scope_file) = l.scope.file.as_deref() else {
                return false;
            };
            let glob = globset::Glob::new(&file_part(scope_file))
                .ok()
                .map(|g| g.compile_matcher());
            files.iter().any(|f| {
                *f == scope_file
                    || file_part(f) == file_part(scope_file)
                    || glob.as_ref().is_some_and(|g| g.is_match(file_part(f)))
            })
        })
        .collect()
}

/// One change to the lesson store.
#[derive(Debug, Clone, PartialEq)]
pub enum LessonChange {
    /// A new lesson.
    Create(Lesson),
    /// A new version of an existing lesson (same id, version bumped).
    Update(Lesson),
    /// Retire a lesson (the lesson with status retired and its evidence).
    Retire(Lesson),
}

impl LessonChange {
    /// The lesson after the change.
    pub fn lesson(&self) -> &Lesson {
        match self {
            LessonChange::Create(l) | LessonChange::Update(l) | LessonChange::Retire(l) => l,
        }
    }
}

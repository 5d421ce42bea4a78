//! Validation of the model's candidates. Everything the model says is untrusted input: every
//! field is type- and size-checked, every path is checked lexically and on disk, the prediction
//! must be numeric on a known signal, and every relevant active lesson must be cited or argued
//! against. What fails goes to [`Proposals::rejected`] with a reason a user can read.

use super::schema::*;
use super::{LlmError, excerpt};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use kaizen_core::edit::Edit;
use kaizen_core::guard::ALWAYS_BLOCKED;
use kaizen_core::intervention::{Argument, Candidate, ExpectedChange, Origin, Prediction, Risk};
use kaizen_core::lesson::{Lesson, LessonStatus};
use kaizen_core::propose::{Proposals, ProposeContext, Rejected};
use kaizen_core::span::Span;
use kaizen_core::tunables::Envelope;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Excerpt length of a rejected candidate.
const REJECT_EXCERPT: usize = 300;
/// Most candidates looked at in one answer (the rest are rejected in bulk).
const MAX_EXAMINED: usize = 20;
/// Longest prediction window accepted.
const MAX_WINDOW: Span = Span::days(7);
/// Paths blocked whatever the config says, besides [`ALWAYS_BLOCKED`]: kaizen's default state dir.
const ALSO_BLOCKED: &[&str] = &[".kaizen", ".kaizen/**"];

/// Checks candidates against the allow-list, the blocked paths, the repository on disk, the
/// known signals and the active lessons.
#[derive(Debug, Clone)]
pub struct Validator {
    may_change: GlobSet,
    may_change_src: Vec<String>,
    blocked: GlobSet,
    blocked_src: Vec<String>,
    repo_root: PathBuf,
    max_candidates: usize,
    envelope: Option<Arc<Envelope>>,
}

fn globset(patterns: &[String], literal_separator: bool, field: &str) -> Result<GlobSet, LlmError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = GlobBuilder::new(p)
            .literal_separator(literal_separator)
            .build()
            .map_err(|e| LlmError::Config {
                field: field.to_string(),
                message: format!("invalid glob {p:?}: {e}"),
            })?;
        b.add(g);
    }
    b.build().map_err(|e| LlmError::Config {
        field: field.to_string(),
        message: e.to_string(),
    })
}

impl Validator {
    /// A validator for candidates that may edit `may_change` (globs, `/` matched literally) and
    /// never `blocked_paths` ∪ [`ALWAYS_BLOCKED`] ∪ `.kaizen/**`, inside `repo_root`.
    pub fn new(
        may_change: &[String],
        blocked_paths: &[String],
        repo_root: PathBuf,
        max_candidates: u32,
    ) -> Result<Self, LlmError> {
        if may_change.is_empty() {
            return Err(LlmError::Config {
                field: "may_change".into(),
                message: "give the paths the LLM's candidates may edit (e.g. [\"config/**\"])"
                    .into(),
            });
        }
        let mut blocked_src: Vec<String> = ALWAYS_BLOCKED
            .iter()
            .chain(ALSO_BLOCKED)
            .map(|s| s.to_string())
            .collect();
        for p in blocked_paths {
            if !blocked_src.contains(p) {
                blocked_src.push(p.clone());
            }
        }
        Ok(Self {
            may_change: globset(may_change, true, "may_change")?,
            may_change_src: may_change.to_vec(),
            // Blocked patterns match with `*` crossing `/` too: broader is safer.
            blocked: globset(&blocked_src, false, "blocked_paths")?,
            blocked_src,
            repo_root,
            max_candidates: max_candidates.clamp(1, MAX_CANDIDATES_CAP) as usize,
            envelope: None,
        })
    }

    /// With declared tunables: edits must name a knob (`{"knob": "cache_mb", "value": 256}`)
    /// and become a `config_set` of its file and key. Raw `config_set`/`file_write` edits are
    /// rejected then; the allow-list stays a second fence.
    pub fn with_envelope(mut self, envelope: Option<Arc<Envelope>>) -> Self {
        self.envelope = envelope.filter(|e| !e.knobs.is_empty());
        self
    }

    /// Validates a whole answer `{"candidates": [...]}`. A wrong top-level shape is an error;
    /// bad candidates are rejected one by one.
    pub fn validate_answer(
        &self,
        answer: &Value,
        ctx: &ProposeContext,
        trigger: &str,
    ) -> Result<Proposals, LlmError> {
        let shape = |message: &str| LlmError::Shape {
            message: message.to_string(),
            excerpt: excerpt(&answer.to_string(), 200),
        };
        let list = answer
            .get("candidates")
            .ok_or_else(|| shape("no `candidates` field"))?
            .as_array()
            .ok_or_else(|| shape("`candidates` is not a list"))?;
        let mut out = Proposals::default();
        let mut seen_targets: Vec<(usize, Vec<String>)> = Vec::new();
        for (i, item) in list.iter().enumerate().take(MAX_EXAMINED) {
            let n = i + 1;
            let title = item
                .get("title")
                .and_then(Value::as_str)
                .map(|t| format!(" ({:?})", excerpt(t, 60)))
                .unwrap_or_default();
            let reject = |reason: String| Rejected {
                reason: format!("llm candidate {n}{title}: {reason}"),
                excerpt: excerpt(&item.to_string(), REJECT_EXCERPT),
            };
            match self.validate_candidate(item, ctx, trigger) {
                Err(reason) => out.rejected.push(reject(reason)),
                Ok(c) => {
                    let targets = c.targets();
                    if let Some((m, _)) = seen_targets.iter().find(|(_, t)| *t == targets) {
                        out.rejected
                            .push(reject(format!("same change as candidate {m}")));
                    } else if out.candidates.len() >= self.max_candidates {
                        out.rejected.push(reject(format!(
                            "beyond llm.max_candidates = {} (only the first valid ones are kept)",
                            self.max_candidates
                        )));
                    } else {
                        seen_targets.push((n, targets));
                        out.candidates.push(c);
                    }
                }
            }
        }
        if list.len() > MAX_EXAMINED {
            out.rejected.push(Rejected {
                reason: format!(
                    "llm answer: {} candidates beyond the first {MAX_EXAMINED} ignored",
                    list.len() - MAX_EXAMINED
                ),
                excerpt: String::new(),
            });
        }
        Ok(out)
    }

    /// Validates one candidate; `Err` is the reason, for a human.
    pub fn validate_candidate(
        &self,
        item: &Value,
        ctx: &ProposeContext,
        trigger: &str,
    ) -> Result<Candidate, String> {
        let obj = item.as_object().ok_or("not a JSON object")?;
        let area = string(obj, "area", MAX_AREA, true)?;
        if !area
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "`area` {area:?} may only hold letters, digits, `_`, `-` and `.`"
            ));
        }
        let title = string(obj, "title", MAX_TITLE, true)?;
        let hypothesis = string(obj, "hypothesis", MAX_HYPOTHESIS, true)?;
        let change = self.edits(obj)?;
        let prediction = prediction(obj, ctx)?;
        let risk_text = string(obj, "risk", 16, true)?;
        let risk: Risk = risk_text
            .parse()
            .map_err(|e: String| format!("`risk`: {e}"))?;
        let confidence = match obj.get("confidence") {
            Some(Value::Number(n)) => n.as_f64().filter(|c| (0.0..=1.0).contains(c)),
            _ => None,
        }
        .ok_or("`confidence` must be a number from 0 to 1")?;
        // With tunables, the knobs say what area and least risk a change carries; the model's
        // claim is replaced by the declared ones (stricter, and what the envelope guard demands).
        let (area, risk) = match &self.envelope {
            Some(env) => declared_area_risk(env, &change, area, risk),
            None => (area, risk),
        };
        let rollback = string(obj, "rollback", MAX_ROLLBACK, true)?;
        let (cites, argues_against) = lessons(obj, ctx, &area, &prediction.signal, &change)?;
        let kinds: BTreeSet<&str> = change.iter().map(Edit::kind).collect();
        let kind = kinds.into_iter().collect::<Vec<_>>().join("+");
        Ok(Candidate {
            area,
            kind,
            title,
            hypothesis,
            change,
            prediction,
            risk,
            confidence,
            rollback: Some(rollback),
            origin: Origin {
                proposer: "llm".to_string(),
                rule: None,
                cites,
                argues_against,
                trigger: trigger.to_string(),
                ..Default::default()
            },
        })
    }

    fn edits(&self, obj: &Map<String, Value>) -> Result<Vec<Edit>, String> {
        let list = obj
            .get("change")
            .and_then(Value::as_array)
            .ok_or("`change` must be a list of edits")?;
        if list.is_empty() {
            return Err("`change` is empty".into());
        }
        if list.len() > MAX_EDITS {
            return Err(format!(
                "`change` has {} edits, at most {MAX_EDITS} allowed",
                list.len()
            ));
        }
        let mut edits: Vec<Edit> = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let at = format!("change[{i}]");
            let edit = match &self.envelope {
                Some(env) => knob_edit(env, e, &at)?,
                None => edit(e, &at)?,
            };
            self.check_path(edit.file())
                .map_err(|m| format!("{at}: path {:?} {m}", edit.file()))?;
            if let Edit::ConfigSet { .. } = &edit {
                // Dry run on an empty file: catches unknown formats and bad keys now, not at apply.
                edit.apply_to(None).map_err(|e| format!("{at}: {e}"))?;
            }
            let clash = edits.iter().any(|o| {
                o.target() == edit.target()
                    || (o.file() == edit.file()
                        && (o.kind() == "file_write" || edit.kind() == "file_write"))
            });
            if clash {
                return Err(format!("{at}: edits {:?} twice", edit.file()));
            }
            edits.push(edit);
        }
        Ok(edits)
    }

    /// Why `file` may not be edited, if it may not.
    pub fn check_path(&self, file: &str) -> Result<(), String> {
        if file.is_empty() {
            return Err("is empty".into());
        }
        if file.len() > MAX_PATH {
            return Err(format!("is longer than {MAX_PATH} bytes"));
        }
        if file.chars().any(|c| c.is_control()) {
            return Err("holds control characters".into());
        }
        if file.contains('\\') {
            return Err("holds a backslash (write paths with `/`)".into());
        }
        let b = file.as_bytes();
        if file.starts_with('/') || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic()) {
            return Err("is absolute (write it relative to the repository root)".into());
        }
        for comp in file.split('/') {
            match comp {
                "" => return Err("has an empty path segment".into()),
                "." => return Err("has a `.` segment".into()),
                ".." => return Err("leaves the repository (`..`)".into()),
                c if c.eq_ignore_ascii_case(".git") => {
                    return Err("is inside git's internals (`.git`)".into());
                }
                _ => {}
            }
        }
        self.check_rules(file)?;
        // On disk: a symlink on the way may lead out of the repository or into a blocked place.
        let resolved = self.resolve(file)?;
        if resolved != file {
            self.check_rules(&resolved)
                .map_err(|m| format!("resolves through a symlink to {resolved:?}, which {m}"))?;
        }
        Ok(())
    }

    fn check_rules(&self, file: &str) -> Result<(), String> {
        let lower = file.to_ascii_lowercase();
        let mut hits = self.blocked.matches(file);
        hits.extend(self.blocked.matches(&lower));
        if let Some(&i) = hits.first() {
            let pat = self.blocked_src.get(i).map(String::as_str).unwrap_or("?");
            return Err(format!("is blocked (matches blocked path `{pat}`)"));
        }
        if !self.may_change.is_match(file) {
            return Err(format!(
                "is outside llm.may_change {:?}",
                self.may_change_src
            ));
        }
        Ok(())
    }

    /// `file` with every symlink on its way resolved, relative to the canonical repo root.
    fn resolve(&self, file: &str) -> Result<String, String> {
        let root = std::fs::canonicalize(&self.repo_root).map_err(|e| {
            format!(
                "cannot be checked: repository root {} cannot be resolved ({e})",
                self.repo_root.display()
            )
        })?;
        let comps: Vec<&str> = file.split('/').collect();
        let mut cur = root.clone();
        for (i, c) in comps.iter().enumerate() {
            let next = cur.join(c);
            let shown = || comps.get(..=i).map(|s| s.join("/")).unwrap_or_default();
            match std::fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::canonicalize(&next).map_err(|_| {
                        format!(
                            "goes through symlink `{}` whose target does not exist",
                            shown()
                        )
                    })?;
                    if !target.starts_with(&root) {
                        return Err(format!(
                            "escapes the repository through symlink `{}` (→ {})",
                            shown(),
                            target.display()
                        ));
                    }
                    cur = target;
                }
                Ok(_) => cur = next,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => cur = next,
                Err(e) => return Err(format!("cannot be checked at `{}`: {e}", shown())),
            }
        }
        rel(&cur, &root).ok_or_else(|| "resolves to the repository root itself".to_string())
    }
}

fn rel(path: &Path, root: &Path) -> Option<String> {
    let r = path.strip_prefix(root).ok()?;
    let s = r
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    (!s.is_empty()).then_some(s)
}

/// A string field, trimmed, at most `max` characters; required non-empty when `required`.
fn string(
    obj: &Map<String, Value>,
    field: &str,
    max: usize,
    required: bool,
) -> Result<String, String> {
    match obj.get(field) {
        Some(Value::String(s)) => {
            let t = s.trim();
            if required && t.is_empty() {
                Err(format!("`{field}` is empty"))
            } else if t.chars().count() > max {
                Err(format!("`{field}` is longer than {max} characters"))
            } else {
                Ok(t.to_string())
            }
        }
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(format!("`{field}` is missing")),
        Some(other) => Err(format!(
            "`{field}` must be a string, not {}",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn exact_keys(obj: &Map<String, Value>, keys: &[&str], at: &str) -> Result<(), String> {
    if let Some(k) = obj.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!("{at}: unknown field `{k}` (expected {keys:?})"));
    }
    Ok(())
}

fn edit(e: &Value, at: &str) -> Result<Edit, String> {
    let obj = e
        .as_object()
        .ok_or_else(|| format!("{at} must be an object"))?;
    if obj.len() != 1 {
        return Err(format!(
            "{at} must hold exactly one of `config_set` or `file_write`"
        ));
    }
    let (kind, body) = obj.iter().next().ok_or_else(|| format!("{at} is empty"))?;
    let at = format!("{at}.{kind}");
    let body = body
        .as_object()
        .ok_or_else(|| format!("{at} must be an object"))?;
    let field = |f: &str, max: usize| string(body, f, max, true).map_err(|m| format!("{at}: {m}"));
    match kind.as_str() {
        "config_set" => {
            exact_keys(body, &["file", "key", "value"], &at)?;
            let value = match body.get("value") {
                Some(Value::String(s)) if s.chars().count() > MAX_VALUE => {
                    return Err(format!(
                        "{at}: `value` is longer than {MAX_VALUE} characters"
                    ));
                }
                Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v.clone(),
                Some(other) => {
                    return Err(format!(
                        "{at}: `value` must be a string, number or boolean, not {}",
                        type_name(other)
                    ));
                }
                None => return Err(format!("{at}: `value` is missing")),
            };
            Ok(Edit::ConfigSet {
                file: field("file", MAX_PATH)?,
                key: field("key", MAX_KEY)?,
                value,
            })
        }
        "file_write" => {
            exact_keys(body, &["file", "content"], &at)?;
            let content = match body.get("content") {
                Some(Value::String(s)) if s.len() > MAX_CONTENT => {
                    return Err(format!(
                        "{at}: `content` is {} bytes, at most {MAX_CONTENT} allowed",
                        s.len()
                    ));
                }
                Some(Value::String(s)) => s.clone(),
                _ => return Err(format!("{at}: `content` must be a string")),
            };
            Ok(Edit::FileWrite {
                file: field("file", MAX_PATH)?,
                content,
            })
        }
        other => Err(format!(
            "{at}: unknown edit kind `{other}` (config_set or file_write)"
        )),
    }
}

/// The area every changed knob declares (when they agree) and the highest of the claimed risk
/// and the knobs' declared risks.
fn declared_area_risk(env: &Envelope, change: &[Edit], area: String, risk: Risk) -> (String, Risk) {
    let knobs: Vec<_> = change
        .iter()
        .filter_map(|e| match e {
            Edit::ConfigSet { file, key, .. } => env.knob_at(file, key),
            Edit::FileWrite { .. } => None,
        })
        .collect();
    let risk = knobs.iter().filter_map(|k| k.risk).fold(risk, Risk::max);
    let mut areas: Vec<&str> = knobs.iter().filter_map(|k| k.area.as_deref()).collect();
    areas.sort_unstable();
    areas.dedup();
    match areas.as_slice() {
        [one] if knobs.iter().all(|k| k.area.is_some()) => (one.to_string(), risk),
        _ => (area, risk),
    }
}

/// `{"knob": "cache_mb", "value": 256}` → a `config_set` of the knob's file and key. Only the
/// name and the value's shape are checked here; bounds, steps and invariants are the guard's.
fn knob_edit(env: &Envelope, e: &Value, at: &str) -> Result<Edit, String> {
    let obj = e
        .as_object()
        .ok_or_else(|| format!("{at} must be an object {{knob, value}}"))?;
    if obj.contains_key("config_set") || obj.contains_key("file_write") {
        return Err(format!(
            "{at}: with tunables declared, an edit names a knob ({{\"knob\": ..., \"value\": ...}})"
        ));
    }
    exact_keys(obj, &["knob", "value"], at)?;
    let name = string(obj, "knob", MAX_KEY, true).map_err(|m| format!("{at}: {m}"))?;
    let knob = env.knobs.get(&name).ok_or_else(|| {
        let names: Vec<&str> = env.knobs.keys().map(String::as_str).collect();
        format!(
            "{at}: unknown knob {name:?} (declared: {})",
            names.join(", ")
        )
    })?;
    let value = match obj.get("value") {
        Some(Value::String(s)) if s.chars().count() > MAX_VALUE => {
            return Err(format!(
                "{at}: `value` is longer than {MAX_VALUE} characters"
            ));
        }
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v.clone(),
        Some(other) => {
            return Err(format!(
                "{at}: `value` must be a string, number or boolean, not {}",
                type_name(other)
            ));
        }
        None => return Err(format!("{at}: `value` is missing")),
    };
    Ok(Edit::ConfigSet {
        file: knob.file.clone(),
        key: knob.key.clone(),
        value,
    })
}

fn prediction(obj: &Map<String, Value>, ctx: &ProposeContext) -> Result<Prediction, String> {
    let p = obj
        .get("predict")
        .and_then(Value::as_object)
        .ok_or("`predict` must be an object {signal, change, within}")?;
    let at = |m: String| format!("predict: {m}");
    let signal = string(p, "signal", MAX_SIGNAL, true).map_err(at)?;
    let known = ctx
        .signals
        .iter()
        .find(|s| s.name == signal)
        .ok_or_else(|| {
            let names: Vec<&str> = ctx.signals.iter().map(|s| s.name.as_str()).collect();
            format!("predict: unknown signal {signal:?} (known: {names:?})")
        })?;
    let change_text = string(p, "change", MAX_CHANGE, true).map_err(at)?;
    let change: ExpectedChange = change_text
        .parse()
        .map_err(|e: String| format!("predict.change: {e}"))?;
    let within_text = string(p, "within", MAX_WITHIN, true).map_err(at)?;
    let within: Span = within_text
        .parse()
        .map_err(|e| format!("predict.within: {e}"))?;
    if within.seconds() == 0 || within > MAX_WINDOW {
        return Err(format!(
            "predict.within: {within} must be above 0 and at most {MAX_WINDOW}"
        ));
    }
    if change.direction() * known.better.sign() < 0.0 {
        return Err(format!(
            "predict: {signal} {change} is a change for the worse ({signal}: {} is better)",
            known.better
        ));
    }
    Ok(Prediction {
        signal,
        change,
        within,
    })
}

/// Whether `lesson` bears on a candidate in `area` predicting `signal` with `edits`.
pub fn lesson_is_relevant(lesson: &Lesson, area: &str, signal: &str, edits: &[Edit]) -> bool {
    let s = &lesson.scope;
    s.area == area
        || s.signal.as_deref() == Some(signal)
        || s.file.as_deref().is_some_and(|f| {
            let file_part = f.split('#').next().unwrap_or(f);
            edits
                .iter()
                .any(|e| e.target() == f || e.file() == file_part)
        })
}

fn lessons(
    obj: &Map<String, Value>,
    ctx: &ProposeContext,
    area: &str,
    signal: &str,
    edits: &[Edit],
) -> Result<(Vec<String>, Vec<Argument>), String> {
    let active: Vec<&Lesson> = ctx
        .lessons
        .iter()
        .filter(|l| l.status == LessonStatus::Active)
        .collect();
    let known = |id: &str| active.iter().any(|l| l.id == id);
    let list = |field: &str| -> Result<Vec<Value>, String> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) if a.len() <= MAX_LESSON_REFS => Ok(a.clone()),
            Some(Value::Array(_)) => {
                Err(format!("`{field}` has more than {MAX_LESSON_REFS} entries"))
            }
            Some(other) => Err(format!(
                "`{field}` must be a list, not {}",
                type_name(other)
            )),
        }
    };
    let mut cites = Vec::new();
    for c in list("cites")? {
        let id = c
            .as_str()
            .map(str::trim)
            .ok_or("`cites` must be a list of lesson ids")?;
        if id.chars().count() > MAX_LESSON_ID {
            return Err(format!(
                "`cites`: id longer than {MAX_LESSON_ID} characters"
            ));
        }
        if !known(id) {
            return Err(format!("cites unknown or inactive lesson {id:?}"));
        }
        if !cites.iter().any(|x: &String| x == id) {
            cites.push(id.to_string());
        }
    }
    let mut args: Vec<Argument> = Vec::new();
    for (i, a) in list("argues_against")?.iter().enumerate() {
        let at = format!("argues_against[{i}]");
        let o = a
            .as_object()
            .ok_or_else(|| format!("{at} must be an object {{lesson, why}}"))?;
        let lesson = string(o, "lesson", MAX_LESSON_ID, true).map_err(|m| format!("{at}: {m}"))?;
        let why = string(o, "why", MAX_WHY, true).map_err(|m| format!("{at}: {m}"))?;
        if !known(&lesson) {
            return Err(format!(
                "{at}: argues against unknown or inactive lesson {lesson:?}"
            ));
        }
        if why.chars().count() < MIN_WHY || why.split_whitespace().count() < 3 {
            return Err(format!(
                "{at}: the argument against {lesson:?} is too thin ({why:?}); give a reason of at least {MIN_WHY} characters"
            ));
        }
        if cites.contains(&lesson) {
            return Err(format!("both cites and argues against lesson {lesson:?}"));
        }
        if !args.iter().any(|x| x.lesson == lesson) {
            args.push(Argument { lesson, why });
        }
    }
    for l in active
        .iter()
        .filter(|l| lesson_is_relevant(l, area, signal, edits))
    {
        if !cites.contains(&l.id) && !args.iter().any(|a| a.lesson == l.id) {
            return Err(format!(
                "ignores relevant active lesson {:?} (area {}{}): cite it or argue against it",
                l.id,
                l.scope.area,
                l.scope
                    .signal
                    .as_deref()
                    .map(|s| format!(", signal {s}"))
                    .unwrap_or_default()
            ));
        }
    }
    Ok((cites, args))
}

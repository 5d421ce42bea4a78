//! The optional LLM distiller's only way in: reword a lesson's `because` and `retired_when`.
//!
//! The model answers a JSON object with at most those two string keys. Everything else a lesson
//! holds (id, scope, when, prefer, falsifiable, calibrated_for, evidence, status, version, dates) is
//! the deterministic distiller's and is never taken from the model: naming such a key is an error.
//! The merged lesson passes the same schema checks as a hand-written one, and a `retired_when` that
//! kaizen could check on observations must stay checkable.

use crate::lesson::{self, ConditionText, Lesson, MAX_CONDITION_TEXT, MAX_TEXT, condition_of};

/// Keys a rewrite may set.
pub const REWRITABLE: [&str; 2] = ["because", "retired_when"];

/// A rewrite that was not accepted. The lesson is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// Not a JSON object.
    #[error("lesson rewrite for {lesson}: not a JSON object: {why}")]
    NotJson {
        /// The lesson id.
        lesson: String,
        /// The parser's complaint.
        why: String,
    },
    /// It named a field it may not set.
    #[error(
        "lesson rewrite for {lesson}: field `{field}` may not be rewritten (only `because` and `retired_when`)"
    )]
    Forbidden {
        /// The lesson id.
        lesson: String,
        /// The field.
        field: String,
    },
    /// A value of the wrong type, empty or too long.
    #[error("lesson rewrite for {lesson}: field `{field}`: {why}")]
    BadValue {
        /// The lesson id.
        lesson: String,
        /// The field.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// The merged lesson fails the schema checks.
    #[error("lesson rewrite for {lesson}: field `{field}`: {why}")]
    Invalid {
        /// The lesson id.
        lesson: String,
        /// The field.
        field: String,
        /// What is wrong.
        why: String,
    },
}

/// Merges an LLM's rewrite (`{"because": "...", "retired_when": "..."}`, either key optional) into
/// `lesson`. Returns the lesson with its version bumped when the text changed, or unchanged (same
/// version) when the rewrite says the same thing.
pub fn apply_rewrite(lesson: &Lesson, rewrite_json: &str) -> Result<Lesson, RewriteError> {
    let id = || lesson.id.clone();
    let value: serde_json::Value =
        serde_json::from_str(rewrite_json.trim()).map_err(|e| RewriteError::NotJson {
            lesson: id(),
            why: e.to_string(),
        })?;
    let serde_json::Value::Object(map) = value else {
        return Err(RewriteError::NotJson {
            lesson: id(),
            why: "expected an object like {\"because\": \"...\"}".into(),
        });
    };
    // Fields are checked in a fixed order so the same answer gives the same error.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = lesson.clone();
    for key in keys {
        if !REWRITABLE.contains(&key.as_str()) {
            return Err(RewriteError::Forbidden {
                lesson: id(),
                field: key.chars().take(60).collect(),
            });
        }
        let bad = |why: String| RewriteError::BadValue {
            lesson: id(),
            field: key.clone(),
            why,
        };
        let text = map
            .get(key)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("must be a string".into()))?
            .trim()
            .to_string();
        let max = if key == "because" {
            MAX_TEXT
        } else {
            MAX_CONDITION_TEXT
        };
        if text.is_empty() {
            return Err(bad("must not be empty".into()));
        }
        if text.chars().count() > max {
            return Err(bad(format!(
                "is {} characters long (at most {max})",
                text.chars().count()
            )));
        }
        if key == "because" {
            out.because = text;
        } else {
            let was_checkable = matches!(
                condition_of(&lesson.retired_when),
                ConditionText::Checkable(_)
            );
            match condition_of(&text) {
                ConditionText::Checkable(c) => out.retired_when = c.to_string(),
                ConditionText::FreeText(e) if was_checkable => {
                    return Err(bad(format!(
                        "the current retired_when is checked on observations; a rewrite must stay a condition ({e})"
                    )));
                }
                ConditionText::FreeText(_) => out.retired_when = text,
            }
        }
    }
    if let Some((field, why)) = lesson::check(&out).into_iter().next() {
        return Err(RewriteError::Invalid {
            lesson: id(),
            field,
            why,
        });
    }
    if out.because != lesson.because || out.retired_when != lesson.retired_when {
        out.version = lesson.version.saturating_add(1);
    }
    Ok(out)
}

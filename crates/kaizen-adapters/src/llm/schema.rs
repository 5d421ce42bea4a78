//! The JSON schemas the model answers with. Every string has a `maxLength` and every array a
//! `maxItems`: small models otherwise pad until the token limit. The validator enforces the same
//! limits (constants below), since not every server enforces the schema.

use kaizen_core::tunables::{KnobState, KnobType};
use serde_json::{Value, json};

/// Longest `area`.
pub const MAX_AREA: usize = 64;
/// Longest `title`.
pub const MAX_TITLE: usize = 120;
/// Longest `hypothesis`.
pub const MAX_HYPOTHESIS: usize = 600;
/// Longest file path in an edit.
pub const MAX_PATH: usize = 200;
/// Longest `config_set` key.
pub const MAX_KEY: usize = 120;
/// Longest string `config_set` value.
pub const MAX_VALUE: usize = 200;
/// Largest `file_write` content, in bytes.
pub const MAX_CONTENT: usize = 8 * 1024;
/// Most edits per candidate.
pub const MAX_EDITS: usize = 5;
/// Longest signal name.
pub const MAX_SIGNAL: usize = 64;
/// Longest predicted change (`-20%`, `below 1500`).
pub const MAX_CHANGE: usize = 24;
/// Longest prediction window (`30m`).
pub const MAX_WITHIN: usize = 16;
/// What a predicted change looks like: `-20%`, `+5`, `below 1500`, `above 0.9`.
pub const CHANGE_PATTERN: &str =
    "^([+-][0-9]{1,6}(\\.[0-9]{1,4})?%?|(below|above) [0-9]{1,9}(\\.[0-9]{1,4})?)$";
/// [`CHANGE_PATTERN`] without decimals, for grammar-compiling servers: llama-cpp-python turns any
/// literal `.` in a pattern into an escape its own grammar parser rejects (and its server dies).
pub const CHANGE_PATTERN_NO_DOT: &str = "^([+-][0-9]{1,6}%?|(below|above) [0-9]{1,9})$";
/// What a window looks like: `30m`, `2h`, `1d`.
pub const WITHIN_PATTERN: &str = "^[0-9]{1,4}[smhd]$";
/// Longest `rollback`.
pub const MAX_ROLLBACK: usize = 200;
/// Longest lesson id.
pub const MAX_LESSON_ID: usize = 64;
/// Most lessons cited or argued against.
pub const MAX_LESSON_REFS: usize = 8;
/// Longest argument against a lesson.
pub const MAX_WHY: usize = 400;
/// Shortest argument against a lesson that counts as an argument.
pub const MIN_WHY: usize = 20;
/// Most candidates the schema allows, whatever `max_candidates` says.
pub const MAX_CANDIDATES_CAP: u32 = 10;

/// Longest hypothesis `cause` in a diagnosis.
pub const MAX_CAUSE: usize = 300;
/// Longest hypothesis `evidence`.
pub const MAX_EVIDENCE: usize = 600;
/// Longest hypothesis `check_next`.
pub const MAX_CHECK_NEXT: usize = 300;
/// Most hypotheses in a diagnosis.
pub const MAX_HYPOTHESES: usize = 5;

fn s(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

fn object(properties: Value) -> Value {
    let required: Vec<Value> = properties
        .as_object()
        .map(|m| m.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// Longest duration or size value of a knob (`1500ms`, `512MiB`).
pub const MAX_QUANTITY: usize = 16;
/// What a duration knob's value looks like (no literal dots: see [`CHANGE_PATTERN_NO_DOT`]).
pub const DURATION_PATTERN: &str = "^[0-9]{1,9}(ms|s|m|h|d)$";
/// What a size knob's value looks like.
pub const SIZE_PATTERN: &str = "^[0-9]{1,12}(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB|k|K|M|G|T)$";

/// The schema of one knob's value: typed, and for numbers bounded by where one intervention may
/// take it now ([`KnobState::range`]).
fn knob_value(k: &KnobState) -> Value {
    let mut v = match k.knob.ty {
        KnobType::Int => json!({"type": "integer"}),
        KnobType::Float => json!({"type": "number"}),
        KnobType::Bool => return json!({"type": "boolean"}),
        KnobType::Enum => return json!({"type": "string", "enum": k.knob.allowed}),
        KnobType::Duration => {
            return json!({"type": "string", "maxLength": MAX_QUANTITY, "pattern": DURATION_PATTERN});
        }
        KnobType::Size => {
            return json!({"type": "string", "maxLength": MAX_QUANTITY, "pattern": SIZE_PATTERN});
        }
    };
    let int = k.knob.ty == KnobType::Int;
    let bound = |x: f64| {
        if int && x.abs() < 9e15 {
            // Whole and well inside i64 here.
            #[allow(clippy::cast_possible_truncation)]
            Value::from(x as i64)
        } else {
            json!(x)
        }
    };
    if let Some(lo) = k.range.0 {
        v["minimum"] = bound(lo);
    }
    if let Some(hi) = k.range.1 {
        v["maximum"] = bound(hi);
    }
    v
}

/// The schema of the proposer's answer when tunables are declared: each edit is
/// `{"knob": <one of the changeable knobs' names>, "value": <that knob's typed value>}`, so even
/// a small grammar-constrained model can only name declared knobs and in-range values. The
/// answer is checked on our side regardless (the `envelope` guard has the last word).
pub fn output_schema_for(max_candidates: u32, knobs: &[KnobState]) -> Value {
    let items: Vec<Value> = knobs
        .iter()
        .filter(|k| k.changeable)
        .map(|k| {
            object(json!({
                "knob": {"type": "string", "enum": [k.knob.name]},
                "value": knob_value(k)
            }))
        })
        .collect();
    with_edits(max_candidates, json!({"anyOf": items}))
}

/// The schema of the proposer's answer: `{"candidates": [...]}` with at most `max_candidates`
/// (clamped to 1..=10) candidates. Strict-mode compatible: every property required, no extras.
pub fn output_schema(max_candidates: u32) -> Value {
    let config_set = object(json!({
        "config_set": object(json!({
            "file": s(MAX_PATH),
            "key": s(MAX_KEY),
            "value": {"anyOf": [
                {"type": "string", "maxLength": MAX_VALUE},
                {"type": "number"},
                {"type": "boolean"}
            ]}
        }))
    }));
    let file_write = object(json!({
        "file_write": object(json!({
            "file": s(MAX_PATH),
            "content": s(MAX_CONTENT)
        }))
    }));
    with_edits(max_candidates, json!({"anyOf": [config_set, file_write]}))
}

fn with_edits(max_candidates: u32, edit_items: Value) -> Value {
    let max_candidates = max_candidates.clamp(1, MAX_CANDIDATES_CAP);
    let candidate = object(json!({
        "area": s(MAX_AREA),
        "title": s(MAX_TITLE),
        "hypothesis": s(MAX_HYPOTHESIS),
        "change": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_EDITS,
            "items": edit_items
        },
        "predict": object(json!({
            "signal": s(MAX_SIGNAL),
            // Patterns steer grammar-constrained decoding of small models towards values kaizen
            // can parse; the answer is parsed and checked on our side regardless.
            "change": {"type": "string", "maxLength": MAX_CHANGE, "pattern": CHANGE_PATTERN},
            "within": {"type": "string", "maxLength": MAX_WITHIN, "pattern": WITHIN_PATTERN}
        })),
        "risk": {"type": "string", "enum": ["low", "medium", "high"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "rollback": s(MAX_ROLLBACK),
        "cites": {"type": "array", "maxItems": MAX_LESSON_REFS, "items": s(MAX_LESSON_ID)},
        "argues_against": {
            "type": "array",
            "maxItems": MAX_LESSON_REFS,
            "items": object(json!({"lesson": s(MAX_LESSON_ID), "why": s(MAX_WHY)}))
        }
    }));
    object(json!({
        "candidates": {
            "type": "array",
            "maxItems": max_candidates,
            "items": candidate
        }
    }))
}

/// The schema of a diagnosis: `{"hypotheses": [{rank, cause, evidence, check_next, confidence}]}`.
pub fn diagnosis_schema() -> Value {
    object(json!({
        "hypotheses": {
            "type": "array",
            "maxItems": MAX_HYPOTHESES,
            "items": object(json!({
                "rank": {"type": "integer", "minimum": 1, "maximum": MAX_HYPOTHESES},
                "cause": s(MAX_CAUSE),
                "evidence": s(MAX_EVIDENCE),
                "check_next": s(MAX_CHECK_NEXT),
                "confidence": {"type": "number", "minimum": 0, "maximum": 1}
            }))
        }
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every string in the schema is bounded and every array has maxItems.
    fn check_bounded(v: &Value, path: &str) {
        if let Some(obj) = v.as_object() {
            match obj.get("type").and_then(Value::as_str) {
                Some("string") => assert!(
                    obj.contains_key("maxLength") || obj.contains_key("enum"),
                    "{path}: unbounded string"
                ),
                Some("array") => assert!(obj.contains_key("maxItems"), "{path}: unbounded array"),
                _ => {}
            }
            for (k, child) in obj {
                check_bounded(child, &format!("{path}.{k}"));
            }
        } else if let Some(items) = v.as_array() {
            for (i, child) in items.iter().enumerate() {
                check_bounded(child, &format!("{path}[{i}]"));
            }
        }
    }

    #[test]
    fn schemas_are_bounded() {
        check_bounded(&output_schema(3), "$");
        check_bounded(&diagnosis_schema(), "$");
        assert_eq!(output_schema(3)["properties"]["candidates"]["maxItems"], 3);
        assert_eq!(output_schema(0)["properties"]["candidates"]["maxItems"], 1);
        assert_eq!(
            output_schema(99)["properties"]["candidates"]["maxItems"],
            10
        );
    }
}

//! Fuzzing LLM output handling (issue 9): extraction of the answer from prose, validation of
//! candidates and of lesson rewrites, on random and mutated answers. Nothing the model writes
//! may panic, hang, or get through with a value out of bounds.
//!
//! Cases per property: `PROPTEST_CASES` (default 256). A long run:
//! `PROPTEST_CASES=20000 cargo test --release -p kaizen-adapters --test fuzz_llm`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use chrono::{DateTime, Duration, Utc};
use kaizen_adapters::llm::extract::first_json_object;
use kaizen_adapters::llm::validate::Validator;
use kaizen_core::learn::apply_rewrite;
use kaizen_core::lesson::new_lesson_from_yaml;
use kaizen_core::propose::ProposeContext;
use kaizen_core::signal::{Better, Sample, Signal};
use kaizen_core::span::Span;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn now() -> DateTime<Utc> {
    "2026-03-02T08:00:00Z".parse().unwrap()
}

fn ctx() -> ProposeContext {
    let latency: Vec<Sample> = (0..30)
        .map(|i| Sample::new("latency_ms", now() - Duration::minutes(29 - i), 250.0))
        .collect();
    ProposeContext {
        now: now(),
        signals: vec![Signal {
            name: "latency_ms".into(),
            unit: "ms".into(),
            better: Better::Lower,
            alert_above: Some(200.0),
            alert_below: None,
        }],
        recent: [("latency_ms".to_string(), latency)]
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        lessons: vec![],
        interventions: vec![],
        freezes: vec![],
        budget_left: 4,
    }
}

fn validator() -> Validator {
    Validator::new(
        &["config/**".to_string()],
        &[],
        PathBuf::from("/nonexistent-repo-root"),
        3,
    )
    .unwrap()
}

fn good() -> Value {
    json!({"candidates": [{
        "area": "cache",
        "title": "Grow the cache",
        "hypothesis": "Most requests miss the cache; a bigger cache cuts latency.",
        "change": [{"config_set": {"file": "config/app.yaml", "key": "cache_mb", "value": 256}}],
        "predict": {"signal": "latency_ms", "change": "-20%", "within": "30m"},
        "risk": "low",
        "confidence": 0.6,
        "rollback": "revert",
        "cites": [],
        "argues_against": []
    }]})
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,30}".prop_map(Value::from),
        prop_oneof![
            Just("99999999d"),
            Just("-20%"),
            Just("+1e308%"),
            Just("../../etc/passwd"),
            Just("/etc/passwd"),
            Just(".git/config"),
            Just("config/../.git/hooks/pre-commit"),
            Just("latency_ms median_99999999d outside [1, 2]"),
            Just("config/app.yaml"),
            Just("nan"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("candidates".to_string()),
                    Just("change".to_string()),
                    Just("config_set".to_string()),
                    Just("file_write".to_string()),
                    Just("file".to_string()),
                    Just("content".to_string()),
                    Just("predict".to_string()),
                    Just("within".to_string()),
                    Just("confidence".to_string()),
                    "[a-z_]{0,10}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random path of `doc` with `v`.
fn graft(doc: &mut Value, mut path: Vec<usize>, v: Value) {
    let Some(i) = path.pop() else {
        *doc = v;
        return;
    };
    match doc {
        Value::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(i % m.len()).cloned().unwrap();
            graft(m.get_mut(&k).unwrap(), path, v);
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            graft(&mut a[i % n], path, v);
        }
        other => *other = v,
    }
}

const LESSON: &str = r#"id: L-cache-grow
scope:
  area: cache
when: the working set outgrew the cache
prefer: grow the cache
because: misses dominate latency
falsifiable: "latency_ms median_24h above 300"
retired_when: "latency_ms median_24h outside [100, 400]"
created: 2026-03-01T00:00:00Z
"#;

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_extraction(text in ".{0,300}") {
        if let Some(v) = first_json_object(&text) {
            prop_assert!(v.is_object());
        }
    }

    #[test]
    fn fuzz_answers(answer in json_value()) {
        let _ = validator().validate_answer(&answer, &ctx(), "latency_ms above 200");
    }

    #[test]
    fn fuzz_mutated_candidates(
        grafts in prop::collection::vec((prop::collection::vec(any::<usize>(), 0..5), json_value()), 1..4)
    ) {
        let mut answer = good();
        for (path, v) in grafts {
            graft(&mut answer, path, v);
        }
        if let Ok(p) = validator().validate_answer(&answer, &ctx(), "latency_ms above 200") {
            for c in &p.candidates {
                prop_assert!(c.confidence.is_finite() && (0.0..=1.0).contains(&c.confidence));
                prop_assert!(c.prediction.within > Span::from_secs(0));
                prop_assert!(c.prediction.within <= Span::days(7));
                for e in &c.change {
                    prop_assert!(e.check_payload().is_ok());
                    prop_assert!(e.file().starts_with("config/"), "{}", e.file());
                    prop_assert!(!e.file().contains(".."), "{}", e.file());
                }
            }
        }
    }

    #[test]
    fn fuzz_lesson_rewrites(because in json_value(), retired in json_value(), extra in json_value()) {
        let lesson = new_lesson_from_yaml(LESSON, Path::new("L-cache-grow.yaml")).unwrap();
        for answer in [
            json!({"because": because, "retired_when": retired}),
            json!({"retired_when": retired}),
            json!({"because": because, "retired_when": retired, "x": extra}),
            extra.clone(),
        ] {
            if let Ok(out) = apply_rewrite(&lesson, &answer.to_string()) {
                // What is accepted is a valid lesson: it loads back and evaluates without panic.
                prop_assert!(kaizen_core::lesson::check(&out).is_empty());
                let _ = kaizen_core::lesson::retirement_check(&out, &ctx().recent, now());
            }
        }
    }
}

#[test]
fn pathological_answers_end_quickly() {
    // Quadratic scanning of unbalanced braces would take minutes at the response size bound.
    let braces = "{".repeat(kaizen_adapters::llm::client::DEFAULT_MAX_RESPONSE_BYTES);
    assert!(first_json_object(&braces).is_none());
    let nested = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    assert!(first_json_object(&nested).is_none());
    // Stray braces before the answer are skipped while within the tried prefix.
    let v = first_json_object(&format!("{} {{\"ok\": 1}}", "{".repeat(10))).unwrap();
    assert_eq!(v["ok"], 1);
}

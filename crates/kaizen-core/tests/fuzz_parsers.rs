//! Fuzzing every parser of text kaizen does not control (issue 9): config, rules, lessons,
//! conditions and durations, on random text and on random mutations of valid documents. Each
//! must return (an error naming a line, for YAML documents) and never panic, hang or allocate
//! without bound; what they accept must be within bounds and must not panic when used.
//!
//! Cases per property: `PROPTEST_CASES` (proptest's default, 256, in CI). A long run:
//! `PROPTEST_CASES=20000 cargo test --release -p kaizen-core --test fuzz_parsers`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use chrono::{DateTime, Duration, Utc};
use kaizen_core::config::{Config, DEFAULT_CONFIG};
use kaizen_core::lesson::{Condition, new_lesson_from_yaml, retirement_check};
use kaizen_core::rules::parse_rules;
use kaizen_core::signal::Sample;
use kaizen_core::span::Span;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const RULES: &str = r#"rules:
  - id: grow-cache
    area: cache
    when: { signal: latency_ms, above: 200, for: 10m }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }
      - file_write: { file: config/notes.txt, content: "bigger cache" }
    predict: { signal: latency_ms, change: "-20%", within: 30m }
    risk: low
    confidence: 0.8
    rollback: revert
    because: "misses dominate latency"
  - id: fewer-workers
    area: workers
    when:
      signal: latency_ms
      below: 50
      for: 1h
    change:
      - config_set:
          file: config/app.yaml
          key: workers
          value: 2
    predict:
      signal: latency_ms
      change: "+10%"
      within: 2h
    risk: medium
    confidence: 0.5
    because: "idle workers cost memory"
"#;

const LESSON: &str = r#"id: L-cache-grow
scope:
  area: cache
  signal: latency_ms
when: the working set outgrew the cache
prefer: grow the cache
because: misses dominate latency
falsifiable: "latency_ms median_24h above 300"
retired_when: "latency_ms median_24h outside [100, 400] or latency_ms p95_1h above 900"
calibrated_for: { baseline_ms: 250 }
created: 2026-03-01T00:00:00Z
evidence:
  - { intervention: K-000001, outcome: validated }
version: 2
"#;

/// Values a careless author, a mangled file or a hostile writer puts where a value goes.
const HOSTILE: &[&str] = &[
    "99999999d",
    "99999999999999999999d",
    "3000000d",
    "0s",
    "-5m",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "NaN",
    "-0",
    "18446744073709551616",
    "~",
    "null",
    "[",
    "]",
    "{",
    "}",
    "*anchor",
    "&anchor",
    "!!binary AAAA",
    "\t",
    "\"",
    "'",
    ": :",
    "- -",
    "#",
    "\u{feff}",
    "é",
    "median_99999999d",
    "outside [2, 1]",
    "or or",
    "\n",
    "\n  ",
    "\n- ",
];

/// One edit of a document: at a byte position (mapped to a char boundary), delete, insert a
/// hostile token, or duplicate a slice.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, usize),
    Replace(usize, usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    prop_oneof![
        (pos, 1usize..12).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (pos, 0..HOSTILE.len()).prop_map(|(p, t)| Mutation::Insert(p, t)),
        (pos, 1usize..8, 0..HOSTILE.len()).prop_map(|(p, n, t)| Mutation::Replace(p, n, t)),
        (pos, 1usize..40).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
    ]
}

fn boundary(s: &str, at: usize) -> usize {
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(doc: &str, muts: &[Mutation]) -> String {
    let mut s = doc.to_string();
    for m in muts {
        match *m {
            Mutation::Delete(p, n) => {
                let a = boundary(&s, p);
                let b = boundary(&s, a + n.min(s.len() - a));
                s.replace_range(a..b, "");
            }
            Mutation::Insert(p, t) => {
                let a = boundary(&s, p);
                s.insert_str(a, HOSTILE[t]);
            }
            Mutation::Replace(p, n, t) => {
                let a = boundary(&s, p);
                let b = boundary(&s, a + n.min(s.len() - a));
                s.replace_range(a..b, HOSTILE[t]);
            }
            Mutation::Duplicate(p, n) => {
                let a = boundary(&s, p);
                let b = boundary(&s, a + n.min(s.len() - a));
                let piece = s[a..b].to_string();
                s.insert_str(b, &piece);
            }
        }
    }
    s
}

fn signals() -> BTreeSet<String> {
    ["latency_ms".to_string()].into_iter().collect()
}

fn t0() -> DateTime<Utc> {
    "2026-03-02T08:00:00Z".parse().unwrap()
}

/// Samples for `latency_ms`, one every `step` minutes, ending at `t0`.
fn samples(values: &[f64], step: i64) -> BTreeMap<String, Vec<Sample>> {
    let n = values.len() as i64;
    let list = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Sample::new(
                "latency_ms",
                t0() - Duration::minutes((n - i as i64) * step),
                *v,
            )
        })
        .collect();
    [("latency_ms".to_string(), list)].into_iter().collect()
}

fn instants() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(t0()),
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        (-1_000_000_000i64..1_000_000_000).prop_map(|m| t0() + Duration::minutes(m)),
    ]
}

proptest! {
    // PROPTEST_CASES sets the number of cases (the default config reads it); failures are
    // printed, not persisted into the source tree.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_spans(text in ".{0,24}") {
        if let Ok(s) = text.parse::<Span>() {
            prop_assert!(s <= Span::MAX);
            let _ = s.after(DateTime::<Utc>::MAX_UTC);
            let _ = s.before(DateTime::<Utc>::MIN_UTC);
        }
    }

    #[test]
    fn fuzz_span_shaped(digits in "[0-9]{1,24}", unit in "[smhdw]?") {
        if let Ok(s) = format!("{digits}{unit}").parse::<Span>() {
            prop_assert!(s <= Span::MAX);
        }
    }

    #[test]
    fn fuzz_conditions_random_text(text in ".{0,120}", now in instants()) {
        if let Ok(c) = text.parse::<Condition>() {
            let _ = c.evaluate(&samples(&[1.0, 2.0, 3.0, 4.0], 30), now);
        }
    }

    #[test]
    fn fuzz_conditions_grammar(
        clauses in prop::collection::vec(
            (
                prop_oneof![Just("latency_ms"), Just("x"), Just("a.b:c")],
                prop_oneof![Just("median"), Just("mean"), Just("min"), Just("max"), Just("last"), Just("p1"), Just("p99"), Just("p0"), Just("p100")],
                prop_oneof![Just("1m".to_string()), Just("24h".to_string()), Just("30d".to_string()), "[0-9]{1,22}[smhdw]"],
                prop_oneof![
                    any::<f64>().prop_map(|v| format!("above {v}")),
                    any::<f64>().prop_map(|v| format!("below {v}")),
                    (any::<f64>(), any::<f64>()).prop_map(|(a, b)| format!("outside [{a}, {b}]")),
                    (any::<f64>(), any::<f64>()).prop_map(|(a, b)| format!("inside [{a}, {b}]")),
                ],
            ),
            1..5,
        ),
        joins in prop::collection::vec(prop_oneof![Just(" and "), Just(" or ")], 4),
        values in prop::collection::vec(prop_oneof![any::<f64>(), -1e300f64..1e300], 0..80),
        step in 1i64..2000,
        now in instants(),
    ) {
        let mut text = String::new();
        for (i, (sig, stat, win, test)) in clauses.iter().enumerate() {
            if i > 0 {
                text.push_str(joins[i - 1]);
            }
            text.push_str(&format!("{sig} {stat}_{win} {test}"));
        }
        if let Ok(c) = text.parse::<Condition>() {
            for clause in c.any.iter().flatten() {
                prop_assert!(clause.window <= kaizen_core::lesson::condition::MAX_WINDOW);
            }
            // What is printed (numbers rounded for people) reads back as a condition.
            let again = c.to_string().parse::<Condition>();
            prop_assert!(again.is_ok(), "{c} does not read back: {again:?}");
            let _ = c.evaluate(&samples(&values, step), now);
            let _ = c.evaluate(&samples(&values, step), t0());
        }
    }

    #[test]
    fn fuzz_config_mutations(muts in prop::collection::vec(mutation(), 1..6)) {
        let text = mutate(DEFAULT_CONFIG, &muts);
        if let Err(kaizen_core::config::ConfigError::Invalid(e)) =
            Config::parse(&text, Path::new("kaizen.yaml"))
        {
            prop_assert!(e.line.is_some(), "no line: {e}\n---\n{text}");
        }
    }

    #[test]
    fn fuzz_config_random_text(text in ".{0,200}") {
        if let Err(kaizen_core::config::ConfigError::Invalid(e)) =
            Config::parse(&text, Path::new("kaizen.yaml"))
        {
            prop_assert!(e.line.is_some(), "no line: {e}");
        }
    }

    #[test]
    fn fuzz_rules_mutations(muts in prop::collection::vec(mutation(), 1..6)) {
        let text = mutate(RULES, &muts);
        match parse_rules(&text, Path::new("rules.yaml"), &signals()) {
            Err(e) => prop_assert!(e.line.is_some(), "no line: {e}\n---\n{text}"),
            Ok(rules) => {
                for r in rules {
                    prop_assert!(r.candidate.prediction.within <= kaizen_core::rules::MAX_WITHIN);
                    for e in &r.candidate.change {
                        prop_assert!(e.check_payload().is_ok());
                    }
                    for now in [t0(), DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                        let _ = r.when.fires(&samples(&[250.0, 260.0, 270.0], 5), now, Span::minutes(10));
                    }
                }
            }
        }
    }

    #[test]
    fn fuzz_lesson_mutations(muts in prop::collection::vec(mutation(), 1..6), now in instants()) {
        let text = mutate(LESSON, &muts);
        match new_lesson_from_yaml(&text, Path::new("L-cache-grow.yaml")) {
            Err(e) => {
                for msg in e.errors() {
                    prop_assert!(msg.starts_with("L-cache-grow.yaml:"), "no line: {msg}");
                }
            }
            Ok(lesson) => {
                let recent = samples(&[250.0; 40], 60);
                let _ = retirement_check(&lesson, &recent, now);
                let _ = kaizen_core::lesson::falsification_check(&lesson, &recent, now);
            }
        }
    }
}

/// Documents that defeat naive parsers: deep nesting, alias bombs, a huge scalar.
#[test]
fn pathological_documents_are_refused_quickly() {
    let deep = format!("rules: {}{}", "[".repeat(50_000), "]".repeat(50_000));
    assert!(parse_rules(&deep, Path::new("rules.yaml"), &signals()).is_err());
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..20 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        bomb.push_str(&format!(
            "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    bomb.push_str("rules: *b19\n");
    assert!(parse_rules(&bomb, Path::new("rules.yaml"), &signals()).is_err());
    let e = Config::parse(&bomb, Path::new("kaizen.yaml")).unwrap_err();
    assert!(e.to_string().contains("kaizen.yaml:"), "{e}");
    let huge = format!("because: \"{}\"\n", "x".repeat(8 * 1024 * 1024));
    assert!(new_lesson_from_yaml(&huge, Path::new("L-x.yaml")).is_err());
}

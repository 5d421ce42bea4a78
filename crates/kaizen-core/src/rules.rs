//! Declarative rules: "when this signal is above/below X for D, make this change" — no LLM needed.

use crate::edit::Edit;
use crate::intervention::{Candidate, ExpectedChange, Origin, Prediction, Risk};
use crate::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use crate::signal::Sample;
use crate::span::Span;
use crate::yaml::{self, YamlError};
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The condition that makes a rule fire.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The watched signal.
    pub signal: String,
    /// Fires while the value is above this...
    #[serde(default)]
    pub above: Option<f64>,
    /// ...or below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// ...continuously for at least this long (0: the latest sample alone decides).
    #[serde(default, rename = "for")]
    pub for_: Span,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictSerde {
    signal: String,
    change: ExpectedChange,
    within: Span,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSerde {
    id: String,
    area: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
    when: When,
    change: Vec<Edit>,
    predict: PredictSerde,
    risk: Risk,
    confidence: f64,
    #[serde(default)]
    rollback: Option<String>,
    because: String,
    #[serde(default)]
    cites: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFileSerde {
    // `rules:` with nothing under it is an empty list, not an error.
    #[serde(default)]
    rules: Option<Vec<RuleSerde>>,
}

/// One checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// What it fires on.
    pub when: When,
    /// The candidate it yields (origin says which rule).
    pub candidate: Candidate,
}

/// Loads and checks a rules file; `known_signals` are the configured signal names.
pub fn load_rules(path: &Path, known_signals: &BTreeSet<String>) -> Result<Vec<Rule>, YamlError> {
    let text = std::fs::read_to_string(path).map_err(|e| YamlError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse_rules(&text, path, known_signals)
}

/// Parses and checks rules text as if read from `path`.
pub fn parse_rules(
    text: &str,
    path: &Path,
    known_signals: &BTreeSet<String>,
) -> Result<Vec<Rule>, YamlError> {
    let raw: RulesFileSerde = yaml::from_str(text, path)?;
    let mut seen = BTreeSet::new();
    let mut rules = Vec::new();
    for (i, r) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let bad = |field: &str, msg: String| {
            yaml::semantic_error(text, path, &format!("rules[{i}].{field}"), msg)
        };
        if r.id.trim().is_empty() {
            return Err(bad("id", "must not be empty".into()));
        }
        if !seen.insert(r.id.clone()) {
            return Err(bad("id", format!("duplicate rule id {:?}", r.id)));
        }
        if r.area.trim().is_empty() {
            return Err(bad("area", "must not be empty".into()));
        }
        if !known_signals.contains(&r.when.signal) {
            return Err(bad(
                "when.signal",
                format!(
                    "unknown signal {:?} (configured: {})",
                    r.when.signal,
                    list(known_signals)
                ),
            ));
        }
        match (r.when.above, r.when.below) {
            (None, None) => return Err(bad("when", "needs `above` or `below`".into())),
            (Some(a), _) if !a.is_finite() => {
                return Err(bad("when.above", "must be a finite number".into()));
            }
            (_, Some(b)) if !b.is_finite() => {
                return Err(bad("when.below", "must be a finite number".into()));
            }
            _ => {}
        }
        if !known_signals.contains(&r.predict.signal) {
            return Err(bad(
                "predict.signal",
                format!(
                    "unknown signal {:?} (configured: {})",
                    r.predict.signal,
                    list(known_signals)
                ),
            ));
        }
        if r.predict.within.seconds() == 0 {
            return Err(bad("predict.within", "must be positive".into()));
        }
        if r.change.is_empty() {
            return Err(bad("change", "needs at least one edit".into()));
        }
        for (j, e) in r.change.iter().enumerate() {
            if e.file().trim().is_empty() {
                return Err(bad(
                    &format!("change[{j}]"),
                    "file must not be empty".into(),
                ));
            }
            // An edit that cannot even be computed on an empty file is a typo, not a runtime issue.
            // A relative value (`*1.5`) needs the file's value: check format and key with a
            // placeholder here; the engine resolves it against the repository.
            let probe = match e {
                Edit::ConfigSet { file, key, .. } if e.relative().is_some() => Edit::ConfigSet {
                    file: file.clone(),
                    key: key.clone(),
                    value: serde_json::Value::from(0),
                },
                _ => e.clone(),
            };
            if let Edit::ConfigSet { .. } = probe
                && let Err(err) = probe.apply_to(None)
            {
                return Err(bad(&format!("change[{j}]"), err.to_string()));
            }
        }
        if !(0.0..=1.0).contains(&r.confidence) || !r.confidence.is_finite() {
            return Err(bad(
                "confidence",
                format!("{} is not within 0..1", r.confidence),
            ));
        }
        if r.because.trim().is_empty() {
            return Err(bad("because", "must say why the change should help".into()));
        }
        let kind = r.kind.clone().unwrap_or_else(|| kind_of(&r.change));
        let title = r.title.clone().unwrap_or_else(|| {
            let edits: Vec<String> = r.change.iter().map(ToString::to_string).collect();
            format!("{}: {}", r.id, edits.join("; "))
        });
        rules.push(Rule {
            id: r.id.clone(),
            when: r.when,
            candidate: Candidate {
                area: r.area,
                kind,
                title,
                hypothesis: r.because,
                change: r.change,
                prediction: Prediction {
                    signal: r.predict.signal,
                    change: r.predict.change,
                    within: r.predict.within,
                },
                risk: r.risk,
                confidence: r.confidence,
                rollback: r.rollback.filter(|s| !s.trim().is_empty()),
                origin: Origin {
                    proposer: "rules".into(),
                    rule: Some(r.id),
                    cites: r.cites,
                    ..Default::default()
                },
            },
        });
    }
    Ok(rules)
}

fn list(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The kind of a list of edits: their common kind, or `mixed`.
pub fn kind_of(change: &[Edit]) -> String {
    let kinds: BTreeSet<&str> = change.iter().map(Edit::kind).collect();
    match kinds.len() {
        1 => kinds.into_iter().next().unwrap_or("mixed").to_string(),
        _ => "mixed".to_string(),
    }
}

impl When {
    fn holds(&self, v: f64) -> bool {
        self.above.is_some_and(|a| v > a) || self.below.is_some_and(|b| v < b)
    }

    /// Whether the condition has held continuously for `for` up to the latest sample, which must
    /// be fresh (no older than `stale_after` at `now`). Returns a description of the trigger.
    pub fn fires(
        &self,
        samples: &[Sample],
        now: chrono::DateTime<chrono::Utc>,
        stale_after: Span,
    ) -> Option<String> {
        let latest = samples.last()?;
        if now - latest.at > stale_after.to_chrono() || !self.holds(latest.value) {
            return None;
        }
        let streak_start = samples
            .iter()
            .rev()
            .take_while(|s| self.holds(s.value))
            .last()
            .map(|s| s.at)?;
        if latest.at - streak_start < self.for_.to_chrono() {
            return None;
        }
        let cond = match (self.above, self.below) {
            (Some(a), _) => format!("above {a}"),
            (None, Some(b)) => format!("below {b}"),
            (None, None) => String::new(),
        };
        Some(format!(
            "{} {} for {} (since {}, last {})",
            self.signal,
            cond,
            Span::from_chrono(latest.at - streak_start),
            streak_start.format("%Y-%m-%dT%H:%M:%SZ"),
            latest.value
        ))
    }
}

/// The rules proposer: each rule whose `when` holds yields one candidate citing the rule.
#[derive(Debug, Clone)]
pub struct RulesProposer {
    rules: Vec<Rule>,
    stale_after: Span,
}

impl RulesProposer {
    /// A proposer over `rules`; a latest sample older than `stale_after` never fires a rule.
    pub fn new(rules: Vec<Rule>, stale_after: Span) -> Self {
        Self { rules, stale_after }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

#[async_trait]
impl Proposer for RulesProposer {
    fn name(&self) -> &str {
        "rules"
    }

    async fn propose(&self, ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        let mut out = Proposals::default();
        for rule in &self.rules {
            let samples = ctx
                .recent
                .get(&rule.when.signal)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if let Some(trigger) = rule.when.fires(samples, ctx.now, self.stale_after) {
                let mut c = rule.candidate.clone();
                c.origin.trigger = trigger;
                out.candidates.push(c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    const ISSUE_RULES: &str = r#"# rules.yaml
rules:
  - id: grow-cache
    area: cache
    when: { signal: latency_ms, above: 200, for: 10m }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }
    predict: { signal: latency_ms, change: "-20%", within: 30m }
    risk: low
    confidence: 0.8
    rollback: revert
    because: "the working set no longer fits the cache; misses dominate latency"
"#;

    fn signals() -> BTreeSet<String> {
        ["latency_ms".to_string()].into()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn issue_example_parses() {
        let rules = parse_rules(ISSUE_RULES, Path::new("rules.yaml"), &signals()).unwrap();
        assert_eq!(rules.len(), 1);
        let c = &rules[0].candidate;
        assert_eq!(c.kind, "config_set");
        assert_eq!(c.prediction.change, ExpectedChange::Relative(-0.2));
        assert_eq!(c.rollback.as_deref(), Some("revert"));
        assert_eq!(c.origin.rule.as_deref(), Some("grow-cache"));
        assert_eq!(rules[0].when.for_, Span::minutes(10));
    }

    #[test]
    fn errors_name_file_line_field() {
        let e = parse_rules(
            &ISSUE_RULES.replace("signal: latency_ms, above", "signal: latency, above"),
            Path::new("rules.yaml"),
            &signals(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("rules.yaml:5"), "{e}");
        assert!(
            e.contains("rules[0].when.signal") && e.contains("latency"),
            "{e}"
        );
        let e = parse_rules(
            &ISSUE_RULES.replace("confidence: 0.8", "confidence: 1.8"),
            Path::new("rules.yaml"),
            &signals(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("rules.yaml:10") && e.contains("rules[0].confidence"),
            "{e}"
        );
        let e = parse_rules(
            &ISSUE_RULES.replace("risk: low", "risk: lowish"),
            Path::new("rules.yaml"),
            &signals(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rules.yaml:9") && e.contains("risk"), "{e}");
        let e = parse_rules(
            &ISSUE_RULES.replace("\"-20%\"", "\"faster\""),
            Path::new("rules.yaml"),
            &signals(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rules[0].predict.change"), "{e}");
    }

    #[test]
    fn missing_rollback_is_kept_as_none() {
        let rules = parse_rules(
            &ISSUE_RULES.replace("    rollback: revert\n", ""),
            Path::new("r.yaml"),
            &signals(),
        )
        .unwrap();
        assert_eq!(rules[0].candidate.rollback, None);
    }

    #[test]
    fn fires_only_after_duration() {
        let rules = parse_rules(ISSUE_RULES, Path::new("rules.yaml"), &signals()).unwrap();
        let w = &rules[0].when;
        let t0 = t("2026-01-01T00:00:00Z");
        let m = |i: i64| t0 + chrono::Duration::minutes(i);
        let s = |i: i64, v: f64| Sample::new("latency_ms", m(i), v);
        let stale = Span::minutes(5);
        assert!(
            w.fires(&[s(0, 250.0), s(5, 250.0)], m(5), stale).is_none(),
            "5m < 10m"
        );
        assert!(
            w.fires(&[s(0, 250.0), s(10, 250.0)], m(10), stale)
                .is_some()
        );
        assert!(
            w.fires(&[s(0, 250.0), s(5, 150.0), s(10, 250.0)], m(10), stale)
                .is_none(),
            "streak broken"
        );
        assert!(
            w.fires(&[s(0, 250.0), s(10, 250.0)], m(30), stale)
                .is_none(),
            "stale data never fires"
        );
        assert!(w.fires(&[], m(0), stale).is_none());
    }
}

//! Declarative rules: "when this holds, (confirm it with a diagnose command,) make this change" —
//! no LLM needed. Triggers are in [`trigger`]; every firing is logged as
//! `kaizen rule=<id> stage=trigger|diagnose|propose …`, so it can be grepped.

pub mod trigger;

use crate::edit::Edit;
use crate::intervention::{Candidate, ExpectedChange, Origin, Prediction, Risk};
use crate::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use crate::span::Span;
use crate::yaml::{self, YamlError};
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
pub use trigger::Trigger;

/// A command that must confirm the problem before the rule makes a candidate: exit 0 confirms;
/// a JSON object on stdout is recorded as facts; anything else (non-zero exit, timeout, no way
/// to run it) refuses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnose {
    /// Shell command, run in the repository with `KAIZEN_RULE` and `KAIZEN_TRIGGER` set.
    pub command: String,
    /// How long it may take (default 30s); a timeout refuses.
    #[serde(default = "default_diagnose_timeout")]
    pub timeout: Span,
}

fn default_diagnose_timeout() -> Span {
    Span::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DiagnoseSerde {
    Command(String),
    Full(Diagnose),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum EscalateSerde {
    One(String),
    Many(Vec<String>),
}

/// What a diagnose command concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum DiagnoseOutcome {
    /// Exit 0: the problem is real.
    Confirmed {
        /// A JSON object the command printed, if it printed one.
        facts: Option<serde_json::Value>,
        /// For humans (`exit 0 in 0.2s`).
        note: String,
    },
    /// Anything else: no candidate is made.
    Refused {
        /// Why (`exit 1: no leak found`, `timed out after 30s`).
        reason: String,
    },
}

/// Runs rules' diagnose commands (the CLI's runs them as shell commands in the repository like
/// sources and canaries; the simulator lets them inspect the simulated host).
#[async_trait]
pub trait DiagnoseRunner: Send + Sync {
    /// Runs `diagnose` for rule `rule`, which fired because of `trigger`.
    async fn run(&self, rule: &str, diagnose: &Diagnose, trigger: &str) -> DiagnoseOutcome;
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
    when: trigger::WhenSerde,
    #[serde(default)]
    diagnose: Option<DiagnoseSerde>,
    #[serde(default)]
    escalate: Option<EscalateSerde>,
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
    pub when: Trigger,
    /// What must confirm the problem before a candidate is made.
    pub diagnose: Option<Diagnose>,
    /// Whom to notify when its fix fails (reverted): named in the escalation.
    pub escalate: Vec<String>,
    /// The candidate it yields (origin says which rule).
    pub candidate: Candidate,
}

/// Longest `predict.within` a rule may give (a longer window is a typo, not a prediction).
pub const MAX_WITHIN: Span = Span::days(30);
/// Longest `when.for` a rule may give.
pub const MAX_FOR: Span = Span::days(7);

/// Loads and checks a rules file; `known_signals` are the configured signal names.
pub fn load_rules(path: &Path, known_signals: &BTreeSet<String>) -> Result<Vec<Rule>, YamlError> {
    let bytes = std::fs::read(path).map_err(|e| YamlError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let text = yaml::decode_utf8(bytes, path)?;
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
        let when = Trigger::from_serde(r.when.clone(), known_signals).map_err(|(f, m)| {
            bad(
                &if f.is_empty() {
                    "when".to_string()
                } else {
                    format!("when.{f}")
                },
                m,
            )
        })?;
        let diagnose = match r.diagnose.clone() {
            None => None,
            Some(DiagnoseSerde::Command(command)) => Some(Diagnose {
                command,
                timeout: default_diagnose_timeout(),
            }),
            Some(DiagnoseSerde::Full(d)) => Some(d),
        };
        if let Some(d) = &diagnose {
            if d.command.trim().is_empty() {
                return Err(bad("diagnose", "the command is empty".into()));
            }
            if d.timeout.seconds() == 0 {
                return Err(bad("diagnose.timeout", "must be positive".into()));
            }
        }
        let escalate = match r.escalate.clone() {
            None => Vec::new(),
            Some(EscalateSerde::One(s)) => vec![s],
            Some(EscalateSerde::Many(v)) => v,
        };
        if escalate.iter().any(|s| s.trim().is_empty()) || escalate.len() > 16 {
            return Err(bad(
                "escalate",
                "give 1 to 16 non-empty names (whom to notify when the fix fails)".into(),
            ));
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
        r.predict
            .within
            .at_most(MAX_WITHIN)
            .map_err(|m| bad("predict.within", m))?;
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
            if let Err(err) = e.check_payload() {
                return Err(bad(&format!("change[{j}]"), err.to_string()));
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
            when,
            diagnose,
            escalate: escalate.clone(),
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
                    escalate,
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

/// The rules proposer: each rule whose `when` holds yields one candidate citing the rule.
#[derive(Clone)]
pub struct RulesProposer {
    rules: Vec<Rule>,
    stale_after: Span,
    diagnoser: Option<Arc<dyn DiagnoseRunner>>,
}

impl std::fmt::Debug for RulesProposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesProposer")
            .field("rules", &self.rules)
            .field("stale_after", &self.stale_after)
            .field("diagnoser", &self.diagnoser.is_some())
            .finish()
    }
}

impl RulesProposer {
    /// A proposer over `rules`; a latest sample older than `stale_after` never fires a rule.
    pub fn new(rules: Vec<Rule>, stale_after: Span) -> Self {
        Self {
            rules,
            stale_after,
            diagnoser: None,
        }
    }

    /// Runs rules' `diagnose` commands with `runner`. Without one, a rule that has a diagnose
    /// never makes a candidate (fail closed: nothing confirmed the problem).
    pub fn with_diagnoser(mut self, runner: Arc<dyn DiagnoseRunner>) -> Self {
        self.diagnoser = Some(runner);
        self
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

    /// The signals its rules' `when` watch: the only samples a rule looks at.
    fn signals_read(&self) -> crate::propose::SignalsRead {
        crate::propose::SignalsRead::Only(
            self.rules
                .iter()
                .flat_map(|r| r.when.signals())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Rules fire on their signals' recent samples only.
    fn reads_history(&self) -> bool {
        false
    }

    async fn propose(&self, ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        let mut out = Proposals::default();
        for rule in &self.rules {
            let Some(mut trigger) = rule.when.fires(&ctx.recent, ctx.now, self.stale_after) else {
                continue;
            };
            let id = &rule.id;
            tracing::info!("kaizen rule={id} stage=trigger {trigger}");
            let mut c = rule.candidate.clone();
            if let Some(d) = &rule.diagnose {
                let outcome = match &self.diagnoser {
                    Some(runner) => runner.run(id, d, &trigger).await,
                    None => DiagnoseOutcome::Refused {
                        reason: "no diagnose runner is configured (fail closed)".into(),
                    },
                };
                match outcome {
                    DiagnoseOutcome::Confirmed { facts, note } => {
                        tracing::info!("kaizen rule={id} stage=diagnose confirmed: {note}");
                        trigger = format!("{trigger}; diagnose confirmed ({note})");
                        c.origin.diagnosis = Some(facts.unwrap_or(serde_json::Value::Null));
                    }
                    DiagnoseOutcome::Refused { reason } => {
                        tracing::info!("kaizen rule={id} stage=diagnose refused: {reason}");
                        out.rejected.push(crate::propose::Rejected {
                            reason: format!(
                                "rule {id}: diagnose `{}` did not confirm the problem: {reason} (trigger: {trigger})",
                                d.command
                            ),
                            excerpt: String::new(),
                        });
                        continue;
                    }
                }
            }
            tracing::info!("kaizen rule={id} stage=propose candidate: {}", c.title);
            c.origin.trigger = trigger;
            out.candidates.push(c);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Sample;
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

    /// A cycle reads the recent samples of the signals its rules watch, and only those.
    #[test]
    fn the_rules_proposer_reads_the_signals_its_rules_watch() {
        use crate::propose::SignalsRead;
        let rules = parse_rules(ISSUE_RULES, Path::new("rules.yaml"), &signals()).unwrap();
        let read = RulesProposer::new(rules, Span::minutes(5)).signals_read();
        assert_eq!(read, SignalsRead::Only(signals()));
        assert!(read.reads("latency_ms") && !read.reads("errors"));
        assert_eq!(
            read.clone()
                .union(SignalsRead::Only(["errors".to_string()].into())),
            SignalsRead::Only(["errors".to_string(), "latency_ms".to_string()].into())
        );
        assert_eq!(read.union(SignalsRead::All), SignalsRead::All);
        assert!(SignalsRead::All.reads("anything"));
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
        let Trigger::Cond(cond) = &rules[0].when else {
            panic!("a single condition")
        };
        assert_eq!(cond.for_, Span::minutes(10));
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
        let r = |v: Vec<Sample>| std::collections::BTreeMap::from([("latency_ms".to_string(), v)]);
        let stale = Span::minutes(5);
        assert!(
            w.fires(&r(vec![s(0, 250.0), s(5, 250.0)]), m(5), stale)
                .is_none(),
            "5m < 10m"
        );
        assert!(
            w.fires(&r(vec![s(0, 250.0), s(10, 250.0)]), m(10), stale)
                .is_some()
        );
        assert!(
            w.fires(
                &r(vec![s(0, 250.0), s(5, 150.0), s(10, 250.0)]),
                m(10),
                stale
            )
            .is_none(),
            "streak broken"
        );
        assert!(
            w.fires(&r(vec![s(0, 250.0), s(10, 250.0)]), m(30), stale)
                .is_none(),
            "stale data never fires"
        );
        assert!(w.fires(&r(vec![]), m(0), stale).is_none());
    }

    struct Script(DiagnoseOutcome);

    #[async_trait]
    impl DiagnoseRunner for Script {
        async fn run(&self, _: &str, _: &Diagnose, _: &str) -> DiagnoseOutcome {
            self.0.clone()
        }
    }

    fn ctx_hot() -> ProposeContext {
        let t0 = t("2026-01-01T00:00:00Z");
        let samples: Vec<Sample> = (0..=10)
            .map(|i| Sample::new("latency_ms", t0 + chrono::Duration::minutes(i), 250.0))
            .collect();
        ProposeContext {
            now: t0 + chrono::Duration::minutes(10),
            signals: vec![],
            recent: [("latency_ms".to_string(), samples)].into(),
            lessons: vec![],
            interventions: vec![],
            freezes: vec![],
            budget_left: 5,
        }
    }

    /// The rules say they read no history, so a cycle gives them none: what they propose must
    /// then not depend on it (nor on lessons, freezes or the budget).
    #[tokio::test]
    async fn the_rules_propose_the_same_whatever_the_history() {
        use crate::guard::testutil::{applied, finalized, iv};
        use crate::intervention::Status;
        let rules = parse_rules(ISSUE_RULES, Path::new("rules.yaml"), &signals()).unwrap();
        let p = RulesProposer::new(rules, Span::minutes(5));
        assert!(!p.reads_history());
        let bare = ctx_hot();
        let now = bare.now;
        let mut full = ctx_hot();
        full.interventions = vec![
            iv(1, "cache", Status::Proposed),
            applied(2, "cache", now - chrono::Duration::minutes(30)),
            finalized(
                3,
                "cache",
                Status::Reverted,
                now - chrono::Duration::hours(2),
            ),
            finalized(
                4,
                "memory",
                Status::Validated,
                now - chrono::Duration::hours(5),
            ),
        ];
        full.freezes = vec![crate::propose::Freeze {
            area: "cache".into(),
            until: now + chrono::Duration::hours(1),
            reason: "3 consecutive rollbacks".into(),
        }];
        full.budget_left = 0;
        let (a, b) = (
            p.propose(&bare).await.unwrap(),
            p.propose(&full).await.unwrap(),
        );
        assert!(!a.candidates.is_empty(), "the hot context fires a rule");
        assert_eq!(a.candidates, b.candidates);
        assert_eq!(a.rejected.len(), b.rejected.len());
    }

    #[tokio::test]
    async fn a_refusing_diagnose_makes_no_candidate_and_a_confirming_one_records_facts() {
        let text = ISSUE_RULES.replace(
            "    risk: low\n",
            "    diagnose: { command: \"./check-cache.sh\", timeout: 5s }\n    escalate: [cache-oncall]\n    risk: low\n",
        );
        let rules = parse_rules(&text, Path::new("rules.yaml"), &signals()).unwrap();
        assert_eq!(
            rules[0].diagnose.as_ref().unwrap().timeout,
            Span::from_secs(5)
        );
        assert_eq!(rules[0].escalate, ["cache-oncall"]);
        let refuse = RulesProposer::new(rules.clone(), Span::minutes(5)).with_diagnoser(Arc::new(
            Script(DiagnoseOutcome::Refused {
                reason: "exit 1: hit ratio is fine".into(),
            }),
        ));
        let out = refuse.propose(&ctx_hot()).await.unwrap();
        assert!(out.candidates.is_empty());
        assert!(
            out.rejected[0].reason.starts_with(
                "rule grow-cache: diagnose `./check-cache.sh` did not confirm the problem: exit 1: hit ratio is fine"
            ),
            "{:?}",
            out.rejected
        );
        let confirm = RulesProposer::new(rules.clone(), Span::minutes(5)).with_diagnoser(Arc::new(
            Script(DiagnoseOutcome::Confirmed {
                facts: Some(serde_json::json!({"hit_ratio": 0.2})),
                note: "exit 0".into(),
            }),
        ));
        let out = confirm.propose(&ctx_hot()).await.unwrap();
        let c = &out.candidates[0];
        assert_eq!(
            c.origin.diagnosis,
            Some(serde_json::json!({"hit_ratio": 0.2}))
        );
        assert!(
            c.origin.trigger.contains("diagnose confirmed (exit 0)"),
            "{}",
            c.origin.trigger
        );
        assert_eq!(c.origin.escalate, ["cache-oncall"]);
        // No runner: fail closed.
        let none = RulesProposer::new(rules, Span::minutes(5));
        let out = none.propose(&ctx_hot()).await.unwrap();
        assert!(out.candidates.is_empty() && out.rejected[0].reason.contains("fail closed"));
    }

    #[test]
    fn combined_triggers_parse_with_located_errors() {
        let text = ISSUE_RULES.replace(
            "when: { signal: latency_ms, above: 200, for: 10m }",
            "when: { any: [ {signal: latency_ms, above: 2x baseline_24h, for: 10m}, {signal: latency_ms, rising: 20%/h} ] }",
        );
        let rules = parse_rules(&text, Path::new("rules.yaml"), &signals()).unwrap();
        assert!(matches!(&rules[0].when, Trigger::Any(v) if v.len() == 2));
        let e = parse_rules(
            &text.replace("rising: 20%/h", "rising: quickly"),
            Path::new("rules.yaml"),
            &signals(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rules[0].when.any[1].rising"), "{e}");
    }
}

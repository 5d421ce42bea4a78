//! Interventions: what kaizen proposes, guards, applies, validates and learns from.

use crate::edit::Edit;
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A short, stable intervention id, printed as `K-000042`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterventionId(pub i64);

impl fmt::Display for InterventionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "K-{:06}", self.0)
    }
}

/// An id string that is not `K-<digits>` (or plain digits).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid intervention id {0:?} (expected e.g. K-000042)")]
pub struct IdError(pub String);

impl FromStr for InterventionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let digits = t
            .strip_prefix("K-")
            .or_else(|| t.strip_prefix("k-"))
            .unwrap_or(t);
        digits
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(InterventionId)
            .ok_or_else(|| IdError(s.to_string()))
    }
}

impl Serialize for InterventionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for InterventionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How much could go wrong. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Cheap to undo, narrow blast radius.
    Low,
    /// Needs a canary before it may be applied.
    Medium,
    /// Needs a canary; broad blast radius.
    High,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        })
    }
}

impl FromStr for Risk {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Risk::Low),
            "medium" => Ok(Risk::Medium),
            "high" => Ok(Risk::High),
            other => Err(format!("unknown risk {other:?} (low, medium or high)")),
        }
    }
}

/// The predicted movement of a signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExpectedChange {
    /// Relative change, e.g. `-0.20` for "falls 20%".
    Relative(f64),
    /// Absolute change in the signal's unit, e.g. `-30.0`.
    Absolute(f64),
    /// The value ends below this threshold.
    Below(f64),
    /// The value ends above this threshold.
    Above(f64),
}

impl ExpectedChange {
    /// The signed direction of the predicted move: −1 falls, +1 rises.
    pub fn direction(self) -> f64 {
        match self {
            ExpectedChange::Relative(r) | ExpectedChange::Absolute(r) => r.signum(),
            ExpectedChange::Below(_) => -1.0,
            ExpectedChange::Above(_) => 1.0,
        }
    }
}

impl fmt::Display for ExpectedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExpectedChange::Relative(r) => write!(f, "{:+}%", round4(r * 100.0)),
            ExpectedChange::Absolute(a) => write!(f, "{:+}", round4(a)),
            ExpectedChange::Below(t) => write!(f, "below {}", round4(t)),
            ExpectedChange::Above(t) => write!(f, "above {}", round4(t)),
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

impl FromStr for ExpectedChange {
    type Err = String;
    /// Reads `-20%`, `+15%`, `-30`, `below 1500`, `< 1500`, `above 0.9`, `> 0.9`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid change {s:?} (write e.g. \"-20%\", \"+5\", \"below 1500\" or \"above 0.9\")"
            )
        };
        let num = |x: &str| -> Result<f64, String> {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(bad)
        };
        let lower = t.to_ascii_lowercase();
        if let Some(rest) = lower
            .strip_prefix("below")
            .or_else(|| lower.strip_prefix('<'))
        {
            return Ok(ExpectedChange::Below(num(rest)?));
        }
        if let Some(rest) = lower
            .strip_prefix("above")
            .or_else(|| lower.strip_prefix('>'))
        {
            return Ok(ExpectedChange::Above(num(rest)?));
        }
        if let Some(p) = t.strip_suffix('%') {
            let v = num(p)? / 100.0;
            if v == 0.0 || v <= -1.0 {
                return Err(format!(
                    "{}: a relative change must be non-zero and above -100%",
                    bad()
                ));
            }
            return Ok(ExpectedChange::Relative(v));
        }
        let v = num(t)?;
        if v == 0.0 {
            return Err(format!("{}: a change of zero predicts nothing", bad()));
        }
        Ok(ExpectedChange::Absolute(v))
    }
}

impl Serialize for ExpectedChange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ExpectedChange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A falsifiable, numeric prediction: "`signal` moves by `change` within `within`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    /// The signal expected to move.
    pub signal: String,
    /// By how much.
    pub change: ExpectedChange,
    /// How long after apply (plus settle) the effect should show.
    pub within: Span,
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} within {}", self.signal, self.change, self.within)
    }
}

/// A lesson the candidate argues against, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Argument {
    /// The lesson id.
    pub lesson: String,
    /// Why it does not apply here.
    pub why: String,
}

/// Where a candidate came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Origin {
    /// The proposer's name (`rules`, `llm`, ...).
    pub proposer: String,
    /// The rule id, for rule-made candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Lessons the candidate follows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cites: Vec<String>,
    /// Lessons the candidate contradicts, each with the argument.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argues_against: Vec<Argument>,
    /// What triggered it (e.g. "latency_ms above 200 for 10m (last 251.0)").
    #[serde(default)]
    pub trigger: String,
    /// What each `config_set` replaced and wrote, found when its change was resolved against
    /// the repository (relative values such as `*1.5` made concrete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<crate::edit::Resolved>,
    /// Whom to notify when the fix fails (a rule's `escalate:`), named in the escalation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<String>,
    /// Facts a rule's `diagnose` command reported when it confirmed the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<serde_json::Value>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "{}:{}", self.proposer, rule),
            None => f.write_str(&self.proposer),
        }
    }
}

/// A proposed intervention before the ledger gives it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The area it changes (freezes and dedup are per area).
    pub area: String,
    /// The kind of action (`config_set`, `file_write`, or a name the rule gives).
    pub kind: String,
    /// One line.
    pub title: String,
    /// Why it should help.
    pub hypothesis: String,
    /// The edits, applied together as one commit.
    pub change: Vec<Edit>,
    /// What it predicts.
    pub prediction: Prediction,
    /// How much could go wrong.
    pub risk: Risk,
    /// Stated probability (0..1) that the prediction holds.
    pub confidence: f64,
    /// How to undo it (`revert` = revert the commit). `None` is blocked by the rollback guard.
    pub rollback: Option<String>,
    /// Where it came from.
    pub origin: Origin,
}

impl Candidate {
    /// What the change touches, as stable strings (`file#key` or `file`), sorted: the dedup key.
    pub fn targets(&self) -> Vec<String> {
        let mut t: Vec<String> = self.change.iter().map(Edit::target).collect();
        t.sort();
        t.dedup();
        t
    }

    /// The change for humans, one line per edit: `set cache_mb 128 → 192 (*1.5) in config/app.yaml`
    /// once resolved, else the edit as written.
    pub fn change_lines(&self) -> Vec<String> {
        self.change
            .iter()
            .map(|e| match e {
                Edit::ConfigSet { file, key, .. } => {
                    match self.origin.resolved.iter().find(|r| r.target == e.target()) {
                        Some(r) => format!("set {key} {} in {file}", r.old_to_new()),
                        None => e.to_string(),
                    }
                }
                Edit::FileWrite { .. } => e.to_string(),
            })
            .collect()
    }

    /// The same change from the same source: proposer, rule, area and targets. A candidate with
    /// the key of a parked or waiting one is a repeat of it, not a new intervention.
    pub fn repeat_key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.origin.proposer,
            self.origin.rule.as_deref().unwrap_or(""),
            self.area,
            self.targets().join(",")
        )
    }

    /// Every file path the change touches, as written.
    pub fn paths(&self) -> Vec<&str> {
        self.change.iter().map(Edit::file).collect()
    }
}

/// Where an intervention is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Recorded, guards not yet passed.
    Proposed,
    /// A guard said no; never applied.
    Blocked,
    /// Worth doing but needs a canary that the area lacks; never applied.
    Backlog,
    /// Committed; waiting for its validation window.
    Applied,
    /// The prediction held; the change stays.
    Validated,
    /// Undone by a revert commit.
    Reverted,
    /// A human closed it and kept the change (`kaizen resolve --kept`): validation ended by
    /// hand; counted neither as validated nor as a rollback.
    Kept,
    /// A human changed it in git after kaizen (reverted its commit, changed the same key, deleted
    /// the file) or a later intervention replaced it: validation ended; counted neither as
    /// validated nor as a rollback (no freeze count, no lesson).
    Superseded,
    /// On a review branch, waiting for a human to merge it (review mode).
    AwaitingReview,
    /// Its review branch was deleted without a merge; never applied.
    Rejected,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 10] = [
        Status::Proposed,
        Status::Blocked,
        Status::Backlog,
        Status::Applied,
        Status::Validated,
        Status::Reverted,
        Status::Kept,
        Status::Superseded,
        Status::AwaitingReview,
        Status::Rejected,
    ];

    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::Blocked => "blocked",
            Status::Backlog => "backlog",
            Status::Applied => "applied",
            Status::Validated => "validated",
            Status::Reverted => "reverted",
            Status::Kept => "kept",
            Status::Superseded => "superseded",
            Status::AwaitingReview => "awaiting_review",
            Status::Rejected => "rejected",
        }
    }

    /// Whether moving from `self` to `to` is a legal transition.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Proposed, Blocked)
                | (Proposed, Backlog)
                | (Proposed, Applied)
                | (Backlog, Proposed)
                | (Backlog, Blocked)
                | (Applied, Validated)
                | (Applied, Reverted)
                | (Validated, Reverted)
                | (Applied, Kept)
                | (Applied, Superseded)
                | (Validated, Superseded)
                | (Proposed, AwaitingReview)
                | (AwaitingReview, Applied)
                | (AwaitingReview, Rejected)
                | (AwaitingReview, Blocked)
        )
    }

    /// Checks a transition, naming both ends when it is illegal.
    pub fn transition(self, to: Status) -> Result<Status, IllegalTransition> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// A status change the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal status transition {from} → {to}")]
pub struct IllegalTransition {
    /// Current status.
    pub from: Status,
    /// Requested status.
    pub to: Status,
}

/// What validation concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The predicted improvement showed.
    Validated,
    /// The predicted effect is ruled out (or never showed).
    NoEffect,
    /// Things got worse (target or a guardrail).
    Regressed,
    /// The data could not decide (too few samples, too many gaps, a spike that recovers by itself).
    Inconclusive,
}

impl Outcome {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Validated => "validated",
            Outcome::NoEffect => "no_effect",
            Outcome::Regressed => "regressed",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "validated" => Ok(Outcome::Validated),
            "no_effect" => Ok(Outcome::NoEffect),
            "regressed" => Ok(Outcome::Regressed),
            "inconclusive" => Ok(Outcome::Inconclusive),
            _ => Err(format!("unknown outcome {s:?}")),
        }
    }
}

/// An intervention as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    /// Its id.
    pub id: InterventionId,
    /// What was proposed.
    #[serde(flatten)]
    pub candidate: Candidate,
    /// Where it is in its life.
    pub status: Status,
    /// What validation concluded, once it has.
    pub outcome: Option<Outcome>,
    /// The latest human-readable reason for its status.
    pub reason: String,
    /// The commit that applied it.
    pub commit: Option<String>,
    /// The commit that reverted it.
    pub revert_commit: Option<String>,
    /// When it was proposed.
    pub created_at: DateTime<Utc>,
    /// When it was applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// When validation is due (moves when the window is extended).
    pub due_at: Option<DateTime<Utc>>,
    /// When it reached validated/reverted.
    pub finalized_at: Option<DateTime<Utc>>,
}

impl Intervention {
    /// Whether it is done (blocked, validated, reverted, kept, superseded).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status,
            Status::Blocked
                | Status::Validated
                | Status::Reverted
                | Status::Kept
                | Status::Superseded
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trip() {
        let id: InterventionId = "K-000042".parse().unwrap();
        assert_eq!(id, InterventionId(42));
        assert_eq!(id.to_string(), "K-000042");
        assert!("K-abc".parse::<InterventionId>().is_err());
        assert!("K-0".parse::<InterventionId>().is_err());
    }

    #[test]
    fn expected_change_parses() {
        assert_eq!(
            "-20%".parse::<ExpectedChange>().unwrap(),
            ExpectedChange::Relative(-0.2)
        );
        assert_eq!(
            "+5".parse::<ExpectedChange>().unwrap(),
            ExpectedChange::Absolute(5.0)
        );
        assert_eq!(
            "below 1500".parse::<ExpectedChange>().unwrap(),
            ExpectedChange::Below(1500.0)
        );
        assert_eq!(
            "> 0.9".parse::<ExpectedChange>().unwrap(),
            ExpectedChange::Above(0.9)
        );
        for bad in ["", "0%", "-100%", "fast", "nan", "below x"] {
            assert!(bad.parse::<ExpectedChange>().is_err(), "{bad}");
        }
        assert_eq!(ExpectedChange::Relative(-0.2).to_string(), "-20%");
    }

    #[test]
    fn transitions() {
        assert!(Status::Proposed.transition(Status::Applied).is_ok());
        assert!(Status::Applied.transition(Status::Reverted).is_ok());
        let err = Status::Blocked.transition(Status::Applied).unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal status transition blocked → applied"
        );
        assert!(Status::Reverted.transition(Status::Validated).is_err());
        assert!(Status::Validated.transition(Status::Applied).is_err());
    }
}

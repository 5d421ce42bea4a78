//! Stage 3, guard: fail-closed checks between a candidate and the repository.
//!
//! Each guard is a small type implementing [`Guard`]; the chain is a plain list ([`default_chain`]).
//! Guards are pure functions of (candidate, ledger view, policy, now) — the only outside fact they
//! may read is the repository's file tree, to resolve symlinks. A guard that errors blocks.

use crate::intervention::{Candidate, Intervention, InterventionId, Outcome, Risk, Status};
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

pub mod guards;

pub mod baseline;
pub mod budget;
pub mod canary;
pub mod concurrent;
pub mod dedup;
pub mod envelope;
pub mod freeze;
pub mod kinds;
pub mod paths;
pub mod prediction;
pub mod rollback;
#[cfg(test)]
pub(crate) mod testutil;
mod text;
pub mod well_formed;

pub use guards::{active_freezes, budget_left, chain_for, default_chain};

/// What a guard decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The candidate may go on.
    Pass,
    /// The candidate must not be applied.
    Block,
    /// Worth doing, but only once a prerequisite (a canary) exists; never applied as is.
    Backlog,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Pass => "pass",
            Decision::Block => "block",
            Decision::Backlog => "backlog",
        })
    }
}

/// One guard's verdict on one candidate, as stored in the ledger and shown by `kaizen show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardVerdict {
    /// The guard's name (`blocked_paths`, `daily_budget`, ...).
    pub guard: String,
    /// Its decision.
    pub decision: Decision,
    /// Why, for a human, with the numbers that decided it.
    pub reason: String,
}

/// A guard could not decide. The engine turns this into a `Block` (fail closed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("guard `{guard}` failed: {message}")]
pub struct GuardError {
    /// The guard's name.
    pub guard: String,
    /// What failed.
    pub message: String,
}

/// The numbers and lists the guards enforce. Every one is configurable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardPolicy {
    /// Most interventions applied in any rolling 24 h.
    pub daily_budget: u32,
    /// Most applied-but-not-yet-validated interventions at once.
    pub max_concurrent: u32,
    /// Same area + same change target within this window is a duplicate.
    pub dedup_window: Span,
    /// This many consecutive rollbacks in an area freeze it.
    pub freeze_after_rollbacks: u32,
    /// For this long after the last of those rollbacks.
    pub freeze_for: Span,
    /// Glob patterns (relative to the repo root) no intervention may touch.
    pub blocked_paths: Vec<String>,
    /// Intervention or edit kinds that are never applied.
    pub blocked_kinds: Vec<String>,
    /// Risk from which a canary is required.
    pub canary_required_from: Risk,
    /// Areas that have a canary configured.
    pub canary_areas: Vec<String>,
    /// The configured signals (a prediction on any other can never be validated).
    #[serde(default)]
    pub signals: Vec<String>,
}

/// The patterns always blocked, whatever the config adds: git internals and git's own control
/// files (attributes can name filter commands, submodules can point anywhere), and secrets.
pub const ALWAYS_BLOCKED: &[&str] = &[
    ".git",
    ".git/**",
    "**/.gitattributes",
    ".gitmodules",
    "**/*.pem",
    "**/*.key",
    "**/.env*",
    "**/secrets/**",
];

impl Default for GuardPolicy {
    fn default() -> Self {
        Self {
            daily_budget: 5,
            max_concurrent: 2,
            dedup_window: Span::hours(2),
            freeze_after_rollbacks: 3,
            freeze_for: Span::hours(24),
            blocked_paths: ALWAYS_BLOCKED.iter().map(|s| s.to_string()).collect(),
            blocked_kinds: Vec::new(),
            canary_required_from: Risk::Medium,
            canary_areas: Vec::new(),
            signals: Vec::new(),
        }
    }
}

/// What the guards may know about the ledger: recent interventions as plain data, and of older
/// history only what the freeze rule counts.
///
/// Whole rows are read only for what is live or recent: a year of history must not make a guard
/// pass read a year of rows. The freeze rule is the one guard that looks further back (an area's
/// last N finalized interventions, whatever their age), and it needs only their area, status,
/// outcome and time: those come as [`Finalized`] facts.
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    /// Interventions created within the last `max(dedup_window, freeze_for, 24h) + margin` or
    /// finalized within it, plus every one still `applied`. Newest first.
    pub interventions: Vec<Intervention>,
    /// For every area, its newest finalized interventions the freeze rule counts (validated or
    /// reverted, not reverted as `inconclusive`), at most `freeze_after_rollbacks` of them,
    /// whatever their age; newest first within an area. Some may also be in `interventions`.
    pub finalized: Vec<Finalized>,
}

/// What the freeze rule reads of a finalized intervention, without the rest of its row.
#[derive(Debug, Clone, PartialEq)]
pub struct Finalized {
    /// The intervention.
    pub id: InterventionId,
    /// Its area.
    pub area: String,
    /// `validated` or `reverted`.
    pub status: Status,
    /// Its final verdict, if any.
    pub outcome: Option<Outcome>,
    /// When it was finalized (its apply or creation time for a record without one).
    pub at: DateTime<Utc>,
}

impl Finalized {
    /// The facts of `iv`, if it is finalized (validated or reverted).
    pub fn of(iv: &Intervention) -> Option<Finalized> {
        matches!(iv.status, Status::Validated | Status::Reverted).then(|| Finalized {
            id: iv.id,
            area: iv.candidate.area.clone(),
            status: iv.status,
            outcome: iv.outcome,
            at: iv.finalized_at.or(iv.applied_at).unwrap_or(iv.created_at),
        })
    }

    /// A revert the data decided (final verdict `inconclusive`: gaps, an outage, too few
    /// samples, a window that could not tell): it says nothing about the area's changes, so the
    /// freeze rule neither counts it nor lets it break a streak.
    pub fn judged_by_missing_data(&self) -> bool {
        self.status == Status::Reverted && self.outcome == Some(Outcome::Inconclusive)
    }
}

/// Everything a guard gets besides the candidate.
#[derive(Debug, Clone, Copy)]
pub struct GuardContext<'a> {
    /// Recent history.
    pub view: &'a LedgerView,
    /// The rules.
    pub policy: &'a GuardPolicy,
    /// The engine clock's now.
    pub now: DateTime<Utc>,
    /// The target repository's root, to resolve symlinks and `..`.
    pub repo_root: &'a std::path::Path,
}

/// One fail-closed check.
pub trait Guard: Send + Sync {
    /// Stable name, stored with each verdict.
    fn name(&self) -> &'static str;
    /// Decides on `candidate`. An `Err` blocks.
    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError>;
}

/// Runs every guard in order, converting errors into blocks. All verdicts are returned (not just
/// the first block), so the ledger shows the whole picture.
pub fn run_chain(
    chain: &[Box<dyn Guard>],
    candidate: &Candidate,
    ctx: &GuardContext<'_>,
) -> Vec<GuardVerdict> {
    chain
        .iter()
        .map(|g| match g.check(candidate, ctx) {
            Ok(v) => v,
            Err(e) => GuardVerdict {
                guard: g.name().to_string(),
                decision: Decision::Block,
                reason: format!("guard error (fail closed): {}", e.message),
            },
        })
        .collect()
}

/// The overall decision of a chain's verdicts: any block blocks; else any backlog backlogs.
/// An empty chain blocks (fail closed: nothing vouched for the candidate).
pub fn overall(verdicts: &[GuardVerdict]) -> (Decision, String) {
    if verdicts.is_empty() {
        return (Decision::Block, "no guard ran (fail closed)".to_string());
    }
    let reasons = |d: Decision| {
        verdicts
            .iter()
            .filter(|v| v.decision == d)
            .map(|v| format!("{}: {}", v.guard, v.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if verdicts.iter().any(|v| v.decision == Decision::Block) {
        (Decision::Block, reasons(Decision::Block))
    } else if verdicts.iter().any(|v| v.decision == Decision::Backlog) {
        (Decision::Backlog, reasons(Decision::Backlog))
    } else {
        (Decision::Pass, "all guards passed".to_string())
    }
}

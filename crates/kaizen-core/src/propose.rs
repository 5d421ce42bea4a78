//! Stage 2, propose: observations, lessons and past outcomes in; candidate interventions out.

use crate::intervention::{Candidate, Intervention};
use crate::lesson::Lesson;
use crate::signal::{Sample, Signal};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::signal::SignalsRead;

/// An area that may not be changed until `until`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freeze {
    /// The frozen area.
    pub area: String,
    /// When the freeze lifts.
    pub until: DateTime<Utc>,
    /// Why (e.g. "3 consecutive rollbacks: K-000004, K-000005, K-000006").
    pub reason: String,
}

/// Everything a proposer may look at. Plain data: proposers never touch the ledger.
#[derive(Debug, Clone, Default)]
pub struct ProposeContext {
    /// The engine clock's now.
    pub now: DateTime<Utc>,
    /// Every configured signal.
    pub signals: Vec<Signal>,
    /// Recent samples per signal, oldest first: of every signal the proposers read
    /// ([`Proposer::signals_read`]; in a cycle, only those).
    pub recent: BTreeMap<String, Vec<Sample>>,
    /// Active lessons.
    pub lessons: Vec<Lesson>,
    /// Recent interventions, newest first.
    pub interventions: Vec<Intervention>,
    /// Areas frozen now.
    pub freezes: Vec<Freeze>,
    /// How many more interventions the daily budget allows now.
    pub budget_left: u32,
}

impl ProposeContext {
    /// The latest sample of `signal`, if any.
    pub fn latest(&self, signal: &str) -> Option<&Sample> {
        self.recent.get(signal).and_then(|s| s.last())
    }
}

/// Proposer output that failed validation: recorded with its reason, never applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// Why it was refused, for a human.
    pub reason: String,
    /// A bounded excerpt of what was refused (never secrets).
    pub excerpt: String,
}

/// What one proposer produced in one round.
#[derive(Debug, Clone, Default)]
pub struct Proposals {
    /// Well-formed candidates (still to pass the guards).
    pub candidates: Vec<Candidate>,
    /// Output that was refused before reaching the guards.
    pub rejected: Vec<Rejected>,
}

/// A proposer failed as a whole (server down, timeout). The cycle goes on with the others.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("proposer `{proposer}`: {message}")]
pub struct ProposeError {
    /// The proposer's name.
    pub proposer: String,
    /// What went wrong.
    pub message: String,
}

/// Turns a [`ProposeContext`] into candidate interventions. It recommends; it never executes.
///
/// Invariants: deterministic given the same context (LLM sampling aside); every candidate carries
/// a numeric prediction on a known signal; output it cannot vouch for goes to `rejected`.
#[async_trait]
pub trait Proposer: Send + Sync {
    /// A name for logs and the ledger (`rules`, `llm`).
    fn name(&self) -> &str;
    /// Proposes candidates.
    async fn propose(&self, ctx: &ProposeContext) -> Result<Proposals, ProposeError>;
    /// The signals whose samples it reads from [`ProposeContext::recent`]. A cycle reads the
    /// recent window only of the signals its proposers read (their union); the others are absent
    /// from `recent` (reading every signal's day every cycle was 6% of a 90-day `kaizen sim`
    /// whose rules watch 4 signals of 20 — issue 12, bench 4). Default: all of them.
    fn signals_read(&self) -> SignalsRead {
        SignalsRead::All
    }
    /// Whether it reads [`ProposeContext::interventions`] (the history proposers are shown).
    /// When no proposer of a cycle does, the cycle does not read it from the ledger and the
    /// context holds none (the rules proposer reads only the recent samples: reading the
    /// history's rows every cycle for nobody was 3% of a 90-day `kaizen sim` — issue 12,
    /// bench 4). Default: it does.
    fn reads_history(&self) -> bool {
        true
    }
}

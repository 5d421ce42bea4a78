//! Stage 6, learn: finalized interventions in; versioned lessons out.
//!
//! - [`deterministic`]: the default distiller (no LLM), idempotent on the same history.
//! - [`rewrite`]: the hook through which an LLM may reword a lesson's `because` / `retired_when`.

pub mod deterministic;
pub mod rewrite;

pub use deterministic::DeterministicDistiller;
pub use rewrite::{RewriteError, apply_rewrite};

use crate::intervention::Intervention;
use crate::lesson::Lesson;
use crate::signal::{Sample, SignalsRead};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Everything a distiller may look at.
#[derive(Debug, Clone)]
pub struct DistillInput<'a> {
    /// The engine clock's now.
    pub now: DateTime<Utc>,
    /// Finalized interventions (validated / reverted), oldest first, with their verdict figures
    /// available through `verdicts` by id.
    pub finalized: &'a [Intervention],
    /// The stored verdict figures per intervention id (`K-…`), as JSON.
    pub verdicts: &'a BTreeMap<String, serde_json::Value>,
    /// Current lessons (active and retired).
    pub lessons: &'a [Lesson],
    /// Recent samples per signal, oldest first (for retirement checks): of the signals the
    /// distiller reads ([`Distiller::signals_read`]).
    pub recent: &'a BTreeMap<String, Vec<Sample>>,
}

pub use crate::lesson::LessonChange;

/// A distiller could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("distiller `{distiller}`: {message}")]
pub struct DistillError {
    /// Its name.
    pub distiller: String,
    /// What failed.
    pub message: String,
}

/// Turns history into lesson changes. Invariant: idempotent — the same input run twice yields no
/// changes the second time (after the first run's changes are stored).
pub trait Distiller: Send + Sync {
    /// A name for the ledger.
    fn name(&self) -> &str;
    /// Proposes lesson changes.
    fn distill(&self, input: &DistillInput<'_>) -> Result<Vec<LessonChange>, DistillError>;
    /// The signals whose samples [`Distiller::distill`] reads from `input.recent`, asked with
    /// everything else of the input (`recent` empty). A learn run reads the recent days of
    /// those signals only (every signal's 8 days, every day, was 7% of a 90-day `kaizen sim` —
    /// issue 12, bench 4). Default: all of them.
    fn signals_read(&self, input: &DistillInput<'_>) -> SignalsRead {
        let _ = input;
        SignalsRead::All
    }
}

//! Retention: how long the ledger keeps samples, so the file does not grow without bound.
//!
//! `retention:` in the config sets how long raw samples are kept (`raw`, older ones are folded
//! into hourly aggregates — count, mean, min, max per signal and hour — in the same transaction
//! that deletes them) and how long those aggregates are kept (`hourly`). Without the section
//! nothing is ever removed.
//!
//! Invariants:
//! - Nothing a live intervention's validation needs is removed: the raw cutoff never passes
//!   [`crate::engine::HISTORY`] before the apply (or the proposal, while it waits) of any
//!   intervention not yet finalized — the baseline and the placebo calibration read that far.
//! - `raw` is at least [`MIN_RAW`], so a new proposal always finds its baseline and the learn
//!   step its 8 days.
//! - Each signal's hour range is folded and deleted in one transaction, so a kill leaves each
//!   sample either raw or counted in its aggregate, never both or neither; an aggregate that
//!   already exists (a late sample for an hour folded earlier) is merged, never overwritten.
//! - Work per pass is bounded ([`MAX_ROWS_PER_PASS`]), so the first pass on a large old
//!   ledger spreads over cycles instead of stalling one.

use crate::intervention::{Intervention, InterventionId, Status};
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Shortest `retention.raw` accepted: the validator's history (9 days) and the learn step's
/// (8 days), with margin.
pub const MIN_RAW: Span = Span::days(14);

/// Most raw samples one retention pass folds (the rest waits for the next cycle).
pub const MAX_ROWS_PER_PASS: u64 = 200_000;

/// The `retention:` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Raw samples older than this are folded into hourly aggregates (`None`: kept forever).
    pub raw: Option<Span>,
    /// Hourly aggregates older than this are deleted (`None`: kept forever).
    pub hourly: Option<Span>,
}

impl RetentionConfig {
    /// Whether any pruning is configured.
    pub fn is_active(&self) -> bool {
        self.raw.is_some() || self.hourly.is_some()
    }

    /// Checks the bounds; the error names the field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(raw) = self.raw
            && raw < MIN_RAW
        {
            return Err((
                "retention.raw",
                format!(
                    "{raw} is shorter than {MIN_RAW}: validation needs 9 days of history before each \
                     change and learning 8"
                ),
            ));
        }
        if let (Some(raw), Some(hourly)) = (self.raw, self.hourly)
            && hourly < raw
        {
            return Err((
                "retention.hourly",
                format!(
                    "{hourly} is shorter than retention.raw ({raw}): aggregates would go first"
                ),
            ));
        }
        Ok(())
    }
}

/// The instant before which raw samples may be folded at `now`: `raw` before now (down to the
/// hour), held back by every intervention not yet finalized to [`crate::engine::HISTORY`]
/// before its apply (or creation). Returns the cutoff and the intervention holding it back, if
/// one does.
pub fn raw_cutoff(
    raw: Span,
    now: DateTime<Utc>,
    interventions: &[Intervention],
) -> (DateTime<Utc>, Option<InterventionId>) {
    let mut cutoff = floor_hour(raw.before(now));
    let mut held = None;
    for iv in interventions {
        // Proposed (about to be guarded and applied) and applied (awaiting its verdict) are
        // live; blocked and backlog rows were never applied, the rest are final.
        if !matches!(iv.status, Status::Proposed | Status::Applied) {
            continue;
        }
        let from = iv.applied_at.unwrap_or(iv.created_at);
        let need = floor_hour(crate::engine::HISTORY.before(from));
        if need < cutoff {
            cutoff = need;
            held = Some(iv.id);
        }
    }
    (cutoff, held)
}

/// `t` rounded down to the hour.
pub fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    let floored = ms - ms.rem_euclid(3_600_000);
    DateTime::from_timestamp_millis(floored).unwrap_or(t)
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetentionPass {
    /// Raw samples folded into hourly aggregates (and deleted).
    pub folded: u64,
    /// Hourly aggregates deleted.
    pub aggregates_removed: u64,
    /// The raw cutoff used.
    pub raw_cutoff: Option<DateTime<Utc>>,
    /// The intervention that held the cutoff back, if any.
    pub held_by: Option<InterventionId>,
}

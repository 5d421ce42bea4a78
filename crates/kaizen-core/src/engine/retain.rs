//! Retain: the `retention:` pass of each cycle (see [`crate::retention`]).

use super::{CycleReport, Engine, EngineError};
use crate::clock::Clock;
use crate::event::EngineEvent;
use crate::intervention::Status;
use crate::retention::{MAX_ROWS_PER_PASS, RetentionPass, raw_cutoff};

impl Engine {
    /// Folds raw samples past `retention.raw` into hourly aggregates and drops aggregates past
    /// `retention.hourly`, never passing what a live intervention's validation reads; a pass
    /// that removed anything is recorded as an event. Nothing happens without `retention:`.
    pub fn retain(&mut self, report: &mut CycleReport) -> Result<RetentionPass, EngineError> {
        let cfg = self.settings.retention;
        let mut pass = RetentionPass::default();
        if !cfg.is_active() {
            return Ok(pass);
        }
        let now = self.clock.now();
        if let Some(raw) = cfg.raw {
            let mut live = self.ledger.with_status(Status::Proposed)?;
            live.extend(self.ledger.with_status(Status::Applied)?);
            let (cutoff, held) = raw_cutoff(raw, now, &live);
            pass.raw_cutoff = Some(cutoff);
            pass.held_by = held;
            let folded = self.ledger.fold_samples_before(cutoff, MAX_ROWS_PER_PASS);
            if !matches!(folded, Ok(0)) {
                // Samples were deleted (or may have been): the newest kept are read again.
                self.forget_newest();
            }
            pass.folded = folded?;
        }
        if let Some(hourly) = cfg.hourly {
            pass.aggregates_removed = self
                .ledger
                .prune_hourly_before(crate::retention::floor_hour(hourly.before(now)))?;
        }
        if pass.folded > 0 || pass.aggregates_removed > 0 {
            self.emit(
                report,
                EngineEvent::Retention {
                    folded: pass.folded,
                    aggregates_removed: pass.aggregates_removed,
                    raw_cutoff: pass.raw_cutoff,
                    held_by: pass.held_by,
                },
            )?;
        }
        Ok(pass)
    }
}

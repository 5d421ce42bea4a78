//! Retain: the `retention:` pass of each cycle (see [`crate::retention`]).

use super::{CycleReport, Engine, EngineError};
use crate::clock::Clock;
use crate::intervention::Status;
use crate::retention::{EVENT_KIND, MAX_ROWS_PER_PASS, RetentionPass, raw_cutoff};

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
            pass.folded = self.ledger.fold_samples_before(cutoff, MAX_ROWS_PER_PASS)?;
        }
        if let Some(hourly) = cfg.hourly {
            pass.aggregates_removed = self
                .ledger
                .prune_hourly_before(crate::retention::floor_hour(hourly.before(now)))?;
        }
        if pass.folded > 0 || pass.aggregates_removed > 0 {
            let held = pass
                .held_by
                .map(|id| format!(" (held back by {id}, still live)"))
                .unwrap_or_default();
            let text = format!(
                "folded {} raw sample(s) before {}{held} into hourly aggregates; removed {} \
                 hourly aggregate(s)",
                pass.folded,
                pass.raw_cutoff
                    .map(|c| c.to_rfc3339())
                    .unwrap_or_else(|| "-".into()),
                pass.aggregates_removed
            );
            tracing::info!(
                stage = "retain",
                folded = pass.folded,
                removed = pass.aggregates_removed,
                "kaizen stage=retain {text}"
            );
            self.ledger.record_event(
                now,
                None,
                "retain",
                EVENT_KIND,
                &text,
                serde_json::to_value(&pass).ok().as_ref(),
            )?;
            report.line(None, "retain", text);
        }
        Ok(pass)
    }
}

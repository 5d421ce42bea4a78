//! Autonomy earned from calibration: in autonomous mode a candidate whose proposer's calibrated
//! confidence is below `confidence_threshold` is recorded and left for a human's `kaizen apply`.

use super::{CycleReport, Engine, EngineError};
use crate::calibrate::Calibration;
use crate::event::EngineEvent;
use crate::intervention::{Candidate, InterventionId};

/// The ledger kind of [`EngineEvent::NeedsApproval`].
pub(super) const NEEDS_APPROVAL: &str = "needs_approval";

impl Engine {
    /// The calibration of `candidate`'s proposer, from its finalized history in the ledger.
    pub fn calibration_of(&self, candidate: &Candidate) -> Result<Calibration, EngineError> {
        let key = candidate.origin.to_string();
        let record = self.ledger.track_record_of(&key)?;
        Ok(Calibration::new(
            &key,
            candidate.confidence,
            record,
            self.settings.confidence_threshold,
        ))
    }

    /// Records that `id` waits for approval because its proposer is over-confident.
    pub(super) fn await_approval(
        &mut self,
        id: InterventionId,
        calibration: &Calibration,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        self.emit(
            report,
            EngineEvent::NeedsApproval {
                intervention: id,
                calibration: calibration.clone(),
            },
        )
    }

    /// Whether a `proposed` row waits for a human because its proposer's calibration fell
    /// short (not left by a crash, nor by an earlier manual mode).
    ///
    /// Asked of every `proposed` row in every cycle's reconciliation: one indexed lookup, not
    /// the row's whole event history decoded (rows left for a human pile up while nobody
    /// approves them: that decoding was a sixth of a 90-day `kaizen sim`).
    pub(super) fn awaits_approval(&self, id: InterventionId) -> Result<bool, EngineError> {
        Ok(self.ledger.has_event_of_kind(id, NEEDS_APPROVAL)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_approval_lookup_searches_the_kind_the_event_is_recorded_under() {
        let event = EngineEvent::NeedsApproval {
            intervention: InterventionId(1),
            calibration: Calibration::new("rule:x", 0.9, Default::default(), 0.5),
        };
        assert_eq!(event.kind(), NEEDS_APPROVAL);
    }
}

//! Autonomy earned from calibration: in autonomous mode a candidate whose proposer's calibrated
//! confidence is below `confidence_threshold` is recorded and left for a human's `kaizen apply`.

use super::{CycleReport, Engine, EngineError};
use crate::calibrate::Calibration;
use crate::event::EngineEvent;
use crate::intervention::{Candidate, InterventionId};

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
    pub(super) fn awaits_approval(&self, id: InterventionId) -> Result<bool, EngineError> {
        Ok(self
            .ledger
            .events_for(id)?
            .iter()
            .any(|e| matches!(e.event, EngineEvent::NeedsApproval { .. })))
    }
}

//! Autonomy earned from calibration: in autonomous mode a candidate whose proposer's calibrated
//! confidence is below `confidence_threshold` is recorded and left for a human's `kaizen apply`.

use super::{CycleReport, Engine, EngineError};
use crate::calibrate::{Calibration, track_records};
use crate::clock::Clock;
use crate::intervention::{Candidate, InterventionId};

/// The event kind of an intervention left for a human (manual mode, or calibration).
pub const AWAITING_APPROVAL: &str = "awaiting_approval";

impl Engine {
    /// The calibration of `candidate`'s proposer, from its finalized history in the ledger.
    pub fn calibration_of(&self, candidate: &Candidate) -> Result<Calibration, EngineError> {
        let key = candidate.origin.to_string();
        let finalized = self.ledger.finalized()?;
        let record = track_records(&finalized, None)
            .remove(&key)
            .unwrap_or_default();
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
        let now = self.clock.now();
        let detail = format!("{calibration}; apply with `kaizen apply {id}`");
        tracing::info!(
            intervention = %id,
            stage = "apply",
            verdict = "needs_approval",
            "kaizen {detail}"
        );
        self.ledger.record_event(
            now,
            Some(id),
            "apply",
            AWAITING_APPROVAL,
            &detail,
            serde_json::to_value(calibration).ok().as_ref(),
        )?;
        report.proposed.push(id);
        report.line(Some(id), "apply", detail);
        Ok(())
    }

    /// Whether a `proposed` row waits for a human because its proposer's calibration fell
    /// short (not left by a crash, nor by an earlier manual mode).
    pub(super) fn awaits_approval(&self, id: InterventionId) -> Result<bool, EngineError> {
        Ok(self.ledger.events_for(id)?.iter().any(|e| {
            e.kind == AWAITING_APPROVAL
                && e.data
                    .as_ref()
                    .and_then(|d| d.get("needs_approval"))
                    .and_then(serde_json::Value::as_bool)
                    == Some(true)
        }))
    }
}

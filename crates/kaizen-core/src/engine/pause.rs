//! Pause and resume: the emergency stop, recorded in the ledger (the files are in `crate::pause`).

use super::{Engine, EngineError};
use crate::clock::Clock;
use crate::event::EngineEvent;
use crate::ledger::Ledger;
use chrono::{DateTime, Utc};
use std::path::Path;

impl Engine {
    /// Pauses everything (`area` = `None`) or one area: nothing there is applied until
    /// [`resume`](Self::resume). Observation, validation and reverts go on.
    pub fn pause(&mut self, area: Option<&str>, why: &str) -> Result<(), EngineError> {
        let dir = self.state_dir.clone().ok_or(EngineError::Incomplete(
            "a state dir (pause files live there)",
        ))?;
        let now = self.clock.now();
        pause_recorded(&mut self.ledger, &dir, area, why, now)
    }

    /// Lifts a pause; returns whether one was in force.
    pub fn resume(&mut self, area: Option<&str>) -> Result<bool, EngineError> {
        let dir = self.state_dir.clone().ok_or(EngineError::Incomplete(
            "a state dir (pause files live there)",
        ))?;
        let now = self.clock.now();
        resume_recorded(&mut self.ledger, &dir, area, now)
    }
}

/// Writes the pause file and records a `pause` event (what `kaizen pause` does without an
/// engine: pausing never needs the state lock, so it works while a daemon runs).
pub fn pause_recorded(
    ledger: &mut Ledger,
    state_dir: &Path,
    area: Option<&str>,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    let why = why.trim();
    if why.is_empty() {
        return Err(EngineError::Pause(crate::pause::PauseError::NoReason));
    }
    crate::pause::pause(state_dir, area, why)?;
    let event = EngineEvent::Paused {
        area: area.map(str::to_string),
        why: why.to_string(),
    };
    event.trace();
    ledger.append(now, &event)?;
    Ok(())
}

/// Removes the pause file and records a `resume` event (if a pause was in force).
pub fn resume_recorded(
    ledger: &mut Ledger,
    state_dir: &Path,
    area: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, EngineError> {
    let was = crate::pause::resume(state_dir, area)?;
    if was {
        let event = EngineEvent::Resumed {
            area: area.map(str::to_string),
        };
        event.trace();
        ledger.append(now, &event)?;
    }
    Ok(was)
}

//! Observe: sample every source once, concurrently; a failing source is a recorded gap, never a
//! value.

use super::{CycleReport, Engine, EngineError};
use crate::clock::Clock;
use crate::event::EngineEvent;

impl Engine {
    /// Samples every source once and records the samples (failures are recorded as gaps).
    pub async fn observe(&mut self, report: &mut CycleReport) -> Result<usize, EngineError> {
        Ok(self.observe_recorded(report).await?.len())
    }

    /// [`Engine::observe`], returning the samples recorded (the runtime updates its status
    /// snapshot from them instead of reading them back).
    pub async fn observe_recorded(
        &mut self,
        report: &mut CycleReport,
    ) -> Result<Vec<crate::signal::Sample>, EngineError> {
        let now = self.clock.now();
        let mut all = Vec::new();
        // Every source at once, each within its own timeout (the adapters' sources bound
        // themselves): one slow source costs the tick its own time, not the sum of all. The
        // results are taken in the configured order, so what is recorded (samples, gaps, report
        // lines) does not depend on which answered first.
        let results =
            futures_util::future::join_all(self.sources.iter().map(|source| source.observe(now)))
                .await;
        let mut gaps = Vec::new();
        for result in results {
            match result {
                Ok(samples) => {
                    for s in samples {
                        if s.value.is_finite() {
                            all.push(s);
                        }
                    }
                }
                Err(e) => gaps.push(EngineEvent::SampleGap {
                    source: e.source_name,
                    message: e.message,
                }),
            }
        }
        for gap in gaps {
            self.emit(report, gap)?;
        }
        self.record_samples_kept(&all)?;
        report.samples += all.len();
        Ok(all)
    }
}

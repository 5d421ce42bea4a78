//! [`SimDiagnoser`]: rules' `diagnose` commands in the simulator. The command runs in the
//! simulated repository like in production, and can inspect the simulated host the way a real
//! one inspects a real host: `KAIZEN_SIM_FAULTS` lists the named faults active right now
//! (comma-separated), besides `KAIZEN_RULE` and `KAIZEN_TRIGGER`.

use super::model::{ConfigSnapshot, HostModel};
use crate::clock::{Clock, ManualClock};
use crate::rules::{Diagnose, DiagnoseOutcome, DiagnoseRunner};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs diagnose commands against the simulated host (see the module docs).
pub struct SimDiagnoser {
    model: Arc<HostModel>,
    root: PathBuf,
    start: DateTime<Utc>,
    clock: ManualClock,
}

impl SimDiagnoser {
    /// A runner for `model`, whose repository is `root`, started at `start`, on `clock`.
    pub fn new(model: HostModel, root: PathBuf, start: DateTime<Utc>, clock: ManualClock) -> Self {
        Self {
            model: Arc::new(model),
            root,
            start,
            clock,
        }
    }

    /// The names of the faults active now (in time, and their config conditions hold).
    pub fn active_faults(&self) -> Vec<String> {
        let t = (self.clock.now() - self.start).num_seconds();
        let mut files = HashMap::new();
        for s in self.model.signals.values() {
            for f in &s.faults {
                for c in [&f.when, &f.unless].into_iter().flatten() {
                    files
                        .entry(c.file.clone())
                        .or_insert_with(|| std::fs::read_to_string(self.root.join(&c.file)).ok());
                }
            }
        }
        let config = ConfigSnapshot::new(files);
        let mut out: Vec<String> = self
            .model
            .signals
            .values()
            .flat_map(|s| s.faults.iter())
            .filter(|f| {
                let at = i64::try_from(f.at.seconds()).unwrap_or(i64::MAX);
                let until = f
                    .until
                    .map(|u| i64::try_from(u.seconds()).unwrap_or(i64::MAX));
                t >= at
                    && until.is_none_or(|u| t < u)
                    && f.when.as_ref().is_none_or(|c| c.holds(&config))
                    && !f.unless.as_ref().is_some_and(|c| c.holds(&config))
            })
            .filter_map(|f| f.name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[async_trait]
impl DiagnoseRunner for SimDiagnoser {
    async fn run(&self, rule: &str, diagnose: &Diagnose, trigger: &str) -> DiagnoseOutcome {
        let faults = self.active_faults().join(",");
        let child = Command::new("sh")
            .arg("-c")
            .arg(&diagnose.command)
            .current_dir(&self.root)
            .env("KAIZEN_RULE", rule)
            .env("KAIZEN_TRIGGER", trigger)
            .env("KAIZEN_SIM_FAULTS", &faults)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return DiagnoseOutcome::Refused {
                    reason: format!("could not run: {e}"),
                };
            }
        };
        let deadline = Instant::now() + Duration::from_secs(diagnose.timeout.seconds().max(1));
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    return DiagnoseOutcome::Confirmed {
                        facts: Some(serde_json::json!({ "active_faults": faults })),
                        note: "exit 0".into(),
                    };
                }
                Ok(Some(status)) => {
                    return DiagnoseOutcome::Refused {
                        reason: format!("{status} (active faults: {faults:?})"),
                    };
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return DiagnoseOutcome::Refused {
                        reason: format!("timed out after {}", diagnose.timeout),
                    };
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    return DiagnoseOutcome::Refused {
                        reason: format!("could not wait for it: {e}"),
                    };
                }
            }
        }
    }
}

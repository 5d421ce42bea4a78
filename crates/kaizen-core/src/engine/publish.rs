//! Publish: push kaizen's commits to the configured remote (see [`crate::publish`]), retry a
//! failed push with back-off, and start each applied intervention's validation clock once its
//! commit is on the remote — what GitOps deploys.

use super::{CycleReport, Engine, EngineError};
use crate::clock::Clock;
use crate::event::{EngineEvent, Stage};
use crate::intervention::Intervention;
use crate::publish::{
    ESCALATE_AFTER_FAILURES, PublishError, PublishStatus, Published, PushHistory, STAGE,
};
use chrono::{DateTime, Utc};

/// How many of the newest publish events are read back to find the failures since the last
/// success (more failures than this count as this many).
const HISTORY_EVENTS: usize = 500;

impl Engine {
    /// Whether a remote is configured: applies then wait for a push before validation starts.
    pub(super) fn publishing(&self) -> bool {
        self.publisher.is_some()
    }

    /// Pushes what is not yet on the remote (a no-op without a remote), outside a cycle: after
    /// a manual apply, revert or lesson commit. Failures are recorded, never returned.
    pub fn publish(&mut self) -> Result<CycleReport, EngineError> {
        let mut report = CycleReport {
            at: self.clock.now(),
            ..Default::default()
        };
        self.publish_step(&mut report, true)?;
        Ok(report)
    }

    /// Publishing as `kaizen status` / `/health` show it (`None`: no remote configured).
    pub fn publish_status(&self) -> Result<Option<PublishStatus>, EngineError> {
        Ok(publish_status(&self.ledger, &self.settings)?)
    }

    fn push_history(&self) -> Result<PushHistory, EngineError> {
        Ok(PushHistory::from_events(
            &self.ledger.recent_events(STAGE, HISTORY_EVENTS)?,
        ))
    }

    /// One publish step: push when something is unpushed and the back-off allows (`force`:
    /// whatever the back-off says — a human asked), then start the validation clocks of
    /// applied interventions whose commits are on the remote.
    pub(super) fn publish_step(
        &mut self,
        report: &mut CycleReport,
        force: bool,
    ) -> Result<(), EngineError> {
        let (Some(publisher), Some(config)) = (self.publisher.as_ref(), self.settings.git.clone())
        else {
            return Ok(());
        };
        let now = self.clock.now();
        let remote = publisher.remote().to_string();
        let unpushed = match publisher.unpushed() {
            Ok(u) => u,
            Err(e) => return self.push_failed(report, &e, now),
        };
        if !unpushed.is_empty() {
            let history = self.push_history()?;
            if let Some(next) = history.next_attempt(&config)
                && now < next
                && !force
            {
                tracing::info!(
                    "kaizen stage=publish {} commit(s) not yet on `{remote}`; next push attempt at {next} (after {} failure(s))",
                    unpushed.len(),
                    history.failures
                );
                return Ok(());
            }
            let result = match self.publisher.as_ref() {
                Some(p) => p.publish(),
                None => return Ok(()),
            };
            match result {
                Ok(Published::UpToDate) => {}
                Ok(Published::Pushed { tip, replayed }) => {
                    for r in &replayed {
                        if let Some(id) = r.intervention {
                            self.ledger.replace_commit(id, &r.old, &r.new)?;
                        }
                    }
                    self.emit(
                        report,
                        EngineEvent::Pushed {
                            remote,
                            tip,
                            commits: unpushed.iter().map(|u| u.sha.clone()).collect(),
                            replayed,
                        },
                    )?;
                }
                Err(e) => return self.push_failed(report, &e, now),
            }
        }
        self.start_clocks(report, now)
    }

    /// Starts the validation clock of each applied intervention whose commit is on the remote.
    fn start_clocks(
        &mut self,
        report: &mut CycleReport,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let awaiting: Vec<Intervention> = self.ledger.awaiting_publish()?;
        for iv in awaiting {
            let Some(mut commit) = iv.commit.clone() else {
                continue;
            };
            let Some(publisher) = self.publisher.as_ref() else {
                return Ok(());
            };
            let remote = publisher.remote().to_string();
            let mut on = publisher.on_remote(&commit).unwrap_or(false);
            if !on {
                // A kill between a replay and its ledger update leaves the row naming the old
                // commit; the trailer finds the replayed one.
                let branch = self.ledger.branch(iv.id)?;
                if let Ok(Some(found)) = self.applier.find_applied_on(iv.id, branch.as_deref())
                    && found != commit
                {
                    self.ledger.replace_commit(iv.id, &commit, &found)?;
                    commit = found;
                    on = self
                        .publisher
                        .as_ref()
                        .is_some_and(|p| p.on_remote(&commit).unwrap_or(false));
                }
            }
            if !on {
                continue;
            }
            let due = self
                .settings
                .validate
                .settle
                .saturating_add(iv.candidate.prediction.within)
                .after(now);
            let event = EngineEvent::ValidationStarted {
                intervention: iv.id,
                remote,
                commit,
                due,
            };
            if self.ledger.start_validation(iv.id, now, due, &event)? {
                report.push(event);
            }
        }
        Ok(())
    }

    fn push_failed(
        &mut self,
        report: &mut CycleReport,
        e: &PublishError,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some(config) = self.settings.git.clone() else {
            return Ok(());
        };
        let failures = self.push_history()?.failures.saturating_add(1);
        let next_attempt_at = config.backoff(failures).after(now);
        let awaiting_push = self
            .ledger
            .awaiting_publish()?
            .iter()
            .map(|i| i.id)
            .collect();
        let message = e.to_string();
        let remote = config.remote.clone();
        let event = if e.retryable() {
            EngineEvent::PushFailed {
                remote,
                message: message.clone(),
                failures,
                next_attempt_at,
                awaiting_push,
            }
        } else {
            EngineEvent::PushDiverged {
                remote,
                message: message.clone(),
                failures,
                next_attempt_at,
                awaiting_push,
            }
        };
        self.emit(report, event)?;
        if e.retryable() {
            if failures == ESCALATE_AFTER_FAILURES {
                let text = format!(
                    "{failures} pushes to `{}` failed in a row; the last: {message}; \
                     applied changes wait (validation not started) until a push succeeds",
                    config.remote
                );
                self.escalate(
                    report,
                    None,
                    Stage::Publish,
                    format!("push_failing {}", config.remote),
                    text,
                )?;
            }
        } else {
            // The same divergence is escalated again only after ESCALATE_AGAIN.
            let text = format!("{message}; nothing was force-pushed or rewritten: merge by hand");
            self.escalate_once(
                report,
                None,
                Stage::Publish,
                format!("push_diverged {}", config.remote),
                text,
            )?;
        }
        Ok(())
    }
}

/// Publishing status from the ledger (`None`: no remote configured).
pub fn publish_status(
    ledger: &crate::ledger::Ledger,
    settings: &super::EngineSettings,
) -> Result<Option<PublishStatus>, crate::ledger::LedgerError> {
    let Some(config) = settings.git.as_ref().filter(|g| g.publishes()) else {
        return Ok(None);
    };
    let history = PushHistory::from_events(&ledger.recent_events(STAGE, HISTORY_EVENTS)?);
    Ok(Some(PublishStatus {
        remote: config.remote.clone(),
        awaiting_push: ledger.awaiting_publish()?.iter().map(|i| i.id).collect(),
        consecutive_failures: history.failures,
        next_attempt_at: history.next_attempt(config),
        last_error: history.last_failure.map(|(_, m)| m),
        last_pushed_at: history.last_pushed_at,
    }))
}

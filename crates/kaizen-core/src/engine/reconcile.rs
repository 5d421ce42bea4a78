//! Reconcile: finish the git operations a crash interrupted, so ledger and repository agree.

use super::{CycleReport, Engine, EngineError, short};
use crate::clock::Clock;
use crate::config::Mode;
use crate::event::{EngineEvent, Stage};
use crate::intervention::Status;
use crate::ledger::Pending;

/// Ledger meta key: the history markers (branch tips) the id continuity check has seen.
const META_IDS_SEEN: &str = "ids_seen_tips";

impl Engine {
    /// Finishes git operations a crash interrupted, so ledger and repository agree.
    pub fn reconcile(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        self.recover_repository(report)?;
        self.continue_ids(report)?;
        for (iv, op) in self.ledger.pending()? {
            let id = iv.id;
            let branch = self.ledger.branch(id)?;
            match op {
                Pending::Apply => match self.applier.find_applied_on(id, branch.as_deref()) {
                    Ok(Some(sha)) => {
                        if let Err(e) = self.applier.sync_worktree(id, &sha) {
                            self.escalate(report, Some(id), Stage::Reconcile, format!("sync_failed {id}"), format!("commit {sha} found but the working tree could not be synced: {e}"))?;
                        }
                        let due = self
                            .settings
                            .validate
                            .settle
                            .saturating_add(iv.candidate.prediction.within)
                            .after(now);
                        let why = format!(
                            "reconciled after an interruption: commit {} found",
                            short(&sha)
                        );
                        let event = if self.publishing() {
                            // The publish step starts the clock once the commit is pushed.
                            self.ledger.mark_applied_unpublished(
                                id,
                                &sha,
                                now,
                                Stage::Reconcile,
                                &why,
                            )?
                        } else {
                            self.ledger
                                .mark_applied(id, &sha, now, due, Stage::Reconcile, &why)?
                        };
                        report.push(event);
                    }
                    Ok(None) => {
                        let event = self.ledger.transition(
                            id,
                            Status::Blocked,
                            now,
                            Stage::Reconcile,
                            "apply interrupted before its commit was made; nothing applied",
                        )?;
                        report.push(event);
                    }
                    Err(e) => {
                        self.escalate(report, Some(id), Stage::Reconcile, format!("reconcile_unreadable {id}"), format!("cannot inspect the repository to reconcile an interrupted apply: {e}"))?;
                    }
                },
                // Only a revert naming this very apply commit counts (an older namesake's
                // revert, from before a lost state dir, does not).
                Pending::Revert => match iv
                    .commit
                    .as_deref()
                    .map(|c| self.applier.find_revert_of(id, c, branch.as_deref()))
                    .unwrap_or(Ok(None))
                {
                    Ok(Some(sha)) => {
                        if let Some(c) = &iv.commit
                            && let Err(e) = self.applier.sync_worktree(id, c)
                        {
                            self.escalate(report, Some(id), Stage::Reconcile, format!("sync_failed {id}"), format!("revert {sha} found but the working tree could not be synced: {e}"))?;
                        }
                        let event = self.ledger.mark_reverted(
                            id,
                            &sha,
                            now,
                            Stage::Reconcile,
                            &format!(
                                "reconciled after an interruption: revert commit {} found",
                                short(&sha)
                            ),
                        )?;
                        report.push(event);
                    }
                    Ok(None) => {
                        self.ledger.set_pending(id, None)?;
                        self.emit(report, EngineEvent::RevertInterrupted { intervention: id })?;
                    }
                    Err(e) => {
                        self.escalate(report, Some(id), Stage::Reconcile, format!("reconcile_unreadable {id}"), format!("cannot inspect the repository to reconcile an interrupted revert: {e}"))?;
                    }
                },
            }
        }
        self.reconcile_flips(report)?;
        {
            // A `proposed` row with no pending git operation in autonomous mode (its area's)
            // was interrupted before its guards ran (or left by a previous mode). It was never
            // applied.
            // Those left for a human because their proposer's calibration fell short are not
            // stuck: the query leaves them out.
            for (id, area) in self
                .ledger
                .proposed_without_event(super::autonomy::NEEDS_APPROVAL)?
            {
                if self.settings.mode_for(&area) != Mode::Autonomous {
                    continue;
                }
                let event = self.ledger.transition(
                    id,
                    Status::Blocked,
                    now,
                    Stage::Reconcile,
                    "left proposed by an interrupted cycle (or an earlier mode); never applied",
                )?;
                report.push(event);
            }
        }
        Ok(())
    }

    /// Repairs what a killed kaizen left in the repository (its own stale lock, temp files, a
    /// working tree behind its commit) before any git operation; whatever is not unambiguously
    /// kaizen's is escalated, never removed.
    pub(super) fn recover_repository(
        &mut self,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let findings = match self.applier.recover_routine() {
            Ok(f) => f,
            Err(e) => {
                return self.escalate_once(
                    report,
                    None,
                    Stage::Reconcile,
                    "repo unreadable".into(),
                    format!("cannot inspect the repository for leftovers of a crash: {e}"),
                );
            }
        };
        // Canary worktrees a killed trial left behind go at the next start, not only at the
        // hourly check (`orphans` costs nothing for canaries that do not use worktrees).
        let mut findings = findings;
        for c in &self.canaries {
            findings.extend(c.orphans(true));
        }
        for f in findings {
            if f.repaired {
                self.emit(
                    report,
                    EngineEvent::Repaired {
                        stage: Stage::Reconcile,
                        finding: f.kind,
                        subject: f.path,
                        detail: f.detail,
                    },
                )?;
            } else {
                let key = format!("repo {} {}", f.kind, f.path);
                let text = format!("{} {}: {}", f.kind, f.path, f.detail);
                self.escalate_once(report, None, Stage::Reconcile, key, text)?;
            }
        }
        Ok(())
    }

    /// Keeps intervention ids unique per repository: with a lost or fresh state dir the ledger
    /// continues after the highest id the history names. Checked once per engine, and only
    /// over the commits this ledger has not seen yet (the branch tips of the last check are
    /// kept in the ledger: a fresh state dir has none, so it walks the whole history).
    fn continue_ids(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        if self.ids_checked {
            return Ok(());
        }
        let seen: Vec<String> = self
            .ledger
            .meta(META_IDS_SEEN)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        match self.applier.highest_intervention_id_since(&seen) {
            Ok((found, markers)) => {
                if let Some(highest) = found
                    && self.ledger.reserve_ids_through(highest)?
                {
                    self.emit(report, EngineEvent::IdsContinued { highest })?;
                }
                if !markers.is_empty() && markers != seen {
                    let text = serde_json::to_string(&markers).unwrap_or_default();
                    // Only saves the next walk: written with the next state change.
                    self.ledger.set_meta_later(META_IDS_SEEN, &text);
                }
            }
            Err(e) => {
                return self.escalate_once(
                    report,
                    None,
                    Stage::Reconcile,
                    "repo history_unreadable".into(),
                    format!("cannot read the repository's history for intervention ids: {e}"),
                );
            }
        }
        self.ids_checked = true;
        Ok(())
    }

    /// After kaizen's own commit: when its parent is one of the tips the last id check kept,
    /// the commit takes that tip's place, so the next process's check finds nothing new to walk
    /// (kaizen's own commit names an id this ledger gave out). Only the commit itself is hidden
    /// from later walks by this — everything below its parent already was — so a commit made by
    /// anyone else is still walked. Kept with the state change that records the commit.
    pub(super) fn note_own_commit(&mut self, commit: &crate::apply::CommitRef) {
        let Some(parent) = &commit.parent else {
            return;
        };
        let kept = match self.ledger.meta(META_IDS_SEEN) {
            Ok(v) => v.and_then(|v| serde_json::from_str::<Vec<String>>(&v).ok()),
            Err(e) => {
                tracing::debug!(stage = "reconcile", error = %e, "cannot read the tips kept for the id check");
                None
            }
        };
        let Some(mut markers) = kept else {
            return;
        };
        let Some(at) = markers.iter().position(|m| m == parent) else {
            return;
        };
        markers[at] = commit.sha.clone();
        markers.sort();
        markers.dedup();
        if let Ok(text) = serde_json::to_string(&markers) {
            self.ledger.set_meta_later(META_IDS_SEEN, &text);
        }
    }
}

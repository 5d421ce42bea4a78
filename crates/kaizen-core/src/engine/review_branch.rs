//! Review mode: a guarded candidate becomes a review branch for a human to merge
//! (`awaiting_review`); each cycle notices a merge (→ `applied`, validated like any other from
//! the moment it reached the target), a deletion (→ `rejected`), or a stale branch (rebased when
//! clean, else escalated). See [`crate::publish::ReviewDesk`].

use super::{CycleReport, Engine, EngineError, short};
use crate::clock::Clock;
use crate::event::{EngineEvent, Stage};
use crate::intervention::{Candidate, InterventionId, Status};
use crate::publish::ReviewState;

impl Engine {
    /// Opens the review branch of a guarded candidate (after its canary, if one is required).
    pub(super) async fn open_review(
        &mut self,
        id: InterventionId,
        candidate: &Candidate,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        if !self.canary_gate(id, candidate, report).await? {
            return Ok(());
        }
        let now = self.clock.now();
        let chain = self.decision_chain(id, candidate)?;
        let Some(desk) = self.review.as_ref() else {
            let event = self.ledger.transition(
                id,
                Status::Blocked,
                now,
                Stage::Publish,
                "review mode without a remote to open review branches on (fail closed)",
            )?;
            report.push(event);
            return Ok(());
        };
        let branch = desk.branch_name(id);
        let event = match desk.open(id, candidate, &chain) {
            Ok(sha) => {
                let text = format!(
                    "review branch `{branch}` opened (commit {}): merge it to apply",
                    short(&sha)
                );
                self.ledger
                    .mark_awaiting_review(id, &sha, &branch, now, &text)?
            }
            Err(e) => self.ledger.transition(
                id,
                Status::Blocked,
                now,
                Stage::Publish,
                &format!("review branch `{branch}` not opened: {e}"),
            )?,
        };
        report.push(event);
        Ok(())
    }

    /// The decision chain written into the review commit: trigger, prediction, guards, canary,
    /// lessons cited.
    fn decision_chain(
        &self,
        id: InterventionId,
        candidate: &Candidate,
    ) -> Result<String, EngineError> {
        let mut s = String::new();
        if !candidate.origin.trigger.is_empty() {
            s.push_str(&format!("Trigger: {}\n", candidate.origin.trigger));
        }
        s.push_str(&format!(
            "Proposed by: {}; risk {}, confidence {}\n",
            candidate.origin, candidate.risk, candidate.confidence
        ));
        s.push_str(&format!("Prediction: {}\n", candidate.prediction));
        let verdicts = self.ledger.guard_verdicts(id)?;
        if !verdicts.is_empty() {
            s.push_str("\nGuards:\n");
            for (_, v) in &verdicts {
                s.push_str(&format!("- {} {}: {}\n", v.guard, v.decision, v.reason));
            }
        }
        let canary = self.canary_notes(id)?;
        if !canary.is_empty() {
            s.push('\n');
            s.push_str(&canary);
        }
        if !candidate.origin.cites.is_empty() {
            s.push_str(&format!(
                "\nLessons cited: {}\n",
                candidate.origin.cites.join(", ")
            ));
        }
        for a in &candidate.origin.argues_against {
            s.push_str(&format!("Argues against {}: {}\n", a.lesson, a.why));
        }
        Ok(s)
    }

    /// Looks at every open review branch: merged → applied (validation from now), deleted →
    /// rejected, stale → rebased when clean, else escalated.
    pub(super) fn review_step(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let open: Vec<(InterventionId, String)> = self
            .ledger
            .with_status(Status::AwaitingReview)?
            .into_iter()
            .filter_map(|iv| iv.commit.map(|c| (iv.id, c)))
            .collect();
        let Some(desk) = self.review.as_ref() else {
            return Ok(());
        };
        if open.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let states = match desk.inspect(&open) {
            Ok(s) => s,
            Err(e) => {
                return self.escalate_once(
                    report,
                    None,
                    Stage::Publish,
                    "review_unreadable".into(),
                    format!("cannot look at the review branches: {e}"),
                );
            }
        };
        let mut merged_any = false;
        for (id, state) in states {
            let branch = self
                .review
                .as_ref()
                .map(|d| d.branch_name(id))
                .unwrap_or_else(|| format!("kaizen/{id}"));
            let Some(sha) = open.iter().find(|(i, _)| *i == id).map(|(_, c)| c.clone()) else {
                continue;
            };
            match state {
                ReviewState::Waiting => {}
                ReviewState::Merged { commit } => {
                    merged_any = true;
                    let iv = self.ledger.get(id)?;
                    let due = self
                        .settings
                        .validate
                        .settle
                        .saturating_add(iv.candidate.prediction.within)
                        .after(now);
                    self.emit(
                        report,
                        EngineEvent::ReviewMerged {
                            intervention: id,
                            branch: branch.clone(),
                            review_commit: sha.clone(),
                            commit: commit.clone(),
                        },
                    )?;
                    let event = self.ledger.mark_applied(
                        id,
                        &commit,
                        now,
                        due,
                        Stage::Publish,
                        &format!(
                            "`{branch}` merged by a human (commit {} on the target)",
                            short(&commit)
                        ),
                    )?;
                    report.push(event);
                    if let Some(d) = self.review.as_ref() {
                        let _ = d.close(id);
                    }
                }
                ReviewState::Deleted { reason } => {
                    let text = match &reason {
                        Some(r) => {
                            format!("`{branch}` was deleted without a merge: {}", one_line(r))
                        }
                        None => format!("`{branch}` was deleted without a merge"),
                    };
                    let event =
                        self.ledger
                            .transition(id, Status::Rejected, now, Stage::Publish, &text)?;
                    report.push(event);
                    if let Some(d) = self.review.as_ref() {
                        let _ = d.close(id);
                    }
                }
                ReviewState::Stale { human_commits } => {
                    let rebased = if human_commits {
                        None
                    } else {
                        match self.review.as_ref().map(|d| d.rebase(id, &sha)) {
                            Some(Ok(r)) => r,
                            Some(Err(e)) => {
                                tracing::warn!(
                                    "kaizen intervention={id} stage=publish `{branch}` not rebased: {e}"
                                );
                                continue;
                            }
                            None => None,
                        }
                    };
                    match rebased {
                        Some(new) => {
                            self.ledger.replace_commit(id, &sha, &new)?;
                            self.emit(
                                report,
                                EngineEvent::ReviewRebased {
                                    intervention: id,
                                    branch: branch.clone(),
                                    old: sha.clone(),
                                    new,
                                },
                            )?;
                        }
                        None => {
                            let text = if human_commits {
                                format!(
                                    "`{branch}` is stale (the target moved) and holds a human's commits: left for a human to rebase"
                                )
                            } else {
                                format!(
                                    "`{branch}` is stale: it no longer applies cleanly on the target; rebase or close it by hand"
                                )
                            };
                            let seen = self
                                .ledger
                                .events_for(id)?
                                .iter()
                                .any(|e| e.kind == "review_stale" && e.detail == text);
                            if !seen {
                                self.emit(
                                    report,
                                    EngineEvent::ReviewStale {
                                        intervention: id,
                                        branch: branch.clone(),
                                        reason: text.clone(),
                                    },
                                )?;
                            }
                            self.escalate_once(
                                report,
                                Some(id),
                                Stage::Publish,
                                format!("review_stale {id}"),
                                text,
                            )?;
                        }
                    }
                }
            }
        }
        if merged_any {
            // Later reverts are committed on the local branch: bring it up to the target.
            if let Some(d) = self.review.as_ref()
                && let Err(e) = d.sync()
            {
                tracing::warn!(
                    "kaizen stage=publish local branch not brought up to the remote: {e}"
                );
            }
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

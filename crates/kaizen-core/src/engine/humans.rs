//! Humans: what a human did about an intervention is noticed and recorded, never fought.
//!
//! - `kaizen resolve ID --why … --kept|--reverted` ends an intervention as the human says
//!   (checked against git: "reverted" while the change is still in effect is refused), recorded
//!   with who and why; its open escalations close with it. While `kaizen run` holds the lock
//!   the request is queued in the ledger and carried out at the start of the next cycle.
//! - Each cycle compares the target keys of applied and validated interventions with the branch
//!   tip (one read per touched file, no tree walk); a change found undone, changed again or its
//!   file deleted is traced to the commit that did it (a first-parent walk back to kaizen's
//!   commit, only then) and ends the intervention `superseded` — counted neither as validated
//!   nor as a rollback — or, when kaizen itself had asked for the revert (an open escalation),
//!   `reverted`, the escalation closed by itself.

use super::{CycleReport, Engine, EngineError, short};
use crate::clock::Clock;
use crate::edit::{Edit, config_get};
use crate::escalation::HumanEnd;
use crate::event::{EngineEvent, Stage};
use crate::intervention::{Intervention, InterventionId, Status};
use crate::ledger::LedgerError;
use std::collections::{BTreeMap, BTreeSet};

/// How an intervention's change stands at the branch tip.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyState {
    /// Every target holds what kaizen wrote.
    InEffect,
    /// Every target holds what it held before kaizen (its change undone).
    Undone,
    /// Some target holds something else (`file#key: 256 → 512`).
    Changed(Vec<String>),
    /// A target file is gone.
    Deleted(String),
    /// The tip could not be read (recorded by the caller; nothing is decided on it).
    Unknown(String),
}

impl KeyState {
    /// The file to trace the change through, and how to say what happened.
    fn describe(&self, iv: &Intervention) -> (Option<String>, String) {
        let first = iv.candidate.change.first().map(|e| e.file().to_string());
        match self {
            KeyState::Undone => (first, "its change undone (reverted)".into()),
            KeyState::Changed(what) => (
                what.first()
                    .and_then(|t| t.split_once('#').map(|(f, _)| f.to_string()))
                    .or(first),
                format!("changed again: {}", what.join("; ")),
            ),
            KeyState::Deleted(file) => (Some(file.clone()), format!("{file} deleted")),
            KeyState::InEffect | KeyState::Unknown(_) => (first, String::new()),
        }
    }
}

fn show(v: &Option<serde_json::Value>) -> String {
    v.as_ref().map_or("unset".into(), |v| v.to_string())
}

impl Engine {
    /// How `iv`'s change stands at the branch tip, reading each file once through `cache`.
    pub fn key_state(
        &self,
        iv: &Intervention,
        cache: &mut BTreeMap<String, Result<Option<String>, String>>,
    ) -> KeyState {
        let mut changed = Vec::new();
        let mut all_undone = true;
        for edit in &iv.candidate.change {
            let file = edit.file().to_string();
            let content = cache
                .entry(file.clone())
                .or_insert_with(|| self.applier.read_file(&file).map_err(|e| e.to_string()))
                .clone();
            let content = match content {
                Err(e) => return KeyState::Unknown(format!("{file}: {e}")),
                Ok(None) => return KeyState::Deleted(file),
                Ok(Some(c)) => c,
            };
            match edit {
                Edit::ConfigSet { key, value, .. } => {
                    let now = match config_get(&file, &content, key) {
                        Ok(v) => v,
                        Err(e) => {
                            changed.push(format!("{file}#{key}: no longer readable ({e})"));
                            all_undone = false;
                            continue;
                        }
                    };
                    if now.as_ref() == Some(value) {
                        all_undone = false;
                        continue;
                    }
                    let before = iv
                        .candidate
                        .origin
                        .resolved
                        .iter()
                        .find(|r| r.target == edit.target())
                        .map(|r| r.old.clone());
                    if before.as_ref() != Some(&now) {
                        all_undone = false;
                    }
                    changed.push(format!("{file}#{key}: {value} → {}", show(&now)));
                }
                Edit::FileWrite { content: wrote, .. } => {
                    // What was there before is not kept: a different content is a change.
                    all_undone = false;
                    if &content != wrote {
                        changed.push(format!("{file}: content rewritten"));
                    }
                }
            }
        }
        if changed.is_empty() {
            KeyState::InEffect
        } else if all_undone {
            KeyState::Undone
        } else {
            KeyState::Changed(changed)
        }
    }

    /// Compares every applied and validated intervention's targets with the branch tip and
    /// records what humans did (see the module doc). Interventions with a git operation in
    /// flight are left to reconciliation.
    pub fn notice_humans(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        let pending: BTreeSet<InterventionId> = self
            .ledger
            .pending()?
            .into_iter()
            .map(|(iv, _)| iv.id)
            .collect();
        // An escalation whose intervention already ended (a crash between the revert and the
        // close, or an end recorded elsewhere) is closed: it no longer needs anyone.
        for esc in self.ledger.open_escalations(now)? {
            let Some(id) = esc.intervention else { continue };
            let iv = match self.ledger.get(id) {
                Ok(iv) => iv,
                Err(LedgerError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if iv.is_final() && !matches!(iv.status, Status::Validated) {
                for e in self.ledger.close_escalations(
                    id,
                    Stage::Humans,
                    "kaizen",
                    &format!("{id} already ended {}", iv.status),
                    now,
                )? {
                    report.push(e);
                }
            }
        }
        let mut live = self.ledger.with_status(Status::Applied)?;
        live.extend(self.ledger.with_status(Status::Validated)?);
        let mut cache = BTreeMap::new();
        for iv in live {
            if pending.contains(&iv.id) || iv.commit.is_none() {
                continue;
            }
            // Mid-switchback the change is off half the time by kaizen's own commits; the
            // switchback step watches for human commits itself.
            if self
                .ledger
                .switchback(iv.id)?
                .is_some_and(|s| s.state == crate::ledger::SwitchbackState::Running)
            {
                continue;
            }
            match self.key_state(&iv, &mut cache) {
                KeyState::InEffect => {}
                KeyState::Unknown(why) => {
                    tracing::debug!(
                        "kaizen intervention={} stage=humans cannot read its targets: {why}",
                        iv.id
                    );
                }
                state => self.superseded(&iv, &state, report)?,
            }
        }
        Ok(())
    }

    /// Ends `iv`, whose change `state` says a commit after kaizen's undid or changed.
    fn superseded(
        &mut self,
        iv: &Intervention,
        state: &KeyState,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let id = iv.id;
        let (Some(file), Some(commit)) = (state.describe(iv).0, iv.commit.as_deref()) else {
            return Ok(());
        };
        let how = state.describe(iv).1;
        let branch = self.ledger.branch(id)?;
        let change = match self.applier.last_change(&file, commit, branch.as_deref()) {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Nothing after kaizen's commit touched it on the branch: the difference is not
                // a commit's (a rewritten history, another branch checked out); decide nothing.
                tracing::debug!(
                    "kaizen intervention={id} stage=humans {how}, but no commit after {} did it",
                    short(commit)
                );
                return Ok(());
            }
            Err(e) => {
                tracing::debug!("kaizen intervention={id} stage=humans cannot trace {file}: {e}");
                return Ok(());
            }
        };
        let who = match change.by_kaizen {
            Some(other) => format!("{other} (commit {})", short(&change.sha)),
            None => format!(
                "human commit {} ({}: {})",
                short(&change.sha),
                change.author,
                change.summary
            ),
        };
        let asked_for_revert = self
            .ledger
            .has_open_escalation(&format!("revert_refused {id}"))?;
        let (to, reason) = if *state == KeyState::Undone && asked_for_revert {
            (
                Status::Reverted,
                format!(
                    "reverted by {who}: {how}; the refused revert's escalation closed by itself"
                ),
            )
        } else {
            (
                Status::Superseded,
                format!(
                    "superseded by {who}: {how}; validation ended (counted neither as validated nor as a rollback)"
                ),
            )
        };
        let extra = EngineEvent::HumanCommit {
            intervention: id,
            commit: change.sha.clone(),
            author: change.author.clone(),
            summary: change.summary.clone(),
            how,
            by_intervention: change.by_kaizen,
        };
        for e in self
            .ledger
            .end_by_human(id, to, Stage::Humans, &reason, &extra, "kaizen", now)?
        {
            report.push(e);
        }
        Ok(())
    }

    /// Carries out the resolve requests queued in the ledger, oldest first; each ends done,
    /// with what came of it (a refusal is recorded and printed, never lost).
    pub fn carry_out_resolves(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        for req in self.ledger.pending_resolves()? {
            let now = self.clock.now();
            let outcome =
                self.resolve_by_human(req.intervention, req.end, &req.by, &req.why, report);
            let result = match outcome {
                Ok(text) => text,
                Err(EngineError::Refused { message, .. }) => {
                    let event = EngineEvent::ResolveRefused {
                        intervention: req.intervention,
                        by: req.by.clone(),
                        message,
                    };
                    let text = event.to_string();
                    self.emit(report, event)?;
                    text
                }
                Err(EngineError::Ledger(LedgerError::NotFound(id))) => {
                    format!("no intervention {id}")
                }
                Err(e) => return Err(e),
            };
            self.ledger.finish_resolve(req.id, &result, now)?;
        }
        Ok(())
    }

    /// A human ends `id` as `end` (`kaizen resolve`), recorded with `by` and `why`; its open
    /// escalations close with it. Refused — nothing changed — when the intervention is not live,
    /// has a git operation in flight, or git contradicts the human ("reverted" while the change
    /// is still in effect, "kept" while it is undone). A validated intervention resolved as
    /// kept stays validated (its verdict stands); only its escalations close.
    pub fn resolve_by_human(
        &mut self,
        id: InterventionId,
        end: HumanEnd,
        by: &str,
        why: &str,
        report: &mut CycleReport,
    ) -> Result<String, EngineError> {
        let now = self.clock.now();
        let iv = self.ledger.get(id)?;
        let refuse = |message: String| Err(EngineError::Refused { id, message });
        if !matches!(iv.status, Status::Applied | Status::Validated) {
            return refuse(format!(
                "is {}; only applied or validated interventions can be resolved",
                iv.status
            ));
        }
        if self.ledger.pending()?.iter().any(|(p, _)| p.id == id) {
            return refuse(
                "a git operation on it is in flight; try again after the next cycle".into(),
            );
        }
        let state = self.key_state(&iv, &mut BTreeMap::new());
        match (end, &state) {
            (_, KeyState::Unknown(e)) => {
                return refuse(format!("cannot read its files at the branch tip: {e}"));
            }
            (HumanEnd::Reverted, KeyState::InEffect) => {
                return refuse(format!(
                    "its change is still in effect at the branch tip ({}); undo it first \
                     (`git revert {}` or by hand, committed), or resolve it with --kept",
                    iv.candidate.change_lines().join("; "),
                    iv.commit.as_deref().map(short).unwrap_or("its commit")
                ));
            }
            (HumanEnd::Kept, KeyState::Undone) => {
                return refuse(
                    "its change is no longer in effect at the branch tip (it was undone); \
                     resolve it with --reverted"
                        .into(),
                );
            }
            _ => {}
        }
        let how = match end {
            HumanEnd::Reverted => "reverted",
            HumanEnd::Kept => "kept",
        };
        let reason = format!("resolved by {by} ({how}): {why}");
        let resolved = EngineEvent::Resolved {
            intervention: id,
            by: by.to_string(),
            why: why.to_string(),
            ends: how.to_string(),
        };
        if iv.status == Status::Validated && end == HumanEnd::Kept {
            // Its verdict stands: it stays validated; only its escalations close.
            self.emit(report, resolved)?;
            let closed = self
                .ledger
                .close_escalations(id, Stage::Operator, by, &reason, now)?;
            let n = closed.len();
            for e in closed {
                report.push(e);
            }
            return Ok(format!(
                "{reason}; stays validated, {n} escalation(s) closed"
            ));
        }
        let events = self.ledger.end_by_human(
            id,
            end.status(),
            Stage::Operator,
            &reason,
            &resolved,
            by,
            now,
        )?;
        let n = events.len().saturating_sub(2);
        for e in events {
            report.push(e);
        }
        Ok(format!(
            "{} → {}: {reason} ({n} escalation(s) closed)",
            iv.status,
            end.status()
        ))
    }
}

//! Learn: distil finalized interventions into lesson files, commit them, index them.

use super::{CycleReport, Engine, EngineError};
use crate::clock::Clock;
use crate::event::EngineEvent;
use crate::learn::{DistillInput, Distiller, LessonChange};
use crate::lesson::LessonStatus;
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// What one learn run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LearnReport {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// One line per lesson change (`created L-…`, `updated L-… v3`, `retired L-…: why`).
    pub changes: Vec<String>,
    /// The commit holding the lesson files, if anything changed.
    pub commit: Option<String>,
    /// Lesson files that could not be loaded (reported, left alone).
    pub load_errors: Vec<String>,
}

impl Engine {
    /// Commits an operator's lesson change (`kaizen lessons add` / `retire`) as one commit that
    /// carries the audit head like every kaizen commit, and records `event` once it is made.
    pub fn commit_lesson(
        &mut self,
        files: &[(String, Option<String>)],
        message: &str,
        event: EngineEvent,
    ) -> Result<Option<crate::apply::CommitRef>, EngineError> {
        self.recover_repository(&mut CycleReport::default())?;
        self.applier.set_audit_head(self.ledger.audit_head()?);
        let commit = self
            .applier
            .commit_files(files, message)
            .map_err(|source| EngineError::LessonCommit { source })?;
        self.record(&event)?;
        Ok(commit)
    }

    /// Distils finalized interventions into lessons in `lessons_dir` (inside the repository),
    /// retires lessons whose `retired_when` holds now, commits the lesson files as one commit
    /// (not an intervention, not counted against the budget), indexes them in the ledger, and
    /// offers the active ones to proposers from now on.
    pub fn learn(
        &mut self,
        distiller: &dyn Distiller,
        lessons_dir: &std::path::Path,
    ) -> Result<LearnReport, EngineError> {
        let (changes, load_errors) = self.plan_learn(distiller, lessons_dir)?;
        self.commit_learn(changes, load_errors, distiller.name(), lessons_dir)
    }

    /// The first half of [`Engine::learn`]: the lesson changes the distiller proposes now (and the
    /// lesson files that could not be loaded), without writing anything — so a host may refine
    /// them (e.g. an LLM rewording `because`) before [`Engine::commit_learn`].
    pub fn plan_learn(
        &mut self,
        distiller: &dyn Distiller,
        lessons_dir: &std::path::Path,
    ) -> Result<(Vec<LessonChange>, Vec<String>), EngineError> {
        let now = self.clock.now();
        // A kaizen killed inside an earlier lesson commit left the lesson files behind their
        // commit: finish that first, so the lessons read here are the committed ones.
        self.recover_repository(&mut CycleReport::default())?;
        let (lessons, errors) = crate::lesson::store::load(lessons_dir)?;
        let load_errors = errors.iter().map(|e| e.to_string()).collect();
        let finalized = self.ledger.finalized()?;
        let mut verdicts = BTreeMap::new();
        for iv in &finalized {
            if let Some(v) = self.ledger.verdict(iv.id)? {
                verdicts.insert(
                    iv.id.to_string(),
                    serde_json::to_value(&v).unwrap_or_default(),
                );
            }
        }
        let none = BTreeMap::new();
        let read = distiller.signals_read(&DistillInput {
            now,
            finalized: &finalized,
            verdicts: &verdicts,
            lessons: &lessons,
            recent: &none,
        });
        let mut recent = BTreeMap::new();
        for name in self.settings.signals.keys().filter(|n| read.reads(n)) {
            recent.insert(
                name.clone(),
                self.samples(name, Span::days(8).before(now), now)?,
            );
        }
        let input = DistillInput {
            now,
            finalized: &finalized,
            verdicts: &verdicts,
            lessons: &lessons,
            recent: &recent,
        };
        let changes = distiller.distill(&input)?;
        Ok((changes, load_errors))
    }

    /// The second half of [`Engine::learn`]: commits `changes` as one commit, records and indexes
    /// them, and offers the active lessons to proposers.
    pub fn commit_learn(
        &mut self,
        changes: Vec<LessonChange>,
        load_errors: Vec<String>,
        distiller_name: &str,
        lessons_dir: &std::path::Path,
    ) -> Result<LearnReport, EngineError> {
        let now = self.clock.now();
        let mut report = LearnReport {
            at: now,
            load_errors,
            ..Default::default()
        };
        let rel =
            crate::config::relative_to(lessons_dir, &self.settings.repo_root).ok_or_else(|| {
                EngineError::LessonsOutsideRepo {
                    dir: lessons_dir.to_path_buf(),
                    repo: self.settings.repo_root.clone(),
                }
            })?;
        // Whatever refined the changes (an LLM rewording them) is checked again here: a lesson
        // that would not load back is never committed, so nothing written can stop the loop.
        let mut checked = Vec::with_capacity(changes.len());
        for change in changes {
            let problems = crate::lesson::check(change.lesson());
            if let Some((field, why)) = problems.first() {
                // Bounded: a refined lesson may carry anything.
                let event = EngineEvent::LessonRefused {
                    lesson: change.lesson().id.chars().take(200).collect(),
                    field: field.to_string(),
                    why: why.chars().take(800).collect(),
                };
                event.trace();
                self.ledger.append(now, &event)?;
                report.load_errors.push(event.to_string());
                continue;
            }
            checked.push(change);
        }
        let changes = checked;
        if !changes.is_empty() {
            // A kaizen killed inside an earlier lesson commit left its lock and a stale tree:
            // finish that first, or this commit would be refused forever.
            let mut scratch = CycleReport::default();
            self.recover_repository(&mut scratch)?;
            let writes = crate::lesson::store::change_writes(&rel, &changes);
            let message = crate::lesson::store::commit_message(distiller_name, &changes);
            self.applier.set_audit_head(self.ledger.audit_head()?);
            match self.applier.commit_files(&writes, &message) {
                Ok(commit) => {
                    crate::failpoint::hit("learn.after_commit");
                    report.commit = commit.map(|c| c.sha)
                }
                Err(e) => {
                    let event = EngineEvent::LessonCommitRefused {
                        message: e.to_string(),
                    };
                    event.trace();
                    self.ledger.append(now, &event)?;
                    return Err(EngineError::LessonCommit { source: e });
                }
            }
        }
        for change in &changes {
            let l = change.lesson();
            let event = match change {
                LessonChange::Create(_) => EngineEvent::LessonCreated {
                    lesson: l.id.clone(),
                    version: l.version,
                    prefer: l.prefer.to_string(),
                },
                LessonChange::Update(_) => EngineEvent::LessonStrengthened {
                    lesson: l.id.clone(),
                    version: l.version,
                    evidence: l.evidence.len(),
                },
                LessonChange::Retire(_) => EngineEvent::LessonRetired {
                    lesson: l.id.clone(),
                    reason: l.retired_reason.clone().unwrap_or_default(),
                },
            };
            event.trace();
            self.ledger.append(now, &event)?;
            report.changes.push(event.to_string());
        }
        // Index every lesson now on disk (hand-written ones too), then offer the active ones.
        let (lessons, _) = crate::lesson::store::load(lessons_dir)?;
        for l in &lessons {
            let row = crate::ledger::LessonRow {
                id: l.id.clone(),
                version: l.version,
                status: match l.status {
                    LessonStatus::Active => "active".into(),
                    LessonStatus::Retired => "retired".into(),
                },
                area: l.scope.area.clone(),
                file: format!("{rel}/{}", crate::lesson::store::file_name(&l.id)),
            };
            self.ledger
                .index_lesson(&row, now, &serde_json::to_value(l).unwrap_or_default())?;
        }
        self.lessons = lessons;
        if report.commit.is_some() {
            // Lesson commits go to the remote like every other commit of kaizen's.
            self.publish_step(&mut CycleReport::default(), true)?;
        }
        Ok(report)
    }
}

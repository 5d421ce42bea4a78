//! Check: the invariant checker. Ledger and history agree, kaizen's files are clean in the
//! index, nothing kaizen left behind (locks, temp files), no intervention stuck half-way, lessons
//! committed. Repairs only what is unambiguously kaizen's (through [`Applier::recover`]); the
//! rest is reported and recorded for a human.
//!
//! [`Applier::recover`]: crate::apply::Applier::recover

use super::{CycleReport, ESCALATE_AGAIN, Engine, EngineError};
use crate::clock::Clock;
use crate::config::Mode;
use crate::event::{EngineEvent, Stage};
use crate::intervention::{InterventionId, Status};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How many cycles of a long-running engine pass between two checks (the first cycle always
/// checks).
pub const CHECK_EVERY_CYCLES: u32 = 12;

/// An engine's first cycle checks unless a check (of any process on this ledger) ran less than
/// this long ago: `kaizen cycle` from cron every 5 minutes is a new engine each time, and a
/// full check (two walks of the history, one of the working tree) in every one of them was the
/// bulk of a cycle's cost in a large repository.
pub const CHECK_INTERVAL: crate::span::Span = crate::span::Span::hours(1);

/// Ledger meta key: when the last in-cycle check ran (ms since the epoch).
const META_LAST_CHECK: &str = "last_check_at";

/// Ledger meta key: the trailer commits the last check found and the history markers it saw
/// ([`TrailersSeen`]), so the next in-cycle check walks only the commits made since.
const META_TRAILERS_SEEN: &str = "trailers_seen";

/// What a check found in the history, kept between checks (and processes) in the ledger.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct TrailersSeen {
    /// The applier's history markers (branch tips) when they were walked.
    markers: Vec<String>,
    /// Every trailer commit reachable from them (within the bounded walk).
    commits: Vec<crate::apply::TrailerCommit>,
}

/// How far back finalized interventions are checked against the history (older commits may lie
/// beyond the bounded history walk).
pub const RECENT: crate::span::Span = crate::span::Span::days(30);

/// Violation kind of a local commit not yet on the configured remote.
pub const UNPUSHED_COMMIT: &str = "unpushed_commit";

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// A stable kind: `commit_without_row`, `row_without_commit`, `revert_without_row`,
    /// `stuck_pending`, `stuck_proposed`, `applied_without_commit`, `index_stale`,
    /// `lesson_uncommitted`, or a repository finding (`stale_git_lock`, `temp_file`, ...).
    pub kind: String,
    /// What it concerns (an intervention id, a commit, a path).
    pub subject: String,
    /// For a human: what is wrong and what to do.
    pub detail: String,
    /// Whether it was repaired (only where the repair is unambiguous).
    pub repaired: bool,
}

/// What one check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Every violation, repaired ones included.
    pub violations: Vec<Violation>,
}

impl CheckReport {
    /// Violations still open (not repaired).
    pub fn open(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| !v.repaired)
    }

    /// Whether every invariant holds (after repairs).
    pub fn is_clean(&self) -> bool {
        self.open().next().is_none()
    }
}

impl Engine {
    /// Checks every invariant; with `repair`, repairs what is unambiguously kaizen's. Each
    /// violation is recorded as an event (`invariant_violation`, or `repaired`); the same open
    /// violation is recorded again only after [`ESCALATE_AGAIN`].
    pub fn check(&mut self, repair: bool) -> Result<CheckReport, EngineError> {
        let (report, events) = self.check_recording(repair, false)?;
        for e in &events {
            e.trace();
        }
        Ok(report)
    }

    /// The check; with `incremental`, the history is walked only past the markers the last
    /// check kept (see [`Engine::trailer_commits`]); without, all of it (`kaizen check`).
    fn check_recording(
        &mut self,
        repair: bool,
        incremental: bool,
    ) -> Result<(CheckReport, Vec<EngineEvent>), EngineError> {
        let now = self.clock.now();
        let mut report = CheckReport {
            at: now,
            violations: Vec::new(),
        };
        let v = &mut report.violations;
        let mut push = |kind: &str, subject: String, detail: String, repaired: bool| {
            v.push(Violation {
                kind: kind.to_string(),
                subject,
                detail,
                repaired,
            })
        };

        // The repository: kaizen's leftovers, foreign locks, operations in progress. The
        // in-cycle check looks as the routine repair does (the working tree only where a kill
        // left evidence in the git dir); `kaizen check` walks the whole tree.
        let found = if incremental && repair {
            self.applier.recover_routine()
        } else {
            self.applier.recover(repair)
        };
        match found {
            Ok(findings) => {
                for f in findings {
                    push(&f.kind, f.path, f.detail, f.repaired);
                }
            }
            Err(e) => push(
                "repository_unreadable",
                self.settings.repo_root.display().to_string(),
                format!("cannot inspect the repository: {e}"),
                false,
            ),
        }

        // Canary worktrees a killed trial left behind.
        for c in &self.canaries {
            for f in c.orphans(repair) {
                push(&f.kind, f.path, f.detail, f.repaired);
            }
        }

        // The ledger on its own: nothing stuck half-way.
        let all = self.ledger.all()?;
        let pending: BTreeMap<InterventionId, crate::ledger::Pending> = self
            .ledger
            .pending()?
            .into_iter()
            .map(|(iv, p)| (iv.id, p))
            .collect();
        for (id, p) in &pending {
            push(
                "stuck_pending",
                id.to_string(),
                format!(
                    "a git {} is marked in flight (a crash interrupted it); the next `kaizen cycle` reconciles it",
                    match p {
                        crate::ledger::Pending::Apply => "apply",
                        crate::ledger::Pending::Revert => "revert",
                    }
                ),
                false,
            );
        }
        for (id, block, _) in self.ledger.pending_flips()? {
            push(
                "stuck_pending",
                id.to_string(),
                format!(
                    "the switchback flip of block {block} is marked in flight (a crash interrupted it); the next `kaizen cycle` reconciles it"
                ),
                false,
            );
        }
        for iv in &all {
            if self.settings.mode_for(&iv.candidate.area) == Mode::Autonomous
                && iv.status == Status::Proposed
                && !pending.contains_key(&iv.id)
                && !self.awaits_approval(iv.id)?
            {
                push(
                    "stuck_proposed",
                    iv.id.to_string(),
                    "left `proposed` in autonomous mode (an interrupted cycle); the next `kaizen cycle` blocks it".into(),
                    false,
                );
            }
            if matches!(iv.status, Status::Applied | Status::Validated) && iv.commit.is_none() {
                push(
                    "applied_without_commit",
                    iv.id.to_string(),
                    format!("is {} but records no commit", iv.status),
                    false,
                );
            }
        }

        // Ledger ↔ history: every recorded commit is there, every trailer has its row.
        match self.trailer_commits(incremental) {
            Err(e) => push(
                "repository_unreadable",
                self.settings.repo_root.display().to_string(),
                format!("cannot read the history: {e}"),
                false,
            ),
            Ok(commits) if !commits.is_empty() || all.iter().any(|i| i.commit.is_some()) => {
                let shas: BTreeSet<&str> = commits.iter().map(|c| c.sha.as_str()).collect();
                let by_id: BTreeMap<InterventionId, &crate::intervention::Intervention> =
                    all.iter().map(|i| (i.id, i)).collect();
                // The history walk is bounded: judge rows whose commits are recent enough to be
                // inside it (live ones, and those finalized within RECENT).
                let recent_since = now - RECENT.to_chrono();
                for iv in all.iter().filter(|i| {
                    i.status == Status::Applied
                        || (i.status != Status::Rejected
                            && i.finalized_at.is_some_and(|t| t >= recent_since))
                }) {
                    if let Some(c) = &iv.commit
                        && !shas.contains(c.as_str())
                    {
                        push(
                            "row_without_commit",
                            iv.id.to_string(),
                            format!(
                                "records commit {c}, which no local branch holds (history rewritten?)"
                            ),
                            false,
                        );
                    }
                    if let Some(r) = &iv.revert_commit
                        && !shas.contains(r.as_str())
                    {
                        push(
                            "row_without_commit",
                            iv.id.to_string(),
                            format!("records revert commit {r}, which no local branch holds"),
                            false,
                        );
                    }
                }
                for c in &commits {
                    let row = by_id.get(&c.id);
                    let (kind, ok) = match &c.reverts {
                        // A switchback flip: recorded on its block.
                        None if c.switchback.is_some() => {
                            ("commit_without_row", self.ledger.is_flip_of(c.id, &c.sha)?)
                        }
                        None => (
                            "commit_without_row",
                            row.is_some_and(|r| r.commit.as_deref() == Some(c.sha.as_str()))
                                || pending.get(&c.id) == Some(&crate::ledger::Pending::Apply),
                        ),
                        Some(_) => (
                            "revert_without_row",
                            row.is_some_and(|r| r.revert_commit.as_deref() == Some(c.sha.as_str()))
                                || pending.get(&c.id) == Some(&crate::ledger::Pending::Revert),
                        ),
                    };
                    if !ok {
                        push(
                            kind,
                            c.sha.clone(),
                            format!(
                                "commit {} on `{}` names {} but the ledger has no {} for it{}",
                                short(&c.sha),
                                c.branch,
                                c.id,
                                if c.reverts.is_some() {
                                    "revert"
                                } else {
                                    "intervention"
                                },
                                match row {
                                    Some(r) => format!(
                                        " (its {} records {})",
                                        r.id,
                                        r.commit.as_deref().map(short).unwrap_or("no commit")
                                    ),
                                    None => " (a lost or replaced state dir?)".to_string(),
                                }
                            ),
                            false,
                        );
                    }
                }
            }
            Ok(_) => {}
        }

        // The remote: local commits GitOps does not see yet (as of the last fetch or push).
        if let Some(publisher) = self.publisher.as_ref() {
            let remote = publisher.remote().to_string();
            match publisher.unpushed() {
                Ok(commits) => {
                    for c in commits {
                        push(
                            UNPUSHED_COMMIT,
                            c.sha.clone(),
                            format!(
                                "{} commit {} ({}) is not on `{remote}` yet{}",
                                if c.kaizen { "kaizen's" } else { "a human's" },
                                short(&c.sha),
                                c.subject,
                                if c.kaizen {
                                    "; the next cycle pushes it (see `kaizen status` for failures)"
                                } else {
                                    "; kaizen never pushes or rewrites a human's commit: push it yourself"
                                }
                            ),
                            false,
                        );
                    }
                }
                Err(e) => push(
                    "remote_unreadable",
                    remote,
                    format!("cannot compare the branch with the remote: {e}"),
                    false,
                ),
            }
        }

        // kaizen's files: what it applied (still live) and its lessons, staged exactly as HEAD.
        let mut files: BTreeSet<String> = BTreeSet::new();
        for iv in all.iter().filter(|i| i.status == Status::Applied) {
            for e in &iv.candidate.change {
                files.insert(e.file().to_string());
            }
        }
        let lessons = self.ledger.indexed_lessons()?;
        for l in &lessons {
            files.insert(l.file.clone());
        }
        let files: Vec<String> = files.into_iter().collect();
        match self.applier.path_states(&files) {
            Ok(states) => {
                for s in states {
                    if !s.index_matches_head {
                        push(
                            "index_stale",
                            s.path.clone(),
                            "the index differs from HEAD for a file kaizen commits (a plain `git commit` would commit it); \
                             check `git diff --cached` and reset or commit it".into(),
                            false,
                        );
                    }
                    if !s.in_head && lessons.iter().any(|l| l.file == s.path) {
                        push(
                            "lesson_uncommitted",
                            s.path.clone(),
                            "an indexed lesson whose file is not in HEAD".into(),
                            false,
                        );
                    }
                }
            }
            Err(e) => push(
                "repository_unreadable",
                self.settings.repo_root.display().to_string(),
                format!("cannot read the index: {e}"),
                false,
            ),
        }

        let events = self.record_check(&report)?;
        Ok((report, events))
    }

    /// Records `report`'s violations as events (an open one again only after ESCALATE_AGAIN:
    /// its key, `invariant <kind> <subject>`, is raised in the ledger's `escalations` table) and
    /// returns the events recorded.
    fn record_check(&mut self, report: &CheckReport) -> Result<Vec<EngineEvent>, EngineError> {
        let now = report.at;
        let mut recorded = Vec::new();
        for v in &report.violations {
            if v.repaired {
                let event = EngineEvent::Repaired {
                    stage: Stage::Check,
                    finding: v.kind.clone(),
                    subject: v.subject.clone(),
                    detail: v.detail.clone(),
                };
                self.ledger.append(now, &event)?;
                recorded.push(event);
                continue;
            }
            let key = format!("invariant {} {}", v.kind, v.subject);
            if self
                .ledger
                .last_raised(&key)?
                .is_some_and(|t| t > ESCALATE_AGAIN.before(now))
            {
                continue;
            }
            let event = EngineEvent::InvariantViolation {
                intervention: v.subject.parse().ok(),
                violation: v.kind.clone(),
                subject: v.subject.clone(),
                detail: v.detail.clone(),
            };
            self.ledger.append_raised(now, &key, &event)?;
            recorded.push(event);
        }
        // `/health` reads the open count from the last of these; recorded only when it
        // changes, so a clean repository checked every hour adds nothing.
        let open = report.open().count() as u64;
        if self.ledger.invariant_violations_open()? != open {
            let event = EngineEvent::InvariantsChecked { open };
            self.ledger.append(now, &event)?;
            recorded.push(event);
        }
        Ok(recorded)
    }

    /// The start-up / every-N-cycles check inside a cycle (an engine's first cycle checks only
    /// when the last check is [`CHECK_INTERVAL`] old): what it recorded joins the report (open
    /// violations are escalations there, so they reach notifiers too).
    pub(super) fn check_in_cycle(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        let due = if self.cycles_since_check == 0 {
            let last = self
                .ledger
                .meta(META_LAST_CHECK)?
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis);
            // Never checked, checked an interval ago, or the clock went back: check.
            last.is_none_or(|t| t > now || CHECK_INTERVAL.after(t) <= now)
        } else {
            self.cycles_since_check >= CHECK_EVERY_CYCLES
        };
        self.cycles_since_check = if due { 1 } else { self.cycles_since_check + 1 };
        if !due {
            return Ok(());
        }
        let (_, events) = self.check_recording(true, true)?;
        self.ledger
            .set_meta(META_LAST_CHECK, &now.timestamp_millis().to_string())?;
        for event in events {
            report.push(event);
        }
        Ok(())
    }
}

impl Engine {
    /// Every trailer commit on a local branch, as [`crate::apply::Applier::trailer_commits`]
    /// finds them. With `incremental`, those the last check kept in the ledger plus those the
    /// applier finds past the markers kept with them (when the history only grew since; else it
    /// walks everything); what is found is kept for the next check. The same commits either way:
    /// a commit kept is one a whole walk finds too, because its marker is still in a branch's
    /// history.
    fn trailer_commits(
        &mut self,
        incremental: bool,
    ) -> Result<Vec<crate::apply::TrailerCommit>, crate::apply::ApplyError> {
        let kept: TrailersSeen = if incremental {
            match self.ledger.meta(META_TRAILERS_SEEN) {
                Ok(v) => v
                    .and_then(|v| serde_json::from_str(&v).ok())
                    .unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(stage = "check", error = %e, "cannot read the trailer commits kept; walking the whole history");
                    TrailersSeen::default()
                }
            }
        } else {
            TrailersSeen::default()
        };
        let walk = self.applier.trailer_commits_since(&kept.markers)?;
        // Nothing new since the last check: nothing to write either.
        let unchanged = walk.incremental && walk.commits.is_empty() && walk.markers == kept.markers;
        let mut commits = walk.commits;
        if walk.incremental {
            let found: BTreeSet<String> = commits.iter().map(|c| c.sha.clone()).collect();
            let mut old: Vec<_> = kept
                .commits
                .into_iter()
                .filter(|c| !found.contains(&c.sha))
                .collect();
            old.append(&mut commits);
            commits = old;
        }
        tracing::debug!(
            stage = "check",
            incremental = walk.incremental,
            trailer_commits = commits.len(),
            "history walked for trailer commits"
        );
        if !walk.markers.is_empty() && !unchanged {
            let seen = TrailersSeen {
                markers: walk.markers,
                commits,
            };
            // Keeping it only saves the next check a walk: a failure costs that, nothing else.
            match serde_json::to_string(&seen) {
                Ok(text) => {
                    if let Err(e) = self.ledger.set_meta(META_TRAILERS_SEEN, &text) {
                        tracing::warn!(stage = "check", error = %e, "cannot keep the trailer commits found");
                    }
                }
                Err(e) => {
                    tracing::warn!(stage = "check", error = %e, "cannot keep the trailer commits found")
                }
            }
            commits = seen.commits;
        }
        Ok(commits)
    }
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

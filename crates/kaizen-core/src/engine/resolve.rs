//! Resolve: before the guards see a candidate, its `config_set` values are made concrete against
//! the branch tip (`*1.5` on 128 → 192, never clamped) and what each replaces is recorded, so
//! the guards, the commit and `kaizen show` all speak of the same old → new. A change the
//! repository already holds is `already_applied`: recorded as an event, never a commit, never
//! an intervention (so it spends no budget).

use super::{CycleReport, Engine, EngineError};
use crate::apply::Applier;
use crate::clock::Clock;
use crate::edit::{Edit, EditError, Resolved, resolve_all};
use crate::event::EngineEvent;
use crate::guard::guards::BlockedPaths;
use crate::guard::{Decision, Guard, GuardContext, LedgerView};
use crate::intervention::Candidate;

/// What resolving a candidate found.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Concrete values, `origin.resolved` filled in.
    Ready(Candidate),
    /// Every edit sets a value the repository already holds.
    AlreadyApplied(Candidate),
    /// The change cannot be computed (a relative value on a missing or non-numeric key, an
    /// unreadable file); the candidate is returned as proposed, with the reason. It is blocked.
    Unresolvable(Candidate, String),
}

impl Engine {
    /// Resolves `candidate` against the repository as the applier sees it.
    pub fn resolve(&self, candidate: Candidate) -> Resolution {
        if !candidate
            .change
            .iter()
            .any(|e| matches!(e, Edit::ConfigSet { .. }))
        {
            return Resolution::Ready(candidate);
        }
        // Never read a blocked path (a secret's value would land in the ledger): such a
        // candidate goes to the guards as proposed, and `blocked_paths` refuses it.
        let view = LedgerView::default();
        let ctx = GuardContext {
            view: &view,
            policy: &self.settings.policy,
            now: self.clock.now(),
            repo_root: &self.settings.repo_root,
        };
        match BlockedPaths.check(&candidate, &ctx) {
            Ok(v) if v.decision == Decision::Pass => {}
            _ => return Resolution::Ready(candidate),
        }
        let resolved = match self.kept_resolutions.lock() {
            Ok(mut kept) => kept.resolve(&candidate.change, self.applier.as_ref()),
            // A panic mid-update: resolve afresh.
            Err(_) => resolve_all(&candidate.change, |file: &str| {
                self.applier.read_file(file).map_err(|e| e.to_string())
            }),
        };
        match resolved {
            Err(e) => {
                Resolution::Unresolvable(candidate, format!("cannot resolve the change: {e}"))
            }
            Ok((edits, resolved)) => {
                let all_set = edits.iter().all(|e| matches!(e, Edit::ConfigSet { .. }));
                let unchanged = resolved.iter().all(|r| r.old.as_ref() == Some(&r.new));
                let mut c = candidate;
                c.change = edits;
                c.origin.resolved = resolved;
                if all_set && unchanged {
                    Resolution::AlreadyApplied(c)
                } else {
                    Resolution::Ready(c)
                }
            }
        }
    }

    /// Records that `candidate`'s change is already in place: one `already_applied` event (not
    /// repeated within the dedup window for the same change), no intervention, no commit.
    pub(super) fn already_applied(
        &mut self,
        candidate: &Candidate,
        proposer: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let event = EngineEvent::AlreadyApplied {
            proposer: proposer.to_string(),
            rule: candidate.origin.rule.clone(),
            title: candidate.title.clone(),
            area: candidate.area.clone(),
            change: candidate.change_lines(),
        };
        self.note_suppressed(
            candidate,
            proposer,
            crate::suppression::SuppressedBy::AlreadyApplied,
            None,
            format!(
                "the repository already holds {}",
                candidate.change_lines().join("; ")
            ),
        )?;
        let since = self.settings.policy.dedup_window.before(now);
        let repeat = self
            .ledger
            .events_between(since, now)?
            .iter()
            .any(|e| e.event == event);
        if repeat {
            report.suppressed += 1;
            return Ok(());
        }
        self.emit(report, event)
    }
}

/// The resolved edits of recent changes, kept with the ids of the file contents they were
/// resolved against ([`Applier::read_file_with_id`]). A rule that keeps firing resolves the same
/// change against the same files every cycle (then counted as a repeat): reading the file from
/// the tip's tree and parsing it each time was 5% of a 90-day simulated run (issue 12, bench 4).
///
/// # Invariants
/// - An entry is used only for an equal change whose every file read then has the same id at
///   the tip now ([`Applier::file_id`]): equal ids, equal contents, and resolving is a function
///   of the change and those contents (the files read, and in which order, follow from them).
///   So what it answers is what [`resolve_all`] on fresh reads would answer.
/// - Nothing read without an id (an applier without ids) or whose read failed is kept: a failed
///   read may succeed next time.
/// - At most [`KeptResolutions::ENTRIES`] entries, the oldest dropped first.
#[derive(Debug, Default)]
pub(crate) struct KeptResolutions {
    entries: std::collections::VecDeque<KeptResolution>,
}

#[derive(Debug)]
struct KeptResolution {
    change: Vec<Edit>,
    /// Each file read, with the id of the content read.
    reads: Vec<(String, String)>,
    result: Result<(Vec<Edit>, Vec<Resolved>), EditError>,
}

impl KeptResolutions {
    /// How many changes are kept: a few per firing rule.
    pub(crate) const ENTRIES: usize = 64;

    /// `change` resolved against `applier`'s tip, as [`resolve_all`] with
    /// [`Applier::read_file`] would resolve it now.
    pub(crate) fn resolve(
        &mut self,
        change: &[Edit],
        applier: &dyn Applier,
    ) -> Result<(Vec<Edit>, Vec<Resolved>), EditError> {
        let current = |(file, id): &(String, String)| matches!(applier.file_id(file), Ok(Some(now)) if now == *id);
        if let Some(kept) = self
            .entries
            .iter()
            .find(|k| k.change == change && k.reads.iter().all(current))
        {
            return kept.result.clone();
        }
        let mut reads = Vec::new();
        let mut keep = true;
        let result = resolve_all(change, |file: &str| match applier.read_file_with_id(file) {
            Ok((content, Some(id))) => {
                reads.push((file.to_string(), id));
                Ok(content)
            }
            Ok((content, None)) => {
                keep = false;
                Ok(content)
            }
            Err(e) => {
                keep = false;
                Err(e.to_string())
            }
        });
        if keep {
            // The same change resolved against older contents is stale now.
            self.entries.retain(|k| k.change != change);
            if self.entries.len() >= Self::ENTRIES {
                self.entries.pop_front();
            }
            self.entries.push_back(KeptResolution {
                change: change.to_vec(),
                reads,
                result: result.clone(),
            });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::apply::{ApplyError, CommitRef};
    use crate::intervention::{Candidate, InterventionId};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Each file's version and content (or the error reading it gives).
    type Versions = BTreeMap<String, (u64, Result<String, String>)>;

    /// Files with a version counter each; `ids: false` behaves like an applier without ids.
    #[derive(Default)]
    struct Files {
        files: Mutex<Versions>,
        next: AtomicU64,
        ids: bool,
        reads: AtomicUsize,
    }

    impl Files {
        fn set(&self, file: &str, content: Option<Result<String, String>>) {
            let version = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            let mut files = self.files.lock().unwrap();
            match content {
                Some(c) => {
                    files.insert(file.to_string(), (version, c));
                }
                None => {
                    files.remove(file);
                }
            }
        }
    }

    impl Applier for Files {
        fn read_file(&self, path: &str) -> Result<Option<String>, ApplyError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            match self.files.lock().unwrap().get(path) {
                None => Ok(None),
                Some((_, Ok(c))) => Ok(Some(c.clone())),
                Some((_, Err(e))) => Err(ApplyError::Edit(e.clone())),
            }
        }
        fn read_file_with_id(
            &self,
            path: &str,
        ) -> Result<(Option<String>, Option<String>), ApplyError> {
            let content = self.read_file(path)?;
            Ok((content, self.file_id(path)?))
        }
        fn file_id(&self, path: &str) -> Result<Option<String>, ApplyError> {
            if !self.ids {
                return Ok(None);
            }
            Ok(Some(
                self.files
                    .lock()
                    .unwrap()
                    .get(path)
                    .map_or("absent".to_string(), |(v, _)| v.to_string()),
            ))
        }
        fn preflight(&self, _: &Candidate) -> Result<(), ApplyError> {
            unimplemented!()
        }
        fn apply(&self, _: InterventionId, _: &Candidate) -> Result<CommitRef, ApplyError> {
            unimplemented!()
        }
        fn apply_with_notes(
            &self,
            _: InterventionId,
            _: &Candidate,
            _: &str,
        ) -> Result<CommitRef, ApplyError> {
            unimplemented!()
        }
        fn revert(&self, _: InterventionId, _: &str, _: &str) -> Result<CommitRef, ApplyError> {
            unimplemented!()
        }
        fn find_applied(&self, _: InterventionId) -> Result<Option<String>, ApplyError> {
            unimplemented!()
        }
        fn find_reverted(&self, _: InterventionId) -> Result<Option<String>, ApplyError> {
            unimplemented!()
        }
        fn sync_worktree(&self, _: InterventionId, _: &str) -> Result<(), ApplyError> {
            unimplemented!()
        }
        fn commit_files(
            &self,
            _: &[(String, Option<String>)],
            _: &str,
        ) -> Result<Option<CommitRef>, ApplyError> {
            unimplemented!()
        }
    }

    fn changes() -> Vec<Vec<Edit>> {
        let set = |file: &str, key: &str, value: serde_json::Value| Edit::ConfigSet {
            file: file.into(),
            key: key.into(),
            value,
        };
        vec![
            vec![set("a.yaml", "cache.size", "*1.5".into())],
            vec![set("a.yaml", "cache.size", 256.into())],
            vec![
                set("a.yaml", "cache.size", "+10%".into()),
                set("b.json", "workers", "+2".into()),
            ],
            vec![
                Edit::FileWrite {
                    file: "b.json".into(),
                    content: "{\"workers\": 3}".into(),
                },
                set("b.json", "workers", "*2".into()),
            ],
            vec![set("b.json", "workers", "-1".into())],
            vec![set("c.txt", "x", 1.into())],
        ]
    }

    /// Random edits of the files between random resolutions (values changed, files deleted,
    /// made unparsable, made unreadable): every answer equals a fresh `resolve_all`, and an
    /// unchanged file is not read again.
    #[test]
    fn kept_resolutions_equal_a_fresh_resolve_after_any_sequence_of_edits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let changes = changes();
        let mut hits = 0;
        for ids in [true, false] {
            let files = Files {
                ids,
                ..Files::default()
            };
            let mut kept = KeptResolutions::default();
            for step in 0..3000 {
                if rng.random_bool(0.2) {
                    let file = ["a.yaml", "b.json", "c.txt"][rng.random_range(0..3)];
                    let n = rng.random_range(0..400);
                    let content = match rng.random_range(0..8) {
                        0 => None,
                        1 => Some(Ok("{ not: [valid".to_string())),
                        2 => Some(Err("cannot read".to_string())),
                        3 => Some(Ok(format!("cache:\n  size: {n}.5\n"))),
                        _ if file == "b.json" => Some(Ok(format!("{{\"workers\": {n}}}"))),
                        _ => Some(Ok(format!("cache:\n  size: {n}\nother: 1\n"))),
                    };
                    files.set(file, content);
                }
                let change = &changes[rng.random_range(0..changes.len())];
                let before = files.reads.load(Ordering::Relaxed);
                let got = kept.resolve(change, &files);
                if files.reads.load(Ordering::Relaxed) == before {
                    hits += 1;
                }
                let fresh = resolve_all(change, |f: &str| {
                    files.read_file(f).map_err(|e| e.to_string())
                });
                assert_eq!(got, fresh, "ids {ids}, step {step}, change {change:?}");
                assert!(kept.entries.len() <= KeptResolutions::ENTRIES);
            }
            if !ids {
                // Only a change that reads nothing (a whole-file write first) is kept.
                assert!(
                    kept.entries.iter().all(|k| k.reads.is_empty()),
                    "nothing read is kept without ids"
                );
            }
        }
        assert!(hits > 1000, "kept resolutions were used ({hits})");
    }
}

//! Stage 4, apply: each intervention becomes exactly one commit, so it can be reverted exactly.

use crate::intervention::{Candidate, InterventionId};

/// Why an apply or revert did not happen. Nothing was changed when one of these is returned,
/// except where the variant says otherwise.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Files the change touches have uncommitted edits; a human's work is never clobbered.
    #[error("uncommitted changes in {paths:?}: refusing to touch a human's work")]
    Dirty {
        /// The dirty paths.
        paths: Vec<String>,
    },
    /// A revert would conflict with later commits.
    #[error("revert of {commit} conflicts in {paths:?}: left untouched, needs a human")]
    Conflict {
        /// The commit that could not be reverted.
        commit: String,
        /// Conflicting paths.
        paths: Vec<String>,
    },
    /// The edit itself is impossible (bad key path, unparsable file...).
    #[error("{0}")]
    Edit(String),
    /// A path failed the applier's own containment check (defence in depth behind the guard).
    #[error("path {path:?} is outside the repository or not allowed: {why}")]
    Path {
        /// The path.
        path: String,
        /// Why.
        why: String,
    },
    /// The change would not change anything.
    #[error("the change is a no-op: every file already has the intended content")]
    NoOp,
    /// Someone moved the branch while we worked; nothing was committed.
    #[error("the branch moved while applying (concurrent commit); nothing committed")]
    Raced,
    /// The repository is busy: another process holds `.git/index.lock`, or a merge,
    /// cherry-pick, revert or rebase is in progress. Nothing was committed; try again later.
    #[error("the repository is busy ({what}); nothing committed")]
    Busy {
        /// What holds it (the lock file, or the operation in progress).
        what: String,
    },
    /// A git or I/O operation failed; `operation` says what kaizen was doing, naming the file,
    /// ref or commit concerned.
    #[error("git: {operation}: {source}")]
    Git {
        /// What kaizen was doing ("cannot read config/app.yaml", "cannot revert 1a2b3c").
        operation: String,
        /// The git or I/O error itself.
        #[source]
        source: ErrorSource,
    },
    /// The repository is not as kaizen needs it (detached HEAD, another branch checked out, a
    /// missing branch, a commit that is not the intervention's…); the text says what to do.
    #[error("git: {0}")]
    Repository(String),
}

impl ApplyError {
    /// A [`ApplyError::Git`] for `operation` failed with `source`.
    pub fn git(
        operation: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ApplyError::Git {
            operation: operation.to_string(),
            source: ErrorSource::new(source),
        }
    }
}

/// The underlying error of an [`ApplyError::Git`], shared so the error stays `Clone`; two are
/// equal when they read the same (errors from git2 or `std::io` are not comparable otherwise).
#[derive(Clone)]
pub struct ErrorSource(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl ErrorSource {
    /// Wraps `e`.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ErrorSource(std::sync::Arc::new(e))
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for ErrorSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for ErrorSource {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Something a repository inspection found that is out of order (a stale lock, a temp file left
/// by a killed kaizen, a working tree a crash left behind its commit).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// A stable kind (`stale_git_lock`, `foreign_git_lock`, `ref_lock`, `temp_file`,
    /// `worktree_stale`, `operation_in_progress`, ...).
    pub kind: String,
    /// The file concerned, relative to the repository root (`.git/...` for git's own files).
    pub path: String,
    /// For a human: what was seen and what to do.
    pub detail: String,
    /// Whether it was repaired (only where the repair is unambiguous).
    pub repaired: bool,
}

/// A commit in the repository whose trailers name an intervention (an apply, or a revert).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrailerCommit {
    /// Full hex id.
    pub sha: String,
    /// A local branch holding it.
    pub branch: String,
    /// The intervention its `Kaizen-Intervention` trailer names.
    pub id: InterventionId,
    /// For a revert: the commit its `Kaizen-Reverts` trailer names.
    pub reverts: Option<String>,
    /// For a switchback flip: its `Kaizen-Switchback` trailer (`K-000123/block 3`).
    pub switchback: Option<String>,
}

/// What [`Applier::trailer_commits_since`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailerWalk {
    /// The trailer commits walked: with `incremental`, only those not reachable from the
    /// markers given; otherwise every one (as [`Applier::trailer_commits`]).
    pub commits: Vec<TrailerCommit>,
    /// The history markers now (the local branch tips), to give to the next call; empty when
    /// the applier cannot tell (then nothing may be kept between calls).
    pub markers: Vec<String>,
    /// Whether the markers given were used: every one of them is still in the history of a
    /// local branch, so every trailer commit found before is still there and `commits` adds to
    /// those. `false` (a branch reset or deleted, history rewritten, no markers given): the
    /// whole history was walked and `commits` replaces what was found before.
    pub incremental: bool,
}

/// One flip of a switchback ([`Applier::flip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    /// The `Kaizen-Switchback` trailer's value: `K-000123/block 3` (or `K-000123/end` for the
    /// flip that leaves a validated change on). Unique per intervention, so reconciliation
    /// finds the commit by it.
    pub marker: String,
    /// Whether the change is on after the flip.
    pub on: bool,
    /// The commit whose change the flip undoes: the apply commit (or the last flip on) when
    /// switching off, the last flip off when switching back on.
    pub undoes: String,
    /// The intervention's title, for the subject line.
    pub title: String,
    /// Why, for the commit message.
    pub reason: String,
}

impl Flip {
    /// The marker of block `block` (1-based) of `id`'s switchback.
    pub fn block_marker(id: InterventionId, block: usize) -> String {
        format!("{id}/block {block}")
    }

    /// The marker of the flip that ends `id`'s switchback with the change on.
    pub fn end_marker(id: InterventionId) -> String {
        format!("{id}/end")
    }
}

/// How a path stands between HEAD, the index and the working tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathState {
    /// The path, relative to the repository root.
    pub path: String,
    /// Whether HEAD holds it.
    pub in_head: bool,
    /// Whether the index holds exactly HEAD's version (or, absent from HEAD, nothing).
    pub index_matches_head: bool,
    /// Whether the working tree holds exactly HEAD's version (or, absent from HEAD, nothing).
    pub disk_matches_head: bool,
}

/// The newest commit that changed a path after a given commit ([`Applier::last_change`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathChange {
    /// Full hex id.
    pub sha: String,
    /// Its author (`Name <email>`).
    pub author: String,
    /// Its subject line.
    pub summary: String,
    /// The intervention its `Kaizen-Intervention` trailer names (`None`: a human's commit).
    pub by_kaizen: Option<InterventionId>,
    /// Whether it deleted the path.
    pub deleted: bool,
}

/// A commit made by the applier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRef {
    /// Full hex id.
    pub sha: String,
    /// The branch it was made on (`None`: the applier has no branches, e.g. the simulator).
    pub branch: Option<String>,
    /// Its parent, the branch's tip it was made on (full hex id; `None`: the branch's first
    /// commit, or an applier without a history).
    pub parent: Option<String>,
}

/// Applies and reverts interventions in the target repository.
///
/// Invariants: one intervention → one commit whose trailers name it (`Kaizen-Intervention: K-…`);
/// a revert is one commit naming the reverted commit; refuses (touching nothing) when the touched
/// files have uncommitted edits; `find_*` let the engine reconcile after a crash.
pub trait Applier: Send {
    /// The content of repo-relative `path` at the branch tip (`None`: no such file), which is
    /// what an apply would start from. Used to resolve relative values before the guards run.
    fn read_file(&self, path: &str) -> Result<Option<String>, ApplyError>;
    /// [`Applier::read_file`] with an id of the content read, taken from the same tip: two
    /// reads with equal ids have equal content (the blob's object id in git). `None`: this
    /// applier has no such ids, and what was read cannot be recognised later without reading
    /// it again (the default).
    fn read_file_with_id(
        &self,
        path: &str,
    ) -> Result<(Option<String>, Option<String>), ApplyError> {
        Ok((self.read_file(path)?, None))
    }
    /// The id [`Applier::read_file_with_id`] would give `path`'s content at the branch tip now,
    /// without reading the content (`None`: no ids, the default). What the engine keeps from a
    /// read (the resolved values of a change) is reused only while the ids are unchanged.
    fn file_id(&self, path: &str) -> Result<Option<String>, ApplyError> {
        let _ = path;
        Ok(None)
    }
    /// Checks that the change can be applied now (clean files, edits possible) without applying.
    fn preflight(&self, candidate: &Candidate) -> Result<(), ApplyError>;
    /// Commits the change.
    fn apply(&self, id: InterventionId, candidate: &Candidate) -> Result<CommitRef, ApplyError>;
    /// Commits the change with `notes` (e.g. the canary's before/after figures) in the commit
    /// message, before its trailers. Appliers without messages ignore the notes.
    fn apply_with_notes(
        &self,
        id: InterventionId,
        candidate: &Candidate,
        notes: &str,
    ) -> Result<CommitRef, ApplyError> {
        let _ = notes;
        self.apply(id, candidate)
    }
    /// Reverts `commit` (the commit that applied `id`), explaining `reason` in the message.
    fn revert(
        &self,
        id: InterventionId,
        commit: &str,
        reason: &str,
    ) -> Result<CommitRef, ApplyError>;
    /// The commit that applied `id`, if the branch holds one (crash reconciliation).
    fn find_applied(&self, id: InterventionId) -> Result<Option<String>, ApplyError>;
    /// The commit that reverted `id`, if the branch holds one (crash reconciliation).
    fn find_reverted(&self, id: InterventionId) -> Result<Option<String>, ApplyError>;
    /// Reverts `commit` on `branch` (the branch it was applied on, as recorded then), whatever
    /// is checked out now; `None`: the current branch (rows recorded before branches were).
    fn revert_on(
        &self,
        id: InterventionId,
        commit: &str,
        branch: Option<&str>,
        reason: &str,
    ) -> Result<CommitRef, ApplyError> {
        let _ = branch;
        self.revert(id, commit, reason)
    }
    /// The commit that applied `id` on `branch` (`None`: the current one).
    fn find_applied_on(
        &self,
        id: InterventionId,
        branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        let _ = branch;
        self.find_applied(id)
    }
    /// The commit on `branch` that reverts `commit` for `id`: it must name both `id` and, in
    /// `Kaizen-Reverts`, `commit` itself (a revert of an older namesake does not count).
    fn find_revert_of(
        &self,
        id: InterventionId,
        commit: &str,
        branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        let _ = (commit, branch);
        self.find_reverted(id)
    }
    /// A switchback flip on `branch` (`None`: the current one): one commit undoing
    /// `flip.undoes` exactly (the intervention's own files only), carrying the intervention's
    /// trailer and `Kaizen-Switchback: <marker>` but no `Kaizen-Reverts` (it is not the end of
    /// the intervention). Refuses like a revert: dirty files, conflicts. Appliers that cannot
    /// make flips refuse (the engine then judges before/after, recorded).
    fn flip(
        &self,
        id: InterventionId,
        branch: Option<&str>,
        flip: &Flip,
    ) -> Result<CommitRef, ApplyError> {
        let _ = (id, branch, flip);
        Err(ApplyError::Repository(
            "this applier cannot make switchback flips".into(),
        ))
    }
    /// The commit on `branch` whose `Kaizen-Switchback` trailer is `marker` and that names `id`
    /// (crash reconciliation of a flip).
    fn find_flip(
        &self,
        id: InterventionId,
        marker: &str,
        branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        let _ = (id, marker, branch);
        Ok(None)
    }
    /// The branch an apply would commit on now (`None`: the applier has no branches).
    fn current_branch(&self) -> Result<Option<String>, ApplyError> {
        Ok(None)
    }
    /// The highest intervention id any commit in the repository names, so a lost or fresh state
    /// dir continues after it instead of reusing ids.
    fn highest_intervention_id(&self) -> Result<Option<InterventionId>, ApplyError> {
        Ok(None)
    }
    /// [`Applier::highest_intervention_id`] among the commits not reachable from `seen` (the
    /// history markers a previous call returned), and the markers of the history now. An
    /// applier that cannot tell returns every commit's highest and no markers (so nothing is
    /// cached). The engine stores the markers in the ledger, so a `kaizen cycle` process does
    /// not walk the whole history again to learn what the last one already knew.
    fn highest_intervention_id_since(
        &self,
        seen: &[String],
    ) -> Result<(Option<InterventionId>, Vec<String>), ApplyError> {
        let _ = seen;
        Ok((self.highest_intervention_id()?, Vec::new()))
    }
    /// Inspects the repository for what a killed kaizen can leave behind (its own stale locks,
    /// temp files, a working tree behind its commit) and, with `repair`, repairs what is
    /// unambiguously kaizen's; everything else is reported for a human.
    fn recover(&self, repair: bool) -> Result<Vec<Finding>, ApplyError> {
        let _ = repair;
        Ok(Vec::new())
    }
    /// The repair run before every cycle and revert and by the hourly in-cycle check:
    /// [`Applier::recover`] with `repair`, except that scans only a crash makes necessary may be
    /// skipped when nothing shows a crash (the git applier walks the working tree for its temp
    /// files only while a kaizen lock or held marker is left in the git dir; `kaizen check`
    /// still walks it every time).
    fn recover_routine(&self) -> Result<Vec<Finding>, ApplyError> {
        self.recover(true)
    }
    /// Every commit on a local branch whose trailers name an intervention (bounded walk), for
    /// checking ledger and history agree. Empty where the applier keeps no history.
    fn trailer_commits(&self) -> Result<Vec<TrailerCommit>, ApplyError> {
        Ok(Vec::new())
    }
    /// [`Applier::trailer_commits`] among the commits not reachable from `seen` (the markers a
    /// previous call returned), when every one of `seen` is still in the history; otherwise the
    /// whole walk ([`TrailerWalk::incremental`] says which). The engine keeps what it found with
    /// the markers in the ledger, so the hourly invariant check of a large repository walks only
    /// the commits made since the last one instead of the whole history. The default walks
    /// everything and returns no markers.
    fn trailer_commits_since(&self, seen: &[String]) -> Result<TrailerWalk, ApplyError> {
        let _ = seen;
        Ok(TrailerWalk {
            commits: self.trailer_commits()?,
            markers: Vec::new(),
            incremental: false,
        })
    }
    /// How each of `paths` stands between HEAD, the index and the working tree (empty where the
    /// applier has no index).
    fn path_states(&self, paths: &[String]) -> Result<Vec<PathState>, ApplyError> {
        let _ = paths;
        Ok(Vec::new())
    }
    /// The audit chain's head now: the next commits carry it in a `Kaizen-Audit` trailer
    /// ([`crate::audit`]), so git witnesses how far the ledger had got. Appliers without
    /// history ignore it.
    fn set_audit_head(&mut self, head: Option<String>) {
        let _ = head;
    }
    /// Every commit on a local branch carrying a `Kaizen-Audit` trailer (bounded walk), for
    /// `kaizen audit verify`. Empty where the applier keeps no history.
    fn audit_witnesses(&self) -> Result<Vec<crate::audit::Witness>, ApplyError> {
        Ok(Vec::new())
    }
    /// The newest commit on `branch` (`None`: the current one) after `since` that changed
    /// `path`: a first-parent walk from the tip back to `since`, comparing the path's blob only
    /// (no tree diff). `None` when nothing after `since` touched it, or `since` is not in the
    /// branch's history (bounded walk). Empty where the applier keeps no history.
    fn last_change(
        &self,
        path: &str,
        since: &str,
        branch: Option<&str>,
    ) -> Result<Option<PathChange>, ApplyError> {
        let _ = (path, since, branch);
        Ok(None)
    }
    /// Makes the working tree match HEAD for the paths `id` touched, if a crash left them stale.
    fn sync_worktree(&self, id: InterventionId, commit: &str) -> Result<(), ApplyError>;
    /// Commits whole-file writes (`Some(content)`) and deletions (`None`) as one commit that is
    /// not an intervention (e.g. the distiller's lesson changes). `Ok(None)` when nothing changed.
    /// Refuses dirty files like `apply`.
    fn commit_files(
        &self,
        files: &[(String, Option<String>)],
        message: &str,
    ) -> Result<Option<CommitRef>, ApplyError>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_git_error_keeps_its_context_and_its_source() {
        let io = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "read-only file system",
        );
        let e = ApplyError::git("cannot write config/app.yaml", io);
        assert_eq!(
            e.to_string(),
            "git: cannot write config/app.yaml: read-only file system"
        );
        let source = std::error::Error::source(&e).expect("the source is kept");
        let io = source
            .downcast_ref::<ErrorSource>()
            .and_then(|s| s.inner().downcast_ref::<std::io::Error>())
            .expect("the io::Error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(e.clone(), e);
    }
}

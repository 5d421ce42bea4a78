//! Stage 4, apply: each intervention becomes exactly one commit, so it can be reverted exactly.

use crate::intervention::{Candidate, InterventionId};

/// Why an apply or revert did not happen. Nothing was changed when one of these is returned,
/// except where the variant says otherwise.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
    /// Git or I/O failed.
    #[error("git: {0}")]
    Git(String),
}

/// A commit made by the applier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRef {
    /// Full hex id.
    pub sha: String,
}

/// Applies and reverts interventions in the target repository.
///
/// Invariants: one intervention → one commit whose trailers name it (`Kaizen-Intervention: K-…`);
/// a revert is one commit naming the reverted commit; refuses (touching nothing) when the touched
/// files have uncommitted edits; `find_*` let the engine reconcile after a crash.
pub trait Applier: Send {
    /// Checks that the change can be applied now (clean files, edits possible) without applying.
    fn preflight(&self, candidate: &Candidate) -> Result<(), ApplyError>;
    /// Commits the change.
    fn apply(&self, id: InterventionId, candidate: &Candidate) -> Result<CommitRef, ApplyError>;
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

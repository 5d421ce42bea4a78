//! The git applier: one intervention → one commit on the configured branch, one revert → one
//! commit, with trailers that let the engine find both again after a crash.
//!
//! Everything is built in memory from the branch tip (blobs, trees, commit) and the branch is
//! moved with a compare-and-swap against the tip that was read, so a concurrent human commit makes
//! the apply fail with [`ApplyError::Raced`] instead of being overwritten. Only then are the touched
//! files written to the working tree (atomically, via rename) and their index entries updated, so
//! `git status` stays clean. Files with uncommitted edits are never touched.

use git2::{
    ErrorCode, FileMode, IndexEntry, IndexTime, ObjectType, Oid, Repository, Signature, Tree,
    build::TreeUpdateBuilder,
};
use kaizen_core::apply::{
    Applier, ApplyError, CommitRef, Finding, Flip, PathChange, PathState, TrailerCommit,
    TrailerWalk,
};
use kaizen_core::edit::MAX_FILE_BYTES;
use kaizen_core::intervention::{Candidate, InterventionId};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use index_file::IndexFile;

mod index_file;
mod remote;
mod review;
pub use remote::{GitPublisher, is_kaizen_commit};
pub use review::{message_names, review_branch};

/// How far back `find_applied` / `find_reverted` walk the branch's first-parent history.
pub const HISTORY_WALK_LIMIT: usize = 10_000;

/// Longest commit subject line kaizen writes (characters).
const MAX_SUBJECT_CHARS: usize = 72;
/// Longest trailer value kaizen writes (characters).
const MAX_TRAILER_CHARS: usize = 200;

/// Trailer naming the intervention a commit applies (or reverts).
pub const TRAILER_INTERVENTION: &str = "Kaizen-Intervention";
/// Trailer naming the commit a revert undoes.
pub const TRAILER_REVERTS: &str = "Kaizen-Reverts";
/// Trailer of a switchback flip: `K-000123/block 3` (see [`kaizen_core::apply::Flip`]).
pub const TRAILER_SWITCHBACK: &str = "Kaizen-Switchback";
/// Trailer of a switchback flip: the state after it, `on` or `off`.
pub const TRAILER_SWITCHBACK_STATE: &str = "Kaizen-Switchback-State";
/// Trailer of a switchback flip: the commit whose change it undoes.
pub const TRAILER_UNDOES: &str = "Kaizen-Undoes";
/// The trailer naming the ledger's audit chain head when the commit was made.
pub use kaizen_core::audit::TRAILER_AUDIT;

type Hook = Box<dyn Fn() + Send + Sync>;

/// Applies and reverts interventions as commits in a git working tree (see the module docs).
///
/// `Repository` is not `Sync`, so the applier keeps the (canonical) working-tree path and opens
/// the repository per call — except for the two reads every cycle makes (a file at the tip, the
/// routine recovery's look at the git dir), which reuse one handle ([`GitApplier::with_repo`]).
pub struct GitApplier {
    root: PathBuf,
    /// The handle [`GitApplier::with_repo`] reuses (`None`: not opened yet, or dropped after a
    /// failure).
    cached: std::sync::Mutex<Option<Repository>>,
    branch: Option<String>,
    before_commit: Option<Hook>,
    clock: Option<std::sync::Arc<dyn kaizen_core::clock::Clock>>,
    lock_wait: std::time::Duration,
    /// The ledger's audit chain head, written into every commit ([`TRAILER_AUDIT`]).
    audit_head: Option<String>,
}

/// How long an apply or revert waits for another git process to let go of `.git/index.lock`
/// before it refuses ([`ApplyError::Busy`]).
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for GitApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitApplier")
            .field("root", &self.root)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

fn git_err(context: impl std::fmt::Display, e: git2::Error) -> ApplyError {
    ApplyError::git(context, GitMessage(e))
}

fn io_err(context: impl std::fmt::Display, e: io::Error) -> ApplyError {
    ApplyError::git(context, e)
}

/// A git2 error shown by its message alone (its `Display` adds class and code numbers a
/// human cannot act on); still the error itself as the source, with its code for callers.
#[derive(Debug)]
pub struct GitMessage(pub git2::Error);

impl std::fmt::Display for GitMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for GitMessage {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A file change in one commit: blob ids before and after (`None`: absent).
#[derive(Debug, Clone)]
struct Change {
    path: String,
    old: Option<Oid>,
    new: Option<(Oid, FileMode)>,
}

/// What is on disk at a path.
#[derive(Debug, Clone, PartialEq)]
enum Disk {
    Absent,
    File(Oid),
    /// A directory, symlink or something else that is not a regular file.
    Other,
}

impl Disk {
    fn oid(&self) -> Option<Oid> {
        match self {
            Disk::File(o) => Some(*o),
            _ => None,
        }
    }
}

/// The branch HEAD is on and its tip (`None`: unborn).
struct Tip {
    refname: String,
    oid: Option<Oid>,
}

impl Tip {
    /// The branch's short name (`main`).
    fn short(&self) -> Option<&str> {
        self.refname.strip_prefix("refs/heads/")
    }
}

impl GitApplier {
    /// Opens the working tree at `repo` (its root; not a bare repository). With `branch`, every
    /// operation first checks that HEAD is on that branch.
    pub fn open(repo: &Path, branch: Option<&str>) -> Result<GitApplier, ApplyError> {
        let r = Repository::open(repo).map_err(|e| {
            git_err(
                format!("cannot open a git repository at {}", repo.display()),
                e,
            )
        })?;
        let workdir = r.workdir().ok_or_else(|| {
            ApplyError::Repository(format!(
                "{} is a bare repository: kaizen needs a working tree to apply changes to",
                repo.display()
            ))
        })?;
        let root = workdir
            .canonicalize()
            .map_err(|e| io_err(format!("cannot resolve {}", workdir.display()), e))?;
        if let Some(b) = branch
            && !git2::Reference::is_valid_name(&format!("refs/heads/{b}"))
        {
            return Err(ApplyError::Repository(format!(
                "`{b}` is not a valid branch name"
            )));
        }
        // The handle just opened serves the first reads (a `kaizen` process makes few), when it
        // names the tree by the same (canonical) path as the handles opened later.
        let same_path = workdir == root.as_path();
        let cached = same_path.then_some(r);
        Ok(GitApplier {
            root,
            cached: std::sync::Mutex::new(cached),
            branch: branch.map(str::to_string),
            before_commit: None,
            clock: None,
            lock_wait: DEFAULT_LOCK_WAIT,
            audit_head: None,
        })
    }

    /// Dates commits by `clock` instead of the wall clock, so a simulated or `--now` run leaves
    /// a history whose times match the ledger's.
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn kaizen_core::clock::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long to wait for another git process's `.git/index.lock` before refusing.
    pub fn with_lock_wait(mut self, wait: std::time::Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The working tree's root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configured branch, if any.
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_deref()
    }

    /// Testing seam: `hook` runs after the branch tip has been read and before the commit is
    /// written (e.g. to simulate a concurrent human commit and observe [`ApplyError::Raced`]).
    #[doc(hidden)]
    pub fn with_before_commit_hook(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.before_commit = Some(Box::new(hook));
        self
    }

    fn repo(&self) -> Result<Repository, ApplyError> {
        Repository::open(&self.root)
            .map_err(|e| git_err(format!("cannot open {}", self.root.display()), e))
    }

    /// Runs `f` on a repository handle kept between calls, for reads that touch neither the
    /// index nor the working tree: opening the repository (its config files, the git dir's
    /// layout) was 7% of a 90-day `kaizen sim` (issue 12, bench 4), most of it for
    /// [`Applier::read_file`] and the routine recovery of every cycle. Refs, packed refs and
    /// objects are read from disk by libgit2 at each lookup (a pack it has not seen is found on
    /// a miss), so a reused handle sees commits made since; libgit2's in-memory index is not
    /// refreshed, which is why anything reading the index or committing opens its own
    /// ([`GitApplier::repo`]). A failure drops the handle (the next call opens afresh); a call
    /// made while the handle is in use opens its own.
    fn with_repo<T>(
        &self,
        f: impl FnOnce(&Repository) -> Result<T, ApplyError>,
    ) -> Result<T, ApplyError> {
        let Ok(mut slot) = self.cached.try_lock() else {
            return f(&self.repo()?);
        };
        if slot.is_none() {
            *slot = Some(self.repo()?);
        }
        let Some(repo) = slot.as_ref() else {
            return f(&self.repo()?);
        };
        let out = f(repo);
        if out.is_err() {
            *slot = None;
        }
        out
    }

    /// The branch HEAD is on (checked against the configured one) and its tip.
    fn tip(&self, repo: &Repository) -> Result<Tip, ApplyError> {
        let head = repo
            .find_reference("HEAD")
            .map_err(|e| git_err("cannot read HEAD", e))?;
        let target = head
            .symbolic_target()
            .map_err(|e| git_err("HEAD points at a branch whose name is not UTF-8", e))?;
        let Some(target) = target else {
            return Err(ApplyError::Repository(
                "HEAD is detached: kaizen commits on a branch; check one out first".to_string(),
            ));
        };
        let Some(on) = target.strip_prefix("refs/heads/") else {
            return Err(ApplyError::Repository(format!(
                "HEAD points at {target}, which is not a local branch"
            )));
        };
        if let Some(want) = &self.branch
            && want != on
        {
            return Err(ApplyError::Repository(format!(
                "HEAD is on branch `{on}` but kaizen is configured to commit on `{want}`: \
                 check out `{want}` or change `branch:` in the config"
            )));
        }
        let oid = match repo.refname_to_id(target) {
            Ok(o) => Some(o),
            Err(e) if e.code() == ErrorCode::NotFound => None,
            Err(e) => return Err(git_err(format!("cannot resolve {target}"), e)),
        };
        Ok(Tip {
            refname: target.to_string(),
            oid,
        })
    }

    /// The tip's tree, or an empty tree on an unborn branch.
    fn tip_tree<'r>(&self, repo: &'r Repository, tip: &Tip) -> Result<Tree<'r>, ApplyError> {
        match tip.oid {
            Some(oid) => repo
                .find_commit(oid)
                .and_then(|c| c.tree())
                .map_err(|e| git_err(format!("cannot read the tree of {oid}"), e)),
            None => empty_tree(repo),
        }
    }

    /// Writes a commit of `tree` on the tip's branch with the tip as parent (compare-and-swap).
    fn commit(
        &self,
        repo: &Repository,
        tip: &Tip,
        tree_oid: Oid,
        message: &str,
    ) -> Result<Oid, ApplyError> {
        let tree = repo
            .find_tree(tree_oid)
            .map_err(|e| git_err("cannot read the new tree", e))?;
        let parent = match tip.oid {
            Some(oid) => Some(
                repo.find_commit(oid)
                    .map_err(|e| git_err("cannot read the tip", e))?,
            ),
            None => None,
        };
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let sig = signature(repo, self.clock.as_deref())?;
        let message = with_audit(message, self.audit_head.as_deref());
        if let Some(hook) = &self.before_commit {
            hook();
        }
        repo.commit(Some(&tip.refname), &sig, &sig, &message, &tree, &parents)
            .map_err(|e| {
                if e.code() == ErrorCode::Modified {
                    ApplyError::Raced
                } else {
                    git_err("cannot write the commit", e)
                }
            })
    }

    /// Changes of `candidate` against `base` (edits applied in order, composed per file).
    fn plan_edits(
        &self,
        repo: &Repository,
        base: &Tree<'_>,
        candidate: &Candidate,
    ) -> Result<Vec<Change>, ApplyError> {
        // Per file, in order of first appearance: HEAD blob, mode, content before and after.
        struct Planned {
            path: String,
            old: Option<Oid>,
            mode: FileMode,
            before: Option<String>,
            after: Option<String>,
        }
        let mut files: Vec<Planned> = Vec::new();
        for edit in &candidate.change {
            let path = contain(&self.root, edit.file())?;
            let i = match files.iter().position(|f| f.path == path) {
                Some(i) => i,
                None => {
                    let (old, mode) = tree_blob(base, &path)?;
                    let before = match old {
                        Some(oid) => Some(blob_text(repo, oid, &path)?),
                        None => None,
                    };
                    files.push(Planned {
                        path,
                        old,
                        mode,
                        after: before.clone(),
                        before,
                    });
                    files.len() - 1
                }
            };
            let f = &mut files[i];
            let next = edit
                .apply_to(f.after.as_deref())
                .map_err(|e| ApplyError::Edit(e.to_string()))?;
            f.after = Some(next);
        }
        let mut out = Vec::new();
        for f in files {
            if f.before == f.after {
                continue;
            }
            let bytes = f.after.unwrap_or_default();
            let oid = repo
                .blob(bytes.as_bytes())
                .map_err(|e| git_err(format!("cannot store the new content of {}", f.path), e))?;
            if Some(oid) == f.old {
                continue;
            }
            out.push(Change {
                path: f.path,
                old: f.old,
                new: Some((oid, f.mode)),
            });
        }
        Ok(out)
    }

    /// Refuses (with every offending path) when any of `paths` differs between HEAD (`base`),
    /// the index and the working tree.
    fn check_clean(
        &self,
        index: &IndexView,
        base: &Tree<'_>,
        paths: &[String],
    ) -> Result<(), ApplyError> {
        let mut dirty = Vec::new();
        for path in paths {
            let (head, _) = tree_blob(base, path)?;
            let staged = index.stage_blob(path);
            let disk = disk_state(&self.root, path)?;
            if staged != Some(head) || disk.oid() != head || disk == Disk::Other {
                dirty.push(path.clone());
            }
        }
        if dirty.is_empty() {
            Ok(())
        } else {
            dirty.sort();
            dirty.dedup();
            Err(ApplyError::Dirty { paths: dirty })
        }
    }

    /// Brings the working tree and index of `changes` to their new content (the caller holds
    /// the [`GitLock`]). A file whose disk content is neither the old nor the new version (a
    /// human edited it meanwhile) is left alone and returned; its index entry still follows the
    /// commit.
    fn update_worktree(
        &self,
        repo: &Repository,
        lock: &GitLock,
        changes: &[Change],
        index: Option<LockedIndex>,
    ) -> Result<Vec<String>, ApplyError> {
        let mut skipped = Vec::new();
        let mut updates: Vec<(String, Option<IndexEntry>)> = Vec::new();
        for ch in changes {
            let disk = disk_state(&self.root, &ch.path)?;
            let new_oid = ch.new.map(|(o, _)| o);
            let human = disk == Disk::Other || (disk.oid() != ch.old && disk.oid() != new_oid);
            if human {
                skipped.push(ch.path.clone());
            } else {
                match ch.new {
                    Some((oid, mode)) => {
                        let blob = repo.find_blob(oid).map_err(|e| {
                            git_err(format!("cannot read the blob of {}", ch.path), e)
                        })?;
                        write_atomic(
                            &self.root,
                            &ch.path,
                            blob.content(),
                            mode == FileMode::BlobExecutable,
                        )?;
                    }
                    None => remove_file_and_empty_dirs(&self.root, &ch.path)?,
                }
                failpoint("git.after_write_file");
            }
            let entry = match ch.new {
                // The entry carries the stat data of the file just written, so git sees it clean
                // without re-hashing; a file left alone gets none and is re-hashed (modified).
                Some((oid, mode)) if !human => Some(disk_entry(&self.root, &ch.path, oid, mode)),
                Some((oid, mode)) => Some(bare_entry(&ch.path, oid, mode)),
                None => None,
            };
            updates.push((ch.path.clone(), entry));
        }
        let index = match index {
            Some(i) => i,
            None => LockedIndex::open(repo, lock)?,
        };
        index.write(&updates)?;
        Ok(skipped)
    }

    /// After a commit on the checked-out branch: update the working tree, logging (not failing)
    /// if that goes wrong — the commit is the record, and `sync_worktree` / `recover` repair the
    /// files later.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        repo: &Repository,
        lock: &GitLock,
        id: Option<InterventionId>,
        stage: &str,
        commit: Oid,
        changes: &[Change],
        index: LockedIndex,
    ) {
        let who = id.map(|i| i.to_string()).unwrap_or_else(|| "-".to_string());
        match self.update_worktree(repo, lock, changes, Some(index)) {
            Ok(skipped) if skipped.is_empty() => {}
            Ok(skipped) => tracing::warn!(
                "kaizen intervention={who} stage={stage} commit={commit}: left {skipped:?} alone in the \
                 working tree (edited by someone after the commit)"
            ),
            Err(e) => tracing::error!(
                "kaizen intervention={who} stage={stage} commit={commit}: committed, but the working tree \
                 could not be updated ({e}); start-up recovery will repair it"
            ),
        }
    }

    /// Refuses while a merge, cherry-pick, revert, rebase or bisect is in progress: a commit
    /// then would mix kaizen's change into a human's half-done operation.
    fn check_state(&self, repo: &Repository) -> Result<(), ApplyError> {
        use git2::RepositoryState as S;
        let what = match repo.state() {
            S::Clean => return Ok(()),
            S::Merge => "a merge is in progress (MERGE_HEAD)",
            S::Revert | S::RevertSequence => "a revert is in progress (REVERT_HEAD)",
            S::CherryPick | S::CherryPickSequence => {
                "a cherry-pick is in progress (CHERRY_PICK_HEAD)"
            }
            S::Bisect => "a bisect is in progress",
            S::Rebase | S::RebaseInteractive | S::RebaseMerge => "a rebase is in progress",
            S::ApplyMailbox | S::ApplyMailboxOrRebase => "`git am` is in progress",
        };
        Err(ApplyError::Busy {
            what: format!("{what}; finish or abort it first"),
        })
    }

    /// Takes `.git/index.lock` for one commit (waiting up to the configured time for another
    /// git process to let go of it).
    fn lock(&self, repo: &Repository, op: &str) -> Result<GitLock, ApplyError> {
        GitLock::acquire(repo.path(), self.lock_wait, op)
    }

    /// Records what the commit in flight changes (for start-up recovery), makes it, and brings
    /// the working tree along when the branch is the checked-out one.
    #[allow(clippy::too_many_arguments)]
    fn commit_locked(
        &self,
        repo: &Repository,
        lock: &GitLock,
        id: Option<InterventionId>,
        stage: &str,
        tip: &Tip,
        tree_oid: Oid,
        message: &str,
        changes: &[Change],
        worktree: Option<LockedIndex>,
    ) -> Result<Oid, ApplyError> {
        lock.record(&Journal {
            pid: std::process::id(),
            op: stage.to_string(),
            intervention: id.map(|i| i.to_string()),
            branch: Some(tip.refname.clone()),
            base: tip.oid.map(|o| o.to_string()),
            worktree: worktree.is_some(),
            changes: changes.iter().map(JournalChange::from).collect(),
        })?;
        failpoint("git.before_commit");
        let oid = self.commit(repo, tip, tree_oid, message)?;
        failpoint("git.after_commit");
        if let Some(index) = worktree {
            self.finish(repo, lock, id, stage, oid, changes, index);
        }
        Ok(oid)
    }

    fn apply_inner(
        &self,
        id: Option<InterventionId>,
        candidate: &Candidate,
        commit: bool,
        notes: &str,
    ) -> Result<Option<CommitRef>, ApplyError> {
        let repo = self.repo()?;
        self.check_state(&repo)?;
        let lock = match id.filter(|_| commit) {
            Some(_) => Some(self.lock(&repo, "apply")?),
            None => None,
        };
        let tip = self.tip(&repo)?;
        let base = self.tip_tree(&repo, &tip)?;
        let mut paths = Vec::new();
        for edit in &candidate.change {
            paths.push(contain(&self.root, edit.file())?);
        }
        let changes = self.plan_edits(&repo, &base, candidate)?;
        // Under the lock the index is read once, checked, edited and written; without it
        // (a preflight) it is only read.
        let index = match &lock {
            Some(lock) => {
                let index = LockedIndex::open(&repo, lock)?;
                self.check_clean(&index.view, &base, &paths)?;
                Some(index)
            }
            None => {
                self.check_clean(&IndexView::read(&repo)?, &base, &paths)?;
                None
            }
        };
        if changes.is_empty() {
            return Err(ApplyError::NoOp);
        }
        let (Some(id), Some(lock), Some(index)) = (id.filter(|_| commit), lock, index) else {
            return Ok(None);
        };
        let tree = updated_tree(&repo, &base, &changes)?;
        let message = review::with_chain(&apply_message(id, candidate), notes);
        let oid = self.commit_locked(
            &repo,
            &lock,
            Some(id),
            "apply",
            &tip,
            tree,
            &message,
            &changes,
            Some(index),
        )?;
        tracing::info!(
            "kaizen intervention={id} stage=apply commit={oid} files={:?}",
            changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>()
        );
        lock.release()?;
        Ok(Some(CommitRef {
            sha: oid.to_string(),
            branch: tip.short().map(str::to_string),
            parent: tip.oid.map(|o| o.to_string()),
        }))
    }

    /// The revert of `target` on `tip` by a three-way merge of whole trees (libgit2's
    /// `revert_commit`): the path for a revert that is not trivial ([`trivial_revert`]); a
    /// conflict is refused, never forced.
    fn merge_revert(
        &self,
        repo: &Repository,
        id: InterventionId,
        target: &git2::Commit<'_>,
        tip: &Tip,
        base: &Tree<'_>,
    ) -> Result<(Oid, Vec<Change>), ApplyError> {
        let tip_commit = tip
            .oid
            .map(|o| repo.find_commit(o))
            .transpose()
            .map_err(|e| git_err("cannot read the tip", e))?
            .ok_or_else(|| ApplyError::Repository("the branch has no commits".to_string()))?;
        let mut index = repo
            .revert_commit(target, &tip_commit, 0, None)
            .map_err(|e| git_err(format!("cannot revert {}", target.id()), e))?;
        if index.has_conflicts() {
            let mut conflicted = Vec::new();
            if let Ok(conflicts) = index.conflicts() {
                for c in conflicts.flatten() {
                    if let Some(e) = c.our.or(c.their).or(c.ancestor) {
                        conflicted.push(String::from_utf8_lossy(&e.path).into_owned());
                    }
                }
            }
            conflicted.sort();
            conflicted.dedup();
            tracing::warn!(
                "kaizen intervention={id} stage=revert commit={}: conflicts in {conflicted:?}, left untouched",
                target.id()
            );
            return Err(ApplyError::Conflict {
                commit: target.id().to_string(),
                paths: conflicted,
            });
        }
        let tree_oid = index
            .write_tree_to(repo)
            .map_err(|e| git_err("cannot write the reverted tree", e))?;
        let new_tree = repo
            .find_tree(tree_oid)
            .map_err(|e| git_err("cannot read the reverted tree", e))?;
        let changes = tree_changes(repo, base, &new_tree)?;
        if changes.is_empty() {
            return Err(ApplyError::NoOp);
        }
        Ok((tree_oid, changes))
    }

    /// [`Applier::trailer_commits_since`] with `repo`.
    fn trailer_commits_since_in(
        &self,
        repo: &Repository,
        seen: &[String],
    ) -> Result<TrailerWalk, ApplyError> {
        let tips = local_tips(repo)?;
        let mut hide: Vec<Oid> = Vec::new();
        let mut incremental = !seen.is_empty();
        for s in seen {
            let Ok(oid) = Oid::from_str(s) else {
                incremental = false;
                break;
            };
            let held = tips.contains(&oid)
                || tips
                    .iter()
                    .any(|t| repo.graph_descendant_of(*t, oid).unwrap_or(false));
            if !held {
                incremental = false;
                break;
            }
            hide.push(oid);
        }
        if !incremental {
            hide.clear();
        }
        Ok(TrailerWalk {
            commits: trailer_commits_hiding(repo, &hide)?,
            markers: tips.iter().map(Oid::to_string).collect(),
            incremental,
        })
    }

    /// [`Applier::path_states`] with `repo`.
    fn path_states_in(
        &self,
        repo: &Repository,
        paths: &[String],
    ) -> Result<Vec<PathState>, ApplyError> {
        let head = match head_refname(repo) {
            Some(r) => match repo.refname_to_id(&r) {
                Ok(oid) => repo
                    .find_commit(oid)
                    .and_then(|c| c.tree())
                    .map_err(|e| git_err("cannot read HEAD's tree", e))?,
                Err(_) => empty_tree(repo)?,
            },
            None => repo
                .head()
                .and_then(|h| h.peel_to_tree())
                .map_err(|e| git_err("cannot read HEAD's tree", e))?,
        };
        let index = IndexView::read(repo)?;
        let mut out = Vec::new();
        for raw in paths {
            let Ok(path) = contain(&self.root, raw) else {
                continue;
            };
            let want = match tree_blob(&head, &path) {
                Ok((o, _)) => o,
                Err(_) => continue,
            };
            let disk = disk_state(&self.root, &path)?;
            out.push(PathState {
                in_head: want.is_some(),
                index_matches_head: index.stage_blob(&path) == Some(want),
                disk_matches_head: disk != Disk::Other && disk.oid() == want,
                path,
            });
        }
        Ok(out)
    }

    /// [`Applier::recover`]; `walk_tree`: look for temp files in the whole working tree even
    /// when no kaizen lock or held marker is left. kaizen writes a temp file only while it
    /// holds `.git/index.lock` with its journal in it and its held marker beside it (removed
    /// after the lock, see [`GitLock`]), and removes the temp file before letting go, so without
    /// either none can be left by a kill: the routine repair then skips the walk (≈ 10–16 ms in
    /// a repository of 10k files).
    fn recover_scoped(&self, repair: bool, walk_tree: bool) -> Result<Vec<Finding>, ApplyError> {
        self.with_repo(|repo| self.recover_in(repo, repair, walk_tree))
    }

    /// [`GitApplier::recover_scoped`] with `repo` (a reused handle: a dead kaizen's commit is
    /// finished through a freshly opened one).
    fn recover_in(
        &self,
        repo: &Repository,
        repair: bool,
        walk_tree: bool,
    ) -> Result<Vec<Finding>, ApplyError> {
        let gitdir = repo.path().to_path_buf();
        let common = repo.commondir().to_path_buf();
        let mut out = Vec::new();
        let lock_path = gitdir.join("index.lock");
        let shown = |p: &Path| -> String {
            match p.strip_prefix(&self.root) {
                Ok(r) => r.display().to_string(),
                Err(_) => p.display().to_string(),
            }
        };
        let mut handled_ref_locks: Vec<PathBuf> = Vec::new();
        let lock_state = read_lock(&lock_path);
        let kaizen_lock = matches!(lock_state, LockState::Kaizen(_));
        match lock_state {
            LockState::Absent => {}
            LockState::Foreign => out.push(Finding {
                kind: "foreign_git_lock".into(),
                path: shown(&lock_path),
                detail: "exists and is not kaizen's: another git process is running, or one \
                         crashed (remove it if none is running); kaizen will not commit meanwhile"
                    .into(),
                repaired: false,
            }),
            LockState::Kaizen(j) if pid_alive(j.pid) => out.push(Finding {
                kind: "git_lock_held".into(),
                path: shown(&lock_path),
                detail: format!("held by a running kaizen (pid {}, {})", j.pid, j.op),
                repaired: false,
            }),
            LockState::Kaizen(j) => {
                let lock_time = fs::metadata(&lock_path).and_then(|m| m.modified()).ok();
                let ref_lock = j
                    .branch
                    .as_ref()
                    .map(|r| common.join(format!("{r}.lock")))
                    .filter(|p| p.exists());
                if let Some(p) = &ref_lock {
                    handled_ref_locks.push(p.clone());
                }
                if repair {
                    // Take the lock over (it stays in place, so no git process enters), finish
                    // the dead one's commit, then let go.
                    let mine = GitLock::take_over(&lock_path, &j)?;
                    if let Some(p) = &ref_lock {
                        let newer =
                            match (lock_time, fs::metadata(p).and_then(|m| m.modified()).ok()) {
                                (Some(l), Some(r)) => r + std::time::Duration::from_secs(1) >= l,
                                _ => false,
                            };
                        if newer {
                            fs::remove_file(p)
                                .map_err(|e| io_err(format!("cannot remove {}", p.display()), e))?;
                            out.push(Finding {
                                kind: "stale_ref_lock".into(),
                                path: shown(p),
                                detail: format!(
                                    "left by a killed kaizen (pid {}) while committing; removed",
                                    j.pid
                                ),
                                repaired: true,
                            });
                        } else {
                            out.push(ref_lock_finding(&shown(p)));
                        }
                    }
                    self.roll_forward(&self.repo()?, &mine, &j, &mut out)?;
                    mine.release()?;
                }
                out.push(Finding {
                    kind: "stale_git_lock".into(),
                    path: shown(&lock_path),
                    detail: format!(
                        "left by a killed kaizen (pid {}, {}){}",
                        j.pid,
                        j.op,
                        if repair {
                            "; its commit was finished or discarded and the lock removed"
                        } else {
                            ""
                        }
                    ),
                    repaired: repair,
                });
                if !repair && let Some(p) = &ref_lock {
                    out.push(Finding {
                        kind: "stale_ref_lock".into(),
                        path: shown(p),
                        detail: format!("left by a killed kaizen (pid {})", j.pid),
                        repaired: false,
                    });
                }
            }
        }
        // Branch locks not explained by a kaizen lock: git's own, or a crashed git's — ambiguous.
        for p in ref_locks(&common.join("refs/heads")) {
            if !handled_ref_locks.contains(&p) {
                out.push(ref_lock_finding(&shown(&p)));
            }
        }
        // kaizen's temp files: in the git dir and (beside the files it writes) the working tree.
        // The tree is walked when asked, after a kill (kaizen's lock is left), or when the git
        // dir holds a kaizen file — a held marker whose lock was deleted by hand (see
        // [`GitLock`]), or one another kaizen is using right now.
        let mut temps = Vec::new();
        collect_temp_files(&gitdir, false, &mut temps, &mut 0);
        if walk_tree || kaizen_lock || !temps.is_empty() {
            collect_temp_files(&self.root, true, &mut temps, &mut 0);
        }
        for (path, pid) in temps {
            if pid_alive(pid) {
                out.push(Finding {
                    kind: "temp_file".into(),
                    path: shown(&path),
                    detail: format!("in use by a running kaizen (pid {pid})"),
                    repaired: false,
                });
                continue;
            }
            let repaired = repair && fs::remove_file(&path).is_ok();
            out.push(Finding {
                kind: "temp_file".into(),
                path: shown(&path),
                detail: format!(
                    "left by a killed kaizen (pid {pid}){}",
                    if repaired { "; removed" } else { "" }
                ),
                repaired,
            });
        }
        // Linked worktrees whose directory is gone (git keeps their admin files until pruned).
        if let Ok(names) = repo.worktrees() {
            for name in names.iter().flatten().flatten() {
                if let Ok(wt) = repo.find_worktree(name)
                    && wt.validate().is_err()
                {
                    out.push(Finding {
                        kind: "orphaned_worktree".into(),
                        path: format!(".git/worktrees/{name}"),
                        detail: format!(
                            "worktree `{name}` points at {}, which is gone; `git worktree prune` removes it",
                            wt.path().display()
                        ),
                        repaired: false,
                    });
                }
            }
        }
        if let Err(ApplyError::Busy { what }) = self.check_state(repo) {
            out.push(Finding {
                kind: "operation_in_progress".into(),
                path: ".git".into(),
                detail: format!("{what}; kaizen will not commit until then"),
                repaired: false,
            });
        }
        Ok(out)
    }

    /// The commit named by `commit`, checked to be on the branch (the tip or an ancestor of it).
    /// One commit undoing `commit` on `branch` (`op`: `revert` or `switchback`, for the lock
    /// journal and the log), its message from `message(title of commit, sha)`: a trivial inverse
    /// where the files still hold what `commit` wrote, else a three-way merge; refused on dirty
    /// files or a conflict.
    fn undo_commit(
        &self,
        id: InterventionId,
        commit: &str,
        branch: Option<&str>,
        op: &str,
        message: &dyn Fn(&str, &str) -> String,
    ) -> Result<CommitRef, ApplyError> {
        let repo = self.repo()?;
        self.check_state(&repo)?;
        let lock = self.lock(&repo, op)?;
        let (tip, on_head) = self.tip_of(&repo, branch)?;
        let target = self.branch_commit(&repo, &tip, commit)?;
        let base = self.tip_tree(&repo, &tip)?;
        let target_changes = commit_changes(&repo, &target)?;
        let paths: Vec<String> = target_changes.iter().map(|c| c.path.clone()).collect();
        for p in &paths {
            contain(&self.root, p)?;
        }
        let index = if on_head {
            let index = LockedIndex::open(&repo, &lock)?;
            self.check_clean(&index.view, &base, &paths)?;
            Some(index)
        } else {
            None
        };
        let (tree_oid, changes) = match trivial_revert(&repo, &target, &target_changes, &base)? {
            Some(changes) => {
                if changes.is_empty() {
                    return Err(ApplyError::NoOp);
                }
                (updated_tree(&repo, &base, &changes)?, changes)
            }
            None => self.merge_revert(&repo, id, &target, &tip, &base)?,
        };
        let title = target
            .summary_bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let message = message(&title, &target.id().to_string());
        failpoint("git.before_revert");
        let oid = self.commit_locked(
            &repo,
            &lock,
            Some(id),
            op,
            &tip,
            tree_oid,
            &message,
            &changes,
            index,
        )?;
        tracing::info!(
            "kaizen intervention={id} stage={op} commit={oid} undoes={} branch={}",
            target.id(),
            tip.refname
        );
        lock.release()?;
        Ok(CommitRef {
            sha: oid.to_string(),
            branch: tip.short().map(str::to_string),
            parent: tip.oid.map(|o| o.to_string()),
        })
    }

    fn branch_commit<'r>(
        &self,
        repo: &'r Repository,
        tip: &Tip,
        commit: &str,
    ) -> Result<git2::Commit<'r>, ApplyError> {
        let Some(tip_oid) = tip.oid else {
            return Err(ApplyError::Repository(format!(
                "branch {} has no commits, so it cannot hold {commit}",
                tip.refname
            )));
        };
        let c = repo
            .revparse_single(commit)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| git_err(format!("cannot find commit {commit:?}"), e))?;
        let on_branch = c.id() == tip_oid
            || repo
                .graph_descendant_of(tip_oid, c.id())
                .map_err(|e| git_err("cannot walk the history", e))?;
        if !on_branch {
            return Err(ApplyError::Repository(format!(
                "commit {} is not on {}",
                c.id(),
                tip.refname
            )));
        }
        if c.parent_count() > 1 {
            return Err(ApplyError::Repository(format!(
                "commit {} is a merge; kaizen never makes merges",
                c.id()
            )));
        }
        Ok(c)
    }

    /// The tip of `branch` (a recorded branch, whatever HEAD is on now) and whether it is the
    /// checked-out one; `None`: HEAD's branch (checked against the configured one).
    fn tip_of(&self, repo: &Repository, branch: Option<&str>) -> Result<(Tip, bool), ApplyError> {
        let Some(b) = branch else {
            return Ok((self.tip(repo)?, true));
        };
        let refname = format!("refs/heads/{b}");
        if !git2::Reference::is_valid_name(&refname) {
            return Err(ApplyError::Repository(format!(
                "`{b}` is not a valid branch name"
            )));
        }
        let oid = match repo.refname_to_id(&refname) {
            Ok(o) => o,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(ApplyError::Repository(format!(
                    "branch `{b}` (where the change was committed) no longer exists; \
                     a human must decide where to revert it"
                )));
            }
            Err(e) => return Err(git_err(format!("cannot resolve {refname}"), e)),
        };
        let on_head = head_refname(repo).is_some_and(|t| t == refname);
        Ok((
            Tip {
                refname,
                oid: Some(oid),
            },
            on_head,
        ))
    }

    /// Walks `branch`'s first-parent history for the first commit whose trailers satisfy `want`.
    fn find_on(
        &self,
        branch: Option<&str>,
        want: impl Fn(&[(String, String)]) -> bool,
    ) -> Result<Option<String>, ApplyError> {
        let repo = self.repo()?;
        // A recorded branch that is gone is an error (escalated), not "no commit": the commit
        // may well exist elsewhere.
        let (tip, _) = self.tip_of(&repo, branch)?;
        let Some(tip_oid) = tip.oid else {
            return Ok(None);
        };
        let mut walk = repo
            .revwalk()
            .map_err(|e| git_err("cannot walk the history", e))?;
        walk.push(tip_oid)
            .map_err(|e| git_err("cannot walk the history", e))?;
        walk.simplify_first_parent()
            .map_err(|e| git_err("cannot walk the history", e))?;
        for oid in walk.take(HISTORY_WALK_LIMIT) {
            let oid = oid.map_err(|e| git_err("cannot walk the history", e))?;
            let c = repo
                .find_commit(oid)
                .map_err(|e| git_err(format!("cannot read commit {oid}"), e))?;
            let tr = parse_trailers(&String::from_utf8_lossy(c.message_bytes()));
            if want(&tr) {
                return Ok(Some(oid.to_string()));
            }
        }
        Ok(None)
    }

    /// Finishes or discards what a killed kaizen left under `.git/index.lock` (see
    /// [`Applier::recover`]); the caller has checked the lock is kaizen's and its owner dead.
    fn roll_forward(
        &self,
        repo: &Repository,
        lock: &GitLock,
        j: &Journal,
        out: &mut Vec<Finding>,
    ) -> Result<(), ApplyError> {
        let Some(refname) = &j.branch else {
            return Ok(());
        };
        let tip = match repo.refname_to_id(refname) {
            Ok(o) => Some(o),
            Err(e) if e.code() == ErrorCode::NotFound => None,
            Err(e) => return Err(git_err(format!("cannot resolve {refname}"), e)),
        };
        let base = j.base.as_deref().and_then(|b| Oid::from_str(b).ok());
        if tip == base {
            // The commit was never made, and files are written only after it: nothing to undo.
            return Ok(());
        }
        let changes: Vec<Change> = j
            .changes
            .iter()
            .filter_map(JournalChange::to_change)
            .collect();
        let landed = match tip {
            Some(t) => {
                let c = repo
                    .find_commit(t)
                    .map_err(|e| git_err(format!("cannot read commit {t}"), e))?;
                let parent = c.parent_id(0).ok();
                let tree = c
                    .tree()
                    .map_err(|e| git_err("cannot read the commit's tree", e))?;
                parent == base
                    && changes.iter().all(|ch| {
                        tree_blob(&tree, &ch.path)
                            .map(|(o, _)| o == ch.new.map(|(n, _)| n))
                            .unwrap_or(false)
                    })
            }
            None => false,
        };
        let on_head = head_refname(repo).is_some_and(|t| &t == refname);
        if !landed {
            out.push(Finding {
                kind: "worktree_unknown".into(),
                path: refname.clone(),
                detail: format!(
                    "a killed kaizen ({}) was committing on {refname}, which has moved on since; \
                     check `git status` for {:?}",
                    j.op,
                    changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>()
                ),
                repaired: false,
            });
            return Ok(());
        }
        if !(j.worktree && on_head) {
            return Ok(());
        }
        let skipped = self.update_worktree(repo, lock, &changes, None)?;
        let commit = tip.map(|t| t.to_string()).unwrap_or_default();
        out.push(Finding {
            kind: "worktree_stale".into(),
            path: changes
                .iter()
                .map(|c| c.path.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            detail: format!(
                "a killed kaizen ({}) had committed {} but not updated the working tree; brought it to the commit",
                j.op,
                short_oid(&commit)
            ),
            repaired: true,
        });
        for path in skipped {
            out.push(Finding {
                kind: "worktree_dirty".into(),
                path,
                detail: format!(
                    "edited by someone since kaizen's commit {}; left alone for a human",
                    short_oid(&commit)
                ),
                repaired: false,
            });
        }
        Ok(())
    }
}

impl Applier for GitApplier {
    fn read_file(&self, path: &str) -> Result<Option<String>, ApplyError> {
        self.read_file_with_id(path).map(|(content, _)| content)
    }

    fn read_file_with_id(
        &self,
        path: &str,
    ) -> Result<(Option<String>, Option<String>), ApplyError> {
        let path = contain(&self.root, path)?;
        self.with_repo(|repo| {
            let tip = self.tip(repo)?;
            let tree = self.tip_tree(repo, &tip)?;
            let oid = tree_blob(&tree, &path)?.0;
            let content = match oid {
                Some(oid) => Some(blob_text(repo, oid, &path)?),
                None => None,
            };
            Ok((content, Some(blob_id(oid))))
        })
    }

    fn file_id(&self, path: &str) -> Result<Option<String>, ApplyError> {
        let path = contain(&self.root, path)?;
        self.with_repo(|repo| {
            let tip = self.tip(repo)?;
            let tree = self.tip_tree(repo, &tip)?;
            Ok(Some(blob_id(tree_blob(&tree, &path)?.0)))
        })
    }

    fn preflight(&self, candidate: &Candidate) -> Result<(), ApplyError> {
        self.apply_inner(None, candidate, false, "").map(|_| ())
    }

    fn apply(&self, id: InterventionId, candidate: &Candidate) -> Result<CommitRef, ApplyError> {
        self.apply_with_notes(id, candidate, "")
    }

    fn apply_with_notes(
        &self,
        id: InterventionId,
        candidate: &Candidate,
        notes: &str,
    ) -> Result<CommitRef, ApplyError> {
        self.apply_inner(Some(id), candidate, true, notes)?
            .ok_or_else(|| ApplyError::Repository("internal: apply produced no commit".to_string()))
    }

    fn revert(
        &self,
        id: InterventionId,
        commit: &str,
        reason: &str,
    ) -> Result<CommitRef, ApplyError> {
        self.revert_on(id, commit, None, reason)
    }

    fn revert_on(
        &self,
        id: InterventionId,
        commit: &str,
        branch: Option<&str>,
        reason: &str,
    ) -> Result<CommitRef, ApplyError> {
        self.undo_commit(id, commit, branch, "revert", &|title, sha| {
            revert_message(id, title, sha, reason)
        })
    }

    fn flip(
        &self,
        id: InterventionId,
        branch: Option<&str>,
        flip: &Flip,
    ) -> Result<CommitRef, ApplyError> {
        self.undo_commit(id, &flip.undoes, branch, "switchback", &|_, sha| {
            flip_message(id, sha, flip)
        })
    }

    fn find_flip(
        &self,
        id: InterventionId,
        marker: &str,
        branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        self.find_on(branch, |tr| {
            names_intervention(tr, id)
                && tr.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case(TRAILER_SWITCHBACK) && v.trim() == marker.trim()
                })
        })
    }
    fn find_applied(&self, id: InterventionId) -> Result<Option<String>, ApplyError> {
        self.find_applied_on(id, None)
    }

    fn find_reverted(&self, id: InterventionId) -> Result<Option<String>, ApplyError> {
        self.find_on(None, |tr| {
            names_intervention(tr, id)
                && tr
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case(TRAILER_REVERTS))
        })
    }

    fn find_applied_on(
        &self,
        id: InterventionId,
        branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        // A switchback flip names the intervention too, but it is not the apply.
        self.find_on(branch, |tr| {
            names_intervention(tr, id)
                && !tr.iter().any(|(k, _)| {
                    k.eq_ignore_ascii_case(TRAILER_REVERTS)
                        || k.eq_ignore_ascii_case(TRAILER_SWITCHBACK)
                })
        })
    }

    fn find_revert_of(
        &self,
        id: InterventionId,
        commit: &str,
        branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        let commit = commit.trim();
        if commit.is_empty() {
            return Ok(None);
        }
        self.find_on(branch, |tr| {
            names_intervention(tr, id)
                && tr.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case(TRAILER_REVERTS) && v.eq_ignore_ascii_case(commit)
                })
        })
    }

    fn current_branch(&self) -> Result<Option<String>, ApplyError> {
        self.with_repo(|repo| Ok(self.tip(repo)?.short().map(str::to_string)))
    }

    fn highest_intervention_id(&self) -> Result<Option<InterventionId>, ApplyError> {
        Ok(self.highest_intervention_id_since(&[])?.0)
    }

    /// Walks the local branches' history, hiding what the `seen` tips already cover, so a
    /// history seen before costs one ref listing instead of a walk of up to
    /// [`HISTORY_WALK_LIMIT`] commits; the markers returned are the branch tips now.
    fn highest_intervention_id_since(
        &self,
        seen: &[String],
    ) -> Result<(Option<InterventionId>, Vec<String>), ApplyError> {
        // Refs and commits only (never the index): the kept handle.
        self.with_repo(|repo| {
            // Sorted oids give sorted lowercase hex: the markers' order is unchanged.
            let tips: Vec<String> = local_tips(repo)?.iter().map(Oid::to_string).collect();
            // Every tip already seen: nothing to walk (the markers are sorted like the tips).
            if !tips.is_empty() && tips == seen {
                return Ok((None, tips));
            }
            let mut walk = repo
                .revwalk()
                .map_err(|e| git_err("cannot walk the history", e))?;
            match walk.push_glob("refs/heads/*") {
                Ok(()) => {}
                Err(e) if e.code() == ErrorCode::NotFound => return Ok((None, tips)),
                Err(e) => return Err(git_err("cannot walk the history", e)),
            }
            for s in seen {
                // A tip that is gone (history rewritten, objects pruned) hides nothing.
                if let Ok(oid) = Oid::from_str(s)
                    && repo.find_commit(oid).is_ok()
                {
                    walk.hide(oid)
                        .map_err(|e| git_err("cannot walk the history", e))?;
                }
            }
            let mut best: Option<InterventionId> = None;
            for oid in walk.take(HISTORY_WALK_LIMIT) {
                let oid = oid.map_err(|e| git_err("cannot walk the history", e))?;
                let c = repo
                    .find_commit(oid)
                    .map_err(|e| git_err(format!("cannot read commit {oid}"), e))?;
                for (k, v) in parse_trailers(&String::from_utf8_lossy(c.message_bytes())) {
                    if k.eq_ignore_ascii_case(TRAILER_INTERVENTION)
                        && let Ok(id) = v.parse::<InterventionId>()
                        && best.is_none_or(|b| id.0 > b.0)
                    {
                        best = Some(id);
                    }
                }
            }
            Ok((best, tips))
        })
    }

    fn recover(&self, repair: bool) -> Result<Vec<Finding>, ApplyError> {
        self.recover_scoped(repair, true)
    }

    fn recover_routine(&self) -> Result<Vec<Finding>, ApplyError> {
        self.recover_scoped(true, false)
    }

    fn set_audit_head(&mut self, head: Option<String>) {
        self.audit_head = head;
    }

    fn audit_witnesses(&self) -> Result<Vec<kaizen_core::audit::Witness>, ApplyError> {
        let repo = self.repo()?;
        let mut out = Vec::new();
        walk_local_history(&repo, &[], |_, oid, trailers| {
            if let Some((_, head)) = trailers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(TRAILER_AUDIT))
            {
                out.push(kaizen_core::audit::Witness {
                    commit: oid.to_string(),
                    head: head.clone(),
                });
            }
        })?;
        Ok(out)
    }

    fn trailer_commits(&self) -> Result<Vec<TrailerCommit>, ApplyError> {
        let repo = self.repo()?;
        trailer_commits_hiding(&repo, &[])
    }

    /// Hides the `seen` tips from the walk when each of them is a current branch tip or an
    /// ancestor of one (the history only grew since): a check an hour after the last one walks
    /// the few commits made in between, not up to [`HISTORY_WALK_LIMIT`] of them (the hourly
    /// check's walk of 10k commits cost 6.5× a cycle, issue 12's finding 6). Any seen tip gone
    /// from every branch's history means commits found before may be gone: then everything is
    /// walked again.
    fn trailer_commits_since(&self, seen: &[String]) -> Result<TrailerWalk, ApplyError> {
        // Through the kept handle, as `read_file`: refs and objects are read from disk at each
        // lookup, so the walk sees the repository as it is now; opening a new handle (its
        // config files and all) was a third of the hourly check (issue 12, bench 4).
        self.with_repo(|repo| self.trailer_commits_since_in(repo, seen))
    }

    fn last_change(
        &self,
        path: &str,
        since: &str,
        branch: Option<&str>,
    ) -> Result<Option<PathChange>, ApplyError> {
        let path = contain(&self.root, path)?;
        let repo = self.repo()?;
        let (tip, _) = self.tip_of(&repo, branch)?;
        let Some(tip_oid) = tip.oid else {
            return Ok(None);
        };
        let since =
            Oid::from_str(since).map_err(|e| git_err(format!("bad commit id {since}"), e))?;
        // Only a `since` in the branch's history bounds the walk; otherwise nothing can be said.
        if since != tip_oid
            && !repo
                .graph_descendant_of(tip_oid, since)
                .map_err(|e| git_err("cannot compare commits", e))?
        {
            return Ok(None);
        }
        let blob_at = |c: &git2::Commit<'_>| -> Result<Option<Oid>, ApplyError> {
            let tree = c
                .tree()
                .map_err(|e| git_err(format!("cannot read the tree of {}", c.id()), e))?;
            match tree.get_path(Path::new(&path)) {
                Ok(e) => Ok(Some(e.id())),
                Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
                Err(e) => Err(git_err(format!("cannot look up {path}"), e)),
            }
        };
        let mut walk = repo
            .revwalk()
            .map_err(|e| git_err("cannot walk the history", e))?;
        walk.push(tip_oid)
            .map_err(|e| git_err("cannot walk the history", e))?;
        walk.simplify_first_parent()
            .map_err(|e| git_err("cannot walk the history", e))?;
        for oid in walk.take(HISTORY_WALK_LIMIT) {
            let oid = oid.map_err(|e| git_err("cannot walk the history", e))?;
            if oid == since {
                return Ok(None);
            }
            let c = repo
                .find_commit(oid)
                .map_err(|e| git_err(format!("cannot read commit {oid}"), e))?;
            let here = blob_at(&c)?;
            let before = match c.parent(0) {
                Ok(p) => blob_at(&p)?,
                Err(_) => None,
            };
            if here == before {
                continue;
            }
            let tr = parse_trailers(&String::from_utf8_lossy(c.message_bytes()));
            let by_kaizen = tr.iter().find_map(|(k, v)| {
                k.eq_ignore_ascii_case(TRAILER_INTERVENTION)
                    .then(|| v.parse::<InterventionId>().ok())
                    .flatten()
            });
            let author = c.author();
            return Ok(Some(PathChange {
                sha: oid.to_string(),
                author: format!(
                    "{} <{}>",
                    String::from_utf8_lossy(author.name_bytes()),
                    String::from_utf8_lossy(author.email_bytes())
                ),
                summary: one_line(
                    &String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()),
                    120,
                ),
                by_kaizen,
                deleted: here.is_none(),
            }));
        }
        Ok(None)
    }

    fn path_states(&self, paths: &[String]) -> Result<Vec<PathState>, ApplyError> {
        // Through the kept handle (see `trailer_commits_since`); the index is read from its
        // file each time by kaizen's own reader, not cached by libgit2.
        self.with_repo(|repo| self.path_states_in(repo, paths))
    }

    fn sync_worktree(&self, id: InterventionId, commit: &str) -> Result<(), ApplyError> {
        let repo = self.repo()?;
        let tip = self.tip(&repo)?;
        let c = self.branch_commit(&repo, &tip, commit)?;
        let tr = parse_trailers(&String::from_utf8_lossy(c.message_bytes()));
        if !names_intervention(&tr, id) {
            return Err(ApplyError::Repository(format!(
                "commit {} does not carry `{TRAILER_INTERVENTION}: {id}`",
                c.id()
            )));
        }
        let head = self.tip_tree(&repo, &tip)?;
        let own = c
            .tree()
            .map_err(|e| git_err("cannot read the commit's tree", e))?;
        let parent = match c.parent(0) {
            Ok(p) => p
                .tree()
                .map_err(|e| git_err("cannot read the parent's tree", e))?,
            Err(_) => empty_tree(&repo)?,
        };
        let index = IndexView::read(&repo)?;
        let mut dirty = Vec::new();
        let mut fixes = Vec::new();
        for path in changed_paths(&repo, &c)? {
            contain(&self.root, &path)?;
            let (want, mode) = tree_blob(&head, &path)?;
            let known = [
                want,
                tree_blob(&parent, &path)?.0,
                tree_blob(&own, &path)?.0,
            ];
            let staged = index.stage_blob(&path);
            let disk = disk_state(&self.root, &path)?;
            if staged == Some(want) && disk.oid() == want && disk != Disk::Other {
                continue;
            }
            let staged_known = match staged {
                Some(s) => known.contains(&s),
                None => false,
            };
            if disk == Disk::Other || !known.contains(&disk.oid()) || !staged_known {
                dirty.push(path);
                continue;
            }
            fixes.push(Change {
                path,
                old: disk.oid(),
                new: want.map(|o| (o, mode)),
            });
        }
        if !dirty.is_empty() {
            return Err(ApplyError::Dirty { paths: dirty });
        }
        if fixes.is_empty() {
            return Ok(());
        }
        drop(index);
        let lock = self.lock(&repo, "sync")?;
        let skipped = self.update_worktree(&repo, &lock, &fixes, None)?;
        lock.release()?;
        if !skipped.is_empty() {
            return Err(ApplyError::Dirty { paths: skipped });
        }
        tracing::info!(
            "kaizen intervention={id} stage=sync commit={}: brought {:?} to HEAD",
            c.id(),
            fixes.iter().map(|f| f.path.as_str()).collect::<Vec<_>>()
        );
        Ok(())
    }

    fn commit_files(
        &self,
        files: &[(String, Option<String>)],
        message: &str,
    ) -> Result<Option<CommitRef>, ApplyError> {
        let repo = self.repo()?;
        self.check_state(&repo)?;
        let lock = self.lock(&repo, "commit_files")?;
        let tip = self.tip(&repo)?;
        let base = self.tip_tree(&repo, &tip)?;
        let mut wanted: BTreeMap<String, Option<&str>> = BTreeMap::new();
        for (raw, content) in files {
            let path = contain(&self.root, raw)?;
            if let Some(c) = content
                && c.len() > MAX_FILE_BYTES
            {
                return Err(ApplyError::Edit(format!(
                    "{path}: {} bytes is above the 1 MiB limit",
                    c.len()
                )));
            }
            wanted.insert(path, content.as_deref());
        }
        let paths: Vec<String> = wanted.keys().cloned().collect();
        let index = LockedIndex::open(&repo, &lock)?;
        self.check_clean(&index.view, &base, &paths)?;
        let mut changes = Vec::new();
        for (path, content) in wanted {
            let (old, mode) = tree_blob(&base, &path)?;
            let new = match content {
                Some(text) => Some((
                    repo.blob(text.as_bytes())
                        .map_err(|e| git_err(format!("cannot store {path}"), e))?,
                    mode,
                )),
                None => None,
            };
            if new.map(|(o, _)| o) != old {
                changes.push(Change { path, old, new });
            }
        }
        if changes.is_empty() {
            lock.release()?;
            return Ok(None);
        }
        let tree = updated_tree(&repo, &base, &changes)?;
        let mut msg = clean_text(message).trim().to_string();
        if msg.is_empty() {
            msg = "kaizen: update files".to_string();
        }
        msg.push('\n');
        let oid = self.commit_locked(
            &repo,
            &lock,
            None,
            "commit_files",
            &tip,
            tree,
            &msg,
            &changes,
            Some(index),
        )?;
        tracing::info!(
            "kaizen intervention=- stage=commit_files commit={oid} files={:?}",
            changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>()
        );
        lock.release()?;
        Ok(Some(CommitRef {
            sha: oid.to_string(),
            branch: tip.short().map(str::to_string),
            parent: tip.oid.map(|o| o.to_string()),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The index, read once per operation under kaizen's lock

/// The index as an operation reads it: kaizen's own reader ([`index_file`]) where it understands
/// the file — versions 2 and 3, no split or sparse index, a working tree — libgit2's otherwise.
enum IndexView {
    Native(IndexFile),
    Git(git2::Index),
}

impl IndexView {
    /// Reads the index without holding kaizen's lock (checks only, never written back).
    fn read(repo: &Repository) -> Result<IndexView, ApplyError> {
        if let Some(f) = read_native(repo)? {
            return Ok(IndexView::Native(f));
        }
        repo.index()
            .map(IndexView::Git)
            .map_err(|e| git_err("cannot read the index", e))
    }

    /// The stage-0 blob of `path`: `Some(None)` absent, `None` conflicted.
    fn stage_blob(&self, path: &str) -> Option<Option<Oid>> {
        match self {
            IndexView::Native(f) => f.stage_blob(path),
            IndexView::Git(index) => index_blob(index, path),
        }
    }
}

/// The index as read once under kaizen's [`GitLock`]: the checks of an operation and its edit
/// use this one copy, so the index is read once and written once.
///
/// kaizen's own reader reads `.git/index` itself (kaizen holds `.git/index.lock`, so no git
/// process writes it meanwhile) and writes the edited index to a temp file beside it, renamed
/// over `.git/index`. For an index only libgit2 understands, it is opened from a hard link of
/// `.git/index` beside it (a copy where links are not supported), because libgit2 would stage a
/// write of `.git/index` in `.git/index.lock`, which kaizen holds: libgit2 writes the edited
/// index to the link's own lock file and renames it over the link, then kaizen renames the link
/// over `.git/index`. Either way the live file is never written in place, so a kill at any point
/// leaves the old index or the new one; the temp file is kaizen's (`index.kaizen-tmp-<pid>`),
/// removed by start-up recovery, and removed when dropped unwritten.
struct LockedIndex {
    view: IndexView,
    /// The working tree, where racily clean entries are checked ([`IndexFile::serialize`]).
    root: PathBuf,
    tmp: PathBuf,
    live: PathBuf,
    done: bool,
}

impl LockedIndex {
    fn open(repo: &Repository, _lock: &GitLock) -> Result<LockedIndex, ApplyError> {
        let gitdir = repo.path();
        let live = gitdir.join("index");
        let tmp = gitdir.join(format!("index{TEMP_MARK}{}", std::process::id()));
        remove_stale(&tmp)?;
        if let (Some(root), Some(f)) = (repo.workdir(), read_native(repo)?) {
            return Ok(LockedIndex {
                view: IndexView::Native(f),
                root: root.to_path_buf(),
                tmp,
                live,
                done: false,
            });
        }
        match fs::hard_link(&live, &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => match fs::copy(&live, &tmp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("cannot copy {}", live.display()), e)),
            },
        }
        let index = match git2::Index::open(&tmp) {
            Ok(i) => i,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(git_err(
                    format!("cannot read the index {}", live.display()),
                    e,
                ));
            }
        };
        Ok(LockedIndex {
            view: IndexView::Git(index),
            root: repo.workdir().unwrap_or(gitdir).to_path_buf(),
            tmp,
            live,
            done: false,
        })
    }

    /// Sets (`Some`) or removes (`None`) the entry of each path, writes the index and renames it
    /// over `.git/index`.
    fn write(mut self, updates: &[(String, Option<IndexEntry>)]) -> Result<(), ApplyError> {
        match &mut self.view {
            IndexView::Native(f) => {
                f.edit(updates).map_err(|e| {
                    ApplyError::Repository(format!(
                        "cannot update the index for {}: {}",
                        e.path, e.what
                    ))
                })?;
                write_new(&self.tmp, |w| f.serialize_to(&self.root, w))?;
            }
            IndexView::Git(index) => {
                for (path, entry) in updates {
                    match entry {
                        Some(e) => index.add(e).map_err(|e| {
                            git_err(format!("cannot update the index for {path}"), e)
                        })?,
                        None => match index.remove_path(Path::new(path)) {
                            Ok(()) => {}
                            Err(e) if e.code() == ErrorCode::NotFound => {}
                            Err(e) => {
                                return Err(git_err(
                                    format!("cannot update the index for {path}"),
                                    e,
                                ));
                            }
                        },
                    }
                }
                index
                    .write()
                    .map_err(|e| git_err("cannot write the index", e))?;
            }
        }
        failpoint("git.before_index_rename");
        fs::rename(&self.tmp, &self.live)
            .map_err(|e| io_err(format!("cannot replace {}", self.live.display()), e))?;
        self.done = true;
        Ok(())
    }
}

/// kaizen's own reading of `.git/index` (an empty index when there is none yet); `None` where
/// only libgit2 understands the file ([`index_file`]'s limits) or the repository is bare.
fn read_native(repo: &Repository) -> Result<Option<IndexFile>, ApplyError> {
    if repo.workdir().is_none() {
        return Ok(None);
    }
    let live = repo.path().join("index");
    match IndexFile::read(&live) {
        Ok(f) => Ok(Some(f.unwrap_or_else(IndexFile::empty))),
        Err(index_file::ReadError::Unsupported(why)) => {
            tracing::debug!("kaizen stage=index: libgit2 handles this index ({})", why.0);
            Ok(None)
        }
        Err(index_file::ReadError::Io(e)) => Err(io_err(
            format!("cannot read the index {}", live.display()),
            e,
        )),
    }
}

/// Removes a temp file a killed process of the same pid left (a pid is reused).
fn remove_stale(path: &Path) -> Result<(), ApplyError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("cannot remove {}", path.display()), e)),
    }
}

/// Creates a new file at `path` (which must not exist) and fills it with `write`.
fn write_new(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> Result<(), ApplyError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(format!("cannot create {}", path.display()), e))?;
    write(&mut f).map_err(|e| io_err(format!("cannot write {}", path.display()), e))
}

impl Drop for LockedIndex {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kaizen's hold on `.git/index.lock`, and what a killed kaizen leaves behind

/// First line of the content kaizen keeps in `.git/index.lock` while it holds it (git never reads
/// a held lock's content; kaizen's start-up reads it to know the lock is its own).
const LOCK_MAGIC: &str = "kaizen-lock v1";

/// Marks kaizen's temp files: `<name>.kaizen-tmp-<pid>` (the owner pid tells whether it is stale).
const TEMP_MARK: &str = ".kaizen-tmp-";

/// Longest directory walk (entries) when looking for kaizen's temp files in the working tree.
const TEMP_WALK_LIMIT: usize = 100_000;

/// Who holds the lock and what its commit in flight changes, so a start-up after a kill can
/// finish it (the commit landed) or discard it (it did not).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Journal {
    pid: u32,
    op: String,
    #[serde(default)]
    intervention: Option<String>,
    /// The branch's full refname.
    #[serde(default)]
    branch: Option<String>,
    /// The branch tip before the commit (`None`: unborn).
    #[serde(default)]
    base: Option<String>,
    /// Whether the working tree follows the commit (the branch is the checked-out one).
    #[serde(default)]
    worktree: bool,
    #[serde(default)]
    changes: Vec<JournalChange>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct JournalChange {
    path: String,
    old: Option<String>,
    new: Option<String>,
    #[serde(default)]
    executable: bool,
}

impl From<&Change> for JournalChange {
    fn from(c: &Change) -> Self {
        JournalChange {
            path: c.path.clone(),
            old: c.old.map(|o| o.to_string()),
            new: c.new.map(|(o, _)| o.to_string()),
            executable: matches!(c.new, Some((_, FileMode::BlobExecutable))),
        }
    }
}

impl JournalChange {
    fn to_change(&self) -> Option<Change> {
        let oid = |s: &Option<String>| -> Option<Option<Oid>> {
            match s {
                None => Some(None),
                Some(v) => Oid::from_str(v).ok().map(Some),
            }
        };
        let mode = if self.executable {
            FileMode::BlobExecutable
        } else {
            FileMode::Blob
        };
        Some(Change {
            path: self.path.clone(),
            old: oid(&self.old)?,
            new: oid(&self.new)?.map(|o| (o, mode)),
        })
    }
}

impl Journal {
    fn render(&self) -> String {
        format!(
            "{LOCK_MAGIC}\n{}\n",
            serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
        )
    }
}

enum LockState {
    Absent,
    /// Not kaizen's (git's own, or unreadable).
    Foreign,
    Kaizen(Journal),
}

fn read_lock(path: &Path) -> LockState {
    match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => LockState::Absent,
        Err(_) => LockState::Foreign,
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = text.lines();
            if lines.next() != Some(LOCK_MAGIC) {
                return LockState::Foreign;
            }
            match lines.next().map(serde_json::from_str::<Journal>) {
                Some(Ok(j)) => LockState::Kaizen(j),
                _ => LockState::Foreign,
            }
        }
    }
}

/// kaizen's hold on `.git/index.lock` for one commit: taken before the branch tip is read and
/// released after the index is written, so no git process can commit or stage in between and a
/// held lock stops kaizen *before* it commits (never a commit with a stale index). Dropped
/// without [`GitLock::release`] (an error path), it removes the lock.
///
/// While it is held, a second name of the lock stays in the git dir, the *held marker*
/// (`index.lock.held-<n>.kaizen-tmp-<pid>`, [`held_marker`]): created before the lock and removed
/// after it, so it outlives the lock. kaizen writes temp files in the working tree only while it
/// holds the lock; if a kill leaves one and a person then deletes `.git/index.lock` (as git's
/// own message suggests), the marker is still there, and the routine recovery — which looks at
/// the git dir's top level every cycle — sees a dead kaizen's file and walks the working tree.
/// So no cycle has to walk the whole tree on the chance that a lock was removed by hand.
struct GitLock {
    path: PathBuf,
    /// The held marker, when this lock made one (a lock taken over in recovery does not).
    marker: Option<PathBuf>,
    held: bool,
}

/// A fresh held marker name of this process in `gitdir` (see [`GitLock`]): numbered, since
/// one process may try for the lock from more than one place (the applier, a publisher).
fn held_marker(gitdir: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    gitdir.join(format!(
        "index.lock.held-{n}{TEMP_MARK}{}",
        std::process::id()
    ))
}

impl GitLock {
    fn acquire(gitdir: &Path, wait: std::time::Duration, op: &str) -> Result<GitLock, ApplyError> {
        let path = gitdir.join("index.lock");
        let pid = std::process::id();
        let content = Journal {
            pid,
            op: op.to_string(),
            ..Default::default()
        }
        .render();
        // The held marker, written first: the lock is made from it (a hard link, so both
        // names hold the journal) and it is removed only after the lock.
        let tmp = held_marker(gitdir);
        // A file of that name can only be a dead process's (the same pid, reused): a new file,
        // never a write into its inode (which a dead kaizen's lock may share).
        let _ = fs::remove_file(&tmp);
        fs::write(&tmp, &content)
            .map_err(|e| io_err(format!("cannot write {}", tmp.display()), e))?;
        let deadline = std::time::Instant::now() + wait;
        let mut links = true;
        let result = loop {
            // A hard link creates the lock with its content in one step (exclusively); where
            // links are unsupported, an exclusive create followed by the write.
            let attempt = if links {
                fs::hard_link(&tmp, &path)
            } else {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .and_then(|mut f| io::Write::write_all(&mut f, content.as_bytes()))
            };
            match attempt {
                Ok(()) => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if std::time::Instant::now() >= deadline {
                        break Err(ApplyError::Busy {
                            what: describe_lock(&path),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(_) if links => links = false,
                Err(e) => break Err(io_err(format!("cannot create {}", path.display()), e)),
            }
        };
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let lock = GitLock {
            path,
            marker: Some(tmp),
            held: true,
        };
        failpoint("git.after_lock");
        Ok(lock)
    }

    /// Takes over a dead kaizen's lock in place (rewriting it as ours), for recovery.
    fn take_over(path: &Path, dead: &Journal) -> Result<GitLock, ApplyError> {
        let lock = GitLock {
            path: path.to_path_buf(),
            marker: None,
            held: true,
        };
        lock.record(&Journal {
            pid: std::process::id(),
            op: format!("recover (from pid {})", dead.pid),
            ..dead.clone()
        })?;
        Ok(lock)
    }

    /// Replaces the lock's content (atomically: written beside it, renamed over it).
    fn record(&self, j: &Journal) -> Result<(), ApplyError> {
        let tmp = self
            .path
            .with_file_name(format!("index.lock{TEMP_MARK}{}", std::process::id()));
        fs::write(&tmp, j.render())
            .and_then(|()| fs::rename(&tmp, &self.path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                io_err(format!("cannot write {}", self.path.display()), e)
            })
    }

    fn release(mut self) -> Result<(), ApplyError> {
        self.held = false;
        let gone = |p: &Path| match fs::remove_file(p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("cannot remove {}", p.display()), e)),
        };
        // The lock first, the marker after it (a kill between leaves only the marker: the
        // next recovery walks the tree once for nothing and removes it).
        gone(&self.path)?;
        match self.marker.take() {
            Some(m) => gone(&m),
            None => Ok(()),
        }
    }
}

impl Drop for GitLock {
    fn drop(&mut self) {
        if self.held {
            let _ = fs::remove_file(&self.path);
            if let Some(m) = &self.marker {
                let _ = fs::remove_file(m);
            }
        }
    }
}

fn describe_lock(path: &Path) -> String {
    match read_lock(path) {
        LockState::Kaizen(j) => format!(
            "{} is held by kaizen (pid {}, {})",
            path.display(),
            j.pid,
            j.op
        ),
        _ => format!(
            "{} exists: another git process is running, or one crashed (remove it if none is)",
            path.display()
        ),
    }
}

fn ref_lock_finding(path: &str) -> Finding {
    Finding {
        kind: "ref_lock".into(),
        path: path.to_string(),
        detail: "a branch lock not known to be kaizen's: git is running, or a git process \
                 crashed (remove it if none is running); it blocks every commit on that branch"
            .into(),
        repaired: false,
    }
}

/// `*.lock` files under `dir` (branch locks), bounded.
fn ref_locks(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > TEMP_WALK_LIMIT {
                return out;
            }
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "lock") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The owner pid of a kaizen temp file name (`….kaizen-tmp-<pid>`, optionally `.lock` after it).
fn temp_owner(name: &str) -> Option<u32> {
    let (_, rest) = name.rsplit_once(TEMP_MARK)?;
    let digits = rest.strip_suffix(".lock").unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// kaizen's temp files under `dir`: the git dir's top level only, or (`tree`) the whole working
/// tree except `.git`, without following symlinks, bounded by [`TEMP_WALK_LIMIT`] entries.
fn collect_temp_files(dir: &Path, tree: bool, out: &mut Vec<(PathBuf, u32)>, seen: &mut usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        *seen += 1;
        if *seen > TEMP_WALK_LIMIT {
            return;
        }
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            if tree && name != ".git" {
                collect_temp_files(&e.path(), true, out, seen);
            }
        } else if ft.is_file()
            && let Some(pid) = temp_owner(&name)
        {
            out.push((e.path(), pid));
        }
    }
}

/// Whether process `pid` is running. This process counts as not running: it holds nothing
/// between operations. Where liveness cannot be told (no `/proc`), every owner counts as alive,
/// so nothing is removed (fail closed).
fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// The full refname HEAD points at, if it is symbolic and UTF-8.
fn head_refname(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    head.symbolic_target().ok().flatten().map(str::to_string)
}

fn short_oid(s: &str) -> &str {
    s.get(..10).unwrap_or(s)
}

/// A named crash point (see `kaizen_core::failpoint`): the kill harness kills the process here.
fn failpoint(name: &'static str) {
    kaizen_core::failpoint::hit(name);
}

// ---------------------------------------------------------------------------------------------
// Paths

/// Checks `raw` (a path from a candidate) and returns it normalized, `/`-separated and relative
/// to `root`: no absolute paths, no `..` escaping the root, nothing under `.git`, and no path that
/// runs through a symlink on disk (kaizen edits regular files only; a symlink escaping the
/// repository is reported as such).
pub fn contain(root: &Path, raw: &str) -> Result<String, ApplyError> {
    let err = |why: String| ApplyError::Path {
        path: raw.to_string(),
        why,
    };
    if raw.trim().is_empty() {
        return Err(err("the path is empty".into()));
    }
    if raw.contains('\0') {
        return Err(err("the path contains a NUL byte".into()));
    }
    if raw.contains('\\') {
        return Err(err(
            "the path contains a backslash; use `/` separators".into()
        ));
    }
    if raw.starts_with('/') || Path::new(raw).is_absolute() {
        return Err(err(
            "absolute paths are not allowed; give a path relative to the repository root".into(),
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(err("`..` escapes the repository root".into()));
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(err("the path names the repository root, not a file".into()));
    }
    if parts.iter().any(|p| p.eq_ignore_ascii_case(".git")) {
        return Err(err(
            "paths inside `.git` (git's own data) are never edited".into()
        ));
    }
    let mut cur = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        let shown = parts[..=i].join("/");
        let meta = match fs::symlink_metadata(&cur) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_err(format!("cannot inspect {}", cur.display()), e)),
        };
        if meta.file_type().is_symlink() {
            return Err(err(match fs::canonicalize(&cur) {
                Ok(t) if t.starts_with(root) => format!(
                    "goes through symlink `{shown}` (→ {}); kaizen edits regular files only",
                    t.display()
                ),
                Ok(t) => format!(
                    "goes through symlink `{shown}`, which resolves outside the repository (to {})",
                    t.display()
                ),
                Err(_) => format!("goes through symlink `{shown}`, whose target does not exist"),
            }));
        }
        let last = i + 1 == parts.len();
        if !last && !meta.is_dir() {
            return Err(err(format!("`{shown}` is a file, not a directory")));
        }
        if last && meta.is_dir() {
            return Err(err("is a directory, not a file".into()));
        }
    }
    Ok(parts.join("/"))
}

// ---------------------------------------------------------------------------------------------
// Trees, blobs, index, disk

fn empty_tree(repo: &Repository) -> Result<Tree<'_>, ApplyError> {
    let oid = repo
        .treebuilder(None)
        .and_then(|b| b.write())
        .map_err(|e| git_err("cannot write an empty tree", e))?;
    repo.find_tree(oid)
        .map_err(|e| git_err("cannot read an empty tree", e))
}

/// The blob at `path` in `tree` (`None`: absent) and the mode to keep when rewriting it.
fn tree_blob(tree: &Tree<'_>, path: &str) -> Result<(Option<Oid>, FileMode), ApplyError> {
    let entry = match tree.get_path(Path::new(path)) {
        Ok(e) => e,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok((None, FileMode::Blob)),
        Err(e) => return Err(git_err(format!("cannot look up {path}"), e)),
    };
    let perr = |why: &str| ApplyError::Path {
        path: path.to_string(),
        why: why.to_string(),
    };
    match entry.filemode() {
        0o100644 => Ok((Some(entry.id()), FileMode::Blob)),
        0o100755 => Ok((Some(entry.id()), FileMode::BlobExecutable)),
        0o120000 => Err(perr(
            "is a symlink in the repository; kaizen edits regular files only",
        )),
        0o160000 => Err(perr("is a submodule; kaizen edits regular files only")),
        0o040000 => Err(perr("is a directory in the repository, not a file")),
        _ => Err(perr("is not a regular file in the repository")),
    }
}

/// The id [`Applier::file_id`] gives a file: its blob's object id (equal ids, equal content),
/// or `absent` (never a hex object id) when the tip has no such file.
fn blob_id(oid: Option<Oid>) -> String {
    oid.map_or_else(|| "absent".to_string(), |o| o.to_string())
}

fn blob_text(repo: &Repository, oid: Oid, path: &str) -> Result<String, ApplyError> {
    let blob = repo
        .find_blob(oid)
        .map_err(|e| git_err(format!("cannot read {path} at HEAD"), e))?;
    String::from_utf8(blob.content().to_vec()).map_err(|_| {
        ApplyError::Edit(format!(
            "{path}: not UTF-8 text; kaizen edits text files only"
        ))
    })
}

/// The stage-0 blob of `path` in the index: `Some(None)` absent, `None` conflicted.
fn index_blob(index: &git2::Index, path: &str) -> Option<Option<Oid>> {
    let p = Path::new(path);
    if (1..=3).any(|stage| index.get_path(p, stage).is_some()) {
        return None;
    }
    Some(index.get_path(p, 0).map(|e| e.id))
}

fn disk_state(root: &Path, path: &str) -> Result<Disk, ApplyError> {
    let full = root.join(path);
    match fs::symlink_metadata(&full) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Disk::Absent),
        // A parent that is a file (ENOTDIR) also means the path does not exist as a file.
        Err(e) if e.raw_os_error() == Some(20) => Ok(Disk::Other),
        Err(e) => Err(io_err(format!("cannot inspect {}", full.display()), e)),
        Ok(m) if !m.file_type().is_file() => Ok(Disk::Other),
        Ok(_) => {
            let bytes = fs::read(&full)
                .map_err(|e| io_err(format!("cannot read {}", full.display()), e))?;
            Oid::hash_object(ObjectType::Blob, &bytes)
                .map(Disk::File)
                .map_err(|e| git_err(format!("cannot hash {}", full.display()), e))
        }
    }
}

fn bare_entry(path: &str, oid: Oid, mode: FileMode) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: u32::from(mode),
        uid: 0,
        gid: 0,
        file_size: 0,
        id: oid,
        flags: u16::try_from(path.len().min(0xfff)).unwrap_or(0xfff),
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// An index entry for `path` naming `oid`, with the stat data of the file on disk (just written
/// by kaizen), so git trusts it without re-hashing; without stat data if it cannot be read.
fn disk_entry(root: &Path, path: &str, oid: Oid, mode: FileMode) -> IndexEntry {
    let mut e = bare_entry(path, oid, mode);
    #[cfg(unix)]
    if let Ok(m) = fs::symlink_metadata(root.join(path)) {
        use std::os::unix::fs::MetadataExt;
        let secs = |s: i64| i32::try_from(s).unwrap_or(0);
        let nanos = |n: i64| u32::try_from(n).unwrap_or(0);
        e.ctime = IndexTime::new(secs(m.ctime()), nanos(m.ctime_nsec()));
        e.mtime = IndexTime::new(secs(m.mtime()), nanos(m.mtime_nsec()));
        // The index stores these truncated to 32 bits, as git does.
        e.dev = (m.dev() & 0xffff_ffff) as u32;
        e.ino = (m.ino() & 0xffff_ffff) as u32;
        e.uid = m.uid();
        e.gid = m.gid();
        e.file_size = (m.size() & 0xffff_ffff) as u32;
    }
    #[cfg(not(unix))]
    let _ = root;
    e
}

fn updated_tree(repo: &Repository, base: &Tree<'_>, changes: &[Change]) -> Result<Oid, ApplyError> {
    let mut b = TreeUpdateBuilder::new();
    for ch in changes {
        match ch.new {
            Some((oid, mode)) => b.upsert(ch.path.as_str(), oid, mode),
            None => b.remove(ch.path.as_str()),
        };
    }
    b.create_updated(repo, base)
        .map_err(|e| git_err("cannot build the new tree", e))
}

/// What a (non-merge) commit changes against its first parent.
fn commit_changes(repo: &Repository, c: &git2::Commit<'_>) -> Result<Vec<Change>, ApplyError> {
    let new = c
        .tree()
        .map_err(|e| git_err("cannot read the commit's tree", e))?;
    let old = match c.parent(0) {
        Ok(p) => p
            .tree()
            .map_err(|e| git_err("cannot read the parent's tree", e))?,
        Err(_) => empty_tree(repo)?,
    };
    tree_changes(repo, &old, &new)
}

/// Paths a (non-merge) commit changes against its first parent.
fn changed_paths(repo: &Repository, c: &git2::Commit<'_>) -> Result<Vec<String>, ApplyError> {
    Ok(commit_changes(repo, c)?
        .into_iter()
        .map(|c| c.path)
        .collect())
}

/// Blob-level changes from `old` to `new`, in path order.
///
/// Walks both trees together and skips every subtree whose id is the same on both sides, so the
/// cost is that of the changed paths (times the depth), not of the whole tree: libgit2's
/// `diff_tree_to_tree` visits every entry, which in a repository of 10k files made each revert
/// pay for two full-tree walks. Iterative (an explicit stack), so a deep tree cannot overflow
/// the stack.
fn tree_changes(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
) -> Result<Vec<Change>, ApplyError> {
    type Entries = BTreeMap<Vec<u8>, (Oid, i32)>;
    let entries = |tree: Option<Oid>| -> Result<Entries, ApplyError> {
        let mut out = BTreeMap::new();
        if let Some(oid) = tree {
            let t = repo
                .find_tree(oid)
                .map_err(|e| git_err(format!("cannot read tree {oid}"), e))?;
            for e in t.iter() {
                out.insert(e.name_bytes().to_vec(), (e.id(), e.filemode()));
            }
        }
        Ok(out)
    };
    let is_tree = |mode: i32| mode == 0o040000;
    let leaf = |(oid, mode): (Oid, i32)| -> (Oid, FileMode) {
        let m = if mode == 0o100755 {
            FileMode::BlobExecutable
        } else {
            FileMode::Blob
        };
        (oid, m)
    };
    let mut out = Vec::new();
    // (directory prefix with a trailing '/', or empty; old subtree; new subtree)
    let mut stack: Vec<(String, Option<Oid>, Option<Oid>)> =
        vec![(String::new(), Some(old.id()), Some(new.id()))];
    while let Some((prefix, o, n)) = stack.pop() {
        if o == n {
            continue;
        }
        let (olds, news) = (entries(o)?, entries(n)?);
        let mut names: Vec<&Vec<u8>> = olds.keys().chain(news.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let (a, b) = (olds.get(name).copied(), news.get(name).copied());
            if a == b {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                return Err(ApplyError::Repository(
                    "a changed path is not valid UTF-8".to_string(),
                ));
            };
            let path = format!("{prefix}{name}");
            let a_tree = a.filter(|(_, m)| is_tree(*m)).map(|(o, _)| o);
            let b_tree = b.filter(|(_, m)| is_tree(*m)).map(|(o, _)| o);
            if a_tree.is_some() || b_tree.is_some() {
                stack.push((format!("{path}/"), a_tree, b_tree));
            }
            let a_leaf = a.filter(|(_, m)| !is_tree(*m));
            let b_leaf = b.filter(|(_, m)| !is_tree(*m));
            if a_leaf.is_some() || b_leaf.is_some() {
                out.push(Change {
                    path,
                    old: a_leaf.map(|(o, _)| o),
                    new: b_leaf.map(leaf),
                });
            }
        }
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(out)
}

/// The revert of `target` on top of `base` without a merge of whole trees, when it is trivial:
/// every path the target changed is at `base` still exactly as the target left it (it goes back
/// to the target's parent) or already back at the parent (nothing to do). This is what a
/// three-way merge gives in that case; anything else — a later edit of one of the paths, a
/// rename, a symlink or submodule — returns `None` and takes the merge path
/// (`Repository::revert_commit`), which detects conflicts.
fn trivial_revert(
    repo: &Repository,
    target: &git2::Commit<'_>,
    target_changes: &[Change],
    base: &Tree<'_>,
) -> Result<Option<Vec<Change>>, ApplyError> {
    let own = target
        .tree()
        .map_err(|e| git_err("cannot read the commit's tree", e))?;
    let parent = match target.parent(0) {
        Ok(p) => p
            .tree()
            .map_err(|e| git_err("cannot read the parent's tree", e))?,
        Err(_) => empty_tree(repo)?,
    };
    let raw = |tree: &Tree<'_>, path: &str| -> Result<Option<(Oid, i32)>, ApplyError> {
        match tree.get_path(Path::new(path)) {
            Ok(e) => Ok(Some((e.id(), e.filemode()))),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_err(format!("cannot look up {path}"), e)),
        }
    };
    let regular = |m: i32| m == 0o100644 || m == 0o100755;
    let mut out = Vec::new();
    for ch in target_changes {
        let (at_tip, after, before) = (
            raw(base, &ch.path)?,
            raw(&own, &ch.path)?,
            raw(&parent, &ch.path)?,
        );
        if [at_tip, after, before]
            .iter()
            .flatten()
            .any(|(_, m)| !regular(*m))
        {
            return Ok(None);
        }
        if at_tip == before {
            continue;
        }
        if at_tip != after {
            return Ok(None);
        }
        out.push(Change {
            path: ch.path.clone(),
            old: at_tip.map(|(o, _)| o),
            new: before.map(|(o, m)| {
                let mode = if m == 0o100755 {
                    FileMode::BlobExecutable
                } else {
                    FileMode::Blob
                };
                (o, mode)
            }),
        });
    }
    Ok(Some(out))
}

/// Writes `bytes` to `root/path` via a temporary file and a rename, so readers never see a half
/// written file. Keeps the permissions of a file it replaces.
fn write_atomic(root: &Path, path: &str, bytes: &[u8], executable: bool) -> Result<(), ApplyError> {
    let full = root.join(path);
    let dir = full.parent().unwrap_or(root).to_path_buf();
    fs::create_dir_all(&dir).map_err(|e| io_err(format!("cannot create {}", dir.display()), e))?;
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.kaizen-tmp-{}", std::process::id()));
    let result = (|| -> io::Result<()> {
        fs::write(&tmp, bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = match fs::metadata(&full) {
                Ok(m) => m.permissions().mode() & 0o7777,
                Err(_) => 0o644,
            };
            let mode = if executable {
                mode | 0o111
            } else {
                mode & !0o111
            };
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = executable;
        fs::rename(&tmp, &full)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(format!("cannot write {}", full.display()), e));
    }
    Ok(())
}

fn remove_file_and_empty_dirs(root: &Path, path: &str) -> Result<(), ApplyError> {
    let full = root.join(path);
    match fs::remove_file(&full) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("cannot remove {}", full.display()), e)),
    }
    let mut dir = full.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(&d).is_err() {
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Ok(())
}

fn signature(
    repo: &Repository,
    clock: Option<&dyn kaizen_core::clock::Clock>,
) -> Result<Signature<'static>, ApplyError> {
    let (name, email) = match repo.signature() {
        Ok(s) => (
            s.name().unwrap_or("kaizen").to_string(),
            s.email().unwrap_or("kaizen@localhost").to_string(),
        ),
        Err(_) => ("kaizen".to_string(), "kaizen@localhost".to_string()),
    };
    let sig = match clock {
        Some(c) => Signature::new(&name, &email, &git2::Time::new(c.now().timestamp(), 0)),
        None => Signature::now(&name, &email),
    };
    sig.map_err(|e| git_err("cannot make a signature", e))
}

// ---------------------------------------------------------------------------------------------
// Messages and trailers

/// Removes characters git messages must not hold (NUL, CR and other controls except newline/tab).
fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

/// One line: every run of whitespace/control characters becomes one space; bounded length.
fn one_line(s: &str, max_chars: usize) -> String {
    let flat = s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    truncate_chars(&flat, max_chars)
}

fn truncate_chars(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out = out.trim_end().to_string();
    out.push('…');
    out
}

fn trailer_value(s: &str) -> String {
    let v = one_line(s, MAX_TRAILER_CHARS);
    if v.is_empty() { "-".to_string() } else { v }
}

/// The commit message of an intervention: subject, hypothesis, edits, trailers.
pub fn apply_message(id: InterventionId, c: &Candidate) -> String {
    let subject = one_line(
        &format!("kaizen: {}", one_line(&c.title, usize::MAX)),
        MAX_SUBJECT_CHARS,
    );
    let mut msg = subject;
    msg.push_str("\n\n");
    let hypothesis = clean_text(&c.hypothesis);
    let hypothesis = hypothesis.trim();
    if !hypothesis.is_empty() {
        msg.push_str(hypothesis);
        msg.push_str("\n\n");
    }
    if !c.change.is_empty() {
        for line in c.change_lines() {
            msg.push_str("- ");
            msg.push_str(&one_line(&line, 300));
            msg.push('\n');
        }
        msg.push('\n');
    }
    let rollback = c.rollback.as_deref().unwrap_or("none");
    let trailers = [
        (TRAILER_INTERVENTION, id.to_string()),
        ("Kaizen-Area", c.area.clone()),
        ("Kaizen-Kind", c.kind.clone()),
        ("Kaizen-Risk", c.risk.to_string()),
        ("Kaizen-Confidence", c.confidence.to_string()),
        ("Kaizen-Prediction", c.prediction.to_string()),
        ("Kaizen-Rollback", rollback.to_string()),
        ("Kaizen-Origin", c.origin.to_string()),
    ];
    for (k, v) in trailers {
        msg.push_str(k);
        msg.push_str(": ");
        msg.push_str(&trailer_value(&v));
        msg.push('\n');
    }
    msg
}

/// The commit message of a revert of `sha` (whose subject was `title`).
pub fn revert_message(id: InterventionId, title: &str, sha: &str, reason: &str) -> String {
    let title = one_line(title, usize::MAX);
    let mut msg = one_line(&format!("Revert \"{title}\""), MAX_SUBJECT_CHARS + 10);
    msg.push_str("\n\n");
    let reason = clean_text(reason);
    let reason = reason.trim();
    if !reason.is_empty() {
        msg.push_str(reason);
        msg.push_str("\n\n");
    }
    msg.push_str(&format!("This reverts commit {sha}.\n\n"));
    msg.push_str(&format!(
        "{TRAILER_INTERVENTION}: {}\n",
        trailer_value(&id.to_string())
    ));
    msg.push_str(&format!("{TRAILER_REVERTS}: {}\n", trailer_value(sha)));
    msg
}

/// The commit message of a switchback flip undoing `sha`: why, and the trailers naming the
/// intervention, the block and the state after the flip.
pub fn flip_message(id: InterventionId, sha: &str, flip: &Flip) -> String {
    let state = if flip.on { "on" } else { "off" };
    let title = one_line(&flip.title, usize::MAX);
    let mut msg = one_line(
        &format!("kaizen: switchback {} {state}: {title}", flip.marker),
        MAX_SUBJECT_CHARS,
    );
    msg.push_str("\n\n");
    let reason = clean_text(&flip.reason);
    let reason = reason.trim();
    if !reason.is_empty() {
        msg.push_str(reason);
        msg.push_str("\n\n");
    }
    msg.push_str(&format!("This undoes commit {sha}.\n\n"));
    for (k, v) in [
        (TRAILER_INTERVENTION, id.to_string()),
        (TRAILER_SWITCHBACK, flip.marker.clone()),
        (TRAILER_SWITCHBACK_STATE, state.to_string()),
        (TRAILER_UNDOES, sha.to_string()),
    ] {
        msg.push_str(&format!("{k}: {}\n", trailer_value(&v)));
    }
    msg
}

/// `message` with the audit chain's head as a `Kaizen-Audit` trailer (in its trailer paragraph,
/// or a new one), so git witnesses how far the ledger had got when the commit was made.
pub fn with_audit(message: &str, head: Option<&str>) -> String {
    let Some(head) = head else {
        return message.to_string();
    };
    let mut msg = message.trim_end().to_string();
    msg.push_str(if parse_trailers(&msg).is_empty() {
        "\n\n"
    } else {
        "\n"
    });
    msg.push_str(&format!("{TRAILER_AUDIT}: {}\n", trailer_value(head)));
    msg
}

/// The local branches' tips, sorted, without repeats.
fn local_tips(repo: &Repository) -> Result<Vec<Oid>, ApplyError> {
    let mut tips: Vec<Oid> = Vec::new();
    let branches = repo
        .branches(Some(git2::BranchType::Local))
        .map_err(|e| git_err("cannot list branches", e))?;
    for b in branches {
        let (b, _) = b.map_err(|e| git_err("cannot list branches", e))?;
        if let Some(t) = b.get().target() {
            tips.push(t);
        }
    }
    tips.sort();
    tips.dedup();
    Ok(tips)
}

/// Every commit on a local branch, not reachable from `hide`, whose trailers name an
/// intervention (bounded walk).
fn trailer_commits_hiding(
    repo: &Repository,
    hide: &[Oid],
) -> Result<Vec<TrailerCommit>, ApplyError> {
    let mut out: Vec<TrailerCommit> = Vec::new();
    walk_local_history(repo, hide, |branch, oid, trailers| {
        let Some(branch) = branch else { return };
        let id = trailers.iter().find_map(|(k, v)| {
            k.eq_ignore_ascii_case(TRAILER_INTERVENTION)
                .then(|| v.parse::<InterventionId>().ok())
                .flatten()
        });
        let Some(id) = id else { return };
        let value = |name: &str| {
            trailers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        out.push(TrailerCommit {
            sha: oid.to_string(),
            branch: branch.to_string(),
            id,
            reverts: value(TRAILER_REVERTS),
            switchback: value(TRAILER_SWITCHBACK),
        });
    })?;
    Ok(out)
}

/// Visits each commit reachable from a local branch and not from `hide` once (at most
/// [`HISTORY_WALK_LIMIT`] in all), with the branch it was first reached from (`None`: a branch
/// without a UTF-8 name) and its trailers: the one bounded history walk behind the trailer and
/// audit-witness searches.
fn walk_local_history(
    repo: &Repository,
    hide: &[Oid],
    mut visit: impl FnMut(Option<&str>, Oid, &[(String, String)]),
) -> Result<(), ApplyError> {
    let mut seen = std::collections::BTreeSet::new();
    let branches = repo
        .branches(Some(git2::BranchType::Local))
        .map_err(|e| git_err("cannot list branches", e))?;
    let mut budget = HISTORY_WALK_LIMIT;
    for b in branches {
        let (b, _) = b.map_err(|e| git_err("cannot list branches", e))?;
        let Some(tip) = b.get().target() else {
            continue;
        };
        let name = b.name().ok().flatten().map(str::to_string);
        let mut walk = repo
            .revwalk()
            .map_err(|e| git_err("cannot walk the history", e))?;
        walk.push(tip)
            .map_err(|e| git_err("cannot walk the history", e))?;
        for h in hide {
            walk.hide(*h)
                .map_err(|e| git_err("cannot walk the history", e))?;
        }
        for oid in walk {
            if budget == 0 {
                return Ok(());
            }
            budget -= 1;
            let oid = oid.map_err(|e| git_err("cannot walk the history", e))?;
            if !seen.insert(oid) {
                continue;
            }
            let c = repo
                .find_commit(oid)
                .map_err(|e| git_err(format!("cannot read commit {oid}"), e))?;
            let trailers = parse_trailers(&String::from_utf8_lossy(c.message_bytes()));
            visit(name.as_deref(), oid, &trailers);
        }
    }
    Ok(())
}

/// Trailers (`Key: value`) of a commit message, read strictly from its last paragraph: every line
/// of that paragraph must be a trailer, else there are none. A message of one paragraph has none.
pub fn parse_trailers(message: &str) -> Vec<(String, String)> {
    let text = message.replace("\r\n", "\n");
    let text = text.trim_end();
    let Some((_, last)) = text.rsplit_once("\n\n") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in last.lines() {
        // Indented trailers too: git's squash message indents the squashed commits' messages.
        let line = line.trim_start();
        let Some((k, v)) = line.split_once(':') else {
            return Vec::new();
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Vec::new();
        }
        out.push((k.to_string(), v.trim().to_string()));
    }
    out
}

fn names_intervention(trailers: &[(String, String)], id: InterventionId) -> bool {
    trailers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case(TRAILER_INTERVENTION)
            && v.parse::<InterventionId>().is_ok_and(|x| x == id)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_held_marker_lives_exactly_as_long_as_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let gitdir = dir.path();
        let lock = GitLock::acquire(gitdir, std::time::Duration::ZERO, "test").unwrap();
        let marker = lock.marker.clone().unwrap();
        // Both names hold the journal; the marker is a kaizen temp file of this process.
        assert!(matches!(
            read_lock(&gitdir.join("index.lock")),
            LockState::Kaizen(_)
        ));
        assert!(matches!(read_lock(&marker), LockState::Kaizen(_)));
        let name = marker.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(temp_owner(&name), Some(std::process::id()));
        // A second taker in the same process is refused, leaves no marker of its own and does
        // not touch the holder's (nor the journal in the lock).
        let before = std::fs::read(gitdir.join("index.lock")).unwrap();
        assert!(matches!(
            GitLock::acquire(gitdir, std::time::Duration::ZERO, "other"),
            Err(ApplyError::Busy { .. })
        ));
        assert!(marker.exists());
        assert_eq!(std::fs::read(gitdir.join("index.lock")).unwrap(), before);
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(gitdir).len(), 2, "{:?}", names(gitdir));
        lock.release().unwrap();
        assert!(!gitdir.join("index.lock").exists() && !marker.exists());
        // Dropped on an error path: both go too.
        drop(GitLock::acquire(gitdir, std::time::Duration::ZERO, "test").unwrap());
        assert!(!gitdir.join("index.lock").exists() && !marker.exists());
    }

    #[test]
    fn trailers_only_from_last_paragraph() {
        let m = "s\n\nKaizen-Intervention: K-000001\n\nbody\n\nKaizen-Intervention: K-000002\nKaizen-Area: a\n";
        let t = parse_trailers(m);
        assert_eq!(t.len(), 2);
        assert!(names_intervention(&t, InterventionId(2)));
        assert!(!names_intervention(&t, InterventionId(1)));
        assert!(parse_trailers("Kaizen-Intervention: K-000001").is_empty());
        assert!(parse_trailers("s\n\nKaizen-Intervention: K-000001\nnot a trailer\n").is_empty());
    }

    #[test]
    fn one_line_flattens_and_truncates() {
        assert_eq!(one_line("a\nb\r\n  c", 100), "a b c");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(trailer_value("\n\n"), "-");
    }

    #[test]
    fn containment_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(contain(&root, "./a//b/../c.yaml").unwrap(), "a/c.yaml");
        for bad in [
            "",
            "/etc/x",
            "../x",
            "a/../../x",
            ".git/config",
            "x/.GIT/y",
            "a\\b",
            ".",
        ] {
            assert!(
                matches!(contain(&root, bad), Err(ApplyError::Path { .. })),
                "{bad:?}"
            );
        }
    }
}

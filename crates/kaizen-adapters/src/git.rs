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
use kaizen_core::apply::{Applier, ApplyError, CommitRef};
use kaizen_core::edit::MAX_FILE_BYTES;
use kaizen_core::intervention::{Candidate, InterventionId};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

type Hook = Box<dyn Fn() + Send + Sync>;

/// Applies and reverts interventions as commits in a git working tree (see the module docs).
///
/// `Repository` is not `Sync`, so the applier keeps only the (canonical) working-tree path and
/// opens the repository per call.
pub struct GitApplier {
    root: PathBuf,
    branch: Option<String>,
    before_commit: Option<Hook>,
    clock: Option<std::sync::Arc<dyn kaizen_core::clock::Clock>>,
}

impl std::fmt::Debug for GitApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitApplier")
            .field("root", &self.root)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

fn git_err(context: impl std::fmt::Display, e: git2::Error) -> ApplyError {
    ApplyError::Git(format!("{context}: {}", e.message()))
}

fn io_err(context: impl std::fmt::Display, e: io::Error) -> ApplyError {
    ApplyError::Git(format!("{context}: {e}"))
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
            ApplyError::Git(format!(
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
            return Err(ApplyError::Git(format!("`{b}` is not a valid branch name")));
        }
        Ok(GitApplier {
            root,
            branch: branch.map(str::to_string),
            before_commit: None,
            clock: None,
        })
    }

    /// Dates commits by `clock` instead of the wall clock, so a simulated or `--now` run leaves
    /// a history whose times match the ledger's.
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn kaizen_core::clock::Clock>) -> Self {
        self.clock = Some(clock);
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

    /// The branch HEAD is on (checked against the configured one) and its tip.
    fn tip(&self, repo: &Repository) -> Result<Tip, ApplyError> {
        let head = repo
            .find_reference("HEAD")
            .map_err(|e| git_err("cannot read HEAD", e))?;
        let target = head
            .symbolic_target()
            .map_err(|e| git_err("HEAD points at a branch whose name is not UTF-8", e))?;
        let Some(target) = target else {
            return Err(ApplyError::Git(
                "HEAD is detached: kaizen commits on a branch; check one out first".to_string(),
            ));
        };
        let Some(on) = target.strip_prefix("refs/heads/") else {
            return Err(ApplyError::Git(format!(
                "HEAD points at {target}, which is not a local branch"
            )));
        };
        if let Some(want) = &self.branch
            && want != on
        {
            return Err(ApplyError::Git(format!(
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
        if let Some(hook) = &self.before_commit {
            hook();
        }
        repo.commit(Some(&tip.refname), &sig, &sig, message, &tree, &parents)
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
        repo: &Repository,
        base: &Tree<'_>,
        paths: &[String],
    ) -> Result<(), ApplyError> {
        let index = repo
            .index()
            .map_err(|e| git_err("cannot read the index", e))?;
        let mut dirty = Vec::new();
        for path in paths {
            let (head, _) = tree_blob(base, path)?;
            let staged = index_blob(&index, path);
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

    /// Brings the working tree and index of `changes` to their new content. A file whose disk
    /// content is neither the old nor the new version (a human edited it meanwhile) is left alone
    /// and returned; its index entry still follows the commit.
    fn update_worktree(
        &self,
        repo: &Repository,
        changes: &[Change],
    ) -> Result<Vec<String>, ApplyError> {
        let mut index = repo
            .index()
            .map_err(|e| git_err("cannot read the index", e))?;
        let mut skipped = Vec::new();
        for ch in changes {
            let disk = disk_state(&self.root, &ch.path)?;
            let new_oid = ch.new.map(|(o, _)| o);
            let human = disk == Disk::Other || (disk.oid() != ch.old && disk.oid() != new_oid);
            let rel = Path::new(&ch.path);
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
            }
            match ch.new {
                Some((oid, mode)) if !human => {
                    index.add_path(rel).map_err(|e| {
                        git_err(format!("cannot update the index for {}", ch.path), e)
                    })?;
                    // add_path hashes the working file; make sure the entry names the committed blob.
                    if index_blob(&index, &ch.path) != Some(Some(oid)) {
                        index.add(&bare_entry(&ch.path, oid, mode)).map_err(|e| {
                            git_err(format!("cannot update the index for {}", ch.path), e)
                        })?;
                    }
                }
                Some((oid, mode)) => index
                    .add(&bare_entry(&ch.path, oid, mode))
                    .map_err(|e| git_err(format!("cannot update the index for {}", ch.path), e))?,
                None => match index.remove_path(rel) {
                    Ok(()) => {}
                    Err(e) if e.code() == ErrorCode::NotFound => {}
                    Err(e) => {
                        return Err(git_err(
                            format!("cannot update the index for {}", ch.path),
                            e,
                        ));
                    }
                },
            }
        }
        index
            .write()
            .map_err(|e| git_err("cannot write the index", e))?;
        Ok(skipped)
    }

    /// After a commit: update the working tree, logging (not failing) if that goes wrong — the
    /// commit is the record, and `sync_worktree` repairs the files later.
    fn finish(
        &self,
        repo: &Repository,
        id: Option<InterventionId>,
        stage: &str,
        commit: Oid,
        changes: &[Change],
    ) {
        let who = id.map(|i| i.to_string()).unwrap_or_else(|| "-".to_string());
        match self.update_worktree(repo, changes) {
            Ok(skipped) if skipped.is_empty() => {}
            Ok(skipped) => tracing::warn!(
                "kaizen intervention={who} stage={stage} commit={commit}: left {skipped:?} alone in the \
                 working tree (edited by someone after the commit)"
            ),
            Err(e) => tracing::error!(
                "kaizen intervention={who} stage={stage} commit={commit}: committed, but the working tree \
                 could not be updated ({e}); sync_worktree will repair it"
            ),
        }
    }

    fn apply_inner(
        &self,
        id: Option<InterventionId>,
        candidate: &Candidate,
        commit: bool,
    ) -> Result<Option<CommitRef>, ApplyError> {
        let repo = self.repo()?;
        let tip = self.tip(&repo)?;
        let base = self.tip_tree(&repo, &tip)?;
        let mut paths = Vec::new();
        for edit in &candidate.change {
            paths.push(contain(&self.root, edit.file())?);
        }
        let changes = self.plan_edits(&repo, &base, candidate)?;
        self.check_clean(&repo, &base, &paths)?;
        if changes.is_empty() {
            return Err(ApplyError::NoOp);
        }
        let Some(id) = id.filter(|_| commit) else {
            return Ok(None);
        };
        let tree = updated_tree(&repo, &base, &changes)?;
        let message = apply_message(id, candidate);
        let oid = self.commit(&repo, &tip, tree, &message)?;
        tracing::info!(
            "kaizen intervention={id} stage=apply commit={oid} files={:?}",
            changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>()
        );
        self.finish(&repo, Some(id), "apply", oid, &changes);
        Ok(Some(CommitRef {
            sha: oid.to_string(),
        }))
    }

    /// The commit named by `commit`, checked to be on the branch (the tip or an ancestor of it).
    fn branch_commit<'r>(
        &self,
        repo: &'r Repository,
        tip: &Tip,
        commit: &str,
    ) -> Result<git2::Commit<'r>, ApplyError> {
        let Some(tip_oid) = tip.oid else {
            return Err(ApplyError::Git(format!(
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
            return Err(ApplyError::Git(format!(
                "commit {} is not on {}",
                c.id(),
                tip.refname
            )));
        }
        if c.parent_count() > 1 {
            return Err(ApplyError::Git(format!(
                "commit {} is a merge; kaizen never makes merges",
                c.id()
            )));
        }
        Ok(c)
    }

    fn find(&self, id: InterventionId, reverted: bool) -> Result<Option<String>, ApplyError> {
        let repo = self.repo()?;
        let tip = self.tip(&repo)?;
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
            if !names_intervention(&tr, id) {
                continue;
            }
            let is_revert = tr
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(TRAILER_REVERTS));
            if is_revert == reverted {
                return Ok(Some(oid.to_string()));
            }
        }
        Ok(None)
    }
}

impl Applier for GitApplier {
    fn preflight(&self, candidate: &Candidate) -> Result<(), ApplyError> {
        self.apply_inner(None, candidate, false).map(|_| ())
    }

    fn apply(&self, id: InterventionId, candidate: &Candidate) -> Result<CommitRef, ApplyError> {
        self.apply_inner(Some(id), candidate, true)?
            .ok_or_else(|| ApplyError::Git("internal: apply produced no commit".to_string()))
    }

    fn revert(
        &self,
        id: InterventionId,
        commit: &str,
        reason: &str,
    ) -> Result<CommitRef, ApplyError> {
        let repo = self.repo()?;
        let tip = self.tip(&repo)?;
        let target = self.branch_commit(&repo, &tip, commit)?;
        let base = self.tip_tree(&repo, &tip)?;
        let paths = changed_paths(&repo, &target)?;
        for p in &paths {
            contain(&self.root, p)?;
        }
        self.check_clean(&repo, &base, &paths)?;
        let tip_commit = tip
            .oid
            .map(|o| repo.find_commit(o))
            .transpose()
            .map_err(|e| git_err("cannot read the tip", e))?
            .ok_or_else(|| ApplyError::Git("the branch has no commits".to_string()))?;
        let mut index = repo
            .revert_commit(&target, &tip_commit, 0, None)
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
            .write_tree_to(&repo)
            .map_err(|e| git_err("cannot write the reverted tree", e))?;
        let new_tree = repo
            .find_tree(tree_oid)
            .map_err(|e| git_err("cannot read the reverted tree", e))?;
        let changes = tree_changes(&repo, &base, &new_tree)?;
        if changes.is_empty() {
            return Err(ApplyError::NoOp);
        }
        let title = target
            .summary_bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let message = revert_message(id, &title, &target.id().to_string(), reason);
        let oid = self.commit(&repo, &tip, tree_oid, &message)?;
        tracing::info!(
            "kaizen intervention={id} stage=revert commit={oid} reverts={}",
            target.id()
        );
        self.finish(&repo, Some(id), "revert", oid, &changes);
        Ok(CommitRef {
            sha: oid.to_string(),
        })
    }

    fn find_applied(&self, id: InterventionId) -> Result<Option<String>, ApplyError> {
        self.find(id, false)
    }

    fn find_reverted(&self, id: InterventionId) -> Result<Option<String>, ApplyError> {
        self.find(id, true)
    }

    fn sync_worktree(&self, id: InterventionId, commit: &str) -> Result<(), ApplyError> {
        let repo = self.repo()?;
        let tip = self.tip(&repo)?;
        let c = self.branch_commit(&repo, &tip, commit)?;
        let tr = parse_trailers(&String::from_utf8_lossy(c.message_bytes()));
        if !names_intervention(&tr, id) {
            return Err(ApplyError::Git(format!(
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
        let index = repo
            .index()
            .map_err(|e| git_err("cannot read the index", e))?;
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
            let staged = index_blob(&index, &path);
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
        let skipped = self.update_worktree(&repo, &fixes)?;
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
        self.check_clean(&repo, &base, &paths)?;
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
            return Ok(None);
        }
        let tree = updated_tree(&repo, &base, &changes)?;
        let mut msg = clean_text(message).trim().to_string();
        if msg.is_empty() {
            msg = "kaizen: update files".to_string();
        }
        msg.push('\n');
        let oid = self.commit(&repo, &tip, tree, &msg)?;
        tracing::info!(
            "kaizen intervention=- stage=commit_files commit={oid} files={:?}",
            changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>()
        );
        self.finish(&repo, None, "commit_files", oid, &changes);
        Ok(Some(CommitRef {
            sha: oid.to_string(),
        }))
    }
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

/// Paths a (non-merge) commit changes against its first parent.
fn changed_paths(repo: &Repository, c: &git2::Commit<'_>) -> Result<Vec<String>, ApplyError> {
    let new = c
        .tree()
        .map_err(|e| git_err("cannot read the commit's tree", e))?;
    let old = match c.parent(0) {
        Ok(p) => p
            .tree()
            .map_err(|e| git_err("cannot read the parent's tree", e))?,
        Err(_) => empty_tree(repo)?,
    };
    Ok(tree_changes(repo, &old, &new)?
        .into_iter()
        .map(|c| c.path)
        .collect())
}

/// Blob-level changes from `old` to `new`.
fn tree_changes(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
) -> Result<Vec<Change>, ApplyError> {
    let diff = repo
        .diff_tree_to_tree(Some(old), Some(new), None)
        .map_err(|e| git_err("cannot diff trees", e))?;
    let mut out = Vec::new();
    for d in diff.deltas() {
        let file = if d.new_file().exists() {
            d.new_file()
        } else {
            d.old_file()
        };
        let Some(path) = file.path().and_then(Path::to_str) else {
            return Err(ApplyError::Git(
                "a changed path is not valid UTF-8".to_string(),
            ));
        };
        let path = path.to_string();
        let old_oid = d.old_file().exists().then(|| d.old_file().id());
        let new = if d.new_file().exists() {
            let mode = if u32::from(d.new_file().mode()) == 0o100755 {
                FileMode::BlobExecutable
            } else {
                FileMode::Blob
            };
            Some((d.new_file().id(), mode))
        } else {
            None
        };
        out.push(Change {
            path,
            old: old_oid,
            new,
        });
    }
    Ok(out)
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
        for e in &c.change {
            msg.push_str("- ");
            msg.push_str(&one_line(&e.to_string(), 300));
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

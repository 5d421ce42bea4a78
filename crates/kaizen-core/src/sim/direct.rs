//! [`DirectApplier`]: an [`Applier`] that edits the working tree directly, without git, keeping
//! its "commits" in memory. For tests and `kaizen sim --no-git`-style runs; real runs use the git
//! applier from `kaizen-adapters`.

use super::scenario::is_safe_relative;
use crate::apply::{Applier, ApplyError, CommitRef};
use crate::edit::{Edit, config_get};
use crate::intervention::{Candidate, InterventionId};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// (path, content before, content after) — `None` = missing.
type FileChange = (String, Option<String>, Option<String>);

#[derive(Debug, Clone)]
struct FakeCommit {
    sha: String,
    id: Option<InterventionId>,
    reverts: Option<String>,
    /// For a switchback flip: its marker (`K-000001/block 2`).
    switchback: Option<String>,
    /// (path, content before, content after) — `None` = missing.
    files: Vec<FileChange>,
    /// For commits made only of `config_set` edits: (file, key, value before, value after), so a
    /// revert can still be made when other keys of the file changed since (like git's 3-way merge
    /// does for distant lines).
    keys: Option<Vec<KeyChange>>,
}

/// Applies edits straight to files under a root; reverts restore the previous contents.
#[derive(Debug)]
pub struct DirectApplier {
    root: PathBuf,
    commits: Mutex<Vec<FakeCommit>>,
}

impl DirectApplier {
    /// An applier for the working tree at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            commits: Mutex::new(Vec::new()),
        }
    }

    fn read(&self, file: &str) -> Result<Option<String>, ApplyError> {
        if !is_safe_relative(file) {
            return Err(ApplyError::Path {
                path: file.to_string(),
                why: "must be relative, without `..`".into(),
            });
        }
        match std::fs::read_to_string(self.root.join(file)) {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ApplyError::git(format!("cannot read {file}"), e)),
        }
    }

    fn write(&self, file: &str, content: Option<&str>) -> Result<(), ApplyError> {
        let path = self.root.join(file);
        let r = match content {
            Some(c) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| ApplyError::git(format!("cannot write {file}"), e))?;
                }
                std::fs::write(&path, c)
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        r.map_err(|e| ApplyError::git(format!("cannot write {file}"), e))
    }

    fn planned(&self, candidate: &Candidate) -> Result<Vec<FileChange>, ApplyError> {
        let mut out: Vec<FileChange> = Vec::new();
        for edit in &candidate.change {
            let file = edit.file().to_string();
            let before = match out.iter().find(|(f, _, _)| *f == file) {
                Some((_, _, after)) => after.clone(),
                None => self.read(&file)?,
            };
            let after = edit
                .apply_to(before.as_deref())
                .map_err(|e| ApplyError::Edit(e.to_string()))?;
            match out.iter_mut().find(|(f, _, _)| *f == file) {
                Some(entry) => entry.2 = Some(after),
                None => out.push((file, before, Some(after))),
            }
        }
        if out.iter().all(|(_, b, a)| b == a) {
            return Err(ApplyError::NoOp);
        }
        Ok(out)
    }

    fn record(
        &self,
        id: Option<InterventionId>,
        reverts: Option<Undo>,
        files: Vec<FileChange>,
        keys: Option<Vec<KeyChange>>,
    ) -> CommitRef {
        let mut commits = match self.commits.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let sha = format!("{:040x}", commits.len() as u64 + 1);
        let (reverts, switchback) = match reverts {
            Some(Undo::Revert(c)) => (Some(c), None),
            Some(Undo::Flip(m)) => (None, Some(m)),
            None => (None, None),
        };
        commits.push(FakeCommit {
            sha: sha.clone(),
            id,
            reverts,
            switchback,
            files,
            keys,
        });
        CommitRef {
            sha,
            branch: None,
            parent: None,
        }
    }

    fn commits(&self) -> Vec<FakeCommit> {
        match self.commits.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// What an undoing commit is: a revert of a commit, or a switchback flip (its marker).
#[derive(Debug, Clone)]
enum Undo {
    Revert(String),
    Flip(String),
}

type KeyChange = (String, String, Option<serde_json::Value>, serde_json::Value);

/// The key changes of a commit undoing one with `keys` (`None` where a key was unset before).
fn inverse_keys(keys: &Option<Vec<KeyChange>>) -> Option<Vec<KeyChange>> {
    keys.as_ref()?
        .iter()
        .map(|(f, key, old, new)| Some((f.clone(), key.clone(), Some(new.clone()), old.clone()?)))
        .collect()
}

/// The (file, key, before, after) of a commit made only of `config_set` edits.
fn config_keys(candidate: &Candidate, files: &[FileChange]) -> Option<Vec<KeyChange>> {
    let mut out = Vec::new();
    for e in &candidate.change {
        let Edit::ConfigSet { file, key, value } = e else {
            return None;
        };
        let before = files
            .iter()
            .find(|(f, _, _)| f == file)?
            .1
            .as_deref()
            .unwrap_or("");
        let old = config_get(file, before, key).ok()?;
        out.push((file.clone(), key.clone(), old, value.clone()));
    }
    Some(out)
}

impl DirectApplier {
    /// Reverts a `config_set`-only commit key by key when its files changed since, provided each
    /// key still holds the value the commit set (else a conflict, like git).
    fn revert_keys(
        &self,
        id: InterventionId,
        commit: &str,
        c: &FakeCommit,
        conflicts: Vec<String>,
        undo: Undo,
    ) -> Result<CommitRef, ApplyError> {
        let conflict = |paths: Vec<String>| ApplyError::Conflict {
            commit: commit.to_string(),
            paths,
        };
        let Some(keys) = &c.keys else {
            return Err(conflict(conflicts));
        };
        let mut contents: Vec<(String, Option<String>, Option<String>)> = Vec::new();
        for (file, key, old, new) in keys {
            let current = match contents.iter().find(|(f, _, _)| f == file) {
                Some((_, _, after)) => after.clone(),
                None => self.read(file)?,
            };
            let now = config_get(file, current.as_deref().unwrap_or(""), key)
                .ok()
                .flatten();
            let Some(old) = old else {
                return Err(conflict(vec![file.clone()]));
            };
            if now.as_ref() != Some(new) {
                return Err(conflict(vec![file.clone()]));
            }
            let edit = Edit::ConfigSet {
                file: file.clone(),
                key: key.clone(),
                value: old.clone(),
            };
            let after = edit
                .apply_to(current.as_deref())
                .map_err(|e| ApplyError::Edit(e.to_string()))?;
            match contents.iter_mut().find(|(f, _, _)| f == file) {
                Some(entry) => entry.2 = Some(after),
                None => contents.push((file.clone(), current, Some(after))),
            }
        }
        for (f, _, after) in &contents {
            self.write(f, after.as_deref())?;
        }
        Ok(self.record(Some(id), Some(undo), contents, inverse_keys(&c.keys)))
    }

    /// Undoes `commit` for `id`: restores what it changed (key by key when its files changed
    /// since), recorded as `undo`.
    fn undo(&self, id: InterventionId, commit: &str, undo: Undo) -> Result<CommitRef, ApplyError> {
        let Some(c) = self.commits().into_iter().find(|c| c.sha == commit) else {
            return Err(ApplyError::Repository(format!("unknown commit {commit}")));
        };
        let mut conflicts = Vec::new();
        for (f, _, after) in &c.files {
            if self.read(f)? != *after {
                conflicts.push(f.clone());
            }
        }
        if !conflicts.is_empty() {
            return self.revert_keys(id, commit, &c, conflicts, undo);
        }
        let mut files = Vec::new();
        for (f, before, after) in &c.files {
            self.write(f, before.as_deref())?;
            files.push((f.clone(), after.clone(), before.clone()));
        }
        // Keys are kept so a flip back can be undone key by key too.
        let keys = inverse_keys(&c.keys);
        Ok(self.record(Some(id), Some(undo), files, keys))
    }
}

impl Applier for DirectApplier {
    fn read_file(&self, path: &str) -> Result<Option<String>, ApplyError> {
        self.read(path)
    }

    fn preflight(&self, candidate: &Candidate) -> Result<(), ApplyError> {
        self.planned(candidate).map(|_| ())
    }

    fn apply(&self, id: InterventionId, candidate: &Candidate) -> Result<CommitRef, ApplyError> {
        let files = self.planned(candidate)?;
        for (f, _, after) in &files {
            self.write(f, after.as_deref())?;
        }
        let keys = config_keys(candidate, &files);
        Ok(self.record(Some(id), None, files, keys))
    }

    fn revert(
        &self,
        id: InterventionId,
        commit: &str,
        _reason: &str,
    ) -> Result<CommitRef, ApplyError> {
        self.undo(id, commit, Undo::Revert(commit.to_string()))
    }

    fn flip(
        &self,
        id: InterventionId,
        _branch: Option<&str>,
        flip: &crate::apply::Flip,
    ) -> Result<CommitRef, ApplyError> {
        self.undo(id, &flip.undoes, Undo::Flip(flip.marker.clone()))
    }

    fn find_flip(
        &self,
        id: InterventionId,
        marker: &str,
        _branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        Ok(self
            .commits()
            .into_iter()
            .find(|c| c.id == Some(id) && c.switchback.as_deref() == Some(marker))
            .map(|c| c.sha))
    }

    fn find_applied(&self, id: InterventionId) -> Result<Option<String>, ApplyError> {
        Ok(self
            .commits()
            .into_iter()
            .find(|c| c.id == Some(id) && c.reverts.is_none() && c.switchback.is_none())
            .map(|c| c.sha))
    }

    fn find_reverted(&self, id: InterventionId) -> Result<Option<String>, ApplyError> {
        Ok(self
            .commits()
            .into_iter()
            .find(|c| c.id == Some(id) && c.reverts.is_some())
            .map(|c| c.sha))
    }

    fn find_revert_of(
        &self,
        id: InterventionId,
        commit: &str,
        _branch: Option<&str>,
    ) -> Result<Option<String>, ApplyError> {
        Ok(self
            .commits()
            .into_iter()
            .find(|c| c.id == Some(id) && c.reverts.as_deref() == Some(commit))
            .map(|c| c.sha))
    }

    fn sync_worktree(&self, _id: InterventionId, _commit: &str) -> Result<(), ApplyError> {
        Ok(())
    }

    fn commit_files(
        &self,
        files: &[(String, Option<String>)],
        _message: &str,
    ) -> Result<Option<CommitRef>, ApplyError> {
        let mut changed = Vec::new();
        for (f, content) in files {
            let before = self.read(f)?;
            if before != *content {
                changed.push((f.clone(), before, content.clone()));
            }
        }
        if changed.is_empty() {
            return Ok(None);
        }
        for (f, _, after) in &changed {
            self.write(f, after.as_deref())?;
        }
        Ok(Some(self.record(None, None, changed, None)))
    }
}

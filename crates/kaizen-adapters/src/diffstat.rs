//! The diff stat of one commit (files, lines added and removed), for `kaizen show`: what the
//! change touched, read from the repository with git2 (the ledger holds only the sha).

use std::path::Path;

/// One file a commit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    /// The path (the new one for a rename).
    pub path: String,
    /// Lines added.
    pub added: usize,
    /// Lines removed.
    pub removed: usize,
}

/// The files `sha` changed against its first parent (everything, for a root commit).
pub fn diff_stat(repo: &Path, sha: &str) -> Result<Vec<FileStat>, git2::Error> {
    let repo = git2::Repository::open(repo)?;
    let commit = repo.find_commit(git2::Oid::from_str(sha)?)?;
    let tree = commit.tree()?;
    let parent = match commit.parent(0) {
        Ok(p) => Some(p.tree()?),
        Err(_) => None,
    };
    let diff = repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), None)?;
    let mut out = Vec::new();
    for i in 0..diff.deltas().len() {
        let Some(patch) = git2::Patch::from_diff(&diff, i)? else {
            continue;
        };
        let delta = patch.delta();
        let path = delta
            .new_file()
            .path()
            .or_else(|| delta.old_file().path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let (_, added, removed) = patch.line_stats()?;
        out.push(FileStat {
            path,
            added,
            removed,
        });
    }
    Ok(out)
}

//! Review branches on the remote ([`ReviewDesk`]): a guarded candidate becomes branch
//! `kaizen/K-000042` with one commit, pushed for a human to merge (or not).
//!
//! No local branch is made (the working tree and the branch kaizen commits on stay as they
//! are): the commit is built in memory on the remote target's tip and pushed by sha; kaizen
//! remembers it in the remote-tracking ref `refs/remotes/<remote>/kaizen/K-…`. A merge is
//! noticed by the intervention reaching the target branch, whatever the style: the commit
//! itself (merge commit, fast-forward), or a commit whose message names it
//! (`Kaizen-Intervention: K-…`, also indented as in git's squash message — squash, rebase).

use super::remote::GitPublisher;
use super::{ApplyError, apply_message, parse_trailers, signature, updated_tree};
use git2::{Oid, Repository};
use kaizen_core::intervention::{Candidate, InterventionId};
use kaizen_core::publish::{PublishError, ReviewDesk, ReviewState};
use std::collections::BTreeSet;

/// Most target commits searched for a merged intervention.
const MERGE_SEARCH_LIMIT: usize = 2_000;

/// A failed git2 call, `context` saying what was being done; the error stays the source.
fn local_err(context: impl std::fmt::Display, e: git2::Error) -> PublishError {
    PublishError::Git(ApplyError::git(context, super::GitMessage(e)))
}

fn from_apply(e: ApplyError) -> PublishError {
    PublishError::Git(e)
}

/// Whether some line of `message` names `id` as `Kaizen-Intervention: K-…` (trimmed, also as a
/// list item), and the message is not a revert's.
pub fn message_names(message: &str, id: InterventionId) -> bool {
    let mut names = false;
    for line in message.lines() {
        let l = line.trim().trim_start_matches(['*', '-']).trim_start();
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case(super::TRAILER_REVERTS) {
            return false;
        }
        if k.eq_ignore_ascii_case(super::TRAILER_INTERVENTION)
            && v.trim().parse::<InterventionId>().is_ok_and(|x| x == id)
        {
            names = true;
        }
    }
    names
}

impl GitPublisher {
    fn review_ref(&self, id: InterventionId) -> String {
        format!("refs/heads/{}", review_branch(id))
    }

    fn review_tracking(&self, id: InterventionId) -> String {
        format!("refs/remotes/{}/{}", self.remote_name(), review_branch(id))
    }

    /// The review branches that exist on the remote now.
    fn open_branches(&self) -> Result<BTreeSet<String>, PublishError> {
        let run = self.git_cli(
            "fetch",
            &[
                "ls-remote",
                "--heads",
                self.remote_name(),
                "refs/heads/kaizen/*",
            ],
        )?;
        if !run.0 {
            return Err(PublishError::Transport {
                op: "fetch",
                remote: self.remote_name().to_string(),
                message: run.2,
            });
        }
        Ok(run
            .1
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|r| r.strip_prefix("refs/heads/"))
            .map(str::to_string)
            .collect())
    }

    /// The remote target's tip as last fetched (falls back to the local branch).
    fn target_tip(&self, repo: &Repository) -> Result<(String, Oid), PublishError> {
        let branch = self.branch_of(repo)?;
        let tip = match Self::resolve_ref(repo, &self.tracking_ref(&branch))? {
            Some(t) => t,
            None => Self::resolve_ref(repo, &format!("refs/heads/{branch}"))?
                .ok_or_else(|| PublishError::Local(format!("branch `{branch}` has no commits")))?,
        };
        Ok((branch, tip))
    }

    /// Where the target holds `id`'s change, if it does: `sha` itself, or a later commit whose
    /// message names it.
    fn merged_as(
        &self,
        repo: &Repository,
        target: Oid,
        id: InterventionId,
        sha: Oid,
    ) -> Result<Option<Oid>, PublishError> {
        if target == sha
            || repo
                .graph_descendant_of(target, sha)
                .map_err(|e| local_err("cannot walk the history", e))?
        {
            return Ok(Some(sha));
        }
        let base = repo
            .find_commit(sha)
            .ok()
            .and_then(|c| c.parent_id(0).ok())
            .and_then(|p| repo.merge_base(p, target).ok());
        let walk_err = |e: git2::Error| local_err("cannot walk the history", e);
        let mut walk = repo.revwalk().map_err(walk_err)?;
        walk.push(target).map_err(walk_err)?;
        if let Some(b) = base {
            walk.hide(b).map_err(walk_err)?;
        }
        for oid in walk.take(MERGE_SEARCH_LIMIT) {
            let oid = oid.map_err(walk_err)?;
            let c = repo
                .find_commit(oid)
                .map_err(|e| local_err(format!("cannot read {oid}"), e))?;
            if c.parent_count() <= 1
                && message_names(&String::from_utf8_lossy(c.message_bytes()), id)
            {
                return Ok(Some(oid));
            }
        }
        Ok(None)
    }

    /// Pushes `sha` to the review branch of `id`; `lease`: the sha the branch must hold now
    /// (a compare-and-swap on kaizen's own branch), `None`: it must not exist.
    fn push_review(
        &self,
        repo: &Repository,
        id: InterventionId,
        sha: Oid,
        lease: Option<Oid>,
    ) -> Result<(), PublishError> {
        let spec = format!("{sha}:{}", self.review_ref(id));
        let lease_arg = lease.map(|l| format!("--force-with-lease={}:{l}", self.review_ref(id)));
        let mut args: Vec<&str> = vec!["push", "--porcelain", "--quiet"];
        if let Some(l) = &lease_arg {
            args.push(l);
        }
        args.push(self.remote_name());
        args.push(&spec);
        let run = self.git_cli("push", &args)?;
        if !run.0 {
            return Err(PublishError::Transport {
                op: "push",
                remote: self.remote_name().to_string(),
                message: format!("{} {}", run.2, run.1),
            });
        }
        repo.reference(
            &self.review_tracking(id),
            sha,
            true,
            "kaizen: review branch pushed",
        )
        .map_err(|e| local_err("cannot update the review branch's tracking ref", e))?;
        Ok(())
    }
}

/// The review branch of `id`: `kaizen/K-000042`.
pub fn review_branch(id: InterventionId) -> String {
    format!("kaizen/{id}")
}

impl ReviewDesk for GitPublisher {
    fn branch_name(&self, id: InterventionId) -> String {
        review_branch(id)
    }

    fn open(
        &self,
        id: InterventionId,
        candidate: &Candidate,
        chain: &str,
    ) -> Result<String, PublishError> {
        let repo = self.applier().repo().map_err(from_apply)?;
        let branch = self.branch_of(&repo)?;
        // Cut from what the remote holds now.
        self.fetch_branch(&branch)?;
        let (_, base) = self.target_tip(&repo)?;
        let base_commit = repo
            .find_commit(base)
            .map_err(|e| local_err("cannot read the target's tip", e))?;
        let base_tree = base_commit
            .tree()
            .map_err(|e| local_err("cannot read the target's tree", e))?;
        let changes = self
            .applier()
            .plan_edits(&repo, &base_tree, candidate)
            .map_err(from_apply)?;
        if changes.is_empty() {
            return Err(PublishError::Local(
                "the change is a no-op on the target branch".into(),
            ));
        }
        let tree_oid = updated_tree(&repo, &base_tree, &changes).map_err(from_apply)?;
        let tree = repo
            .find_tree(tree_oid)
            .map_err(|e| local_err("cannot read the new tree", e))?;
        let message = with_chain(&apply_message(id, candidate), chain);
        let sig = signature(&repo, self.applier().clock.as_deref()).map_err(from_apply)?;
        let sha = repo
            .commit(None, &sig, &sig, &message, &tree, &[&base_commit])
            .map_err(|e| local_err("cannot write the review commit", e))?;
        self.push_review(&repo, id, sha, None)?;
        Ok(sha.to_string())
    }

    fn inspect(
        &self,
        open: &[(InterventionId, String)],
    ) -> Result<Vec<(InterventionId, ReviewState)>, PublishError> {
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let repo = self.applier().repo().map_err(from_apply)?;
        let branch = self.branch_of(&repo)?;
        let existing = self.open_branches()?;
        // The target and every review branch that still exists, in one fetch.
        let mut specs = vec![format!(
            "+refs/heads/{branch}:{}",
            self.tracking_ref(&branch)
        )];
        for (id, _) in open {
            if existing.contains(&review_branch(*id)) {
                specs.push(format!(
                    "+{}:{}",
                    self.review_ref(*id),
                    self.review_tracking(*id)
                ));
            }
        }
        self.fetch_specs(&specs)?;
        let (_, target) = self.target_tip(&repo)?;
        let mut out = Vec::new();
        for (id, sha) in open {
            let Ok(oid) = Oid::from_str(sha) else {
                return Err(PublishError::Local(format!(
                    "{id}: {sha:?} is not a commit id"
                )));
            };
            if let Some(m) = self.merged_as(&repo, target, *id, oid)? {
                out.push((
                    *id,
                    ReviewState::Merged {
                        commit: m.to_string(),
                    },
                ));
                continue;
            }
            let tip = Self::resolve_ref(&repo, &self.review_tracking(*id))?;
            if !existing.contains(&review_branch(*id)) {
                // A commit a human added on top before deleting says why.
                let reason = tip.filter(|t| *t != oid).and_then(|t| {
                    repo.find_commit(t).ok().map(|c| {
                        String::from_utf8_lossy(c.message_bytes())
                            .trim()
                            .to_string()
                    })
                });
                out.push((*id, ReviewState::Deleted { reason }));
                continue;
            }
            let parent = repo.find_commit(oid).ok().and_then(|c| c.parent_id(0).ok());
            if parent != Some(target) {
                out.push((
                    *id,
                    ReviewState::Stale {
                        human_commits: tip.is_some_and(|t| t != oid),
                    },
                ));
                continue;
            }
            out.push((*id, ReviewState::Waiting));
        }
        Ok(out)
    }

    fn rebase(&self, id: InterventionId, sha: &str) -> Result<Option<String>, PublishError> {
        let repo = self.applier().repo().map_err(from_apply)?;
        let (_, target) = self.target_tip(&repo)?;
        let oid = Oid::from_str(sha).map_err(|e| local_err(format!("{sha:?}"), e))?;
        let c = repo
            .find_commit(oid)
            .map_err(|e| local_err(format!("cannot read {sha}"), e))?;
        let onto = repo
            .find_commit(target)
            .map_err(|e| local_err("cannot read the target's tip", e))?;
        let mut index = repo
            .cherrypick_commit(&c, &onto, 0, None)
            .map_err(|e| local_err(format!("cannot rebase {sha}"), e))?;
        if index.has_conflicts() {
            return Ok(None);
        }
        let tree_oid = index
            .write_tree_to(&repo)
            .map_err(|e| local_err("cannot write the rebased tree", e))?;
        let tree = repo
            .find_tree(tree_oid)
            .map_err(|e| local_err("cannot read the rebased tree", e))?;
        if tree_oid == onto.tree_id() {
            // The target already holds the change some other way: nothing left to review.
            return Ok(None);
        }
        let sig = signature(&repo, self.applier().clock.as_deref()).map_err(from_apply)?;
        let message = String::from_utf8_lossy(c.message_bytes()).into_owned();
        let new = repo
            .commit(None, &c.author(), &sig, &message, &tree, &[&onto])
            .map_err(|e| local_err("cannot write the rebased commit", e))?;
        self.push_review(&repo, id, new, Some(oid))?;
        Ok(Some(new.to_string()))
    }

    fn close(&self, id: InterventionId) -> Result<(), PublishError> {
        let repo = self.applier().repo().map_err(from_apply)?;
        match repo.find_reference(&self.review_tracking(id)) {
            Ok(mut r) => r
                .delete()
                .map_err(|e| local_err("cannot delete the review branch's tracking ref", e)),
            Err(_) => Ok(()),
        }
    }

    fn sync(&self) -> Result<bool, PublishError> {
        self.fast_forward()
    }
}

/// `message` (an apply message ending in its trailer paragraph) with `chain` inserted before
/// the trailers.
pub(super) fn with_chain(message: &str, chain: &str) -> String {
    let chain = super::clean_text(chain);
    let chain = chain.trim();
    let m = message.trim_end();
    match m.rsplit_once("\n\n") {
        Some((body, trailers)) if !chain.is_empty() && !parse_trailers(m).is_empty() => {
            format!("{body}\n\n{chain}\n\n{trailers}\n")
        }
        _ => format!("{m}\n"),
    }
}

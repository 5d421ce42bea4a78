//! Pushing kaizen's commits to a git remote ([`Publisher`]), for GitOps.
//!
//! The transport is the `git` CLI (`git push`, `git fetch`), so authentication is git's own:
//! credential helpers, the SSH agent, `insteadOf` rewrites — kaizen never sees a key. Prompts are
//! disabled (`GIT_TERMINAL_PROMPT=0`) so a missing credential fails instead of hanging, and each
//! command has a timeout.
//!
//! A push names the exact local tip and is never forced, so the remote accepts it only as a
//! fast-forward: a compare-and-swap against whatever a human pushed meanwhile. When it is
//! rejected because the remote moved, the remote branch is fetched and kaizen's unpushed commits
//! (only kaizen's: a human's local commit stops everything) are replayed on its tip in memory
//! with the same message and trailers; the local branch is moved onto the replay only when that
//! is clean (no conflict, no human edit in the way of the remote's changes), then pushed again.
//! Otherwise nothing is rewritten and [`PublishError::Diverged`] says why.

use super::{
    ApplyError, Change, GitApplier, Journal, JournalChange, LockedIndex, head_refname,
    parse_trailers, signature, tree_changes,
};
use git2::{ErrorCode, Oid, Repository};
use kaizen_core::intervention::InterventionId;
use kaizen_core::publish::{GitConfig, PublishError, Published, Publisher, Replayed, Unpushed};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Most unpushed commits listed (a fresh remote would otherwise list the whole history).
const UNPUSHED_LIMIT: usize = 1_000;
/// Longest excerpt of git's output kept in an error (characters).
const MESSAGE_CHARS: usize = 600;

/// Pushes the branch of a [`GitApplier`]'s repository to a remote (see the module docs).
pub struct GitPublisher {
    applier: GitApplier,
    remote: String,
    timeout: Duration,
}

impl std::fmt::Debug for GitPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitPublisher")
            .field("root", &self.applier.root)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// A failed git2 call, `context` saying what was being done; the error stays the source.
fn local_err(context: impl std::fmt::Display, e: git2::Error) -> PublishError {
    PublishError::Git(ApplyError::git(context, super::GitMessage(e)))
}

fn from_apply(e: ApplyError) -> PublishError {
    PublishError::Git(e)
}

/// Whether `message` is one of kaizen's commits: its trailers name kaizen (`Kaizen-…`).
pub fn is_kaizen_commit(message: &str) -> bool {
    parse_trailers(message)
        .iter()
        .any(|(k, _)| k.len() > 7 && k[..7].eq_ignore_ascii_case("kaizen-"))
}

fn excerpt(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    super::truncate_chars(&flat, MESSAGE_CHARS)
}

/// What one `git` command did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl GitPublisher {
    /// A publisher for the repository `applier` commits in, pushing to `config.remote` (which
    /// must exist in the repository's git config).
    pub fn new(applier: GitApplier, config: &GitConfig) -> Result<GitPublisher, ApplyError> {
        let p = GitPublisher {
            applier,
            remote: config.remote.clone(),
            timeout: Duration::from_secs(config.timeout.seconds().max(1)),
        };
        let repo = p.applier.repo()?;
        repo.find_remote(&p.remote).map_err(|e| {
            ApplyError::git(
                format!(
                    "no remote `{}` in {}: add it with `git remote add {} URL` or fix `git.remote`",
                    p.remote,
                    p.applier.root.display(),
                    p.remote
                ),
                super::GitMessage(e),
            )
        })?;
        Ok(p)
    }

    /// The branch published: the configured one, else the one HEAD is on.
    fn branch(&self, repo: &Repository) -> Result<String, PublishError> {
        if let Some(b) = self.applier.branch() {
            return Ok(b.to_string());
        }
        let tip = self.applier.tip(repo).map_err(from_apply)?;
        tip.short()
            .map(str::to_string)
            .ok_or_else(|| PublishError::Local("HEAD is not on a local branch".into()))
    }

    fn tracking(&self, branch: &str) -> String {
        format!("refs/remotes/{}/{branch}", self.remote)
    }

    fn resolve(repo: &Repository, refname: &str) -> Result<Option<Oid>, PublishError> {
        match repo.refname_to_id(refname) {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(local_err(format!("cannot resolve {refname}"), e)),
        }
    }

    /// Commits reachable from `tip` but not from `hide`, newest first (bounded).
    fn between(
        repo: &Repository,
        tip: Oid,
        hide: Option<Oid>,
        limit: usize,
    ) -> Result<Vec<Oid>, PublishError> {
        let walk_err = |e: git2::Error| local_err("cannot walk the history", e);
        let mut walk = repo.revwalk().map_err(walk_err)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL)
            .map_err(walk_err)?;
        walk.push(tip).map_err(walk_err)?;
        if let Some(h) = hide {
            walk.hide(h).map_err(walk_err)?;
        }
        let mut out = Vec::new();
        for oid in walk.take(limit) {
            out.push(oid.map_err(walk_err)?);
        }
        Ok(out)
    }

    /// Runs `git args…` in the repository with the timeout, prompts disabled.
    fn git(&self, op: &'static str, args: &[&str]) -> Result<Run, PublishError> {
        let transport = |message: String| PublishError::Transport {
            op,
            remote: self.remote.clone(),
            message,
        };
        let mut child = Command::new("git")
            .args(args)
            .current_dir(&self.applier.root)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| transport(format!("cannot run git: {e}")))?;
        let pipe = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.by_ref().take(1 << 20).read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = pipe(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let err = pipe(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(transport(format!(
                        "timed out after {}s",
                        self.timeout.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(transport(format!("cannot wait for git: {e}"))),
            }
        };
        Ok(Run {
            ok: status.success(),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// Pushes `tip` to the remote branch without force. `Ok(true)`: pushed; `Ok(false)`: the
    /// remote refused it as not a fast-forward (it moved).
    fn push(&self, repo: &Repository, branch: &str, tip: Oid) -> Result<bool, PublishError> {
        let spec = format!("{tip}:refs/heads/{branch}");
        let run = self.git(
            "push",
            &["push", "--porcelain", "--quiet", &self.remote, &spec],
        )?;
        if run.ok {
            // Remember what the remote holds now (no refspec maps a pushed sha to it).
            repo.reference(
                &self.tracking(branch),
                tip,
                true,
                &format!("kaizen: pushed to {}", self.remote),
            )
            .map_err(|e| local_err("pushed, but cannot update the remote-tracking ref", e))?;
            return Ok(true);
        }
        // Porcelain: `!\t<src>:<dst>\t[rejected] (fetch first)` when the remote moved.
        let moved = run.stdout.lines().any(|l| {
            l.starts_with('!')
                && l.contains("[rejected]")
                && (l.contains("fetch first") || l.contains("non-fast-forward"))
        });
        if moved {
            return Ok(false);
        }
        Err(PublishError::Transport {
            op: "push",
            remote: self.remote.clone(),
            message: excerpt(&format!("{} {}", run.stderr, run.stdout)),
        })
    }

    fn fetch(&self, branch: &str) -> Result<(), PublishError> {
        let spec = format!("+refs/heads/{branch}:{}", self.tracking(branch));
        let run = self.git(
            "fetch",
            &["fetch", "--quiet", "--no-tags", &self.remote, &spec],
        )?;
        if run.ok {
            Ok(())
        } else {
            Err(PublishError::Transport {
                op: "fetch",
                remote: self.remote.clone(),
                message: excerpt(&run.stderr),
            })
        }
    }

    /// Replays kaizen's commits `local` (newest first) on `onto`; returns the new tip and what
    /// was replayed, having moved the local branch (and the working tree, when it is checked
    /// out) onto it.
    fn replay(
        &self,
        repo: &Repository,
        branch: &str,
        old_tip: Oid,
        onto: Oid,
        local: &[Oid],
    ) -> Result<(Oid, Vec<Replayed>), PublishError> {
        let diverged = |message: String| PublishError::Diverged { message };
        self.applier.check_state(repo).map_err(from_apply)?;
        let lock = self.applier.lock(repo, "replay").map_err(from_apply)?;
        // The local branch must not have moved since it was read (a human commit meanwhile).
        let refname = format!("refs/heads/{branch}");
        if Self::resolve(repo, &refname)? != Some(old_tip) {
            return Err(PublishError::Local(
                "the local branch moved while publishing; retried next cycle".into(),
            ));
        }
        let sig = signature(repo, self.applier.clock.as_deref()).map_err(from_apply)?;
        let mut base = repo
            .find_commit(onto)
            .map_err(|e| local_err("cannot read the remote's tip", e))?;
        let mut replayed: Vec<Replayed> = Vec::new();
        for oid in local.iter().rev() {
            let c = repo
                .find_commit(*oid)
                .map_err(|e| local_err(format!("cannot read commit {oid}"), e))?;
            let mut index = repo
                .cherrypick_commit(&c, &base, 0, None)
                .map_err(|e| local_err(format!("cannot replay {oid}"), e))?;
            if index.has_conflicts() {
                let mut paths: Vec<String> = index
                    .conflicts()
                    .map(|it| {
                        it.filter_map(Result::ok)
                            .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                paths.sort();
                paths.dedup();
                return Err(diverged(format!(
                    "kaizen's commit {} ({}) conflicts with the remote's new commits in {paths:?}",
                    super::short_oid(&oid.to_string()),
                    c.summary().ok().flatten().unwrap_or_default()
                )));
            }
            let tree_oid = index
                .write_tree_to(repo)
                .map_err(|e| local_err("cannot write the replayed tree", e))?;
            let tree = repo
                .find_tree(tree_oid)
                .map_err(|e| local_err("cannot read the replayed tree", e))?;
            let mut message = String::from_utf8_lossy(c.message_bytes()).into_owned();
            // A revert replayed after its apply names the apply's new commit.
            for r in &replayed {
                message = message.replace(&r.old, &r.new);
            }
            let new = repo
                .commit(None, &c.author(), &sig, &message, &tree, &[&base])
                .map_err(|e| local_err("cannot write the replayed commit", e))?;
            let intervention = parse_trailers(&message)
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(super::TRAILER_INTERVENTION))
                .and_then(|(_, v)| v.parse::<InterventionId>().ok());
            replayed.push(Replayed {
                old: oid.to_string(),
                new: new.to_string(),
                intervention,
            });
            base = repo
                .find_commit(new)
                .map_err(|e| local_err("cannot read the replayed commit", e))?;
        }
        let new_tip = base.id();
        // The working tree goes from the old tip to the new one: the remote's changes arrive.
        // A human's uncommitted edit in a file they touch stops everything (nothing moved yet).
        let old_tree = repo
            .find_commit(old_tip)
            .and_then(|c| c.tree())
            .map_err(|e| local_err("cannot read the local tip", e))?;
        let new_tree = base
            .tree()
            .map_err(|e| local_err("cannot read the replayed tree", e))?;
        let changes: Vec<Change> = tree_changes(repo, &old_tree, &new_tree).map_err(from_apply)?;
        let on_head = head_refname(repo).is_some_and(|h| h == refname);
        let mut index = None;
        if on_head {
            let paths: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
            let locked = LockedIndex::open(repo, &lock).map_err(from_apply)?;
            let checked = self.applier.check_clean(&locked.view, &old_tree, &paths);
            index = Some(locked);
            match checked {
                Ok(()) => {}
                Err(ApplyError::Dirty { paths }) => {
                    return Err(diverged(format!(
                        "uncommitted edits in {paths:?} are in the way of the remote's changes; \
                         commit or stash them"
                    )));
                }
                Err(e) => return Err(from_apply(e)),
            }
        }
        lock.record(&Journal {
            pid: std::process::id(),
            op: "replay".into(),
            intervention: None,
            branch: Some(refname.clone()),
            base: base.parent_id(0).ok().map(|o| o.to_string()),
            worktree: on_head,
            changes: changes.iter().map(JournalChange::from).collect(),
        })
        .map_err(from_apply)?;
        repo.reference_matching(
            &refname,
            new_tip,
            true,
            old_tip,
            &format!("kaizen: replay on {}", self.remote),
        )
        .map_err(|e| {
            if e.code() == ErrorCode::Modified {
                PublishError::Local(
                    "the local branch moved while publishing; retried next cycle".into(),
                )
            } else {
                local_err("cannot move the branch onto the replay", e)
            }
        })?;
        if on_head {
            let skipped = self
                .applier
                .update_worktree(repo, &lock, &changes, index)
                .map_err(from_apply)?;
            if !skipped.is_empty() {
                tracing::warn!(
                    "kaizen stage=publish left {skipped:?} alone in the working tree (edited meanwhile)"
                );
            }
        }
        lock.release().map_err(from_apply)?;
        Ok((new_tip, replayed))
    }
}

impl Publisher for GitPublisher {
    fn remote(&self) -> &str {
        &self.remote
    }

    fn publish(&self) -> Result<Published, PublishError> {
        let repo = self.applier.repo().map_err(from_apply)?;
        let branch = self.branch(&repo)?;
        let Some(tip) = Self::resolve(&repo, &format!("refs/heads/{branch}"))? else {
            return Ok(Published::UpToDate);
        };
        let known = Self::resolve(&repo, &self.tracking(&branch))?;
        let unpushed = Self::between(&repo, tip, known, UNPUSHED_LIMIT)?;
        if unpushed.is_empty() {
            return Ok(Published::UpToDate);
        }
        self.refuse_humans(&repo, &unpushed)?;
        if self.push(&repo, &branch, tip)? {
            return Ok(Published::Pushed {
                tip: tip.to_string(),
                replayed: Vec::new(),
            });
        }
        // The remote moved: fetch it, replay kaizen's commits on its tip, push again.
        self.fetch(&branch)?;
        let Some(remote_tip) = Self::resolve(&repo, &self.tracking(&branch))? else {
            return Err(PublishError::Local(
                "the fetch brought no remote branch".into(),
            ));
        };
        let local = Self::between(&repo, tip, Some(remote_tip), UNPUSHED_LIMIT)?;
        if local.is_empty() {
            return Ok(Published::UpToDate);
        }
        self.refuse_humans(&repo, &local)?;
        for oid in &local {
            let merge = repo
                .find_commit(*oid)
                .map(|c| c.parent_count() > 1)
                .unwrap_or(true);
            if merge {
                return Err(PublishError::Diverged {
                    message: format!(
                        "local commit {oid} is a merge; kaizen replays only its own plain commits"
                    ),
                });
            }
        }
        let (new_tip, replayed) = self.replay(&repo, &branch, tip, remote_tip, &local)?;
        if self.push(&repo, &branch, new_tip)? {
            Ok(Published::Pushed {
                tip: new_tip.to_string(),
                replayed,
            })
        } else {
            // Moved again between the fetch and the push; the replay stays, the next try
            // replays on the newer tip.
            Err(PublishError::Transport {
                op: "push",
                remote: self.remote.clone(),
                message: format!(
                    "the remote moved again during the replay ({} commit(s) replayed locally); retried next cycle",
                    replayed.len()
                ),
            })
        }
    }

    fn unpushed(&self) -> Result<Vec<Unpushed>, PublishError> {
        let repo = self.applier.repo().map_err(from_apply)?;
        let branch = self.branch(&repo)?;
        let Some(tip) = Self::resolve(&repo, &format!("refs/heads/{branch}"))? else {
            return Ok(Vec::new());
        };
        let known = Self::resolve(&repo, &self.tracking(&branch))?;
        let mut out = Vec::new();
        for oid in Self::between(&repo, tip, known, UNPUSHED_LIMIT)? {
            let c = repo
                .find_commit(oid)
                .map_err(|e| local_err(format!("cannot read commit {oid}"), e))?;
            let message = String::from_utf8_lossy(c.message_bytes()).into_owned();
            out.push(Unpushed {
                sha: oid.to_string(),
                subject: super::one_line(message.lines().next().unwrap_or(""), 100),
                kaizen: is_kaizen_commit(&message),
            });
        }
        Ok(out)
    }

    fn on_remote(&self, sha: &str) -> Result<bool, PublishError> {
        let repo = self.applier.repo().map_err(from_apply)?;
        let branch = self.branch(&repo)?;
        let Some(known) = Self::resolve(&repo, &self.tracking(&branch))? else {
            return Ok(false);
        };
        let Ok(oid) = Oid::from_str(sha) else {
            return Ok(false);
        };
        Ok(known == oid
            || repo
                .graph_descendant_of(known, oid)
                .map_err(|e| local_err("cannot walk the history", e))?)
    }
}

impl GitPublisher {
    /// Refuses when any of `commits` is not kaizen's: pushing would publish a human's local
    /// commit they have not pushed themselves, and a replay would rewrite it.
    fn refuse_humans(&self, repo: &Repository, commits: &[Oid]) -> Result<(), PublishError> {
        for oid in commits {
            let c = repo
                .find_commit(*oid)
                .map_err(|e| local_err(format!("cannot read commit {oid}"), e))?;
            if !is_kaizen_commit(&String::from_utf8_lossy(c.message_bytes())) {
                return Err(PublishError::Diverged {
                    message: format!(
                        "local commit {} ({}) is a human's and not on `{}`; kaizen publishes only \
                         its own commits: push or drop it yourself",
                        super::short_oid(&oid.to_string()),
                        c.summary().ok().flatten().unwrap_or_default(),
                        self.remote
                    ),
                });
            }
        }
        Ok(())
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        self.applier.root()
    }
}

// Helpers for the review desk (`review.rs`), which shares this publisher's remote and applier.
impl GitPublisher {
    pub(super) fn applier(&self) -> &GitApplier {
        &self.applier
    }

    pub(super) fn remote_name(&self) -> &str {
        &self.remote
    }

    /// Runs `git args…` (see [`GitPublisher::git`]): success, stdout, stderr.
    pub(super) fn git_cli(
        &self,
        op: &'static str,
        args: &[&str],
    ) -> Result<(bool, String, String), PublishError> {
        let r = self.git(op, args)?;
        Ok((r.ok, r.stdout, excerpt(&r.stderr)))
    }

    pub(super) fn branch_of(&self, repo: &Repository) -> Result<String, PublishError> {
        self.branch(repo)
    }

    pub(super) fn resolve_ref(repo: &Repository, name: &str) -> Result<Option<Oid>, PublishError> {
        Self::resolve(repo, name)
    }

    pub(super) fn tracking_ref(&self, branch: &str) -> String {
        self.tracking(branch)
    }

    pub(super) fn fetch_branch(&self, branch: &str) -> Result<(), PublishError> {
        self.fetch(branch)
    }

    /// One `git fetch` of several refspecs.
    pub(super) fn fetch_specs(&self, specs: &[String]) -> Result<(), PublishError> {
        let mut args: Vec<&str> = vec!["fetch", "--quiet", "--no-tags", &self.remote];
        args.extend(specs.iter().map(String::as_str));
        let run = self.git("fetch", &args)?;
        if run.ok {
            Ok(())
        } else {
            Err(PublishError::Transport {
                op: "fetch",
                remote: self.remote.clone(),
                message: excerpt(&run.stderr),
            })
        }
    }

    /// Fast-forwards the local branch (and the working tree, when checked out) to the
    /// remote-tracking tip, when the local branch is behind it and a human's uncommitted edit
    /// is not in the way. `Ok(false)`: nothing to do (or not a fast-forward: publishing
    /// replays kaizen's commits then).
    pub(super) fn fast_forward(&self) -> Result<bool, PublishError> {
        let repo = self.applier.repo().map_err(from_apply)?;
        let branch = self.branch(&repo)?;
        let refname = format!("refs/heads/{branch}");
        let (Some(local), Some(remote)) = (
            Self::resolve(&repo, &refname)?,
            Self::resolve(&repo, &self.tracking(&branch))?,
        ) else {
            return Ok(false);
        };
        if local == remote
            || !repo
                .graph_descendant_of(remote, local)
                .map_err(|e| local_err("cannot walk the history", e))?
        {
            return Ok(false);
        }
        self.applier.check_state(&repo).map_err(from_apply)?;
        let lock = self.applier.lock(&repo, "sync").map_err(from_apply)?;
        let old_tree = repo
            .find_commit(local)
            .and_then(|c| c.tree())
            .map_err(|e| local_err("cannot read the local tip", e))?;
        let new = repo
            .find_commit(remote)
            .map_err(|e| local_err("cannot read the remote tip", e))?;
        let new_tree = new
            .tree()
            .map_err(|e| local_err("cannot read the remote tree", e))?;
        let changes: Vec<Change> = tree_changes(&repo, &old_tree, &new_tree).map_err(from_apply)?;
        let on_head = head_refname(&repo).is_some_and(|h| h == refname);
        let mut index = None;
        if on_head {
            let paths: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
            let locked = LockedIndex::open(&repo, &lock).map_err(from_apply)?;
            let checked = self.applier.check_clean(&locked.view, &old_tree, &paths);
            index = Some(locked);
            match checked {
                Ok(()) => {}
                Err(ApplyError::Dirty { paths }) => {
                    return Err(PublishError::Diverged {
                        message: format!(
                            "uncommitted edits in {paths:?} are in the way of the remote's changes; \
                             commit or stash them"
                        ),
                    });
                }
                Err(e) => return Err(from_apply(e)),
            }
        }
        lock.record(&Journal {
            pid: std::process::id(),
            op: "sync".into(),
            intervention: None,
            branch: Some(refname.clone()),
            base: new.parent_id(0).ok().map(|o| o.to_string()),
            worktree: on_head,
            changes: changes.iter().map(JournalChange::from).collect(),
        })
        .map_err(from_apply)?;
        repo.reference_matching(
            &refname,
            remote,
            true,
            local,
            &format!("kaizen: fast-forward to {}", self.remote),
        )
        .map_err(|e| local_err("cannot fast-forward the branch", e))?;
        if on_head {
            self.applier
                .update_worktree(&repo, &lock, &changes, index)
                .map_err(from_apply)?;
        }
        lock.release().map_err(from_apply)?;
        Ok(true)
    }
}

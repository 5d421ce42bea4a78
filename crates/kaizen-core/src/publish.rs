//! Publishing: kaizen's commits reach the remote that GitOps (Argo CD, Flux) or CI deploys from.
//!
//! A change is *in effect* only once it is on the remote, so with a remote configured an applied
//! intervention's validation clock starts when a push puts its commit there, not when it was
//! committed locally. The push is a compare-and-swap (never a force-push); when the remote moved,
//! the publisher replays kaizen's own commits on the new tip if that is clean, and otherwise
//! gives up for a human ([`PublishError::Diverged`]). A transport failure (network, auth, a
//! read-only remote, a hook that refuses) is recorded and retried with back-off on later cycles.
//!
//! The core knows only the [`Publisher`] seam; the git implementation (which shells out to the
//! `git` CLI so authentication is git's own) lives in `kaizen-adapters`.

use crate::intervention::InterventionId;
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Event stage of everything recorded about publishing.
pub const STAGE: &str = "publish";
/// Event kind: the branch is on the remote (data: tip, replayed commits).
pub const EVENT_PUSHED: &str = "pushed";
/// Event kind: a push (or the fetch before a replay) failed; retried with back-off.
pub const EVENT_PUSH_FAILED: &str = "push_failed";
/// Event kind: the remote moved and kaizen's commits could not be replayed; needs a human.
pub const EVENT_PUSH_DIVERGED: &str = "push_diverged";
/// Event kind: an applied intervention's change reached the remote; its validation clock starts.
pub const EVENT_VALIDATION_STARTED: &str = "validation_started";

/// Consecutive push failures after which an escalation is raised (once, until a push succeeds).
pub const ESCALATE_AFTER_FAILURES: u32 = 3;

/// `git:` in `kaizen.yaml`: the remote kaizen publishes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// The remote's name in the target repository (`git remote -v`), e.g. `origin`.
    #[serde(default = "default_remote")]
    pub remote: String,
    /// The branch kaizen commits on and pushes (also the top-level `branch:`; they must agree).
    #[serde(default)]
    pub branch: Option<String>,
    /// Whether to push after each apply, revert and lesson commit (default true).
    #[serde(default = "yes")]
    pub push: bool,
    /// First wait after a failed push before the next try (doubles each failure).
    #[serde(default = "default_retry_min")]
    pub retry_min: Span,
    /// Longest wait between tries.
    #[serde(default = "default_retry_max")]
    pub retry_max: Span,
    /// How long one `git push` / `git fetch` may take before it counts as failed.
    #[serde(default = "default_git_timeout")]
    pub timeout: Span,
}

fn default_remote() -> String {
    "origin".to_string()
}
fn yes() -> bool {
    true
}
fn default_retry_min() -> Span {
    Span::minutes(1)
}
fn default_retry_max() -> Span {
    Span::hours(1)
}
fn default_git_timeout() -> Span {
    Span::minutes(2)
}

impl GitConfig {
    /// Whether kaizen pushes at all.
    pub fn publishes(&self) -> bool {
        self.push
    }

    /// The wait after `failures` consecutive failed pushes: `retry_min · 2^(failures-1)`,
    /// capped at `retry_max`.
    pub fn backoff(&self, failures: u32) -> Span {
        let shift = failures.saturating_sub(1).min(30);
        let secs = self
            .retry_min
            .seconds()
            .saturating_mul(1u64 << shift)
            .min(self.retry_max.seconds());
        Span::from_secs(secs)
    }
}

/// A commit of kaizen's that a replay recreated on the remote's new tip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// The local commit as it was (now replaced).
    pub old: String,
    /// Its replay on the remote's tip (same message and trailers).
    pub new: String,
    /// The intervention its trailer names, if any (lesson commits name none).
    pub intervention: Option<InterventionId>,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Published {
    /// Nothing of kaizen's is missing from the remote.
    UpToDate,
    /// The branch was pushed; `replayed` lists commits recreated on a moved remote first.
    Pushed {
        /// The remote branch's tip now.
        tip: String,
        /// Commits replayed on the remote's new tip before the push.
        replayed: Vec<Replayed>,
    },
}

/// A local commit the remote does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unpushed {
    /// Full hex id.
    pub sha: String,
    /// Its subject line.
    pub subject: String,
    /// Whether it is kaizen's (its trailers name kaizen) or a human's.
    pub kaizen: bool,
}

/// Why a publish did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// `git push` / `git fetch` failed or was refused by the remote (network, authentication,
    /// a read-only repository, a hook). Nothing was lost; retried later with back-off.
    #[error("git {op} to `{remote}` failed: {message}")]
    Transport {
        /// `push` or `fetch`.
        op: &'static str,
        /// The remote.
        remote: String,
        /// git's own words (stderr, excerpted).
        message: String,
    },
    /// The remote moved and kaizen's commits cannot be replayed on it cleanly (a conflict, a
    /// human's unpushed commit in between, a human's edit in the way). Nothing was rewritten
    /// or force-pushed; a human must merge.
    #[error("the remote branch moved and kaizen's commits cannot be replayed on it: {message}")]
    Diverged {
        /// What stands in the way, and what to do.
        message: String,
    },
    /// The local repository is not in a state to publish from (no branch, moved underneath).
    #[error("local repository: {0}")]
    Local(String),
    /// A local git operation failed; the underlying error is kept as the source.
    #[error("local repository: {0}")]
    Git(#[source] crate::apply::ApplyError),
}

impl PublishError {
    /// Whether a later try can succeed without a human (transport failures, local busy).
    pub fn retryable(&self) -> bool {
        !matches!(self, PublishError::Diverged { .. })
    }
}

/// Publishes the branch kaizen commits on to its remote.
///
/// Invariants: never force-pushes and never rewrites a commit that is not kaizen's; a push is
/// a compare-and-swap against the remote's tip; after `publish` returns `Ok`, every commit of
/// the local branch is on the remote; `Err` leaves the remote and the local branch as they were,
/// except that a replay may already have moved the local branch onto the remote's tip (then the
/// returned error is a transport one and the next try pushes the replayed commits).
pub trait Publisher: Send {
    /// The remote's name (for messages).
    fn remote(&self) -> &str;
    /// Pushes the branch (replaying kaizen's commits on a moved remote first).
    fn publish(&self) -> Result<Published, PublishError>;
    /// Local commits not on the remote, newest first, as last seen (no network).
    fn unpushed(&self) -> Result<Vec<Unpushed>, PublishError>;
    /// Whether `sha` is on the remote branch as last seen (no network).
    fn on_remote(&self, sha: &str) -> Result<bool, PublishError>;
}

/// Where a review branch stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ReviewState {
    /// Open and cut from the target's tip: waiting for a human.
    Waiting,
    /// Open, but the target moved on since it was cut (`human_commits`: a human pushed to the
    /// branch, so kaizen does not rebase it).
    Stale {
        /// Whether the branch holds commits that are not kaizen's.
        human_commits: bool,
    },
    /// Its change reached the target branch: `commit` holds it there (the branch's commit
    /// itself after a merge or fast-forward, or the squash / rebased commit naming it).
    Merged {
        /// The target's commit holding the change.
        commit: String,
    },
    /// Deleted without reaching the target; `reason`: the message of a commit a human added on
    /// top before deleting it.
    Deleted {
        /// Why, if the branch's last commit said.
        reason: Option<String>,
    },
}

/// Review branches on the remote (review mode): a candidate as branch `kaizen/K-…` with one
/// commit, for a human to merge.
///
/// Invariants: never touches the branch kaizen commits on or the working tree except in
/// [`ReviewDesk::sync`] (a fast-forward to the remote, when clean); only kaizen's own review
/// branches are ever rebased, with a compare-and-swap on the sha kaizen pushed.
pub trait ReviewDesk: Send {
    /// The branch name of `id` (`kaizen/K-000042`).
    fn branch_name(&self, id: InterventionId) -> String;
    /// Opens the branch: one commit of `candidate`'s change on the remote target's tip, its
    /// message holding `chain` (the decision chain) before the trailers; pushed. Returns its sha.
    fn open(
        &self,
        id: InterventionId,
        candidate: &crate::intervention::Candidate,
        chain: &str,
    ) -> Result<String, PublishError>;
    /// Fetches and classifies each open review (`id`, the commit kaizen pushed).
    fn inspect(
        &self,
        open: &[(InterventionId, String)],
    ) -> Result<Vec<(InterventionId, ReviewState)>, PublishError>;
    /// Rebases `id`'s branch (at `sha`) onto the target's tip and pushes it: `Some(new sha)`,
    /// or `None` when it does not apply cleanly (nothing pushed).
    fn rebase(&self, id: InterventionId, sha: &str) -> Result<Option<String>, PublishError>;
    /// Forgets `id`'s branch locally (after a merge or a rejection).
    fn close(&self, id: InterventionId) -> Result<(), PublishError>;
    /// Fast-forwards the local branch to the remote's when that is clean (`true`: moved).
    fn sync(&self) -> Result<bool, PublishError>;
}

/// Publishing as shown by `kaizen status` and `/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishStatus {
    /// The remote.
    pub remote: String,
    /// Applied interventions whose commit is not yet on the remote (validation not started).
    pub awaiting_push: Vec<InterventionId>,
    /// Failed pushes since the last successful one.
    pub consecutive_failures: u32,
    /// The last failure's message, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last push succeeded.
    pub last_pushed_at: Option<DateTime<Utc>>,
    /// When the next try is due after a failure (`None`: next cycle).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The push history since the last success, read back from the event log (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushHistory {
    /// Failed attempts since the last success.
    pub failures: u32,
    /// The newest failure: when, and its message.
    pub last_failure: Option<(DateTime<Utc>, String)>,
    /// The last success.
    pub last_pushed_at: Option<DateTime<Utc>>,
}

impl PushHistory {
    /// Folds `events` (newest first, stage [`STAGE`]) until the last success.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a crate::event::RecordedEvent>,
    ) -> Self {
        let mut h = PushHistory::default();
        for e in events {
            match e.kind.as_str() {
                EVENT_PUSHED => {
                    h.last_pushed_at = Some(e.at);
                    break;
                }
                EVENT_PUSH_FAILED | EVENT_PUSH_DIVERGED => {
                    h.failures = h.failures.saturating_add(1);
                    if h.last_failure.is_none() {
                        h.last_failure = Some((e.at, e.detail.clone()));
                    }
                }
                _ => {}
            }
        }
        h
    }

    /// When the next try is due (`None`: now).
    pub fn next_attempt(&self, config: &GitConfig) -> Option<DateTime<Utc>> {
        self.last_failure
            .as_ref()
            .map(|(at, _)| config.backoff(self.failures).after(*at))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> GitConfig {
        crate::yaml::from_str::<GitConfig>("remote: origin\n", std::path::Path::new("k.yaml"))
            .unwrap()
    }

    #[test]
    fn git_section_and_per_area_modes_load_and_are_checked() {
        use crate::config::{Config, Mode};
        let path = std::path::Path::new("/tmp/kaizen.yaml");
        let c = Config::parse(
            "git: { remote: upstream, branch: main }\nmode: autonomous\nmodes: { search: manual, cache: shadow }\n",
            path,
        )
        .unwrap();
        let g = c.git.clone().unwrap();
        assert_eq!(
            (g.remote.as_str(), g.branch.as_deref(), g.push),
            ("upstream", Some("main"), true)
        );
        assert_eq!(c.branch.as_deref(), Some("main"));
        let s = crate::engine::EngineSettings::from_config(&c);
        assert_eq!(s.mode_for("search"), Mode::Manual);
        assert_eq!(s.mode_for("cache"), Mode::Shadow);
        assert_eq!(s.mode_for("other"), Mode::Autonomous);
        let bad = |text: &str, field: &str| {
            let e = Config::parse(text, path).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        };
        bad("branch: main\ngit: { branch: prod }\n", "git.branch");
        bad("git: { remote: \"--upload-pack=x\" }\n", "git.remote");
        bad("git: { retry_min: 2h, retry_max: 1h }\n", "git.retry_min");
        bad("git: { remote: origin, force: true }\n", "force");
        bad("modes: { search: yolo }\n", "yolo");
        // Review branches live on a remote.
        bad("modes: { search: review }\n", "git:");
        bad("mode: review\ngit: { push: false }\n", "git:");
        assert!(Config::parse("mode: review\ngit: { remote: origin }\n", path).is_ok());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = config();
        assert_eq!(c.backoff(0), Span::minutes(1));
        assert_eq!(c.backoff(1), Span::minutes(1));
        assert_eq!(c.backoff(2), Span::minutes(2));
        assert_eq!(c.backoff(4), Span::minutes(8));
        assert_eq!(c.backoff(7), Span::hours(1));
        assert_eq!(c.backoff(u32::MAX), Span::hours(1));
        assert!(c.push);
    }

    #[test]
    fn a_local_git_failure_keeps_its_source_and_is_retried() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "read-only refs");
        let e = PublishError::Git(crate::apply::ApplyError::git("cannot move the branch", io));
        assert_eq!(
            e.to_string(),
            "local repository: git: cannot move the branch: read-only refs"
        );
        let mut chain = e.source();
        let mut found = false;
        while let Some(s) = chain {
            found |= s
                .downcast_ref::<crate::apply::ErrorSource>()
                .is_some_and(|w| w.inner().downcast_ref::<std::io::Error>().is_some());
            chain = s.source();
        }
        assert!(found, "the io::Error is reachable from the publish error");
        assert!(e.retryable());
    }
}

//! Hooks: operator commands run after kaizen changes the repository — `on_apply` (e.g. reload
//! the service) and `on_revert`. A failing `on_apply` means the change is not safely in effect:
//! the engine reverts it at once, recording the hook's output. A failing `on_revert` is
//! escalated (there is nothing safer to fall back to).

use crate::intervention::{Candidate, InterventionId};
use crate::span::Span;
use serde::{Deserialize, Serialize};

/// One hook command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Shell command, run in the repository with `KAIZEN_INTERVENTION`, `KAIZEN_AREA`,
    /// `KAIZEN_COMMIT` and `KAIZEN_EVENT` (`apply` / `revert`) set; exit 0 = success.
    pub command: String,
    /// How long it may take (default 1m); a timeout fails.
    #[serde(default = "default_hook_timeout")]
    pub timeout: Span,
}

fn default_hook_timeout() -> Span {
    Span::minutes(1)
}

/// `hooks:` in `kaizen.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// After each apply commit.
    #[serde(default)]
    pub on_apply: Option<HookConfig>,
    /// After each revert commit.
    #[serde(default)]
    pub on_revert: Option<HookConfig>,
}

/// What kaizen just did, for a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookEvent {
    /// A change was committed.
    Apply,
    /// A change was reverted.
    Revert,
}

impl HookEvent {
    /// `apply` / `revert`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Apply => "apply",
            HookEvent::Revert => "revert",
        }
    }
}

/// How a hook ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookOutcome {
    /// Whether it exited 0 in time.
    pub ok: bool,
    /// Its exit status or why it did not finish, and its output (excerpted).
    pub output: String,
}

/// Runs the configured hooks. Invariant: never panics on the command's behaviour; a hook that
/// cannot start, exits non-zero or times out is `ok: false` with the reason.
pub trait Hooks: Send + Sync {
    /// Runs the hook for `event` if one is configured (`None`: none is).
    fn run(
        &self,
        event: HookEvent,
        id: InterventionId,
        candidate: &Candidate,
        commit: &str,
    ) -> Option<HookOutcome>;
}

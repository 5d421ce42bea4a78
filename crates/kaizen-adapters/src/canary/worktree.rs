//! Counterfactual canaries: the change is *actually tried* in a temporary, detached
//! `git worktree` outside the repository, and (with `compare: true`) the same command runs in a
//! second worktree at the current head, so the canary's own before/after figures can be judged
//! against the candidate's prediction.
//!
//! Each worktree lives under the system temp dir as `kaizen-canary-<pid>-<K-…>-<after|before>`,
//! is registered with git (`git worktree add --detach`), and is removed (`git worktree remove
//! --force`) when the trial ends, whatever the outcome. A kaizen killed mid-trial leaves them
//! behind: [`orphans`] finds every registered `kaizen-canary-*` worktree whose owner pid is dead,
//! and removes them when asked (the next start does; `kaizen check` reports them).
//!
//! The command runs as `sh -c` in the worktree with `KAIZEN_WORKTREE` (its path) and the usual
//! `KAIZEN_*` variables. Its stdout may end with a JSON object of numbers (`{"p95_ms": 41.2}`):
//! the figures. Without `compare`, exit 0 passes. With it, both runs must exit 0 and report the
//! judged metric (the prediction's signal unless `metric:` says otherwise); the canary passes
//! only if the metric moves the predicted way by more than `tolerance` (relative to before). A
//! failing, timing-out or unparsable run blocks (fail closed).

use crate::source::{RunError, excerpt, run_shell, show_duration};
use async_trait::async_trait;
use kaizen_core::apply::{Applier, Finding};
use kaizen_core::canary::{Canary, CanaryResult};
use kaizen_core::intervention::{Candidate, InterventionId};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Output kept from a canary command, per stream.
const MAX_OUTPUT: usize = 64 * 1024;
/// Name prefix of kaizen's canary worktrees.
pub const WORKTREE_PREFIX: &str = "kaizen-canary-";

/// A canary running its command in temporary worktrees (see the module docs).
#[derive(Debug, Clone)]
pub struct WorktreeCanary {
    area: String,
    command: String,
    repo: PathBuf,
    timeout: Duration,
    compare: bool,
    tolerance: f64,
    metric: Option<String>,
}

/// One temporary worktree; removed on drop (the normal way out of every trial).
struct Worktree {
    repo: PathBuf,
    path: PathBuf,
}

impl Drop for Worktree {
    fn drop(&mut self) {
        remove_worktree(&self.repo, &self.path);
    }
}

fn git(repo: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(excerpt(&out.stderr))
    }
}

fn remove_worktree(repo: &Path, path: &Path) {
    let p = path.to_string_lossy().into_owned();
    if git(repo, &["worktree", "remove", "--force", "--force", &p]).is_err() {
        // Not registered any more (or half made): remove the directory and forget it.
        let _ = std::fs::remove_dir_all(path);
        let _ = git(repo, &["worktree", "prune"]);
    }
}

/// The pid a canary worktree's name carries (`kaizen-canary-<pid>-…`).
fn owner(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(WORKTREE_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Canary worktrees of `repo` left by a dead kaizen (killed mid-trial); with `repair`, removed.
pub fn orphans(repo: &Path, repair: bool) -> Vec<Finding> {
    let Ok(list) = git(repo, &["worktree", "list", "--porcelain"]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in list.lines() {
        let Some(p) = line.strip_prefix("worktree ") else {
            continue;
        };
        let path = PathBuf::from(p);
        let Some(pid) = owner(&path) else { continue };
        if alive(pid) {
            continue;
        }
        if repair {
            remove_worktree(repo, &path);
        }
        out.push(Finding {
            kind: "canary_worktree_orphan".into(),
            path: path.display().to_string(),
            detail: format!(
                "a canary worktree left by kaizen pid {pid} (killed mid-trial){}",
                if repair {
                    "; removed"
                } else {
                    "; the next start removes it"
                }
            ),
            repaired: repair,
        });
    }
    out
}

/// The figures a run's stdout ends with: its last line that is a JSON object, numbers only.
/// `Ok(None)`: no JSON line; `Err`: a JSON-looking last object that does not parse.
fn figures(stdout: &str) -> Result<Option<Map<String, Value>>, String> {
    let Some(line) = stdout
        .lines()
        .map(str::trim)
        .rev()
        .find(|l| l.starts_with('{'))
    else {
        return Ok(None);
    };
    let v: Value = serde_json::from_str(line).map_err(|e| {
        format!(
            "its JSON figures do not parse ({e}): {}",
            excerpt(line.as_bytes())
        )
    })?;
    let Value::Object(map) = v else {
        return Err("its figures are not a JSON object".into());
    };
    let nums: Map<String, Value> = map
        .into_iter()
        .filter(|(_, v)| v.as_f64().is_some_and(f64::is_finite))
        .collect();
    Ok(Some(nums))
}

impl WorktreeCanary {
    /// A canary for `area` trying changes in worktrees of `repo`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        area: impl Into<String>,
        command: impl Into<String>,
        repo: impl Into<PathBuf>,
        timeout: Duration,
        compare: bool,
        tolerance: f64,
        metric: Option<String>,
    ) -> Self {
        Self {
            area: area.into(),
            command: command.into(),
            repo: repo.into(),
            timeout,
            compare,
            tolerance,
            metric,
        }
    }

    /// A detached worktree of HEAD at a fresh temp path.
    fn worktree(&self, id: InterventionId, side: &str) -> Result<Worktree, String> {
        let path = std::env::temp_dir().join(format!(
            "{WORKTREE_PREFIX}{}-{id}-{side}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let p = path.to_string_lossy().into_owned();
        git(
            &self.repo,
            &["worktree", "add", "--detach", "--quiet", &p, "HEAD"],
        )
        .map_err(|e| format!("cannot make a worktree at {p}: {e}"))?;
        Ok(Worktree {
            repo: self.repo.clone(),
            path,
        })
    }

    /// Runs the command in `wt`: its figures, or why the run fails the canary.
    async fn run_in(
        &self,
        wt: &Worktree,
        id: InterventionId,
        candidate: &Candidate,
        side: &str,
    ) -> Result<Option<Map<String, Value>>, String> {
        let change = serde_json::to_string(&candidate.change)
            .map_err(|e| format!("cannot describe the change as JSON: {e}"))?;
        let env = [
            ("KAIZEN_INTERVENTION", id.to_string()),
            ("KAIZEN_AREA", candidate.area.clone()),
            ("KAIZEN_RISK", candidate.risk.to_string()),
            ("KAIZEN_TITLE", candidate.title.clone()),
            ("KAIZEN_CHANGE", change),
            ("KAIZEN_WORKTREE", wt.path.display().to_string()),
            ("KAIZEN_SIDE", side.to_string()),
        ];
        match run_shell(&self.command, &wt.path, &env, self.timeout, MAX_OUTPUT).await {
            Ok(out) if out.status.success() => figures(&String::from_utf8_lossy(&out.stdout))
                .map_err(|e| format!("the {side} run exited 0 but {e}")),
            Ok(out) => {
                let mut said = excerpt(&out.stderr);
                if said.is_empty() {
                    said = excerpt(&out.stdout);
                }
                Err(format!("the {side} run {}: {said}", out.status))
            }
            Err(RunError::Timeout) => Err(format!(
                "the {side} run timed out after {}; killed",
                show_duration(self.timeout)
            )),
            Err(e) => Err(format!("the {side} run failed: {e}")),
        }
    }

    async fn run(&self, id: InterventionId, c: &Candidate) -> (CanaryResult, Option<Value>) {
        let fail = |m: String| (CanaryResult::Fail(m), None);
        if c.area != self.area {
            return fail(format!(
                "the canary for area `{}` was asked to try a change to area `{}`",
                self.area, c.area
            ));
        }
        let after_wt = match self.worktree(id, "after") {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        // The change, actually applied (files only; nothing is committed).
        if let Err(e) = kaizen_core::sim::DirectApplier::new(&after_wt.path).apply(id, c) {
            return fail(format!("the change cannot be applied in the worktree: {e}"));
        }
        let after = match self.run_in(&after_wt, id, c, "after").await {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        drop(after_wt);
        if !self.compare {
            let data = after.clone().map(|a| serde_json::json!({ "after": a }));
            return (
                CanaryResult::Pass(match &after {
                    Some(a) => format!(
                        "exited 0 with the change applied in a worktree: {}",
                        Value::Object(a.clone())
                    ),
                    None => "exited 0 with the change applied in a worktree".to_string(),
                }),
                data,
            );
        }
        let before_wt = match self.worktree(id, "before") {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        let before = match self.run_in(&before_wt, id, c, "before").await {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        drop(before_wt);
        let metric = self
            .metric
            .clone()
            .unwrap_or_else(|| c.prediction.signal.clone());
        let data = serde_json::json!({
            "metric": metric,
            "before": before.clone().map(Value::Object),
            "after": after.clone().map(Value::Object),
            "tolerance": self.tolerance,
        });
        let get = |m: &Option<Map<String, Value>>| {
            m.as_ref()
                .and_then(|m| m.get(&metric))
                .and_then(Value::as_f64)
        };
        let (Some(b), Some(a)) = (get(&before), get(&after)) else {
            return (
                CanaryResult::Fail(format!(
                    "compare needs `{metric}` in both runs' JSON figures (before: {}, after: {})",
                    before
                        .map(|m| Value::Object(m).to_string())
                        .unwrap_or_else(|| "none".into()),
                    after
                        .map(|m| Value::Object(m).to_string())
                        .unwrap_or_else(|| "none".into()),
                )),
                Some(data),
            );
        };
        let direction = c.prediction.change.direction();
        let moved = if b.abs() > f64::EPSILON {
            (a - b) / b.abs()
        } else {
            a - b
        };
        let want = if direction < 0.0 { "fall" } else { "rise" };
        let text = format!(
            "{metric} {b} → {a} ({:+.1}%); predicted to {want} by more than {:.1}%",
            moved * 100.0,
            self.tolerance * 100.0
        );
        let mut data = data;
        if let Some(o) = data.as_object_mut() {
            o.insert("relative_change".into(), serde_json::json!(moved));
        }
        if moved * direction > self.tolerance {
            (CanaryResult::Pass(text), Some(data))
        } else {
            (
                CanaryResult::Fail(format!(
                    "{text}: the change does not move it the predicted way"
                )),
                Some(data),
            )
        }
    }
}

#[async_trait]
impl Canary for WorktreeCanary {
    fn area(&self) -> &str {
        &self.area
    }

    async fn trial(&self, id: InterventionId, candidate: &Candidate) -> CanaryResult {
        self.trial_with_figures(id, candidate).await.0
    }

    async fn trial_with_figures(
        &self,
        id: InterventionId,
        candidate: &Candidate,
    ) -> (CanaryResult, Option<Value>) {
        let (r, data) = self.run(id, candidate).await;
        match &r {
            CanaryResult::Pass(why) => tracing::info!(
                "kaizen intervention={id} stage=canary area={} pass: {why}",
                self.area
            ),
            CanaryResult::Fail(why) => tracing::warn!(
                "kaizen intervention={id} stage=canary area={} fail: {why}",
                self.area
            ),
        }
        (r, data)
    }

    fn always(&self) -> bool {
        true
    }

    fn orphans(&self, repair: bool) -> Vec<Finding> {
        orphans(&self.repo, repair)
    }
}

//! Canaries: a limited trial of a change before it is applied for real (required for risk ≥ medium).

use crate::intervention::{Candidate, InterventionId};
use async_trait::async_trait;

/// What a canary concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryResult {
    /// The trial passed; the change may be applied.
    Pass(String),
    /// The trial failed or could not run; the change is blocked.
    Fail(String),
}

/// A limited trial for one area. A canary that cannot run reports `Fail` (fail closed).
#[async_trait]
pub trait Canary: Send + Sync {
    /// The area it covers.
    fn area(&self) -> &str;
    /// Tries `candidate` in a limited scope.
    async fn trial(&self, id: InterventionId, candidate: &Candidate) -> CanaryResult;
    /// The trial with the figures it measured (stored with the intervention's canary event).
    async fn trial_with_figures(
        &self,
        id: InterventionId,
        candidate: &Candidate,
    ) -> (CanaryResult, Option<serde_json::Value>) {
        (self.trial(id, candidate).await, None)
    }
    /// Whether it runs for every change of its area, whatever the risk (a counterfactual
    /// canary is cheap and was asked for); otherwise only from `canary_required_from`.
    fn always(&self) -> bool {
        false
    }
    /// What a killed trial left behind (temporary worktrees); with `repair`, removed.
    fn orphans(&self, repair: bool) -> Vec<crate::apply::Finding> {
        let _ = repair;
        Vec::new()
    }
}

/// A counterfactual canary's figures as indented lines: the judged metric, each run's figures
/// and the relative change (whatever of these the figures hold).
pub fn figures_lines(figures: &serde_json::Value) -> String {
    let mut s = String::new();
    let field = |k: &str| figures.get(k).filter(|v| !v.is_null());
    if let Some(m) = field("metric").and_then(|m| m.as_str()) {
        s.push_str(&format!("  metric: {m}\n"));
    }
    for k in ["before", "after"] {
        if let Some(v) = field(k) {
            s.push_str(&format!("  {k}: {v}\n"));
        }
    }
    if let Some(r) = field("relative_change").and_then(|r| r.as_f64()) {
        s.push_str(&format!("  change: {:+.1}%\n", r * 100.0));
    }
    if let Some(t) = field("tolerance").and_then(|t| t.as_f64()) {
        s.push_str(&format!("  tolerance: {:.1}%\n", t * 100.0));
    }
    s
}

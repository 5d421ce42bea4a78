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
}

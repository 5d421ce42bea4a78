//! Lessons: structured experience that later proposals must cite or argue against.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a lesson is about.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonScope {
    /// The area.
    pub area: String,
    /// A signal it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// An intervention kind it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A file (or `file#key`) it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Whether a lesson is offered to proposers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LessonStatus {
    /// Offered to proposers.
    #[default]
    Active,
    /// No longer applies.
    Retired,
}

/// One piece of evidence: an intervention and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The intervention id (`K-000042`).
    pub intervention: String,
    /// Its outcome.
    pub outcome: String,
}

/// A lesson, as stored in `lessons/*.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    /// Stable id, e.g. `L-cache-grow`.
    pub id: String,
    /// What it is about.
    pub scope: LessonScope,
    /// The situation.
    pub when: String,
    /// What to do in it.
    pub prefer: String,
    /// Why — what lets a reader tell when it no longer applies.
    pub because: String,
    /// A condition on signals that would prove it wrong.
    pub falsifiable: String,
    /// A condition under which it stops applying.
    pub retired_when: String,
    /// The conditions and thresholds in force when it was written.
    #[serde(default)]
    pub calibrated_for: serde_json::Value,
    /// When it was written.
    pub created: DateTime<Utc>,
    /// Active or retired.
    #[serde(default)]
    pub status: LessonStatus,
    /// Interventions behind it.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Bumped on every change.
    #[serde(default = "one")]
    pub version: u32,
}

fn one() -> u32 {
    1
}

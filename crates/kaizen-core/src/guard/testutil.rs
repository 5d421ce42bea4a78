//! Small builders for guard tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use super::{GuardContext, GuardPolicy, LedgerView};
use crate::edit::Edit;
use crate::intervention::{
    Candidate, ExpectedChange, Intervention, InterventionId, Origin, Prediction, Risk, Status,
};
use crate::span::Span;
use chrono::{DateTime, Utc};
use std::path::Path;

/// A fixed "now".
pub(crate) fn t0() -> DateTime<Utc> {
    "2026-11-05T12:00:00Z".parse().unwrap()
}

/// A `config_set` edit.
pub(crate) fn set(file: &str, key: &str) -> Edit {
    Edit::ConfigSet {
        file: file.into(),
        key: key.into(),
        value: serde_json::json!(128),
    }
}

/// A `file_write` edit.
pub(crate) fn write(file: &str) -> Edit {
    Edit::FileWrite {
        file: file.into(),
        content: "x\n".into(),
    }
}

/// A well-formed low-risk candidate in `area` setting `config/app.yaml#cache.size_mb`.
pub(crate) fn cand(area: &str) -> Candidate {
    Candidate {
        area: area.into(),
        kind: "config_set".into(),
        title: "raise cache size".into(),
        hypothesis: "more hits".into(),
        change: vec![set("config/app.yaml", "cache.size_mb")],
        prediction: Prediction {
            signal: "latency_ms".into(),
            change: ExpectedChange::Relative(-0.2),
            within: Span::minutes(30),
        },
        risk: Risk::Low,
        confidence: 0.7,
        rollback: Some("revert".into()),
        origin: Origin::default(),
    }
}

/// A candidate in `area` with the given edits.
pub(crate) fn cand_with(area: &str, change: Vec<Edit>) -> Candidate {
    Candidate {
        change,
        ..cand(area)
    }
}

/// An intervention K-`id` in `area` with `status`, created at [`t0`] minus 10 days, never applied.
/// Adjust with struct update syntax: `Intervention { applied_at: Some(t), ..iv(1, "cache", Status::Applied) }`.
pub(crate) fn iv(id: i64, area: &str, status: Status) -> Intervention {
    Intervention {
        id: InterventionId(id),
        candidate: cand(area),
        status,
        outcome: None,
        reason: String::new(),
        commit: None,
        revert_commit: None,
        created_at: t0() - chrono::Duration::days(10),
        applied_at: None,
        due_at: None,
        finalized_at: None,
    }
}

/// An intervention currently `applied`, applied (and created) at `at`.
pub(crate) fn applied(id: i64, area: &str, at: DateTime<Utc>) -> Intervention {
    Intervention {
        created_at: at,
        applied_at: Some(at),
        due_at: Some(at + chrono::Duration::hours(1)),
        ..iv(id, area, Status::Applied)
    }
}

/// An intervention finalized (`validated` or `reverted`) at `at`, applied an hour earlier.
pub(crate) fn finalized(id: i64, area: &str, status: Status, at: DateTime<Utc>) -> Intervention {
    Intervention {
        created_at: at - chrono::Duration::hours(1),
        applied_at: Some(at - chrono::Duration::hours(1)),
        finalized_at: Some(at),
        ..iv(id, area, status)
    }
}

/// A context for guards that do not read the file tree.
pub(crate) fn ctx_at<'a>(
    view: &'a LedgerView,
    policy: &'a GuardPolicy,
    now: DateTime<Utc>,
) -> GuardContext<'a> {
    GuardContext {
        view,
        policy,
        now,
        repo_root: Path::new("/nonexistent-kaizen-repo"),
    }
}

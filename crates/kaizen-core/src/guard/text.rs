//! Wording shared by the guards (timestamps, id lists, durations) and the verdict constructor:
//! below `guards.rs` and every guard module, so none of them imports the chain that lists them.

use super::GuardVerdict;
use crate::intervention::Intervention;
use chrono::{DateTime, SecondsFormat, Utc};

/// A timestamp as operators read it: `2026-11-05T14:00:00Z`.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `K-000001, K-000002, …` in the given order.
pub(crate) fn id_list<'a>(ivs: impl IntoIterator<Item = &'a Intervention>) -> String {
    ivs.into_iter()
        .map(|iv| iv.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration for humans (`2h`, `90m`, `45s`); negative durations print as `0s`.
pub(crate) fn human(d: chrono::Duration) -> String {
    crate::span::Span::from_chrono(d).to_string()
}

/// A verdict of guard `guard`.
pub(crate) fn verdict(guard: &str, decision: super::Decision, reason: String) -> GuardVerdict {
    GuardVerdict {
        guard: guard.to_string(),
        decision,
        reason,
    }
}

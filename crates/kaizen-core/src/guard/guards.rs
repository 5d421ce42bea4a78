//! The built-in guards. (Placeholder until the guards work lands.)
use super::{Guard, GuardPolicy, LedgerView};
use crate::propose::Freeze;
use chrono::{DateTime, Utc};

/// All built-in guards.
pub fn default_chain() -> Vec<Box<dyn Guard>> {
    Vec::new()
}
/// Active freezes.
pub fn active_freezes(_view: &LedgerView, _policy: &GuardPolicy, _now: DateTime<Utc>) -> Vec<Freeze> {
    Vec::new()
}
/// Budget left.
pub fn budget_left(_view: &LedgerView, policy: &GuardPolicy, _now: DateTime<Utc>) -> u32 {
    policy.daily_budget
}

//! Bounds shared by the config (which checks settings against them) and the ledger (which
//! applies them), so neither imports the other for them.

/// The most finalized interventions per area kaizen keeps in sight whatever their age: the
/// bound on `freeze_after_rollbacks` (the guards' view holds that many of each area's newest,
/// as facts), and how many of each area's newest a proposer's context may show.
pub const VIEW_FINALIZED_PER_AREA: u32 = 50;

//! Bounds shared by the config (which checks settings against them) and the ledger (which
//! applies them), so neither imports the other for them.

/// How many of each area's latest finalized interventions the guards' view always holds (the
/// freeze guard needs the last `freeze_after_rollbacks` of them, whatever their age).
pub const VIEW_FINALIZED_PER_AREA: u32 = 50;

//! Proposers' track records counted in SQL (`kaizen status`, the autonomy check before an
//! apply): a year of history is thousands of finalized interventions, and reading each one's
//! whole row to count outcomes was most of a status (issue 12, history at scale).
//!
//! The counts come from the `interventions_proposer` index (migration v10), which holds each
//! finalized intervention's proposer key (the virtual column `proposer_key`: the origin's
//! display, `rules:<rule id>` or the proposer's name), times, outcome and stated confidence,
//! in key order: one pass, grouped as it goes, nothing decoded in Rust. (SQLite still reads each
//! row — it treats a virtual column as using every column, so such an index never covers a
//! query — but decodes none of it: 10k finalized interventions are counted in a few ms.)

use super::{Ledger, LedgerError};
use crate::calibrate::{ProposerRecord, TrackRecord};
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeMap;

/// Counts per key: finalized interventions (validated or reverted) with an outcome and a
/// finalization time, as [`crate::calibrate::track_records`] counts them.
pub(super) const COUNTS: &str = "SELECT proposer_key, SUM(outcome = 'validated'),
       SUM(outcome IN ('validated', 'no_effect', 'regressed'))
     FROM interventions INDEXED BY interventions_proposer
     WHERE status IN ('validated', 'reverted') AND outcome IS NOT NULL
       AND finalized_at IS NOT NULL
     GROUP BY proposer_key";

/// The counts of one key.
pub(super) const COUNTS_OF: &str = "SELECT SUM(outcome = 'validated'),
       SUM(outcome IN ('validated', 'no_effect', 'regressed'))
     FROM interventions INDEXED BY interventions_proposer
     WHERE status IN ('validated', 'reverted') AND outcome IS NOT NULL
       AND finalized_at IS NOT NULL AND proposer_key = ?1";

/// The stated confidence of a key's latest finalized intervention: newest creation, then (for
/// equal times) the later finalization and the higher id, as the in-memory calibration ordered
/// them.
pub(super) const LATEST_STATED: &str =
    "SELECT confidence FROM interventions INDEXED BY interventions_proposer
     WHERE status IN ('validated', 'reverted') AND proposer_key = ?1
     ORDER BY created_at DESC, finalized_at DESC, id DESC LIMIT 1";

fn record(hits: Option<i64>, n: Option<i64>) -> TrackRecord {
    let count = |v: Option<i64>| usize::try_from(v.unwrap_or(0)).unwrap_or(0);
    TrackRecord {
        hits: count(hits),
        n: count(n),
    }
}

impl Ledger {
    /// Every proposer with finalized history (at least one finalized intervention with an
    /// outcome), by key: its track record and its latest stated confidence — what
    /// [`crate::calibrate::Calibration::all`] computes from every finalized row, counted by
    /// the index instead.
    pub fn proposer_records(&self) -> Result<BTreeMap<String, ProposerRecord>, LedgerError> {
        self.sql(|c| {
            let mut counts = c.prepare_cached(COUNTS)?;
            let rows = counts.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, record(r.get(1)?, r.get(2)?)))
            })?;
            let records = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let mut latest = c.prepare_cached(LATEST_STATED)?;
            let mut out = BTreeMap::new();
            for (key, record) in records {
                let latest_stated: Option<f64> =
                    latest.query_row(params![key], |r| r.get(0)).optional()?;
                out.insert(
                    key,
                    ProposerRecord {
                        record,
                        latest_stated: latest_stated.unwrap_or(0.0),
                    },
                );
            }
            Ok(out)
        })
    }

    /// The track record of the proposer `key` (`rules:grow-cache`, `llm`): what
    /// [`crate::calibrate::track_records`] counts for it over every finalized row.
    pub fn track_record_of(&self, key: &str) -> Result<TrackRecord, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(COUNTS_OF)?
                .query_row(params![key], |r| Ok(record(r.get(0)?, r.get(1)?)))
        })
    }
}

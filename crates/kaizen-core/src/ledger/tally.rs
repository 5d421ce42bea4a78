//! Aggregate reads for `/health` and `/metrics`: counts grouped in SQL, so a scrape costs a few
//! indexed or single-pass queries however long the ledger is, and never loads the event log.
//!
//! Every count is derived from rows the ledger already keeps (events, interventions, guard
//! verdicts): they survive restarts and only grow, which is what a Prometheus counter needs.

use super::{Ledger, LedgerError, from_ms, ms};
use chrono::{DateTime, Utc};
use rusqlite::params;
use std::collections::BTreeMap;

/// The event kind a failing source is recorded under.
pub const SAMPLE_ERROR: &str = "sample_error";

/// The event kind of an invariant check whose open-violation count changed (`data.open`).
pub const INVARIANTS_CHECKED: &str = "invariants_checked";

/// SQL for the source of a `sample_error` row: the typed event's `source`, or for a row from
/// before typed events, the name in its detail ``source `NAME`: message``.
const SOURCE_OF_DETAIL: &str = "COALESCE(\
    CASE WHEN json_valid(data_json) THEN json_extract(data_json, '$.source') END, \
    CASE WHEN detail LIKE 'source `%`:%' \
         THEN substr(detail, 9, instr(substr(detail, 9), '`') - 1) ELSE '' END)";

/// Events of kind `?3` between `?1` and `?2` (one range of `events_kind`).
pub(super) const KIND_COUNT_BETWEEN: &str =
    "SELECT COUNT(*) FROM events WHERE at >= ?1 AND at <= ?2 AND kind = ?3";

/// Events of kind `?1` (see [`Ledger::kind_count`]).
pub(super) const KIND_COUNT: &str = "SELECT COUNT(*) FROM events WHERE kind = ?1";

/// Events per kind since `?1` (see [`Ledger::event_counts`]).
pub(super) const EVENT_COUNTS_SINCE: &str =
    "SELECT kind, COUNT(*) FROM events INDEXED BY events_at WHERE at >= ?1 GROUP BY kind";

/// Events per kind, all of them (`?1` is the earliest instant there is).
pub(super) const EVENT_COUNTS_ALL: &str =
    "SELECT kind, COUNT(*) FROM events WHERE at >= ?1 GROUP BY kind";

/// The newest event of each stage (see [`Ledger::last_event_per_stage`]).
pub(super) const LAST_EVENT_PER_STAGE: &str = "WITH RECURSIVE stages(stage) AS (
         SELECT MIN(stage) FROM events
         UNION ALL
         SELECT (SELECT MIN(stage) FROM events WHERE stage > stages.stage) FROM stages
         WHERE stages.stage IS NOT NULL)
     SELECT e.stage, e.at, e.kind, e.detail FROM stages
     JOIN events e ON e.id = (SELECT MAX(id) FROM events WHERE stage = stages.stage)";

/// The last time a source failed, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFailure {
    /// When (the engine clock's).
    pub at: DateTime<Utc>,
    /// The recorded error (``gap: source `NAME`: message``).
    pub error: String,
}

/// The most recent event of one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Its kind.
    pub kind: String,
    /// Its detail.
    pub detail: String,
}

/// Lifetime totals of interventions, from their rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InterventionTotals {
    /// Ever committed (a row with an apply time).
    pub applied: u64,
    /// Judged `validated` at their final look (kept or reverted later by a human).
    pub validated: u64,
    /// Reverted, by the verdict outcome they carried (`none`: reverted before any verdict).
    pub reverted_by_outcome: BTreeMap<String, u64>,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Ledger {
    /// Events per kind recorded at or after `since` (all of them with `None`).
    pub fn event_counts(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<BTreeMap<String, u64>, LedgerError> {
        // Since an instant: the few events after it, found through `events_at` (left to itself,
        // SQLite would walk `events_kind` for the grouping, i.e. every event). All of them: one
        // pass over `events_kind`, grouped as it goes.
        let (sql, from) = match since {
            Some(t) => (EVENT_COUNTS_SINCE, ms(t)),
            None => (EVENT_COUNTS_ALL, i64::MIN),
        };
        self.sql(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params![from], |r| {
                Ok((r.get::<_, String>(0)?, count(r.get(1)?)))
            })?;
            rows.collect()
        })
    }

    /// Events of `kind`, all of them: one range of `events_kind` (counting every kind to read
    /// one grouped the whole event log, after every step of the runtime — 1.7% of a 90-day
    /// `kaizen sim`, issue 12 bench 4, and growing with the ledger's age).
    pub fn kind_count(&self, kind: &str) -> Result<u64, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(KIND_COUNT)?
                .query_row(params![kind], |r| r.get::<_, i64>(0))
        })
        .map(count)
    }

    /// Events of `kind` recorded with `from <= at <= to`.
    pub fn kind_count_between(
        &self,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<usize, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(KIND_COUNT_BETWEEN)?
                .query_row(params![ms(from), ms(to), kind], |r| r.get::<_, i64>(0))
        })
        .map(|n| usize::try_from(n).unwrap_or(0))
    }

    /// Events of `stage` recorded at or after `since`.
    pub fn stage_event_count(&self, stage: &str, since: DateTime<Utc>) -> Result<u64, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM events WHERE stage = ?1 AND at >= ?2")?
                .query_row(params![stage, ms(since)], |r| r.get::<_, i64>(0))
        })
        .map(count)
    }

    /// Recorded sampling gaps per source (a built-in source is named after its signal).
    pub fn sample_gaps_by_source(&self) -> Result<BTreeMap<String, u64>, LedgerError> {
        let sql = format!(
            "SELECT {SOURCE_OF_DETAIL} AS src, COUNT(*) FROM events WHERE kind = ?1 GROUP BY src"
        );
        self.sql(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![SAMPLE_ERROR], |r| {
                Ok((r.get::<_, String>(0)?, count(r.get(1)?)))
            })?;
            rows.collect()
        })
    }

    /// Each source's most recent recorded failure.
    pub fn last_source_failures(&self) -> Result<BTreeMap<String, SourceFailure>, LedgerError> {
        let sql = format!(
            "SELECT {SOURCE_OF_DETAIL}, at, detail FROM events WHERE id IN \
             (SELECT MAX(id) FROM events WHERE kind = ?1 GROUP BY {SOURCE_OF_DETAIL})"
        );
        self.sql(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![SAMPLE_ERROR], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    SourceFailure {
                        at: from_ms(r.get(1)?),
                        error: r.get(2)?,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    /// The most recent event of each stage: the stages are found by stepping through the
    /// `events_stage` index and each one's newest event is one seek in it, so the cost is per
    /// stage, not per event (grouping the whole log sorted every event of it).
    pub fn last_event_per_stage(&self) -> Result<BTreeMap<String, StageEvent>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(LAST_EVENT_PER_STAGE)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StageEvent {
                        at: from_ms(r.get(1)?),
                        kind: r.get(2)?,
                        detail: r.get(3)?,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    /// Guard refusals (block or backlog) per guard, over the ledger's life: a pass over the
    /// partial index of refusals (`INDEXED BY`: losing it is an error, not a silent scan).
    pub fn guard_refusals(&self) -> Result<BTreeMap<String, u64>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT guard, COUNT(*) FROM guard_verdicts INDEXED BY guard_verdicts_refusals \
                 WHERE decision != 'pass' GROUP BY guard",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, count(r.get(1)?))))?;
            rows.collect()
        })
    }

    /// Lifetime totals of applied, validated and reverted interventions.
    pub fn intervention_totals(&self) -> Result<InterventionTotals, LedgerError> {
        self.sql(|c| {
            let applied = c
                .prepare_cached("SELECT COUNT(*) FROM interventions WHERE applied_at IS NOT NULL")?
                .query_row([], |r| r.get::<_, i64>(0))?;
            let validated = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM interventions WHERE outcome = 'validated' \
                 AND status IN ('validated', 'reverted')",
                )?
                .query_row([], |r| r.get::<_, i64>(0))?;
            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(outcome, 'none'), COUNT(*) FROM interventions \
                 WHERE status = 'reverted' GROUP BY 1",
            )?;
            let reverted = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, count(r.get(1)?))))?
                .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
            Ok(InterventionTotals {
                applied: count(applied),
                validated: count(validated),
                reverted_by_outcome: reverted,
            })
        })
    }

    /// Open invariant violations as of the last check that changed their number (0 if no check
    /// ever found one).
    pub fn invariant_violations_open(&self) -> Result<u64, LedgerError> {
        let last = self.query_events(
            "WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
            params![INVARIANTS_CHECKED],
        )?;
        Ok(last
            .first()
            .and_then(|e| match &e.event {
                crate::event::EngineEvent::InvariantsChecked { open } => Some(*open),
                _ => None,
            })
            .unwrap_or(0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::event::EngineEvent;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn gaps_and_last_failures_are_grouped_by_source() {
        let mut l = Ledger::in_memory().unwrap();
        let t0 = at("2026-01-01T00:00:00Z");
        for (i, (src, msg)) in [("p99", "timeout"), ("p99", "refused"), ("err", "exit 1")]
            .iter()
            .enumerate()
        {
            let gap = EngineEvent::SampleGap {
                source: (*src).into(),
                message: (*msg).into(),
            };
            l.append(t0 + chrono::Duration::minutes(i as i64), &gap)
                .unwrap();
        }
        let gaps = l.sample_gaps_by_source().unwrap();
        assert_eq!(gaps.get("p99"), Some(&2));
        assert_eq!(gaps.get("err"), Some(&1));
        let last = l.last_source_failures().unwrap();
        assert_eq!(last["p99"].error, "gap: source `p99`: refused");
        assert_eq!(last["p99"].at, t0 + chrono::Duration::minutes(1));
        let counts = l
            .event_counts(Some(t0 + chrono::Duration::minutes(1)))
            .unwrap();
        assert_eq!(counts.get(SAMPLE_ERROR), Some(&2));
        assert_eq!(l.stage_event_count("observe", t0).unwrap(), 3);
        assert_eq!(
            l.last_event_per_stage().unwrap()["observe"].detail,
            "gap: source `err`: exit 1"
        );
    }

    #[test]
    fn invariant_count_follows_the_last_change() {
        let mut l = Ledger::in_memory().unwrap();
        let t0 = at("2026-01-01T00:00:00Z");
        assert_eq!(l.invariant_violations_open().unwrap(), 0);
        l.append(t0, &EngineEvent::InvariantsChecked { open: 2 })
            .unwrap();
        assert_eq!(l.invariant_violations_open().unwrap(), 2);
        l.append(t0, &EngineEvent::InvariantsChecked { open: 0 })
            .unwrap();
        assert_eq!(l.invariant_violations_open().unwrap(), 0);
    }
}

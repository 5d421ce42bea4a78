//! Aggregate reads for `/health` and `/metrics`: counts grouped in SQL from indexes, or kept
//! by the ledger and brought up to date from the events appended since (each stage's newest
//! event, each source's gaps), so what the runtime reads after every step does not grow with
//! the ledger's history, and never loads the event log.
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
     SELECT e.stage, e.at, e.kind, e.detail, e.id FROM stages
     JOIN events e ON e.id = (SELECT MAX(id) FROM events WHERE stage = stages.stage)";

/// The last time a source failed, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFailure {
    /// When (the engine clock's).
    pub at: DateTime<Utc>,
    /// The recorded error (``gap: source `NAME`: message``).
    pub error: String,
}

/// Each stage's newest event (with its id) as of `last_id`, read under `version` (see
/// [`Ledger::last_event_per_stage`]).
#[derive(Debug)]
pub(super) struct StageMemo {
    version: i64,
    last_id: i64,
    by_stage: ByStage,
}

/// Each stage's newest event with its id.
type ByStage = BTreeMap<String, (i64, StageEvent)>;

impl StageMemo {
    /// Folds in event `id` of `stage`: the newest of a stage is the one with the highest id,
    /// whatever the order events are folded in (one may be seen twice).
    fn fold(&mut self, id: i64, stage: String, event: StageEvent) {
        self.last_id = self.last_id.max(id);
        match self.by_stage.get_mut(&stage) {
            Some((known, _)) if *known >= id => {}
            Some(slot) => *slot = (id, event),
            None => {
                self.by_stage.insert(stage, (id, event));
            }
        }
    }
}

/// Each source's recorded sampling gaps — how many, and the newest with its id — as of event
/// `last_id`, read under `version` (see [`Ledger::sample_gaps_by_source`]).
#[derive(Debug)]
pub(super) struct GapMemo {
    version: i64,
    last_id: i64,
    by_source: BySource,
}

/// Each source's gap count and newest gap (with its id).
type BySource = BTreeMap<String, (u64, i64, SourceFailure)>;

/// Folds gap event `id` of `source` into `by_source` (each event is folded exactly once: the
/// reads that feed it never overlap).
fn fold_gap(by_source: &mut BySource, id: i64, source: String, failure: SourceFailure) {
    let slot = by_source
        .entry(source)
        .or_insert_with(|| (0, id, failure.clone()));
    slot.0 = slot.0.saturating_add(1);
    if id >= slot.1 {
        slot.1 = id;
        slot.2 = failure;
    }
}

/// `sample_error` events with `?1 < id <= ?2` (`?3` is the kind), in any order: the first read
/// of a process finds them through `events_kind`; later reads take only the events appended
/// since the last one, by id (`NOT INDEXED`: `events_kind` would walk every gap ever recorded).
fn gaps_between_sql(first: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let [first_read, later_reads] = SQL.get_or_init(|| {
        ["INDEXED BY events_kind", "NOT INDEXED"].map(|access| {
            format!(
                "SELECT id, {SOURCE_OF_DETAIL}, at, detail FROM events {access} \
                 WHERE kind = ?3 AND id > ?1 AND id <= ?2"
            )
        })
    });
    if first { first_read } else { later_reads }
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

/// [`Ledger::intervention_totals`]' three counts, each from the `interventions_tally` index
/// alone (`INDEXED BY`: losing it is an error, not a silent scan of every row).
pub(crate) const TALLY_APPLIED: &str = "SELECT COUNT(*) FROM interventions \
     INDEXED BY interventions_tally WHERE applied_at IS NOT NULL";
pub(crate) const TALLY_VALIDATED: &str = "SELECT COUNT(*) FROM interventions \
     INDEXED BY interventions_tally WHERE outcome = 'validated' AND status IN ('validated', 'reverted')";
pub(crate) const TALLY_REVERTED: &str = "SELECT COALESCE(outcome, 'none'), COUNT(*) \
     FROM interventions INDEXED BY interventions_tally WHERE status = 'reverted' GROUP BY 1";
/// [`Ledger::count_with_status`]'s count, from the same index alone.
pub(crate) const TALLY_WITH_STATUS: &str = "SELECT COUNT(*) FROM interventions \
     INDEXED BY interventions_tally WHERE status = ?1";

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
        Ok(self
            .source_gaps()?
            .into_iter()
            .map(|(source, (n, _, _))| (source, n))
            .collect())
    }

    /// Each source's most recent recorded failure.
    pub fn last_source_failures(&self) -> Result<BTreeMap<String, SourceFailure>, LedgerError> {
        Ok(self
            .source_gaps()?
            .into_iter()
            .map(|(source, (_, _, failure))| (source, failure))
            .collect())
    }

    /// Each source's gap count and newest gap. `/health` and `/metrics` read them after every
    /// step of the runtime, and every tick with a failing source records one more: read in
    /// full, that cost grew with every gap ever recorded (100k gaps, ≈ 70 days of a dead source
    /// at a 1-minute tick, were ≈ 130 ms per step). What was read is kept and brought up to date
    /// from the events appended since, by id, as [`Ledger::last_event_per_stage`] does: events
    /// are only appended, with growing ids, and the fields read are never rewritten; a commit by
    /// another connection (`data_version` moved) reads everything again.
    fn source_gaps(&self) -> Result<BySource, LedgerError> {
        let version = self.data_version()?;
        let upto = self.sql(|c| {
            c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
                .query_row([], |r| r.get::<_, i64>(0))
        })?;
        let read = |by_source: &mut BySource, after: i64, first: bool| {
            self.sql(|c| {
                let mut stmt = c.prepare_cached(gaps_between_sql(first))?;
                let rows = stmt.query_map(params![after, upto, SAMPLE_ERROR], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        SourceFailure {
                            at: from_ms(r.get(2)?),
                            error: r.get(3)?,
                        },
                    ))
                })?;
                for row in rows {
                    let (id, source, failure) = row?;
                    fold_gap(by_source, id, source, failure);
                }
                Ok(())
            })
        };
        let mut memo = match self.gap_memo.lock() {
            Ok(m) => m,
            // A panic mid-update: read afresh, keep nothing.
            Err(_) => {
                let mut fresh = BySource::new();
                read(&mut fresh, 0, true)?;
                return Ok(fresh);
            }
        };
        match memo.as_mut() {
            Some(m) if m.version == version && m.last_id <= upto => {
                if let Err(e) = read(&mut m.by_source, m.last_id, false) {
                    // Some of the new events may be folded in already: keep nothing.
                    *memo = None;
                    return Err(e);
                }
                m.last_id = upto;
            }
            _ => {
                // Cleared first: a failed read leaves nothing half-folded behind.
                *memo = None;
                let mut by_source = BySource::new();
                read(&mut by_source, 0, true)?;
                *memo = Some(GapMemo {
                    version,
                    last_id: upto,
                    by_source,
                });
            }
        }
        Ok(memo
            .as_ref()
            .map(|m| m.by_source.clone())
            .unwrap_or_default())
    }

    /// The most recent event of each stage: the stages are found by stepping through the
    /// `events_stage` index and each one's newest event is one seek in it, so the cost is per
    /// stage, not per event (grouping the whole log sorted every event of it).
    ///
    /// What was read is kept and brought up to date from the events appended since (by id),
    /// instead of seeking every stage again: `/health` reads it after every step of the
    /// runtime (1.5% of a 90-day `kaizen sim`, issue 12 bench 4). Events are only ever
    /// appended, with growing ids, and the fields read here are never rewritten (the audit
    /// chain's hashes are set on the row later, nothing else); a commit by another connection
    /// (SQLite's `data_version` moved: anything may have happened, a tampering included)
    /// reads everything again.
    pub fn last_event_per_stage(&self) -> Result<BTreeMap<String, StageEvent>, LedgerError> {
        let version = self.data_version()?;
        let mut memo = match self.stage_memo.lock() {
            Ok(m) => m,
            // A panic mid-update: read afresh, keep nothing.
            Err(_) => {
                return Ok(self
                    .last_event_per_stage_read()?
                    .1
                    .into_iter()
                    .map(|(k, (_, e))| (k, e))
                    .collect());
            }
        };
        match memo.as_mut() {
            Some(m) if m.version == version => {
                let newer = self.sql(|c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT id, stage, at, kind, detail FROM events WHERE id > ?1 ORDER BY id",
                    )?;
                    let rows = stmt.query_map(params![m.last_id], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            StageEvent {
                                at: from_ms(r.get(2)?),
                                kind: r.get(3)?,
                                detail: r.get(4)?,
                            },
                        ))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })?;
                for (id, stage, event) in newer {
                    m.fold(id, stage, event);
                }
            }
            _ => {
                let (last_id, by_stage) = self.last_event_per_stage_read()?;
                *memo = Some(StageMemo {
                    version,
                    last_id,
                    by_stage,
                });
            }
        }
        Ok(memo
            .as_ref()
            .map(|m| {
                m.by_stage
                    .iter()
                    .map(|(k, (_, e))| (k.clone(), e.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Each stage's newest event with its id, read afresh, and the highest id read before it
    /// (events appended meanwhile are folded in again later: folding keeps the highest id).
    fn last_event_per_stage_read(&self) -> Result<(i64, ByStage), LedgerError> {
        let last_id = self.sql(|c| {
            c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
                .query_row([], |r| r.get::<_, i64>(0))
        })?;
        let by_stage = self.sql(|c| {
            let mut stmt = c.prepare_cached(LAST_EVENT_PER_STAGE)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (
                        r.get::<_, i64>(4)?,
                        StageEvent {
                            at: from_ms(r.get(1)?),
                            kind: r.get(2)?,
                            detail: r.get(3)?,
                        },
                    ),
                ))
            })?;
            rows.collect()
        })?;
        Ok((last_id, by_stage))
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

    /// Lifetime totals of applied, validated and reverted interventions, counted from the
    /// `interventions_tally` index's entries alone (no row is read: see the v13 migration).
    pub fn intervention_totals(&self) -> Result<InterventionTotals, LedgerError> {
        self.sql(|c| {
            let applied = c
                .prepare_cached(TALLY_APPLIED)?
                .query_row([], |r| r.get::<_, i64>(0))?;
            let validated = c
                .prepare_cached(TALLY_VALIDATED)?
                .query_row([], |r| r.get::<_, i64>(0))?;
            let mut stmt = c.prepare_cached(TALLY_REVERTED)?;
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

    /// How many interventions are in `status`, from the `interventions_tally` index alone (the
    /// status snapshot after every runtime step counts the backlog; loading each row and its
    /// JSON to count them grew with the backlog).
    pub fn count_with_status(
        &self,
        status: crate::intervention::Status,
    ) -> Result<usize, LedgerError> {
        let n = self.sql(|c| {
            c.prepare_cached(TALLY_WITH_STATUS)?
                .query_row(params![status.as_str()], |r| r.get::<_, i64>(0))
        })?;
        Ok(usize::try_from(count(n)).unwrap_or(usize::MAX))
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

    /// Another connection's tampering with the newest event, in the memo tests.
    const REWRITE_NEWEST: &str =
        "UPDATE events SET detail = 'rewritten' WHERE id = (SELECT MAX(id) FROM events)";
    const DELETE_NEWEST: &str = "DELETE FROM events WHERE id = (SELECT MAX(id) FROM events)";

    /// Arbitrary sequences of appended events (of several stages, through this connection and
    /// another one on the same file), reads in between, and another connection rewriting or
    /// deleting events (a tampering): the kept newest event of each stage always equals a
    /// fresh read.
    #[test]
    fn kept_last_events_per_stage_equal_a_fresh_read_after_any_sequence_of_appends() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let fresh = |l: &Ledger| -> BTreeMap<String, StageEvent> {
            l.last_event_per_stage_read()
                .unwrap()
                .1
                .into_iter()
                .map(|(k, (_, e))| (k, e))
                .collect()
        };
        for round in 0..12 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.sqlite");
            let mut ours = Ledger::open(&path).unwrap();
            let theirs = Ledger::open(&path).unwrap();
            let t0 = at("2026-01-01T00:00:00Z");
            for step in 0..150 {
                let stage =
                    ["observe", "apply", "validate", "learn", "zeta"][rng.random_range(0..5)];
                let t = t0 + chrono::Duration::minutes(rng.random_range(0..500));
                match rng.random_range(0..20) {
                    0..=11 => {
                        // Through the ledger's own API (the stage is the event's), or raw.
                        if rng.random_bool(0.5) {
                            let gap = EngineEvent::SampleGap {
                                source: format!("s{step}"),
                                message: "timeout".into(),
                            };
                            ours.append(t, &gap).unwrap();
                        } else {
                            ours.conn
                                .execute(
                                    "INSERT INTO events(at, stage, kind, detail) VALUES (?1, ?2, 'k', ?3)",
                                    params![ms(t), stage, format!("ours #{step}")],
                                )
                                .unwrap();
                        }
                    }
                    12..=14 => {
                        theirs
                            .conn
                            .execute(
                                "INSERT INTO events(at, stage, kind, detail) VALUES (?1, ?2, 'k', ?3)",
                                params![ms(t), stage, format!("theirs #{step}")],
                            )
                            .unwrap();
                    }
                    15 => {
                        theirs.conn.execute(REWRITE_NEWEST, []).unwrap();
                    }
                    16 => {
                        theirs.conn.execute(DELETE_NEWEST, []).unwrap();
                    }
                    _ => {}
                }
                if rng.random_bool(0.6) {
                    assert_eq!(
                        ours.last_event_per_stage().unwrap(),
                        fresh(&ours),
                        "round {round} step {step}"
                    );
                }
            }
        }
    }

    /// Arbitrary sequences of gap events of a few sources and other events (through this
    /// connection and another one on the same file, old-style untyped gap rows among them),
    /// reads in between, and another connection rewriting or deleting events: the kept gap
    /// counts and newest failures always equal the full reads they replace.
    #[test]
    fn kept_source_gaps_equal_a_full_read_after_any_sequence_of_appends() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        let full_counts = |l: &Ledger| -> BTreeMap<String, u64> {
            let sql = format!(
                "SELECT {SOURCE_OF_DETAIL} AS src, COUNT(*) FROM events WHERE kind = ?1 GROUP BY src"
            );
            let mut stmt = l.conn.prepare(&sql).unwrap();
            let rows = stmt
                .query_map(params![SAMPLE_ERROR], |r| {
                    Ok((r.get::<_, String>(0)?, count(r.get(1)?)))
                })
                .unwrap();
            rows.map(|r| r.unwrap()).collect()
        };
        let full_last = |l: &Ledger| -> BTreeMap<String, SourceFailure> {
            let sql = format!(
                "SELECT {SOURCE_OF_DETAIL}, at, detail FROM events WHERE id IN \
                 (SELECT MAX(id) FROM events WHERE kind = ?1 GROUP BY {SOURCE_OF_DETAIL})"
            );
            let mut stmt = l.conn.prepare(&sql).unwrap();
            let rows = stmt
                .query_map(params![SAMPLE_ERROR], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        SourceFailure {
                            at: from_ms(r.get(1)?),
                            error: r.get(2)?,
                        },
                    ))
                })
                .unwrap();
            rows.map(|r| r.unwrap()).collect()
        };
        for round in 0..12 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.sqlite");
            let mut ours = Ledger::open(&path).unwrap();
            let mut theirs = Ledger::open(&path).unwrap();
            let t0 = at("2026-01-01T00:00:00Z");
            for step in 0..150 {
                let source = ["p99", "errors", "queue"][rng.random_range(0..3)];
                let t = t0 + chrono::Duration::minutes(rng.random_range(0..500));
                match rng.random_range(0..20) {
                    0..=8 => {
                        let gap = EngineEvent::SampleGap {
                            source: source.into(),
                            message: format!("timeout #{step}"),
                        };
                        ours.append(t, &gap).unwrap();
                    }
                    9..=10 => {
                        // A gap row from before typed events: the source is in its detail.
                        ours.conn
                            .execute(
                                "INSERT INTO events(at, stage, kind, detail) VALUES (?1, 'observe', 'sample_error', ?2)",
                                params![ms(t), format!("source `{source}`: refused #{step}")],
                            )
                            .unwrap();
                    }
                    11 => {
                        let other = EngineEvent::Resumed { area: None };
                        ours.append(t, &other).unwrap();
                    }
                    12..=14 => {
                        let gap = EngineEvent::SampleGap {
                            source: source.into(),
                            message: format!("theirs #{step}"),
                        };
                        theirs.append(t, &gap).unwrap();
                    }
                    15 => {
                        theirs.conn.execute(REWRITE_NEWEST, []).unwrap();
                    }
                    16 => {
                        theirs.conn.execute(DELETE_NEWEST, []).unwrap();
                    }
                    _ => {}
                }
                if rng.random_bool(0.6) {
                    assert_eq!(
                        ours.sample_gaps_by_source().unwrap(),
                        full_counts(&ours),
                        "round {round} step {step}"
                    );
                    assert_eq!(
                        ours.last_source_failures().unwrap(),
                        full_last(&ours),
                        "round {round} step {step}"
                    );
                }
            }
        }
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

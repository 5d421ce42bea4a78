//! Switchback confirmation in the ledger (schema v9): one `switchbacks` row per intervention that
//! entered (or was refused) a switchback, with its plan, and one `switchback_blocks` row per
//! block — its on/off state, planned window, the flip commit that set it and, while that commit
//! is being made, a `pending` marker (set before the commit, cleared with its sha in one
//! transaction, so a crash in between is reconciled by the commit's `Kaizen-Switchback` trailer).

use super::{Ledger, LedgerError, append_in, from_ms, ms};
use crate::event::EngineEvent;
use crate::intervention::InterventionId;
use crate::span::Span;
use crate::validate::switchback::{Block, BlockPlan};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a switchback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchbackState {
    /// Flipping through its blocks (the intervention stays `applied`).
    Running,
    /// Decided; the intervention ended validated or reverted.
    Finished,
    /// Stopped before its end (a human's edit, a refused flip, a failing hook).
    Stopped,
    /// Never started: a guard or the plan refused it (the before/after judgement stands).
    Refused,
}

impl SwitchbackState {
    fn as_str(self) -> &'static str {
        match self {
            SwitchbackState::Running => "running",
            SwitchbackState::Finished => "finished",
            SwitchbackState::Stopped => "stopped",
            SwitchbackState::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => SwitchbackState::Running,
            "finished" => SwitchbackState::Finished,
            "refused" => SwitchbackState::Refused,
            _ => SwitchbackState::Stopped,
        }
    }
}

/// Why a switchback was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchbackTrigger {
    /// `validate.design: switchback` for the area.
    Design,
    /// The last before/after look was inconclusive for a low-risk, reversible change.
    Inconclusive,
}

impl std::fmt::Display for SwitchbackTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwitchbackTrigger::Design => "validate.design: switchback",
            SwitchbackTrigger::Inconclusive => "before/after inconclusive",
        })
    }
}

/// A switchback's plan: how its blocks were sized and drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchbackPlan {
    /// Block count and lengths.
    pub plan: BlockPlan,
    /// The signal's correlation time measured on the pre-apply history.
    pub correlation: Span,
    /// The signal's cadence the plan was sized at.
    pub cadence: Span,
    /// The schedule's seed ([`crate::validate::switchback::seed_for`] of the id).
    pub seed: u64,
    /// Why it was entered.
    pub trigger: SwitchbackTrigger,
}

/// One block as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockRow {
    /// 1-based; `plan.blocks + 1` is the end flip (a validated change left on).
    pub index: usize,
    /// The state the block asks for.
    pub on: bool,
    /// Planned start.
    pub starts_at: DateTime<Utc>,
    /// Planned start of measurement (after the washout).
    pub measure_from: DateTime<Utc>,
    /// Planned end (exclusive).
    pub ends_at: DateTime<Utc>,
    /// The flip commit that set this block's state (`None`: the state carried over, or the
    /// flip is not made yet).
    pub flip_commit: Option<String>,
    /// When the flip was made.
    pub flipped_at: Option<DateTime<Utc>>,
    /// A flip commit is being made (set before the commit; a crash leaves it for reconcile).
    pub pending: bool,
    /// The block's measured value (median of its measured samples, signal units), once judged.
    pub value: Option<f64>,
    /// Samples in its measured part, once judged.
    pub samples: Option<usize>,
}

impl BlockRow {
    /// The block as the layer-1 judge sees it.
    pub fn block(&self) -> Block {
        Block {
            index: self.index,
            on: self.on,
            start: self.starts_at,
            measure_from: self.measure_from,
            end: self.ends_at,
        }
    }
}

/// A switchback as recorded, with its blocks in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Switchback {
    /// The intervention.
    pub intervention: InterventionId,
    /// Where it stands.
    pub state: SwitchbackState,
    /// Why it was refused or stopped (empty while running or when finished).
    pub why: String,
    /// The plan (`None` for a refusal before any plan was made).
    pub plan: Option<SwitchbackPlan>,
    /// When it started (or was refused).
    pub started_at: DateTime<Utc>,
    /// When it finished or stopped.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its blocks (the end flip last, if one was made).
    pub blocks: Vec<BlockRow>,
}

impl Switchback {
    /// The planned blocks (the end flip left out).
    pub fn planned(&self) -> impl Iterator<Item = &BlockRow> {
        let n = self.plan.as_ref().map_or(0, |p| p.plan.blocks);
        self.blocks.iter().filter(move |b| b.index <= n)
    }

    /// The state in force now: the last flip made, else on (the apply).
    pub fn current_on(&self) -> bool {
        self.blocks
            .iter()
            .rev()
            .find(|b| b.flip_commit.is_some())
            .is_none_or(|b| b.on)
    }

    /// The commit whose change a flip to `on` undoes: switching off undoes the last commit that
    /// switched on (the last flip on, else `apply_commit`); switching on undoes the last flip off.
    pub fn undoes(&self, on: bool, apply_commit: &str) -> Option<String> {
        let last = self
            .blocks
            .iter()
            .rev()
            .find(|b| b.flip_commit.is_some() && b.on != on)
            .and_then(|b| b.flip_commit.clone());
        match (on, last) {
            (_, Some(c)) => Some(c),
            (false, None) => Some(apply_commit.to_string()),
            (true, None) => None,
        }
    }
}

fn sql_err(source: rusqlite::Error) -> LedgerError {
    LedgerError::Sql {
        path: PathBuf::new(),
        source,
    }
}

fn corrupt(id: InterventionId, message: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt {
        what: format!("switchback {id}"),
        message: message.to_string(),
    }
}

impl Ledger {
    /// The switchback of `id`, if it entered (or was refused) one.
    pub fn switchback(&self, id: InterventionId) -> Result<Option<Switchback>, LedgerError> {
        type Head = (String, String, Option<String>, i64, Option<i64>);
        let head: Option<Head> = self.sql(|c| {
            c.prepare_cached("SELECT state, why, plan_json, started_at, ended_at FROM switchbacks WHERE intervention_id = ?1")?.query_row(params![id.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .optional()
        })?;
        let Some((state, why, plan, started, ended)) = head else {
            return Ok(None);
        };
        let plan = match plan {
            Some(p) => Some(serde_json::from_str(&p).map_err(|e| corrupt(id, e))?),
            None => None,
        };
        type Raw = (
            i64,
            String,
            i64,
            i64,
            i64,
            Option<String>,
            Option<i64>,
            i64,
            Option<f64>,
            Option<i64>,
        );
        let rows: Vec<Raw> = self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT block, state, starts_at, measure_from, ends_at, flip_commit, flipped_at, pending, value, samples
                 FROM switchback_blocks WHERE intervention_id = ?1 ORDER BY block",
            )?;
            let rows = stmt.query_map(params![id.0], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?;
            rows.collect()
        })?;
        let blocks = rows
            .into_iter()
            .map(|(k, st, s, m, e, commit, at, pending, value, n)| {
                Ok(BlockRow {
                    index: usize::try_from(k).map_err(|e| corrupt(id, e))?,
                    on: st == "on",
                    starts_at: from_ms(s),
                    measure_from: from_ms(m),
                    ends_at: from_ms(e),
                    flip_commit: commit,
                    flipped_at: at.map(from_ms),
                    pending: pending != 0,
                    value,
                    samples: n.and_then(|n| usize::try_from(n).ok()),
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        Ok(Some(Switchback {
            intervention: id,
            state: SwitchbackState::parse(&state),
            why,
            plan,
            started_at: from_ms(started),
            ended_at: ended.map(from_ms),
            blocks,
        }))
    }

    /// Every switchback still running, oldest first.
    pub fn running_switchbacks(&self) -> Result<Vec<Switchback>, LedgerError> {
        let ids: Vec<i64> = self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT intervention_id FROM switchbacks WHERE state = 'running' ORDER BY started_at, intervention_id",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(s) = self.switchback(InterventionId(id))? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Starts `id`'s switchback: its plan, every block of `schedule`, the intervention's
    /// deadline moved to the schedule's end (so the before/after judgement does not come due),
    /// and `event` — one transaction.
    pub fn start_switchback(
        &mut self,
        id: InterventionId,
        plan: &SwitchbackPlan,
        schedule: &[Block],
        now: DateTime<Utc>,
        event: &EngineEvent,
    ) -> Result<(), LedgerError> {
        let json = serde_json::to_string(plan).map_err(|e| corrupt(id, e))?;
        let end = schedule.last().map_or(now, |b| b.end);
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO switchbacks(intervention_id, state, why, plan_json, started_at) VALUES (?1, 'running', '', ?2, ?3)",
                params![id.0, json, ms(now)],
            )
            .map_err(sql_err)?;
            for b in schedule {
                tx.execute(
                    "INSERT INTO switchback_blocks(intervention_id, block, state, starts_at, measure_from, ends_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        id.0,
                        b.index as i64,
                        if b.on { "on" } else { "off" },
                        ms(b.start),
                        ms(b.measure_from),
                        ms(b.end)
                    ],
                )
                .map_err(sql_err)?;
            }
            tx.execute(
                "UPDATE interventions SET due_at = ?2 WHERE id = ?1",
                params![id.0, ms(end)],
            )
            .map_err(sql_err)?;
            append_in(tx, now, event)?;
            Ok(())
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Records that `id`'s switchback was refused (so it is not tried again every cycle), with
    /// `event` — one transaction.
    pub fn refuse_switchback(
        &mut self,
        id: InterventionId,
        why: &str,
        now: DateTime<Utc>,
        event: &EngineEvent,
    ) -> Result<(), LedgerError> {
        self.tx(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO switchbacks(intervention_id, state, why, started_at, ended_at) VALUES (?1, 'refused', ?2, ?3, ?3)",
                params![id.0, why, ms(now)],
            )
            .map_err(sql_err)?;
            append_in(tx, now, event)?;
            Ok(())
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Marks the flip of `block` in flight, before its commit is made (the end flip's row,
    /// `on` at `now`, is created by this call when it does not exist yet).
    pub fn begin_flip(
        &mut self,
        id: InterventionId,
        block: usize,
        on: bool,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        self.tx(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO switchback_blocks(intervention_id, block, state, starts_at, measure_from, ends_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?4)",
                params![id.0, block as i64, if on { "on" } else { "off" }, ms(now)],
            )
            .map_err(sql_err)?;
            tx.execute(
                "UPDATE switchback_blocks SET pending = 1 WHERE intervention_id = ?1 AND block = ?2",
                params![id.0, block as i64],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Records the flip commit of `block` (pending cleared) and `event` — one transaction.
    pub fn record_flip(
        &mut self,
        id: InterventionId,
        block: usize,
        commit: &str,
        now: DateTime<Utc>,
        event: &EngineEvent,
    ) -> Result<(), LedgerError> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE switchback_blocks SET flip_commit = ?3, flipped_at = ?4, pending = 0
                 WHERE intervention_id = ?1 AND block = ?2",
                params![id.0, block as i64, commit, ms(now)],
            )
            .map_err(sql_err)?;
            append_in(tx, now, event)?;
            Ok(())
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Clears the pending marker of `block`: its flip was not made.
    pub fn clear_flip(&mut self, id: InterventionId, block: usize) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("UPDATE switchback_blocks SET pending = 0 WHERE intervention_id = ?1 AND block = ?2")?.execute(params![id.0, block as i64])
            .map(|_| ())
        })
    }

    /// Flips a crash left in flight: (intervention, block, state after the flip).
    pub fn pending_flips(&self) -> Result<Vec<(InterventionId, usize, bool)>, LedgerError> {
        let rows: Vec<(i64, i64, String)> = self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT intervention_id, block, state FROM switchback_blocks WHERE pending = 1 ORDER BY intervention_id, block",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, b, st)| {
                Some((InterventionId(id), usize::try_from(b).ok()?, st == "on"))
            })
            .collect())
    }

    /// Ends `id`'s switchback as `state` (finished or stopped) with `why`, storing each
    /// block's measured value and sample count, and `event` — one transaction.
    pub fn end_switchback(
        &mut self,
        id: InterventionId,
        state: SwitchbackState,
        why: &str,
        values: &[(usize, Option<f64>, usize)],
        now: DateTime<Utc>,
        event: &EngineEvent,
    ) -> Result<(), LedgerError> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE switchbacks SET state = ?2, why = ?3, ended_at = ?4 WHERE intervention_id = ?1",
                params![id.0, state.as_str(), why, ms(now)],
            )
            .map_err(sql_err)?;
            for (block, value, n) in values {
                tx.execute(
                    "UPDATE switchback_blocks SET value = ?3, samples = ?4 WHERE intervention_id = ?1 AND block = ?2",
                    params![id.0, *block as i64, value, *n as i64],
                )
                .map_err(sql_err)?;
            }
            append_in(tx, now, event)?;
            Ok(())
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Whether `sha` is a flip commit recorded for `id` (or one in flight for it).
    pub fn is_flip_of(&self, id: InterventionId, sha: &str) -> Result<bool, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM switchback_blocks WHERE intervention_id = ?1 AND (flip_commit = ?2 OR pending = 1)")?.query_row(params![id.0, sha],
                |r| r.get::<_, i64>(0))
        })
        .map(|n| n > 0)
    }
}

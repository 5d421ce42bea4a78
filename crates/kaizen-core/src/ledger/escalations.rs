//! The ledger's escalation life cycle (schema v6 over v4's `escalations` table, keyed by what is
//! escalated) and human resolve requests: each close and each human resolution is one
//! transaction together with the events that tell it.

use super::{Ledger, LedgerError, append_in, from_ms, ms};
use crate::escalation::{Closed, Escalation, HumanEnd, LAPSED_AFTER, renotify_after};
use crate::event::{EngineEvent, Stage};
use crate::intervention::{InterventionId, Status};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use std::path::PathBuf;

/// A human's request to end an intervention, waiting for the loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolveRequest {
    /// Its row id.
    pub id: i64,
    /// The intervention.
    pub intervention: InterventionId,
    /// How the human says it ended.
    pub end: HumanEnd,
    /// Who asked.
    pub by: String,
    /// Why.
    pub why: String,
    /// When.
    pub requested_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "key, intervention_id, detail, first_at, last_at, count, closed_at, closed_by, closed_why";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Escalation> {
    let notified_at = from_ms(r.get(4)?);
    let notifications = u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX);
    let closed_at: Option<i64> = r.get(6)?;
    Ok(Escalation {
        key: r.get(0)?,
        intervention: r.get::<_, Option<i64>>(1)?.map(InterventionId),
        detail: r.get(2)?,
        opened_at: from_ms(r.get(3)?),
        notified_at,
        notifications,
        next_reminder_at: renotify_after(notifications).after(notified_at),
        closed: match closed_at {
            None => None,
            Some(at) => Some(Closed {
                at: from_ms(at),
                by: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                why: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
            }),
        },
    })
}

fn sql_err(source: rusqlite::Error) -> LedgerError {
    LedgerError::Sql {
        path: PathBuf::new(),
        source,
    }
}

/// Closes every open escalation of `id` inside `tx`; returns their closing events (appended).
fn close_open(
    tx: &Transaction<'_>,
    id: InterventionId,
    now: DateTime<Utc>,
    stage: Stage,
    by: &str,
    why: &str,
) -> Result<Vec<EngineEvent>, LedgerError> {
    let keys: Vec<String> = {
        let mut stmt = tx
            .prepare(
                "SELECT key FROM escalations WHERE intervention_id = ?1 AND closed_at IS NULL ORDER BY first_at, key",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map(params![id.0], |r| r.get(0))
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql_err)?
    };
    let mut out = Vec::new();
    for key in keys {
        tx.execute(
            "UPDATE escalations SET closed_at = ?2, closed_by = ?3, closed_why = ?4 WHERE key = ?1",
            params![key, ms(now), by, why],
        )
        .map_err(sql_err)?;
        let event = EngineEvent::EscalationClosed {
            intervention: Some(id),
            stage,
            key,
            by: by.to_string(),
            why: why.to_string(),
        };
        append_in(tx, now, &event)?;
        out.push(event);
    }
    Ok(out)
}

impl Ledger {
    /// The open escalation under `key` at `now`, if any (one not raised again for
    /// [`LAPSED_AFTER`] has lapsed: its condition is no longer seen).
    pub fn open_escalation(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Escalation>, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM escalations WHERE key = ?1 AND closed_at IS NULL AND last_at >= ?2"
                ))?.query_row(params![key, ms(LAPSED_AFTER.before(now))],
                row)
            .optional()
        })
    }

    /// Every escalation open at `now` (see [`Ledger::open_escalation`]), oldest first.
    pub fn open_escalations(&self, now: DateTime<Utc>) -> Result<Vec<Escalation>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM escalations WHERE closed_at IS NULL AND last_at >= ?1 \
                 ORDER BY first_at, key"
            ))?;
            let rows = stmt.query_map(params![ms(LAPSED_AFTER.before(now))], row)?;
            rows.collect()
        })
    }

    /// Whether `id` has an open escalation under `key`.
    pub fn has_open_escalation(&self, key: &str) -> Result<bool, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT 1 FROM escalations WHERE key = ?1 AND closed_at IS NULL")?
                .query_row(params![key], |_| Ok(()))
                .optional()
        })
        .map(|r| r.is_some())
    }

    /// Closes `id`'s open escalations (its status unchanged), as one transaction; returns the
    /// closing events.
    pub fn close_escalations(
        &mut self,
        id: InterventionId,
        stage: Stage,
        by: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EngineEvent>, LedgerError> {
        self.tx(|tx| close_open(tx, id, now, stage, by, why))
            .map_err(|e| self.fix_path(e))
    }

    /// Ends `id` as `to` because of something a human did (resolved it; reverted, changed or
    /// deleted its target in git): the status change, `extra` (what the human did), and the
    /// closing of its open escalations, as one transaction, compare-and-swap on the status and
    /// on no git operation in flight. No revert commit is recorded (a human's commit carries no
    /// kaizen trailer). Returns the events, in order.
    #[allow(clippy::too_many_arguments)] // one atomic step: every part is needed together
    pub fn end_by_human(
        &mut self,
        id: InterventionId,
        to: Status,
        stage: Stage,
        reason: &str,
        extra: &EngineEvent,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EngineEvent>, LedgerError> {
        let current = self.get(id)?;
        current
            .status
            .transition(to)
            .map_err(|source| LedgerError::Transition { id, source })?;
        let status = EngineEvent::status_change(id, stage, current.status, to, reason, None, None);
        self.tx(|tx| {
            let changed = tx
                .execute(
                    "UPDATE interventions SET status = ?2, reason = ?3, finalized_at = ?4, pending = NULL \
                     WHERE id = ?1 AND status = ?5 AND pending IS NULL",
                    params![id.0, to.as_str(), reason, ms(now), current.status.as_str()],
                )
                .map_err(sql_err)?;
            if changed != 1 {
                return Err(LedgerError::Corrupt {
                    what: id.to_string(),
                    message: "changed while being resolved (a git operation in flight?); try again"
                        .into(),
                });
            }
            append_in(tx, now, extra)?;
            append_in(tx, now, &status)?;
            let mut out = vec![extra.clone(), status.clone()];
            out.extend(close_open(tx, id, now, stage, by, reason)?);
            Ok(out)
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Queues a human's resolve of `id` for the loop (with its event), as one transaction.
    pub fn request_resolve(
        &mut self,
        id: InterventionId,
        end: HumanEnd,
        by: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, LedgerError> {
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO resolve_requests(intervention_id, ends, requested_by, why, requested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id.0, end.as_str(), by, why, ms(now)],
            )
            .map_err(sql_err)?;
            let req = tx.last_insert_rowid();
            append_in(
                tx,
                now,
                &EngineEvent::ResolveRequested {
                    intervention: id,
                    by: by.to_string(),
                    why: why.to_string(),
                    ends: end.as_str().to_string(),
                },
            )?;
            Ok(req)
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Resolve requests not yet carried out, oldest first.
    pub fn pending_resolves(&self) -> Result<Vec<ResolveRequest>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, intervention_id, ends, requested_by, why, requested_at FROM resolve_requests \
                 WHERE done_at IS NULL ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(ResolveRequest {
                    id: r.get(0)?,
                    intervention: InterventionId(r.get(1)?),
                    end: if r.get::<_, String>(2)? == "kept" {
                        HumanEnd::Kept
                    } else {
                        HumanEnd::Reverted
                    },
                    by: r.get(3)?,
                    why: r.get(4)?,
                    requested_at: from_ms(r.get(5)?),
                })
            })?;
            rows.collect()
        })
    }

    /// Marks resolve request `req` done with what came of it.
    pub fn finish_resolve(
        &mut self,
        req: i64,
        result: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("UPDATE resolve_requests SET done_at = ?2, result = ?3 WHERE id = ?1")?
                .execute(params![req, ms(now), result])
                .map(|_| ())
        })
    }
}

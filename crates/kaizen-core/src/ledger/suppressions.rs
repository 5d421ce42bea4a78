//! The ledger's suppression records (schema v4): one row per held-back change (keyed like a
//! repeat: proposer, rule, area, targets), upserted in one statement each time it is held back,
//! removed when the change is let through.

use super::{Ledger, LedgerError, from_ms, ms};
use crate::suppression::{SuppressedBy, Suppression};
use chrono::{DateTime, Utc};
use rusqlite::params;

impl Ledger {
    /// Records that the change with `key` was held back at `s.last_seen` (a new row, or the
    /// existing one's reason, detail, until and count updated).
    pub fn note_suppressed(&mut self, key: &str, s: &Suppression) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("INSERT INTO suppressions(key, rule, proposer, area, title, signal, by, until, detail, since, last_seen, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, 1)
                 ON CONFLICT(key) DO UPDATE SET by = ?7, until = ?8, detail = ?9, title = ?5,
                   signal = ?6, last_seen = ?10, count = count + 1")?.execute(params![
                    key,
                    s.rule,
                    s.proposer,
                    s.area,
                    s.title,
                    s.signal,
                    s.by.as_str(),
                    s.until.map(ms),
                    s.detail,
                    ms(s.last_seen)
                ])
            .map(|_| ())
        })
    }

    /// Forgets the suppression of `key` (the change was let through and recorded).
    pub fn clear_suppressed(&mut self, key: &str) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("DELETE FROM suppressions WHERE key = ?1")?
                .execute(params![key])
                .map(|_| ())
        })
    }

    /// Suppressions last seen at or after `since`, by name.
    pub fn suppressions_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Suppression>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT rule, proposer, area, title, signal, by, until, detail, since, last_seen, count
                 FROM suppressions WHERE last_seen >= ?1 ORDER BY COALESCE(rule, title), key")?;
            let rows = stmt.query_map(params![ms(since)], |r| {
                Ok(Suppression {
                    rule: r.get(0)?,
                    proposer: r.get(1)?,
                    area: r.get(2)?,
                    title: r.get(3)?,
                    signal: r.get(4)?,
                    by: SuppressedBy::parse(&r.get::<_, String>(5)?)
                        .unwrap_or(SuppressedBy::Dedup),
                    until: r.get::<_, Option<i64>>(6)?.map(from_ms),
                    detail: r.get(7)?,
                    since: from_ms(r.get(8)?),
                    last_seen: from_ms(r.get(9)?),
                    count: u64::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
                })
            })?;
            rows.collect()
        })
    }
}

//! The ledger: one SQLite file (WAL) recording every sample, decision, guard verdict, state change
//! and verdict, with schema migrations.
//!
//! Crash safety: an intervention row is written *before* its commit is made, and a `pending`
//! marker (`apply` / `revert`) is set around every git operation, so reconciliation on start can
//! tell what happened (see `Engine::reconcile`).

use crate::event::{EngineEvent, RecordedEvent, Stage};
use crate::guard::{Decision, Finalized, GuardVerdict, LedgerView};
use crate::intervention::{Candidate, Intervention, InterventionId, Origin, Prediction, Status};
use crate::signal::Sample;
use crate::validate::Verdict;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};

mod escalations;
mod suppressions;
mod switchbacks;
pub use escalations::ResolveRequest;
pub use switchbacks::{BlockRow, Switchback, SwitchbackPlan, SwitchbackState, SwitchbackTrigger};
#[cfg(test)]
mod history_tests;
mod records;
mod tally;
pub use tally::{INVARIANTS_CHECKED, InterventionTotals, SAMPLE_ERROR, SourceFailure, StageEvent};

/// A ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger {path}: {source}")]
    Sql {
        /// The ledger file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The state dir could not be created.
    #[error("ledger {path}: cannot create state dir: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No such intervention.
    #[error("no intervention {0}")]
    NotFound(InterventionId),
    /// A status change the lifecycle forbids.
    #[error("{id}: {source}")]
    Transition {
        /// The intervention.
        id: InterventionId,
        /// The illegal transition.
        source: crate::intervention::IllegalTransition,
    },
    /// A stored row could not be decoded (hand-edited or from a newer kaizen).
    #[error("ledger row {what} is corrupt: {message}")]
    Corrupt {
        /// Which row.
        what: String,
        /// Why.
        message: String,
    },
    /// A read-only open found a ledger not yet migrated to this kaizen's schema.
    #[error(
        "ledger schema version {found} is older than this kaizen's ({known}); a read-only command \
         does not migrate it: run `kaizen cycle` (or start `kaizen run`) once"
    )]
    NeedsMigration {
        /// Version in the file.
        found: i64,
        /// Newest known.
        known: i64,
    },
    /// The ledger was written by a newer kaizen.
    #[error(
        "ledger schema version {found} is newer than this kaizen understands ({known}); upgrade kaizen"
    )]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Newest known.
        known: i64,
    },
}

pub use crate::limits::VIEW_FINALIZED_PER_AREA;

/// Each entry migrates the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // v1
    r#"
    CREATE TABLE interventions (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        area          TEXT NOT NULL,
        kind          TEXT NOT NULL,
        title         TEXT NOT NULL,
        hypothesis    TEXT NOT NULL,
        change_json   TEXT NOT NULL,
        prediction_json TEXT NOT NULL,
        risk          TEXT NOT NULL,
        confidence    REAL NOT NULL,
        rollback      TEXT,
        origin_json   TEXT NOT NULL,
        targets       TEXT NOT NULL,
        status        TEXT NOT NULL,
        outcome       TEXT,
        reason        TEXT NOT NULL DEFAULT '',
        commit_sha    TEXT,
        revert_commit TEXT,
        created_at    INTEGER NOT NULL,
        applied_at    INTEGER,
        due_at        INTEGER,
        finalized_at  INTEGER,
        pending       TEXT,
        extensions    INTEGER NOT NULL DEFAULT 0,
        verdict_json  TEXT,
        sizing_json   TEXT
    );
    CREATE INDEX interventions_status ON interventions(status);
    CREATE INDEX interventions_area ON interventions(area, created_at);
    CREATE TABLE events (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        at              INTEGER NOT NULL,
        intervention_id INTEGER,
        stage           TEXT NOT NULL,
        kind            TEXT NOT NULL,
        detail          TEXT NOT NULL,
        data_json       TEXT
    );
    CREATE INDEX events_intervention ON events(intervention_id, id);
    CREATE INDEX events_at ON events(at);
    CREATE TABLE guard_verdicts (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        intervention_id INTEGER NOT NULL REFERENCES interventions(id),
        at              INTEGER NOT NULL,
        guard           TEXT NOT NULL,
        decision        TEXT NOT NULL,
        reason          TEXT NOT NULL
    );
    CREATE INDEX guard_verdicts_intervention ON guard_verdicts(intervention_id);
    CREATE TABLE samples (
        signal TEXT NOT NULL,
        at     INTEGER NOT NULL,
        value  REAL NOT NULL,
        PRIMARY KEY (signal, at)
    ) WITHOUT ROWID;
    CREATE TABLE lessons (
        id         TEXT PRIMARY KEY,
        version    INTEGER NOT NULL,
        status     TEXT NOT NULL,
        area       TEXT NOT NULL,
        file       TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        body_json  TEXT NOT NULL
    );
    "#,
    // v2: the branch each intervention was committed on (reverts go there, whatever is checked
    // out later).
    r#"
    ALTER TABLE interventions ADD COLUMN branch TEXT;
    "#,
    // v3: a repeat of a parked change (frozen area, backlog, duplicate) is counted on the row
    // it repeats instead of becoming a new intervention every cycle.
    r#"
    ALTER TABLE interventions ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE interventions ADD COLUMN last_repeat_at INTEGER;
    "#,
    // v4: counters control flow depends on are typed columns, not event-log reads.
    // `interim_looks`: the highest interim look taken (validation's evenly spaced looks).
    // `escalations`: one row per escalated condition, keyed by what is escalated (stable, never
    // the text — e.g. `revert_refused K-000003`, `repo stale_git_lock .git/index.lock`,
    // `invariant row_without_commit K-000002`): when it was first and last raised and how often.
    // The engine raises an open key again only on its back-off (v6, `crate::escalation`).
    r#"
    ALTER TABLE interventions ADD COLUMN interim_looks INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE escalations (
        key             TEXT PRIMARY KEY,
        intervention_id INTEGER,
        first_at        INTEGER NOT NULL,
        last_at         INTEGER NOT NULL,
        count           INTEGER NOT NULL DEFAULT 1
    );
    "#,
    // v5: the audit chain (see `crate::audit`): each event stores the previous event's hash
    // and its own. Rows already there are chained in order by the migration itself.
    r#"
    ALTER TABLE events ADD COLUMN prev_hash TEXT;
    ALTER TABLE events ADD COLUMN hash TEXT;
    "#,
    // v6: escalations get a life cycle — what was said (`detail`) and how they were closed
    // (`closed_at`/`closed_by`/`closed_why`; a closed key raised again reopens) — human resolve
    // requests the loop carries out (`ledger/escalations.rs`), and the firing rules currently
    // held back (`ledger/suppressions.rs`).
    r#"
    ALTER TABLE escalations ADD COLUMN detail TEXT NOT NULL DEFAULT '';
    ALTER TABLE escalations ADD COLUMN closed_at INTEGER;
    ALTER TABLE escalations ADD COLUMN closed_by TEXT;
    ALTER TABLE escalations ADD COLUMN closed_why TEXT;
    CREATE INDEX escalations_intervention ON escalations(intervention_id, closed_at);
    CREATE TABLE resolve_requests (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        intervention_id INTEGER NOT NULL REFERENCES interventions(id),
        ends            TEXT NOT NULL,
        requested_by    TEXT NOT NULL,
        why             TEXT NOT NULL,
        requested_at    INTEGER NOT NULL,
        done_at         INTEGER,
        result          TEXT
    );
    CREATE TABLE suppressions (
        key       TEXT PRIMARY KEY,
        rule      TEXT,
        proposer  TEXT NOT NULL,
        area      TEXT NOT NULL,
        title     TEXT NOT NULL,
        signal    TEXT NOT NULL,
        by        TEXT NOT NULL,
        until     INTEGER,
        detail    TEXT NOT NULL,
        since     INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        count     INTEGER NOT NULL
    );
    CREATE INDEX suppressions_seen ON suppressions(last_seen);
    "#,
    // v7: the review branch a change in review mode waits on (issue 13).
    r#"
    ALTER TABLE interventions ADD COLUMN review_branch TEXT;
    "#,
    // v8: hourly aggregates of raw samples folded by `retention:` (see `retention`), and a
    // small key-value table for what the engine remembers between processes (when the last
    // invariant check ran, which history the id continuity check has seen).
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE samples_hourly (
        signal TEXT NOT NULL,
        hour   INTEGER NOT NULL,
        n      INTEGER NOT NULL,
        mean   REAL NOT NULL,
        min    REAL NOT NULL,
        max    REAL NOT NULL,
        PRIMARY KEY (signal, hour)
    ) WITHOUT ROWID;
    "#,
    // v9: switchback confirmation (`ledger/switchbacks.rs`): the plan of each switchback and
    // every block with its state, window, flip commit and the pending marker set before it.
    r#"
    CREATE TABLE switchbacks (
        intervention_id INTEGER PRIMARY KEY REFERENCES interventions(id),
        state           TEXT NOT NULL,
        why             TEXT NOT NULL,
        plan_json       TEXT,
        started_at      INTEGER NOT NULL,
        ended_at        INTEGER
    );
    CREATE TABLE switchback_blocks (
        intervention_id INTEGER NOT NULL REFERENCES interventions(id),
        block           INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('on', 'off')),
        starts_at       INTEGER NOT NULL,
        measure_from    INTEGER NOT NULL,
        ends_at         INTEGER NOT NULL,
        flip_commit     TEXT,
        flipped_at      INTEGER,
        pending         INTEGER NOT NULL DEFAULT 0,
        value           REAL,
        samples         INTEGER,
        PRIMARY KEY (intervention_id, block)
    ) WITHOUT ROWID;
    CREATE INDEX switchback_blocks_pending ON switchback_blocks(pending) WHERE pending = 1;
    "#,
    // v10: indices so the reads of every cycle and `kaizen status` cost what is live or recent,
    // not the ledger's length (issue 12, history at scale): the guards' view reads interventions
    // created or finalized since an instant, and each area's newest finalized facts (the freeze
    // rule: `interventions_finalized` holds the columns it reads, under the same condition and
    // key expression as `Ledger::view`'s query); the status and the review read recent repeats;
    // `/health` and `kaizen status` read each stage's newest event and events of one kind.
    // Proposers' track records are counted from `interventions_proposer` without reading a row
    // or parsing its JSON (`ledger/records.rs`): it holds each finalized intervention's proposer
    // key — the origin's display, `rules:<id>` or the proposer's name, a virtual column computed
    // from `origin_json` (stored only in the index) — times, outcome and stated confidence.
    r#"
    CREATE INDEX interventions_created ON interventions(created_at);
    CREATE INDEX interventions_finalized_at ON interventions(finalized_at);
    CREATE INDEX interventions_finalized ON interventions(
        area, COALESCE(finalized_at, applied_at, created_at), id, status, outcome)
        WHERE status IN ('validated', 'reverted');
    CREATE INDEX interventions_repeats ON interventions(last_repeat_at) WHERE repeats > 0;
    CREATE INDEX events_stage ON events(stage, id);
    CREATE INDEX events_kind ON events(kind, at);
    ALTER TABLE interventions ADD COLUMN proposer_key TEXT GENERATED ALWAYS AS (
        json_extract(origin_json, '$.proposer')
            || COALESCE(':' || json_extract(origin_json, '$.rule'), '')) VIRTUAL;
    CREATE INDEX interventions_proposer ON interventions(
        proposer_key, created_at, finalized_at, id, status, outcome, confidence)
        WHERE status IN ('validated', 'reverted');
    "#,
    // v11: `/metrics`' guard refusals per guard, counted after every step of the runtime, read
    // the whole `guard_verdicts` table (every verdict's reason text) to count the few refusals
    // (issue 12, bench 4): a partial index holds the refusals' guard names only.
    r#"
    CREATE INDEX guard_verdicts_refusals ON guard_verdicts(guard) WHERE decision != 'pass';
    "#,
    // v12: every cycle's reconciliation asks which proposed interventions lack an event of one
    // kind (`proposed_without_event`); it read every event of that kind in the ledger's history,
    // row by row (issue 12, bench 4). This index answers it with one seek per proposed
    // intervention, without reading an event row.
    r#"
    CREATE INDEX events_kind_intervention ON events(kind, intervention_id)
        WHERE intervention_id IS NOT NULL;
    "#,
    // v13: `/metrics`' intervention totals, counted after every cycle of the runtime
    // (`intervention_totals`), read every intervention row: `applied_at IS NOT NULL` has no
    // index, and the row's columns after its JSON lie in overflow pages, so the count grew
    // with the ledger's whole history (issue 12, bench 4). This index answers the three
    // counts from its entries alone.
    r#"
    CREATE INDEX interventions_tally ON interventions(status, outcome, applied_at);
    "#,
];

/// Which interventions the guards' view reads whole (after `SELECT … FROM interventions`):
/// created or finalized since `?1`, or still applied. A union of three index searches: written
/// with `OR`, SQLite scans the whole table in id order rather than sort the few rows it needs.
const VIEW_RECENT: &str = "WHERE id IN (SELECT id FROM interventions WHERE created_at >= ?1
                   UNION ALL SELECT id FROM interventions WHERE status = 'applied'
                   UNION ALL SELECT id FROM interventions WHERE finalized_at >= ?1)
             ORDER BY id DESC";

// The freeze facts' two statements name the `interventions_finalized` index's own condition
// and key expression (a partial index serves only queries that imply its WHERE). `INDEXED BY`
// makes a schema change that would lose the index an error, not a silent scan of every row
// (without statistics SQLite prefers the `status` index, which finds every finalized row).

/// The first area after `?1` with a finalized intervention (one index seek).
const NEXT_FINALIZED_AREA: &str =
    "SELECT area FROM interventions INDEXED BY interventions_finalized
     WHERE status IN ('validated', 'reverted') AND area > ?1 ORDER BY area LIMIT 1";

/// Area `?1`'s newest `?2` finalized interventions the freeze rule counts.
const NEWEST_FINALIZED: &str =
    "SELECT id, status, outcome, COALESCE(finalized_at, applied_at, created_at)
     FROM interventions INDEXED BY interventions_finalized
     WHERE status IN ('validated', 'reverted') AND area = ?1
       AND NOT (status = 'reverted' AND outcome IS 'inconclusive')
     ORDER BY COALESCE(finalized_at, applied_at, created_at) DESC, id DESC LIMIT ?2";

/// Parked changes repeated since `?1` (from the `interventions_repeats` index).
const REPEATED_SINCE: &str = "SELECT id, area, repeats, last_repeat_at FROM interventions
     WHERE repeats > 0 AND last_repeat_at >= ?1 ORDER BY last_repeat_at DESC, id";

/// The index in [`MIGRATIONS`] of the step that adds the audit chain (rows recorded before it
/// are chained when it runs).
const AUDIT_MIGRATION: usize = 4;

/// A parked change proposed again and counted on its row ([`Ledger::note_repeat`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repeated {
    /// The row the repeats are counted on.
    pub id: InterventionId,
    /// Its area.
    pub area: String,
    /// How many repeats.
    pub repeats: u64,
    /// When the last was seen.
    pub last_seen: DateTime<Utc>,
}

/// The raw samples of one signal and hour, folded by retention ([`Ledger::fold_samples_before`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourlyAggregate {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// How many samples.
    pub n: u64,
    /// Their mean.
    pub mean: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// A git operation in flight for an intervention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// A commit applying it.
    Apply,
    /// A commit reverting it.
    Revert,
}

impl Pending {
    fn as_str(self) -> &'static str {
        match self {
            Pending::Apply => "apply",
            Pending::Revert => "revert",
        }
    }
}

/// Columns written in the same transaction as a status change.
#[derive(Debug, Default, Clone, Copy)]
struct Also<'a> {
    commit: Option<&'a str>,
    revert_commit: Option<&'a str>,
    /// `applied_at` and `due_at` (`None`: the validation clock has not started, e.g. the change
    /// is not on the remote yet).
    applied_due: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// A failpoint between the status and the other columns (kill tests).
    failpoint: Option<&'static str>,
    /// The review branch the change waits on.
    review_branch: Option<&'a str>,
}

/// The most samples [`Ledger::record_samples`] writes with one statement.
const SAMPLES_PER_STATEMENT: usize = 64;

/// `INSERT OR REPLACE` of `rows` samples (1 ..= [`SAMPLES_PER_STATEMENT`]) in one statement.
fn insert_samples_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (1..=SAMPLES_PER_STATEMENT)
            .map(|n| {
                let values = vec!["(?, ?, ?)"; n].join(", ");
                format!("INSERT OR REPLACE INTO samples(signal, at, value) VALUES {values}")
            })
            .collect()
    });
    &all[rows.clamp(1, SAMPLES_PER_STATEMENT) - 1]
}

/// Prepared statements kept per connection (rusqlite's default is 16). The ledger's queries
/// go through the cache — about a hundred distinct statements, a few of them per shape of an
/// intervention query — so that none is parsed and planned again on each use: parsing the
/// uncached ones (the health and counter reads after every step among them) was 5% of a
/// 90-day `kaizen sim` (issue 12, bench 4). A prepared statement holds a few KB.
const STATEMENT_CACHE: usize = 256;

/// Makes `conn`'s cached statements stay prepared: room for every statement in the cache, and
/// SQLite's query planner stability guarantee (QPSG) on.
///
/// Without QPSG, SQLite marks a statement whose plan looked at a bound value (a `LIMIT ?`, a
/// range on a bound time) to be re-prepared whenever that parameter is bound anew — and
/// rusqlite clears the bindings of every statement it returns to the cache, so each reuse of
/// such a statement parsed and planned it again: 12% of a 90-day `kaizen sim` (issue 12,
/// bench 4) went to `sqlite3Reprepare` of `events_after`, `last_samples` and the intervention
/// lists. The ledger never gathers statistics (no `ANALYZE`), so no bound value could change a
/// plan anyway: the plans are the same, only prepared once.
fn cache_statements(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Keeps the ledger's `-wal` and `-shm` files between connections instead of deleting them
/// when the last one closes (`SQLITE_FCNTL_PERSIST_WAL`), the WAL emptied to zero bytes at that
/// close (`journal_size_limit`, which also bounds it at [`WAL_SIZE_LIMIT`] after checkpoints).
///
/// Why: a cron `kaizen` process is one connection, so every run created both files and
/// deleted them again — two new inodes (and their removal) per process, about 5% of a `kaizen
/// cycle` + `kaizen revert` pair's CPU on the benchmark machine (issue 12, bench 1;
/// BENCHMARKS.md finding 13).
/// Nothing durable changes: the last connection still checkpoints everything into
/// `ledger.sqlite` before it empties the WAL, so a copy of that file alone still holds every
/// decision, and a later opener rebuilds the `-shm` index from the (empty) WAL as before. A
/// reader of the file without write access finds the two files present, which it needs.
/// An in-memory ledger has neither file: nothing to do.
fn keep_wal_files(conn: &Connection) -> rusqlite::Result<()> {
    if conn.path().is_none_or(str::is_empty) {
        return Ok(());
    }
    let mut persist: std::ffi::c_int = 1;
    if let Err(e) = conn.file_control(
        rusqlite::DEFAULT_NAME,
        rusqlite::FileControl::PersistWal(&mut persist),
    ) {
        // A VFS without the setting: the files come and go as before, nothing else changes.
        tracing::debug!(
            stage = "ledger",
            "the WAL files are not kept between connections: {e}"
        );
        return Ok(());
    }
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
}

/// The WAL's size bound after a checkpoint (bytes); at the last connection's close it is
/// emptied whatever this is ([`keep_wal_files`]).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The SQLite ledger.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Each stage's newest event as last read, brought up to date from the events appended
    /// since (see [`Ledger::last_event_per_stage`]).
    stage_memo: std::sync::Mutex<Option<tally::StageMemo>>,
    /// Each source's sampling gaps as last read (see `Ledger::sample_gaps_by_source`).
    gap_memo: std::sync::Mutex<Option<tally::GapMemo>>,
    /// Meta values to write with the next transaction (see [`Ledger::set_meta_later`]).
    meta_later: Vec<(String, String)>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A time in ms as the ledger reads it back.
pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// A sample's time (ms) and value as the ledger stores them and reads them back: the time in
/// milliseconds, and an integral REAL comes back as an integer, which loses a zero's sign
/// (`-0.0 + 0.0` is `+0.0`, anything else is itself). What the engine's kept samples fold in,
/// so they equal a fresh read.
pub(crate) fn stored_point(s: &Sample) -> (i64, f64) {
    (ms(s.at), s.value + 0.0)
}

/// Writes `event` inside `tx`: the typed event as JSON (`data_json`) and its views (stage, kind,
/// intervention, the human line) in their columns for plain SQL and `kaizen events`.
fn append_in(
    tx: &rusqlite::Transaction<'_>,
    at: DateTime<Utc>,
    event: &EngineEvent,
) -> Result<i64, LedgerError> {
    let data = serde_json::to_string(event).map_err(|e| LedgerError::Corrupt {
        what: format!("new {} event", event.kind()),
        message: e.to_string(),
    })?;
    let sql = |source| LedgerError::Sql {
        path: PathBuf::new(),
        source,
    };
    let mut row = crate::audit::ChainRow {
        seq: 0,
        at_ms: ms(at),
        intervention: event.intervention().map(|i| i.0),
        stage: event.stage_name().to_string(),
        kind: event.kind().to_string(),
        detail: event.to_string(),
        data: Some(data),
        prev_hash: None,
        hash: None,
    };
    tx.prepare_cached(
        "INSERT INTO events(at, intervention_id, stage, kind, detail, data_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(params![row.at_ms, row.intervention, row.stage, row.kind, row.detail, row.data])
    })
    .map_err(sql)?;
    row.seq = tx.last_insert_rowid();
    chain_row(tx, &row)?;
    Ok(row.seq)
}

/// What [`Ledger::record_proposal`] records with a new proposal's row.
#[derive(Debug, Clone, Copy)]
pub struct Proposal<'a> {
    /// Why it was proposed (the trigger, or the proposer), as its `proposed` event says.
    pub reason: &'a str,
    /// The window-sizing assessment made at proposal time, if one was.
    pub sizing: Option<&'a serde_json::Value>,
    /// The guard verdicts its decision rests on.
    pub verdicts: &'a [GuardVerdict],
}

/// A candidate's columns as an intervention row stores them, encoded before a transaction
/// begins (an encoding failure then leaves nothing half-written).
struct ProposedRow {
    change: String,
    prediction: String,
    origin: String,
    targets: String,
}

impl ProposedRow {
    fn of(candidate: &Candidate) -> Result<ProposedRow, LedgerError> {
        let enc = |v: Result<String, serde_json::Error>| {
            v.map_err(|e| LedgerError::Corrupt {
                what: "new intervention".into(),
                message: e.to_string(),
            })
        };
        // An oversize payload can never be applied: keep only its bounded form, so a candidate
        // refused every cycle does not add its payload to the ledger every cycle.
        let stored: Vec<crate::edit::Edit> = candidate
            .change
            .iter()
            .map(crate::edit::Edit::stored_form)
            .collect();
        Ok(ProposedRow {
            change: enc(serde_json::to_string(&stored))?,
            prediction: enc(serde_json::to_string(&candidate.prediction))?,
            origin: enc(serde_json::to_string(&candidate.origin))?,
            targets: candidate.targets().join("\n"),
        })
    }

    /// Inserts the row (`proposed`) and its `proposed` event inside `tx`; returns the new id.
    fn insert(
        &self,
        tx: &rusqlite::Transaction<'_>,
        candidate: &Candidate,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<InterventionId, LedgerError> {
        tx.prepare_cached(
            "INSERT INTO interventions(area, kind, title, hypothesis, change_json, prediction_json, risk, confidence,
               rollback, origin_json, targets, status, reason, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'proposed', ?12, ?13)",
        )
        .and_then(|mut st| {
            st.execute(params![
                candidate.area,
                candidate.kind,
                candidate.title,
                candidate.hypothesis,
                self.change,
                self.prediction,
                candidate.risk.to_string(),
                candidate.confidence,
                candidate.rollback,
                self.origin,
                self.targets,
                reason,
                ms(now)
            ])
        })
        .map_err(|source| LedgerError::Sql {
            path: PathBuf::new(),
            source,
        })?;
        let id = InterventionId(tx.last_insert_rowid());
        append_in(tx, now, &EngineEvent::proposed(id, candidate, reason))?;
        Ok(id)
    }
}

/// Stores `verdicts` for `id` and appends their event inside `tx`; returns the event.
fn verdicts_in(
    tx: &rusqlite::Transaction<'_>,
    id: InterventionId,
    now: DateTime<Utc>,
    verdicts: &[GuardVerdict],
) -> Result<EngineEvent, LedgerError> {
    let sql = |source| LedgerError::Sql {
        path: PathBuf::new(),
        source,
    };
    let mut st = tx
        .prepare_cached(
            "INSERT INTO guard_verdicts(intervention_id, at, guard, decision, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql)?;
    for v in verdicts {
        st.execute(params![
            id.0,
            ms(now),
            v.guard,
            v.decision.to_string(),
            v.reason
        ])
        .map_err(sql)?;
    }
    let event = EngineEvent::GuardVerdicts {
        intervention: id,
        verdicts: verdicts.to_vec(),
    };
    append_in(tx, now, &event)?;
    Ok(event)
}

/// Stores `row`'s place in the audit chain: the hash of the row before it and its own.
fn chain_row(
    tx: &rusqlite::Transaction<'_>,
    row: &crate::audit::ChainRow,
) -> Result<(), LedgerError> {
    let sql = |source| LedgerError::Sql {
        path: PathBuf::new(),
        source,
    };
    let prev: String = tx
        .prepare_cached(
            "SELECT COALESCE(hash, '') FROM events WHERE id < ?1 ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut st| st.query_row(params![row.seq], |r| r.get(0)))
        .optional()
        .map_err(sql)?
        .unwrap_or_default();
    let hash = crate::audit::hash(&prev, row);
    tx.prepare_cached("UPDATE events SET prev_hash = ?2, hash = ?3 WHERE id = ?1")
        .and_then(|mut st| st.execute(params![row.seq, prev, hash]))
        .map_err(sql)?;
    Ok(())
}

/// Every event row with its chain columns, in log order.
fn chain_rows(c: &Connection) -> rusqlite::Result<Vec<crate::audit::ChainRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, at, intervention_id, stage, kind, detail, data_json, prev_hash, hash FROM events ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok(crate::audit::ChainRow {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            intervention: r.get(2)?,
            stage: r.get(3)?,
            kind: r.get(4)?,
            detail: r.get(5)?,
            data: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// The typed event of a stored row; a row from before typed events (or of a kind this kaizen
/// does not know) is kept as [`EngineEvent::Legacy`].
fn decode_event(stage: &str, kind: &str, detail: &str, data: Option<&str>) -> EngineEvent {
    let parsed = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok());
    if let Some(v) = &parsed
        && v.get("kind").and_then(|k| k.as_str()) == Some(kind)
        && let Ok(e) = serde_json::from_value::<EngineEvent>(v.clone())
    {
        return e;
    }
    EngineEvent::Legacy {
        stage: stage.to_string(),
        legacy_kind: kind.to_string(),
        detail: detail.to_string(),
        data: parsed,
    }
}

/// Whether `e` is SQLite saying another connection holds a lock (worth retrying).
fn is_busy(e: &LedgerError) -> bool {
    matches!(
        e,
        LedgerError::Sql {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } if matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        )
    )
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, migrating its schema.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| LedgerError::Sql {
            path: path.to_path_buf(),
            source,
        })?;
        Self::init(conn, path.to_path_buf())
    }

    /// Opens the existing ledger at `path` for reading only (SQLite read-only and `query_only`):
    /// what read-only commands use, so they never contend with `kaizen run` for the state lock
    /// and can never write. Nothing is created or migrated; a ledger older than this kaizen
    /// (not yet migrated by a writer) is refused with what to do.
    pub fn open_read_only(path: &Path) -> Result<Ledger, LedgerError> {
        use rusqlite::OpenFlags;
        let sql = |source| LedgerError::Sql {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        conn.pragma_update(None, "query_only", "ON").map_err(sql)?;
        cache_statements(&conn).map_err(sql)?;
        let ledger = Ledger {
            conn,
            path: path.to_path_buf(),
            stage_memo: Default::default(),
            gap_memo: Default::default(),
            meta_later: Vec::new(),
        };
        let version = ledger.schema_version()?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(LedgerError::TooNew {
                found: version,
                known,
            });
        }
        if version < known {
            return Err(LedgerError::NeedsMigration {
                found: version,
                known,
            });
        }
        Ok(ledger)
    }

    /// An in-memory ledger (tests, `kaizen propose` dry runs).
    pub fn in_memory() -> Result<Ledger, LedgerError> {
        let conn = Connection::open_in_memory().map_err(|source| LedgerError::Sql {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Self::init(conn, PathBuf::from(":memory:"))
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Ledger, LedgerError> {
        // Every cycle runs the same few dozen queries (the view's window query, intervention
        // lists, events, samples); parsing them anew each time was a fifth of a cycle's cost at a
        // 1-minute cadence (envelope grid, issue 8). Room for all of them in the statement cache.
        cache_statements(&conn).map_err(|source| LedgerError::Sql {
            path: path.clone(),
            source,
        })?;
        let mut ledger = Ledger {
            conn,
            path,
            stage_memo: Default::default(),
            gap_memo: Default::default(),
            meta_later: Vec::new(),
        };
        // Another process may be creating or migrating the file at this moment. SQLite waits
        // (busy timeout) for most locks, but switching to WAL and the first schema write can
        // still answer "database is locked" at once; those are retried for up to 10 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match ledger.sql(|c| {
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "FULL")?;
                keep_wal_files(c)?;
                c.pragma_update(None, "foreign_keys", "ON")?;
                Ok(())
            }) {
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
                other => other?,
            }
            match ledger.migrate() {
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.map(|()| ledger),
            }
        }
    }

    fn migrate(&mut self) -> Result<(), LedgerError> {
        let version: i64 =
            self.sql(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(LedgerError::TooNew {
                found: version,
                known,
            });
        }
        if version == known {
            return Ok(());
        }
        let path = self.path.clone();
        // BEGIN IMMEDIATE takes the write lock before reading the version again: two processes
        // opening a new ledger at once (a cron `observe` and a `status`) migrate it once, the
        // second seeing the first's work instead of failing on "table … already exists".
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| LedgerError::Sql {
                path: path.clone(),
                source,
            })?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| LedgerError::Sql {
                path: path.clone(),
                source,
            })?;
        if version > known {
            return Err(LedgerError::TooNew {
                found: version,
                known,
            });
        }
        for (i, m) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            tx.execute_batch(m)
                .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
                .map_err(|source| LedgerError::Sql {
                    path: path.clone(),
                    source,
                })?;
            if i == AUDIT_MIGRATION {
                // The events recorded before the chain existed join it, in order.
                let rows = chain_rows(&tx).map_err(|source| LedgerError::Sql {
                    path: path.clone(),
                    source,
                })?;
                for row in &rows {
                    chain_row(&tx, row).map_err(|e| match e {
                        LedgerError::Sql { source, .. } => LedgerError::Sql {
                            path: path.clone(),
                            source,
                        },
                        other => other,
                    })?;
                }
            }
        }
        tx.commit()
            .map_err(|source| LedgerError::Sql { path, source })
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64, LedgerError> {
        self.sql(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LedgerError> {
        f(&self.conn).map_err(|source| LedgerError::Sql {
            path: self.path.clone(),
            source,
        })
    }

    fn tx<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let path = self.path.clone();
        // IMMEDIATE: the write lock is taken (waiting the busy timeout) before anything is read,
        // so what a step reads — the audit chain's previous hash — cannot change under it.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| LedgerError::Sql {
                path: path.clone(),
                source,
            })?;
        for (key, value) in &self.meta_later {
            tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![key, value]))
                .map_err(|source| LedgerError::Sql {
                    path: path.clone(),
                    source,
                })?;
        }
        let out = f(&tx)?;
        tx.commit()
            .map_err(|source| LedgerError::Sql { path, source })?;
        self.meta_later.clear();
        Ok(out)
    }

    // ----- samples -------------------------------------------------------------------------

    /// Stores samples (a re-sample at the same instant replaces the value; non-finite values
    /// are gaps, not stored).
    ///
    /// A batch of up to [`SAMPLES_PER_STATEMENT`] samples — an observe tick of up to 64
    /// signals — is one multi-row statement, committed on its own (atomic as a statement is);
    /// a larger one is cut into such statements inside one transaction. Row by row, each
    /// statement execution paid for a cursor, a halt and, inside a transaction, a statement
    /// journal copying every page it touched a second time (`OR REPLACE` may abort midway):
    /// that was about a third of an observe tick's ledger write (issue 12, bench 4). A
    /// duplicate `(signal, at)` within one batch is won by the later sample, as row by row.
    pub fn record_samples(&mut self, samples: &[Sample]) -> Result<(), LedgerError> {
        let finite: Vec<&Sample> = samples.iter().filter(|s| s.value.is_finite()).collect();
        let path = self.path.clone();
        let sql = |source| LedgerError::Sql {
            path: path.clone(),
            source,
        };
        let insert = |conn: &Connection, chunk: &[&Sample]| -> Result<(), LedgerError> {
            let mut stmt = conn
                .prepare_cached(insert_samples_sql(chunk.len()))
                .map_err(sql)?;
            let times: Vec<i64> = chunk.iter().map(|s| ms(s.at)).collect();
            let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(3 * chunk.len());
            for (s, at) in chunk.iter().zip(&times) {
                params.push(&s.signal);
                params.push(at);
                params.push(&s.value);
            }
            stmt.execute(params.as_slice()).map_err(sql)?;
            Ok(())
        };
        match finite.len() {
            0 => Ok(()),
            // Alone a statement is its own transaction; with meta values waiting to be
            // written, the batch goes in a transaction with them.
            n if n <= SAMPLES_PER_STATEMENT && self.meta_later.is_empty() => {
                insert(&self.conn, &finite)
            }
            _ => self.tx(|tx| {
                for chunk in finite.chunks(SAMPLES_PER_STATEMENT) {
                    insert(tx, chunk)?;
                }
                Ok(())
            }),
        }
    }

    /// Samples of `signal` with `from <= at <= to`, oldest first.
    pub fn samples(
        &self,
        signal: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Sample>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, value FROM samples WHERE signal = ?1 AND at >= ?2 AND at <= ?3 ORDER BY at",
            )?;
            let rows = stmt.query_map(params![signal, ms(from), ms(to)], |r| {
                Ok(Sample::new(signal, from_ms(r.get(0)?), r.get(1)?))
            })?;
            rows.collect()
        })
    }

    /// [`Ledger::samples`] as (time, value) points: without a copy of the signal's name per
    /// sample, for a reader that knows which signal it asked for (the simulator's figures of
    /// every signal's whole run, the weekly review's alerting signals).
    pub fn points(
        &self,
        signal: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, value FROM samples WHERE signal = ?1 AND at >= ?2 AND at <= ?3 ORDER BY at",
            )?;
            let rows = stmt.query_map(params![signal, ms(from), ms(to)], |r| {
                Ok((from_ms(r.get(0)?), r.get(1)?))
            })?;
            rows.collect()
        })
    }

    /// The newest `n` samples of `signal` with `from <= at <= to`, oldest first (what a
    /// cadence estimate needs, without reading the whole window).
    pub fn last_samples(
        &self,
        signal: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<Sample>, LedgerError> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let mut out: Vec<Sample> = self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, value FROM samples WHERE signal = ?1 AND at >= ?2 AND at <= ?3 \
                 ORDER BY at DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![signal, ms(from), ms(to), limit], |r| {
                Ok(Sample::new(signal, from_ms(r.get(0)?), r.get(1)?))
            })?;
            rows.collect()
        })?;
        out.reverse();
        Ok(out)
    }

    /// The newest `n` samples of `signal` as (time, value), oldest first: without a copy of the
    /// signal's name per sample, for a reader that knows which signal it asked for (the status
    /// after every step of the runtime reads every signal's newest).
    pub fn newest_points(
        &self,
        signal: &str,
        n: usize,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, LedgerError> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let mut out: Vec<(DateTime<Utc>, f64)> = self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, value FROM samples WHERE signal = ?1 ORDER BY at DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![signal, limit], |r| {
                Ok((from_ms(r.get(0)?), r.get(1)?))
            })?;
            rows.collect()
        })?;
        out.reverse();
        Ok(out)
    }

    /// SQLite's `data_version` of this connection: it changes when another connection commits
    /// to the ledger file (never for this connection's own commits), so a reader that keeps
    /// what it read knows when to read again.
    pub fn data_version(&self) -> Result<i64, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("PRAGMA data_version")?
                .query_row([], |r| r.get(0))
        })
    }

    /// The newest sample of `signal`, if any.
    pub fn latest_sample(&self, signal: &str) -> Result<Option<Sample>, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(
                "SELECT at, value FROM samples WHERE signal = ?1 ORDER BY at DESC LIMIT 1",
            )?
            .query_row(params![signal], |r| {
                Ok(Sample::new(signal, from_ms(r.get(0)?), r.get(1)?))
            })
            .optional()
        })
    }

    // ----- meta ----------------------------------------------------------------------------

    /// A value the engine remembers between processes (`None`: never set).
    pub fn meta(&self, key: &str) -> Result<Option<String>, LedgerError> {
        if let Some((_, v)) = self.meta_later.iter().find(|(k, _)| k == key) {
            return Ok(Some(v.clone()));
        }
        self.sql(|c| {
            c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()
        })
    }

    /// Sets a [`Ledger::meta`] value with the next transaction this ledger commits, not in one
    /// of its own: for what only saves later work (a cache of what was already looked at),
    /// which is not worth a sync of the ledger by itself. [`Ledger::meta`] reads it at once; if
    /// no transaction follows before the ledger is closed, it is not kept (the work it would
    /// have saved is done again).
    pub fn set_meta_later(&mut self, key: &str, value: &str) {
        self.meta_later.retain(|(k, _)| k != key);
        self.meta_later.push((key.to_string(), value.to_string()));
    }

    /// Sets a [`Ledger::meta`] value.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), LedgerError> {
        self.meta_later.retain(|(k, _)| k != key);
        self.sql(|c| {
            c.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])
                .map(|_| ())
        })
    }

    // ----- retention -----------------------------------------------------------------------

    /// The distinct signals of `table` (`samples` or `samples_hourly`), found by stepping
    /// through the primary key (one index seek per signal, not a scan of every row).
    fn signals_in(&self, table: &str) -> Result<Vec<String>, LedgerError> {
        let sql = format!("SELECT signal FROM {table} WHERE signal > ?1 ORDER BY signal LIMIT 1");
        self.sql(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut out: Vec<String> = Vec::new();
            loop {
                let after = out.last().map(String::as_str).unwrap_or("");
                let next: Option<String> =
                    stmt.query_row(params![after], |r| r.get(0)).optional()?;
                match next {
                    Some(s) => out.push(s),
                    None => return Ok(out),
                }
            }
        })
    }

    /// Folds raw samples older than `before` into hourly aggregates and deletes them, at most
    /// about `max_rows` of them; returns how many were folded. Each signal's span of up to a
    /// day is one transaction (aggregate and delete together), and an aggregate that already
    /// exists is merged with the new one (count-weighted mean, min, max), never replaced.
    pub fn fold_samples_before(
        &mut self,
        before: DateTime<Utc>,
        max_rows: u64,
    ) -> Result<u64, LedgerError> {
        const DAY_MS: i64 = 86_400_000;
        let cut = ms(before);
        let mut folded: u64 = 0;
        for signal in self.signals_in("samples")? {
            loop {
                if folded >= max_rows {
                    return Ok(folded);
                }
                let oldest: Option<i64> = self.sql(|c| {
                    c.prepare_cached("SELECT MIN(at) FROM samples WHERE signal = ?1")?
                        .query_row(params![signal], |r| r.get(0))
                })?;
                let Some(oldest) = oldest.filter(|&o| o < cut) else {
                    break;
                };
                let from = oldest.saturating_sub(oldest.rem_euclid(3_600_000));
                let to = from.saturating_add(DAY_MS).min(cut);
                let path = self.path.clone();
                let n = self.tx(|tx| {
                    let e = |source| LedgerError::Sql {
                        path: path.clone(),
                        source,
                    };
                    tx.execute(
                        "INSERT INTO samples_hourly(signal, hour, n, mean, min, max)
                         SELECT signal, at - (at % 3600000 + 3600000) % 3600000 AS h, COUNT(*),
                                AVG(value), MIN(value), MAX(value)
                         FROM samples WHERE signal = ?1 AND at >= ?2 AND at < ?3 GROUP BY h
                         ON CONFLICT(signal, hour) DO UPDATE SET
                           mean = (mean * n + excluded.mean * excluded.n) / (n + excluded.n),
                           n = n + excluded.n,
                           min = MIN(min, excluded.min),
                           max = MAX(max, excluded.max)",
                        params![signal, from, to],
                    )
                    .map_err(e)?;
                    crate::failpoint::hit("ledger.fold.after_aggregate");
                    tx.execute(
                        "DELETE FROM samples WHERE signal = ?1 AND at >= ?2 AND at < ?3",
                        params![signal, from, to],
                    )
                    .map_err(e)
                })?;
                folded = folded.saturating_add(n as u64);
            }
        }
        Ok(folded)
    }

    /// Deletes hourly aggregates of hours starting before `before`; returns how many.
    pub fn prune_hourly_before(&mut self, before: DateTime<Utc>) -> Result<u64, LedgerError> {
        let mut removed: u64 = 0;
        for signal in self.signals_in("samples_hourly")? {
            let n = self.sql(|c| {
                c.prepare_cached("DELETE FROM samples_hourly WHERE signal = ?1 AND hour < ?2")?
                    .execute(params![signal, ms(before)])
            })?;
            removed = removed.saturating_add(n as u64);
        }
        Ok(removed)
    }

    /// Hourly aggregates of `signal` for hours starting in `[from, to]`, oldest first.
    pub fn hourly(
        &self,
        signal: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HourlyAggregate>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT hour, n, mean, min, max FROM samples_hourly
                 WHERE signal = ?1 AND hour >= ?2 AND hour <= ?3 ORDER BY hour",
            )?;
            let rows = stmt.query_map(params![signal, ms(from), ms(to)], |r| {
                Ok(HourlyAggregate {
                    hour: from_ms(r.get(0)?),
                    n: r.get::<_, i64>(1)?.max(0) as u64,
                    mean: r.get(2)?,
                    min: r.get(3)?,
                    max: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    // ----- events --------------------------------------------------------------------------

    /// Appends `event` (at `at`) to the event log and returns its position. The only way an
    /// event is written: status changes append theirs through the same path, inside their
    /// transaction.
    pub fn append(&mut self, at: DateTime<Utc>, event: &EngineEvent) -> Result<i64, LedgerError> {
        self.tx(|tx| append_in(tx, at, event))
            .map_err(|e| self.fix_path(e))
    }

    /// Appends an escalation (or an open invariant violation) and records that `key` was raised
    /// at `at` in the `escalations` table, as one transaction.
    pub fn append_raised(
        &mut self,
        at: DateTime<Utc>,
        key: &str,
        event: &EngineEvent,
    ) -> Result<i64, LedgerError> {
        self.tx(|tx| {
            let seq = append_in(tx, at, event)?;
            tx.execute(
                // A closed key raised again is a new escalation: reopened, counted from 1.
                "INSERT INTO escalations(key, intervention_id, first_at, last_at, count, detail) VALUES (?1, ?2, ?3, ?3, 1, ?4)
                 ON CONFLICT(key) DO UPDATE SET last_at = excluded.last_at, detail = excluded.detail,
                   count = CASE WHEN closed_at IS NULL THEN count + 1 ELSE 1 END,
                   first_at = CASE WHEN closed_at IS NULL THEN first_at ELSE excluded.first_at END,
                   intervention_id = excluded.intervention_id,
                   closed_at = NULL, closed_by = NULL, closed_why = NULL",
                params![key, event.intervention().map(|i| i.0), ms(at), event.to_string()],
            )
            .map_err(|source| LedgerError::Sql {
                path: PathBuf::new(),
                source,
            })?;
            Ok(seq)
        })
        .map_err(|e| self.fix_path(e))
    }

    /// When `key` was last raised ([`Ledger::append_raised`]), if ever.
    pub fn last_raised(&self, key: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT last_at FROM escalations WHERE key = ?1")?
                .query_row(params![key], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|t| t.map(from_ms))
    }

    /// Records interim look `look` of `id` (the counter and its event, one transaction).
    pub fn take_interim_look(
        &mut self,
        id: InterventionId,
        look: u32,
        at: DateTime<Utc>,
        event: &EngineEvent,
    ) -> Result<(), LedgerError> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE interventions SET interim_looks = MAX(interim_looks, ?2) WHERE id = ?1",
                params![id.0, look],
            )
            .map_err(|source| LedgerError::Sql {
                path: PathBuf::new(),
                source,
            })?;
            append_in(tx, at, event).map(|_| ())
        })
        .map_err(|e| self.fix_path(e))
    }

    /// The highest interim look taken for `id` (0: none).
    pub fn interim_looks(&self, id: InterventionId) -> Result<u32, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT interim_looks FROM interventions WHERE id = ?1")?
                .query_row(params![id.0], |r| r.get(0))
                .optional()
        })
        .map(Option::unwrap_or_default)
    }

    /// The audit chain's head: the newest event's hash (`None`: no event yet).
    pub fn audit_head(&self) -> Result<Option<String>, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT hash FROM events ORDER BY id DESC LIMIT 1")?
                .query_row([], |r| r.get::<_, Option<String>>(0))
                .optional()
        })
        .map(Option::flatten)
    }

    /// Every event row with its chain columns, in log order (what `kaizen audit verify` checks).
    pub fn audit_rows(&self) -> Result<Vec<crate::audit::ChainRow>, LedgerError> {
        self.sql(chain_rows)
    }

    /// Events of one intervention, in order.
    pub fn events_for(&self, id: InterventionId) -> Result<Vec<RecordedEvent>, LedgerError> {
        self.query_events("WHERE intervention_id = ?1 ORDER BY id", params![id.0])
    }

    /// Whether an event of `kind` names intervention `id` (one search of the events index,
    /// nothing decoded).
    pub fn has_event_of_kind(&self, id: InterventionId, kind: &str) -> Result<bool, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM events WHERE intervention_id = ?1 AND kind = ?2)",
            )?
            .query_row(params![id.0, kind], |r| r.get(0))
        })
    }

    /// Events with `from <= at <= to`, in order.
    pub fn events_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        self.query_events(
            "WHERE at >= ?1 AND at <= ?2 ORDER BY id",
            params![ms(from), ms(to)],
        )
    }

    /// Events recorded after `seq` (their position in the log), oldest first, at most `limit`
    /// — how a runtime streams what was recorded since it last looked.
    pub fn events_after(&self, seq: i64, limit: usize) -> Result<Vec<RecordedEvent>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_events("WHERE id > ?1 ORDER BY id LIMIT ?2", params![seq, limit])
    }

    /// The position of the newest event in the log (0 when there is none).
    pub fn last_event_seq(&self) -> Result<i64, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
                .query_row([], |r| r.get(0))
        })
    }

    fn query_events(
        &self,
        tail: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let sql = format!(
            "SELECT id, at, intervention_id, stage, kind, detail, data_json FROM events {tail}"
        );
        self.sql(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(p, |r| {
                let stage: String = r.get(3)?;
                let kind: String = r.get(4)?;
                let detail: String = r.get(5)?;
                let data: Option<String> = r.get(6)?;
                let event = decode_event(&stage, &kind, &detail, data.as_deref());
                Ok(RecordedEvent {
                    seq: r.get(0)?,
                    at: from_ms(r.get(1)?),
                    intervention: r.get::<_, Option<i64>>(2)?.map(InterventionId),
                    stage,
                    kind,
                    detail,
                    event,
                })
            })?;
            rows.collect()
        })
    }

    // ----- interventions -------------------------------------------------------------------

    /// Records a new candidate as `proposed` and returns its id.
    pub fn insert_proposed(
        &mut self,
        candidate: &Candidate,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<InterventionId, LedgerError> {
        let row = ProposedRow::of(candidate)?;
        self.tx(|tx| row.insert(tx, candidate, now, reason))
            .map_err(|e| self.fix_path(e))
    }

    /// Records a new candidate as `proposed` together with what was decided about it at
    /// proposal time, as one transaction: the row, its window-sizing assessment
    /// (`proposal.sizing`), its guard verdicts, and their events — `proposed` first, then those
    /// `events` gives for the new id (a cadence mismatch, the sizing note), the guard verdicts'
    /// last. Returns the id and every event written, in log order.
    ///
    /// Why one: a crash leaves the proposal whole or not at all (never a row without the
    /// verdicts its decision rests on), and a cron cycle syncs the ledger once for it instead of
    /// once per step — four syncs fewer per proposal (issue 12, bench 1).
    pub fn record_proposal(
        &mut self,
        candidate: &Candidate,
        now: DateTime<Utc>,
        proposal: &Proposal<'_>,
        events: impl FnOnce(InterventionId) -> Vec<EngineEvent>,
    ) -> Result<(InterventionId, Vec<EngineEvent>), LedgerError> {
        let row = ProposedRow::of(candidate)?;
        let sizing = proposal.sizing.map(serde_json::Value::to_string);
        self.tx(|tx| {
            let id = row.insert(tx, candidate, now, proposal.reason)?;
            let mut written = vec![EngineEvent::proposed(id, candidate, proposal.reason)];
            if let Some(sizing) = &sizing {
                tx.prepare_cached("UPDATE interventions SET sizing_json = ?2 WHERE id = ?1")
                    .and_then(|mut st| st.execute(params![id.0, sizing]))
                    .map_err(|source| LedgerError::Sql {
                        path: PathBuf::new(),
                        source,
                    })?;
            }
            for event in events(id) {
                append_in(tx, now, &event)?;
                written.push(event);
            }
            written.push(verdicts_in(tx, id, now, proposal.verdicts)?);
            Ok((id, written))
        })
        .map_err(|e| self.fix_path(e))
    }

    fn fix_path(&self, e: LedgerError) -> LedgerError {
        match e {
            LedgerError::Sql { path, source } if path.as_os_str().is_empty() => LedgerError::Sql {
                path: self.path.clone(),
                source,
            },
            other => other,
        }
    }

    /// Stores guard verdicts for `id` and appends their event, as one transaction; returns the
    /// event.
    pub fn record_guard_verdicts(
        &mut self,
        id: InterventionId,
        now: DateTime<Utc>,
        verdicts: &[GuardVerdict],
    ) -> Result<EngineEvent, LedgerError> {
        self.tx(|tx| verdicts_in(tx, id, now, verdicts))
            .map_err(|e| self.fix_path(e))
    }

    /// Guard verdicts stored for `id`, in order.
    pub fn guard_verdicts(
        &self,
        id: InterventionId,
    ) -> Result<Vec<(DateTime<Utc>, GuardVerdict)>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached("SELECT at, guard, decision, reason FROM guard_verdicts WHERE intervention_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map(params![id.0], |r| {
                let decision: String = r.get(2)?;
                Ok((
                    from_ms(r.get(0)?),
                    GuardVerdict {
                        guard: r.get(1)?,
                        decision: match decision.as_str() {
                            "pass" => Decision::Pass,
                            "backlog" => Decision::Backlog,
                            _ => Decision::Block,
                        },
                        reason: r.get(3)?,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    /// Moves `id` to `to` (checked against the lifecycle) with a reason, recording the event
    /// (returned). A status change ends any git operation in flight (`pending` is cleared with it).
    pub fn transition(
        &mut self,
        id: InterventionId,
        to: Status,
        now: DateTime<Utc>,
        stage: Stage,
        reason: &str,
    ) -> Result<EngineEvent, LedgerError> {
        self.change_status(id, to, now, stage, reason, Also::default())
    }

    /// One status change and the columns that go with it, as one transaction: a kill anywhere
    /// leaves either all of it or none of it.
    fn change_status(
        &mut self,
        id: InterventionId,
        to: Status,
        now: DateTime<Utc>,
        stage: Stage,
        reason: &str,
        also: Also<'_>,
    ) -> Result<EngineEvent, LedgerError> {
        let current = self.get(id)?;
        current
            .status
            .transition(to)
            .map_err(|source| LedgerError::Transition { id, source })?;
        let event = EngineEvent::status_change(
            id,
            stage,
            current.status,
            to,
            reason,
            also.commit.or(also.revert_commit),
            also.applied_due.and_then(|(_, due)| due),
        );
        let final_at = matches!(
            to,
            Status::Validated
                | Status::Reverted
                | Status::Blocked
                | Status::Kept
                | Status::Superseded
                | Status::Rejected
        )
        .then(|| ms(now));
        self.tx(|tx| {
            let sql = |source| LedgerError::Sql {
                path: PathBuf::new(),
                source,
            };
            tx.execute(
                "UPDATE interventions SET status = ?2, reason = ?3, finalized_at = COALESCE(?4, finalized_at),
                   pending = NULL WHERE id = ?1",
                params![id.0, to.as_str(), reason, final_at],
            )
            .map_err(sql)?;
            if let Some(point) = also.failpoint {
                // Where the status used to be committed on its own (issue 9, defect 1).
                crate::failpoint::hit(point);
            }
            if let Some(sha) = also.commit {
                tx.execute(
                    "UPDATE interventions SET commit_sha = ?2 WHERE id = ?1",
                    params![id.0, sha],
                )
                .map_err(sql)?;
            }
            if let Some(b) = also.review_branch {
                tx.execute(
                    "UPDATE interventions SET review_branch = ?2 WHERE id = ?1",
                    params![id.0, b],
                )
                .map_err(sql)?;
            }
            if let Some(sha) = also.revert_commit {
                tx.execute(
                    "UPDATE interventions SET revert_commit = ?2 WHERE id = ?1",
                    params![id.0, sha],
                )
                .map_err(sql)?;
            }
            if let Some((applied, due)) = also.applied_due {
                tx.execute(
                    "UPDATE interventions SET applied_at = ?2, due_at = ?3 WHERE id = ?1",
                    params![id.0, ms(applied), due.map(ms)],
                )
                .map_err(sql)?;
            }
            append_in(tx, now, &event)?;
            Ok(())
        })
        .map_err(|e| self.fix_path(e))?;
        Ok(event)
    }

    /// Marks a git operation in flight (`Some`) or done (`None`).
    pub fn set_pending(
        &mut self,
        id: InterventionId,
        pending: Option<Pending>,
    ) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("UPDATE interventions SET pending = ?2 WHERE id = ?1")?
                .execute(params![id.0, pending.map(Pending::as_str)])
                .map(|_| ())
        })
    }

    /// Interventions with a git operation in flight (a crash interrupted them).
    pub fn pending(&self) -> Result<Vec<(Intervention, Pending)>, LedgerError> {
        let ids: Vec<(i64, String)> = self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, pending FROM interventions WHERE pending IS NOT NULL ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        ids.into_iter()
            .map(|(id, p)| {
                let op = if p == "revert" {
                    Pending::Revert
                } else {
                    Pending::Apply
                };
                Ok((self.get(InterventionId(id))?, op))
            })
            .collect()
    }

    /// Records a successful apply — status `applied`, the commit, when validation is due, no
    /// git operation pending — as one transaction.
    pub fn mark_applied(
        &mut self,
        id: InterventionId,
        commit: &str,
        now: DateTime<Utc>,
        due_at: DateTime<Utc>,
        stage: Stage,
        reason: &str,
    ) -> Result<EngineEvent, LedgerError> {
        self.change_status(
            id,
            Status::Applied,
            now,
            stage,
            reason,
            Also {
                commit: Some(commit),
                applied_due: Some((now, Some(due_at))),
                failpoint: Some("ledger.mark_applied.after_status"),
                ..Also::default()
            },
        )
    }

    /// Stores a verdict (outcome + figures) for `id`, without changing its status.
    pub fn record_verdict(
        &mut self,
        id: InterventionId,
        verdict: &Verdict,
    ) -> Result<(), LedgerError> {
        let json = serde_json::to_string(verdict).map_err(|e| LedgerError::Corrupt {
            what: id.to_string(),
            message: e.to_string(),
        })?;
        self.sql(|c| {
            c.prepare_cached(
                "UPDATE interventions SET outcome = ?2, verdict_json = ?3 WHERE id = ?1",
            )?
            .execute(params![id.0, verdict.outcome.as_str(), json])
            .map(|_| ())
        })
    }

    /// The stored verdict of `id`, if any.
    pub fn verdict(&self, id: InterventionId) -> Result<Option<Verdict>, LedgerError> {
        let raw: Option<String> = self
            .sql(|c| {
                c.prepare_cached("SELECT verdict_json FROM interventions WHERE id = ?1")?
                    .query_row(params![id.0], |r| r.get(0))
                    .optional()
            })?
            .flatten();
        match raw {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| LedgerError::Corrupt {
                    what: format!("{id}.verdict_json"),
                    message: e.to_string(),
                }),
        }
    }

    /// The window-sizing assessment of `id`, if any.
    pub fn sizing(&self, id: InterventionId) -> Result<Option<serde_json::Value>, LedgerError> {
        let raw: Option<String> = self
            .sql(|c| {
                c.prepare_cached("SELECT sizing_json FROM interventions WHERE id = ?1")?
                    .query_row(params![id.0], |r| r.get(0))
                    .optional()
            })?
            .flatten();
        Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Records a revert commit and moves `id` to `reverted` (nothing pending), as one transaction.
    pub fn mark_reverted(
        &mut self,
        id: InterventionId,
        revert_commit: &str,
        now: DateTime<Utc>,
        stage: Stage,
        reason: &str,
    ) -> Result<EngineEvent, LedgerError> {
        self.change_status(
            id,
            Status::Reverted,
            now,
            stage,
            reason,
            Also {
                revert_commit: Some(revert_commit),
                failpoint: Some("ledger.mark_reverted.after_status"),
                ..Also::default()
            },
        )
    }

    /// Records a successful apply whose change is not yet where it takes effect (not pushed to
    /// the remote): status `applied` with its commit, but no validation deadline until
    /// [`Ledger::start_validation`] — as one transaction.
    pub fn mark_applied_unpublished(
        &mut self,
        id: InterventionId,
        commit: &str,
        now: DateTime<Utc>,
        stage: Stage,
        reason: &str,
    ) -> Result<EngineEvent, LedgerError> {
        self.change_status(
            id,
            Status::Applied,
            now,
            stage,
            reason,
            Also {
                commit: Some(commit),
                applied_due: Some((now, None)),
                failpoint: Some("ledger.mark_applied.after_status"),
                ..Also::default()
            },
        )
    }

    /// Starts the validation clock of an applied intervention whose change took effect at `at`
    /// (its commit reached the remote): `applied_at = at`, due at `due_at`, with an event, as one
    /// transaction. Returns false (changing nothing) when the clock was already running.
    pub fn start_validation(
        &mut self,
        id: InterventionId,
        at: DateTime<Utc>,
        due_at: DateTime<Utc>,
        event: &EngineEvent,
    ) -> Result<bool, LedgerError> {
        self.tx(|tx| {
            let sql = |source| LedgerError::Sql {
                path: PathBuf::new(),
                source,
            };
            let n = tx
                .execute(
                    "UPDATE interventions SET applied_at = ?2, due_at = ?3
                     WHERE id = ?1 AND status = 'applied' AND due_at IS NULL",
                    params![id.0, ms(at), ms(due_at)],
                )
                .map_err(sql)?;
            if n == 0 {
                return Ok(false);
            }
            append_in(tx, at, event)?;
            Ok(true)
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Records an opened review branch: status `awaiting_review`, its commit (on the branch,
    /// not on the target) and branch, as one transaction.
    pub fn mark_awaiting_review(
        &mut self,
        id: InterventionId,
        commit: &str,
        branch: &str,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<EngineEvent, LedgerError> {
        self.change_status(
            id,
            Status::AwaitingReview,
            now,
            Stage::Publish,
            reason,
            Also {
                commit: Some(commit),
                review_branch: Some(branch),
                ..Also::default()
            },
        )
    }

    /// The review branch `id` was proposed on, if any.
    pub fn review_branch(&self, id: InterventionId) -> Result<Option<String>, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT review_branch FROM interventions WHERE id = ?1")?
                .query_row(params![id.0], |r| r.get(0))
                .optional()
                .map(Option::flatten)
        })
    }

    /// Applied interventions whose validation clock has not started (their change is not yet
    /// where it takes effect), oldest first.
    pub fn awaiting_publish(&self) -> Result<Vec<Intervention>, LedgerError> {
        self.query_interventions(
            "WHERE status = 'applied' AND due_at IS NULL AND pending IS NULL ORDER BY id",
            [],
        )
    }

    /// Replaces commit `old` by `new` wherever `id`'s row records it (its apply or its revert
    /// commit), after a replay recreated it on a moved remote. Returns whether a row changed.
    pub fn replace_commit(
        &mut self,
        id: InterventionId,
        old: &str,
        new: &str,
    ) -> Result<bool, LedgerError> {
        self.sql(|c| {
            let a = c.prepare_cached("UPDATE interventions SET commit_sha = ?3 WHERE id = ?1 AND commit_sha = ?2")?.execute(params![id.0, old, new])?;
            let b = c.prepare_cached("UPDATE interventions SET revert_commit = ?3 WHERE id = ?1 AND revert_commit = ?2")?.execute(params![id.0, old, new])?;
            Ok(a + b > 0)
        })
    }

    /// The newest `limit` events of `stage`, newest first.
    pub fn recent_events(
        &self,
        stage: &str,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_events(
            "WHERE stage = ?1 ORDER BY id DESC LIMIT ?2",
            params![stage, limit],
        )
    }

    /// Moves the validation deadline (an inconclusive window extended).
    pub fn extend(
        &mut self,
        id: InterventionId,
        due_at: DateTime<Utc>,
    ) -> Result<u32, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(
                "UPDATE interventions SET due_at = ?2, extensions = extensions + 1 WHERE id = ?1 \
                 RETURNING extensions",
            )?
            .query_row(params![id.0, ms(due_at)], |r| r.get(0))
        })
    }

    /// Counts one more repeat of `id` (the same change proposed again while it is parked: its
    /// area frozen, it in the backlog, or a duplicate of it live), seen at `at`. Returns the count.
    pub fn note_repeat(
        &mut self,
        id: InterventionId,
        at: DateTime<Utc>,
    ) -> Result<u64, LedgerError> {
        self.sql(|c| {
            c.prepare_cached(
                "UPDATE interventions SET repeats = repeats + 1, last_repeat_at = ?2 WHERE id = ?1 \
                 RETURNING repeats",
            )?
            .query_row(params![id.0, ms(at)], |r| r.get::<_, i64>(0))
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// Repeats counted on `id` and when the last was seen.
    pub fn repeats(&self, id: InterventionId) -> Result<(u64, Option<DateTime<Utc>>), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT repeats, last_repeat_at FROM interventions WHERE id = ?1")?
                .query_row(params![id.0], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })
        })
        .map(|(n, at)| (u64::try_from(n).unwrap_or(0), at.map(from_ms)))
    }

    /// Interventions with repeats last seen at or after `since`, most recently seen first.
    pub fn repeated_since(&self, since: DateTime<Utc>) -> Result<Vec<Repeated>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(REPEATED_SINCE)?;
            let rows = stmt.query_map(params![ms(since)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map(|rows| {
            rows.into_iter()
                .map(|(id, area, n, at)| Repeated {
                    id: InterventionId(id),
                    area,
                    repeats: u64::try_from(n).unwrap_or(0),
                    last_seen: from_ms(at),
                })
                .collect()
        })
    }

    /// How often `id`'s window was extended.
    pub fn extensions(&self, id: InterventionId) -> Result<u32, LedgerError> {
        self.sql(|c| {
            c.prepare_cached("SELECT extensions FROM interventions WHERE id = ?1")?
                .query_row(params![id.0], |r| r.get(0))
        })
        .map_err(|e| match e {
            LedgerError::Sql {
                source: rusqlite::Error::QueryReturnedNoRows,
                ..
            } => LedgerError::NotFound(id),
            other => other,
        })
    }

    /// One intervention.
    pub fn get(&self, id: InterventionId) -> Result<Intervention, LedgerError> {
        let mut found = self.query_interventions("WHERE id = ?1", params![id.0])?;
        found.pop().ok_or(LedgerError::NotFound(id))
    }

    /// All interventions, oldest first.
    pub fn all(&self) -> Result<Vec<Intervention>, LedgerError> {
        self.query_interventions("ORDER BY id", [])
    }

    /// Interventions with `status`, oldest first.
    pub fn with_status(&self, status: Status) -> Result<Vec<Intervention>, LedgerError> {
        self.query_interventions("WHERE status = ?1 ORDER BY id", params![status.as_str()])
    }

    /// The `proposed` interventions no event of `kind` names, as (id, area), oldest first: one
    /// query for what the reconciliation looks at every cycle (rows left `proposed` that do not
    /// wait for a human's approval), however many rows wait. Each proposed row costs one seek in
    /// `events_kind_intervention` (no event row is read), not a read of every event of `kind`
    /// in the ledger's history nor of the row's whole event history.
    pub fn proposed_without_event(
        &self,
        kind: &str,
    ) -> Result<Vec<(InterventionId, String)>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT i.id, i.area FROM interventions i WHERE i.status = 'proposed' AND NOT EXISTS \
                 (SELECT 1 FROM events e INDEXED BY events_kind_intervention \
                  WHERE e.kind = ?1 AND e.intervention_id = i.id AND e.intervention_id IS NOT NULL) \
                 ORDER BY i.id",
            )?;
            let rows = stmt.query_map(params![kind], |r| Ok((InterventionId(r.get(0)?), r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Applied interventions whose validation is due at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<Intervention>, LedgerError> {
        self.query_interventions(
            "WHERE status = 'applied' AND pending IS NULL AND due_at <= ?1 ORDER BY due_at, id",
            params![ms(now)],
        )
    }

    /// Finalized (validated/reverted) interventions, oldest finalization first.
    pub fn finalized(&self) -> Result<Vec<Intervention>, LedgerError> {
        self.query_interventions(
            "WHERE status IN ('validated', 'reverted') ORDER BY finalized_at, id",
            [],
        )
    }

    /// The history the guards see at `now` (see [`LedgerView`] for what it holds): whole rows of
    /// the interventions created or finalized within `lookback` or still `applied`, and the facts
    /// of each area's newest `per_area` finalized interventions the freeze rule counts, whatever
    /// their age (callers pass the policy's `freeze_after_rollbacks`).
    ///
    /// Its cost follows what is live or recent, not the ledger's length: the whole rows come
    /// from the `created_at`, `finalized_at` and `status` indices, the facts from one seek per
    /// area in the `interventions_finalized` index (it holds them, the rows are not read).
    pub fn view(
        &self,
        now: DateTime<Utc>,
        lookback: chrono::Duration,
        per_area: u32,
    ) -> Result<LedgerView, LedgerError> {
        let since = ms(now
            .checked_sub_signed(lookback)
            .unwrap_or(DateTime::<Utc>::MIN_UTC));
        let interventions = self.query_interventions(VIEW_RECENT, params![since])?;
        let finalized = self.finalized_facts(per_area)?;
        Ok(LedgerView {
            interventions,
            finalized,
        })
    }

    /// For every area, the facts of its newest `per_area` finalized interventions the freeze
    /// rule counts (reverts judged `inconclusive` left out), newest first: the areas are found
    /// by stepping through the `interventions_finalized` index (one seek each), then each area's
    /// newest rows are read from it.
    pub fn finalized_facts(&self, per_area: u32) -> Result<Vec<Finalized>, LedgerError> {
        type Raw = (String, i64, String, Option<String>, i64);
        let raws: Vec<Raw> = self.sql(|c| {
            let mut next = c.prepare_cached(NEXT_FINALIZED_AREA)?;
            let mut newest = c.prepare_cached(NEWEST_FINALIZED)?;
            let mut out = Vec::new();
            let mut area = String::new();
            while let Some(a) = next
                .query_row(params![area], |r| r.get::<_, String>(0))
                .optional()?
            {
                area = a;
                let rows = newest.query_map(params![area, per_area], |r| {
                    Ok((area.clone(), r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
            Ok(out)
        })?;
        raws.into_iter()
            .map(|(area, id, status, outcome, at)| {
                let id = InterventionId(id);
                let corrupt = |what: &str, message: String| LedgerError::Corrupt {
                    what: format!("{id}.{what}"),
                    message,
                };
                Ok(Finalized {
                    id,
                    area,
                    status: status.parse().map_err(|e: String| corrupt("status", e))?,
                    outcome: outcome
                        .map(|o| o.parse())
                        .transpose()
                        .map_err(|e: String| corrupt("outcome", e))?,
                    at: from_ms(at),
                })
            })
            .collect()
    }

    fn query_interventions(
        &self,
        tail: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<Intervention>, LedgerError> {
        let sql = format!(
            "SELECT id, area, kind, title, hypothesis, change_json, prediction_json, risk, confidence, rollback,
                    origin_json, status, outcome, reason, commit_sha, revert_commit, created_at, applied_at,
                    due_at, finalized_at
             FROM interventions {tail}"
        );
        type Raw = (
            i64,
            [String; 7],
            f64,
            Option<String>,
            [String; 2],
            Option<String>,
            String,
            [Option<String>; 2],
            i64,
            [Option<i64>; 3],
        );
        let raws: Vec<Raw> = self.sql(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(p, |r| {
                Ok((
                    r.get(0)?,
                    [
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ],
                    r.get(8)?,
                    r.get(9)?,
                    [r.get(10)?, r.get(11)?],
                    r.get(12)?,
                    r.get(13)?,
                    [r.get(14)?, r.get(15)?],
                    r.get(16)?,
                    [r.get(17)?, r.get(18)?, r.get(19)?],
                ))
            })?;
            rows.collect()
        })?;
        raws.into_iter()
            .map(
                |(
                    id,
                    s,
                    confidence,
                    rollback,
                    [origin, status],
                    outcome,
                    reason,
                    [commit, revert],
                    created,
                    [applied, due, fin],
                )| {
                    let id = InterventionId(id);
                    let corrupt = |what: &str, message: String| LedgerError::Corrupt {
                        what: format!("{id}.{what}"),
                        message,
                    };
                    let [area, kind, title, hypothesis, change, prediction, risk] = s;
                    let change = serde_json::from_str(&change)
                        .map_err(|e| corrupt("change_json", e.to_string()))?;
                    let prediction: Prediction = serde_json::from_str(&prediction)
                        .map_err(|e| corrupt("prediction_json", e.to_string()))?;
                    let origin: Origin = serde_json::from_str(&origin)
                        .map_err(|e| corrupt("origin_json", e.to_string()))?;
                    Ok(Intervention {
                        id,
                        candidate: Candidate {
                            area,
                            kind,
                            title,
                            hypothesis,
                            change,
                            prediction,
                            risk: risk.parse().map_err(|e: String| corrupt("risk", e))?,
                            confidence,
                            rollback,
                            origin,
                        },
                        status: status.parse().map_err(|e: String| corrupt("status", e))?,
                        outcome: outcome
                            .map(|o| o.parse())
                            .transpose()
                            .map_err(|e: String| corrupt("outcome", e))?,
                        reason,
                        commit,
                        revert_commit: revert,
                        created_at: from_ms(created),
                        applied_at: applied.map(from_ms),
                        due_at: due.map(from_ms),
                        finalized_at: fin.map(from_ms),
                    })
                },
            )
            .collect()
    }

    // ----- lessons index -------------------------------------------------------------------

    /// Indexes a lesson (so the ledger knows which lessons existed when).
    pub fn index_lesson(
        &mut self,
        row: &LessonRow,
        now: DateTime<Utc>,
        body: &serde_json::Value,
    ) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("INSERT INTO lessons(id, version, status, area, file, updated_at, body_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET version = excluded.version, status = excluded.status, area = excluded.area,
                   file = excluded.file, updated_at = excluded.updated_at, body_json = excluded.body_json")?.execute(params![row.id, row.version, row.status, row.area, row.file, ms(now), body.to_string()])
            .map(|_| ())
        })
    }

    /// Indexed lessons, by id.
    pub fn indexed_lessons(&self) -> Result<Vec<LessonRow>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, version, status, area, file FROM lessons ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(LessonRow {
                    id: r.get(0)?,
                    version: r.get(1)?,
                    status: r.get(2)?,
                    area: r.get(3)?,
                    file: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// Consistency with the repository: branches, id continuity, clean ends.
impl Ledger {
    /// Marks an apply in flight on `branch` (recorded before the commit, so reconciliation
    /// looks for the commit where it was made).
    pub fn begin_apply(
        &mut self,
        id: InterventionId,
        branch: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("UPDATE interventions SET pending = 'apply', branch = COALESCE(?2, branch) WHERE id = ?1")?.execute(params![id.0, branch])
            .map(|_| ())
        })
    }

    /// The branch `id` was committed on, if recorded.
    pub fn branch(&self, id: InterventionId) -> Result<Option<String>, LedgerError> {
        Ok(self
            .sql(|c| {
                c.prepare_cached("SELECT branch FROM interventions WHERE id = ?1")?
                    .query_row(params![id.0], |r| r.get::<_, Option<String>>(0))
                    .optional()
            })?
            .flatten())
    }

    /// Records the branch `id` was committed on.
    pub fn set_branch(&mut self, id: InterventionId, branch: &str) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.prepare_cached("UPDATE interventions SET branch = ?2 WHERE id = ?1")?
                .execute(params![id.0, branch])
                .map(|_| ())
        })
    }

    /// Makes the next intervention id greater than `highest` (the highest id the repository's
    /// history names), so a lost or fresh state dir never reuses an id. Returns whether the
    /// sequence moved.
    pub fn reserve_ids_through(&mut self, highest: InterventionId) -> Result<bool, LedgerError> {
        self.tx(|tx| {
            let sql = |source| LedgerError::Sql {
                path: PathBuf::new(),
                source,
            };
            let current: i64 = tx
                .query_row(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'interventions'), 0),
                                COALESCE((SELECT MAX(id) FROM interventions), 0))",
                    [],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            if current >= highest.0 {
                return Ok(false);
            }
            let updated = tx
                .execute(
                    "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'interventions'",
                    params![highest.0],
                )
                .map_err(sql)?;
            if updated == 0 {
                tx.execute(
                    "INSERT INTO sqlite_sequence(name, seq) VALUES ('interventions', ?1)",
                    params![highest.0],
                )
                .map_err(sql)?;
            }
            Ok(true)
        })
        .map_err(|e| self.fix_path(e))
    }

    /// Ends `id` as `reverted` without a revert commit: its change is no longer in effect (a
    /// later change undid it), so reverting it was a no-op. One transaction.
    pub fn mark_reverted_without_commit(
        &mut self,
        id: InterventionId,
        now: DateTime<Utc>,
        stage: Stage,
        reason: &str,
    ) -> Result<EngineEvent, LedgerError> {
        let current = self.get(id)?;
        current
            .status
            .transition(Status::Reverted)
            .map_err(|source| LedgerError::Transition { id, source })?;
        let event = EngineEvent::status_change(
            id,
            stage,
            current.status,
            Status::Reverted,
            reason,
            None,
            None,
        );
        self.tx(|tx| {
            let sql = |source| LedgerError::Sql {
                path: PathBuf::new(),
                source,
            };
            tx.execute(
                "UPDATE interventions SET status = 'reverted', reason = ?2, finalized_at = ?3,
                   pending = NULL, revert_commit = NULL WHERE id = ?1",
                params![id.0, reason, ms(now)],
            )
            .map_err(sql)?;
            append_in(tx, now, &event)?;
            Ok(())
        })
        .map_err(|e| self.fix_path(e))?;
        Ok(event)
    }
}

/// A lesson as indexed in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LessonRow {
    /// Lesson id.
    pub id: String,
    /// Its version.
    pub version: u32,
    /// `active` / `retired`.
    pub status: String,
    /// Its area.
    pub area: String,
    /// The file it lives in (repo-relative).
    pub file: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::Edit;
    use crate::intervention::{ExpectedChange, Risk};
    use crate::span::Span;

    /// An in-memory ledger holding `n` proposed interventions, all created at its `now`.
    fn with_proposed(n: usize) -> (Ledger, DateTime<Utc>, Vec<InterventionId>) {
        let mut l = Ledger::in_memory().unwrap();
        let now = t("2026-01-01T00:00:00Z");
        let ids = (0..n)
            .map(|_| l.insert_proposed(&candidate(), now, "test").unwrap())
            .collect();
        (l, now, ids)
    }

    pub(crate) fn candidate() -> Candidate {
        Candidate {
            area: "cache".into(),
            kind: "config_set".into(),
            title: "grow cache".into(),
            hypothesis: "misses dominate".into(),
            change: vec![Edit::ConfigSet {
                file: "config/app.yaml".into(),
                key: "cache_mb".into(),
                value: serde_json::json!(256),
            }],
            prediction: Prediction {
                signal: "latency_ms".into(),
                change: ExpectedChange::Relative(-0.2),
                within: Span::minutes(30),
            },
            risk: Risk::Low,
            confidence: 0.8,
            rollback: Some("revert".into()),
            origin: Origin {
                proposer: "rules".into(),
                rule: Some("grow-cache".into()),
                ..Default::default()
            },
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn pass(guard: &str) -> GuardVerdict {
        GuardVerdict {
            guard: guard.into(),
            decision: Decision::Pass,
            reason: "ok".into(),
        }
    }

    #[test]
    fn a_meta_value_set_later_is_read_at_once_and_kept_with_the_next_transaction_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let now = t("2026-01-01T00:00:00Z");
        {
            let mut l = Ledger::open(&path).unwrap();
            l.set_meta_later("tips", "[\"a\"]");
            assert_eq!(l.meta("tips").unwrap().as_deref(), Some("[\"a\"]"));
            // No transaction followed: not kept.
        }
        {
            let mut l = Ledger::open(&path).unwrap();
            assert_eq!(l.meta("tips").unwrap(), None);
            l.set_meta_later("tips", "[\"a\"]");
            l.set_meta_later("tips", "[\"b\"]");
            // A sample batch is a transaction with it.
            l.record_samples(&[Sample::new("latency_ms", now, 1.0)])
                .unwrap();
            l.set_meta_later("other", "x");
            l.insert_proposed(&candidate(), now, "r").unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.meta("tips").unwrap().as_deref(), Some("[\"b\"]"));
        assert_eq!(l.meta("other").unwrap().as_deref(), Some("x"));
        assert_eq!(l.samples("latency_ms", now, now).unwrap().len(), 1);
    }

    #[test]
    fn a_proposal_is_recorded_whole_with_its_sizing_verdicts_and_events_in_order() {
        let mut l = Ledger::in_memory().unwrap();
        let now = t("2026-01-01T00:05:00Z");
        let sizing = serde_json::json!({"needed": 3, "note": "validatable: needs 3 samples"});
        let verdicts = [pass("budget"), pass("dedup")];
        let proposal = Proposal {
            reason: "trigger: latency_ms above 200",
            sizing: Some(&sizing),
            verdicts: &verdicts,
        };
        let (id, written) = l
            .record_proposal(&candidate(), now, &proposal, |id| {
                vec![EngineEvent::WindowSized {
                    intervention: id,
                    note: "validatable: needs 3 samples".into(),
                }]
            })
            .unwrap();
        let kinds: Vec<&str> = written.iter().map(EngineEvent::kind).collect();
        assert_eq!(kinds, ["proposed", "window_sized", "guard_verdicts"]);
        let logged = l.events_between(now, now).unwrap();
        assert_eq!(
            logged.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            kinds
        );
        assert!(logged.iter().all(|e| e.intervention == Some(id)));
        assert_eq!(l.get(id).unwrap().status, Status::Proposed);
        assert_eq!(l.sizing(id).unwrap(), Some(sizing));
        let stored: Vec<GuardVerdict> = l
            .guard_verdicts(id)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(stored, verdicts);
        assert!(crate::audit::verify(&l.audit_rows().unwrap(), &[]).is_intact());
    }

    #[test]
    fn a_proposal_that_cannot_be_recorded_whole_leaves_nothing() {
        let mut l = Ledger::in_memory().unwrap();
        let now = t("2026-01-01T00:05:00Z");
        // The last step of the transaction (the verdicts) fails: the row and the events
        // written before it must go with it.
        l.conn
            .execute_batch(
                "CREATE TRIGGER no_verdicts BEFORE INSERT ON guard_verdicts
                 BEGIN SELECT RAISE(ABORT, 'verdicts refused'); END;",
            )
            .unwrap();
        let verdicts = [pass("budget")];
        let proposal = Proposal {
            reason: "trigger: x",
            sizing: None,
            verdicts: &verdicts,
        };
        let err = l
            .record_proposal(&candidate(), now, &proposal, |id| {
                vec![EngineEvent::WindowSized {
                    intervention: id,
                    note: "n".into(),
                }]
            })
            .unwrap_err();
        assert!(err.to_string().contains("verdicts refused"), "{err}");
        let rows: i64 = l
            .conn
            .query_row("SELECT COUNT(*) FROM interventions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
        assert_eq!(l.last_event_seq().unwrap(), 0);
    }

    #[test]
    fn an_oversize_payload_is_stored_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let mut l = Ledger::open(&path).unwrap();
        let mut c = candidate();
        c.change = vec![Edit::FileWrite {
            file: "config/blob.txt".into(),
            content: "x".repeat(4 * crate::edit::MAX_FILE_BYTES),
        }];
        let now = t("2026-01-01T00:00:00Z");
        for _ in 0..5 {
            let id = l.insert_proposed(&c, now, "refused each cycle").unwrap();
            let stored = l.get(id).unwrap().candidate.change;
            assert!(stored[0].payload_bytes() < 2048, "{}", stored[0]);
        }
        drop(l);
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let wal = dir.path().join("ledger.sqlite-wal");
        let total = size(&path) + size(&wal);
        assert!(total < 1024 * 1024, "ledger grew to {total} bytes");
    }

    #[test]
    fn a_closed_ledger_keeps_empty_wal_files_and_its_file_alone_holds_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let now = t("2026-01-01T00:00:00Z");
        let id = {
            let mut l = Ledger::open(&path).unwrap();
            l.insert_proposed(&candidate(), now, "the last decision")
                .unwrap()
        };
        // Kept for the next process (no create/delete per run), and emptied: everything was
        // checkpointed into the main file at close.
        let wal = dir.path().join("ledger.sqlite-wal");
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).ok(), Some(0));
        assert!(dir.path().join("ledger.sqlite-shm").exists());
        // A copy of the main file alone (a backup, an audit) misses nothing.
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(&path, copy.path().join("ledger.sqlite")).unwrap();
        let l = Ledger::open(&copy.path().join("ledger.sqlite")).unwrap();
        assert_eq!(l.get(id).unwrap().reason, "the last decision");
        // And the kept files are reused: a second process sees the first's rows.
        drop(l);
        let again = Ledger::open(&path).unwrap();
        assert!(again.get(id).is_ok());
    }

    #[test]
    fn racing_first_opens_create_the_schema_once() {
        // A read command and a cron `observe` opening a ledger that does not exist yet.
        for _ in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state/ledger.sqlite");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Ledger::open(&path).map(|l| l.schema_version().unwrap_or(-1))
                    })
                })
                .collect();
            for h in handles {
                let got = h.join().unwrap();
                assert_eq!(
                    got.as_ref().map_err(ToString::to_string),
                    Ok(&(MIGRATIONS.len() as i64))
                );
            }
        }
    }

    #[test]
    fn lifecycle_round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/ledger.sqlite");
        let now = t("2026-01-01T00:00:00Z");
        let id = {
            let mut l = Ledger::open(&path).unwrap();
            let id = l.insert_proposed(&candidate(), now, "rule fired").unwrap();
            assert_eq!(id.to_string(), "K-000001");
            l.set_pending(id, Some(Pending::Apply)).unwrap();
            id
        };
        // Reopen: the pending marker survived (as after a crash).
        let mut l = Ledger::open(&path).unwrap();
        assert_eq!(l.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let pending = l.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1, Pending::Apply);
        l.mark_applied(
            id,
            "abc",
            now,
            now + chrono::Duration::minutes(35),
            Stage::Apply,
            "committed",
        )
        .unwrap();
        assert!(l.pending().unwrap().is_empty());
        let got = l.get(id).unwrap();
        assert_eq!(got.status, Status::Applied);
        assert_eq!(got.candidate, candidate());
        assert!(l.due(now).unwrap().is_empty());
        assert_eq!(l.due(now + chrono::Duration::minutes(35)).unwrap().len(), 1);
        // Illegal transitions are errors, not silent overwrites.
        let err = l
            .transition(id, Status::Backlog, now, Stage::Guard, "x")
            .unwrap_err();
        assert!(err.to_string().contains("applied → backlog"), "{err}");
        l.mark_reverted(id, "def", now, Stage::Validate, "no effect")
            .unwrap();
        let got = l.get(id).unwrap();
        assert_eq!(got.status, Status::Reverted);
        assert_eq!(got.revert_commit.as_deref(), Some("def"));
        let events = l.events_for(id).unwrap();
        assert_eq!(events.len(), 3, "{events:?}");
    }

    #[test]
    fn ids_continue_after_the_repository_and_noop_reverts_end_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let now = t("2026-01-01T00:00:00Z");
        let mut l = Ledger::open(&path).unwrap();
        // A fresh ledger in a repository whose history names K-000041.
        assert!(l.reserve_ids_through(InterventionId(41)).unwrap());
        assert!(
            !l.reserve_ids_through(InterventionId(3)).unwrap(),
            "never backwards"
        );
        let id = l.insert_proposed(&candidate(), now, "r").unwrap();
        assert_eq!(id, InterventionId(42));
        drop(l);
        let mut l = Ledger::open(&path).unwrap();
        assert!(!l.reserve_ids_through(InterventionId(42)).unwrap());
        assert_eq!(
            l.insert_proposed(&candidate(), now, "r").unwrap(),
            InterventionId(43)
        );
        l.begin_apply(id, Some("main")).unwrap();
        assert_eq!(l.branch(id).unwrap().as_deref(), Some("main"));
        l.mark_applied(id, "abc", now, now, Stage::Apply, "c")
            .unwrap();
        l.set_pending(id, Some(Pending::Revert)).unwrap();
        l.mark_reverted_without_commit(id, now, Stage::Revert, "no-op")
            .unwrap();
        let got = l.get(id).unwrap();
        assert_eq!(got.status, Status::Reverted);
        assert_eq!(got.revert_commit, None);
        assert!(got.finalized_at.is_some());
        assert!(l.pending().unwrap().is_empty());
        assert!(
            l.mark_reverted_without_commit(id, now, Stage::Revert, "again")
                .is_err()
        );
    }

    #[test]
    fn events_are_typed_and_flow_counters_are_columns() {
        let mut l = Ledger::in_memory().unwrap();
        let now = t("2026-01-01T00:00:00Z");
        let id = l.insert_proposed(&candidate(), now, "trigger: x").unwrap();
        // Interim looks: a column moved with its event, never read back from the log.
        let look = EngineEvent::InterimLook {
            intervention: id,
            look: 2,
            of: 4,
        };
        l.take_interim_look(id, 2, now, &look).unwrap();
        l.take_interim_look(id, 1, now, &look).unwrap();
        assert_eq!(l.interim_looks(id).unwrap(), 2, "never backwards");
        // Escalations: keyed, whatever the text says.
        assert_eq!(l.last_raised("revert_refused K-000001").unwrap(), None);
        for (i, text) in ["refused: dirty tree", "refused: lock held"]
            .iter()
            .enumerate()
        {
            let at = now + chrono::Duration::minutes(i as i64);
            let e = EngineEvent::Escalation {
                intervention: Some(id),
                stage: Stage::Revert,
                key: "revert_refused K-000001".into(),
                text: (*text).into(),
            };
            l.append_raised(at, "revert_refused K-000001", &e).unwrap();
        }
        assert_eq!(
            l.last_raised("revert_refused K-000001").unwrap(),
            Some(now + chrono::Duration::minutes(1))
        );
        // The log holds the typed events, in order, with their views.
        let events = l.events_for(id).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "proposed",
                "interim_look",
                "interim_look",
                "escalation",
                "escalation"
            ]
        );
        assert_eq!(events[1].event, look);
        assert_eq!(events[0].status_to(), Some(Status::Proposed));
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    /// `proposed_without_event` (one seek per proposed row in `events_kind_intervention`)
    /// answers what asking each proposed row's own events would: events of another kind, of
    /// another row, without a row, and rows no longer proposed do not count.
    #[test]
    fn proposed_without_event_matches_each_rows_own_events() {
        let (mut l, now, ids) = with_proposed(6);
        let event = |l: &mut Ledger, id: Option<InterventionId>, kind: &str| {
            l.sql(|c| {
                c.execute(
                    "INSERT INTO events(at, intervention_id, stage, kind, detail) VALUES (?1, ?2, 'propose', ?3, 'x')",
                    params![ms(now), id.map(|i| i.0), kind],
                )
            })
            .unwrap();
        };
        event(&mut l, Some(ids[1]), "needs_approval");
        event(&mut l, Some(ids[2]), "other");
        event(&mut l, None, "needs_approval");
        event(&mut l, Some(ids[3]), "needs_approval");
        event(&mut l, Some(ids[3]), "needs_approval");
        l.sql(|c| {
            c.execute(
                "UPDATE interventions SET status = 'rejected' WHERE id = ?1",
                params![ids[4].0],
            )
        })
        .unwrap();
        let got: Vec<InterventionId> = l
            .proposed_without_event("needs_approval")
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let expected: Vec<InterventionId> = l
            .with_status(Status::Proposed)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .filter(|id| !l.has_event_of_kind(*id, "needs_approval").unwrap())
            .collect();
        assert_eq!(got, expected);
        assert_eq!(got, vec![ids[0], ids[2], ids[5]]);
        assert!(
            l.proposed_without_event("none_of_these")
                .unwrap()
                .iter()
                .all(|(_, a)| a == "cache")
        );
        assert_eq!(l.proposed_without_event("none_of_these").unwrap().len(), 5);
    }

    #[test]
    fn rows_from_before_typed_events_read_as_legacy() {
        let mut l = Ledger::in_memory().unwrap();
        let now = t("2026-01-01T00:00:00Z");
        l.sql(|c| {
            c.execute(
                "INSERT INTO events(at, stage, kind, detail, data_json) VALUES (?1, 'observe', 'sample_error', 'source `x`: down', '{\"file\": 1}')",
                params![ms(now)],
            )
        })
        .unwrap();
        l.append(now, &EngineEvent::Resumed { area: None }).unwrap();
        let events = l.events_between(now, now).unwrap();
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[0].event, EngineEvent::Legacy { legacy_kind, .. } if legacy_kind == "sample_error"),
            "{events:?}"
        );
        assert_eq!(events[0].event.kind(), "sample_error");
        assert_eq!(events[0].event.to_string(), "source `x`: down");
        assert_eq!(events[1].event, EngineEvent::Resumed { area: None });
    }

    #[test]
    fn events_from_before_the_chain_join_it_on_migration() {
        assert!(MIGRATIONS[AUDIT_MIGRATION].contains("prev_hash"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        {
            // A ledger as the kaizen before the chain left it, with events in it.
            let c = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..AUDIT_MIGRATION] {
                c.execute_batch(m).unwrap();
            }
            c.pragma_update(None, "user_version", AUDIT_MIGRATION as i64)
                .unwrap();
            for i in 0..3 {
                c.execute(
                    "INSERT INTO events(at, stage, kind, detail) VALUES (?1, 'observe', 'sample_error', 'gap')",
                    params![i],
                )
                .unwrap();
            }
        }
        let mut l = Ledger::open(&path).unwrap();
        l.append(
            t("2026-01-01T00:00:00Z"),
            &EngineEvent::Resumed { area: None },
        )
        .unwrap();
        let rows = l.audit_rows().unwrap();
        assert_eq!(rows.len(), 4);
        let report = crate::audit::verify(&rows, &[]);
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.head, l.audit_head().unwrap());
    }

    #[test]
    fn samples_round_trip() {
        let mut l = Ledger::in_memory().unwrap();
        let now = t("2026-01-01T00:00:00Z");
        l.record_samples(&[
            Sample::new("x", now, 1.0),
            Sample::new("x", now + chrono::Duration::minutes(1), 2.0),
            Sample::new("y", now, f64::NAN),
        ])
        .unwrap();
        let s = l
            .samples("x", now, now + chrono::Duration::hours(1))
            .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(l.latest_sample("x").unwrap().unwrap().value, 2.0);
        assert!(
            l.latest_sample("y").unwrap().is_none(),
            "NaN is a gap, not a value"
        );
    }

    #[test]
    fn intervention_totals_read_no_intervention_row() {
        let l = Ledger::in_memory().unwrap();
        let plans: Vec<String> = [
            tally::TALLY_APPLIED,
            tally::TALLY_VALIDATED,
            tally::TALLY_REVERTED,
        ]
        .iter()
        .map(|q| {
            let c = &l.conn;
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {q}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        })
        .collect();
        for plan in &plans {
            assert!(
                plan.contains("COVERING INDEX interventions_tally"),
                "{plan}"
            );
        }
        assert_eq!(l.intervention_totals().unwrap().applied, 0);
    }

    #[test]
    fn count_with_status_equals_the_rows_with_that_status() {
        let (mut l, now, ids) = with_proposed(5);
        for id in &ids[..3] {
            l.transition(*id, Status::Backlog, now, Stage::Guard, "budget")
                .unwrap();
        }
        for status in [Status::Backlog, Status::Proposed, Status::Applied] {
            assert_eq!(
                l.count_with_status(status).unwrap(),
                l.with_status(status).unwrap().len(),
                "{status:?}"
            );
        }
        assert_eq!(l.count_with_status(Status::Backlog).unwrap(), 3);
    }

    proptest::proptest! {
        /// Batches of any size go in through the multi-row statements exactly as one
        /// `INSERT OR REPLACE` per sample would: every chunk size used, duplicates of the same
        /// `(signal, at)` within and across chunks won by the later one, non-finite values
        /// skipped.
        #[test]
        fn chunked_sample_writes_equal_row_by_row_writes(
            batch in proptest::collection::vec(
                (0u8..3, 0i64..40, proptest::prop_oneof![
                    8 => -1e6f64..1e6,
                    1 => proptest::strategy::Just(f64::NAN),
                    1 => proptest::strategy::Just(f64::INFINITY),
                ]),
                0..70,
            )
        ) {
            let t0 = t("2026-01-01T00:00:00Z");
            let samples: Vec<Sample> = batch
                .iter()
                .map(|(s, k, v)| {
                    Sample::new(format!("s{s}"), t0 + chrono::Duration::seconds(*k), *v)
                })
                .collect();
            let mut chunked = Ledger::in_memory().unwrap();
            chunked.record_samples(&samples).unwrap();
            let mut by_row = Ledger::in_memory().unwrap();
            for s in &samples {
                by_row.record_samples(std::slice::from_ref(s)).unwrap();
            }
            let to = t0 + chrono::Duration::minutes(1);
            let stored = |l: &Ledger, signal: &str| -> Vec<(i64, u64)> {
                l.points(signal, t0, to)
                    .unwrap()
                    .iter()
                    .map(|(at, v)| (at.timestamp_millis(), v.to_bits()))
                    .collect()
            };
            for signal in ["s0", "s1", "s2"] {
                proptest::prop_assert_eq!(stored(&chunked, signal), stored(&by_row, signal));
            }
        }
    }
}

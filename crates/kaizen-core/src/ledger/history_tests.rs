//! History at scale (issue 12): the guards' view, the freeze facts and the proposers' track
//! records are read from indices — these tests hold them to what the whole-row computations
//! gave, and hold the statements to their index plans.

use super::tests::candidate;
use super::*;
use crate::calibrate::{proposer_records, track_records};
use crate::guard::{Finalized, LedgerView};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A small deterministic generator (the test must not depend on a random seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A ledger of `rows` interventions over 60 days before `now`, in 5 areas, from 4 proposers,
/// in every status, with every outcome (and none), some without a finalization time, some
/// created at the same instant (ties), as the engine would leave them and as it might not.
fn history(rows: usize, now: DateTime<Utc>) -> Ledger {
    let mut l = Ledger::in_memory().unwrap();
    let mut rng = Lcg(7);
    let statuses = [
        "validated",
        "validated",
        "reverted",
        "reverted",
        "applied",
        "blocked",
        "proposed",
        "kept",
    ];
    let outcomes = [
        None,
        Some("validated"),
        Some("no_effect"),
        Some("regressed"),
        Some("inconclusive"),
    ];
    for _ in 0..rows {
        let mut c = candidate();
        c.area = format!("area_{}", rng.next(5));
        c.origin.rule = match rng.next(4) {
            0 => None,
            r => Some(format!("rule-{r}")),
        };
        c.origin.proposer = (if c.origin.rule.is_none() {
            "llm"
        } else {
            "rules"
        })
        .into();
        c.confidence = rng.next(100) as f64 / 100.0;
        // Minutes in 60 days, coarse enough that creation times repeat.
        let created = now - chrono::Duration::minutes(30 * rng.next(2 * 24 * 60) as i64);
        let id = l.insert_proposed(&c, created, "test").unwrap();
        let status = statuses[rng.next(statuses.len() as u64) as usize];
        let outcome = outcomes[rng.next(outcomes.len() as u64) as usize];
        let applied = (rng.next(5) > 0).then(|| ms(created) + 60_000);
        let finalized =
            (rng.next(6) > 0).then(|| ms(created) + 60_000 * (1 + rng.next(600)) as i64);
        l.conn
            .execute(
                "UPDATE interventions SET status = ?2, outcome = ?3, applied_at = ?4,
                   finalized_at = ?5 WHERE id = ?1",
                params![id.0, status, outcome, applied, finalized],
            )
            .unwrap();
    }
    l
}

/// The freeze facts as the whole rows give them: each area's finalized interventions the
/// freeze rule counts, newest first, `per_area` of each.
fn facts_from_rows(all: &[Intervention], per_area: usize) -> Vec<Finalized> {
    let mut facts: Vec<Finalized> = all
        .iter()
        .filter_map(Finalized::of)
        .filter(|f| !f.judged_by_missing_data())
        .collect();
    facts.sort_by(|a, b| a.area.cmp(&b.area).then((b.at, b.id).cmp(&(a.at, a.id))));
    let mut out: Vec<Finalized> = Vec::new();
    for f in facts {
        if out.iter().filter(|o| o.area == f.area).count() < per_area {
            out.push(f);
        }
    }
    out
}

#[test]
fn the_guards_view_holds_recent_rows_whole_and_older_history_as_freeze_facts() {
    let now = t("2026-03-01T00:00:00Z");
    let l = history(400, now);
    let all = l.all().unwrap();
    for per_area in [1, 3, 50] {
        for lookback in [chrono::Duration::hours(25), chrono::Duration::days(10)] {
            let view = l.view(now, lookback, per_area).unwrap();
            let since = now - lookback;
            let mut want: Vec<InterventionId> = all
                .iter()
                .filter(|iv| {
                    iv.created_at >= since
                        || iv.status == Status::Applied
                        || iv.finalized_at.is_some_and(|f| f >= since)
                })
                .map(|iv| iv.id)
                .collect();
            want.reverse();
            let got: Vec<InterventionId> = view.interventions.iter().map(|iv| iv.id).collect();
            assert_eq!(got, want, "whole rows, lookback {lookback}");
            assert_eq!(
                view.finalized,
                facts_from_rows(&all, per_area as usize),
                "facts, {per_area} an area"
            );
        }
    }
}

#[test]
fn freezes_from_the_facts_are_the_freezes_of_the_whole_rows() {
    // The freeze rule over the narrow view (recent rows + facts) decides as it did over every
    // finalized row, at every instant of the history.
    let now = t("2026-03-01T00:00:00Z");
    let l = history(300, now);
    let policy = crate::guard::GuardPolicy {
        freeze_after_rollbacks: 2,
        ..Default::default()
    };
    let whole = LedgerView {
        interventions: l.all().unwrap(),
        ..Default::default()
    };
    for back in (0..60 * 24).step_by(7) {
        let at = now - chrono::Duration::hours(back);
        let narrow = l.view(at, chrono::Duration::hours(25), 2).unwrap();
        // Rows from after `at` are in both (the test ledger is not cut at `at`); what matters is
        // that the facts stand in for every older row.
        assert_eq!(
            crate::guard::active_freezes(&narrow, &policy, at),
            crate::guard::active_freezes(&whole, &policy, at),
            "at {at}"
        );
    }
}

#[test]
fn proposer_records_counted_by_the_index_are_those_of_every_finalized_row() {
    let now = t("2026-03-01T00:00:00Z");
    let l = history(400, now);
    let finalized = l.finalized().unwrap();
    let want = proposer_records(&finalized);
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(l.proposer_records().unwrap(), want);
    let records = track_records(&finalized, None);
    for key in records
        .keys()
        .map(String::as_str)
        .chain(["rules:never", "llm"])
    {
        assert_eq!(
            l.track_record_of(key).unwrap(),
            records.get(key).copied().unwrap_or_default(),
            "{key}"
        );
    }
}

#[test]
fn a_ledger_from_before_the_history_indices_migrates_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let now = t("2026-03-01T00:00:00Z");
    {
        let c = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..9] {
            c.execute_batch(m).unwrap();
        }
        c.pragma_update(None, "user_version", 9).unwrap();
        c.execute(
            "INSERT INTO interventions(area, kind, title, hypothesis, change_json,
               prediction_json, risk, confidence, origin_json, targets, status, outcome,
               created_at, applied_at, finalized_at)
             VALUES ('cache', 'config_set', 't', 'h', '[]', ?1, 'low', 0.6,
               '{\"proposer\":\"rules\",\"rule\":\"grow\",\"trigger\":\"x\"}', '', 'reverted',
               'no_effect', ?2, ?2, ?2)",
            params![
                serde_json::to_string(&candidate().prediction).unwrap(),
                ms(now - chrono::Duration::days(30))
            ],
        )
        .unwrap();
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.schema_version().unwrap(), MIGRATIONS.len() as i64);
    let records = l.proposer_records().unwrap();
    assert_eq!(records["rules:grow"].record.n, 1);
    assert_eq!(records["rules:grow"].latest_stated, 0.6);
    let view = l.view(now, chrono::Duration::hours(25), 3).unwrap();
    assert!(view.interventions.is_empty());
    assert_eq!(view.finalized.len(), 1);
    assert_eq!(view.finalized[0].area, "cache");
}

/// SQLite's plan of `sql`, one step a line.
fn plan(l: &Ledger, sql: &str) -> String {
    let mut stmt = l
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap();
    let unbound = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
    let rows = stmt
        .query_map(rusqlite::params_from_iter(unbound), |r| {
            r.get::<_, String>(3)
        })
        .unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_newest_event_of_each_stage_is_found_by_index() {
    let l = Ledger::in_memory().unwrap();
    let now = t("2026-03-01T00:00:00Z");
    for (i, stage) in [
        "observe", "apply", "observe", "validate", "apply", "observe",
    ]
    .into_iter()
    .enumerate()
    {
        l.conn
            .execute(
                "INSERT INTO events(at, stage, kind, detail) VALUES (?1, ?2, 'k', ?3)",
                params![ms(now) + i as i64, stage, format!("#{i}")],
            )
            .unwrap();
    }
    let last = l.last_event_per_stage().unwrap();
    let got: Vec<(&str, &str)> = last
        .iter()
        .map(|(s, e)| (s.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        got,
        [("apply", "#4"), ("observe", "#5"), ("validate", "#3")]
    );
    assert!(
        Ledger::in_memory()
            .unwrap()
            .last_event_per_stage()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_reads_of_every_cycle_and_status_search_indices_instead_of_scanning_interventions() {
    // On a ledger without statistics, as the product's are (it never runs ANALYZE).
    let l = history(50, t("2026-03-01T00:00:00Z"));
    for sql in [
        format!("SELECT id FROM interventions {VIEW_RECENT}"),
        NEXT_FINALIZED_AREA.to_string(),
        NEWEST_FINALIZED.to_string(),
        REPEATED_SINCE.to_string(),
        records::COUNTS_OF.to_string(),
        records::LATEST_STATED.to_string(),
        tally::LAST_EVENT_PER_STAGE.to_string(),
        tally::EVENT_COUNTS_SINCE.to_string(),
        tally::KIND_COUNT_BETWEEN.to_string(),
    ] {
        let p = plan(&l, &sql);
        // (`SCAN stages`: the few rows of the recursive step, one per stage.)
        let scans: Vec<&str> = p
            .lines()
            .filter(|l| l.contains("SCAN") && !l.contains("SCAN stages"))
            .collect();
        assert!(scans.is_empty(), "{sql}\n{p}");
    }
    // Counting every proposer's record walks the proposer index once, in key order (no sort;
    // SQLite reads each row too: an index with a virtual column never covers a query).
    let p = plan(&l, records::COUNTS);
    assert!(
        p.contains("SCAN interventions USING INDEX interventions_proposer")
            && !p.contains("TEMP B-TREE"),
        "{p}"
    );
}

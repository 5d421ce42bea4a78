//! The audit chain over a real SQLite ledger after a simulated month: intact when untouched,
//! and each direct edit of the file is named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim_support;

use kaizen_core::audit::{self, Tamper};
use kaizen_core::ledger::Ledger;
use kaizen_core::sim::{self, DirectApplier, SimOptions};
use kaizen_core::span::Span;

#[tokio::test]
async fn an_untouched_ledger_verifies_intact_after_a_simulated_month() {
    let scenario = sim::builtin(sim::DEMO).unwrap().unwrap();
    // On tmpfs where there is one: the ledger fsyncs every transaction (synchronous=FULL),
    // which is what a month of them costs on a disk, not what this test is about.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let layout = sim::prepare(&scenario, dir.path(), false).unwrap();
    let ledger_path = dir.path().join("ledger.sqlite");
    // `KAIZEN_AUDIT_SIM_DAYS` runs longer (the default month keeps the suite quick).
    let days = std::env::var("KAIZEN_AUDIT_SIM_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(30);
    sim::run_scenario_with(
        &scenario,
        dir.path(),
        Box::new(DirectApplier::new(&layout.repo)),
        Box::new(sim_support::MedianValidator),
        SimOptions {
            ledger: Some(Ledger::open(&ledger_path).unwrap()),
            duration: Some(Span::days(days)),
            ..SimOptions::default()
        },
        |_| {},
    )
    .await
    .unwrap();

    let ledger = Ledger::open(&ledger_path).unwrap();
    let rows = ledger.audit_rows().unwrap();
    let report = audit::verify(&rows, &[]);
    assert!(report.is_intact(), "{report:?}");
    assert!(
        report.events > 20,
        "a month records decisions: {}",
        report.events
    );
    assert_eq!(report.head, ledger.audit_head().unwrap());
    drop(ledger);

    // Each edit of the file itself is named (a fresh copy of the month's ledger for each).
    let pristine = std::fs::read(&ledger_path).unwrap();
    let n = i64::try_from(rows.len()).unwrap();
    let tamper = |sql: &str| {
        let path = dir.path().join("tampered.sqlite");
        std::fs::write(&path, &pristine).unwrap();
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        let rows = Ledger::open(&path).unwrap().audit_rows().unwrap();
        audit::verify(&rows, &[]).problem
    };
    assert_eq!(
        tamper("UPDATE events SET detail = detail || '!' WHERE id = 7"),
        Some(Tamper::Altered { seq: 7 })
    );
    assert_eq!(
        tamper("DELETE FROM events WHERE id = 7"),
        Some(Tamper::Removed {
            seq: 8,
            after: Some(6)
        })
    );
    assert_eq!(
        tamper(
            "INSERT INTO events(at, stage, kind, detail) VALUES (0, 'apply', 'applied', 'forged')"
        ),
        Some(Tamper::Inserted { seq: n + 1 })
    );
    let swap = "CREATE TEMP TABLE s AS SELECT * FROM events WHERE id IN (7, 8);
         UPDATE events SET (at, intervention_id, stage, kind, detail, data_json, prev_hash, hash) =
           (SELECT at, intervention_id, stage, kind, detail, data_json, prev_hash, hash FROM s
            WHERE s.id = 15 - events.id) WHERE id IN (7, 8);";
    assert_eq!(
        tamper(swap),
        Some(Tamper::Reordered {
            seq: 7,
            belongs_after: 8
        })
    );
}

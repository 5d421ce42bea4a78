//! `kaizen audit verify` / `export` on a real ledger and repository: intact when untouched, and
//! each direct edit of the SQLite file — an altered field, a removed, inserted or swapped event,
//! the tail cut after a commit — is named, exit 1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

fn verify(h: &Harness, minute: i64) -> (Option<i32>, String) {
    let out = h.kaizen_at(minute, &["audit", "verify"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn audit_verify_names_each_edit_and_git_witnesses_the_tail() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-30, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    let out = h.ok(10, &["cycle"]);
    assert!(out.contains("applied as commit"), "{out}");

    // Untouched: intact, and the apply commit names a head the chain holds.
    let (code, text) = verify(&h, 11);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("intact, "), "{text}");
    let msg = git_text(&h.repo, &["log", "-1", "--format=%B"]);
    let head = git_text(
        &h.repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Kaizen-Audit,valueonly)",
        ],
    );
    let head = head.trim().to_string();
    assert_eq!(head.len(), 64, "{msg}");
    let db = h.ledger_db();
    let witnessed: i64 = db
        .query_row("SELECT id FROM events WHERE hash = ?1", [&head], |r| {
            r.get(0)
        })
        .expect("the commit's audit head is an event");
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(n > witnessed, "the apply was recorded after its commit");
    assert!(
        text.contains(&format!("intact, {n} events, head ")),
        "{text}"
    );
    drop(db);

    // Export: one JSON object per line, each with its hash, chained.
    let lines = h.ok(11, &["audit", "export", "--since", "7d"]);
    let exported: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(exported.len() as i64, n);
    for w in exported.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"]);
    }
    assert!(
        exported
            .iter()
            .any(|e| e["kind"] == "applied" && e["event"]["commit"].is_string())
    );
    assert_eq!(
        h.ok(80, &["audit", "export", "--since", "1h"])
            .lines()
            .count(),
        0
    );

    // Each edit of the file, on a fresh copy of the untouched ledger.
    let ledger = h.repo.join(".kaizen/ledger.sqlite");
    {
        let db = h.ledger_db();
        db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let pristine = std::fs::read(&ledger).unwrap();
    let tampered = |sql: &str| {
        let _ = std::fs::remove_file(h.repo.join(".kaizen/ledger.sqlite-wal"));
        let _ = std::fs::remove_file(h.repo.join(".kaizen/ledger.sqlite-shm"));
        std::fs::write(&ledger, &pristine).unwrap();
        h.ledger_db().execute_batch(sql).unwrap();
        let (code, text) = verify(&h, 12);
        assert_eq!(code, Some(1), "{sql}: {text}");
        text
    };
    let t = tampered("UPDATE events SET detail = 'nothing happened' WHERE id = 3");
    assert!(t.contains("event #3 was altered"), "{t}");
    let t = tampered("DELETE FROM events WHERE id = 3");
    assert!(t.contains("removed between #2 and #4"), "{t}");
    let t = tampered(
        "INSERT INTO events(at, stage, kind, detail) VALUES (0, 'apply', 'applied', 'forged')",
    );
    assert!(t.contains(&format!("event #{} was inserted", n + 1)), "{t}");
    let t = tampered(
        "CREATE TEMP TABLE s AS SELECT * FROM events WHERE id IN (2, 3);
         UPDATE events SET (at, intervention_id, stage, kind, detail, data_json, prev_hash, hash) =
           (SELECT at, intervention_id, stage, kind, detail, data_json, prev_hash, hash FROM s
            WHERE s.id = 5 - events.id) WHERE id IN (2, 3);",
    );
    assert!(t.contains("event #2 was reordered"), "{t}");
    // The tail cut after the commit: the rest still chains, but git names a head that is gone.
    let t = tampered(&format!("DELETE FROM events WHERE id >= {witnessed}"));
    assert!(t.contains("tail was cut") && t.contains(&head), "{t}");
}

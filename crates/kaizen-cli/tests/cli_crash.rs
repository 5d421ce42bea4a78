//! A kill between the two halves of a status change (issue 9, defect 1): the binary is stopped at a
//! failpoint inside `mark_applied` / `mark_reverted`, then run again. The ledger never holds an
//! `applied` row without its commit; reconciliation finishes the step from git's trailers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;
use kaizen_core::failpoint;

/// (status, commit_sha, revert_commit, pending) of K-000001, read from the SQLite file.
fn row(h: &Harness) -> (String, Option<String>, Option<String>, Option<String>) {
    h.ledger_db()
        .query_row(
            "SELECT status, commit_sha, revert_commit, pending FROM interventions WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("K-000001 exists")
}

fn killed_at(h: &Harness, minute: i64, point: &str) -> String {
    let out = h.kaizen_env_at(minute, &["cycle"], &[(failpoint::ENV, point)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(failpoint::EXIT_CODE),
        "the failpoint {point} fired:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!("kaizen failpoint {point} hit")),
        "{stderr}"
    );
    stderr
}

#[test]
fn kill_inside_mark_applied_leaves_no_commitless_applied_row_and_reconciles() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-60, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    killed_at(&h, 10, "ledger.mark_applied.after_status");

    // git has the commit; the ledger's status change was one transaction, so none of it landed.
    let sha = git_text(&h.repo, &["rev-parse", "HEAD"]).trim().to_string();
    let msg = git_text(&h.repo, &["log", "-1", "--format=%B"]);
    assert!(msg.contains("Kaizen-Intervention: K-000001"), "{msg}");
    assert_eq!(
        row(&h),
        ("proposed".into(), None, None, Some("apply".into())),
        "never `applied` without its commit"
    );

    // The next run reconciles from the trailer: applied, with that commit, nothing pending.
    h.set_metric(11, 250.0);
    let out = h.ok(11, &["cycle"]);
    assert!(
        out.contains("apply had completed before the interruption"),
        "{out}"
    );
    assert_eq!(row(&h), ("applied".into(), Some(sha.clone()), None, None));
    assert_eq!(
        git_text(&h.repo, &["rev-parse", "HEAD"]).trim(),
        sha,
        "not applied twice"
    );
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");

    // It is then judged like any other: a manual revert works (it has its commit).
    h.ok(12, &["revert", "K-000001", "--reason", "test"]);
    let (status, commit, revert, pending) = row(&h);
    assert_eq!(status, "reverted");
    assert_eq!(commit.as_deref(), Some(sha.as_str()));
    assert!(revert.is_some() && pending.is_none());
    assert!(h.file("config/app.yaml").contains("cache_mb: 128"));
}

#[test]
fn kill_inside_mark_reverted_reconciles_to_reverted() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-60, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    let out = h.ok(10, &["cycle"]);
    assert!(out.contains("applied as commit"), "{out}");
    let (_, commit, _, _) = row(&h);
    let out = h.kaizen_env_at(
        12,
        &["revert", "K-000001", "--reason", "operator"],
        &[(failpoint::ENV, "ledger.mark_reverted.after_status")],
    );
    assert_eq!(
        out.status.code(),
        Some(failpoint::EXIT_CODE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revert_sha = git_text(&h.repo, &["rev-parse", "HEAD"]).trim().to_string();
    assert_ne!(
        Some(&revert_sha),
        commit.as_ref(),
        "the revert commit was made"
    );
    assert_eq!(
        row(&h),
        (
            "applied".into(),
            commit.clone(),
            None,
            Some("revert".into())
        ),
        "the status change did not land half-way"
    );

    h.set_metric(13, 250.0);
    let out = h.ok(13, &["cycle"]);
    assert!(
        out.contains("revert had completed before the interruption"),
        "{out}"
    );
    assert_eq!(
        row(&h),
        ("reverted".into(), commit, Some(revert_sha.clone()), None)
    );
    assert_eq!(git_text(&h.repo, &["rev-parse", "HEAD"]).trim(), revert_sha);
    assert!(h.file("config/app.yaml").contains("cache_mb: 128"));
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
}

//! Issue 9 defects 4–8 (and `kaizen check`) through the binary, checked with the git CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;
use kaizen_core::failpoint;

/// Creates the ledger with one `observe` at `from`, then inserts one sample a minute up to `to`
/// (a process per sample would be slow; the ledger is the same SQLite file either way).
fn baseline(h: &Harness, from: i64, to: i64, level: f64) {
    h.set_metric(from, level);
    h.ok(from, &["observe"]);
    let mut db = h.ledger_db();
    let tx = db.transaction().unwrap();
    for m in from + 1..to {
        tx.execute(
            "INSERT OR REPLACE INTO samples(signal, at, value) VALUES ('latency_ms', ?1, ?2)",
            rusqlite::params![h.at(m).timestamp_millis(), Harness::noisy(level, m)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Latency alerting for the 40 minutes before +10 (the rule's `for: 10m`, the validator's
/// baseline), then a cycle at +10 that applies K-000001. Returns its commit.
fn apply_first(h: &Harness) -> String {
    baseline(h, -40, 10, 250.0);
    h.set_metric(10, 250.0);
    let out = h.ok(10, &["cycle"]);
    assert!(out.contains("applied as commit"), "{out}");
    git_text(&h.repo, &["rev-parse", "HEAD"]).trim().to_string()
}

fn status_of(h: &Harness, minute: i64, id: &str) -> serde_json::Value {
    find(&h.interventions(minute), id).clone()
}

/// A pid that was just used and is now dead.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn check(h: &Harness, minute: i64, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = h.kaizen_at(minute, &all);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn issue9_4_revert_lands_on_the_branch_applied_on_not_the_checked_out_one() {
    // No `branch:` in the config (what `kaizen init` writes).
    let h = Harness::new(RULE_GROW_CACHE, "");
    let applied = apply_first(&h);
    // A human checks out a new branch `feature` and commits there.
    git(&h.repo, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(h.repo.join("notes.txt"), "human\n").unwrap();
    git(&h.repo, &["add", "notes.txt"]);
    git(&h.repo, &["commit", "-q", "-m", "human: notes"]);
    let feature = git_text(&h.repo, &["rev-parse", "feature"]);

    h.ok(12, &["revert", "K-000001", "--reason", "test"]);

    let iv = status_of(&h, 12, "K-000001");
    assert_eq!(iv["status"], "reverted", "{iv}");
    let revert = iv["revert_commit"].as_str().unwrap().to_string();
    // main is reverted (its tip is the revert of the apply commit) …
    assert_eq!(git_text(&h.repo, &["rev-parse", "main"]).trim(), revert);
    assert_eq!(git_text(&h.repo, &["rev-parse", "main^"]).trim(), applied);
    assert!(git_text(&h.repo, &["show", "main:config/app.yaml"]).contains("cache_mb: 128"));
    let msg = git_text(&h.repo, &["log", "-1", "--format=%B", "main"]);
    assert!(msg.contains(&format!("Kaizen-Reverts: {applied}")), "{msg}");
    // … and feature, HEAD and the working tree are untouched.
    assert_eq!(git_text(&h.repo, &["rev-parse", "feature"]), feature);
    assert_eq!(
        git_text(&h.repo, &["symbolic-ref", "--short", "HEAD"]).trim(),
        "feature"
    );
    assert!(h.file("config/app.yaml").contains("cache_mb: 256"));
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
    let (code, out) = check(&h, 13, &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn issue9_5_a_lost_state_dir_continues_ids_and_never_fakes_a_revert() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let first = apply_first(&h);
    h.ok(12, &["revert", "K-000001", "--reason", "old"]);
    // The state dir is lost.
    std::fs::remove_dir_all(h.repo.join(".kaizen")).unwrap();
    baseline(&h, 0, 40, 250.0);
    h.set_metric(40, 250.0);
    let out = h.ok(40, &["cycle"]);
    assert!(out.contains("new ids continue after it"), "{out}");
    let list = h.interventions(40);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], "K-000002", "ids are not reused: {list:?}");
    assert_eq!(list[0]["status"], "applied");
    let second = list[0]["commit"].as_str().unwrap().to_string();
    assert_ne!(second, first);

    // Its revert is killed before the revert commit: the old K-000001 revert in history must not
    // be taken for it.
    let out = h.kaizen_env_at(
        41,
        &["revert", "K-000002"],
        &[(failpoint::ENV, "revert.after_pending")],
    );
    assert_eq!(out.status.code(), Some(failpoint::EXIT_CODE));
    h.set_metric(42, 250.0);
    let out = h.ok(42, &["cycle"]);
    assert!(out.contains("revert interrupted before commit"), "{out}");
    let iv = status_of(&h, 42, "K-000002");
    assert_eq!(iv["status"], "applied", "{iv}");
    assert!(h.file("config/app.yaml").contains("cache_mb: 256"));
    assert_eq!(git_text(&h.repo, &["rev-parse", "HEAD"]).trim(), second);

    // The lost rows are what `kaizen check` reports: kaizen commits with no ledger row.
    let (code, out) = check(&h, 43, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("commit_without_row {first}")),
        "{out}"
    );
    assert!(out.contains("revert_without_row"), "{out}");
}

/// The branch tips the id check kept in the ledger (sorted full ids).
fn ids_seen(h: &Harness) -> Vec<String> {
    let text: String = h
        .ledger_db()
        .query_row(
            "SELECT value FROM meta WHERE key = 'ids_seen_tips'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn branch_tips(h: &Harness) -> Vec<String> {
    let mut tips: Vec<String> = git_text(
        &h.repo,
        &["for-each-ref", "--format=%(objectname)", "refs/heads"],
    )
    .lines()
    .map(str::to_string)
    .collect();
    tips.sort();
    tips.dedup();
    tips
}

#[test]
fn kaizens_own_commits_keep_the_id_check_current_and_anyone_elses_are_still_walked() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    apply_first(&h);
    h.ok(12, &["revert", "K-000001", "--reason", "old"]);
    // The apply and the revert each took their parent's place in the tips kept: the next
    // process has nothing to walk.
    assert_eq!(ids_seen(&h), branch_tips(&h));
    // A commit kaizen did not make, naming a higher id (picked from another clone, say), is
    // still walked and the ids continue after it.
    let msg = "from another clone\n\nKaizen-Intervention: K-000050\n";
    let out = git(&h.repo, &["commit", "-q", "--allow-empty", "-m", msg]);
    assert!(out.status.success(), "{out:?}");
    h.set_metric(13, 250.0);
    let out = h.ok(13, &["cycle"]);
    assert!(out.contains("new ids continue after it"), "{out}");
    assert_eq!(ids_seen(&h), branch_tips(&h));
}

#[test]
fn issue9_6_a_held_index_lock_is_waited_on_refused_and_recorded_never_a_stale_commit() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    baseline(&h, -40, 10, 250.0);
    h.set_metric(10, 250.0);
    let head = git_text(&h.repo, &["rev-parse", "HEAD"]);
    let lock = h.repo.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap(); // a human's git, say
    let out = h.ok(10, &["cycle"]);
    assert!(
        out.contains("repository is busy") && out.contains("index.lock"),
        "{out}"
    );
    assert_eq!(
        git_text(&h.repo, &["rev-parse", "HEAD"]),
        head,
        "nothing committed"
    );
    assert!(lock.exists(), "another process's lock is never removed");
    let (code, report) = check(&h, 10, &[]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("foreign_git_lock"), "{report}");
    std::fs::remove_file(&lock).unwrap();

    // Killed with its commit made but the index not yet written: the next run finishes it.
    h.set_metric(11, 250.0);
    let out = h.kaizen_env_at(
        11,
        &["cycle"],
        &[(failpoint::ENV, "git.before_index_rename")],
    );
    assert_eq!(out.status.code(), Some(failpoint::EXIT_CODE));
    assert!(
        lock.exists(),
        "a killed kaizen leaves its lock (so no human commits the stale index)"
    );
    let (code, report) = check(&h, 11, &["--no-repair"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("stale_git_lock"), "{report}");
    h.set_metric(12, 250.0);
    let out = h.ok(12, &["cycle"]);
    assert!(out.contains("repaired: stale_git_lock"), "{out}");
    assert!(!lock.exists());
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "", "no `MM`");
    let applied: Vec<_> = h
        .interventions(12)
        .into_iter()
        .filter(|i| i["status"] == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    // The later revert is not refused as a human's work.
    let id = applied[0]["id"].as_str().unwrap().to_string();
    h.ok(13, &["revert", &id]);
    assert!(h.file("config/app.yaml").contains("cache_mb: 128"));
    let (code, report) = check(&h, 14, &[]);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn issue9_7_a_kill_inside_a_lesson_commit_is_finished_and_learn_works_again() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.use_simple_validator();
    let iv = run_round(&h, 0, 150.0);
    assert_eq!(iv["status"], "validated", "{iv}");
    // Killed between the lesson commit and the working-tree update.
    let out = h.kaizen_env_at(60, &["learn"], &[(failpoint::ENV, "git.after_commit")]);
    assert_eq!(out.status.code(), Some(failpoint::EXIT_CODE));
    let files = git_text(&h.repo, &["show", "--name-only", "--format=", "HEAD"]);
    assert!(files.trim().starts_with("lessons/L-cache-"), "{files}");
    assert_ne!(
        git_text(&h.repo, &["status", "--porcelain"]),
        "",
        "stale before"
    );
    // learn runs again: it finishes the interrupted commit instead of refusing.
    let out = h.ok(61, &["learn"]);
    assert!(out.contains("no lesson changes"), "{out}");
    assert_eq!(
        git_text(&h.repo, &["status", "--porcelain", "--untracked-files=all"]),
        ""
    );
    let list = h.ok(61, &["lessons", "list"]);
    assert!(list.contains("L-cache-"), "{list}");
    let (code, report) = check(&h, 62, &[]);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn issue9_8_one_live_change_per_key_across_areas_and_a_noop_revert_ends_cleanly() {
    let memory = r#"  - id: shrink-cache
    area: memory
    when: { signal: latency_ms, above: 200, for: 10m }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 64 }
    predict: { signal: latency_ms, change: "-10%", within: 30m }
    risk: low
    confidence: 0.6
    rollback: revert
    because: "memory pressure"
"#;
    let h = Harness::new(&format!("{RULE_GROW_CACHE}{memory}"), "");
    baseline(&h, -40, 10, 250.0);
    h.set_metric(10, 250.0);
    let out = h.ok(10, &["cycle"]);
    let list = h.interventions(10);
    let applied: Vec<_> = list.iter().filter(|i| i["status"] == "applied").collect();
    assert_eq!(applied.len(), 1, "one live change per key: {out}\n{list:?}");
    let blocked = list
        .iter()
        .find(|i| i["status"] == "blocked")
        .expect("the other area's change is blocked");
    assert!(
        blocked["reason"].as_str().unwrap().contains("area `cache`"),
        "{blocked}"
    );
    // A human sets the key back by hand: the revert would change nothing.
    let cfg = h
        .file("config/app.yaml")
        .replace("cache_mb: 256", "cache_mb: 128");
    std::fs::write(h.repo.join("config/app.yaml"), cfg).unwrap();
    git(&h.repo, &["commit", "-q", "-am", "human: back to 128"]);
    let out = h.ok(12, &["revert", "K-000001"]);
    assert!(out.contains("no-op"), "{out}");
    let iv = status_of(&h, 12, "K-000001");
    assert_eq!(iv["status"], "reverted", "{iv}");
    assert!(iv["revert_commit"].is_null(), "{iv}");
    let (code, report) = check(&h, 13, &[]);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn check_reports_each_planted_violation_and_repairs_only_the_unambiguous() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    apply_first(&h);
    let (code, report) = check(&h, 11, &[]);
    assert_eq!(code, Some(0), "clean to start with: {report}");
    assert!(report.contains("every invariant holds"), "{report}");

    let pid = dead_pid();
    // 2. A stuck transitional row.
    h.ledger_db()
        .execute(
            "UPDATE interventions SET pending = 'revert' WHERE id = 1",
            [],
        )
        .unwrap();
    // 3. A kaizen commit with no ledger row.
    git(
        &h.repo,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "kaizen: ghost\n\nKaizen-Intervention: K-000099",
        ],
    );
    let ghost = git_text(&h.repo, &["rev-parse", "HEAD"]).trim().to_string();
    // 1. A stale index.lock from a dead kaizen (planted after the commit: git refuses with it).
    let lock = h.repo.join(".git/index.lock");
    std::fs::write(
        &lock,
        format!("kaizen-lock v1\n{{\"pid\":{pid},\"op\":\"apply\"}}\n"),
    )
    .unwrap();
    // 4. A temp file kaizen left.
    let tmp = h.repo.join(format!("config/.app.yaml.kaizen-tmp-{pid}"));
    std::fs::write(&tmp, "half").unwrap();

    let (code, report) = check(&h, 12, &[]);
    assert_eq!(code, Some(1), "{report}");
    for want in [
        "repaired  stale_git_lock .git/index.lock",
        "VIOLATION stuck_pending K-000001",
        &format!("VIOLATION commit_without_row {ghost}"),
        &format!("repaired  temp_file config/.app.yaml.kaizen-tmp-{pid}"),
    ] {
        assert!(report.contains(want), "{want:?} in\n{report}");
    }
    assert!(
        !lock.exists() && !tmp.exists(),
        "the unambiguous ones are repaired"
    );
    // Recorded as events.
    let events = h.ok(12, &["events", "--kind", "invariant_violation"]);
    assert!(events.contains("commit_without_row"), "{events}");
    // The rest stays reported until a human (or reconciliation) deals with it.
    let (code, report) = check(&h, 13, &["--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        !report.contains("stale_git_lock") && report.contains("stuck_pending"),
        "{report}"
    );
}

#[test]
fn issue12_cron_cycles_check_hourly_and_walk_only_new_history() {
    // `kaizen cycle` from cron is a new engine every time: the full invariant check runs when
    // the last one (recorded in the ledger) is an hour old, not in every cycle, and the id
    // continuity check walks only the commits it has not seen.
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.ok(0, &["cycle"]);
    git(
        &h.repo,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "kaizen: ghost\n\nKaizen-Intervention: K-000099",
        ],
    );
    let out = h.ok(10, &["cycle"]);
    assert!(
        out.contains("names K-000099"),
        "the new commit is seen: {out}"
    );
    assert!(
        !out.contains("commit_without_row"),
        "checked 10 minutes ago: {out}"
    );
    let out = h.ok(61, &["cycle"]);
    assert!(out.contains("commit_without_row"), "an hour on: {out}");
    // The next hourly check walks nothing new: the commit found last time is kept with the
    // markers, so the violation stays open (no "0 invariant violation(s) open" recorded).
    h.ok(122, &["cycle"]);
    let checked = h.ok(123, &["events", "--kind", "invariants_checked"]);
    let words: Vec<&str> = checked.split_whitespace().collect();
    assert!(
        !words.windows(2).any(|w| w == ["0", "invariant"]),
        "the kept commit is still judged: {checked}"
    );
    // `kaizen check` always checks.
    let (_, report) = check(&h, 62, &[]);
    assert!(report.contains("commit_without_row"), "{report}");
}

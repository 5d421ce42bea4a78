//! Issue 10, "always on" (part 2): read-only commands beside a running daemon, sources sampled
//! concurrently, the quiet cycle's one line, a closed pipe, escalations with a life cycle,
//! humans noticed and visible suppression — each against a real git repo and the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;

use common::{Harness, RULE_GROW_CACHE, git, git_text};
use std::path::Path;
use std::process::{Command, Stdio};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits (bounded by a number of polls, not by a timing assertion) until `kaizen observe` says
/// the state lock is held by the daemon.
fn wait_for_lock(h: &Harness) {
    for _ in 0..600 {
        let out = h.kaizen_at(0, &["observe", "--wait", "0s"]);
        if out.status.code() == Some(75) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the daemon never took the state lock");
}

// Issue 10: `kaizen review` and `kaizen propose` refused to run while the daemon held the lock,
// though they only read. Every read-only command opens the ledger read-only and needs no lock.
#[test]
fn issue10_read_only_commands_work_while_the_daemon_holds_the_lock() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(0, 12, |_| 250.0);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .arg("run")
        .current_dir(&h.repo)
        .env_remove("KAIZEN_NOW")
        .env_remove("KAIZEN_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock(&h);
    let ledger = h.repo.join(".kaizen/ledger.sqlite");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["propose"],
        &["review"],
        &["interventions"],
        &["events", "--since", "7d"],
    ] {
        let out = h.kaizen_at(12, args);
        assert!(
            out.status.success(),
            "kaizen {args:?} beside the daemon: exit {:?}\n{}{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
    }
    // `propose` showed the candidate (the rule fires) without recording it.
    let out = h.kaizen_at(12, &["propose"]);
    assert!(
        stdout(&out).contains("grow-cache") || stdout(&out).contains("cache_mb"),
        "{}",
        stdout(&out)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "daemon exit {status:?}");
    // Nothing the read-only commands did was recorded at their instant.
    let n: i64 = rusqlite::Connection::open(&ledger)
        .unwrap()
        .query_row(
            "SELECT (SELECT COUNT(*) FROM interventions WHERE created_at = ?1) + \
             (SELECT COUNT(*) FROM events WHERE at = ?1)",
            [h.at(12).timestamp_millis()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

// A read-only open never writes, even when asked to by a bug: `query_only` refuses.
#[test]
fn read_only_ledger_refuses_writes_and_sees_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut writer = kaizen_core::ledger::Ledger::open(&path).unwrap();
    let at: chrono::DateTime<chrono::Utc> = "2026-03-02T08:00:00Z".parse().unwrap();
    writer
        .append(
            at,
            &kaizen_core::event::EngineEvent::SampleGap {
                source: "s".into(),
                message: "first".into(),
            },
        )
        .unwrap();
    let mut reader = kaizen_core::ledger::Ledger::open_read_only(&path).unwrap();
    assert!(
        reader
            .append(
                at,
                &kaizen_core::event::EngineEvent::SampleGap {
                    source: "s".into(),
                    message: "from a reader".into(),
                },
            )
            .is_err()
    );
    writer
        .append(
            at,
            &kaizen_core::event::EngineEvent::SampleGap {
                source: "s".into(),
                message: "second".into(),
            },
        )
        .unwrap();
    let seen: Vec<String> = reader
        .events_between(at - chrono::Duration::hours(1), at)
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(seen, ["gap: source `s`: first", "gap: source `s`: second"]);
    // No ledger yet: a read-only open fails instead of creating one.
    assert!(kaizen_core::ledger::Ledger::open_read_only(&dir.path().join("none.sqlite")).is_err());
}

/// A config with three command signals: `a_slow` and `b_slow` take a second each and write when
/// they start and end; `b_slow` then fails, `c_fast` fails at once.
fn three_sources(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("svc");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Test Human"]);
    git(&repo, &["config", "user.email", "human@example.invalid"]);
    let stamp = |name: &str| {
        let log = dir.join("stamps.log");
        format!(
            "echo {name} start $(date +%s%N) >> {log}; sleep 1; echo {name} end $(date +%s%N) >> {log}",
            log = log.display()
        )
    };
    let config = format!(
        r#"repo: .
mode: autonomous
state_dir: .kaizen
signals:
  a_slow:
    unit: ms
    better: lower
    source:
      command: "{a}; echo 5"
      timeout: 20s
  b_slow:
    unit: ms
    better: lower
    source:
      command: "{b}; exit 3"
      timeout: 20s
  c_fast:
    unit: ms
    better: lower
    source:
      command: "exit 4"
"#,
        a = stamp("a"),
        b = stamp("b"),
    );
    std::fs::write(repo.join("kaizen.yaml"), config).unwrap();
    std::fs::write(repo.join(".git/info/exclude"), "/.kaizen/\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    repo
}

// Issue 10: sources were sampled one after another, so one slow `/health` stretched every
// observe tick. Now they run at once: both slow sources start before either ends (read from the
// timestamps the source commands wrote, not from a wall-clock bound), and the gaps are recorded
// in the configured order, not the order they answered in.
#[test]
fn issue10_sources_are_sampled_concurrently_and_recorded_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let repo = three_sources(dir.path());
    let out = common::kaizen_in(&repo, &["observe", "--now", "2026-03-02T08:00:00Z"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let log = std::fs::read_to_string(dir.path().join("stamps.log")).unwrap();
    let at = |what: &str| -> u128 {
        log.lines()
            .find_map(|l| l.strip_prefix(what).map(|t| t.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{what} not in {log}"))
    };
    let (a0, a1, b0, b1) = (at("a start"), at("a end"), at("b start"), at("b end"));
    assert!(
        a0 < b1 && b0 < a1,
        "the two slow sources did not overlap:\n{log}"
    );
    let text = stdout(&out);
    assert!(text.contains("recorded 1 sample(s)"), "{text}");
    let b = text.find("`b_slow`").expect("b_slow's gap");
    let c = text.find("`c_fast`").expect("c_fast's gap");
    assert!(b < c, "gaps not in the configured order:\n{text}");
    // The ledger holds them in the same order.
    let events = common::kaizen_in(
        &repo,
        &[
            "events",
            "--kind",
            "sample_error",
            "--json",
            "--now",
            "2026-03-02T08:00:00Z",
        ],
    );
    let events: Vec<serde_json::Value> = serde_json::from_slice(&events.stdout).unwrap();
    let details: Vec<&str> = events
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details[0].contains("b_slow") && details[1].contains("c_fast"),
        "{details:?}"
    );
}

// Issue 10: `kaizen cycle` with nothing to do printed nothing.
#[test]
fn issue10_a_quiet_cycle_prints_one_summary_line() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.set_metric(0, 100.0);
    let out = h.ok(0, &["cycle"]);
    assert_eq!(
        out.trim(),
        "observed 1 signal; nothing due; nothing alerting",
        "{out}"
    );
    h.set_metric(1, 300.0); // alerting, but the rule wants 10 minutes of it
    let out = h.ok(1, &["cycle"]);
    assert_eq!(
        out.trim(),
        "observed 1 signal; nothing due; alerting: latency_ms",
        "{out}"
    );
}

// Issue 10: `kaizen interventions | head -1` through a real shell pipe exits 0, with more output
// than a pipe buffer holds (so kaizen is still writing when `head` goes away).
#[test]
fn issue10_interventions_piped_into_head_exits_0() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-180, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    let out = h.ok(10, &["cycle"]);
    assert!(out.contains("applied as commit"), "{out}");
    {
        let db = h.ledger_db();
        for _ in 0..11 {
            db.execute_batch(
                "INSERT INTO interventions(area, kind, title, hypothesis, change_json, prediction_json, \
                 risk, confidence, rollback, origin_json, targets, status, reason, created_at) \
                 SELECT area, kind, title, hypothesis, change_json, prediction_json, risk, confidence, \
                 rollback, origin_json, targets, 'blocked', reason, created_at FROM interventions",
            )
            .unwrap();
        }
    }
    let cmd = format!(
        "set -o pipefail; '{}' interventions --now {} | head -1",
        env!("CARGO_BIN_EXE_kaizen"),
        h.at(11).to_rfc3339()
    );
    let out = Command::new("bash")
        .args(["-c", &cmd])
        .current_dir(&h.repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let _ = git_text(&h.repo, &["log", "--oneline"]);
}

/// Applies grow-cache at +10m and feeds 34 minutes of unchanged latency, so the +45m cycle
/// judges "no effect" and wants to revert. Returns the intervention id and its commit.
fn applied_then_failing(h: &Harness) -> (String, String) {
    h.observe_range(-180, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    let out = h.ok(10, &["cycle"]);
    assert!(out.contains("applied as commit"), "{out}");
    let iv = h.interventions(10).last().cloned().unwrap();
    h.observe_range(11, 45, |_| 250.0);
    h.set_metric(45, 250.0);
    (
        iv["id"].as_str().unwrap().to_string(),
        iv["commit"].as_str().unwrap().to_string(),
    )
}

fn status_of(h: &Harness, minute: i64, id: &str) -> serde_json::Value {
    common::find(&h.interventions(minute), id).clone()
}

fn events_of_kind(h: &Harness, minute: i64, kind: &str) -> Vec<serde_json::Value> {
    let out = h.ok(
        minute,
        &["events", "--since", "30d", "--kind", kind, "--json"],
    );
    serde_json::from_str(&out).unwrap()
}

/// A human's uncommitted edit in the file kaizen must revert: the revert is refused.
fn dirty_the_target(h: &Harness) {
    let cfg = h.file("config/app.yaml");
    std::fs::write(
        h.repo.join("config/app.yaml"),
        cfg.replace("workers: 4", "workers: 6  # hand edit, not committed"),
    )
    .unwrap();
}

// Issue 10: after a refused revert kaizen printed "still refused (already escalated)" every
// 30 s, the intervention stayed `applied` forever and there was no way to close it. Now the
// escalation is one record: told once, re-told on a back-off (1 h, 2 h, …), never every cycle;
// `kaizen revert` says what to do; `kaizen resolve --kept` closes it with who and why.
#[test]
fn issue10_refused_revert_escalates_once_reminds_on_backoff_and_resolve_closes_it() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let (id, commit) = applied_then_failing(&h);
    dirty_the_target(&h);
    let out = h.kaizen_at(45, &["cycle"]);
    assert!(stderr(&out).contains("ESCALATION"), "{}", stderr(&out));
    assert_eq!(events_of_kind(&h, 45, "escalation").len(), 1);
    // Later cycles retry the revert but say nothing more until the back-off has passed.
    for m in [46, 50, 80] {
        h.set_metric(m, 250.0);
        let out = h.kaizen_at(m, &["cycle"]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.contains("still"), "+{m}m: {text}");
        assert!(!text.contains("ESCALATION"), "+{m}m: {text}");
        // Nor is the verdict recorded again each cycle: only the revert is retried.
        assert!(!text.contains("final look"), "+{m}m: {text}");
    }
    assert_eq!(events_of_kind(&h, 80, "verdict").len(), 1);
    assert_eq!(events_of_kind(&h, 80, "escalation_reminder").len(), 0);
    h.set_metric(106, 250.0);
    let out = h.kaizen_at(106, &["cycle"]); // 61 minutes after the escalation
    assert!(
        stderr(&out).contains("still needs a human"),
        "{}",
        stderr(&out)
    );
    assert_eq!(events_of_kind(&h, 106, "escalation_reminder").len(), 1);
    assert_eq!(events_of_kind(&h, 106, "escalation").len(), 1);
    // Status and its JSON list the open escalation.
    let status = h.ok(107, &["status"]);
    assert!(status.contains("open escalations: 1"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&h.ok(107, &["status", "--json"])).unwrap();
    let open = json["escalations_open"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{json}");
    assert_eq!(open[0]["intervention"], id.as_str());
    assert_eq!(open[0]["key"], format!("revert_refused {id}"));
    assert_eq!(open[0]["notifications"], 2);
    // It is shown held for a human, not as awaiting a validation long past due.
    let held = &json["awaiting_validation"][0];
    assert_eq!(held["id"], id.as_str(), "{json}");
    assert!(
        held["held_by"].as_str().unwrap().contains("uncommitted"),
        "{held}"
    );
    assert!(status.contains("held for a human"), "{status}");
    assert!(status.contains(&format!("kaizen resolve {id}")), "{status}");
    // `kaizen revert` on it: an actionable message, not a bare exit 1.
    let out = h.kaizen_at(107, &["revert", &id]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("kaizen resolve") && err.contains("--reverted"),
        "{err}"
    );
    // "reverted" while the change is still in effect is refused; "kept" closes it.
    let out = h.kaizen_env_at(
        108,
        &["resolve", &id, "--reverted", "--why", "x"],
        &[("USER", "alice")],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("still in effect"), "{}", stderr(&out));
    let head_before = git_text(&h.repo, &["rev-parse", "HEAD"]);
    let out = h.kaizen_env_at(
        108,
        &[
            "resolve",
            &id,
            "--kept",
            "--why",
            "the bigger cache stays; my edit is unrelated",
        ],
        &[("USER", "alice")],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let iv = status_of(&h, 108, &id);
    assert_eq!(iv["status"], "kept", "{iv}");
    // No commit was made; kaizen's change is still in the history and the file.
    assert_eq!(git_text(&h.repo, &["rev-parse", "HEAD"]), head_before);
    assert!(git_text(&h.repo, &["log", "--format=%H"]).contains(&commit));
    assert!(h.file("config/app.yaml").contains("cache_mb: 256"));
    let show = h.ok(108, &["show", &id]);
    for needle in [
        "resolved by alice (kept)",
        "the bigger cache stays",
        "escalation_closed",
    ] {
        assert!(show.contains(needle), "missing {needle:?} in:\n{show}");
    }
    let status = h.ok(109, &["status"]);
    assert!(!status.contains("open escalations"), "{status}");
    // The loop no longer retries or reminds.
    h.set_metric(300, 250.0);
    let out = h.kaizen_at(300, &["cycle"]);
    assert!(!stderr(&out).contains("ESCALATION"), "{}", stderr(&out));
    assert_eq!(events_of_kind(&h, 300, "escalation_reminder").len(), 1);
}

// Issue 10: kaizen resolves an escalation by itself when it sees the change undone in git.
#[test]
fn issue10_a_refused_revert_done_by_a_human_closes_by_itself() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let (id, commit) = applied_then_failing(&h);
    dirty_the_target(&h);
    h.kaizen_at(45, &["cycle"]);
    assert_eq!(events_of_kind(&h, 45, "escalation").len(), 1);
    // The human puts their edit aside and reverts kaizen's commit themselves.
    git(&h.repo, &["stash"]);
    git(&h.repo, &["revert", "--no-edit", &commit]);
    let human = git_text(&h.repo, &["rev-parse", "--short=10", "HEAD"]);
    h.set_metric(47, 250.0);
    let out = h.ok(47, &["cycle"]);
    assert!(
        out.contains(&format!("reverted by human commit {}", human.trim())),
        "{out}"
    );
    let iv = status_of(&h, 47, &id);
    assert_eq!(iv["status"], "reverted", "{iv}");
    assert!(
        iv["revert_commit"].is_null(),
        "a human's commit is not kaizen's revert: {iv}"
    );
    assert_eq!(events_of_kind(&h, 47, "escalation_closed").len(), 1);
    let json: serde_json::Value = serde_json::from_str(&h.ok(47, &["status", "--json"])).unwrap();
    assert_eq!(json["escalations_open"].as_array().unwrap().len(), 0);
    // Exactly one revert in the history: the human's; kaizen made none.
    let log = git_text(&h.repo, &["log", "--format=%s"]);
    assert_eq!(log.matches("Revert").count(), 1, "{log}");
}

/// A validated grow-cache (latency fell), with its id and commit.
fn validated(h: &Harness) -> (String, String) {
    let iv = common::run_round(h, 0, 150.0);
    assert_eq!(iv["status"], "validated", "{iv}");
    (
        iv["id"].as_str().unwrap().to_string(),
        iv["commit"].as_str().unwrap().to_string(),
    )
}

fn superseded_checks(h: &Harness, minute: i64, id: &str, needle: &str) {
    h.set_metric(minute, 150.0);
    let out = h.ok(minute, &["cycle"]);
    assert!(out.contains(needle), "{out}");
    let iv = status_of(h, minute, id);
    assert_eq!(iv["status"], "superseded", "{iv}");
    let show = h.ok(minute, &["show", id]);
    assert!(show.contains(needle), "{show}");
    assert!(show.contains("superseded"), "{show}");
    // Noticed once: the next cycle says nothing more about it.
    h.set_metric(minute + 1, 150.0);
    let out = h.ok(minute + 1, &["cycle"]);
    assert!(!out.contains(id), "{out}");
    assert_eq!(events_of_kind(h, minute + 1, "superseded").len(), 1);
    // Neither validated nor a rollback: no lesson is learned from it.
    assert!(
        h.ok(minute + 2, &["learn"])
            .lines()
            .all(|l| !l.contains(id))
    );
}

// Issue 10: an operator's own `git revert` of a validated kaizen commit left the intervention
// `validated` with no event.
#[test]
fn issue10_a_human_revert_of_a_validated_commit_is_noticed() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let (id, commit) = validated(&h);
    git(&h.repo, &["revert", "--no-edit", &commit]);
    let human = git_text(&h.repo, &["rev-parse", "--short=10", "HEAD"]);
    superseded_checks(
        &h,
        60,
        &id,
        &format!("superseded by human commit {}", human.trim()),
    );
    assert!(h.file("config/app.yaml").contains("cache_mb: 128"));
}

// Issue 10: a later human commit changing the same key ends the intervention.
#[test]
fn issue10_a_human_commit_overriding_the_key_is_noticed() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let (id, _) = validated(&h);
    let cfg = h.file("config/app.yaml");
    std::fs::write(
        h.repo.join("config/app.yaml"),
        cfg.replace("cache_mb: 256", "cache_mb: 512"),
    )
    .unwrap();
    git(&h.repo, &["commit", "-qam", "cache to 512 for the sale"]);
    let human = git_text(&h.repo, &["rev-parse", "--short=10", "HEAD"]);
    superseded_checks(
        &h,
        60,
        &id,
        &format!("superseded by human commit {}", human.trim()),
    );
    let show = h.ok(62, &["show", &id]);
    assert!(
        show.contains("256 → 512") && show.contains("cache to 512 for the sale"),
        "{show}"
    );
}

// Issue 10: a deleted target file ends an applied intervention's validation.
#[test]
fn issue10_a_deleted_target_file_ends_validation() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-180, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    assert!(h.ok(10, &["cycle"]).contains("applied as commit"));
    let id = h.interventions(10).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    git(&h.repo, &["rm", "-q", "config/app.yaml"]);
    git(
        &h.repo,
        &["commit", "-qm", "config moves to the service's own repo"],
    );
    let human = git_text(&h.repo, &["rev-parse", "--short=10", "HEAD"]);
    h.observe_range(11, 20, |_| 250.0);
    superseded_checks(
        &h,
        20,
        &id,
        &format!("superseded by human commit {}", human.trim()),
    );
    let show = h.ok(22, &["show", &id]);
    assert!(show.contains("config/app.yaml deleted"), "{show}");
    // Its validation ended: it is not awaiting validation, and no revert was attempted.
    let json: serde_json::Value = serde_json::from_str(&h.ok(60, &["status", "--json"])).unwrap();
    assert_eq!(
        json["awaiting_validation"].as_array().unwrap().len(),
        0,
        "{json}"
    );
    assert!(!git_text(&h.repo, &["log", "--format=%B"]).contains("Kaizen-Reverts"));
}

// Issue 10: a rule that kept alerting but was suppressed (dedup after an apply) said so only at
// debug level. Now `kaizen status`, its JSON (→ /health) and the quiet cycle line say what
// holds it and until when.
#[test]
fn issue10_a_suppressed_rule_is_visible_in_status() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-180, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    assert!(h.ok(10, &["cycle"]).contains("applied as commit"));
    // Still alerting while it awaits validation: the rule fires again, its change already in place.
    h.set_metric(11, 250.0);
    h.ok(11, &["cycle"]);
    let status = h.ok(12, &["status"]);
    assert!(
        status.contains("grow-cache: alerting, suppressed: already_applied"),
        "{status}"
    );
    // No effect: reverted at +45. The rule keeps firing and dedup holds it back for 2h after
    // the reverted one was made (+10m), i.e. until 10:10.
    h.observe_range(12, 45, |_| 250.0);
    h.set_metric(45, 250.0);
    h.ok(45, &["cycle"]);
    assert_eq!(h.interventions(45).last().unwrap()["status"], "reverted");
    h.set_metric(46, 250.0);
    let out = h.ok(46, &["cycle"]);
    let until = "2026-03-02T10:10:00Z";
    assert_eq!(
        out.trim(),
        format!(
            "observed 1 signal; nothing due; alerting: latency_ms (grow-cache suppressed: dedup until {until})"
        ),
        "{out}"
    );
    let status = h.ok(47, &["status"]);
    let want = format!("grow-cache: alerting, suppressed: dedup until {until}");
    assert!(status.contains(&want), "missing {want:?} in:\n{status}");
    let json: serde_json::Value = serde_json::from_str(&h.ok(47, &["status", "--json"])).unwrap();
    let s = &json["suppressed"][0];
    assert_eq!(s["rule"], "grow-cache", "{json}");
    assert_eq!(s["by"], "dedup");
    assert_eq!(s["alerting"], true);
    assert_eq!(s["until"], until);
    // Long after the rule stopped firing, nothing is shown as suppressed.
    let status = h.ok(300, &["status"]);
    assert!(!status.contains("suppressed:"), "{status}");
}

// A pause is a suppression too: the firing rule is shown held back by it.
#[test]
fn issue10_a_paused_rule_is_visible_in_status() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.ok(0, &["pause", "--why", "release freeze"]);
    h.observe_range(-180, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    let out = h.ok(10, &["cycle"]);
    assert!(!out.contains("applied as commit"), "{out}");
    let status = h.ok(11, &["status"]);
    assert!(
        status.contains("grow-cache: alerting, suppressed: pause")
            && status.contains("release freeze"),
        "{status}"
    );
    // Resumed, the change goes through and is no longer shown as suppressed.
    h.ok(12, &["resume"]);
    h.set_metric(12, 250.0);
    assert!(h.ok(12, &["cycle"]).contains("applied as commit"));
    let status = h.ok(13, &["status"]);
    assert!(!status.contains("suppressed: pause"), "{status}");
}

// While `kaizen run` holds the lock, `kaizen resolve` is queued in the ledger (recorded with who
// and why) instead of failing busy; the loop carries it out.
#[test]
fn issue10_resolve_beside_the_daemon_is_queued() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-180, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    assert!(h.ok(10, &["cycle"]).contains("applied as commit"));
    let id = h.interventions(10).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .arg("run")
        .current_dir(&h.repo)
        .env_remove("KAIZEN_NOW")
        .env_remove("KAIZEN_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock(&h);
    let out = h.kaizen_env_at(
        11,
        &["resolve", &id, "--kept", "--why", "keeping it"],
        &[("USER", "bob")],
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("queued"), "{}", stdout(&out));
    assert_eq!(events_of_kind(&h, 11, "resolve_requested").len(), 1);
    // Whoever holds the lock next carries it out, exactly once: the daemon when one of its ticks
    // came after the request (it runs on the wall clock, so under load it may), else the next
    // cycle.
    h.set_metric(12, 100.0);
    let out = h.ok(12, &["cycle"]);
    // The daemon's events carry wall-clock times, months after the harness's clock: look from
    // an hour past the wall clock back over both.
    let later = (chrono::Utc::now() - h.at(0)).num_minutes() + 60;
    let listed = h.ok(
        later,
        &["events", "--since", "366d", "--kind", "resolved", "--json"],
    );
    let resolved: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(resolved.len(), 1, "{out}\n{resolved:?}");
    let by_daemon = !out.contains("resolved by bob (kept): keeping it");
    if by_daemon {
        assert!(
            resolved[0].to_string().contains("keeping it"),
            "{out}\n{resolved:?}"
        );
    }
    assert_eq!(status_of(&h, 12, &id)["status"], "kept");
}

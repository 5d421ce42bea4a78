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

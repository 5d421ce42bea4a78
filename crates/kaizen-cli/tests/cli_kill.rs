//! The kill harness (issue 9): the real binary, built with the `failpoints` feature, is stopped at
//! every named failpoint ([`failpoint::NAMES`]) in turn, restarted, and the invariants are checked:
//! ledger and git agree (`kaizen check` exits 0: every recorded commit is on a branch, every
//! trailer has its row), nothing is applied twice, every applied intervention ends validated or
//! reverted, tree and index are clean, and no lock or temp file is left.
//!
//! A fired failpoint ends the process without running destructors, as a kill does. CI runs one
//! pass (each failpoint killed once, in the first scenario variant that reaches it). The full run
//! kills at each failpoint in every variant, in each step of the scenario separately (so the
//! commit of an apply, of a revert and of a lesson are each killed), at its first `N` hits in
//! that process:
//!
//! ```sh
//! KAIZEN_KILL_ITERATIONS=3 cargo test -p kaizen-cli --test cli_kill -- --nocapture
//! ```
//!
//! and prints the kill count per failpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;
use kaizen_core::failpoint;
use std::path::Path;

/// Scenario variants: latency after the change (regressed → reverted by validation, improved →
/// validated, unchanged → no effect, no samples at all (NaN: a gap) → inconclusive, extended).
const VARIANTS: &[(&str, f64)] = &[
    ("regressed", 400.0),
    ("validated", 120.0),
    ("unchanged", 250.0),
    ("gap", f64::NAN),
];

/// The commands of one scenario: apply, judge (revert or validate), learn, then cycles until
/// every extension has run out.
const STEPS: &[(i64, &[&str])] = &[
    (10, &["cycle"]),
    (45, &["cycle"]),
    (50, &["learn"]),
    (80, &["cycle"]),
    (110, &["cycle"]),
    (140, &["cycle"]),
    (170, &["cycle"]),
];

/// Inserts one sample a minute for `from..to` (the binary's own `observe` would take a process
/// per sample; the ledger is the same SQLite file either way).
fn seed(h: &Harness, from: i64, to: i64, level: f64) {
    let mut db = h.ledger_db();
    let tx = db.transaction().unwrap();
    for m in from..to {
        tx.execute(
            "INSERT OR REPLACE INTO samples(signal, at, value) VALUES ('latency_ms', ?1, ?2)",
            rusqlite::params![h.at(m).timestamp_millis(), Harness::noisy(level, m)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn kaizen_files_left(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            kaizen_files_left(&p, out);
        } else if name.contains(".kaizen-tmp-")
            || name == "index.lock"
            || (p.to_string_lossy().contains("refs/heads") && name.ends_with(".lock"))
        {
            out.push(p.display().to_string());
        }
    }
}

/// Every invariant the harness promises, after the scenario ran to its end.
fn assert_invariants(h: &Harness, label: &str) {
    let out = h.kaizen_at(200, &["check"]);
    assert!(
        out.status.success(),
        "{label}: kaizen check failed ({:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        git_text(&h.repo, &["status", "--porcelain", "--untracked-files=all"]),
        "",
        "{label}: tree and index clean"
    );
    let mut left = Vec::new();
    kaizen_files_left(&h.repo, &mut left);
    assert!(left.is_empty(), "{label}: left behind: {left:?}");
    // Nothing applied twice: each intervention id has at most one apply commit, on any branch.
    let log = git_text(
        &h.repo,
        &[
            "log",
            "--all",
            "--format=%(trailers:key=Kaizen-Intervention,valueonly,separator=)|%(trailers:key=Kaizen-Reverts,valueonly,separator=)",
        ],
    );
    let mut applies: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(id, reverts)| !id.is_empty() && reverts.is_empty())
        .map(|(id, _)| id)
        .collect();
    let n = applies.len();
    applies.sort();
    applies.dedup();
    assert_eq!(
        applies.len(),
        n,
        "{label}: an intervention applied twice: {log}"
    );
    // Every applied intervention ended validated or reverted, with its commits recorded.
    for iv in h.interventions(200) {
        let status = iv["status"].as_str().unwrap();
        assert!(
            !matches!(status, "applied" | "proposed"),
            "{label}: {} still {status}: {iv}",
            iv["id"]
        );
        if matches!(status, "validated" | "reverted") {
            assert!(iv["commit"].is_string(), "{label}: no commit: {iv}");
        }
    }
}

/// Runs one scenario with `point` armed for its `nth` hit in a process — in every step until it
/// fires once, or (`only`) in that step alone; returns whether it fired.
fn run(point: &str, nth: u32, variant: usize, only: Option<usize>) -> bool {
    let (name, post) = VARIANTS[variant];
    let label = format!("{point}:{nth} in `{name}` (step {only:?})");
    let h = Harness::new(RULE_GROW_CACHE, "notify:\n  - command: \"true\"\n");
    h.use_simple_validator();
    h.ok(-200, &["observe"]);
    seed(&h, -199, 10, 250.0);
    if post.is_finite() {
        seed(&h, 11, 46, post);
    }
    seed(&h, 46, 201, 100.0);
    let arm = format!("{point}:{nth}");
    let mut killed = false;
    for (step, (minute, args)) in STEPS.iter().enumerate() {
        h.set_metric(
            *minute,
            if *minute <= 10 {
                250.0
            } else if *minute <= 45 {
                post
            } else {
                100.0
            },
        );
        if killed || only.is_some_and(|o| o != step) {
            h.ok(*minute, args);
            continue;
        }
        let out = h.kaizen_env_at(*minute, args, &[(failpoint::ENV, &arm)]);
        match out.status.code() {
            Some(0) => {}
            Some(c) if c == failpoint::EXIT_CODE => {
                killed = true;
                // Restarted: the same command again, as cron or systemd would.
                h.ok(*minute, args);
            }
            other => panic!(
                "{label}: kaizen {args:?} at +{minute}m exited {other:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    assert_invariants(&h, &label);
    killed
}

/// How many hits per failpoint the full run kills at (`KAIZEN_KILL_ITERATIONS`; CI: reduced).
fn iterations() -> Option<u32> {
    std::env::var("KAIZEN_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n >= 1)
}

fn harness(points: &[&str]) {
    let full = iterations();
    let mut table = Vec::new();
    for point in points {
        let mut kills = 0u32;
        let mut runs = 0u32;
        match full {
            None => {
                for v in 0..VARIANTS.len() {
                    runs += 1;
                    if run(point, 1, v, None) {
                        kills += 1;
                        break;
                    }
                }
            }
            Some(n) => {
                for v in 0..VARIANTS.len() {
                    for step in 0..STEPS.len() {
                        for nth in 1..=n {
                            runs += 1;
                            if run(point, nth, v, Some(step)) {
                                kills += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            kills > 0,
            "failpoint {point} was never reached by the scenarios"
        );
        table.push(format!("{point}: {kills} kill(s) in {runs} run(s)"));
    }
    eprintln!("kill harness:\n  {}", table.join("\n  "));
}

/// The failpoints in `NAMES` whose name starts with one of `prefixes`.
fn points(prefixes: &[&str]) -> Vec<&'static str> {
    failpoint::NAMES
        .iter()
        .copied()
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect()
}

#[test]
fn every_failpoint_is_in_one_of_the_groups() {
    let grouped = [
        points(&["propose.", "guard.", "apply.", "ledger.mark_applied"]),
        points(&["git."]),
        points(&[
            "revert.",
            "validate.",
            "ledger.mark_reverted",
            "learn.",
            "notify.",
        ]),
        // Killed by `cli_switchback.rs` (a switchback needs its own area and cadence).
        points(&["switchback."]),
        // Killed by `kill_in_a_retention_fold_and_restart` below.
        points(&["ledger.fold."]),
    ]
    .concat();
    for n in failpoint::NAMES {
        assert!(grouped.contains(n), "{n} is in no kill-harness group");
    }
}

#[test]
fn kill_at_every_apply_failpoint_and_restart() {
    harness(&points(&[
        "propose.",
        "guard.",
        "apply.",
        "ledger.mark_applied",
    ]));
}

#[test]
fn kill_at_every_git_failpoint_and_restart() {
    harness(&points(&["git."]));
}

#[test]
fn kill_at_every_revert_validate_learn_notify_failpoint_and_restart() {
    harness(&points(&[
        "revert.",
        "validate.",
        "ledger.mark_reverted",
        "learn.",
        "notify.",
    ]));
}

/// A kill inside a retention fold (the hourly aggregates written, the raw rows not yet deleted)
/// and the cron line again: every sample past `retention.raw` is counted in the aggregates
/// exactly once and none is left raw — the fold is one transaction, so the kill leaves nothing
/// of it.
#[test]
fn kill_in_a_retention_fold_and_restart() {
    let h = Harness::new(RULE_GROW_CACHE, "retention:\n  raw: 14d\n  hourly: 366d\n");
    h.ok(-1, &["observe"]);
    // Two days of 5-minute samples three weeks back: past the 14 days raw samples are kept.
    let old: Vec<i64> = (0..2 * 288).map(|k| -21 * 1440 + 5 * k).collect();
    {
        let mut db = h.ledger_db();
        let tx = db.transaction().unwrap();
        for &m in &old {
            tx.execute(
                "INSERT OR REPLACE INTO samples(signal, at, value) VALUES ('latency_ms', ?1, ?2)",
                rusqlite::params![h.at(m).timestamp_millis(), Harness::noisy(100.0, m)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let point = "ledger.fold.after_aggregate";
    assert!(failpoint::NAMES.contains(&point));
    h.set_metric(0, 100.0);
    let out = h.kaizen_env_at(0, &["cycle"], &[(failpoint::ENV, point)]);
    assert_eq!(
        out.status.code(),
        Some(failpoint::EXIT_CODE),
        "{point} was not reached: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing of the killed fold is left: no aggregate, every old sample still raw.
    let count = |sql: &str| -> i64 { h.ledger_db().query_row(sql, [], |r| r.get(0)).unwrap() };
    let cut = h.at(-14 * 1440).timestamp_millis();
    let raw_old = format!("SELECT COUNT(*) FROM samples WHERE at < {cut}");
    assert_eq!(count(&raw_old), old.len() as i64);
    assert_eq!(count("SELECT COUNT(*) FROM samples_hourly"), 0);
    // Restarted: the same cron line folds them, once.
    h.ok(0, &["cycle"]);
    h.ok(5, &["cycle"]);
    assert_eq!(count(&raw_old), 0);
    assert_eq!(
        count("SELECT COALESCE(SUM(n), 0) FROM samples_hourly"),
        old.len() as i64
    );
    h.ok(10, &["check"]);
}

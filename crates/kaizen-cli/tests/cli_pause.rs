//! Issue 10, emergency stop at the CLI: `kaizen pause` / `kaizen resume` and the `PAUSE` /
//! `PAUSE.<area>` files, global and per area. While paused the due change is not applied and
//! the cycle says so (an `apply_skipped` event, `kaizen status`, `kaizen health`); after the
//! resume the next cycle applies it — checked with the `git` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

/// The grow-cache rule on a short window, so a dozen minutes of samples make it due.
fn repo() -> Harness {
    let rule = RULE_GROW_CACHE
        .replace("for: 10m", "for: 5m")
        .replace("within: 30m", "within: 10m");
    let h = Harness::new(&rule, "");
    h.observe_range(0, 12, |_| 250.0);
    h
}

fn commits(h: &Harness) -> usize {
    git_text(&h.repo, &["rev-list", "--count", "HEAD"])
        .trim()
        .parse()
        .unwrap()
}

/// Pauses with `pause`, checks a due cycle applies nothing and says `says`, lifts the pause with
/// `resume`, checks the next cycle applies the change.
fn paused_then_resumed(
    pause: impl Fn(&Harness),
    says: &str,
    global: bool,
    resume: impl Fn(&Harness),
) {
    let h = repo();
    let before = commits(&h);
    pause(&h);

    h.set_metric(12, 250.0);
    let out = h.ok(12, &["cycle"]);
    assert!(
        out.contains(says),
        "the cycle says it applied nothing:\n{out}"
    );
    assert!(!out.contains("applied as commit"), "{out}");
    assert_eq!(commits(&h), before, "no commit while paused");
    assert!(h.file("config/app.yaml").contains("cache_mb: 128"));
    assert!(
        h.interventions(12).is_empty(),
        "nothing recorded to apply later"
    );
    let skipped = h.ok(12, &["events", "--kind", "apply_skipped"]);
    assert!(skipped.contains(says), "{skipped}");
    let status = h.ok(12, &["status"]);
    let health: serde_json::Value = serde_json::from_str(&h.ok(12, &["health", "--json"])).unwrap();
    if global {
        assert!(status.contains("PAUSED:"), "{status}");
        assert_eq!(health["status"], "paused", "{health:#}");
    } else {
        assert!(status.contains("paused: area `cache`"), "{status}");
        assert_ne!(health["status"], "paused", "{health:#}");
        assert!(health["paused"]["areas"]["cache"].is_object(), "{health:#}");
    }
    assert!(
        health["why"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("paused")),
        "/health says why: {health:#}"
    );

    resume(&h);
    h.set_metric(13, 250.0);
    let out = h.ok(13, &["cycle"]);
    assert!(
        out.contains("applied as commit"),
        "resumed, the change goes in:\n{out}"
    );
    assert_eq!(commits(&h), before + 1);
    assert!(h.file("config/app.yaml").contains("cache_mb: 256"));
    let log = git_text(&h.repo, &["log", "-1", "--format=%s%n%b"]);
    assert!(log.contains("cache_mb"), "{log}");
    let health: serde_json::Value = serde_json::from_str(&h.ok(13, &["health", "--json"])).unwrap();
    assert_ne!(health["status"], "paused", "{health:#}");
}

#[test]
fn pause_command_stops_applying_until_resume() {
    paused_then_resumed(
        |h| {
            let out = h.ok(11, &["pause", "--why", "incident 42"]);
            assert!(out.contains("paused"), "{out}");
        },
        "not applied, kaizen is paused: incident 42",
        true,
        |h| {
            h.ok(12, &["resume"]);
        },
    );
}

#[test]
fn pause_command_for_one_area_stops_only_that_area() {
    paused_then_resumed(
        |h| {
            h.ok(
                11,
                &["pause", "--area", "cache", "--why", "cache migration"],
            );
        },
        "not applied, area `cache` is paused: cache migration",
        false,
        |h| {
            // Lifting another area's pause changes nothing; this one's does.
            h.ok(12, &["resume", "--area", "db"]);
            h.ok(12, &["resume", "--area", "cache"]);
        },
    );
}

#[test]
fn pause_file_written_by_hand_stops_applying_until_removed() {
    paused_then_resumed(
        |h| {
            std::fs::write(h.repo.join(".kaizen/PAUSE"), "maintenance window\n").unwrap();
        },
        "not applied, kaizen is paused: maintenance window",
        true,
        |h| {
            std::fs::remove_file(h.repo.join(".kaizen/PAUSE")).unwrap();
        },
    );
}

#[test]
fn area_pause_file_written_by_hand_stops_only_that_area() {
    paused_then_resumed(
        |h| {
            std::fs::write(h.repo.join(".kaizen/PAUSE.cache"), "resizing\n").unwrap();
        },
        "not applied, area `cache` is paused: resizing",
        false,
        |h| {
            std::fs::remove_file(h.repo.join(".kaizen/PAUSE.cache")).unwrap();
        },
    );
}

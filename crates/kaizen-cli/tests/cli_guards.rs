//! Guards through the binary: each blocks (or parks) when it should and passes otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

/// A second rule on the same signal, in another area and file.
const RULE_MORE_WORKERS: &str = r#"  - id: more-workers
    area: workers
    when: { signal: latency_ms, above: 200, for: 10m }
    change:
      - config_set: { file: config/server.yaml, key: workers, value: 8 }
    predict: { signal: latency_ms, change: "-10%", within: 30m }
    risk: low
    confidence: 0.5
    rollback: revert
    because: "requests queue behind busy workers"
"#;

fn fire(h: &Harness) -> Vec<serde_json::Value> {
    h.observe_range(-15, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    h.ok(10, &["cycle"]);
    h.interventions(10)
}

fn status_of(list: &[serde_json::Value], area: &str) -> (String, String) {
    let iv = list
        .iter()
        .find(|v| v["area"] == area)
        .unwrap_or_else(|| panic!("no {area} in {list:?}"));
    (
        iv["status"].as_str().unwrap_or_default().to_string(),
        iv["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn medium_risk_without_canary_goes_to_backlog_never_applied() {
    let h = Harness::new(&RULE_GROW_CACHE.replace("risk: low", "risk: medium"), "");
    let list = fire(&h);
    let (status, reason) = status_of(&list, "cache");
    assert_eq!(status, "backlog");
    assert!(reason.contains("canary"), "{reason}");
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

#[test]
fn medium_risk_with_a_passing_canary_is_applied_and_a_failing_one_blocks() {
    let pass = Harness::new(
        &RULE_GROW_CACHE.replace("risk: low", "risk: medium"),
        "canaries:\n  cache:\n    command: \"test -n \\\"$KAIZEN_INTERVENTION\\\"\"\n",
    );
    let list = fire(&pass);
    assert_eq!(status_of(&list, "cache").0, "applied", "{list:?}");

    let fail = Harness::new(
        &RULE_GROW_CACHE.replace("risk: low", "risk: high"),
        "canaries:\n  cache:\n    command: \"echo canary saw errors >&2; exit 3\"\n",
    );
    let list = fire(&fail);
    let (status, reason) = status_of(&list, "cache");
    assert_eq!(status, "blocked");
    assert!(reason.contains("canary failed"), "{reason}");
    assert_eq!(
        git_text(&fail.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

#[test]
fn blocked_paths_and_kinds() {
    let rule = RULE_GROW_CACHE.replace("file: config/app.yaml", "file: secrets/db.yaml");
    let h = Harness::new(&rule, "");
    let (status, reason) = status_of(&fire(&h), "cache");
    assert_eq!(status, "blocked");
    assert!(reason.contains("blocked_paths"), "{reason}");

    let rule = RULE_GROW_CACHE.replace("file: config/app.yaml", "file: kaizen.yaml");
    let h = Harness::new(&rule, "");
    let (status, reason) = status_of(&fire(&h), "cache");
    assert_eq!(status, "blocked", "kaizen may not edit its own config");
    assert!(reason.contains("kaizen.yaml"), "{reason}");

    let h = Harness::new(RULE_GROW_CACHE, "");
    h.edit_config(
        "  canary_required_from: medium\n",
        "  canary_required_from: medium\n  blocked_kinds: [config_set]\n",
    );
    let (status, reason) = status_of(&fire(&h), "cache");
    assert_eq!(status, "blocked");
    assert!(reason.contains("blocked_kinds"), "{reason}");
}

#[test]
fn max_concurrent_and_daily_budget() {
    let rules = format!("{RULE_GROW_CACHE}{RULE_MORE_WORKERS}");
    let h = Harness::new(&rules, "");
    h.add_file(
        "config/server.yaml",
        "workers: 4
",
    );
    h.edit_config("max_concurrent: 2", "max_concurrent: 1");
    let list = fire(&h);
    assert_eq!(status_of(&list, "cache").0, "applied");
    let (status, reason) = status_of(&list, "workers");
    assert_eq!(status, "blocked");
    assert!(reason.contains("max_concurrent"), "{reason}");
    // The rule keeps firing while the slot is taken: counted on its row, not a new row a cycle.
    for minute in [15, 20, 25] {
        h.set_metric(minute, 250.0);
        h.ok(minute, &["cycle"]);
    }
    let list = h.interventions(25);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(status_of(&list, "workers").0, "blocked");

    let h = Harness::new(&rules, "");
    h.add_file(
        "config/server.yaml",
        "workers: 4
",
    );
    h.edit_config("daily_budget: 5", "daily_budget: 1");
    let list = fire(&h);
    assert_eq!(status_of(&list, "cache").0, "applied");
    let (status, reason) = status_of(&list, "workers");
    assert_eq!(status, "blocked");
    assert!(reason.contains("daily budget 1 used"), "{reason}");
    for minute in [15, 20, 25] {
        h.set_metric(minute, 250.0);
        h.ok(minute, &["cycle"]);
    }
    assert_eq!(h.interventions(25).len(), 2, "one row per parked change");
    let list = h.interventions(25);
    let id = list.iter().find(|v| v["area"] == "workers").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown: serde_json::Value =
        serde_json::from_str(&h.ok(25, &["show", &id, "--json"])).unwrap();
    assert_eq!(shown["repeats"], 3, "{shown}");
}

#[test]
fn dedup_blocks_the_same_change_and_repeats_are_not_rerecorded() {
    let second = RULE_GROW_CACHE
        .replace("id: grow-cache", "id: grow-cache-again")
        .replace("value: 256", "value: 512");
    let h = Harness::new(&format!("{RULE_GROW_CACHE}{second}"), "");
    let list = fire(&h);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["status"], "applied");
    assert_eq!(list[1]["status"], "blocked");
    assert!(
        list[1]["reason"].as_str().unwrap().contains("dedup"),
        "{}",
        list[1]
    );
    // A rule that keeps firing while its change is live is not re-recorded every cycle.
    h.set_metric(11, 250.0);
    h.ok(11, &["cycle"]);
    assert_eq!(h.interventions(11).len(), 2);
}

#[test]
fn a_revert_that_would_clobber_a_human_edit_escalates_and_notifies() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let log = h.dir.path().join("notifications.log");
    let cfg = format!(
        "{}notify:\n  - command: \"echo \\\"$KAIZEN_NOTIFY_KIND $KAIZEN_INTERVENTION\\\" >> {}\"\n",
        h.file("kaizen.yaml"),
        log.display()
    );
    std::fs::write(h.repo.join("kaizen.yaml"), cfg).unwrap();
    git(&h.repo, &["commit", "-q", "-am", "notify"]);
    h.observe_range(-30, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    h.ok(10, &["cycle"]);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("applied K-000001")
    );
    // A human edits the file while the change is being judged; the change does nothing.
    let human = "cache_mb: 512 # human tuning in progress\n";
    std::fs::write(h.repo.join("config/app.yaml"), human).unwrap();
    h.observe_range(11, 45, |_| 250.0);
    h.set_metric(45, 250.0);
    let out = h.kaizen_at(45, &["cycle"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ESCALATION"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stopped, recorded, escalated: the human's work is intact, the change stays applied.
    assert_eq!(h.file("config/app.yaml"), human);
    let list = h.interventions(45);
    assert_eq!(list[0]["status"], "applied", "{}", list[0]);
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&h.ok(46, &["events", "--json", "--kind", "escalation"])).unwrap();
    assert!(!events.is_empty());
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap()
            .contains("uncommitted"),
        "{events:?}"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("escalation K-000001")
    );
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "3",
        "no revert commit was made"
    );
}

#[test]
fn shadow_mode_records_and_never_commits_manual_mode_waits_for_apply() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.edit_config("mode: autonomous", "mode: shadow");
    let list = fire(&h);
    assert_eq!(list[0]["status"], "proposed", "{list:?}");
    assert!(h.ok(10, &["show", "K-000001"]).contains("shadow mode"));
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "2"
    );

    let h = Harness::new(RULE_GROW_CACHE, "");
    h.edit_config("mode: autonomous", "mode: manual");
    let list = fire(&h);
    assert_eq!(list[0]["status"], "proposed");
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "2"
    );
    let out = h.ok(11, &["apply", "K-000001"]);
    assert!(out.contains("applied as commit"), "{out}");
    assert_eq!(h.interventions(11)[0]["status"], "applied");
    assert!(h.file("config/app.yaml").contains("cache_mb: 256"));
    // A second approval is refused.
    assert_eq!(
        h.kaizen_at(12, &["apply", "K-000001"]).status.code(),
        Some(1)
    );
}

#[test]
fn status_shows_signals_pending_changes_and_budget() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let before = h.ok(-20, &["status"]);
    assert!(
        before.contains("no sample yet") && before.contains("daily budget: 5 of 5 left"),
        "{before}"
    );
    fire(&h);
    let out = h.ok(11, &["status"]);
    assert!(out.contains("ALERT"), "{out}");
    assert!(
        out.contains("awaiting validation: 1") && out.contains("K-000001"),
        "{out}"
    );
    assert!(out.contains("daily budget: 4 of 5 left"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&h.ok(11, &["status", "--json"])).unwrap();
    assert_eq!(json["budget_left"], 4);
    assert_eq!(json["signals"][0]["alerting"], true);
}

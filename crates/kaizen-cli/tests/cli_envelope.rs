//! The safety envelope through the binary: declared tunables refuse out-of-envelope changes,
//! each refusal naming the knob, the bound and the value.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

const TUNABLES: &str = r#"tunables:
  strict: true
  cache_mb: { file: config/app.yaml, key: cache_mb, type: int, min: 16, max: 1024, max_step: 2x }
  workers:  { file: config/app.yaml, type: int, min: 1, max: 32 }
  policy:   { file: config/svc.yaml, key: cache.policy, type: enum, allowed: [lru, lfu] }
invariants:
  - "workers * cache_mb <= 2048"
"#;

/// A rule in its own area (so dedup never interferes) setting `key` in `file` to `value`.
fn rule(id: &str, file: &str, key: &str, value: &str) -> String {
    format!(
        r#"  - id: {id}
    area: {id}
    when: {{ signal: latency_ms, above: 200 }}
    change:
      - config_set: {{ file: {file}, key: {key}, value: {value} }}
    predict: {{ signal: latency_ms, change: "-20%", within: 30m }}
    risk: low
    confidence: 0.6
    rollback: revert
    because: "test"
"#
    )
}

fn reason_of(list: &[serde_json::Value], area: &str) -> (String, String) {
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
fn each_envelope_refusal_names_the_knob_bound_and_value() {
    let rules = [
        rule("bounds", "config/app.yaml", "cache_mb", "2048"),
        rule("step", "config/app.yaml", "cache_mb", "512"),
        rule("enum", "config/svc.yaml", "cache.policy", "fifo"),
        rule("invariant", "config/app.yaml", "workers", "32"),
        rule("strict", "config/app.yaml", "threads", "8"),
    ]
    .concat();
    let h = Harness::new(&rules, TUNABLES);
    h.add_file("config/svc.yaml", "cache:\n  policy: lru  # eviction\n");
    h.set_metric(0, 250.0);
    h.ok(0, &["cycle"]);
    let list = h.interventions(0);
    let expect = [
        ("bounds", "knob `cache_mb`: 2048 is above max 1024"),
        (
            "step",
            "knob `cache_mb`: 128 → 512 is a step of 4x, above max_step 2x",
        ),
        (
            "enum",
            "knob `policy`: \"fifo\" is not one of the allowed values [lru, lfu]",
        ),
        (
            "invariant",
            "invariant `workers * cache_mb <= 2048` broken with cache_mb=128, workers=32",
        ),
        (
            "strict",
            "`threads` in config/app.yaml is not a declared tunable (tunables.strict: true)",
        ),
    ];
    for (area, why) in expect {
        let (status, reason) = reason_of(&list, area);
        assert_eq!(status, "blocked", "{area}: {reason}");
        assert!(
            reason.contains(&format!("envelope: {why}")),
            "{area}: {reason}"
        );
    }
    // Nothing was committed; `kaizen show` lists the envelope's verdict.
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "2"
    );
    let id = list
        .iter()
        .find(|v| v["area"] == "bounds")
        .and_then(|v| v["id"].as_str())
        .unwrap()
        .to_string();
    let shown = h.ok(0, &["show", &id]);
    assert!(shown.contains("envelope"), "{shown}");
    assert!(shown.contains("2048 is above max 1024"), "{shown}");
}

#[test]
fn the_envelope_file_is_blocked_and_a_bad_invariant_is_a_config_error() {
    // A separate tunables.yaml is itself a blocked path.
    let h = Harness::new(
        &rule("sneaky", "tunables.yaml", "tunables.cache_mb.max", "99999"),
        "tunables: tunables.yaml\n",
    );
    h.add_file("tunables.yaml", TUNABLES);
    h.set_metric(0, 250.0);
    h.ok(0, &["cycle"]);
    let list = h.interventions(0);
    let (status, reason) = reason_of(&list, "sneaky");
    assert_eq!(status, "blocked");
    assert!(reason.contains("blocked_paths"), "{reason}");
    // A blocked file is never read to resolve the change: nothing of it reaches the ledger.
    let id = list[0]["id"].as_str().unwrap().to_string();
    let shown = h.ok(0, &["show", &id, "--json"]);
    assert!(!shown.contains("\"resolved\""), "{shown}");

    let bad = TUNABLES.replace("workers * cache_mb", "workers * cache_mib");
    std::fs::write(h.repo.join("tunables.yaml"), bad).unwrap();
    let out = h.kaizen_at(1, &["propose"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tunables.yaml:7")
            && err.contains("invariants[0]")
            && err.contains("column 11: unknown knob `cache_mib`"),
        "{err}"
    );
}

#[test]
fn relative_changes_on_yaml_json_toml_keep_comments_and_print_old_to_new() {
    let rules = [
        rule("yaml", "config/app.yaml", "cache_mb", "\"*1.5\""),
        rule("json", "config/limits.json", "queue.depth", "\"+64\""),
        rule("toml", "config/pool.toml", "pool.size", "\"-10%\""),
    ]
    .concat();
    let h = Harness::new(&rules, "");
    h.edit_config("max_concurrent: 2", "max_concurrent: 3");
    h.add_file(
        "config/limits.json",
        "{\n  \"queue\": {\n    \"depth\": 128\n  },\n  \"z\": true\n}\n",
    );
    h.add_file(
        "config/pool.toml",
        "# pool settings\n[pool]\nsize = 10 # connections\n",
    );
    // Half an hour of 5-minute samples: the baseline the validator will judge against.
    for m in (-30..0).step_by(5) {
        h.set_metric(m, 250.0);
        h.ok(m, &["observe"]);
    }
    h.set_metric(0, 250.0);
    let out = h.ok(0, &["cycle"]);
    assert_eq!(out.matches("applied as commit").count(), 3, "{out}");
    assert_eq!(
        h.file("config/app.yaml"),
        "# app config\ncache_mb: 192  # MiB\nworkers: 4\n"
    );
    assert_eq!(
        h.file("config/pool.toml"),
        "# pool settings\n[pool]\nsize = 9 # connections\n"
    );
    let json: serde_json::Value = serde_json::from_str(&h.file("config/limits.json")).unwrap();
    assert_eq!(json["queue"]["depth"], 192);
    let log = git_text(&h.repo, &["log", "--format=%B"]);
    for line in [
        "- set cache_mb 128 → 192 (*1.5) in config/app.yaml",
        "- set queue.depth 128 → 192 (+64) in config/limits.json",
        "- set pool.size 10 → 9 (-10%) in config/pool.toml",
    ] {
        assert!(log.contains(line), "{line} not in:\n{log}");
    }
    let list = h.interventions(0);
    let id = list
        .iter()
        .find(|v| v["area"] == "yaml")
        .and_then(|v| v["id"].as_str())
        .unwrap()
        .to_string();
    let shown = h.ok(0, &["show", &id]);
    assert!(
        shown.contains("set cache_mb 128 → 192 (*1.5) in config/app.yaml"),
        "{shown}"
    );
}

#[test]
fn a_change_already_in_place_is_already_applied_without_commit_or_budget() {
    let h = Harness::new(&rule("same", "config/app.yaml", "cache_mb", "128"), "");
    h.set_metric(0, 250.0);
    let out = h.ok(0, &["cycle"]);
    assert!(out.contains("already_applied"), "{out}");
    h.set_metric(5, 250.0);
    h.ok(5, &["cycle"]);
    assert!(h.interventions(5).is_empty(), "no intervention is recorded");
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
    let events = h.ok(5, &["events", "--kind", "already_applied"]);
    assert_eq!(events.matches("already_applied:").count(), 1, "{events}");
    let status = h.ok(5, &["status", "--json"]);
    assert!(
        status.contains("\"budget_left\": 5") || status.contains("\"budget_left\":5"),
        "{status}"
    );
}

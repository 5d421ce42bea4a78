//! Issue 13: a counterfactual canary's before/after figures are stored with the intervention and
//! appear in the autonomous apply's commit message and in `kaizen show` (text and JSON), not only
//! in review-branch messages. The real binary, a real repository, a real script measuring the
//! YAML in each worktree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;

use common::{Harness, RULE_GROW_CACHE, git_text};

/// Latency falls as the cache grows: 25600 / cache_mb (128 MiB → 200 ms, 256 MiB → 100 ms).
const MEASURE: &str = r#"mb=$(sed -n 's/^cache_mb: *\([0-9]*\).*/\1/p' config/app.yaml)
echo "{\"latency_ms\": $((25600 / mb)), \"cache_mb\": $mb}"
"#;

#[test]
fn the_canary_figures_are_in_the_apply_commit_and_in_kaizen_show() {
    let h = Harness::new(
        &RULE_GROW_CACHE.replace("risk: low", "risk: medium"),
        "canaries:\n  cache:\n    command: \"sh ./measure.sh\"\n    in: worktree\n    compare: true\n    timeout: 1m\n",
    );
    h.add_file("measure.sh", MEASURE);
    h.observe_range(0, 30, |_| 300.0);
    h.set_metric(30, 300.0);
    h.ok(30, &["cycle"]);
    let list = h.interventions(30);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "applied", "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();

    // The autonomous apply commit carries the canary paragraph before its trailers.
    let msg = git_text(&h.repo, &["log", "-1", "--format=%B"]);
    assert!(
        msg.contains("Canary:\n- passed: latency_ms 200 → 100"),
        "{msg}"
    );
    assert!(msg.contains("  metric: latency_ms\n"), "{msg}");
    assert!(
        msg.contains(r#"  before: {"latency_ms":200,"cache_mb":128}"#),
        "{msg}"
    );
    assert!(
        msg.contains(r#"  after: {"latency_ms":100,"cache_mb":256}"#),
        "{msg}"
    );
    assert!(msg.contains("  change: -50.0%"), "{msg}");
    // The trailers are still the last paragraph (git reads them).
    let trailers = git_text(
        &h.repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Kaizen-Intervention,valueonly)",
        ],
    );
    assert_eq!(trailers.trim(), id);

    // `kaizen show` prints them, and its JSON holds the stored figures.
    let text = h.ok(31, &["show", &id]);
    assert!(text.contains("canary:"), "{text}");
    assert!(text.contains("pass     latency_ms 200 → 100"), "{text}");
    assert!(
        text.contains(r#"before: {"latency_ms":200,"cache_mb":128}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"after: {"latency_ms":100,"cache_mb":256}"#),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&h.ok(31, &["show", &id, "--json"])).unwrap();
    let canary = json["canary"].as_array().unwrap();
    assert_eq!(canary.len(), 1, "{json}");
    assert_eq!(canary[0]["passed"], true);
    assert_eq!(canary[0]["figures"]["before"]["latency_ms"], 200);
    assert_eq!(canary[0]["figures"]["after"]["latency_ms"], 100);
    assert_eq!(canary[0]["figures"]["metric"], "latency_ms");
}

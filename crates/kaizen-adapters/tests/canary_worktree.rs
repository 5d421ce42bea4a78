//! Issue 13, the counterfactual canary: the change is applied in a temporary detached git
//! worktree and measured there by a real script reading the YAML; with `compare`, the same
//! script runs at the current head and the canary passes only if its figures move the way the
//! candidate predicts. Worktrees are gone after success, failure and timeout; what a killed
//! kaizen leaves is found and removed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use kaizen_adapters::canary::{WorktreeCanary, worktree};
use kaizen_core::canary::{Canary, CanaryResult};
use kaizen_core::edit::Edit;
use kaizen_core::intervention::{
    Candidate, ExpectedChange, InterventionId, Origin, Prediction, Risk,
};
use kaizen_core::span::Span;
use std::path::Path;
use std::time::Duration;

mod support;
use support::git;

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    git(r, &["init", "-q", "-b", "main"]);
    git(r, &["config", "user.name", "T"]);
    git(r, &["config", "user.email", "t@example.invalid"]);
    std::fs::create_dir_all(r.join("config")).unwrap();
    std::fs::write(r.join("config/app.yaml"), "cache_mb: 128\nworkers: 4\n").unwrap();
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "init"]);
    dir
}

/// A "benchmark" that reads the YAML in the worktree it is given: latency falls as the cache
/// grows (10000 / cache_mb ms).
const MEASURE: &str = r#"test -n "$KAIZEN_WORKTREE" && cd "$KAIZEN_WORKTREE" && mb=$(sed -n 's/^cache_mb: *//p' config/app.yaml) && echo "measuring with cache_mb=$mb" && awk -v mb="$mb" 'BEGIN { printf "{\"latency_ms\": %.2f, \"cache_mb\": %d}\n", 10000/mb, mb }'"#;

fn candidate(cache_mb: i64) -> Candidate {
    Candidate {
        area: "cache".into(),
        kind: "config_set".into(),
        title: "resize cache".into(),
        hypothesis: "misses dominate".into(),
        change: vec![Edit::ConfigSet {
            file: "config/app.yaml".into(),
            key: "cache_mb".into(),
            value: serde_json::json!(cache_mb),
        }],
        prediction: Prediction {
            signal: "latency_ms".into(),
            change: ExpectedChange::Relative(-0.2),
            within: Span::minutes(30),
        },
        risk: Risk::Medium,
        confidence: 0.8,
        rollback: Some("revert".into()),
        origin: Origin {
            proposer: "test".into(),
            ..Default::default()
        },
    }
}

fn canary(repo: &Path, command: &str, timeout: Duration) -> WorktreeCanary {
    WorktreeCanary::new("cache", command, repo, timeout, true, 0.1, None)
}

/// Worktrees other than the main one.
fn extra_worktrees(repo: &Path) -> Vec<String> {
    git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Canary worktree dirs this process made for `id` (tests run in parallel: each uses its own id).
fn canary_dirs(id: InterventionId) -> Vec<String> {
    let mine = format!("{}{}-{id}-", worktree::WORKTREE_PREFIX, std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&mine))
        .collect()
}

#[tokio::test]
async fn the_change_tried_in_a_worktree_passes_with_its_figures_and_the_repo_is_untouched() {
    let dir = repo();
    let c = canary(dir.path(), MEASURE, Duration::from_secs(30));
    let (r, figures) = c
        .trial_with_figures(InterventionId(1), &candidate(256))
        .await;
    let CanaryResult::Pass(msg) = r else {
        panic!("{r:?}")
    };
    assert!(msg.contains("latency_ms 78.12 → 39.06"), "{msg}");
    let f = figures.unwrap();
    assert_eq!(f["before"]["latency_ms"], serde_json::json!(78.12));
    assert_eq!(f["after"]["latency_ms"], serde_json::json!(39.06));
    assert_eq!(f["after"]["cache_mb"], serde_json::json!(256));
    // The repository itself never saw the change; no worktree is left.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config/app.yaml")).unwrap(),
        "cache_mb: 128\nworkers: 4\n"
    );
    assert_eq!(git(dir.path(), &["status", "--porcelain"]), "");
    assert!(extra_worktrees(dir.path()).is_empty());
    assert!(canary_dirs(InterventionId(1)).is_empty());
}

#[tokio::test]
async fn a_change_that_moves_the_metric_the_wrong_way_or_too_little_fails() {
    let dir = repo();
    let c = canary(dir.path(), MEASURE, Duration::from_secs(30));
    // Shrinking the cache: latency rises, the prediction said it falls.
    let (r, figures) = c
        .trial_with_figures(InterventionId(2), &candidate(64))
        .await;
    let CanaryResult::Fail(msg) = r else {
        panic!("{r:?}")
    };
    assert!(msg.contains("does not move it the predicted way"), "{msg}");
    assert!(figures.is_some());
    // A 5% improvement is inside the 10% tolerance.
    let (r, _) = c
        .trial_with_figures(InterventionId(3), &candidate(135))
        .await;
    assert!(matches!(r, CanaryResult::Fail(_)), "{r:?}");
    assert!(extra_worktrees(dir.path()).is_empty());
}

#[tokio::test]
async fn failing_timing_out_and_unparsable_runs_block_and_leave_no_worktree() {
    let dir = repo();
    for (command, want) in [
        ("echo broken >&2; exit 3", "exit status: 3"),
        ("sleep 20", "timed out"),
        ("echo '{\"latency_ms\": '", "do not parse"),
        ("echo no figures", "compare needs `latency_ms`"),
    ] {
        let c = canary(dir.path(), command, Duration::from_secs(1));
        let (r, _) = c
            .trial_with_figures(InterventionId(4), &candidate(256))
            .await;
        let CanaryResult::Fail(msg) = r else {
            panic!("{command}: {r:?}")
        };
        assert!(msg.contains(want), "{command}: {msg}");
        assert!(extra_worktrees(dir.path()).is_empty(), "{command}");
    }
    assert!(canary_dirs(InterventionId(4)).is_empty());
}

#[test]
fn worktrees_of_a_dead_kaizen_are_found_and_removed() {
    let dir = repo();
    // What a kaizen killed mid-trial leaves: a registered worktree named after its pid.
    let path = std::env::temp_dir().join(format!(
        "{}4000000-K-000009-after-1",
        worktree::WORKTREE_PREFIX
    ));
    git(
        dir.path(),
        &[
            "worktree",
            "add",
            "--detach",
            "--quiet",
            path.to_str().unwrap(),
            "HEAD",
        ],
    );
    let found = worktree::orphans(dir.path(), false);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].repaired);
    assert!(path.exists());
    let removed = worktree::orphans(dir.path(), true);
    assert!(removed[0].repaired);
    assert!(!path.exists());
    assert!(extra_worktrees(dir.path()).is_empty());
    assert!(worktree::orphans(dir.path(), false).is_empty());
}

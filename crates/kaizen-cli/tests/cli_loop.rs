//! The loop end to end through the `kaizen` binary on a real git repository.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

#[test]
fn rule_fires_commits_with_trailers_and_validates() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let before_head = git_text(&h.repo, &["rev-parse", "HEAD"]);
    let iv = run_round(&h, 0, 150.0);
    assert_eq!(iv["status"], "validated", "{iv}");
    assert_eq!(iv["outcome"], "validated", "{iv}");
    assert!(iv["revert_commit"].is_null());
    let commit = iv["commit"].as_str().expect("commit sha").to_string();

    // Exactly one commit on top of the human's, with trailers naming the intervention.
    let log = git_text(
        &h.repo,
        &["rev-list", &format!("{}..HEAD", before_head.trim())],
    );
    assert_eq!(log.lines().collect::<Vec<_>>(), vec![commit.as_str()]);
    let msg = git_text(&h.repo, &["log", "-1", "--format=%B", &commit]);
    assert!(msg.contains("Kaizen-Intervention: K-000001"), "{msg}");
    assert!(
        msg.contains("Kaizen-Prediction: latency_ms -20% within 30m"),
        "{msg}"
    );
    assert!(msg.contains("Kaizen-Rollback: revert"), "{msg}");
    let trailers = git_text(
        &h.repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Kaizen-Intervention,valueonly)",
            &commit,
        ],
    );
    assert_eq!(trailers.trim(), "K-000001");

    // The change is in the file (comments kept), the tree is clean, the history valid.
    assert_eq!(
        h.file("config/app.yaml"),
        "# app config\ncache_mb: 256  # MiB\nworkers: 4\n"
    );
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
    git(&h.repo, &["fsck", "--strict"]);

    // `show` tells the whole chain.
    let show = h.ok(46, &["show", "K-000001"]);
    for needle in [
        "grow-cache",
        "trigger",
        "latency_ms above 200",
        "prediction",
        "guards:",
        "verdict: validated",
        "timeline:",
        "applied →",
    ] {
        assert!(show.contains(needle), "missing {needle:?} in:\n{show}");
    }
}

#[test]
fn no_effect_is_reverted_and_content_restored() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let original = h.file("config/app.yaml");
    let iv = run_round(&h, 0, 250.0);
    assert_eq!(iv["status"], "reverted", "{iv}");
    assert!(
        matches!(
            iv["outcome"].as_str(),
            Some("no_effect") | Some("inconclusive")
        ),
        "{iv}"
    );
    let revert = iv["revert_commit"].as_str().expect("revert sha");
    let commit = iv["commit"].as_str().expect("commit sha");
    assert_eq!(
        h.file("config/app.yaml"),
        original,
        "content restored byte for byte"
    );
    let msg = git_text(&h.repo, &["log", "-1", "--format=%B", revert]);
    assert!(msg.contains(&format!("Kaizen-Reverts: {commit}")), "{msg}");
    assert!(msg.contains("Kaizen-Intervention: K-000001"), "{msg}");
    assert_eq!(git_text(&h.repo, &["rev-parse", "HEAD"]).trim(), revert);
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
    git(&h.repo, &["fsck", "--strict"]);
}

#[test]
fn three_reverts_freeze_the_area() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    // About the freeze, not calibrated autonomy (which asks for approval after two failures).
    h.edit_config(
        "mode: autonomous",
        "mode: autonomous\nconfidence_threshold: 0",
    );
    // Each round 3h apart so the 2h dedup window has passed.
    for round in 0..3 {
        let iv = run_round(&h, round * 180, 250.0);
        assert_eq!(iv["status"], "reverted", "round {round}: {iv}");
    }
    let offset = 3 * 180;
    h.observe_range(offset - 30, offset + 10, |_| 250.0);
    h.set_metric(offset + 10, 250.0);
    let out = h.ok(offset + 10, &["cycle"]);
    let list = h.interventions(offset + 10);
    let last = list.last().expect("a fourth intervention");
    assert_eq!(last["status"], "blocked", "{out}\n{last}");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("frozen") && reason.contains("3 consecutive rollbacks"),
        "{reason}"
    );
    // Nothing was committed for it.
    assert!(last["commit"].is_null());
    git(&h.repo, &["fsck", "--strict"]);
}

#[test]
fn rule_without_rollback_is_blocked() {
    let rules = RULE_GROW_CACHE.replace("    rollback: revert\n", "");
    let h = Harness::new(&rules, "");
    h.observe_range(-30, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    h.ok(10, &["cycle"]);
    let list = h.interventions(10);
    assert_eq!(list[0]["status"], "blocked");
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("rollback"),
        "{}",
        list[0]
    );
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

#[test]
fn uncommitted_human_edit_blocks_and_is_kept() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    std::fs::write(
        h.repo.join("config/app.yaml"),
        "cache_mb: 64 # human experiment\n",
    )
    .expect("write");
    h.observe_range(-30, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    h.ok(10, &["cycle"]);
    let list = h.interventions(10);
    assert_eq!(list[0]["status"], "blocked", "{}", list[0]);
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("uncommitted"),
        "{}",
        list[0]
    );
    assert_eq!(
        h.file("config/app.yaml"),
        "cache_mb: 64 # human experiment\n",
        "the human's work is untouched"
    );
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

#[test]
fn propose_prints_and_applies_nothing() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.observe_range(-30, 11, |_| 250.0);
    let out = h.ok(10, &["propose"]);
    assert!(out.contains("grow-cache"), "{out}");
    assert!(out.contains("guards now: pass"), "{out}");
    assert!(h.interventions(10).is_empty());
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

#[test]
fn manual_revert_of_validated_change() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let iv = run_round(&h, 0, 150.0);
    assert_eq!(iv["status"], "validated");
    h.ok(
        50,
        &[
            "revert",
            "K-000001",
            "--reason",
            "operator prefers the old size",
        ],
    );
    let list = h.interventions(50);
    assert_eq!(list[0]["status"], "reverted");
    assert!(h.file("config/app.yaml").contains("cache_mb: 128"));
    // Reverting again is refused with exit code 1 and a reason.
    let out = h.kaizen_at(51, &["revert", "K-000001"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only applied or validated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_revert_goes_through_with_a_rules_file_broken_since_the_apply() {
    // Undoing a change consults neither the rules nor the lessons: a rules file an operator is
    // in the middle of editing (or broke) must not stand between them and a revert.
    let h = Harness::new(RULE_GROW_CACHE, "");
    let iv = run_round(&h, 0, 150.0);
    assert_eq!(iv["status"], "validated");
    std::fs::write(h.repo.join("rules.yaml"), "rules:\n  - id: [unclosed\n").unwrap();
    let out = h.kaizen_at(50, &["cycle"]);
    assert_eq!(out.status.code(), Some(2), "a cycle still refuses it");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rules.yaml"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.ok(
        51,
        &["revert", "K-000001", "--reason", "rules are being edited"],
    );
    assert_eq!(h.interventions(51)[0]["status"], "reverted");
    assert!(h.file("config/app.yaml").contains("cache_mb: 128"));
}

#[test]
fn exit_codes_and_config_errors() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let out = h.kaizen_at(0, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = h.kaizen_at(0, &["show", "K-12x"]);
    assert_eq!(out.status.code(), Some(2));
    let out = h.kaizen_at(0, &["show", "K-000009"]);
    assert_eq!(out.status.code(), Some(2));

    let cfg = h
        .file("kaizen.yaml")
        .replace("daily_budget: 5", "daily_budget: many");
    std::fs::write(h.repo.join("kaizen.yaml"), cfg).expect("write");
    let out = h.kaizen_at(0, &["cycle"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kaizen.yaml:13") && err.contains("guards.daily_budget"),
        "{err}"
    );

    git(&h.repo, &["checkout", "kaizen.yaml"]);
    let rules = h
        .file("rules.yaml")
        .replace("signal: latency_ms, above", "signal: latncy_ms, above");
    std::fs::write(h.repo.join("rules.yaml"), rules).expect("write");
    let out = h.kaizen_at(0, &["cycle"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.yaml:4") && err.contains("rules[0].when.signal"),
        "{err}"
    );

    let out = h.kaizen_at(0, &["--config", "nope.yaml", "cycle"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_writes_config_state_dir_and_exclude() {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q"]);
    let out = kaizen_in(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("kaizen.yaml").exists());
    assert!(dir.path().join(".kaizen").is_dir());
    let exclude = std::fs::read_to_string(dir.path().join(".git/info/exclude")).expect("exclude");
    assert!(exclude.lines().any(|l| l == "/.kaizen/"), "{exclude}");
    // The state dir is ignored by git.
    let status = git_text(
        dir.path(),
        &["status", "--porcelain", "--untracked-files=all"],
    );
    assert!(!status.contains(".kaizen"), "{status}");
    // Running it again refuses to clobber the config.
    let again = kaizen_in(dir.path(), &["init"]);
    assert_eq!(again.status.code(), Some(2));
    // Outside a git repository it says so.
    let bare = tempfile::tempdir().expect("tempdir");
    let out = kaizen_in(bare.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_in_a_subdirectory_points_at_the_repository_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q"]);
    let sub = dir.path().join("ops/kaizen");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let out = kaizen_in(&sub, &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = std::fs::read_to_string(sub.join("kaizen.yaml")).expect("config");
    assert!(cfg.lines().any(|l| l == "repo: ../.."), "{cfg}");
    let exclude = std::fs::read_to_string(dir.path().join(".git/info/exclude")).expect("exclude");
    assert!(
        exclude.lines().any(|l| l == "/ops/kaizen/.kaizen/"),
        "{exclude}"
    );
    let out = kaizen_in(&sub, &["cycle"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Issue 13: a kaizen killed (SIGKILL) in the middle of a counterfactual canary leaves its
//! temporary git worktree behind; `kaizen check --no-repair` finds it and the next start (its
//! first cycle's check) removes it. The real binary, a real repository.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;

use common::{Harness, RULE_GROW_CACHE, git_text};
use std::process::Command;

fn canary_worktrees(h: &Harness) -> Vec<String> {
    git_text(&h.repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .filter(|p| p.contains("kaizen-canary-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_worktree_left_by_a_sigkill_mid_canary_is_found_and_removed_by_the_next_start() {
    let mark = tempfile::tempdir().unwrap();
    let started = mark.path().join("started");
    // Armed once: the first trial hangs (to be killed), any later one passes at once.
    let armed = mark.path().join("armed");
    std::fs::write(&armed, "").unwrap();
    let h = Harness::new(
        &RULE_GROW_CACHE.replace("risk: low", "risk: medium"),
        &format!(
            "canaries:\n  cache:\n    command: \"test -e {a} || exit 0; rm {a}; echo $$ > {s}; sleep 60\"\n    in: worktree\n    timeout: 5m\n",
            a = armed.display(),
            s = started.display()
        ),
    );
    h.observe_range(0, 30, |_| 300.0);
    h.set_metric(30, 300.0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(["cycle", "--now", &h.at(30).to_rfc3339()])
        .current_dir(&h.repo)
        .env_remove("KAIZEN_NOW")
        .env_remove("KAIZEN_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (without asserting on time) until the canary command runs in its worktree.
    let mut waited = 0;
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
        assert!(waited < 2400, "the canary never started");
    }
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    // The canary's own shell outlives it; end it too, as a reboot would.
    let pid = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .to_string();
    let _ = Command::new("kill").args(["-9", &pid]).status();
    let left = canary_worktrees(&h);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(std::path::Path::new(&left[0]).exists());
    // `kaizen check --no-repair` finds it.
    let out = h.kaizen_at(31, &["check", "--no-repair"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("canary_worktree_orphan"), "{text}");
    // The next start cleans it.
    let _ = h.kaizen_at(32, &["cycle"]);
    assert!(
        canary_worktrees(&h).is_empty(),
        "{:?}",
        canary_worktrees(&h)
    );
    assert!(!std::path::Path::new(&left[0]).exists());
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
}

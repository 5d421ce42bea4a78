//! The git applier against real repositories made with the `git` CLI, checked with the `git` CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kaizen_adapters::git::GitApplier;
use kaizen_core::apply::{Applier, ApplyError};
use kaizen_core::edit::Edit;
use kaizen_core::intervention::{
    Candidate, ExpectedChange, InterventionId, Origin, Prediction, Risk,
};
use kaizen_core::span::Span;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

const ID: InterventionId = InterventionId(42);
const CONFIG: &str =
    "# app config\ncache:\n  size_mb: 64   # tuned by hand\n  ttl_s: 30\nname: demo\n";

/// Keeps libgit2 (in this process) away from the machine's global/system git config, so the
/// tests see only what each fixture repository configures.
fn hermetic() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Under the target dir Cargo gives integration tests (one empty directory, shared by
        // every run): a directory per process under the system's temp dir was never removed.
        let empty = Path::new(env!("CARGO_TARGET_TMPDIR")).join("git-tests-noconfig");
        std::fs::create_dir_all(&empty).unwrap();
        for level in [
            git2::ConfigLevel::Global,
            git2::ConfigLevel::XDG,
            git2::ConfigLevel::System,
        ] {
            // SAFETY: called once, before any repository is opened by these tests.
            unsafe { git2::opts::set_search_path(level, &empty).unwrap() };
        }
    });
}

/// Runs the git CLI in `dir` without global/system config; identity only via the environment.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Human")
        .env("GIT_AUTHOR_EMAIL", "human@example.invalid")
        .env("GIT_COMMITTER_NAME", "Human")
        .env("GIT_COMMITTER_EMAIL", "human@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    /// An empty repository on branch `main`; with `identity`, user.name/email set in its config.
    fn empty(identity: bool) -> Fixture {
        hermetic();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir(&root).unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        if identity {
            git(&root, &["config", "user.name", "Fixture"]);
            git(&root, &["config", "user.email", "fixture@example.invalid"]);
        }
        Fixture { _dir: dir, root }
    }

    /// A repository with `config/app.yaml` and `README.md` committed on `main`.
    fn new() -> Fixture {
        let f = Fixture::empty(true);
        f.write("config/app.yaml", CONFIG);
        f.write("README.md", "# demo\n");
        git(&f.root, &["add", "-A"]);
        git(&f.root, &["commit", "-q", "-m", "initial"]);
        f
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).unwrap()
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.root, args)
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// An empty commit on the current branch whose message carries `Kaizen-Intervention: K-id`.
    fn trailer_commit(&self, subject: &str, id: u64) {
        let message = format!("{subject}\n\nKaizen-Intervention: K-{id:06}");
        self.git(&["commit", "-q", "--allow-empty", "-m", &message]);
    }

    /// [`Fixture::trailer_commit`] on a new branch `side`, back on `main` after.
    fn trailer_commit_on_side(&self, subject: &str, id: u64) {
        self.git(&["checkout", "-q", "-b", "side"]);
        self.trailer_commit(subject, id);
        self.git(&["checkout", "-q", "main"]);
    }

    fn assert_clean(&self) {
        assert_eq!(
            self.git(&["status", "--porcelain", "--untracked-files=all"]),
            "",
            "git status not clean"
        );
    }

    fn assert_fsck(&self) {
        let out = Command::new("git")
            .args(["fsck", "--strict", "--no-dangling"])
            .current_dir(&self.root)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "git fsck failed: {all}");
        assert!(
            !all.contains("error") && !all.contains("warning"),
            "git fsck: {all}"
        );
    }

    fn applier(&self) -> GitApplier {
        GitApplier::open(&self.root, Some("main")).unwrap()
    }
}

fn candidate(change: Vec<Edit>) -> Candidate {
    Candidate {
        area: "cache".into(),
        kind: "config_set".into(),
        title: "grow the cache to 128 MB".into(),
        hypothesis: "Misses dominate p95 latency; a larger cache should cut them.".into(),
        change,
        prediction: Prediction {
            signal: "latency_ms".into(),
            change: ExpectedChange::Relative(-0.2),
            within: Span::minutes(30),
        },
        risk: Risk::Low,
        confidence: 0.8,
        rollback: Some("revert".into()),
        origin: Origin {
            proposer: "rules".into(),
            rule: Some("grow-cache".into()),
            ..Default::default()
        },
    }
}

fn set(file: &str, key: &str, value: serde_json::Value) -> Edit {
    Edit::ConfigSet {
        file: file.into(),
        key: key.into(),
        value,
    }
}

fn grow() -> Candidate {
    candidate(vec![set(
        "config/app.yaml",
        "cache.size_mb",
        serde_json::json!(128),
    )])
}

#[test]
fn apply_yaml_config_set_makes_one_clean_commit_with_trailers() {
    let f = Fixture::new();
    let before = f.head();
    let a = f.applier();
    a.preflight(&grow()).unwrap();
    let c = a.apply(ID, &grow()).unwrap();

    assert_eq!(f.head(), c.sha);
    assert_eq!(f.git(&["rev-list", "--count", "HEAD"]).trim(), "2");
    assert_eq!(f.git(&["rev-parse", "HEAD^"]).trim(), before);
    let msg = f.git(&["log", "-1", "--format=%B"]);
    let expected = "kaizen: grow the cache to 128 MB\n\n\
        Misses dominate p95 latency; a larger cache should cut them.\n\n\
        - set cache.size_mb = 128 in config/app.yaml\n\n\
        Kaizen-Intervention: K-000042\n\
        Kaizen-Area: cache\n\
        Kaizen-Kind: config_set\n\
        Kaizen-Risk: low\n\
        Kaizen-Confidence: 0.8\n\
        Kaizen-Prediction: latency_ms -20% within 30m\n\
        Kaizen-Rollback: revert\n\
        Kaizen-Origin: rules:grow-cache\n";
    assert_eq!(msg.trim_end(), expected.trim_end());
    // git itself reads the same trailers.
    let trailers = f.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Kaizen-Intervention,valueonly)",
    ]);
    assert_eq!(trailers.trim(), "K-000042");
    // The repo's identity is used when it has one.
    assert_eq!(
        f.git(&["log", "-1", "--format=%an <%ae>"]).trim(),
        "Fixture <fixture@example.invalid>"
    );
    // Only the one file changed, and only the one line of it (comment kept).
    assert_eq!(
        f.git(&["show", "--format=", "--name-only", "HEAD"]).trim(),
        "config/app.yaml"
    );
    assert_eq!(
        f.read("config/app.yaml"),
        CONFIG.replace("size_mb: 64", "size_mb: 128")
    );
    assert_eq!(
        f.git(&["show", "HEAD:config/app.yaml"]),
        f.read("config/app.yaml")
    );
    f.assert_clean();
    f.assert_fsck();

    // Applying the same change again changes nothing.
    assert_eq!(a.apply(InterventionId(43), &grow()), Err(ApplyError::NoOp));
    assert_eq!(a.preflight(&grow()), Err(ApplyError::NoOp));
    assert_eq!(f.head(), c.sha);
}

#[test]
fn several_edits_compose_and_nested_new_files_are_created() {
    let f = Fixture::new();
    let cand = candidate(vec![
        set("config/app.yaml", "cache.size_mb", serde_json::json!(256)),
        set("./config/app.yaml", "cache.ttl_s", serde_json::json!(60)),
        Edit::FileWrite {
            file: "deploy/env/prod/limits.toml".into(),
            content: "max = 10\n".into(),
        },
        set("deploy/env/prod/limits.toml", "max", serde_json::json!(12)),
    ]);
    a_apply_ok(&f, &cand);
    let yaml = f.read("config/app.yaml");
    assert!(
        yaml.contains("size_mb: 256") && yaml.contains("ttl_s: 60"),
        "{yaml}"
    );
    assert!(f.read("deploy/env/prod/limits.toml").contains("max = 12"));
    let files = f.git(&["show", "--format=", "--name-only", "HEAD"]);
    assert_eq!(files.lines().count(), 2, "{files}");
    f.assert_clean();
    f.assert_fsck();
}

fn a_apply_ok(f: &Fixture, c: &Candidate) -> String {
    f.applier().apply(ID, c).unwrap().sha
}

#[test]
fn revert_restores_content_byte_for_byte() {
    let f = Fixture::new();
    let a = f.applier();
    let applied = a.apply(ID, &grow()).unwrap().sha;
    let r = a
        .revert(ID, &applied, "latency_ms regressed: +31% (p=0.01)")
        .unwrap();

    assert_eq!(f.head(), r.sha);
    assert_eq!(f.read("config/app.yaml"), CONFIG);
    assert_eq!(f.git(&["show", "HEAD:config/app.yaml"]), CONFIG);
    f.assert_clean();
    f.assert_fsck();
    let msg = f.git(&["log", "-1", "--format=%B"]);
    assert!(
        msg.starts_with("Revert \"kaizen: grow the cache to 128 MB\"\n\n"),
        "{msg}"
    );
    assert!(msg.contains("latency_ms regressed: +31% (p=0.01)"), "{msg}");
    assert!(
        msg.contains(&format!("This reverts commit {applied}.")),
        "{msg}"
    );
    assert!(
        msg.trim_end().ends_with(&format!(
            "Kaizen-Intervention: K-000042\nKaizen-Reverts: {applied}"
        )),
        "{msg}"
    );
    let reverts = f.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Kaizen-Reverts,valueonly)",
    ]);
    assert_eq!(reverts.trim(), applied);

    assert_eq!(a.find_applied(ID).unwrap(), Some(applied.clone()));
    assert_eq!(a.find_reverted(ID).unwrap(), Some(r.sha.clone()));
    assert_eq!(a.find_applied(InterventionId(7)).unwrap(), None);
    assert_eq!(a.find_reverted(InterventionId(7)).unwrap(), None);

    // Reverting again is a no-op, not a second commit.
    assert_eq!(a.revert(ID, &applied, "again"), Err(ApplyError::NoOp));
    assert_eq!(f.head(), r.sha);
}

#[test]
fn find_applied_sees_only_first_parent_history_and_skips_unrelated_commits() {
    let f = Fixture::new();
    let a = f.applier();
    assert_eq!(a.find_applied(ID).unwrap(), None);
    let applied = a.apply(ID, &grow()).unwrap().sha;
    // Human commits on top, one of which mentions the trailer outside its last paragraph.
    f.write("README.md", "# demo\nmore\n");
    f.git(&[
        "commit",
        "-q",
        "-am",
        "docs\n\nKaizen-Intervention: K-000099\n\nSigned-off-by: H <h@x>",
    ]);
    assert_eq!(a.find_applied(ID).unwrap(), Some(applied));
    assert_eq!(a.find_reverted(ID).unwrap(), None);
    assert_eq!(a.find_applied(InterventionId(99)).unwrap(), None);
}

#[test]
fn dirty_files_are_never_touched() {
    // Modified in the working tree.
    let f = Fixture::new();
    let head = f.head();
    f.write("config/app.yaml", "cache:\n  size_mb: 1\n");
    let e = f.applier().apply(ID, &grow()).unwrap_err();
    assert_eq!(
        e,
        ApplyError::Dirty {
            paths: vec!["config/app.yaml".into()]
        }
    );
    assert_eq!(f.applier().preflight(&grow()).unwrap_err(), e);
    assert_eq!(f.head(), head);
    assert_eq!(f.read("config/app.yaml"), "cache:\n  size_mb: 1\n");

    // Staged (working tree equal to the index, not to HEAD).
    f.git(&["add", "config/app.yaml"]);
    assert!(matches!(
        f.applier().apply(ID, &grow()),
        Err(ApplyError::Dirty { .. })
    ));
    assert_eq!(f.head(), head);

    // Untracked file where HEAD has none.
    let f = Fixture::new();
    f.write("config/new.yaml", "mine: true\n");
    let c = candidate(vec![set("config/new.yaml", "a", serde_json::json!(1))]);
    assert_eq!(
        f.applier().apply(ID, &c),
        Err(ApplyError::Dirty {
            paths: vec!["config/new.yaml".into()]
        })
    );
    assert_eq!(f.read("config/new.yaml"), "mine: true\n");
    assert_eq!(f.git(&["rev-list", "--count", "HEAD"]).trim(), "1");

    // Dirty files elsewhere do not matter.
    let f = Fixture::new();
    f.write("README.md", "edited by a human\n");
    f.applier().apply(ID, &grow()).unwrap();
    assert_eq!(f.read("README.md"), "edited by a human\n");
    assert_eq!(f.git(&["status", "--porcelain"]).trim(), "M README.md");
}

#[test]
fn conflicting_revert_leaves_the_repository_untouched() {
    let f = Fixture::new();
    let a = f.applier();
    let applied = a.apply(ID, &grow()).unwrap().sha;
    // A human later changes the same line.
    f.write(
        "config/app.yaml",
        &CONFIG.replace("size_mb: 64", "size_mb: 512"),
    );
    f.git(&["commit", "-q", "-am", "human: bigger cache"]);
    let human = f.head();

    let e = a.revert(ID, &applied, "regressed").unwrap_err();
    assert_eq!(
        e,
        ApplyError::Conflict {
            commit: applied.clone(),
            paths: vec!["config/app.yaml".into()]
        }
    );
    assert_eq!(f.head(), human);
    assert!(f.read("config/app.yaml").contains("size_mb: 512"));
    assert!(!f.root.join(".git/REVERT_HEAD").exists());
    assert!(!f.root.join(".git/MERGE_MSG").exists());
    f.assert_clean();
    f.assert_fsck();
    assert_eq!(a.find_reverted(ID).unwrap(), None);
}

#[test]
fn paths_outside_the_repository_are_rejected() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.yaml"), "a: 1\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), f.root.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("x.yaml"), f.root.join("leaf.yaml")).unwrap();
    let head = f.head();
    let a = f.applier();
    for path in [
        "escape/x.yaml",
        "leaf.yaml",
        "../x.yaml",
        "/etc/x.yaml",
        ".git/config",
        "config/../../x.yaml",
    ] {
        let c = candidate(vec![set(path, "a", serde_json::json!(2))]);
        match a.apply(ID, &c) {
            Err(ApplyError::Path { path: p, why }) => {
                assert_eq!(p, path);
                if path.starts_with("escape") || path == "leaf.yaml" {
                    assert!(why.contains("outside the repository"), "{why}");
                }
            }
            other => panic!("{path}: expected a path error, got {other:?}"),
        }
        assert!(
            matches!(a.preflight(&c), Err(ApplyError::Path { .. })),
            "{path}"
        );
    }
    // Whole-file writes too, and commit_files.
    let c = candidate(vec![Edit::FileWrite {
        file: ".git/hooks/pre-commit".into(),
        content: "#!/bin/sh\n".into(),
    }]);
    assert!(matches!(a.apply(ID, &c), Err(ApplyError::Path { .. })));
    assert!(matches!(
        a.commit_files(
            &[("escape/x.yaml".into(), Some("a: 3\n".into()))],
            "lessons"
        ),
        Err(ApplyError::Path { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(outside.path().join("x.yaml")).unwrap(),
        "a: 1\n"
    );
    assert_eq!(f.head(), head);
    assert!(!f.root.join(".git/hooks/pre-commit").exists());
}

#[test]
fn unborn_head_without_identity_apply_and_revert() {
    let f = Fixture::empty(false);
    let a = f.applier();
    assert_eq!(a.find_applied(ID).unwrap(), None);
    let c = candidate(vec![set(
        "config/app.yaml",
        "cache.size_mb",
        serde_json::json!(128),
    )]);
    let applied = a.apply(ID, &c).unwrap().sha;
    assert_eq!(f.head(), applied);
    assert_eq!(f.git(&["rev-list", "--count", "HEAD"]).trim(), "1");
    assert_eq!(
        f.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>"]).trim(),
        "kaizen <kaizen@localhost>|kaizen <kaizen@localhost>"
    );
    assert!(f.read("config/app.yaml").contains("size_mb: 128"));
    f.assert_clean();
    f.assert_fsck();
    assert_eq!(a.find_applied(ID).unwrap(), Some(applied.clone()));

    // Reverting the root commit removes the file again.
    a.revert(ID, &applied, "no effect").unwrap();
    assert!(!f.root.join("config/app.yaml").exists());
    assert!(!f.root.join("config").exists());
    f.assert_clean();
    f.assert_fsck();
}

#[test]
fn wrong_branch_is_refused_naming_both() {
    let f = Fixture::new();
    let a = GitApplier::open(&f.root, Some("release")).unwrap();
    match a.apply(ID, &grow()) {
        Err(ApplyError::Repository(m)) => {
            assert!(m.contains("`main`") && m.contains("`release`"), "{m}")
        }
        other => panic!("expected a branch error, got {other:?}"),
    }
    assert_eq!(f.git(&["rev-list", "--count", "HEAD"]).trim(), "1");
    // Without a configured branch, whatever HEAD is on is used.
    GitApplier::open(&f.root, None)
        .unwrap()
        .apply(ID, &grow())
        .unwrap();
    // Detached HEAD is refused.
    f.git(&["checkout", "-q", "--detach"]);
    assert!(matches!(
        f.applier().apply(InterventionId(2), &grow()),
        Err(ApplyError::Repository(_))
    ));
}

#[test]
fn stale_parent_is_a_race_and_commits_nothing() {
    let f = Fixture::new();
    let root = f.root.clone();
    // kaizen holds `.git/index.lock` while it commits, so a human's `git commit` waits; a ref
    // moved without the index (a fetch into the branch, `git update-ref`) is the race left.
    let a = f.applier().with_before_commit_hook(move || {
        let tree = git(&root, &["rev-parse", "HEAD^{tree}"]);
        let c = git(
            &root,
            &[
                "commit-tree",
                tree.trim(),
                "-p",
                "HEAD",
                "-m",
                "human: concurrent",
            ],
        );
        git(&root, &["update-ref", "refs/heads/main", c.trim()]);
    });
    assert_eq!(a.apply(ID, &grow()), Err(ApplyError::Raced));
    assert_eq!(
        f.git(&["log", "-1", "--format=%s"]).trim(),
        "human: concurrent"
    );
    assert_eq!(f.read("config/app.yaml"), CONFIG);
    f.assert_clean();
    assert_eq!(f.applier().find_applied(ID).unwrap(), None);
}

#[test]
fn sync_worktree_repairs_a_crash_but_keeps_human_edits() {
    let f = Fixture::new();
    let a = f.applier();
    let applied = a.apply(ID, &grow()).unwrap().sha;
    // Simulate a crash between the commit and the working-tree update: index and file at the parent.
    f.git(&["checkout", "HEAD~1", "--", "config/app.yaml"]);
    assert_eq!(f.read("config/app.yaml"), CONFIG);
    assert!(!f.git(&["status", "--porcelain"]).is_empty());

    a.sync_worktree(ID, &applied).unwrap();
    assert_eq!(
        f.read("config/app.yaml"),
        CONFIG.replace("size_mb: 64", "size_mb: 128")
    );
    f.assert_clean();
    // Idempotent.
    a.sync_worktree(ID, &applied).unwrap();
    f.assert_clean();

    // Only the working tree stale (index already updated).
    std::fs::write(f.root.join("config/app.yaml"), CONFIG).unwrap();
    a.sync_worktree(ID, &applied).unwrap();
    f.assert_clean();

    // A human's content is neither version: refused, untouched.
    f.write("config/app.yaml", "cache:\n  size_mb: 7\n");
    assert_eq!(
        a.sync_worktree(ID, &applied),
        Err(ApplyError::Dirty {
            paths: vec!["config/app.yaml".into()]
        })
    );
    assert_eq!(f.read("config/app.yaml"), "cache:\n  size_mb: 7\n");

    // The commit must be the intervention's.
    f.git(&["checkout", "-q", "--", "config/app.yaml"]);
    assert!(matches!(
        a.sync_worktree(InterventionId(5), &applied),
        Err(ApplyError::Repository(_))
    ));
}

#[test]
fn commit_files_writes_and_deletes_in_one_commit() {
    let f = Fixture::new();
    let a = f.applier();
    let files = vec![
        (
            "lessons/cache-grow.yaml".to_string(),
            Some("id: cache-grow\n".to_string()),
        ),
        ("README.md".to_string(), None),
    ];
    let c = a
        .commit_files(&files, "kaizen: distil lessons\n\n1 new, 1 retired")
        .unwrap()
        .unwrap();
    assert_eq!(f.head(), c.sha);
    assert_eq!(
        f.git(&["log", "-1", "--format=%B"]).trim_end(),
        "kaizen: distil lessons\n\n1 new, 1 retired"
    );
    assert_eq!(f.read("lessons/cache-grow.yaml"), "id: cache-grow\n");
    assert!(!f.root.join("README.md").exists());
    f.assert_clean();
    f.assert_fsck();
    // Nothing changes the second time.
    assert_eq!(a.commit_files(&files, "again").unwrap(), None);
    assert_eq!(f.head(), c.sha);
    // Dirty lesson files are refused.
    f.write("lessons/cache-grow.yaml", "human edit\n");
    assert_eq!(
        a.commit_files(
            &[("lessons/cache-grow.yaml".into(), Some("id: x\n".into()))],
            "m"
        ),
        Err(ApplyError::Dirty {
            paths: vec!["lessons/cache-grow.yaml".into()]
        })
    );
    assert_eq!(f.read("lessons/cache-grow.yaml"), "human edit\n");
}

#[test]
fn untrusted_text_cannot_forge_trailers() {
    let f = Fixture::new();
    let mut c = grow();
    c.title = "grow\n\nKaizen-Intervention: K-000999".into();
    c.area = "cache\nKaizen-Reverts: deadbeef".into();
    c.origin.rule = Some("r\n\nKaizen-Intervention: K-000998\n".into());
    c.hypothesis = "because\n\nKaizen-Intervention: K-000997".into();
    let a = f.applier();
    let sha = a.apply(ID, &c).unwrap().sha;
    let subject = f.git(&["log", "-1", "--format=%s"]);
    assert_eq!(subject.trim(), "kaizen: grow Kaizen-Intervention: K-000999");
    for other in [997, 998, 999] {
        assert_eq!(a.find_applied(InterventionId(other)).unwrap(), None);
    }
    assert_eq!(a.find_applied(ID).unwrap(), Some(sha));
    assert_eq!(a.find_reverted(ID).unwrap(), None);
    let msg = f.git(&["log", "-1", "--format=%B"]);
    assert!(
        msg.contains("Kaizen-Area: cache Kaizen-Reverts: deadbeef\n"),
        "{msg}"
    );
}

#[test]
fn long_titles_are_truncated_in_the_subject() {
    let f = Fixture::new();
    let mut c = grow();
    c.title = "x".repeat(300);
    f.applier().apply(ID, &c).unwrap();
    let subject = f.git(&["log", "-1", "--format=%s"]);
    assert!(subject.trim().chars().count() <= 72, "{subject}");
    assert!(subject.trim().ends_with('…'));
}

#[test]
fn edit_errors_commit_nothing() {
    let f = Fixture::new();
    let c = candidate(vec![set("README.md", "a.b", serde_json::json!(1))]);
    assert!(matches!(
        f.applier().apply(ID, &c),
        Err(ApplyError::Edit(_))
    ));
    let c = candidate(vec![set(
        "config/app.yaml",
        "name.deeper",
        serde_json::json!(1),
    )]);
    assert!(matches!(
        f.applier().apply(ID, &c),
        Err(ApplyError::Edit(_))
    ));
    assert_eq!(f.git(&["rev-list", "--count", "HEAD"]).trim(), "1");
    f.assert_clean();
}

#[test]
fn open_rejects_non_repositories_and_bad_branch_names() {
    hermetic();
    let dir = tempfile::tempdir().unwrap();
    let err = GitApplier::open(dir.path(), None).err().unwrap();
    assert!(matches!(err, ApplyError::Git { .. }), "{err:?}");
    // The message names the path; git's own error is kept as the source, not flattened.
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("git's error is the source");
    assert!(
        std::error::Error::source(source)
            .and_then(|s| s.downcast_ref::<git2::Error>())
            .is_some(),
        "{source:?}"
    );
    let f = Fixture::new();
    assert!(matches!(
        GitApplier::open(&f.root, Some("bad..name")),
        Err(ApplyError::Repository(_))
    ));
}

/// The content ids the engine keeps resolved changes by (issue 12, bench 4): `file_id` is the
/// id `read_file_with_id` gives with the content, taken at the tip as it is now; it changes
/// whenever the content at the tip does (a human's commit, kaizen's apply and revert, a
/// deletion) and only then (a commit of another file, a reset back to the same content).
#[test]
fn file_ids_follow_the_content_at_the_tip() {
    let f = Fixture::new();
    let a = f.applier();
    let id = |p: &str| a.file_id(p).unwrap().unwrap();
    let read = |p: &str| {
        let (content, rid) = a.read_file_with_id(p).unwrap();
        assert_eq!(
            rid.as_deref(),
            Some(id(p).as_str()),
            "{p}: same tip, same id"
        );
        assert_eq!(content, a.read_file(p).unwrap());
        content
    };
    let first = id("config/app.yaml");
    assert_eq!(
        read("config/app.yaml").as_deref(),
        Some(f.read("config/app.yaml").as_str())
    );
    assert_eq!(read("missing.yaml"), None);
    let missing = id("missing.yaml");
    // Another file committed: this one's id stands.
    f.write("README.md", "# demo, edited\n");
    f.git(&["commit", "-q", "-am", "readme"]);
    assert_eq!(id("config/app.yaml"), first);
    // kaizen's apply changes it, its revert brings the same content (and id) back.
    let sha = a.apply(ID, &grow()).unwrap().sha;
    let applied = id("config/app.yaml");
    assert_ne!(applied, first);
    assert_eq!(
        read("config/app.yaml").as_deref(),
        Some(f.read("config/app.yaml").as_str())
    );
    a.revert(ID, &sha, "test").unwrap();
    assert_eq!(id("config/app.yaml"), first);
    // A human's edit, then a deletion: new ids; the deleted file's id is the missing one's.
    let before = f.read("config/app.yaml");
    f.write("config/app.yaml", &format!("{before}# note\n"));
    f.git(&["commit", "-q", "-am", "human edit"]);
    assert_ne!(id("config/app.yaml"), first);
    assert_ne!(id("config/app.yaml"), applied);
    f.git(&["rm", "-q", "config/app.yaml"]);
    f.git(&["commit", "-q", "-m", "delete"]);
    assert_eq!(id("config/app.yaml"), missing);
    assert_eq!(read("config/app.yaml"), None);
}

/// `read_file` and the routine recovery reuse one repository handle (issue 12, bench 4): what
/// they read is still the repository as it is now — commits made by others since, objects
/// repacked by `git gc`, an index lock taken meanwhile — never what the handle saw first.
#[test]
fn a_kept_applier_reads_the_repository_as_it_is_now() {
    let f = Fixture::new();
    let a = f.applier();
    assert_eq!(
        a.read_file("README.md").unwrap().as_deref(),
        Some("# demo\n")
    );
    assert!(a.recover_routine().unwrap().is_empty());
    // A human's commit after the handle was opened.
    f.write("README.md", "# demo, edited\n");
    f.git(&["commit", "-q", "-am", "edit"]);
    assert_eq!(
        a.read_file("README.md").unwrap().as_deref(),
        Some("# demo, edited\n")
    );
    // Everything packed (the loose objects the handle knew are gone), then a new commit.
    f.git(&["gc", "-q", "--prune=now"]);
    f.write("README.md", "# demo, after gc\n");
    f.git(&["commit", "-q", "-am", "after gc"]);
    assert_eq!(
        a.read_file("README.md").unwrap().as_deref(),
        Some("# demo, after gc\n")
    );
    assert_eq!(a.read_file("missing.txt").unwrap(), None);
    // Another process's index lock is seen by the next routine recovery.
    std::fs::write(f.root.join(".git/index.lock"), "").unwrap();
    let findings = a.recover_routine().unwrap();
    assert!(
        findings.iter().any(|x| x.kind == "foreign_git_lock"),
        "{findings:?}"
    );
    std::fs::remove_file(f.root.join(".git/index.lock")).unwrap();
    // An apply by the same applier (through its own handle), then a read of its result.
    let sha = a.apply(ID, &grow()).unwrap().sha;
    assert_eq!(f.head(), sha);
    assert_eq!(
        a.read_file("config/app.yaml").unwrap().as_deref(),
        Some(f.read("config/app.yaml").as_str())
    );
    f.assert_clean();
}

#[test]
fn revert_with_later_unrelated_commits_touches_only_its_own_files() {
    let f = Fixture::new();
    let a = f.applier();
    let applied = a.apply(ID, &grow()).unwrap().sha;
    // Later: a human edits another file, and another intervention edits another key of the same file.
    f.write("README.md", "# demo\nlater\n");
    f.git(&["commit", "-q", "-am", "human: docs"]);
    let other = candidate(vec![set(
        "config/app.yaml",
        "name",
        serde_json::json!("renamed"),
    )]);
    a.apply(InterventionId(43), &other).unwrap();

    a.revert(ID, &applied, "no effect").unwrap();
    let yaml = f.read("config/app.yaml");
    assert!(
        yaml.contains("size_mb: 64") && yaml.contains("renamed"),
        "{yaml}"
    );
    assert_eq!(f.read("README.md"), "# demo\nlater\n");
    f.assert_clean();
    f.assert_fsck();
    assert!(a.find_applied(InterventionId(43)).unwrap().is_some());
    assert_eq!(a.find_reverted(InterventionId(43)).unwrap(), None);
}

#[test]
fn executable_bits_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    f.write("scripts/tune.sh", "#!/bin/sh\necho 1\n");
    std::fs::set_permissions(
        f.root.join("scripts/tune.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    f.git(&["add", "-A"]);
    f.git(&["commit", "-q", "-m", "script"]);
    let c = candidate(vec![Edit::FileWrite {
        file: "scripts/tune.sh".into(),
        content: "#!/bin/sh\necho 2\n".into(),
    }]);
    f.applier().apply(ID, &c).unwrap();
    assert!(
        f.git(&["ls-tree", "HEAD", "scripts/tune.sh"])
            .starts_with("100755")
    );
    let mode = std::fs::metadata(f.root.join("scripts/tune.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    f.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Issue 9: branches, ids, locks, and what a killed kaizen leaves behind

/// A pid that was just used and is now dead (a finished child, reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn status(f: &Fixture) -> String {
    f.git(&["status", "--porcelain", "--untracked-files=all"])
}

#[test]
fn issue9_4_revert_goes_to_the_branch_applied_on_not_the_checked_out_one() {
    let f = Fixture::new();
    // No `branch:` configured (what `kaizen init` writes): kaizen commits where HEAD is.
    let a = GitApplier::open(&f.root, None).unwrap();
    assert_eq!(a.current_branch().unwrap().as_deref(), Some("main"));
    let applied = a.apply(ID, &grow()).unwrap();
    assert_eq!(applied.branch.as_deref(), Some("main"));
    // A human starts work on `feature` (which contains the change) and checks it out.
    f.git(&["checkout", "-q", "-b", "feature"]);
    f.write("notes.txt", "human work\n");
    f.git(&["add", "notes.txt"]);
    f.git(&["commit", "-q", "-m", "human: notes"]);
    let feature_before = f.git(&["rev-parse", "feature"]);

    let r = a
        .revert_on(ID, &applied.sha, applied.branch.as_deref(), "no effect")
        .unwrap();
    assert_eq!(r.branch.as_deref(), Some("main"));
    // main is reverted; feature and the checked-out working tree are untouched.
    assert_eq!(f.git(&["rev-parse", "main"]).trim(), r.sha);
    assert_eq!(
        f.git(&["show", "main:config/app.yaml"]),
        CONFIG,
        "main keeps the change"
    );
    assert_eq!(f.git(&["rev-parse", "feature"]), feature_before);
    assert_eq!(
        f.git(&["symbolic-ref", "--short", "HEAD"]).trim(),
        "feature"
    );
    assert_eq!(
        f.read("config/app.yaml"),
        CONFIG.replace("size_mb: 64", "size_mb: 128")
    );
    f.assert_clean();
    // Reconciliation looks on the recorded branch too.
    assert_eq!(
        a.find_revert_of(ID, &applied.sha, Some("main")).unwrap(),
        Some(r.sha.clone())
    );
    assert_eq!(
        a.find_applied_on(ID, Some("main")).unwrap(),
        Some(applied.sha)
    );
    // A branch that is gone is an error for a human, never a revert elsewhere.
    f.git(&["branch", "-q", "-D", "main"]);
    let e = a.revert_on(ID, &r.sha, Some("main"), "x").unwrap_err();
    assert!(e.to_string().contains("no longer exists"), "{e}");
    f.assert_fsck();
}

#[test]
fn issue9_5_ids_continue_after_history_and_reverts_match_their_commit() {
    let f = Fixture::new();
    let a = f.applier();
    assert_eq!(a.highest_intervention_id().unwrap(), None);
    let first = a.apply(InterventionId(1), &grow()).unwrap();
    let first_revert = a.revert(InterventionId(1), &first.sha, "old").unwrap();
    a.apply(InterventionId(7), &grow()).unwrap();
    f.trailer_commit_on_side("x", 9);
    // Every local branch counts.
    assert_eq!(
        a.highest_intervention_id().unwrap(),
        Some(InterventionId(9))
    );
    // A new namesake K-000001 (a lost state dir) applied again: the old revert is not its revert.
    let again = a
        .apply(
            InterventionId(1),
            &candidate(vec![set("config/app.yaml", "name", serde_json::json!("x"))]),
        )
        .unwrap();
    assert_eq!(
        a.find_revert_of(InterventionId(1), &again.sha, None)
            .unwrap(),
        None
    );
    assert_eq!(
        a.find_revert_of(InterventionId(1), &first.sha, None)
            .unwrap(),
        Some(first_revert.sha)
    );
}

#[test]
fn issue9_6_a_held_index_lock_stops_kaizen_before_it_commits() {
    let f = Fixture::new();
    let before = f.head();
    let lock = f.root.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let a = f.applier().with_lock_wait(std::time::Duration::ZERO);
    let e = a.apply(ID, &grow()).unwrap_err();
    assert!(matches!(e, ApplyError::Busy { .. }), "{e}");
    assert!(e.to_string().contains("index.lock"), "{e}");
    assert_eq!(f.head(), before, "nothing committed");
    assert!(lock.exists(), "a lock kaizen does not own is never removed");
    let found = a.recover(true).unwrap();
    assert!(
        found
            .iter()
            .any(|x| x.kind == "foreign_git_lock" && !x.repaired),
        "{found:?}"
    );
    assert!(lock.exists());
    std::fs::remove_file(&lock).unwrap();
    // Once released: applied, and the index follows (no `MM`), with no lock left behind.
    let c = a.apply(ID, &grow()).unwrap();
    assert_eq!(f.head(), c.sha);
    f.assert_clean();
    assert!(!lock.exists());
    // A plain `git commit -a` by the human now commits nothing stale.
    let out = Command::new("git")
        .args(["commit", "-q", "-a", "-m", "human"])
        .current_dir(&f.root)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "nothing to commit");
    assert_eq!(f.head(), c.sha);
}

#[test]
fn issue9_11_no_commit_while_a_merge_or_cherry_pick_is_in_progress() {
    for head in ["MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD"] {
        let f = Fixture::new();
        let before = f.head();
        std::fs::write(f.root.join(".git").join(head), format!("{before}\n")).unwrap();
        let a = f.applier();
        let e = a.apply(ID, &grow()).unwrap_err();
        assert!(
            matches!(&e, ApplyError::Busy { what } if what.contains(head)),
            "{head}: {e}"
        );
        assert!(matches!(
            a.commit_files(&[("x.txt".into(), Some("x".into()))], "m"),
            Err(ApplyError::Busy { .. })
        ));
        assert_eq!(f.head(), before);
        let found = a.recover(true).unwrap();
        assert!(
            found.iter().any(|x| x.kind == "operation_in_progress"),
            "{found:?}"
        );
    }
}

#[test]
fn issue9_6_7_recover_finishes_a_killed_commit_and_removes_only_kaizens_leftovers() {
    let f = Fixture::new();
    let base = f.head();
    // What a kaizen killed right after its commit leaves: the branch moved, the index and the
    // working tree still at the old content, its own index.lock (with its journal), the branch
    // lock, and temp files, all from a pid that is dead now.
    let new = CONFIG.replace("size_mb: 64", "size_mb: 256");
    let old_blob = f
        .git(&["rev-parse", "HEAD:config/app.yaml"])
        .trim()
        .to_string();
    std::fs::write(f.root.join("new.yaml"), &new).unwrap();
    let new_blob = f.git(&["hash-object", "-w", "new.yaml"]).trim().to_string();
    std::fs::remove_file(f.root.join("new.yaml")).unwrap();
    f.git(&[
        "update-index",
        "--cacheinfo",
        &format!("100644,{new_blob},config/app.yaml"),
    ]);
    let tree = f.git(&["write-tree"]).trim().to_string();
    f.git(&[
        "update-index",
        "--cacheinfo",
        &format!("100644,{old_blob},config/app.yaml"),
    ]);
    let commit = f
        .git(&["commit-tree", &tree, "-p", &base, "-m", "lessons: x"])
        .trim()
        .to_string();
    f.git(&["update-ref", "refs/heads/main", &commit]);
    assert!(
        status(&f).contains("config/app.yaml"),
        "stale before recovery"
    );
    let pid = dead_pid();
    let journal = serde_json::json!({
        "pid": pid, "op": "commit_files", "branch": "refs/heads/main", "base": base,
        "worktree": true,
        "changes": [{ "path": "config/app.yaml", "old": old_blob, "new": new_blob }],
    });
    let lock = f.root.join(".git/index.lock");
    std::fs::write(&lock, format!("kaizen-lock v1\n{journal}\n")).unwrap();
    let ref_lock = f.root.join(".git/refs/heads/main.lock");
    std::fs::write(&ref_lock, format!("{commit}\n")).unwrap();
    let tmp = f.root.join(format!("config/.app.yaml.kaizen-tmp-{pid}"));
    std::fs::write(&tmp, "half").unwrap();
    let git_tmp = f.root.join(format!(".git/index.kaizen-tmp-{pid}"));
    std::fs::write(&git_tmp, "half").unwrap();
    let a = f.applier();

    // Inspection alone changes nothing.
    let seen = a.recover(false).unwrap();
    let kinds: Vec<&str> = seen.iter().map(|x| x.kind.as_str()).collect();
    for k in ["stale_git_lock", "stale_ref_lock", "temp_file"] {
        assert!(kinds.contains(&k), "{k} in {seen:?}");
    }
    assert!(seen.iter().all(|x| !x.repaired));
    assert!(lock.exists() && ref_lock.exists() && tmp.exists());

    let done = a.recover(true).unwrap();
    assert!(
        done.iter()
            .any(|x| x.kind == "worktree_stale" && x.repaired),
        "{done:?}"
    );
    assert!(!lock.exists() && !ref_lock.exists() && !tmp.exists() && !git_tmp.exists());
    assert_eq!(f.read("config/app.yaml"), new);
    f.assert_clean();
    f.assert_fsck();
    assert!(a.recover(true).unwrap().is_empty(), "clean after repair");
}

#[test]
fn issue9_6_recover_discards_a_commit_that_never_landed_and_reports_foreign_branch_locks() {
    let f = Fixture::new();
    let base = f.head();
    let pid = dead_pid();
    let journal = serde_json::json!({
        "pid": pid, "op": "apply", "branch": "refs/heads/main", "base": base,
        "worktree": true, "changes": [],
    });
    let lock = f.root.join(".git/index.lock");
    std::fs::write(&lock, format!("kaizen-lock v1\n{journal}\n")).unwrap();
    // A branch lock on another branch, with no kaizen lock explaining it: ambiguous.
    let other = f.root.join(".git/refs/heads/other.lock");
    std::fs::write(&other, "x\n").unwrap();
    let a = f.applier();
    let done = a.recover(true).unwrap();
    assert!(
        done.iter()
            .any(|x| x.kind == "stale_git_lock" && x.repaired),
        "{done:?}"
    );
    assert!(
        done.iter().any(|x| x.kind == "ref_lock" && !x.repaired),
        "{done:?}"
    );
    assert!(!lock.exists());
    assert!(other.exists());
    assert_eq!(f.head(), base);
    f.assert_clean();
}

/// The tree `git revert` makes of `commit` on a clone of the fixture at its HEAD.
fn git_cli_revert_tree(f: &Fixture, commit: &str) -> String {
    let clone = f._dir.path().join(format!("clone-{}", &commit[..8]));
    git(
        f._dir.path(),
        &[
            "clone",
            "-q",
            f.root.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    git(&clone, &["revert", "--no-edit", commit]);
    git(&clone, &["rev-parse", "HEAD^{tree}"])
        .trim()
        .to_string()
}

#[test]
fn issue12_a_trivial_revert_gives_git_revert_s_tree_in_a_deep_tree() {
    // The direct path (no merge of whole trees): edits in nested directories, a new file in a
    // new directory, a deleted key, and unrelated siblings that must come through unchanged.
    let f = Fixture::new();
    for d in 0..5 {
        for i in 0..5 {
            f.write(
                &format!("src/d{d}/sub/f{i}.txt"),
                &format!("file {d}/{i}\n"),
            );
        }
    }
    f.write("deep/a/b/c/d/conf.yaml", "level: 1\nkeep: yes\n");
    f.git(&["add", "-A"]);
    f.git(&["commit", "-q", "-m", "tree"]);
    let a = f.applier();
    let c = candidate(vec![
        set("deep/a/b/c/d/conf.yaml", "level", serde_json::json!(2)),
        set("config/app.yaml", "cache.size_mb", serde_json::json!(128)),
        Edit::FileWrite {
            file: "new/dir/created.txt".into(),
            content: "made by kaizen\n".into(),
        },
    ]);
    let applied = a.apply(ID, &c).unwrap().sha;
    // Later, unrelated human work elsewhere in the tree.
    f.write("src/d3/sub/f1.txt", "edited later\n");
    f.git(&["commit", "-q", "-am", "human: unrelated"]);
    let want = git_cli_revert_tree(&f, &applied);

    a.revert(ID, &applied, "no effect").unwrap();
    assert_eq!(f.git(&["rev-parse", "HEAD^{tree}"]).trim(), want);
    assert!(!f.root.join("new/dir/created.txt").exists());
    assert!(!f.root.join("new").exists(), "emptied directories go too");
    assert_eq!(f.read("deep/a/b/c/d/conf.yaml"), "level: 1\nkeep: yes\n");
    assert_eq!(f.read("src/d3/sub/f1.txt"), "edited later\n");
    f.assert_clean();
    f.assert_fsck();
}

#[test]
fn issue12_a_revert_that_needs_a_merge_still_gives_git_revert_s_tree() {
    // The same file edited later by another intervention: not trivial, so the three-way merge
    // path runs, and its result is git's.
    let f = Fixture::new();
    let a = f.applier();
    let applied = a.apply(ID, &grow()).unwrap().sha;
    let other = candidate(vec![set("config/app.yaml", "name", serde_json::json!("x"))]);
    a.apply(InterventionId(43), &other).unwrap();
    let want = git_cli_revert_tree(&f, &applied);
    a.revert(ID, &applied, "no effect").unwrap();
    assert_eq!(f.git(&["rev-parse", "HEAD^{tree}"]).trim(), want);
    f.assert_clean();
}

#[test]
fn issue12_a_lock_deleted_by_hand_after_a_kill_still_leads_recovery_to_the_temp_files() {
    let f = Fixture::new();
    let a = f.applier();
    let pid = dead_pid();
    // A kill while writing the working tree leaves kaizen's lock, its held marker and a temp
    // file; then someone deletes `.git/index.lock` by hand (git's advice for a stale lock).
    let marker = f
        .root
        .join(format!(".git/index.lock.held-0.kaizen-tmp-{pid}"));
    std::fs::write(
        &marker,
        format!("kaizen-lock v1\n{{\"pid\":{pid},\"op\":\"apply\"}}\n"),
    )
    .unwrap();
    let tmp = f.root.join(format!("config/.app.yaml.kaizen-tmp-{pid}"));
    std::fs::write(&tmp, "half").unwrap();
    // The routine repair (every cycle, and the hourly in-cycle check) sees the dead marker in
    // the git dir, walks the tree, and removes both.
    let done = a.recover_routine().unwrap();
    for p in [&marker, &tmp] {
        let shown = p.strip_prefix(&f.root).unwrap().display().to_string();
        assert!(
            done.iter()
                .any(|x| x.kind == "temp_file" && x.repaired && x.path == shown),
            "{shown} in {done:?}"
        );
    }
    assert!(!marker.exists() && !tmp.exists());
    f.assert_clean();
    // A completed apply leaves neither the lock nor the marker.
    a.apply(ID, &grow()).unwrap();
    let left: Vec<String> = std::fs::read_dir(f.root.join(".git"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("kaizen-tmp") || n == "index.lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn issue12_routine_recovery_walks_the_working_tree_only_after_a_kill() {
    let f = Fixture::new();
    let a = f.applier();
    let pid = dead_pid();
    // A temp file with no kaizen lock beside it cannot come from a kill (kaizen writes temp
    // files only while it holds the lock): the routine repair does not walk the tree for it,
    // the full check (`recover`, as `kaizen check` runs it) does.
    let tmp = f.root.join(format!("config/.app.yaml.kaizen-tmp-{pid}"));
    std::fs::write(&tmp, "half").unwrap();
    assert!(a.recover_routine().unwrap().is_empty());
    assert!(tmp.exists());
    let seen = a.recover(false).unwrap();
    assert!(
        seen.iter().any(|x| x.kind == "temp_file" && !x.repaired),
        "{seen:?}"
    );
    // A kill leaves the lock: then the routine repair walks the tree and removes the file.
    std::fs::write(
        f.root.join(".git/index.lock"),
        format!("kaizen-lock v1\n{{\"pid\":{pid},\"op\":\"apply\"}}\n"),
    )
    .unwrap();
    let done = a.recover_routine().unwrap();
    assert!(
        done.iter().any(|x| x.kind == "temp_file" && x.repaired),
        "{done:?}"
    );
    assert!(!tmp.exists() && !f.root.join(".git/index.lock").exists());
    f.assert_clean();
}

#[test]
fn issue12_id_continuity_walks_only_history_it_has_not_seen() {
    let f = Fixture::new();
    let a = f.applier();
    a.apply(ID, &grow()).unwrap();
    let (found, tips) = a.highest_intervention_id_since(&[]).unwrap();
    assert_eq!(found, Some(ID));
    assert_eq!(tips, vec![f.head()]);
    // Nothing new: nothing found, same markers.
    assert_eq!(
        a.highest_intervention_id_since(&tips).unwrap(),
        (None, tips.clone())
    );
    // A new commit (on another branch too) is found from the old markers.
    f.trailer_commit_on_side("kaizen: elsewhere", 77);
    let (found, now) = a.highest_intervention_id_since(&tips).unwrap();
    assert_eq!(found, Some(InterventionId(77)));
    assert_eq!(now.len(), 2);
    // A marker that no longer exists hides nothing: the whole history is walked.
    let gone = "0123456789012345678901234567890123456789".to_string();
    assert_eq!(
        a.highest_intervention_id_since(&[gone]).unwrap().0,
        Some(InterventionId(77))
    );
    assert_eq!(
        a.highest_intervention_id().unwrap(),
        Some(InterventionId(77))
    );
}

/// The hourly check's reads (`path_states`, `trailer_commits_since`) go through the applier's
/// kept repository handle (issue 12, bench 4): they still see the repository as it is now —
/// a human's staged edit, their commit, everything repacked by `git gc`, a new commit after.
#[test]
fn issue12_the_checks_reads_through_a_kept_handle_see_the_repository_as_it_is_now() {
    let f = Fixture::new();
    let a = f.applier();
    let file = "config/app.yaml".to_string();
    let state = |a: &dyn Applier| {
        let s = a.path_states(std::slice::from_ref(&file)).unwrap();
        (
            s[0].in_head,
            s[0].index_matches_head,
            s[0].disk_matches_head,
        )
    };
    assert_eq!(state(&a), (true, true, true));
    assert!(a.trailer_commits_since(&[]).unwrap().commits.is_empty());
    // A human's edit, staged: the index and the disk differ from HEAD.
    let before = f.read(&file);
    f.write(&file, &format!("{before}# human\n"));
    f.git(&["add", &file]);
    assert_eq!(state(&a), (true, false, false));
    // Committed, then everything packed: all match again.
    f.git(&["commit", "-q", "-m", "human"]);
    f.git(&["gc", "-q", "--prune=now"]);
    assert_eq!(state(&a), (true, true, true));
    // kaizen's commit made by another applier (another process's handle) is walked.
    let other = f.applier();
    other.apply(ID, &grow()).unwrap();
    let walk = a.trailer_commits_since(&[]).unwrap();
    assert_eq!(walk.commits.len(), 1);
    assert_eq!(walk.markers, vec![f.head()]);
    assert_eq!(state(&a), (true, true, true));
    // The file deleted by a human, on disk only.
    std::fs::remove_file(f.root.join(&file)).unwrap();
    assert_eq!(state(&a), (true, true, false));
}

#[test]
fn issue12_the_trailer_check_walks_only_history_made_since_its_markers() {
    let f = Fixture::new();
    let a = f.applier();
    a.apply(ID, &grow()).unwrap();
    let first = a.trailer_commits_since(&[]).unwrap();
    assert!(!first.incremental, "no markers: the whole history");
    assert_eq!(first.commits, a.trailer_commits().unwrap());
    assert_eq!(first.commits.len(), 1);
    assert_eq!(first.markers, vec![f.head()]);
    // Nothing new: nothing walked, the same markers.
    let again = a.trailer_commits_since(&first.markers).unwrap();
    assert!(again.incremental);
    assert!(again.commits.is_empty());
    assert_eq!(again.markers, first.markers);
    // New commits (on another branch too) are found from the old markers, and only they.
    f.trailer_commit("kaizen: here", 76);
    f.trailer_commit_on_side("kaizen: elsewhere", 77);
    let grown = a.trailer_commits_since(&first.markers).unwrap();
    assert!(grown.incremental);
    let mut ids: Vec<InterventionId> = grown.commits.iter().map(|c| c.id).collect();
    ids.sort_by_key(|i| i.0);
    assert_eq!(ids, vec![InterventionId(76), InterventionId(77)]);
    assert_eq!(grown.markers.len(), 2);
    // History rewritten under a marker (main reset behind it): everything is walked again,
    // and what is gone is not reported.
    f.git(&["reset", "-q", "--hard", "HEAD~2"]);
    f.git(&["branch", "-q", "-D", "side"]);
    let rewritten = a.trailer_commits_since(&grown.markers).unwrap();
    assert!(!rewritten.incremental);
    assert_eq!(rewritten.commits, a.trailer_commits().unwrap());
    assert!(
        rewritten
            .commits
            .iter()
            .all(|c| c.id.0 != 76 && c.id.0 != 77)
    );
    // A marker that does not exist hides nothing either.
    let gone = "0123456789012345678901234567890123456789".to_string();
    assert!(!a.trailer_commits_since(&[gone]).unwrap().incremental);
}

// ---------------------------------------------------------------------------------------------
// kaizen's own index reader and writer (issue 12, bench 1): what git reads back

impl Fixture {
    /// The index as git sees it equals HEAD and the working tree (`git write-tree` also proves
    /// the cache tree kaizen kept is not stale), and git accepts the file (`fsck` verifies its
    /// checksum).
    fn assert_index_matches_head(&self) {
        self.assert_clean();
        assert_eq!(self.git(&["diff", "--cached", "--name-only"]), "");
        assert_eq!(
            self.git(&["write-tree"]).trim(),
            self.git(&["rev-parse", "HEAD^{tree}"]).trim(),
            "the index's tree is not HEAD's (a stale cache tree?)"
        );
        self.assert_fsck();
    }

    fn index_bytes(&self) -> Vec<u8> {
        std::fs::read(self.root.join(".git/index")).unwrap()
    }

    /// A repository of nested directories (and a thousand files more, a mapped index) whose
    /// index carries what git writes when asked: a cache tree, an untracked cache, the entry
    /// offset tables, version 3 with extended flags.
    fn nested() -> Fixture {
        let f = Fixture::new();
        for d in ["a", "a/b", "a/b/c", "z"] {
            for i in 0..3 {
                f.write(&format!("{d}/f{i}.txt"), &format!("{d} {i}\n"));
            }
        }
        // Enough files that kaizen maps the index instead of reading it (from 64 KiB on); the
        // small fixtures cover the read.
        for i in 0..1000 {
            f.write(
                &format!("bulk/d{:02}/f{i:04}.txt", i % 40),
                &format!("{i}\n"),
            );
        }
        f.git(&["config", "core.untrackedCache", "true"]);
        f.git(&["config", "index.recordEndOfIndexEntries", "true"]);
        f.git(&["config", "index.recordOffsetTable", "true"]);
        f.git(&["config", "index.threads", "2"]);
        f.git(&["add", "-A"]);
        f.git(&["commit", "-q", "-m", "nested"]);
        f.git(&["update-index", "--skip-worktree", "z/f2.txt"]);
        f.git(&["status", "--porcelain"]);
        let idx = f.index_bytes();
        assert!(idx.len() >= 64 * 1024, "index of {} bytes", idx.len());
        assert_eq!(
            &idx[4..8],
            &3u32.to_be_bytes(),
            "skip-worktree makes a v3 index"
        );
        for ext in [b"TREE", b"UNTR", b"EOIE"] {
            assert!(
                idx.windows(4).any(|w| w == ext),
                "fixture index lacks {}",
                String::from_utf8_lossy(ext)
            );
        }
        f
    }
}

#[test]
fn issue12_kaizen_index_writes_read_back_by_git_for_apply_revert_and_file_commits() {
    let f = Fixture::nested();
    let a = f.applier();
    let c = a.apply(ID, &grow()).unwrap();
    f.assert_index_matches_head();
    // The skip-worktree flag of an entry kaizen did not touch survives byte for byte.
    assert_eq!(f.git(&["ls-files", "-t", "z/f2.txt"]).trim(), "S z/f2.txt");
    a.revert(ID, &c.sha, "bench").unwrap();
    f.assert_index_matches_head();
    assert_eq!(f.read("config/app.yaml"), CONFIG);
    // New files in new and deep directories, and a deletion that empties a directory.
    let files = vec![
        ("a/b/c/new.txt".to_string(), Some("new\n".to_string())),
        ("n/m/deep.yaml".to_string(), Some("k: 1\n".to_string())),
        ("z/f0.txt".to_string(), None),
        ("a/b/f1.txt".to_string(), Some("changed\n".to_string())),
    ];
    a.commit_files(&files, "kaizen: files").unwrap().unwrap();
    f.assert_index_matches_head();
    assert_eq!(
        f.git(&["show", "--format=", "--name-status", "HEAD"])
            .trim(),
        "A\ta/b/c/new.txt\nM\ta/b/f1.txt\nA\tn/m/deep.yaml\nD\tz/f0.txt"
    );
    // And git goes on from there: its own commit on top of kaizen's index.
    f.write("a/f0.txt", "by hand\n");
    f.git(&["commit", "-q", "-am", "human"]);
    f.assert_index_matches_head();
}

#[test]
fn issue12_a_racily_clean_entry_is_smudged_when_its_file_changed_unseen() {
    // `README.md` changes on disk with its size and mtime second unchanged, in the second the
    // index was written: only its content tells. After kaizen rewrites the index (later), git
    // must still see the change, as it does after its own index writes.
    let f = Fixture::new();
    let t = "@1700000000";
    let touch = |rel: &str| {
        let out = Command::new("touch")
            .args(["-d", t, rel])
            .current_dir(&f.root)
            .status()
            .unwrap();
        assert!(out.success());
    };
    touch("README.md");
    f.git(&["update-index", "--refresh"]);
    touch(".git/index");
    f.write("README.md", "# DEMO\n");
    touch("README.md");
    f.applier().apply(ID, &grow()).unwrap();
    assert_eq!(
        f.git(&["status", "--porcelain"]),
        " M README.md\n",
        "the human's edit must stay visible"
    );
}

#[test]
fn issue12_an_index_kaizen_does_not_read_itself_is_left_to_libgit2() {
    // Version 4 (prefix-compressed paths): libgit2 reads and writes it, as before.
    let f = Fixture::nested();
    f.git(&["update-index", "--index-version", "4"]);
    let a = f.applier();
    let c = a.apply(ID, &grow()).unwrap();
    f.assert_index_matches_head();
    assert_eq!(&f.index_bytes()[4..8], &4u32.to_be_bytes());
    a.revert(ID, &c.sha, "bench").unwrap();
    f.assert_index_matches_head();
}

#[test]
fn issue12_a_human_edit_staged_or_not_is_still_refused_with_kaizens_index() {
    let f = Fixture::nested();
    f.write("config/app.yaml", &CONFIG.replace("ttl_s: 30", "ttl_s: 31"));
    f.git(&["add", "config/app.yaml"]);
    // Staged and on disk: refused, nothing committed.
    let head = f.head();
    let err = f.applier().apply(ID, &grow()).unwrap_err();
    assert!(matches!(err, ApplyError::Dirty { .. }), "{err:?}");
    assert_eq!(f.head(), head);
    // Staged only (disk back to HEAD): still refused.
    f.write("config/app.yaml", CONFIG);
    let err = f.applier().apply(ID, &grow()).unwrap_err();
    assert!(matches!(err, ApplyError::Dirty { .. }), "{err:?}");
    assert_eq!(
        f.git(&["diff", "--cached", "--name-only"]).trim(),
        "config/app.yaml"
    );
}

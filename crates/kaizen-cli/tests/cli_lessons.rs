//! Lessons through the binary: init copies the starter library, hand-written lessons are
//! validated and committed, the distiller learns from history and is idempotent, and `demo` runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

#[test]
fn learn_distils_a_validated_change_once_and_commits_it() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    h.use_simple_validator();
    let iv = run_round(&h, 0, 150.0);
    assert_eq!(iv["status"], "validated", "{iv}");
    let before = git_text(&h.repo, &["rev-list", "--count", "HEAD"]);
    let out = h.ok(60, &["learn"]);
    assert!(out.contains("created L-cache-"), "{out}");
    // One commit holding the lesson file, not an intervention.
    let after = git_text(&h.repo, &["rev-list", "--count", "HEAD"]);
    assert_eq!(
        after.trim().parse::<u32>().unwrap(),
        before.trim().parse::<u32>().unwrap() + 1
    );
    let files = git_text(&h.repo, &["show", "--name-only", "--format=", "HEAD"]);
    assert!(files.trim().starts_with("lessons/L-cache-"), "{files}");
    assert_eq!(
        h.interventions(60).len(),
        1,
        "lesson commits are not interventions"
    );
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
    // The lesson names its evidence and is offered from now on.
    let list = h.ok(61, &["lessons", "list"]);
    assert!(list.contains("L-cache-"), "{list}");
    let id = list
        .split_whitespace()
        .find(|w| w.starts_with("L-cache-"))
        .expect("id")
        .to_string();
    let show = h.ok(61, &["lessons", "show", &id]);
    assert!(show.contains("K-000001"), "{show}");
    // Idempotent.
    let again = h.ok(62, &["learn"]);
    assert!(again.contains("no lesson changes"), "{again}");
    assert_eq!(git_text(&h.repo, &["rev-list", "--count", "HEAD"]), after);
}

#[test]
fn hand_written_lessons_are_validated_added_and_retired() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    let bad = h.dir.path().join("bad.yaml");
    std::fs::write(&bad, "id: L-x\nscope: { area: cache }\nwhen: \"\"\nprefer: p\nbecause: b\nfalsifiable: f\nretired_when: r\ncreated: 2026-03-01T00:00:00Z\n").unwrap();
    let out = h.kaizen_at(0, &["lessons", "add", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:3") && err.contains("when"), "{err}");

    let good = h.dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "id: L-cache-warm\nscope: { area: cache, signal: latency_ms }\nwhen: cold starts after deploys\nprefer: warm the cache before shifting traffic\nbecause: misses dominate the first minutes\nfalsifiable: latency_ms median_1h above 300\nretired_when: latency_ms median_24h outside [50, 1000]\ncreated: 2026-03-01T00:00:00Z\n",
    )
    .unwrap();
    h.ok(0, &["lessons", "add", good.to_str().unwrap()]);
    assert!(
        h.file("lessons/L-cache-warm.yaml")
            .contains("warm the cache")
    );
    assert!(git_text(&h.repo, &["log", "-1", "--format=%s"]).contains("add lesson L-cache-warm"));
    let out = h.kaizen_at(0, &["lessons", "add", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "duplicate ids are refused without --force"
    );

    h.ok(
        1,
        &[
            "lessons",
            "retire",
            "L-cache-warm",
            "--reason",
            "cache removed",
        ],
    );
    let text = h.file("lessons/L-cache-warm.yaml");
    assert!(
        text.contains("status: retired") && text.contains("cache removed"),
        "{text}"
    );
    assert!(!h.ok(2, &["lessons", "list"]).contains("L-cache-warm"));
    assert!(
        h.ok(2, &["lessons", "list", "--all"])
            .contains("L-cache-warm")
    );
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
}

#[test]
fn init_copies_the_starter_library() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let out = kaizen_in(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = std::fs::read_dir(dir.path().join("lessons"))
        .unwrap()
        .count();
    assert!(n >= 6, "{n} starter lessons");
    let out = kaizen_in(dir.path(), &["lessons", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n);
}

#[test]
fn demo_runs_a_simulated_week_and_reviews_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "applied as commit",
        "validated",
        "reverted",
        "backlog",
        "result: PASS",
        "# kaizen meta-review",
        "## Calibration",
        "## Next moves",
        "Revert \"",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}");
    }
    // The review's Markdown ends the week; the same review is written as HTML beside it.
    let html_path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("HTML review: "))
        .expect("the demo names its HTML review");
    let html = std::fs::read_to_string(html_path.trim()).unwrap();
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    for id in ["reliability", "outcomes-over-time"] {
        assert!(
            doc.descendants().any(|n| n.attribute("id") == Some(id)),
            "no {id} chart"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
}

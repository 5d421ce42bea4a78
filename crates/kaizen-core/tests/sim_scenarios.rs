//! Every shipped scenario parses; the clear-cut ones run to their expected outcomes with a plain
//! median validator and the direct (no-git) applier.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim_support;

use kaizen_core::sim::{self, DirectApplier, Scenario, SimOptions};
use std::path::{Path, PathBuf};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios")
}

#[test]
fn every_shipped_scenario_parses_and_is_builtin() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                !s.expect.is_empty(),
                "{} has no expectations",
                path.display()
            );
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let builtin = sim::BUILTIN
                .iter()
                .find(|(n, _)| *n == stem)
                .unwrap_or_else(|| panic!("{stem} not in sim::BUILTIN"));
            assert_eq!(builtin.1, text, "{stem}: BUILTIN is stale");
            names.push(stem);
        }
    }
    assert!(names.len() >= 7, "{names:?}");
    assert!(sim::builtin(sim::DEMO).unwrap().is_ok());
}

#[test]
fn bad_scenarios_name_the_field() {
    let text = std::fs::read_to_string(scenarios_dir().join("leak-fixed.yaml")).unwrap();
    let e = Scenario::parse(
        &text.replace("ar: 0.5, df: 5", "ar: 1.5, df: 5"),
        Path::new("s.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("host.signals.rss_mb.noise.ar"), "{e}");
    let e = Scenario::parse(
        &text.replace("rule: bound-cache, first", "rule: bound-cash, first"),
        Path::new("s.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("expect[0].rule") && e.contains("bound-cash"),
        "{e}"
    );
    let e = Scenario::parse(
        &text.replace("confidence: 0.8", "confidence: 1.8"),
        Path::new("s.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rules[0].confidence"), "{e}");
    let e = Scenario::parse(
        &text.replace("cycle_every: 15m", "cycle_every: 7m"),
        Path::new("s.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("s.yaml:") && e.contains("cycle_every"), "{e}");
    let e = Scenario::parse(
        &text.replace("kind: leak", "kind: leek"),
        Path::new("s.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("s.yaml:") && e.contains("leek"), "{e}");
}

async fn run(name: &str, options: SimOptions) -> sim::ScenarioResult {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), name, options).await.2
}

/// Runs the shipped scenario `name` in `dir`, which outlives the run so that a test can look at
/// the files it left (lessons in the repository, reviews in the state dir).
async fn run_in(
    dir: &Path,
    name: &str,
    options: SimOptions,
) -> (Scenario, sim::Layout, sim::ScenarioResult) {
    let scenario = Scenario::load(&scenarios_dir().join(format!("{name}.yaml"))).unwrap();
    let layout = sim::prepare(&scenario, dir, false).unwrap();
    let applier = DirectApplier::new(&layout.repo);
    let mut cycles = 0;
    let result = sim::run_scenario_with(
        &scenario,
        dir,
        Box::new(applier),
        Box::new(sim_support::MedianValidator),
        options,
        |_| cycles += 1,
    )
    .await
    .unwrap();
    assert_eq!(cycles, result.cycles);
    println!("{}", result.render());
    (scenario, layout, result)
}

#[tokio::test]
async fn leak_fixed_is_validated_and_memory_returns() {
    let r = run("leak-fixed", SimOptions::default()).await;
    assert!(r.passed(), "{}", r.render());
    let rss = r.signals.iter().find(|s| s.signal == "rss_mb").unwrap();
    assert!(rss.last_day_mean < 1000.0, "the leak stayed fixed: {rss:?}");
}

#[tokio::test]
async fn needs_canary_backlogs_without_and_applies_with() {
    let r = run("needs-canary", SimOptions::default()).await;
    assert!(r.passed(), "{}", r.render());
}

#[tokio::test]
async fn guardrail_regression_is_reverted() {
    let r = run("guardrail-regression", SimOptions::default()).await;
    assert!(r.passed(), "{}", r.render());
}

#[tokio::test]
async fn failing_area_gets_frozen() {
    let r = run(
        "freeze",
        SimOptions {
            guards: Some(sim_support::test_guards()),
            ..Default::default()
        },
    )
    .await;
    assert!(r.passed(), "{}", r.render());
}

#[tokio::test]
async fn prepare_makes_a_git_repository_with_the_initial_files() {
    let scenario = sim::builtin("demo").unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = sim::prepare(&scenario, dir.path(), true).unwrap();
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&layout.repo)
        .args(["log", "--format=%s|%an|%aI", "--name-only"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("initial files of scenario demo|kaizen-sim|2026-01-05T00:00:00"),
        "{log}"
    );
    assert!(
        log.contains("config/cache.yaml") && log.contains("README.md"),
        "{log}"
    );
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(&layout.repo)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    assert!(
        status.stdout.is_empty(),
        "clean tree: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert!(
        layout.config.exists()
            && layout.rules.exists()
            && !layout.repo.join("kaizen.yaml").exists()
    );
    // A second prepare refuses to clobber it.
    assert!(matches!(
        sim::prepare(&scenario, dir.path(), true),
        Err(sim::SimError::NotFresh { .. })
    ));
}

/// The simulator runs on the runtime's schedule: it learns daily and reviews weekly like
/// `kaizen run`, the lessons land in the simulated repository and the reviews in the state dir.
#[tokio::test]
async fn the_simulation_learns_and_reviews_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (scenario, layout, r) = run_in(dir.path(), "leak-fixed", SimOptions::default()).await;
    assert!(r.passed(), "{}", r.render());
    // The validated cache bound becomes a prefer lesson at the next daily learn.
    let created: Vec<&String> = r
        .lessons
        .iter()
        .filter(|l| l.starts_with("created L-memory"))
        .collect();
    assert_eq!(created.len(), 1, "{:?}", r.lessons);
    let files: Vec<String> = std::fs::read_dir(layout.repo.join("lessons"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.starts_with("L-memory")), "{files:?}");
    // Weekly: at the start (as a daemon does when it starts) and at the end of the week.
    let at: Vec<_> = r.reviews.iter().map(|w| w.at).collect();
    assert_eq!(
        at,
        vec![scenario.start, scenario.start + chrono::Duration::days(7)]
    );
    for w in &r.reviews {
        assert!(w.markdown.starts_with(dir.path().join("state/reviews")));
        assert!(w.markdown.exists() && w.markdown.with_extension("html").exists());
    }
    let text = r.render();
    assert!(text.contains("lessons learned: 1"), "{text}");
    assert!(text.contains("reviews written: 2"), "{text}");
}

//! The simulated host depends on the config in its working tree: a change (and its revert) changes
//! the samples that follow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use kaizen_core::sim::{HostModel, SimSource};
use kaizen_core::span::Span;
use std::path::Path;

fn start() -> DateTime<Utc> {
    "2026-01-05T00:00:00Z".parse().unwrap()
}

fn at(min: i64) -> DateTime<Utc> {
    start() + Duration::minutes(min)
}

fn setup(model: &str, config: &str) -> (tempfile::TempDir, SimSource) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/app.yaml"), config).unwrap();
    let model: HostModel = kaizen_core::yaml::from_str(model, Path::new("model.yaml")).unwrap();
    model.check().unwrap();
    let src = SimSource::new(model, dir.path(), 3, start(), Span::minutes(5));
    (dir, src)
}

fn value(src: &SimSource, t: DateTime<Utc>, signal: &str) -> f64 {
    src.sample(t)
        .unwrap()
        .into_iter()
        .find(|s| s.signal == signal)
        .unwrap()
        .value
}

#[test]
fn a_config_change_changes_future_samples_and_the_revert_restores_them() {
    let model = r#"
signals:
  latency_ms:
    base: 200
    effects:
      - { file: config/app.yaml, key: cache.size_mb, power: { ref: 128, elasticity: 0.5 } }
      - { file: config/app.yaml, key: mode, cases: { fast: 0.5 } }
      - { file: config/app.yaml, key: workers, table: [[1, 2.0], [4, 1.0], [8, 1.0]] }
"#;
    let (dir, src) = setup(model, "cache:\n  size_mb: 128\nworkers: 4\n");
    let cfg = dir.path().join("config/app.yaml");
    assert_eq!(value(&src, at(0), "latency_ms"), 200.0);
    std::fs::write(&cfg, "cache:\n  size_mb: 512\nworkers: 4\n").unwrap();
    assert!(
        (value(&src, at(5), "latency_ms") - 100.0).abs() < 1e-9,
        "(128/512)^0.5 = 0.5"
    );
    std::fs::write(&cfg, "cache:\n  size_mb: 128\nworkers: 4\n").unwrap();
    assert_eq!(
        value(&src, at(10), "latency_ms"),
        200.0,
        "the revert restores the level"
    );
    std::fs::write(&cfg, "cache:\n  size_mb: 128\nworkers: 2\nmode: fast\n").unwrap();
    // workers 2 → table 2.0 - (1/3) ≈ 1.667; mode fast → 0.5.
    assert!((value(&src, at(15), "latency_ms") - 200.0 * (2.0 - 1.0 / 3.0) * 0.5).abs() < 1e-9);
    std::fs::remove_file(&cfg).unwrap();
    assert_eq!(
        value(&src, at(20), "latency_ms"),
        200.0,
        "missing file: factors 1"
    );
}

#[test]
fn the_config_changes_the_level_not_the_noise() {
    let model = r#"
signals:
  latency_ms:
    base: 100
    noise: { sd: 10, ar: 0.6, df: 5 }
    effects:
      - { file: config/app.yaml, key: cache_mb, table: [[100, 1.0], [200, 0.6]] }
"#;
    let (dir_a, a) = setup(model, "cache_mb: 100\n");
    let (_dir_b, b) = setup(model, "cache_mb: 200\n");
    for k in 0..50 {
        let (va, vb) = (
            value(&a, at(5 * k), "latency_ms"),
            value(&b, at(5 * k), "latency_ms"),
        );
        assert!(
            ((va - 100.0) - (vb - 60.0)).abs() < 1e-9,
            "same noise draw at sample {k}: {va} vs {vb}"
        );
    }
    drop(dir_a);
}

#[test]
fn a_leak_grows_until_the_config_fixes_it_and_returns_after_a_revert() {
    let model = r#"
signals:
  rss_mb:
    base: 500
    faults:
      - kind: leak
        at: 1h
        per_hour: 60
        max: 1000
        unless: { file: config/app.yaml, key: cache.max_entries, above: 0 }
      - kind: step
        add: 100
        when: { file: config/app.yaml, key: cache.max_entries, above: 50000 }
"#;
    let (dir, src) = setup(model, "cache:\n  max_entries: 0\n");
    let cfg = dir.path().join("config/app.yaml");
    assert_eq!(
        value(&src, at(0), "rss_mb"),
        500.0,
        "before the leak starts"
    );
    assert_eq!(value(&src, at(60), "rss_mb"), 500.0);
    assert_eq!(value(&src, at(120), "rss_mb"), 560.0, "one hour of leak");
    assert_eq!(value(&src, at(180), "rss_mb"), 620.0);
    std::fs::write(&cfg, "cache:\n  max_entries: 100000\n").unwrap();
    assert_eq!(
        value(&src, at(185), "rss_mb"),
        600.0,
        "fixed, but the big cache costs 100 MB (guardrail-style step)"
    );
    std::fs::write(&cfg, "cache:\n  max_entries: 0\n").unwrap();
    assert_eq!(
        value(&src, at(190), "rss_mb"),
        500.0,
        "reverted: the leak starts over"
    );
    assert_eq!(value(&src, at(250), "rss_mb"), 560.0);
    assert_eq!(value(&src, at(60 * 30), "rss_mb"), 1500.0, "capped at max");
}

#[test]
fn an_unparsable_config_reads_as_missing_values() {
    let model = r#"
signals:
  latency_ms:
    base: 100
    effects:
      - { file: config/app.yaml, key: cache_mb, default: 200, table: [[100, 1.0], [200, 0.5]] }
"#;
    let (dir, src) = setup(model, "other: 1\n");
    assert_eq!(
        value(&src, at(0), "latency_ms"),
        50.0,
        "missing key takes the default"
    );
    std::fs::write(dir.path().join("config/app.yaml"), "cache_mb: [unclosed\n").unwrap();
    // An unparsable file reads as missing values (the default), never as a crash or a zero.
    assert_eq!(value(&src, at(5), "latency_ms"), 50.0);
}

#[test]
fn direct_applier_reverts_a_key_after_other_keys_of_the_file_changed() {
    use kaizen_core::apply::Applier;
    use kaizen_core::edit::Edit;
    use kaizen_core::intervention::{Candidate, InterventionId, Prediction, Risk};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    let cfg = dir.path().join("config/app.yaml");
    std::fs::write(&cfg, "cache:\n  max_entries: 0\nworkers: 4\n").unwrap();
    let cand = |key: &str, value: serde_json::Value| Candidate {
        area: "a".into(),
        kind: "config_set".into(),
        title: "t".into(),
        hypothesis: "h".into(),
        change: vec![Edit::ConfigSet {
            file: "config/app.yaml".into(),
            key: key.into(),
            value,
        }],
        prediction: Prediction {
            signal: "s".into(),
            change: kaizen_core::intervention::ExpectedChange::Relative(-0.2),
            within: Span::hours(1),
        },
        risk: Risk::Low,
        confidence: 0.5,
        rollback: Some("revert".into()),
        origin: Default::default(),
    };
    let a = kaizen_core::sim::DirectApplier::new(dir.path());
    let c1 = a
        .apply(InterventionId(1), &cand("workers", 8.into()))
        .unwrap();
    let _c2 = a
        .apply(InterventionId(2), &cand("cache.max_entries", 1000.into()))
        .unwrap();
    a.revert(InterventionId(1), &c1.sha, "no effect").unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("workers: 4") && text.contains("max_entries: 1000"),
        "{text}"
    );
    assert!(a.find_reverted(InterventionId(1)).unwrap().is_some());
    // A key changed again by someone else cannot be reverted blindly.
    let c3 = a
        .apply(InterventionId(3), &cand("workers", 16.into()))
        .unwrap();
    std::fs::write(&cfg, "cache:\n  max_entries: 1000\nworkers: 2\n").unwrap();
    assert!(matches!(
        a.revert(InterventionId(3), &c3.sha, "x"),
        Err(kaizen_core::apply::ApplyError::Conflict { .. })
    ));
}

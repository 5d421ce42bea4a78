//! Same seed → identical sample series and identical decisions, whatever the call order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim_support;

use chrono::{DateTime, Duration, Utc};
use kaizen_core::sim::{self, DirectApplier, HostModel, Scenario, SimOptions, SimSource};
use kaizen_core::span::Span;
use std::path::Path;

const MODEL: &str = r#"
signals:
  latency_ms:
    base: 120
    trend_per_day: 2
    daily: { amplitude: 0.2, peak: 14h }
    weekly: { amplitude: 0.1, peak: 2d }
    noise: { sd: 10, ar: 0.7, df: 4 }
    spikes: { per_day: 12, size: 0.8, length: 15m }
    min: 1
    effects:
      - { file: config/app.yaml, key: cache_mb, power: { ref: 128, elasticity: 0.5 } }
    faults:
      - { kind: step, at: 1d, until: 2d, factor: 1.3 }
      - { kind: spikes, at: 6h, until: 12h, per_hour: 2, size: 1.0, length: 10m }
      - { kind: noisy, at: 12h, until: 18h, factor: 3 }
  hit_ratio:
    base: 0.9
    noise: { sd: 0.02, ar: 0.3 }
    max: 1
"#;

fn start() -> DateTime<Utc> {
    "2026-01-05T00:00:00Z".parse().unwrap()
}

fn source(root: &Path, seed: u64) -> SimSource {
    let model: HostModel = kaizen_core::yaml::from_str(MODEL, Path::new("model.yaml")).unwrap();
    model.check().unwrap();
    SimSource::new(model, root, seed, start(), Span::minutes(5))
}

fn series(src: &SimSource, order: impl Iterator<Item = i64>) -> Vec<(i64, String, u64)> {
    let mut out = Vec::new();
    for k in order {
        for s in src.sample(start() + Duration::minutes(5 * k)).unwrap() {
            out.push((k, s.signal, s.value.to_bits()));
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_series_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/app.yaml"), "cache_mb: 128\n").unwrap();
    let n = 2 * 288;
    let forward = series(&source(dir.path(), 9), 0..n);
    let backward = series(&source(dir.path(), 9), (0..n).rev());
    let strided = series(
        &source(dir.path(), 9),
        (0..n)
            .filter(|k| k % 2 == 1)
            .chain((0..n).filter(|k| k % 2 == 0)),
    );
    assert_eq!(forward.len(), 2 * n as usize);
    assert_eq!(forward, backward, "sampling order changed the series");
    assert_eq!(forward, strided, "sampling order changed the series");
    let other = series(&source(dir.path(), 10), 0..n);
    assert_ne!(forward, other, "a different seed gave the same series");

    // The model's parts are visible: the step fault (day 1) raises the level, the noisy period
    // widens the spread.
    let lat: Vec<f64> = forward
        .iter()
        .filter(|(_, s, _)| s == "latency_ms")
        .map(|(_, _, v)| f64::from_bits(*v))
        .collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let day0 = mean(&lat[..288]);
    let day1 = mean(&lat[288..576]);
    assert!(day1 > day0 * 1.15, "step fault: day0 {day0}, day1 {day1}");
    let hit: Vec<f64> = forward
        .iter()
        .filter(|(_, s, _)| s == "hit_ratio")
        .map(|(_, _, v)| f64::from_bits(*v))
        .collect();
    assert!(hit.iter().all(|v| *v <= 1.0), "max clamp");
}

async fn run(seed: Option<u64>) -> sim::ScenarioResult {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios/leak-fixed.yaml");
    let mut scenario = Scenario::load(&path).unwrap();
    if let Some(s) = seed {
        scenario.seed = s;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = sim::prepare(&scenario, dir.path(), false).unwrap();
    let options = SimOptions {
        duration: Some(Span::days(4)),
        ..Default::default()
    };
    sim::run_scenario_with(
        &scenario,
        dir.path(),
        Box::new(DirectApplier::new(&layout.repo)),
        Box::new(sim_support::MedianValidator),
        options,
        |_| {},
    )
    .await
    .unwrap()
}

fn decisions(r: &sim::ScenarioResult) -> Vec<String> {
    r.interventions
        .iter()
        .map(|iv| {
            format!(
                "{} {:?} {} {:?} {:?} {:?} {}",
                iv.id, iv.rule, iv.status, iv.outcome, iv.applied_at, iv.finalized_at, iv.reason
            )
        })
        .collect()
}

#[tokio::test]
async fn same_seed_same_decisions() {
    let a = run(None).await;
    let b = run(None).await;
    assert_eq!(a.series_digest, b.series_digest);
    assert_eq!(a.samples, b.samples);
    assert!(!a.interventions.is_empty(), "{}", a.render());
    assert_eq!(decisions(&a), decisions(&b));
    assert_eq!(a.signals, b.signals);
    let c = run(Some(8)).await;
    assert_ne!(
        a.series_digest, c.series_digest,
        "another seed, another series"
    );
}

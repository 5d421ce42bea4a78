//! Behaviour of the validators on small, hand-built situations.

#![allow(clippy::unwrap_used)]

use super::benchmark::{SETTLE, Series, SeriesSpec};
use super::*;
use crate::signal::Better;
use chrono::{Duration, TimeZone};

fn signal(name: &str) -> Signal {
    Signal {
        name: name.into(),
        unit: "ms".into(),
        better: Better::Lower,
        alert_above: None,
        alert_below: None,
    }
}

fn spec(n: usize, spike: bool, history_days: f64) -> SeriesSpec {
    SeriesSpec {
        phi: 0.3,
        daily: true,
        spike,
        n,
        history_days,
    }
}

fn prediction(change: ExpectedChange, n: usize) -> Prediction {
    Prediction {
        signal: "lat".into(),
        change,
        within: Span::minutes(n as u64),
    }
}

fn request<'a>(
    p: &'a Prediction,
    s: &'a Signal,
    series: &'a Series,
    look: Look,
    guardrails: Vec<GuardrailSeries<'a>>,
) -> ValidationRequest<'a> {
    ValidationRequest {
        prediction: p,
        signal: s,
        applied_at: series.applied_at,
        settle: Span::minutes(SETTLE as u64),
        window_end: series.window_end,
        now: series.window_end,
        samples: &series.samples,
        guardrails,
        look,
        sample_every: Span::minutes(1),
        scale: Scale::Auto,
    }
}

#[test]
fn clear_improvement_is_validated_with_figures() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let mut s = Series::generate(&spec(30, false, 8.0), 11);
    s.set_effect(-0.4);
    let v = HonestValidator::default().validate(&request(&p, &sig, &s, Look::Final, vec![]));
    assert_eq!(v.outcome, Outcome::Validated, "{v:?}");
    let f = &v.figures;
    assert_eq!(f.method, "hodges_lehmann_placebo");
    assert_eq!((f.n_before, f.n_after, f.gaps), (30, 30, 0));
    assert_eq!(f.level, Some(0.9));
    assert_eq!(f.magnitude_met, Some(true));
    let (e, l, u) = (f.estimate.unwrap(), f.lower.unwrap(), f.upper.unwrap());
    // True relative effect exp(−0.4) − 1 = −0.33.
    assert!(
        l <= e && e <= u && u < 0.0 && (e + 0.33).abs() < 0.1,
        "{f:?}"
    );
    assert!(
        f.notes.iter().any(|n| n.contains("same time of day")),
        "{:?}",
        f.notes
    );
    assert!(
        f.notes.iter().any(|n| n.contains("placebo splits")),
        "{:?}",
        f.notes
    );
    // Deterministic, also for a fresh validator (no cache).
    let again = HonestValidator::default().validate(&request(&p, &sig, &s, Look::Final, vec![]));
    assert_eq!(v, again);
}

#[test]
fn regression_is_caught_and_interim_looks_only_find_regressions() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let mut s = Series::generate(&spec(30, false, 8.0), 12);
    let hv = HonestValidator::default();
    s.set_effect(0.5);
    assert_eq!(
        hv.validate(&request(&p, &sig, &s, Look::Final, vec![]))
            .outcome,
        Outcome::Regressed
    );
    assert_eq!(
        hv.validate(&request(&p, &sig, &s, Look::Interim, vec![]))
            .outcome,
        Outcome::Regressed
    );
    s.set_effect(-0.5);
    let v = hv.validate(&request(&p, &sig, &s, Look::Interim, vec![]));
    assert_eq!(v.outcome, Outcome::Inconclusive, "{v:?}");
}

#[test]
fn a_guardrail_regression_wins_over_a_target_improvement() {
    let sig = signal("lat");
    let gsig = signal("errors");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let mut s = Series::generate(&spec(30, false, 8.0), 13);
    s.set_effect(-0.5);
    let mut g = Series::generate(&spec(30, false, 8.0), 14);
    g.set_effect(0.6);
    // Same clock as the target.
    let shift = s.applied_at - g.applied_at;
    for x in &mut g.samples {
        x.at += shift;
    }
    let guard = GuardrailSeries {
        signal: &gsig,
        samples: &g.samples,
        scale: Scale::Auto,
    };
    let v = HonestValidator::default().validate(&request(&p, &sig, &s, Look::Final, vec![guard]));
    assert_eq!(v.outcome, Outcome::Regressed, "{v:?}");
    assert!(v.summary.contains("guardrail errors"), "{}", v.summary);
}

#[test]
fn too_few_samples_or_too_many_gaps_are_inconclusive() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let mut s = Series::generate(&spec(30, false, 8.0), 15);
    s.set_effect(-0.5);
    let hv = HonestValidator::default();
    // Drop 40% of the post window.
    let post_from = s.applied_at + Duration::minutes(SETTLE as i64);
    let mut k = 0;
    s.samples.retain(|x| {
        if x.at < post_from {
            return true;
        }
        k += 1;
        k % 5 >= 2
    });
    let v = hv.validate(&request(&p, &sig, &s, Look::Final, vec![]));
    assert_eq!(v.outcome, Outcome::Inconclusive, "{v:?}");
    assert_eq!(v.figures.gaps, 12);
    assert!(v.data_decided(), "{v:?}");
    // On the last extension missing data stays inconclusive (never no effect, never
    // validated), and says which source and how many samples.
    let v = hv.validate(&request(&p, &sig, &s, Look::LastExtension, vec![]));
    assert_eq!(v.outcome, Outcome::Inconclusive, "{v:?}");
    let why = v.figures.cannot_judge.clone().unwrap_or_default();
    assert!(
        why.starts_with("cannot judge: lat source missing 40% of samples"),
        "{why}"
    );
    // Almost no data.
    s.samples
        .retain(|x| x.at < post_from + Duration::minutes(3));
    let v = hv.validate(&request(&p, &sig, &s, Look::Final, vec![]));
    assert_eq!(v.outcome, Outcome::Inconclusive);
    let v = SimpleValidator::default().validate(&request(&p, &sig, &s, Look::Final, vec![]));
    assert_eq!(v.outcome, Outcome::Inconclusive);
}

#[test]
fn a_spike_without_similar_history_is_never_validated() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.1), 30);
    let hv = HonestValidator::default();
    let mut validated = 0;
    let mut flagged = 0;
    for seed in 0..6 {
        // Half a day of history: too little to know how often it recovers by itself.
        let s = Series::generate(&spec(30, true, 0.5), 100 + seed);
        let v = hv.validate(&request(&p, &sig, &s, Look::Final, vec![]));
        validated += usize::from(v.outcome == Outcome::Validated);
        flagged += usize::from(
            v.figures
                .notes
                .iter()
                .any(|n| n.contains("recovers by itself")),
        );
        assert_eq!(v.figures.method, "hodges_lehmann_ar1");
    }
    assert_eq!(validated, 0);
    assert!(flagged >= 4, "{flagged}");
}

fn flat(values: impl Fn(usize) -> f64, total: usize) -> Vec<Sample> {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    (0..total)
        .map(|i| Sample::new("rss", t0 + Duration::minutes(i as i64), values(i)))
        .collect()
}

#[test]
fn threshold_predictions() {
    let sig = signal("rss");
    let p = prediction(ExpectedChange::Below(1500.0), 20);
    let hv = HonestValidator::default();
    let apply = 3000usize;
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let applied_at = t0 + Duration::minutes(apply as i64);
    let window_end = applied_at + Duration::minutes(25);
    let wiggle = |i: usize| ((i * 37) % 11) as f64 * 5.0;
    let run = |samples: &[Sample]| {
        hv.validate(&ValidationRequest {
            prediction: &p,
            signal: &sig,
            applied_at,
            settle: Span::minutes(5),
            window_end,
            now: window_end,
            samples,
            guardrails: vec![],
            look: Look::Final,
            sample_every: Span::minutes(1),
            scale: Scale::Auto,
        })
    };
    // Failing for two days (a leak), fixed by the change.
    let s = flat(
        |i| {
            if i < apply {
                2000.0 + wiggle(i)
            } else {
                1000.0 + wiggle(i)
            }
        },
        apply + 25,
    );
    let v = run(&s);
    assert_eq!(v.outcome, Outcome::Validated, "{v:?}");
    // Already below in the baseline: nothing to attribute.
    let s = flat(|i| 1000.0 + wiggle(i), apply + 25);
    assert_eq!(run(&s).outcome, Outcome::NoEffect);
    // Still failing at the end.
    let s = flat(|_| 2000.0, apply + 25);
    assert_eq!(run(&s).outcome, Outcome::NoEffect);
    // A short excursion above 1500 that the history says nothing about.
    let s = flat(
        |i| {
            if (apply - 20..apply).contains(&i) {
                2000.0 + wiggle(i)
            } else {
                1000.0 + wiggle(i)
            }
        },
        apply + 25,
    );
    let v = run(&s);
    assert_eq!(v.outcome, Outcome::Inconclusive, "{v:?}");
    // It fails and recovers by itself every few hours: not credited to the change.
    let s = flat(
        |i| {
            if i % 180 < 40 || (apply - 20..apply).contains(&i) {
                2000.0
            } else {
                1000.0 + wiggle(i)
            }
        },
        apply + 25,
    );
    let v = run(&s);
    assert_eq!(v.outcome, Outcome::Inconclusive, "{v:?}");
    assert!(v.summary.contains("recovers by itself"), "{}", v.summary);
}

#[test]
fn simple_validator_decides_on_medians_and_mann_whitney() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let mut s = Series::generate(&spec(30, false, 1.0), 16);
    let sv = SimpleValidator::default();
    s.set_effect(-0.5);
    let v = sv.validate(&request(&p, &sig, &s, Look::Final, vec![]));
    assert_eq!(v.outcome, Outcome::Validated, "{v:?}");
    assert_eq!(v.figures.method, "median_mann_whitney");
    assert!(v.figures.estimate.unwrap() < -0.2);
    s.set_effect(0.5);
    assert_eq!(
        sv.validate(&request(&p, &sig, &s, Look::Final, vec![]))
            .outcome,
        Outcome::Regressed
    );
    s.set_effect(0.0);
    let v = sv.validate(&request(&p, &sig, &s, Look::Interim, vec![]));
    assert_eq!(v.outcome, Outcome::Inconclusive);
}

/// Minute samples: `level(i)` × (1 + uniform ±`noise`), seeded.
fn noisy(level: impl Fn(usize) -> f64, noise: f64, total: usize, seed: u64) -> Vec<Sample> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let e: Vec<f64> = (0..total)
        .map(|_| noise * (2.0 * rng.random::<f64>() - 1.0))
        .collect();
    flat(|i| level(i) * (1.0 + e[i]), total)
}

/// A request for a change applied at minute `apply`, judged at the end of a `within`-minute window
/// after a 5-minute settle.
fn at<'a>(
    p: &'a Prediction,
    s: &'a Signal,
    samples: &'a [Sample],
    apply: usize,
) -> ValidationRequest<'a> {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let applied_at = t0 + Duration::minutes(apply as i64);
    let window_end = applied_at + Duration::minutes(5) + p.within.to_chrono();
    ValidationRequest {
        prediction: p,
        signal: s,
        applied_at,
        settle: Span::minutes(5),
        window_end,
        now: window_end,
        samples,
        guardrails: vec![],
        look: Look::Final,
        sample_every: Span::minutes(1),
        scale: Scale::Auto,
    }
}

/// 190 minutes of iid ±4% noise before the apply (the CLI loop's situation): an ordinary baseline
/// is not an "excursion" just because overlapping window means vary little, so a real −40% is
/// validated; a no-op is not.
#[test]
fn short_history_baselines_are_not_excursions() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let hv = HonestValidator::default();
    let apply = 190;
    let (mut validated, mut flagged, mut false_validated) = (0, 0, 0);
    for seed in 0..20 {
        let fixed = noisy(|i| if i >= apply { 150.0 } else { 250.0 }, 0.04, 230, seed);
        let v = hv.validate(&at(&p, &sig, &fixed, apply));
        validated += usize::from(v.outcome == Outcome::Validated);
        flagged += usize::from(
            v.figures
                .notes
                .iter()
                .any(|n| n.contains("sd of window means")),
        );
        let noop = noisy(|_| 250.0, 0.04, 230, 1000 + seed);
        let v = hv.validate(&at(&p, &sig, &noop, apply));
        false_validated += usize::from(v.outcome == Outcome::Validated);
    }
    assert!(validated >= 17, "{validated} of 20 validated");
    assert!(flagged <= 3, "{flagged} of 20 flagged as excursions");
    assert_eq!(false_validated, 0);
}

/// A regression that has held for 14 hours (level ×2 after 2 days at 100) is a persistent
/// problem, not a spike: a fix is validated, with a note saying why. The same jump held for only
/// an hour is never validated, and a no-op on the persistent regression is not either.
#[test]
fn a_persistent_excursion_can_be_validated_a_short_one_cannot() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.3), 30);
    let hv = HonestValidator::default();
    let apply = 3 * 1440;
    let total = apply + 40;
    let persisted = |since: usize, after: f64| {
        move |i: usize| {
            if i >= apply {
                after
            } else if i >= since {
                200.0
            } else {
                100.0
            }
        }
    };
    let fixed = noisy(persisted(apply - 14 * 60, 100.0), 0.05, total, 1);
    let v = hv.validate(&at(&p, &sig, &fixed, apply));
    assert_eq!(v.outcome, Outcome::Validated, "{v:?}");
    assert!(
        v.figures
            .notes
            .iter()
            .any(|n| n.contains("persisted without recovering")),
        "{:?}",
        v.figures.notes
    );
    // A no-op on the persistent regression: validated no more often than the 5% level allows.
    let noop_validated = (0..10)
        .filter(|seed| {
            let noop = noisy(persisted(apply - 14 * 60, 200.0), 0.05, total, 10 + seed);
            hv.validate(&at(&p, &sig, &noop, apply)).outcome == Outcome::Validated
        })
        .count();
    assert!(noop_validated <= 1, "{noop_validated} of 10");
    let spike = noisy(persisted(apply - 60, 100.0), 0.05, total, 3);
    let v = hv.validate(&at(&p, &sig, &spike, apply));
    assert_ne!(v.outcome, Outcome::Validated, "{v:?}");
    assert!(
        v.figures
            .notes
            .iter()
            .any(|n| n.contains("recovers by itself")),
        "{:?}",
        v.figures.notes
    );
}

/// The CLI loop's series exactly (`kaizen-cli/tests/common.rs`): ±4% splitmix noise on minute
/// samples, 190 minutes at 250 ms, a fix at minute 190 after which it reads 150 ms.
#[test]
fn the_cli_loop_fix_is_validated() {
    let noisy = |level: f64, i: i64| {
        let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let x = (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        (level * (1.0 + 0.08 * x) * 10.0).round() / 10.0
    };
    let samples: Vec<Sample> = flat(
        |i| {
            let m = i as i64 - 180;
            noisy(if m <= 10 { 250.0 } else { 150.0 }, m)
        },
        226,
    );
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let v = HonestValidator::default().validate(&at(&p, &sig, &samples, 190));
    assert_eq!(v.outcome, Outcome::Validated, "{v:?}");
}

/// With no history before the baseline (kaizen just started watching): a steady baseline cannot
/// be shown to be an excursion, so a real −40% is validated and a no-op is not; a baseline that
/// is already coming down by itself (a passing spike) is never validated; with a short stretch
/// before the baseline, a spike in the baseline is credited only beyond a full return.
#[test]
fn no_history_before_the_baseline() {
    let sig = signal("lat");
    let p = prediction(ExpectedChange::Relative(-0.2), 30);
    let hv = HonestValidator::default();
    let apply = 30;
    let (mut validated, mut false_validated, mut spike_validated) = (0, 0, 0);
    for seed in 0..20 {
        let fixed = noisy(|i| if i >= apply { 150.0 } else { 250.0 }, 0.04, 70, seed);
        validated +=
            usize::from(hv.validate(&at(&p, &sig, &fixed, apply)).outcome == Outcome::Validated);
        let noop = noisy(|_| 250.0, 0.04, 70, 500 + seed);
        false_validated +=
            usize::from(hv.validate(&at(&p, &sig, &noop, apply)).outcome == Outcome::Validated);
        // A spike decaying from 400 towards 250 through the baseline, then the usual level.
        let spike = noisy(
            |i| {
                if i < apply {
                    250.0 + 150.0 * (-(i as f64) / 10.0).exp()
                } else {
                    250.0
                }
            },
            0.04,
            70,
            900 + seed,
        );
        let v = hv.validate(&at(&p, &sig, &spike, apply));
        spike_validated += usize::from(v.outcome == Outcome::Validated);
    }
    assert!(validated >= 17, "{validated} of 20 validated");
    assert_eq!(false_validated, 0);
    assert_eq!(
        spike_validated, 0,
        "a passing spike is never credited to the change"
    );

    // Twenty minutes at the usual level, then a 30-minute spike as the baseline, then back: the
    // return to the usual level is not credited to a no-op.
    let apply = 50;
    let mut credited = 0;
    for seed in 0..20 {
        let s = noisy(
            |i| {
                if (20..apply).contains(&i) {
                    400.0
                } else {
                    250.0
                }
            },
            0.04,
            90,
            1300 + seed,
        );
        credited +=
            usize::from(hv.validate(&at(&p, &sig, &s, apply)).outcome == Outcome::Validated);
    }
    assert_eq!(credited, 0);
}

//! Rule triggers: when a rule fires.
//!
//! ```yaml
//! when: { signal: latency_ms, above: 200, for: 10m }             # a fixed threshold, held 10m
//! when: { signal: rss_mb, above: 2x baseline_24h, for: 10m }     # twice its own 24h median
//! when: { signal: queue_depth, rising: 20%/h, for: 1h }          # trend over the last hour
//! when: { all: [ {signal: a, above: 1}, {any: [{signal: b, below: 2}, {signal: c, rising: 5/m}]} ] }
//! ```
//!
//! Missing data never fires a rule: a stale latest sample, a baseline with too few samples or
//! too little coverage of its window, or a trend over too few samples all say "no".

use crate::signal::Sample;
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Longest baseline window (proposers see the last 24 h of samples).
pub const MAX_BASELINE: Span = Span::hours(24);
/// Fewest samples a baseline needs.
pub const MIN_BASELINE_SAMPLES: usize = 10;
/// Fewest samples a rate of change needs.
pub const MIN_RATE_SAMPLES: usize = 6;
/// Deepest `all`/`any` nesting.
pub const MAX_DEPTH: usize = 4;
/// Most conditions in one `all`/`any`.
pub const MAX_ITEMS: usize = 16;
/// The window a rate is measured over when `for` is not given.
pub const DEFAULT_RATE_WINDOW: Span = Span::hours(1);

/// A threshold: a value, or a multiple of the signal's own recent median.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    /// A fixed value.
    Value(f64),
    /// `2x baseline_24h`: `factor` × the median over `window` before the condition's `for`.
    Baseline {
        /// The multiple (`2` in `2x`).
        factor: f64,
        /// The baseline window (`24h`).
        window: Span,
    },
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Value(x) => write!(f, "{x}"),
            Threshold::Baseline { factor, window } => write!(f, "{factor}x baseline_{window}"),
        }
    }
}

/// A rate of change: `20%/h` (relative to the mean level) or `5/m` (in the signal's unit).
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// How much per `per` (a fraction when `relative`).
    pub amount: f64,
    /// Whether `amount` is a fraction of the mean level.
    pub relative: bool,
    /// Per how long.
    pub per: Span,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.seconds() {
            1 => "s".to_string(),
            60 => "m".to_string(),
            3600 => "h".to_string(),
            86_400 => "d".to_string(),
            _ => self.per.to_string(),
        };
        if self.relative {
            write!(f, "{}%/{unit}", round3(self.amount * 100.0))
        } else {
            write!(f, "{}/{unit}", round3(self.amount))
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One signal's condition; every part given must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The watched signal.
    pub signal: String,
    /// Fires while the value is above this...
    pub above: Option<Threshold>,
    /// ...or below this...
    pub below: Option<Threshold>,
    /// ...and/or while its trend rises at least this fast...
    pub rising: Option<Rate>,
    /// ...or falls at least this fast.
    pub falling: Option<Rate>,
    /// Thresholds must hold continuously this long; a rate is measured over this window
    /// (default 1h).
    pub for_: Span,
}

/// When a rule fires: one condition, or all / any of several.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// One signal's condition.
    Cond(Condition),
    /// Every one holds.
    All(Vec<Trigger>),
    /// At least one holds.
    Any(Vec<Trigger>),
}

/// `when:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenSerde {
    #[serde(default)]
    signal: Option<String>,
    #[serde(default)]
    above: Option<Value>,
    #[serde(default)]
    below: Option<Value>,
    #[serde(default)]
    rising: Option<String>,
    #[serde(default)]
    falling: Option<String>,
    #[serde(default, rename = "for")]
    for_: Span,
    #[serde(default)]
    all: Option<Vec<WhenSerde>>,
    #[serde(default)]
    any: Option<Vec<WhenSerde>>,
}

/// A `when` that makes no sense: the field path below `when` and why.
pub(crate) type TriggerError = (String, String);

fn threshold(v: &Value) -> Result<Threshold, String> {
    let bad = || format!("{v} is not a threshold (write a number, or e.g. \"2x baseline_24h\")");
    if let Some(x) = v.as_f64() {
        return if x.is_finite() {
            Ok(Threshold::Value(x))
        } else {
            Err("must be a finite number".into())
        };
    }
    let s = v.as_str().ok_or_else(bad)?.trim();
    if let Ok(x) = s.parse::<f64>() {
        return if x.is_finite() {
            Ok(Threshold::Value(x))
        } else {
            Err("must be a finite number".into())
        };
    }
    let (factor, rest) = match s.split_once(['x', '×', '*']) {
        Some((f, rest)) if !f.trim().is_empty() => {
            (f.trim().parse::<f64>().map_err(|_| bad())?, rest.trim())
        }
        _ => (1.0, s),
    };
    if !(factor.is_finite() && factor > 0.0) {
        return Err(format!("{}: the factor must be positive", bad()));
    }
    let window = rest.strip_prefix("baseline_").ok_or_else(bad)?;
    let window: Span = window.parse().map_err(|e| format!("{}: {e}", bad()))?;
    if window.seconds() == 0 || window > MAX_BASELINE {
        return Err(format!(
            "baseline window {window} must be positive and at most {MAX_BASELINE} (proposers see the last {MAX_BASELINE})"
        ));
    }
    Ok(Threshold::Baseline { factor, window })
}

fn rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?} is not a rate (write e.g. \"20%/h\" or \"5/m\")");
    let (amount, per) = s.trim().split_once('/').ok_or_else(bad)?;
    let (amount, relative) = match amount.trim().strip_suffix('%') {
        Some(a) => (a, true),
        None => (amount.trim(), false),
    };
    let mut x: f64 = amount.trim().parse().map_err(|_| bad())?;
    if !(x.is_finite() && x > 0.0) {
        return Err(format!("{}: the amount must be positive", bad()));
    }
    if relative {
        x /= 100.0;
    }
    let per = per.trim();
    let per: Span = if per.starts_with(|c: char| c.is_ascii_digit()) {
        per.parse().map_err(|_| bad())?
    } else {
        format!("1{per}").parse().map_err(|_| bad())?
    };
    if per.seconds() == 0 {
        return Err(format!("{}: per zero time", bad()));
    }
    Ok(Rate {
        amount: x,
        relative,
        per,
    })
}

impl Trigger {
    /// Checks `raw` against the configured signals.
    pub(crate) fn from_serde(
        raw: WhenSerde,
        known: &BTreeSet<String>,
    ) -> Result<Trigger, TriggerError> {
        Self::build(raw, known, 0)
    }

    fn build(
        raw: WhenSerde,
        known: &BTreeSet<String>,
        depth: usize,
    ) -> Result<Trigger, TriggerError> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        let has_cond = raw.signal.is_some()
            || raw.above.is_some()
            || raw.below.is_some()
            || raw.rising.is_some()
            || raw.falling.is_some();
        let group = match (raw.all, raw.any) {
            (Some(_), Some(_)) => return err("", "give `all` or `any`, not both".into()),
            (Some(list), None) => Some(("all", list)),
            (None, Some(list)) => Some(("any", list)),
            (None, None) => None,
        };
        if let Some((name, list)) = group {
            if has_cond || raw.for_.seconds() != 0 {
                return err(
                    name,
                    format!("`{name}` stands alone: put each signal's condition inside it"),
                );
            }
            if depth >= MAX_DEPTH {
                return err(name, format!("nested more than {MAX_DEPTH} levels deep"));
            }
            if list.is_empty() || list.len() > MAX_ITEMS {
                return err(name, format!("needs 1 to {MAX_ITEMS} conditions"));
            }
            let mut out = Vec::new();
            for (i, item) in list.into_iter().enumerate() {
                out.push(Self::build(item, known, depth + 1).map_err(|(f, m)| {
                    let sub = if f.is_empty() {
                        format!("{name}[{i}]")
                    } else {
                        format!("{name}[{i}].{f}")
                    };
                    (sub, m)
                })?);
            }
            return Ok(if name == "all" {
                Trigger::All(out)
            } else {
                Trigger::Any(out)
            });
        }
        let Some(signal) = raw.signal else {
            return err("", "needs `signal` (or `all:` / `any:`)".into());
        };
        if !known.contains(&signal) {
            let list = if known.is_empty() {
                "none".to_string()
            } else {
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            return err(
                "signal",
                format!("unknown signal {signal:?} (configured: {list})"),
            );
        }
        let at = |f: &'static str| move |m: String| (f.to_string(), m);
        let above = raw
            .above
            .as_ref()
            .map(threshold)
            .transpose()
            .map_err(at("above"))?;
        let below = raw
            .below
            .as_ref()
            .map(threshold)
            .transpose()
            .map_err(at("below"))?;
        let rising = raw
            .rising
            .as_deref()
            .map(rate)
            .transpose()
            .map_err(at("rising"))?;
        let falling = raw
            .falling
            .as_deref()
            .map(rate)
            .transpose()
            .map_err(at("falling"))?;
        if above.is_none() && below.is_none() && rising.is_none() && falling.is_none() {
            return err("", "needs `above`, `below`, `rising` or `falling`".into());
        }
        if let Err(m) = raw.for_.at_most(crate::rules::MAX_FOR) {
            return err("for", m);
        }
        Ok(Trigger::Cond(Condition {
            signal,
            above,
            below,
            rising,
            falling,
            for_: raw.for_,
        }))
    }

    /// Every signal it reads.
    pub fn signals(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Trigger::Cond(c) => out.push(&c.signal),
            Trigger::All(v) | Trigger::Any(v) => v.iter().for_each(|t| t.collect(out)),
        }
    }

    /// A description of why it fires now, or `None`. `recent` holds each signal's samples in
    /// time order; a latest sample older than `stale_after` never fires.
    pub fn fires(
        &self,
        recent: &BTreeMap<String, Vec<Sample>>,
        now: DateTime<Utc>,
        stale_after: Span,
    ) -> Option<String> {
        match self {
            Trigger::Cond(c) => {
                let samples = recent.get(&c.signal).map(Vec::as_slice).unwrap_or(&[]);
                c.fires(samples, now, stale_after)
            }
            Trigger::All(list) => {
                let parts: Option<Vec<String>> = list
                    .iter()
                    .map(|t| t.fires(recent, now, stale_after))
                    .collect();
                parts.map(|p| p.join(" and "))
            }
            Trigger::Any(list) => {
                let parts: Vec<String> = list
                    .iter()
                    .filter_map(|t| t.fires(recent, now, stale_after))
                    .collect();
                (!parts.is_empty()).then(|| parts.join("; "))
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Condition {
    /// The median over `window` before the condition's own `for` (so an excursion does not
    /// raise its own baseline), if enough samples cover enough of it.
    fn baseline(&self, samples: &[Sample], now: DateTime<Utc>, window: Span) -> Option<f64> {
        let end = self.for_.before(now);
        let start = window.before(end);
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at > start && s.at <= end && s.value.is_finite())
            .collect();
        let first = inside.first()?.at;
        let last = inside.last()?.at;
        if inside.len() < MIN_BASELINE_SAMPLES || (last - first) * 2 < window.to_chrono() {
            return None;
        }
        median(inside.iter().map(|s| s.value).collect())
    }

    fn resolve(&self, t: &Threshold, samples: &[Sample], now: DateTime<Utc>) -> Option<f64> {
        match t {
            Threshold::Value(x) => Some(*x),
            Threshold::Baseline { factor, window } => {
                let b = self.baseline(samples, now, *window)?;
                let x = factor * b;
                x.is_finite().then_some(x)
            }
        }
    }

    /// Least-squares trend over the window, per `rate.per` (relative to the mean level when
    /// the rate is): `None` with too few samples, too little coverage, or a zero mean.
    fn trend(&self, samples: &[Sample], now: DateTime<Utc>, rate: &Rate) -> Option<(f64, usize)> {
        let window = if self.for_.seconds() == 0 {
            DEFAULT_RATE_WINDOW
        } else {
            self.for_
        };
        let start = window.before(now);
        let pts: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.at >= start && s.at <= now && s.value.is_finite())
            .map(|s| ((s.at - start).num_milliseconds() as f64 / 1000.0, s.value))
            .collect();
        let n = pts.len();
        let (first, last) = (pts.first()?.0, pts.last()?.0);
        if n < MIN_RATE_SAMPLES || (last - first) * 4.0 < window.seconds() as f64 * 3.0 {
            return None;
        }
        let nf = n as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / nf;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / nf;
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx <= 0.0 {
            return None;
        }
        let per = (sxy / sxx) * rate.per.seconds() as f64;
        let r = if rate.relative {
            if my.abs() < f64::EPSILON {
                return None;
            }
            per / my.abs()
        } else {
            per
        };
        r.is_finite().then_some((r, n))
    }

    /// Why this condition holds now, or `None`.
    pub fn fires(
        &self,
        samples: &[Sample],
        now: DateTime<Utc>,
        stale_after: Span,
    ) -> Option<String> {
        let latest = samples.last()?;
        if now - latest.at > stale_after.to_chrono() {
            return None;
        }
        let mut parts = Vec::new();
        if self.above.is_some() || self.below.is_some() {
            let above = match &self.above {
                Some(t) => Some((t, self.resolve(t, samples, now)?)),
                None => None,
            };
            let below = match &self.below {
                Some(t) => Some((t, self.resolve(t, samples, now)?)),
                None => None,
            };
            let holds =
                |v: f64| above.is_some_and(|(_, a)| v > a) || below.is_some_and(|(_, b)| v < b);
            if !holds(latest.value) {
                return None;
            }
            let streak_start = samples
                .iter()
                .rev()
                .take_while(|s| holds(s.value))
                .last()
                .map(|s| s.at)?;
            if latest.at - streak_start < self.for_.to_chrono() {
                return None;
            }
            let show = |word: &str, (t, x): (&Threshold, f64)| match t {
                Threshold::Value(_) => format!("{word} {t}"),
                Threshold::Baseline { .. } => format!("{word} {t} (= {})", round3(x)),
            };
            let cond = match (above, below) {
                (Some(a), _) if latest.value > a.1 => show("above", a),
                (_, Some(b)) => show("below", b),
                (Some(a), None) => show("above", a),
                (None, None) => String::new(),
            };
            parts.push(format!(
                "{} {cond} for {} (since {}, last {})",
                self.signal,
                Span::from_chrono(latest.at - streak_start),
                ts(streak_start),
                crate::human::sig3(latest.value)
            ));
        }
        for (word, rate, sign) in [
            ("rising", &self.rising, 1.0),
            ("falling", &self.falling, -1.0),
        ] {
            let Some(rate) = rate else { continue };
            let (r, n) = self.trend(samples, now, rate)?;
            if r * sign < rate.amount {
                return None;
            }
            let shown = Rate {
                amount: (r * sign).abs(),
                ..rate.clone()
            };
            parts.push(format!(
                "{} {word} {shown} (at least {rate}; {n} samples, last {})",
                self.signal,
                crate::human::sig3(latest.value)
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        ["rss_mb", "latency_ms", "queue"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn trig(yaml: &str) -> Result<Trigger, TriggerError> {
        let raw: WhenSerde =
            crate::yaml::from_str(yaml, std::path::Path::new("when.yaml")).unwrap();
        Trigger::from_serde(raw, &known())
    }

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    /// One sample a minute for `minutes` minutes ending at t0 + `minutes`, value `f(i)`.
    fn series(name: &str, minutes: i64, f: impl Fn(i64) -> f64) -> Vec<Sample> {
        (0..=minutes)
            .map(|i| Sample::new(name, t0() + chrono::Duration::minutes(i), f(i)))
            .collect()
    }

    fn recent(pairs: Vec<(&str, Vec<Sample>)>) -> BTreeMap<String, Vec<Sample>> {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::minutes(minutes)
    }

    const STALE: Span = Span::minutes(5);

    #[test]
    fn baseline_relative_fires_at_twice_normal_for_ten_minutes() {
        let t = trig("{ signal: rss_mb, above: 2x baseline_24h, for: 10m }").unwrap();
        // 13 h at ~250 (a 24h baseline needs at least half its window), then 600 for 12 minutes.
        let rss = series("rss_mb", 792, |i| {
            if i > 780 {
                600.0
            } else {
                250.0 + (i % 3) as f64
            }
        });
        let why = t
            .fires(&recent(vec![("rss_mb", rss)]), at(792), STALE)
            .unwrap();
        assert!(
            why.starts_with("rss_mb above 2x baseline_24h (= 502) for 11m"),
            "{why}"
        );
        // Only 5 minutes of the excursion: not yet.
        let short = series("rss_mb", 785, |i| if i > 780 { 600.0 } else { 250.0 });
        assert!(
            t.fires(&recent(vec![("rss_mb", short)]), at(785), STALE)
                .is_none()
        );
        // 450 is high but not 2x its baseline.
        let mild = series("rss_mb", 792, |i| if i > 780 { 450.0 } else { 250.0 });
        assert!(
            t.fires(&recent(vec![("rss_mb", mild)]), at(792), STALE)
                .is_none()
        );
        // A baseline without enough history (3 hours of a 24h window) never fires.
        let young = series("rss_mb", 180, |i| if i > 160 { 600.0 } else { 250.0 });
        assert!(
            t.fires(&recent(vec![("rss_mb", young)]), at(180), STALE)
                .is_none()
        );
    }

    #[test]
    fn rate_of_change_fires_on_a_rising_trend_only() {
        let t = trig("{ signal: queue, rising: 20%/h }").unwrap();
        // +1 per minute: 60/h on the last hour's mean of 160 → 37.5%/h.
        let rising = series("queue", 90, |i| 100.0 + i as f64);
        let why = t
            .fires(&recent(vec![("queue", rising)]), at(90), STALE)
            .unwrap();
        assert!(why.starts_with("queue rising 37.5%/h"), "{why}");
        assert!(why.contains("(at least 20%/h; 61 samples"), "{why}");
        let flat = series("queue", 90, |i| 100.0 + (i % 2) as f64);
        assert!(
            t.fires(&recent(vec![("queue", flat)]), at(90), STALE)
                .is_none()
        );
        let falling = trig("{ signal: queue, falling: 10/h, for: 30m }").unwrap();
        let down = series("queue", 40, |i| 500.0 - i as f64);
        let why = falling
            .fires(&recent(vec![("queue", down)]), at(40), STALE)
            .unwrap();
        assert!(why.contains("queue falling 60/h"), "{why}");
        // Too few samples in the window: no trend, no fire.
        let sparse: Vec<Sample> = [0, 30, 60]
            .iter()
            .map(|m| Sample::new("queue", at(*m), 100.0 + *m as f64 * 10.0))
            .collect();
        assert!(
            t.fires(&recent(vec![("queue", sparse)]), at(60), STALE)
                .is_none()
        );
    }

    #[test]
    fn all_and_any_combine_conditions() {
        let lat = series("latency_ms", 30, |_| 250.0);
        let calm = series("rss_mb", 30, |_| 100.0);
        let all = trig(
            "{ all: [ {signal: latency_ms, above: 200, for: 10m}, {signal: rss_mb, above: 500} ] }",
        )
        .unwrap();
        let any = trig(
            "{ any: [ {signal: latency_ms, above: 200, for: 10m}, {signal: rss_mb, above: 500} ] }",
        )
        .unwrap();
        let r = recent(vec![("latency_ms", lat.clone()), ("rss_mb", calm)]);
        assert!(all.fires(&r, at(30), STALE).is_none());
        let why = any.fires(&r, at(30), STALE).unwrap();
        assert!(why.starts_with("latency_ms above 200 for 30m"), "{why}");
        let hot = series("rss_mb", 30, |_| 900.0);
        let r = recent(vec![("latency_ms", lat), ("rss_mb", hot)]);
        let why = all.fires(&r, at(30), STALE).unwrap();
        assert!(why.contains(" and rss_mb above 500"), "{why}");
        assert_eq!(all.signals(), ["latency_ms", "rss_mb"]);
        // A missing signal makes `all` false and leaves `any` to the others.
        let r = recent(vec![("rss_mb", series("rss_mb", 30, |_| 900.0))]);
        assert!(all.fires(&r, at(30), STALE).is_none());
        assert!(any.fires(&r, at(30), STALE).is_some());
    }

    #[test]
    fn bad_triggers_name_the_field() {
        let e = |y: &str| trig(y).unwrap_err();
        assert_eq!(e("{ signal: rss }").0, "signal");
        assert_eq!(
            e("{ signal: rss_mb }").1,
            "needs `above`, `below`, `rising` or `falling`"
        );
        assert_eq!(e("{ signal: rss_mb, above: 2x baseline_7d }").0, "above");
        assert!(
            e("{ signal: rss_mb, above: 2x baseline_7d }")
                .1
                .contains("at most 24h")
        );
        assert_eq!(e("{ signal: rss_mb, above: twice }").0, "above");
        assert_eq!(e("{ signal: rss_mb, rising: fast }").0, "rising");
        assert_eq!(e("{ signal: rss_mb, rising: -5%/h }").0, "rising");
        assert_eq!(
            e("{ all: [ {signal: rss_mb, above: 1}, {signal: nope, above: 1} ] }").0,
            "all[1].signal"
        );
        assert_eq!(
            e("{ all: [ {any: [ {signal: rss_mb} ]} ] }").0,
            "all[0].any[0]"
        );
        assert_eq!(e("{ all: [] }").0, "all");
        assert_eq!(
            e("{ all: [ {signal: rss_mb, above: 1} ], signal: rss_mb }").0,
            "all"
        );
        let deep = "{ all: [ { all: [ { all: [ { all: [ { all: [ {signal: rss_mb, above: 1} ] } ] } ] } ] } ] }";
        assert!(e(deep).1.contains("nested"));
    }
}

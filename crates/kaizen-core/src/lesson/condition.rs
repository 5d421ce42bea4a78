//! A small, machine-checkable condition language for a lesson's `falsifiable` and `retired_when`.
//!
//! ```text
//! condition := clause (("or" | "and") clause)*        -- "and" binds tighter than "or"
//! clause    := SIGNAL STAT "_" WINDOW test
//! STAT      := median | mean | min | max | last | p50 | p90 | p95 | p99
//! WINDOW    := a duration: 30m, 1h, 24h, 7d
//! test      := above NUMBER | below NUMBER | outside [LOW, HIGH] | inside [LOW, HIGH]
//! ```
//!
//! Examples: `latency_ms median_24h outside [150, 400]`,
//! `latency_ms p95_1h above 300 or error_rate median_1h above 0.05`.
//!
//! A clause is evaluated on the samples of its signal in the window `(now − WINDOW, now]`. Too few
//! samples, or samples covering less than half the window, make it *unknown* — never true: a lesson
//! is never retired (or declared falsified) on missing data.
//!
//! Text that does not parse is free text: allowed in hand-written lessons, never evaluated.

use crate::signal::Sample;
use crate::span::Span;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Fewest samples in a window for a clause to be decided.
pub const MIN_SAMPLES: usize = 3;

/// A statistic over a window of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// The median.
    Median,
    /// The arithmetic mean.
    Mean,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The newest value.
    Last,
    /// A percentile, 1..=99 (linear interpolation between ranks).
    Percentile(u8),
}

impl Stat {
    fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "median" => Stat::Median,
            "mean" | "avg" => Stat::Mean,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "last" => Stat::Last,
            p => {
                let n: u8 = p.strip_prefix('p')?.parse().ok()?;
                if !(1..=99).contains(&n) {
                    return None;
                }
                if n == 50 {
                    Stat::Median
                } else {
                    Stat::Percentile(n)
                }
            }
        })
    }

    /// Computes the statistic over values in time order (non-empty).
    fn compute(self, values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match self {
            Stat::Median => quantile(&sorted, 0.5),
            Stat::Mean => values.iter().sum::<f64>() / n as f64,
            Stat::Min => sorted[0],
            Stat::Max => sorted[n - 1],
            Stat::Last => values[values.len() - 1],
            Stat::Percentile(p) => quantile(&sorted, f64::from(p) / 100.0),
        }
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stat::Median => f.write_str("median"),
            Stat::Mean => f.write_str("mean"),
            Stat::Min => f.write_str("min"),
            Stat::Max => f.write_str("max"),
            Stat::Last => f.write_str("last"),
            Stat::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

/// The comparison a clause makes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Test {
    /// Strictly above.
    Above(f64),
    /// Strictly below.
    Below(f64),
    /// Strictly outside `[low, high]`.
    Outside(f64, f64),
    /// Within `[low, high]` (inclusive).
    Inside(f64, f64),
}

impl Test {
    fn holds(self, v: f64) -> bool {
        match self {
            Test::Above(t) => v > t,
            Test::Below(t) => v < t,
            Test::Outside(lo, hi) => v < lo || v > hi,
            Test::Inside(lo, hi) => v >= lo && v <= hi,
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Test::Above(t) => write!(f, "above {}", fmt_num(t)),
            Test::Below(t) => write!(f, "below {}", fmt_num(t)),
            Test::Outside(lo, hi) => write!(f, "outside [{}, {}]", fmt_num(lo), fmt_num(hi)),
            Test::Inside(lo, hi) => write!(f, "inside [{}, {}]", fmt_num(lo), fmt_num(hi)),
        }
    }
}

/// `SIGNAL STAT_WINDOW test`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// The signal name.
    pub signal: String,
    /// The statistic.
    pub stat: Stat,
    /// The window it is computed over, ending at now.
    pub window: Span,
    /// The comparison.
    pub test: Test,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}_{} {}",
            self.signal, self.stat, self.window, self.test
        )
    }
}

/// A parsed condition: a disjunction (`or`) of conjunctions (`and`) of clauses.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// `any` of these groups, each holding when `all` its clauses hold.
    pub any: Vec<Vec<Clause>>,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<String> = self
            .any
            .iter()
            .map(|g| {
                g.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            })
            .collect();
        f.write_str(&groups.join(" or "))
    }
}

/// Text that is not a condition, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a condition: {why} (write e.g. \"latency_ms median_24h outside [150, 400]\")")]
pub struct ConditionError {
    /// What is wrong.
    pub why: String,
    /// The text has the shape of a condition but a value out of bounds (e.g. a window of
    /// `99999999d`): a mistake to refuse, not free text to keep.
    pub out_of_bounds: bool,
}

fn err(why: impl Into<String>) -> ConditionError {
    ConditionError {
        why: why.into(),
        out_of_bounds: false,
    }
}

/// Longest window a clause may use (kaizen keeps about nine days of samples; a month is already
/// more than any clause can be decided on).
pub const MAX_WINDOW: Span = Span::days(30);
/// Longest condition text parsed (longer text is free text).
pub const MAX_CONDITION_LEN: usize = 2000;
/// Most clauses in one condition.
pub const MAX_CLAUSES: usize = 16;

fn parse_num(tok: Option<&str>, what: &str) -> Result<f64, ConditionError> {
    let tok = tok.ok_or_else(|| err(format!("{what}: a number is missing")))?;
    tok.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| err(format!("{what}: {tok:?} is not a number")))
}

fn valid_signal(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/'))
}

fn parse_clause(toks: &[&str]) -> Result<Clause, ConditionError> {
    let signal = *toks.first().ok_or_else(|| err("empty clause"))?;
    if !valid_signal(signal) {
        return Err(err(format!("{signal:?} is not a signal name")));
    }
    let sw = *toks.get(1).ok_or_else(|| {
        err(format!(
            "`{signal}` needs a statistic and window, e.g. median_24h"
        ))
    })?;
    let (stat, window) = sw
        .split_once('_')
        .ok_or_else(|| err(format!("{sw:?} is not STAT_WINDOW, e.g. median_24h")))?;
    let stat = Stat::parse(stat).ok_or_else(|| {
        err(format!(
            "unknown statistic {stat:?} (median, mean, min, max, last, p1..p99)"
        ))
    })?;
    let looks_like_span = !window.is_empty()
        && window
            .chars()
            .all(|c| c.is_ascii_digit() || "smhdw".contains(c))
        && window.starts_with(|c: char| c.is_ascii_digit());
    let window: Span = window
        .parse()
        .map_err(|e: crate::span::SpanError| ConditionError {
            why: e.to_string(),
            out_of_bounds: looks_like_span,
        })?;
    if window.seconds() == 0 {
        return Err(err("the window must be longer than 0s"));
    }
    if window > MAX_WINDOW {
        return Err(ConditionError {
            why: format!("the window {window} is longer than {MAX_WINDOW}"),
            out_of_bounds: true,
        });
    }
    let op = *toks.get(2).ok_or_else(|| {
        err(format!(
            "`{signal} {sw}` needs above, below, outside or inside"
        ))
    })?;
    let rest = &toks[3..];
    let test = match op {
        "above" | ">" => {
            if rest.len() != 1 {
                return Err(err(format!("`{op}` takes exactly one number")));
            }
            Test::Above(parse_num(rest.first().copied(), op)?)
        }
        "below" | "<" => {
            if rest.len() != 1 {
                return Err(err(format!("`{op}` takes exactly one number")));
            }
            Test::Below(parse_num(rest.first().copied(), op)?)
        }
        "outside" | "inside" => {
            // Tokens: [ LOW , HIGH ]
            if rest.len() != 5 || rest[0] != "[" || rest[2] != "," || rest[4] != "]" {
                return Err(err(format!("`{op}` takes a range like [150, 400]")));
            }
            let lo = parse_num(Some(rest[1]), op)?;
            let hi = parse_num(Some(rest[3]), op)?;
            if lo > hi {
                return Err(err(format!(
                    "range [{lo}, {hi}] has its low end above its high end"
                )));
            }
            if op == "outside" {
                Test::Outside(lo, hi)
            } else {
                Test::Inside(lo, hi)
            }
        }
        other => {
            return Err(err(format!(
                "unknown test {other:?} (above, below, outside or inside)"
            )));
        }
    };
    Ok(Clause {
        signal: signal.to_string(),
        stat,
        window,
        test,
    })
}

impl FromStr for Condition {
    type Err = ConditionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spaced = s
            .replace('[', " [ ")
            .replace(']', " ] ")
            .replace(',', " , ");
        if s.len() > MAX_CONDITION_LEN {
            return Err(err(format!("longer than {MAX_CONDITION_LEN} characters")));
        }
        let toks: Vec<&str> = spaced.split_whitespace().collect();
        if toks.is_empty() {
            return Err(err("empty"));
        }
        let joins = toks
            .iter()
            .filter(|t| matches!(**t, "or" | "OR" | "and" | "AND"))
            .count();
        if joins >= MAX_CLAUSES {
            return Err(err(format!("more than {MAX_CLAUSES} clauses")));
        }
        let mut any = Vec::new();
        let mut group = Vec::new();
        let mut current: Vec<&str> = Vec::new();
        for tok in toks {
            match tok {
                "or" | "OR" | "and" | "AND" => {
                    group.push(parse_clause(&current)?);
                    current.clear();
                    if tok.eq_ignore_ascii_case("or") {
                        any.push(std::mem::take(&mut group));
                    }
                }
                t => current.push(t),
            }
        }
        group.push(parse_clause(&current)?);
        any.push(group);
        Ok(Condition { any })
    }
}

/// What evaluating a condition (or clause) concluded, with a sentence saying why.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// The condition holds on the data.
    Holds(String),
    /// The data contradicts it.
    DoesNotHold(String),
    /// Not enough data to say; treated as "does not hold".
    Insufficient(String),
}

impl Evaluation {
    /// Whether it holds (insufficient data never holds).
    pub fn holds(&self) -> bool {
        matches!(self, Evaluation::Holds(_))
    }

    /// The explanation.
    pub fn detail(&self) -> &str {
        match self {
            Evaluation::Holds(d) | Evaluation::DoesNotHold(d) | Evaluation::Insufficient(d) => d,
        }
    }
}

impl Clause {
    /// Evaluates the clause on `recent[signal]` in `(now − window, now]`.
    pub fn evaluate(
        &self,
        recent: &BTreeMap<String, Vec<Sample>>,
        now: DateTime<Utc>,
    ) -> Evaluation {
        let from = self.window.before(now);
        let in_window: Vec<&Sample> = recent
            .get(&self.signal)
            .map(|v| {
                v.iter()
                    .filter(|s| s.at > from && s.at <= now && s.value.is_finite())
                    .collect()
            })
            .unwrap_or_default();
        let head = format!("{} {}_{}", self.signal, self.stat, self.window);
        if in_window.len() < MIN_SAMPLES {
            return Evaluation::Insufficient(format!(
                "{head}: only {} sample(s) in the last {} (need {MIN_SAMPLES})",
                in_window.len(),
                self.window
            ));
        }
        let first = in_window.iter().map(|s| s.at).min().unwrap_or(now);
        let last = in_window.iter().map(|s| s.at).max().unwrap_or(now);
        let covered = last.signed_duration_since(first);
        if covered.checked_mul(2).unwrap_or(chrono::TimeDelta::MAX) < self.window.to_chrono() {
            return Evaluation::Insufficient(format!(
                "{head}: samples cover only {} of the {} window (need half)",
                Span::from_chrono(covered),
                self.window
            ));
        }
        let mut ordered = in_window;
        ordered.sort_by_key(|s| s.at);
        let values: Vec<f64> = ordered.iter().map(|s| s.value).collect();
        let v = self.stat.compute(&values);
        let detail = format!(
            "{head} = {} (n={}), {} {}",
            fmt_num(v),
            values.len(),
            verb(self.test.holds(v)),
            self.test
        );
        if self.test.holds(v) {
            Evaluation::Holds(detail)
        } else {
            Evaluation::DoesNotHold(detail)
        }
    }
}

fn verb(holds: bool) -> &'static str {
    if holds { "is" } else { "is not" }
}

impl Condition {
    /// Evaluates the condition at `now`. A group holds when all its clauses hold; the condition
    /// holds when any group holds. Otherwise missing data anywhere makes it
    /// [`Evaluation::Insufficient`].
    pub fn evaluate(
        &self,
        recent: &BTreeMap<String, Vec<Sample>>,
        now: DateTime<Utc>,
    ) -> Evaluation {
        let mut not_holding = Vec::new();
        let mut insufficient = Vec::new();
        for group in &self.any {
            let evals: Vec<Evaluation> = group.iter().map(|c| c.evaluate(recent, now)).collect();
            if evals.iter().all(Evaluation::holds) {
                let d: Vec<&str> = evals.iter().map(Evaluation::detail).collect();
                return Evaluation::Holds(d.join("; "));
            }
            for e in evals {
                match e {
                    Evaluation::Holds(_) => {}
                    Evaluation::DoesNotHold(d) => not_holding.push(d),
                    Evaluation::Insufficient(d) => insufficient.push(d),
                }
            }
        }
        if insufficient.is_empty() {
            Evaluation::DoesNotHold(not_holding.join("; "))
        } else {
            Evaluation::Insufficient(insufficient.join("; "))
        }
    }

    /// Every signal the condition reads.
    pub fn signals(&self) -> Vec<&str> {
        let mut s: Vec<&str> = self
            .any
            .iter()
            .flatten()
            .map(|c| c.signal.as_str())
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    }
}

/// Formats a number compactly and deterministically: at most 4 decimals (6 significant digits
/// for small magnitudes), no trailing zeros.
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let decimals = if x.abs() >= 1.0 {
        4
    } else {
        // Keep ~4 significant digits for small values (0.00123).
        (3 - x.abs().log10().floor() as i32).clamp(4, 12) as usize
    };
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        let c: Condition =
            "latency_ms median_24h outside [150,400] or error_rate p95_1h above 0.01"
                .parse()
                .unwrap();
        assert_eq!(
            c.to_string(),
            "latency_ms median_24h outside [150, 400] or error_rate p95_1h above 0.01"
        );
        assert_eq!(c.signals(), vec!["error_rate", "latency_ms"]);
        let c: Condition = "a mean_30m below 3 and b max_1h inside [1, 2] or c last_5m above -1"
            .parse()
            .unwrap();
        assert_eq!(c.any.len(), 2);
        assert_eq!(c.any[0].len(), 2);
        assert_eq!(c.to_string().parse::<Condition>().unwrap(), c);
        for bad in [
            "",
            "the cache is redesigned",
            "latency_ms median above 3",
            "latency_ms median_24h",
            "latency_ms median_24h outside [400, 150]",
            "latency_ms p101_1h above 3",
            "latency_ms median_0s above 3",
            "latency_ms median_1h above x",
            "latency_ms median_1h above 3 or",
        ] {
            assert!(bad.parse::<Condition>().is_err(), "{bad}");
        }
    }

    #[test]
    fn evaluates_and_refuses_on_missing_data() {
        let c: Condition = "lat median_1h above 100".parse().unwrap();
        let mut recent = BTreeMap::new();
        assert!(matches!(
            c.evaluate(&recent, t0()),
            Evaluation::Insufficient(_)
        ));
        // Two samples: too few.
        recent.insert(
            "lat".to_string(),
            vec![
                Sample::new("lat", t0() - Duration::minutes(50), 200.0),
                Sample::new("lat", t0() - Duration::minutes(10), 200.0),
            ],
        );
        let e = c.evaluate(&recent, t0());
        assert!(matches!(e, Evaluation::Insufficient(_)), "{e:?}");
        // Three samples within 10 minutes: coverage too short.
        recent.insert(
            "lat".to_string(),
            (0..3)
                .map(|i| Sample::new("lat", t0() - Duration::minutes(i * 5), 200.0))
                .collect(),
        );
        let e = c.evaluate(&recent, t0());
        assert!(e.detail().contains("cover only"), "{e:?}");
        recent.insert(
            "lat".to_string(),
            (0..60)
                .map(|i| Sample::new("lat", t0() - Duration::minutes(i), 150.0 + i as f64))
                .collect(),
        );
        let e = c.evaluate(&recent, t0());
        assert!(e.holds(), "{e:?}");
        let c: Condition = "lat median_1h outside [100, 300]".parse().unwrap();
        assert!(matches!(
            c.evaluate(&recent, t0()),
            Evaluation::DoesNotHold(_)
        ));
        let c: Condition = "lat median_1h outside [100, 150] or other median_1h above 1"
            .parse()
            .unwrap();
        assert!(c.evaluate(&recent, t0()).holds());
        let c: Condition = "lat median_1h above 500 or other median_1h above 1"
            .parse()
            .unwrap();
        assert!(matches!(
            c.evaluate(&recent, t0()),
            Evaluation::Insufficient(_)
        ));
        let c: Condition = "lat median_1h above 100 and other median_1h above 1"
            .parse()
            .unwrap();
        assert!(!c.evaluate(&recent, t0()).holds());
    }

    #[test]
    fn numbers_format_stably() {
        assert_eq!(fmt_num(200.0), "200");
        assert_eq!(fmt_num(0.5 * 250.0), "125");
        assert_eq!(fmt_num(1.0 / 3.0), "0.3333");
        assert_eq!(fmt_num(0.001234), "0.001234");
        assert_eq!(fmt_num(-12.5), "-12.5");
        assert_eq!(fmt_num(-0.00001), "-0.00001");
    }
}

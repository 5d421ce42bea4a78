//! Human durations (`30s`, `5m`, `2h`, `24h`, `7d`) as they appear in config, rules and predictions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A non-negative duration with a human spelling. Stored as whole seconds.
///
/// Every span read from text (config, rules, lessons, LLM output) is at most [`Span::MAX`], so
/// timestamp arithmetic on it cannot overflow; [`Span::after`] / [`Span::before`] saturate anyway.
///
/// ```
/// use kaizen_core::span::Span;
/// let s: Span = "90m".parse().unwrap();
/// assert_eq!(s.seconds(), 5400);
/// assert_eq!(s.to_string(), "90m");
/// assert_eq!("1h30m".parse::<Span>().unwrap(), s);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(u64);

/// A duration string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (write e.g. 30s, 5m, 2h, 24h, 7d)")]
pub struct SpanError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Span {
    /// The longest span kaizen reads from any file or answer (366 days): longer is a typo
    /// (`99999999d`), and would push timestamps past what the calendar types can hold.
    pub const MAX: Span = Span::days(366);

    /// A span of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }
    /// A span of `m` minutes.
    pub const fn minutes(m: u64) -> Self {
        Self(m * 60)
    }
    /// A span of `h` hours.
    pub const fn hours(h: u64) -> Self {
        Self(h * 3600)
    }
    /// A span of `d` days.
    pub const fn days(d: u64) -> Self {
        Self(d * 86_400)
    }
    /// Whole seconds.
    pub const fn seconds(self) -> u64 {
        self.0
    }
    /// As a chrono duration, for arithmetic on timestamps. Clamped to [`Span::MAX`], so adding it to
    /// any timestamp kaizen handles (years 0..=9999) stays in range.
    pub fn to_chrono(self) -> chrono::Duration {
        let secs = self.0.min(Self::MAX.0);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(0))
    }
    /// `t + self`, saturating at the latest representable instant instead of panicking.
    pub fn after(self, t: DateTime<Utc>) -> DateTime<Utc> {
        t.checked_add_signed(self.to_chrono())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
    /// `t − self`, saturating at the earliest representable instant instead of panicking.
    pub fn before(self, t: DateTime<Utc>) -> DateTime<Utc> {
        t.checked_sub_signed(self.to_chrono())
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: Span) -> Span {
        Span(self.0.saturating_add(other.0))
    }
    /// `self × n`, saturating.
    pub const fn saturating_mul(self, n: u64) -> Span {
        Span(self.0.saturating_mul(n))
    }
    /// Checks `self` against an upper bound; the error names both spellings.
    pub fn at_most(self, max: Span) -> Result<Span, String> {
        if self > max {
            Err(format!(
                "{self} is longer than {max}, the most this field accepts"
            ))
        } else {
            Ok(self)
        }
    }
    /// The span from a chrono duration (negative → zero).
    pub fn from_chrono(d: chrono::Duration) -> Self {
        Self(u64::try_from(d.num_seconds()).unwrap_or(0))
    }
}

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |why| SpanError {
            input: input.to_string(),
            why,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut saw_unit = false;
        for ch in s.chars() {
            if ch.is_ascii_digit() {
                digits.push(ch);
                continue;
            }
            let unit = match ch {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                ' ' => continue,
                _ => return Err(err("unknown unit (use s, m, h, d or w)")),
            };
            if digits.is_empty() {
                return Err(err("a unit without a number"));
            }
            let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("too large"))?;
            digits.clear();
            saw_unit = true;
        }
        if !digits.is_empty() {
            if saw_unit {
                return Err(err("a number without a unit"));
            }
            // A bare number is seconds, as in most tools.
            total = digits.parse().map_err(|_| err("number too large"))?;
        }
        if total > Span::MAX.0 {
            return Err(err("longer than 366d, the longest duration kaizen accepts"));
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s == 0 {
            return write!(f, "0s");
        }
        let mut out = String::new();
        let mut rest = s;
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            // Prefer "24h" / "90m" over "1d" / "1h30m" when the smaller unit is exact and short.
            if rest >= size {
                let n = rest / size;
                rest %= size;
                out.push_str(&format!("{n}{unit}"));
            }
        }
        // Canonical short forms people write.
        let short = if s.is_multiple_of(3600) && s < 2 * 86_400 {
            format!("{}h", s / 3600)
        } else if s.is_multiple_of(60) && s < 6 * 3600 {
            format!("{}m", s / 60)
        } else {
            out
        };
        f.write_str(&short)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(u64),
        }
        match Raw::deserialize(de)? {
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Raw::Secs(n) if n <= Span::MAX.0 => Ok(Span(n)),
            Raw::Secs(n) => Err(serde::de::Error::custom(SpanError {
                input: n.to_string(),
                why: "longer than 366d, the longest duration kaizen accepts",
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, secs, shown) in [
            ("30s", 30, "30s"),
            ("5m", 300, "5m"),
            ("2h", 7200, "2h"),
            ("24h", 86_400, "24h"),
            ("7d", 604_800, "7d"),
            ("1h30m", 5400, "90m"),
            ("45", 45, "45s"),
        ] {
            let s: Span = text.parse().unwrap();
            assert_eq!(s.seconds(), secs, "{text}");
            assert_eq!(s.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "m",
            "5x",
            "5m3",
            "-5m",
            "99999999999999999999d",
            "99999999d",
            "3000000d",
            "367d",
            "53w",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
        assert_eq!("366d".parse::<Span>().unwrap(), Span::MAX);
    }

    #[test]
    fn arithmetic_saturates() {
        let huge = Span::from_secs(u64::MAX);
        assert_eq!(huge.to_chrono(), Span::MAX.to_chrono());
        assert_eq!(
            huge.after(DateTime::<Utc>::MAX_UTC),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            huge.before(DateTime::<Utc>::MIN_UTC),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(huge.saturating_add(huge), huge);
        assert!(Span::days(8).at_most(Span::days(7)).is_err());
    }
}

//! Quantities in config files: durations (`250ms`, `30s`), sizes (`64MiB`), and relative changes
//! (`*1.5`, `+64`, `-10%`) applied to a value of whatever type it already has.
//!
//! A leaf module: `edit` (relative `config_set` values) and `tunables` (bounds, steps, invariants)
//! both read quantities the same way through it.

use serde_json::Value;
use std::fmt;

/// Largest magnitude kept exact when a result is written back as an integer (2^53).
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// Duration units, in seconds, longest spelling first so `ms` is not read as `m` + `s`.
const DURATION_UNITS: &[(&str, f64)] = &[
    ("ms", 0.001),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
];

/// Size units, in bytes. `k`, `KB` and `KiB` all mean 1024 (configs that say `512MB` mean MiB).
const SIZE_UNITS: &[(&str, f64)] = &[
    ("TiB", 1_099_511_627_776.0),
    ("GiB", 1_073_741_824.0),
    ("MiB", 1_048_576.0),
    ("KiB", 1024.0),
    ("TB", 1_099_511_627_776.0),
    ("GB", 1_073_741_824.0),
    ("MB", 1_048_576.0),
    ("KB", 1024.0),
    ("kB", 1024.0),
    ("T", 1_099_511_627_776.0),
    ("G", 1_073_741_824.0),
    ("M", 1_048_576.0),
    ("K", 1024.0),
    ("k", 1024.0),
    ("B", 1.0),
];

/// A number followed by one unit: `30s` → (30, "s"). `None` when the shape is wrong.
fn split_unit(s: &str, units: &[(&'static str, f64)]) -> Option<(f64, &'static str, f64)> {
    let t = s.trim();
    for (unit, scale) in units {
        if let Some(num) = t.strip_suffix(unit) {
            let num = num.trim_end();
            if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                continue;
            }
            let v: f64 = num.parse().ok().filter(|v: &f64| v.is_finite())?;
            return Some((v, unit, *scale));
        }
    }
    None
}

/// A duration string (`250ms`, `1.5s`, `5m`, `2h`, `1d`) in seconds, with the unit it used.
pub fn parse_duration(s: &str) -> Option<(f64, &'static str)> {
    split_unit(s, DURATION_UNITS).map(|(v, u, scale)| (v * scale, u))
}

/// A size string (`512MB`, `64MiB`, `4k`, `100B`) in bytes, with the unit it used.
pub fn parse_size(s: &str) -> Option<(f64, &'static str)> {
    split_unit(s, SIZE_UNITS).map(|(v, u, scale)| (v * scale, u))
}

fn scale_of(unit: &str, units: &[(&'static str, f64)]) -> f64 {
    units
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, s)| *s)
        .unwrap_or(1.0)
}

/// Writes `base` (seconds or bytes) in `unit` when that is a whole number of them, else in the
/// smallest unit (`ms` / `B`), rounded: "rounded to the knob's type".
fn format_in(base: f64, unit: &str, units: &[(&'static str, f64)], smallest: &str) -> String {
    let in_unit = base / scale_of(unit, units);
    let rounded = in_unit.round();
    if (in_unit - rounded).abs() < 1e-9 * rounded.abs().max(1.0) {
        return format!("{rounded}{unit}");
    }
    let small = (base / scale_of(smallest, units)).round();
    format!("{small}{smallest}")
}

/// `seconds` written in `unit` (or in milliseconds when not whole).
pub fn format_duration(seconds: f64, unit: &str) -> String {
    format_in(seconds, unit, DURATION_UNITS, "ms")
}

/// `bytes` written in `unit` (or in bytes when not whole).
pub fn format_size(bytes: f64, unit: &str) -> String {
    format_in(bytes, unit, SIZE_UNITS, "B")
}

/// A change relative to the value already there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Relative {
    /// `*1.5`: multiply.
    Times(f64),
    /// `+64` / `-10`: add (in the value's own unit).
    Plus(f64),
    /// `+50%` / `-10%`: add a fraction of the value (stored as the fraction, `0.5`).
    Percent(f64),
}

impl fmt::Display for Relative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Relative::Times(x) => write!(f, "*{x}"),
            Relative::Plus(x) => write!(f, "{x:+}"),
            Relative::Percent(p) => write!(f, "{:+}%", (p * 1e6).round() / 1e4),
        }
    }
}

impl Relative {
    /// Reads `*1.5`, `+64`, `-64`, `+50%`, `-10%`. `None` for anything else (a plain value).
    pub fn parse(s: &str) -> Option<Relative> {
        let t = s.trim();
        let num = |x: &str| -> Option<f64> {
            let x = x.trim();
            if x.is_empty() || !x.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                return None;
            }
            x.parse::<f64>().ok().filter(|v| v.is_finite())
        };
        if let Some(rest) = t.strip_prefix('*') {
            return num(rest).map(Relative::Times);
        }
        let (sign, rest) = if let Some(r) = t.strip_prefix('+') {
            (1.0, r)
        } else if let Some(r) = t.strip_prefix('-') {
            (-1.0, r)
        } else {
            return None;
        };
        if let Some(p) = rest.strip_suffix('%') {
            return num(p).map(|v| Relative::Percent(sign * v / 100.0));
        }
        num(rest).map(|v| Relative::Plus(sign * v))
    }

    /// The value from a JSON value: only strings can be relative.
    pub fn of_value(v: &Value) -> Option<Relative> {
        v.as_str().and_then(Relative::parse)
    }

    fn on(self, x: f64) -> f64 {
        match self {
            Relative::Times(k) => x * k,
            Relative::Plus(d) => x + d,
            Relative::Percent(p) => x * (1.0 + p),
        }
    }

    /// Applies the change to `current`, keeping its type: an integer stays an integer (rounded
    /// half away from zero), a float a float, `30s` a duration and `64MiB` a size in the same
    /// unit (or the smallest one when not whole). Never clamped; out-of-range results are errors.
    pub fn apply(self, current: &Value) -> Result<Value, String> {
        let finite = |x: f64| {
            if x.is_finite() {
                Ok(x)
            } else {
                Err(format!("{self} on {current} is not a finite number"))
            }
        };
        match current {
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                let x = n
                    .as_f64()
                    .ok_or_else(|| format!("{current} is not a number"))?;
                let r = finite(self.on(x))?.round();
                if r.abs() > MAX_EXACT {
                    return Err(format!(
                        "{self} on {current} gives {r}, too large for an integer"
                    ));
                }
                // Within ±2^53 the cast is exact.
                #[allow(clippy::cast_possible_truncation)]
                Ok(Value::from(r as i64))
            }
            Value::Number(n) => {
                let x = n
                    .as_f64()
                    .ok_or_else(|| format!("{current} is not a number"))?;
                let r = finite(self.on(x))?;
                serde_json::Number::from_f64(r)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{self} on {current} is not a finite number"))
            }
            Value::String(s) => {
                if let Some((secs, unit)) = parse_duration(s) {
                    let r = finite(self.on(secs))?;
                    if r < 0.0 {
                        return Err(format!("{self} on {s:?} gives a negative duration"));
                    }
                    return Ok(Value::String(format_duration(r, unit)));
                }
                if let Some((bytes, unit)) = parse_size(s) {
                    let r = finite(self.on(bytes))?;
                    if r < 0.0 {
                        return Err(format!("{self} on {s:?} gives a negative size"));
                    }
                    return Ok(Value::String(format_size(r, unit)));
                }
                Err(format!(
                    "a relative change ({self}) needs a number, duration or size; the current value is {current}"
                ))
            }
            other => Err(format!(
                "a relative change ({self}) needs a number, duration or size; the current value is {other}"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_relative_forms() {
        assert_eq!(Relative::parse("*1.5"), Some(Relative::Times(1.5)));
        assert_eq!(Relative::parse("+64"), Some(Relative::Plus(64.0)));
        assert_eq!(Relative::parse("-64"), Some(Relative::Plus(-64.0)));
        assert_eq!(Relative::parse("-10%"), Some(Relative::Percent(-0.1)));
        assert_eq!(Relative::parse("+50%"), Some(Relative::Percent(0.5)));
        for plain in [
            "lru", "64", "", "*", "+", "+x", "*-2", "--1", "+inf", "+NaN", "1.5x",
        ] {
            assert_eq!(Relative::parse(plain), None, "{plain}");
        }
        assert_eq!(Relative::Percent(-0.1).to_string(), "-10%");
        assert_eq!(Relative::Plus(64.0).to_string(), "+64");
        assert_eq!(Relative::Times(1.5).to_string(), "*1.5");
    }

    #[test]
    fn keeps_the_type_of_the_current_value() {
        let r = |s: &str, v: Value| Relative::parse(s).unwrap().apply(&v).unwrap();
        assert_eq!(r("*1.5", json!(128)), json!(192));
        assert_eq!(
            r("*1.5", json!(5)),
            json!(8),
            "7.5 rounds half away from zero"
        );
        assert_eq!(r("-10%", json!(100)), json!(90));
        assert_eq!(r("+64", json!(128)), json!(192));
        assert_eq!(r("*2", json!(0.25)), json!(0.5));
        assert_eq!(r("*2", json!("30s")), json!("60s"));
        assert_eq!(r("*1.5", json!("1s")), json!("1500ms"));
        assert_eq!(r("+50%", json!("2h")), json!("3h"));
        assert_eq!(r("*2", json!("256MB")), json!("512MB"));
        assert_eq!(r("*1.5", json!("1KiB")), json!("1536B"));
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let e = |s: &str, v: Value| Relative::parse(s).unwrap().apply(&v).unwrap_err();
        assert!(e("*2", json!("lru")).contains("\"lru\""));
        assert!(e("+1", json!(true)).contains("true"));
        assert!(e("-100", json!("30s")).contains("negative"));
        assert!(e("*1e300", json!(1e300)).contains("finite"));
        assert!(e("*1e300", json!(10)).contains("too large"));
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("250ms"), Some((0.25, "ms")));
        assert_eq!(parse_duration("5m"), Some((300.0, "m")));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_size("64MiB"), Some((67_108_864.0, "MiB")));
        assert_eq!(parse_size("4k"), Some((4096.0, "k")));
        assert_eq!(parse_size("4 GB"), Some((4_294_967_296.0, "GB")));
        assert_eq!(parse_size("lots"), None);
    }
}

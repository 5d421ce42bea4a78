//! Numbers printed for people: values at the precision their size deserves (3 significant
//! digits unless a precision is configured), relative changes as percentages with their
//! interval ("−49% [−53%, −47%]"), probabilities to two places, durations humanised. One module
//! so every surface (review, status, show) prints a figure the same way.

/// `x` to 3 significant digits, without trailing zeros: `1798.36` → `1800`, `0.00150839` →
/// `0.00151`, `251.0` → `251`, `0.2` → `0.2`. Non-finite values print as `-`.
///
/// ```
/// use kaizen_core::human::sig3;
/// assert_eq!(sig3(1798.361700933541), "1800");
/// assert_eq!(sig3(0.0015083913475713538), "0.00151");
/// assert_eq!(sig3(-12.345), "−12.3");
/// ```
pub fn sig3(x: f64) -> String {
    sig(x, 3)
}

/// `x` to `digits` significant digits (1..=15), without trailing zeros.
pub fn sig(x: f64, digits: u32) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let digits = i32::try_from(digits.clamp(1, 15)).unwrap_or(3);
    // The exponent of a finite non-zero f64 is within ±324, so this cast cannot truncate.
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = digits.saturating_sub(1).saturating_sub(magnitude);
    // Beyond a million or below 0.0001, positional digits stop helping a reader.
    if !(-4..6).contains(&magnitude) {
        let text = format!("{:.*e}", usize::try_from(digits - 1).unwrap_or(2), x);
        let (mantissa, exponent) = text.split_once('e').unwrap_or((text.as_str(), "0"));
        return minus(format!("{}e{exponent}", trim_zeros(mantissa.to_string())));
    }
    let text = if decimals >= 0 {
        format!("{:.*}", usize::try_from(decimals).unwrap_or(0), x)
    } else {
        let unit = 10f64.powi(-decimals);
        format!("{:.0}", (x / unit).round() * unit)
    };
    minus(trim_zeros(text))
}

/// `x` with exactly `decimals` places (a signal's configured precision), trailing zeros kept.
pub fn fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    minus(format!("{:.*}", decimals.min(15), x))
}

fn trim_zeros(text: String) -> String {
    if !text.contains('.') {
        return text;
    }
    let t = text.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" { "0".into() } else { t.to_string() }
}

/// A typographic minus, as the issue's examples print them ("−49%").
fn minus(text: String) -> String {
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().any(|c| c != '0' && c != '.') => format!("−{rest}"),
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// A probability or score in 0..1 to two places, trailing zeros trimmed: `0.6`, `0.15`, `0.95`.
pub fn prob(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    minus(trim_zeros(format!("{x:.2}")))
}

/// An optional figure: [`sig3`], or `-` when absent.
pub fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), sig3)
}

/// An optional probability: [`prob`], or `-`.
pub fn opt_prob(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), prob)
}

/// A relative change as a signed whole percentage: `−0.49` → `−49%`, `0.031` → `+3.1%` (one
/// decimal under 10%, so small effects do not print as 0).
///
/// ```
/// use kaizen_core::human::pct;
/// assert_eq!(pct(-0.49), "−49%");
/// assert_eq!(pct(0.031), "+3.1%");
/// assert_eq!(pct(0.0), "0%");
/// ```
pub fn pct(rel: f64) -> String {
    if !rel.is_finite() {
        return "-".into();
    }
    let p = rel * 100.0;
    let body = if p.abs() < 10.0 {
        trim_zeros(format!("{:.1}", p.abs()))
    } else {
        format!("{:.0}", p.abs())
    };
    if body == "0" {
        "0%".into()
    } else if p < 0.0 {
        format!("−{body}%")
    } else {
        format!("+{body}%")
    }
}

/// A share (0..1) as an unsigned percentage: `0.25` → `25%`.
pub fn share(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    format!("{:.0}%", x * 100.0)
}

/// A relative change with its interval: `−49% [−53%, −47%]`.
pub fn pct_interval(rel: f64, lower: Option<f64>, upper: Option<f64>) -> String {
    match (lower, upper) {
        (Some(l), Some(u)) => format!("{} [{}, {}]", pct(rel), pct(l), pct(u)),
        _ => pct(rel),
    }
}

/// Seconds as the two largest units: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
///
/// ```
/// use kaizen_core::human::duration;
/// assert_eq!(duration(45), "45s");
/// assert_eq!(duration(3 * 3600 + 20 * 60 + 7), "3h 20m");
/// assert_eq!(duration(2 * 86400), "2d");
/// ```
pub fn duration(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = UNITS.iter().position(|(size, _)| seconds >= *size) else {
        return "0s".into();
    };
    let (size, name) = UNITS[first];
    let mut out = format!("{}{name}", seconds / size);
    if let Some((next, next_name)) = UNITS.get(first + 1) {
        let n = (seconds % size) / next;
        if n > 0 {
            out.push_str(&format!(" {n}{next_name}"));
        }
    }
    out
}

/// `reason` with a leading word repeated before colons said once: "validated: validated:
/// relative change …" → "validated: relative change …".
///
/// ```
/// use kaizen_core::human::once;
/// assert_eq!(once("validated: validated: validated: fell 20%"), "validated: fell 20%");
/// assert_eq!(once("no effect: within noise"), "no effect: within noise");
/// ```
pub fn once(reason: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in reason.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        assert_eq!(sig3(1798.361700933541), "1800");
        assert_eq!(sig3(0.0015083913475713538), "0.00151");
        assert_eq!(sig3(251.0), "251");
        assert_eq!(sig3(0.2), "0.2");
        assert_eq!(sig3(12.5), "12.5");
        assert_eq!(sig3(99.96), "100");
        assert_eq!(sig3(-0.0001), "−0.0001");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(f64::NAN), "-");
        assert_eq!(sig3(1e300), "1e300");
        assert_eq!(sig3(1_234_567.0), "1.23e6");
        assert_eq!(sig3(0.000_012_34), "1.23e-5");
        assert_eq!(sig3(123_456.0), "123000");
        assert_eq!(fixed(2.71, 1), "2.7");
        assert_eq!(fixed(-0.01, 1), "0.0");
    }

    #[test]
    fn percentages_and_probabilities() {
        assert_eq!(
            pct_interval(-0.49, Some(-0.53), Some(-0.47)),
            "−49% [−53%, −47%]"
        );
        assert_eq!(pct(0.005), "+0.5%");
        assert_eq!(pct(-0.0001), "0%");
        assert_eq!(prob(0.15), "0.15");
        assert_eq!(prob(0.6), "0.6");
        assert_eq!(prob(1.0), "1");
        assert_eq!(share(0.25), "25%");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(61), "1m 1s");
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(86_400 + 3_600 * 4 + 5), "1d 4h");
        assert_eq!(duration(86_400 + 5), "1d");
        assert_eq!(duration(u64::MAX).split(' ').count(), 2);
    }

    #[test]
    fn repeated_words_said_once() {
        assert_eq!(
            once("validated: validated: relative change −20%"),
            "validated: relative change −20%"
        );
        assert_eq!(once("a: b: c"), "a: b: c");
        assert_eq!(once("plain"), "plain");
        assert_eq!(once("x: x: x"), "x");
    }
}

//! YAML behind one small seam, so the crate can change without touching callers.
//!
//! Errors name the file, line, column and the field path (`rules[0].when.for`), so a user can act
//! on them without reading a parser's internals.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// A YAML document that could not be read into the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// The file (or a label such as `<llm output>`).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// The field path, e.g. `guards.daily_budget` (empty for the document root).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.field.is_empty() && self.field != "." {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for YamlError {}

/// Parses `text` (from `file`, used in messages) into `T`, naming line and field on failure.
pub fn from_str<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, YamlError> {
    let mut field = String::new();
    let result =
        serde_saphyr::with_deserializer_from_str(
            text,
            |de| match serde_path_to_error::deserialize::<_, T>(de) {
                Ok(v) => Ok(v),
                Err(e) => {
                    field = e.path().to_string();
                    Err(e.into_inner())
                }
            },
        );
    result.map_err(|e| {
        let loc = e.location();
        let message = first_line(&e.without_snippet().to_string());
        let line = loc.as_ref().map(|l| l.line()).filter(|l| *l > 0);
        let column = loc.as_ref().map(|l| l.column()).filter(|c| *c > 0);
        YamlError {
            file: file.to_path_buf(),
            // The parser does not always know where (e.g. a missing field): fall back to the
            // field's own line, so every error names one.
            line: line.or_else(|| Some(locate_nearest(text, &field))),
            column: line.and(column),
            field,
            message,
        }
    })
}

/// `bytes` (read from `file`) as text; invalid UTF-8 is an error naming the line and column of the
/// first bad byte, so a mangled file is located like any other YAML mistake.
pub fn decode_utf8(bytes: Vec<u8>, file: &Path) -> Result<String, YamlError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = bytes.get(..good).unwrap_or_default();
        let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        // Columns count characters, as the YAML parser's do.
        let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
            .chars()
            .count() as u64
            + 1;
        let byte = bytes.get(good).copied().unwrap_or_default();
        YamlError {
            file: file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            field: String::new(),
            message: format!("not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8"),
        }
    })
}

/// A YAML error for a value that parsed but is not acceptable, located by searching for the key.
///
/// Used by validation that runs after deserialisation (e.g. "confidence must be within 0..1"), so
/// those errors name a line too.
pub fn semantic_error(
    text: &str,
    file: &Path,
    field: &str,
    message: impl Into<String>,
) -> YamlError {
    YamlError {
        file: file.to_path_buf(),
        line: Some(locate_nearest(text, field)),
        column: None,
        field: field.to_string(),
        message: message.into(),
    }
}

/// The line of `field`, else of its nearest enclosing field that can be found, else of the first
/// non-comment line (never nothing: an error always points somewhere to look).
pub fn locate_nearest(text: &str, field: &str) -> u64 {
    let mut path = field.trim_start_matches('.');
    loop {
        if !path.is_empty()
            && let Some(line) = locate_field(text, path)
        {
            return line;
        }
        match path.rfind(['.', '[']) {
            Some(cut) if cut > 0 => path = &path[..cut],
            _ => break,
        }
    }
    text.lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "---"
        })
        .map_or(1, |i| i as u64 + 1)
}

/// Best-effort line of a dotted field path (`rules[1].when.signal`) in block-style YAML.
pub fn locate_field(text: &str, field: &str) -> Option<u64> {
    // Walk path segments; for each, find the next line (after the previous match) holding `key:`.
    let mut from = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    for seg in field.split('.') {
        let (key, index) = match seg.find('[') {
            Some(i) => (
                &seg[..i],
                seg[i + 1..].trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (seg, None),
        };
        if !key.is_empty() {
            let pos = lines.iter().enumerate().skip(from).find(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ");
                t.starts_with(&format!("{key}:"))
                    || t.contains(&format!(" {key}:"))
                    || t.contains(&format!("{{ {key}:"))
                    || t.contains(&format!("{{{key}:"))
            })?;
            from = pos.0;
            found = Some(pos.0);
        }
        if let Some(idx) = index {
            // The idx-th list item after `from`, at the first item's indentation.
            let mut items = lines
                .iter()
                .enumerate()
                .skip(from + usize::from(!key.is_empty()))
                .filter(|(_, l)| l.trim_start().starts_with("- "));
            let first = items.next()?;
            let indent = first.1.len() - first.1.trim_start().len();
            let pos = std::iter::once(first)
                .chain(items.filter(|(_, l)| l.len() - l.trim_start().len() == indent))
                .nth(idx)?;
            from = pos.0;
            found = Some(pos.0);
        }
    }
    found.map(|i| i as u64 + 1)
}

fn first_line(s: &str) -> String {
    strip_location(s.lines().next().unwrap_or(s).trim()).to_string()
}

/// The parser's message without its own trailing ` at line N, column M` (the location is shown
/// once, in front, by [`YamlError`]'s `Display`).
fn strip_location(msg: &str) -> &str {
    let Some(at) = msg.rfind(" at line ") else {
        return msg;
    };
    let tail = &msg[at + " at line ".len()..];
    let shape_ok = tail.split_once(", column ").is_some_and(|(l, c)| {
        !l.is_empty()
            && l.chars().all(|ch| ch.is_ascii_digit())
            && !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_digit())
    });
    if shape_ok { &msg[..at] } else { msg }
}

/// Serialises `value` as YAML.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        inner: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn names_line_and_field() {
        let text = "name: x\ninner:\n  count: lots\n";
        let err = from_str::<Doc>(text, Path::new("k.yaml")).unwrap_err();
        assert_eq!(err.field, "inner.count");
        assert_eq!(err.line, Some(3));
        let shown = err.to_string();
        assert!(shown.starts_with("k.yaml:3"), "{shown}");
        assert!(shown.contains("inner.count"), "{shown}");
    }

    #[test]
    fn non_utf8_is_located() {
        let e = decode_utf8(b"a: 1\nb: caf\xe9\n".to_vec(), Path::new("k.yaml")).unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(7)));
        assert!(e.to_string().starts_with("k.yaml:2:7: not UTF-8"), "{e}");
    }

    #[test]
    fn location_is_shown_once() {
        let text = "name: x\ninner:\n  count: lots\n";
        let shown = from_str::<Doc>(text, Path::new("k.yaml"))
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("at line"), "{shown}");
        assert_eq!(strip_location("bad at line 3, column 9"), "bad");
        assert_eq!(strip_location("bad at line three"), "bad at line three");
    }

    #[test]
    fn unknown_field_is_named() {
        let text = "name: x\ninner:\n  count: 1\n  cuont: 2\n";
        let err = from_str::<Doc>(text, Path::new("k.yaml")).unwrap_err();
        assert!(err.to_string().contains("cuont"), "{err}");
    }

    #[test]
    fn locates_fields() {
        let text =
            "rules:\n  - id: a\n    when: { signal: x }\n  - id: b\n    when:\n      signal: y\n";
        assert_eq!(locate_field(text, "rules[1].when.signal"), Some(6));
        assert_eq!(locate_field(text, "rules[0].when"), Some(3));
    }
}

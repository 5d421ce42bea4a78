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
        YamlError {
            file: file.to_path_buf(),
            line: loc.as_ref().map(|l| l.line()).filter(|l| *l > 0),
            column: loc.as_ref().map(|l| l.column()).filter(|c| *c > 0),
            field,
            message,
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
        line: locate_field(text, field),
        column: None,
        field: field.to_string(),
        message: message.into(),
    }
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
    s.lines().next().unwrap_or(s).trim().to_string()
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

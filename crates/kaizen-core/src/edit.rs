//! File edits an intervention makes, and how each one transforms a file's content.
//!
//! Edits are pure text transforms (`old content → new content`), so the git adapter, the
//! simulator and tests all agree on what a change does without touching a disk.

use crate::quantity::Relative;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest file an edit may produce (LLM output is untrusted; a rule typo should not write GBs).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The largest `config_set` value (as JSON) an edit may carry.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// How much of an oversize payload the ledger keeps (the rest is only counted): a refused
/// candidate must not grow the ledger by its payload every cycle.
pub const STORED_PAYLOAD_BYTES: usize = 1024;

/// One edit of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// Set the value at a dotted key path in a YAML, JSON or TOML file (created if missing).
    ConfigSet {
        /// Path relative to the repo root.
        file: String,
        /// Dotted key path, e.g. `cache.size_mb`; numeric segments index lists.
        key: String,
        /// The new value. A string of the form `*1.5`, `+64`, `-64`, `+50%` or `-10%` is a change
        /// relative to the value already there (see [`Relative`]), resolved to a concrete value
        /// of the same type before the guards see it.
        value: serde_json::Value,
    },
    /// Replace a file's whole content (created if missing).
    FileWrite {
        /// Path relative to the repo root.
        file: String,
        /// The new content.
        content: String,
    },
}

impl Edit {
    /// The file it touches, as written.
    pub fn file(&self) -> &str {
        match self {
            Edit::ConfigSet { file, .. } | Edit::FileWrite { file, .. } => file,
        }
    }

    /// The edit kind name (`config_set`, `file_write`).
    pub fn kind(&self) -> &'static str {
        match self {
            Edit::ConfigSet { .. } => "config_set",
            Edit::FileWrite { .. } => "file_write",
        }
    }

    /// What it targets, for dedup: `file#key` or `file`.
    pub fn target(&self) -> String {
        match self {
            Edit::ConfigSet { file, key, .. } => format!("{file}#{key}"),
            Edit::FileWrite { file, .. } => file.clone(),
        }
    }

    /// The relative change this edit asks for, if its value is one (`*1.5`, `+64`, `-10%`).
    pub fn relative(&self) -> Option<Relative> {
        match self {
            Edit::ConfigSet { value, .. } => Relative::of_value(value),
            Edit::FileWrite { .. } => None,
        }
    }

    /// This edit with a concrete value, given the file's content before it, and what it replaces.
    ///
    /// A relative `config_set` becomes an absolute one (`*1.5` on 128 → 192); every `config_set`
    /// reports the value it replaces (`None` when the key is absent). `file_write` is returned as is.
    pub fn resolve(&self, before: Option<&str>) -> Result<(Edit, Option<Resolved>), EditError> {
        let Edit::ConfigSet { file, key, value } = self else {
            return Ok((self.clone(), None));
        };
        let old = config_get(file, before.unwrap_or(""), key)?;
        let relative = Relative::of_value(value);
        let new = match relative {
            Some(rel) => {
                let current = old.as_ref().ok_or_else(|| EditError::Relative {
                    file: file.clone(),
                    key: key.clone(),
                    message: format!("{rel} needs a current value, and the key is not set"),
                })?;
                rel.apply(current).map_err(|message| EditError::Relative {
                    file: file.clone(),
                    key: key.clone(),
                    message,
                })?
            }
            None => value.clone(),
        };
        let edit = Edit::ConfigSet {
            file: file.clone(),
            key: key.clone(),
            value: new.clone(),
        };
        let resolved = Resolved {
            target: self.target(),
            old,
            new,
            relative: relative.map(|r| r.to_string()),
        };
        Ok((edit, Some(resolved)))
    }

    /// The size of what the edit carries: a `file_write`'s content, a `config_set`'s value as JSON.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Edit::FileWrite { content, .. } => content.len(),
            Edit::ConfigSet { value, .. } => value.to_string().len(),
        }
    }

    /// Refuses a payload above [`MAX_FILE_BYTES`] (content) or [`MAX_VALUE_BYTES`] (value) before
    /// any file is read or written: such an edit can never be applied.
    pub fn check_payload(&self) -> Result<(), EditError> {
        let bytes = self.payload_bytes();
        let (limit, what) = match self {
            Edit::FileWrite { .. } => (MAX_FILE_BYTES, "content"),
            Edit::ConfigSet { .. } => (MAX_VALUE_BYTES, "value"),
        };
        if bytes > limit {
            return Err(EditError::PayloadTooLarge {
                file: self.file().to_string(),
                what,
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// The edit as the ledger stores it: unchanged when its payload is within bounds, else with
    /// the payload cut to [`STORED_PAYLOAD_BYTES`] and its size noted (it can never be applied,
    /// so nothing needs the rest).
    pub fn stored_form(&self) -> Edit {
        if self.check_payload().is_ok() {
            return self.clone();
        }
        let bytes = self.payload_bytes();
        let cut = |text: &str| -> String {
            let mut end = STORED_PAYLOAD_BYTES.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!(
                "{}…[kaizen: {bytes} bytes, not stored: above the limit]",
                &text[..end]
            )
        };
        match self {
            Edit::FileWrite { file, content } => Edit::FileWrite {
                file: file.clone(),
                content: cut(content),
            },
            Edit::ConfigSet { file, key, value } => Edit::ConfigSet {
                file: file.clone(),
                key: key.chars().take(256).collect(),
                value: serde_json::Value::String(cut(&value.to_string())),
            },
        }
    }

    /// The file's content after this edit, given its content before (`None`: it does not exist).
    /// A relative value is resolved against `before` first.
    pub fn apply_to(&self, before: Option<&str>) -> Result<String, EditError> {
        self.check_payload()?;
        let out = match self {
            Edit::FileWrite { content, .. } => content.clone(),
            Edit::ConfigSet { file, key, value } => {
                if Relative::of_value(value).is_some() {
                    let (concrete, _) = self.resolve(before)?;
                    return concrete.apply_to(before);
                }
                config_set(file, before.unwrap_or(""), key, value)?
            }
        };
        if out.len() > MAX_FILE_BYTES {
            return Err(EditError::TooLarge {
                file: self.file().to_string(),
                bytes: out.len(),
            });
        }
        Ok(out)
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::ConfigSet { file, key, value } => match Relative::of_value(value) {
                Some(rel) => write!(f, "set {key} {rel} in {file}"),
                None => write!(f, "set {key} = {value} in {file}"),
            },
            Edit::FileWrite { file, content } => {
                write!(f, "write {file} ({} bytes)", content.len())
            }
        }
    }
}

/// What resolving one `config_set` found: the value it replaces and the value it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// `file#key`, as [`Edit::target`] spells it.
    pub target: String,
    /// The value before (`None`: the key was not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<serde_json::Value>,
    /// The value written.
    pub new: serde_json::Value,
    /// The relative change it was computed from (`*1.5`), if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<String>,
}

impl Resolved {
    /// `128 → 192 (*1.5)`, `unset → 64`.
    pub fn old_to_new(&self) -> String {
        let old = self
            .old
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "unset".to_string());
        match &self.relative {
            Some(r) => format!("{old} → {} ({r})", self.new),
            None => format!("{old} → {}", self.new),
        }
    }
}

/// Resolves every edit of a change in order (edits of one file compose), reading each file's
/// content before the change once through `read`. Returns the concrete edits and, per
/// `config_set`, what it replaces.
pub fn resolve_all(
    change: &[Edit],
    mut read: impl FnMut(&str) -> Result<Option<String>, String>,
) -> Result<(Vec<Edit>, Vec<Resolved>), EditError> {
    let mut contents: Vec<(String, Option<String>)> = Vec::new();
    let mut edits = Vec::with_capacity(change.len());
    let mut resolved = Vec::new();
    for e in change {
        let file = e.file().to_string();
        let i = match contents.iter().position(|(f, _)| *f == file) {
            Some(i) => i,
            None => {
                // A whole-file write does not depend on what was there: nothing to read.
                let before = match e {
                    Edit::FileWrite { .. } => None,
                    Edit::ConfigSet { .. } => read(&file).map_err(|message| EditError::Parse {
                        file: file.clone(),
                        message,
                    })?,
                };
                contents.push((file.clone(), before));
                contents.len() - 1
            }
        };
        let before = contents[i].1.clone();
        let (concrete, r) = e.resolve(before.as_deref())?;
        contents[i].1 = Some(concrete.apply_to(before.as_deref())?);
        edits.push(concrete);
        resolved.extend(r);
    }
    Ok((edits, resolved))
}

/// An edit that cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The file's format is not one `config_set` understands.
    #[error("{file}: config_set needs a .yaml, .yml, .json or .toml file")]
    UnknownFormat {
        /// The file.
        file: String,
    },
    /// The existing file does not parse.
    #[error("{file}: cannot parse existing content: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// The key path runs through something that is not a table/map or list.
    #[error("{file}: key `{key}`: `{segment}` is not a map or list, cannot descend into it")]
    NotAContainer {
        /// The file.
        file: String,
        /// The whole key.
        key: String,
        /// The offending segment.
        segment: String,
    },
    /// A key path with an empty segment.
    #[error("{file}: key `{key}` is not a valid dotted path")]
    BadKey {
        /// The file.
        file: String,
        /// The key.
        key: String,
    },
    /// The value cannot be written in this format (e.g. null in TOML).
    #[error("{file}: key `{key}`: value {value} cannot be written as {format}")]
    BadValue {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The format.
        format: &'static str,
    },
    /// A relative value that cannot be computed from what is there.
    #[error("{file}: key `{key}`: {message}")]
    Relative {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
    /// The edit carries more than an edit may (see [`Edit::check_payload`]).
    #[error("{file}: the {what} is {bytes} bytes, above the {limit}-byte limit")]
    PayloadTooLarge {
        /// The file.
        file: String,
        /// `content` or `value`.
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The result would exceed [`MAX_FILE_BYTES`].
    #[error("{file}: the edited file would be {bytes} bytes, above the 1 MiB limit")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        bytes: usize,
    },
}

/// Reads the value at `key` in a config file's content (for `kaizen show` and the simulator).
pub fn config_get(
    file: &str,
    content: &str,
    key: &str,
) -> Result<Option<serde_json::Value>, EditError> {
    let doc = parse_doc(file, content)?;
    let mut node = &doc;
    for seg in key.split('.') {
        node = match node {
            serde_json::Value::Object(map) => match map.get(seg) {
                Some(v) => v,
                None => return Ok(None),
            },
            serde_json::Value::Array(items) => {
                match seg.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
    }
    Ok(Some(node.clone()))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Yaml,
    Json,
    Toml,
}

fn format_of(file: &str) -> Result<Format, EditError> {
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        Ok(Format::Yaml)
    } else if lower.ends_with(".json") {
        Ok(Format::Json)
    } else if lower.ends_with(".toml") {
        Ok(Format::Toml)
    } else {
        Err(EditError::UnknownFormat {
            file: file.to_string(),
        })
    }
}

fn parse_doc(file: &str, content: &str) -> Result<serde_json::Value, EditError> {
    let parse_err = |message: String| EditError::Parse {
        file: file.to_string(),
        message,
    };
    if content.trim().is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    match format_of(file)? {
        Format::Yaml => serde_saphyr::from_str::<serde_json::Value>(content)
            .map_err(|e| parse_err(e.without_snippet().to_string())),
        Format::Json => serde_json::from_str(content).map_err(|e| parse_err(e.to_string())),
        Format::Toml => {
            let doc: toml_edit::DocumentMut = content
                .parse()
                .map_err(|e: toml_edit::TomlError| parse_err(e.to_string()))?;
            Ok(toml_item_to_json(doc.as_item()))
        }
    }
}

fn segments<'a>(file: &str, key: &'a str) -> Result<Vec<&'a str>, EditError> {
    let segs: Vec<&str> = key.split('.').collect();
    if key.is_empty() || segs.iter().any(|s| s.trim().is_empty()) {
        return Err(EditError::BadKey {
            file: file.to_string(),
            key: key.to_string(),
        });
    }
    Ok(segs)
}

fn config_set(
    file: &str,
    before: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<String, EditError> {
    let segs = segments(file, key)?;
    match format_of(file)? {
        Format::Toml => toml_set(file, before, key, &segs, value),
        Format::Json => {
            let mut doc = parse_doc(file, before)?;
            json_set(file, key, &mut doc, &segs, value)?;
            let mut out = serde_json::to_string_pretty(&doc).map_err(|e| EditError::Parse {
                file: file.to_string(),
                message: e.to_string(),
            })?;
            out.push('\n');
            Ok(out)
        }
        Format::Yaml => {
            let mut doc = parse_doc(file, before)?;
            json_set(file, key, &mut doc, &segs, value)?;
            // Prefer an in-place edit of the one line (keeps comments and layout); accept it only
            // if it parses back to exactly the intended document.
            if let Some(out) = yaml_surgical_set(before, &segs, value)
                && parse_doc(file, &out).ok().as_ref() == Some(&doc)
            {
                return Ok(out);
            }
            serde_saphyr::to_string(&doc).map_err(|e| EditError::Parse {
                file: file.to_string(),
                message: e.to_string(),
            })
        }
    }
}

fn json_set(
    file: &str,
    key: &str,
    doc: &mut serde_json::Value,
    segs: &[&str],
    value: &serde_json::Value,
) -> Result<(), EditError> {
    let not_container = |seg: &str| EditError::NotAContainer {
        file: file.to_string(),
        key: key.to_string(),
        segment: seg.to_string(),
    };
    let mut node = doc;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if node.is_null() {
            *node = serde_json::Value::Object(Default::default());
        }
        node = match node {
            serde_json::Value::Object(map) => {
                if last {
                    map.insert((*seg).to_string(), value.clone());
                    return Ok(());
                }
                map.entry((*seg).to_string())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()))
            }
            serde_json::Value::Array(items) => {
                let idx = seg
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < items.len())
                    .ok_or_else(|| not_container(seg))?;
                if last {
                    items[idx] = value.clone();
                    return Ok(());
                }
                &mut items[idx]
            }
            _ => {
                return Err(not_container(
                    segs.get(i.wrapping_sub(1)).copied().unwrap_or(seg),
                ));
            }
        };
    }
    Ok(())
}

/// Rewrites the single line holding a scalar at `segs` in block-style YAML; `None` if not simple.
fn yaml_surgical_set(before: &str, segs: &[&str], value: &serde_json::Value) -> Option<String> {
    let rendered = match value {
        serde_json::Value::Null => "null".to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => serde_json::to_string(s).ok()?,
        _ => return None,
    };
    let lines: Vec<&str> = before.lines().collect();
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let mut start = 0usize;
    let mut end = lines.len();
    let mut min_indent = 0usize;
    let mut target = None;
    for (depth, seg) in segs.iter().enumerate() {
        let mut hit = None;
        let mut level: Option<usize> = None;
        for (i, line) in lines.iter().enumerate().take(end).skip(start) {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let ind = indent_of(line);
            if ind < min_indent {
                break;
            }
            let lvl = *level.get_or_insert(ind);
            if ind != lvl {
                continue;
            }
            if t.starts_with("- ") || t.starts_with('{') || t.starts_with('[') {
                return None;
            }
            if let Some(rest) = t.strip_prefix(seg)
                && rest.starts_with(':')
            {
                hit = Some((i, ind));
                break;
            }
        }
        let (i, ind) = hit?;
        if depth + 1 == segs.len() {
            target = Some(i);
        } else {
            start = i + 1;
            min_indent = ind + 1;
            end = lines.len();
        }
    }
    let i = target?;
    let line = lines[i];
    let colon = line.find(':')?;
    let after = &line[colon + 1..];
    // Keep a trailing comment; refuse block scalars, anchors, flow collections and multi-line values.
    let (val_part, comment) = match after.find(" #") {
        Some(p) => {
            let keep_from = after[..p].trim_end().len();
            (&after[..keep_from], &after[keep_from..])
        }
        None => (after, ""),
    };
    let v = val_part.trim();
    if v.is_empty() || v.starts_with(['|', '>', '&', '*', '[', '{', '!']) {
        return None;
    }
    let new_line = format!("{}: {}{}", &line[..colon], rendered, comment);
    let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    out[i] = new_line;
    let mut text = out.join("\n");
    if before.ends_with('\n') {
        text.push('\n');
    }
    Some(text)
}

fn toml_set(
    file: &str,
    before: &str,
    key: &str,
    segs: &[&str],
    value: &serde_json::Value,
) -> Result<String, EditError> {
    let mut doc: toml_edit::DocumentMut =
        before
            .parse()
            .map_err(|e: toml_edit::TomlError| EditError::Parse {
                file: file.to_string(),
                message: e.to_string(),
            })?;
    let new_value = json_to_toml(value).ok_or_else(|| EditError::BadValue {
        file: file.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        format: "TOML",
    })?;
    let not_container = |seg: &str| EditError::NotAContainer {
        file: file.to_string(),
        key: key.to_string(),
        segment: seg.to_string(),
    };
    let mut item = doc.as_item_mut();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if last {
            match item {
                toml_edit::Item::Table(t) => match t.get_mut(seg) {
                    Some(toml_edit::Item::Value(v)) => {
                        let decor = v.decor().clone();
                        *v = new_value;
                        *v.decor_mut() = decor;
                    }
                    _ => {
                        t.insert(seg, toml_edit::Item::Value(new_value));
                    }
                },
                toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
                    t.insert(*seg, new_value);
                }
                _ => return Err(not_container(seg)),
            }
            break;
        }
        item = match item {
            toml_edit::Item::Table(t) => t.entry(seg).or_insert(toml_edit::table()),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(_)) => {
                // Descend via the generic index (inline tables are rare in configs kaizen edits).
                &mut item[*seg]
            }
            _ => return Err(not_container(seg)),
        };
    }
    Ok(doc.to_string())
}

fn json_to_toml(v: &serde_json::Value) -> Option<toml_edit::Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => toml_edit::Value::from(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => toml_edit::Value::from(i),
            None => toml_edit::Value::from(n.as_f64()?),
        },
        serde_json::Value::String(s) => toml_edit::Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            let mut arr = toml_edit::Array::new();
            for it in items {
                arr.push(json_to_toml(it)?);
            }
            toml_edit::Value::Array(arr)
        }
        serde_json::Value::Object(map) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, it) in map {
                t.insert(k, json_to_toml(it)?);
            }
            toml_edit::Value::InlineTable(t)
        }
    })
}

fn toml_item_to_json(item: &toml_edit::Item) -> serde_json::Value {
    match item {
        toml_edit::Item::None => serde_json::Value::Null,
        toml_edit::Item::Value(v) => toml_value_to_json(v),
        toml_edit::Item::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), toml_item_to_json(v)))
                .collect(),
        ),
        toml_edit::Item::ArrayOfTables(a) => serde_json::Value::Array(
            a.iter()
                .map(|t| {
                    serde_json::Value::Object(
                        t.iter()
                            .map(|(k, v)| (k.to_string(), toml_item_to_json(v)))
                            .collect(),
                    )
                })
                .collect(),
        ),
    }
}

fn toml_value_to_json(v: &toml_edit::Value) -> serde_json::Value {
    match v {
        toml_edit::Value::String(s) => serde_json::Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => serde_json::Value::from(*i.value()),
        toml_edit::Value::Float(f) => serde_json::Value::from(*f.value()),
        toml_edit::Value::Boolean(b) => serde_json::Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => serde_json::Value::String(d.value().to_string()),
        toml_edit::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(toml_value_to_json).collect())
        }
        toml_edit::Value::InlineTable(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), toml_value_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn oversize_payloads_are_refused_and_stored_bounded() {
        let big = Edit::FileWrite {
            file: "config/big.txt".into(),
            content: "é".repeat(MAX_FILE_BYTES),
        };
        let e = big.check_payload().unwrap_err();
        assert!(matches!(e, EditError::PayloadTooLarge { .. }), "{e}");
        assert!(big.apply_to(None).is_err());
        let stored = big.stored_form();
        assert!(
            stored.payload_bytes() < 2 * STORED_PAYLOAD_BYTES,
            "{stored}"
        );
        assert!(
            serde_json::to_string(&stored)
                .unwrap()
                .contains("not stored"),
            "{stored}"
        );
        let value = Edit::ConfigSet {
            file: "a.yaml".into(),
            key: "k".into(),
            value: json!("x".repeat(MAX_VALUE_BYTES + 1)),
        };
        assert!(value.check_payload().is_err());
        assert!(value.stored_form().payload_bytes() < 2 * STORED_PAYLOAD_BYTES);
        let small = Edit::FileWrite {
            file: "a.txt".into(),
            content: "ok".into(),
        };
        assert_eq!(small.stored_form(), small);
    }

    fn set(file: &str, before: Option<&str>, key: &str, value: serde_json::Value) -> String {
        Edit::ConfigSet {
            file: file.into(),
            key: key.into(),
            value,
        }
        .apply_to(before)
        .unwrap()
    }

    #[test]
    fn yaml_keeps_comments_and_layout() {
        let before = "# service config\ncache_mb: 128   # tuned 2026-10\nworkers: 4\nhttp:\n  timeout_ms: 500\n";
        let after = set("config/app.yaml", Some(before), "cache_mb", json!(256));
        assert_eq!(
            after,
            "# service config\ncache_mb: 256   # tuned 2026-10\nworkers: 4\nhttp:\n  timeout_ms: 500\n"
        );
        let nested = set("a.yml", Some(before), "http.timeout_ms", json!(750));
        assert!(nested.contains("  timeout_ms: 750"), "{nested}");
        assert!(nested.starts_with("# service config"));
    }

    #[test]
    fn yaml_new_keys_and_files() {
        let out = set("a.yaml", None, "cache.size_mb", json!(64));
        assert_eq!(
            config_get("a.yaml", &out, "cache.size_mb").unwrap(),
            Some(json!(64))
        );
        let out2 = set("a.yaml", Some(&out), "cache.policy", json!("lru"));
        assert_eq!(
            config_get("a.yaml", &out2, "cache.policy").unwrap(),
            Some(json!("lru"))
        );
        assert_eq!(
            config_get("a.yaml", &out2, "cache.size_mb").unwrap(),
            Some(json!(64))
        );
    }

    #[test]
    fn json_and_toml() {
        let j = set(
            "c.json",
            Some("{\"a\": {\"b\": 1}, \"z\": true}"),
            "a.b",
            json!(2),
        );
        assert_eq!(config_get("c.json", &j, "a.b").unwrap(), Some(json!(2)));
        assert!(
            j.find("\"a\"").unwrap() < j.find("\"z\"").unwrap(),
            "order kept"
        );
        let t = set(
            "c.toml",
            Some("# top\n[pool]\nsize = 4 # comment\n"),
            "pool.size",
            json!(8),
        );
        assert_eq!(t, "# top\n[pool]\nsize = 8 # comment\n");
        let t2 = set("c.toml", Some(""), "server.port", json!(8080));
        assert_eq!(
            config_get("c.toml", &t2, "server.port").unwrap(),
            Some(json!(8080))
        );
    }

    #[test]
    fn relative_values_on_yaml_json_toml_keep_comments() {
        let y = set(
            "a.yaml",
            Some("# app\ncache_mb: 128  # MiB\nworkers: 4\n"),
            "cache_mb",
            json!("*1.5"),
        );
        assert_eq!(y, "# app\ncache_mb: 192  # MiB\nworkers: 4\n");
        let t = set(
            "a.toml",
            Some("# top\n[pool]\nsize = 10 # conns\ntimeout = \"30s\"\n"),
            "pool.size",
            json!("-10%"),
        );
        assert_eq!(t, "# top\n[pool]\nsize = 9 # conns\ntimeout = \"30s\"\n");
        let j = set("a.json", Some("{\"buf\": 64}"), "buf", json!("+64"));
        assert_eq!(config_get("a.json", &j, "buf").unwrap(), Some(json!(128)));
        let e = Edit::ConfigSet {
            file: "a.yaml".into(),
            key: "missing".into(),
            value: json!("*2"),
        }
        .apply_to(Some("x: 1\n"))
        .unwrap_err();
        assert!(matches!(e, EditError::Relative { .. }), "{e}");
    }

    #[test]
    fn resolve_all_composes_edits_of_one_file() {
        let change = vec![
            Edit::ConfigSet {
                file: "a.yaml".into(),
                key: "n".into(),
                value: json!("*2"),
            },
            Edit::ConfigSet {
                file: "a.yaml".into(),
                key: "n".into(),
                value: json!("+1"),
            },
        ];
        let (edits, resolved) = resolve_all(&change, |_| Ok(Some("n: 4\n".into()))).unwrap();
        assert_eq!(
            edits[1],
            Edit::ConfigSet {
                file: "a.yaml".into(),
                key: "n".into(),
                value: json!(9)
            }
        );
        assert_eq!(change[0].to_string(), "set n *2 in a.yaml");
        assert_eq!(edits[0].to_string(), "set n = 8 in a.yaml");
        assert_eq!(resolved[0].old_to_new(), "4 → 8 (*2)");
        assert_eq!(resolved[1].old_to_new(), "8 → 9 (+1)");
    }

    #[test]
    fn errors_are_named() {
        let e = Edit::ConfigSet {
            file: "x.ini".into(),
            key: "a".into(),
            value: json!(1),
        }
        .apply_to(None)
        .unwrap_err();
        assert!(e.to_string().contains("x.ini"));
        let e = Edit::ConfigSet {
            file: "x.yaml".into(),
            key: "a.b".into(),
            value: json!(1),
        }
        .apply_to(Some("a: 3\n"))
        .unwrap_err();
        assert!(matches!(e, EditError::NotAContainer { .. }), "{e}");
        let e = Edit::ConfigSet {
            file: "x.yaml".into(),
            key: "a..b".into(),
            value: json!(1),
        }
        .apply_to(None)
        .unwrap_err();
        assert!(matches!(e, EditError::BadKey { .. }));
        let e = Edit::ConfigSet {
            file: "x.yaml".into(),
            key: "a".into(),
            value: json!(1),
        }
        .apply_to(Some("a: [1,\n"))
        .unwrap_err();
        assert!(matches!(e, EditError::Parse { .. }));
    }
}

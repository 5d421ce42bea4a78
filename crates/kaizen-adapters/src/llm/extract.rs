//! Tolerant extraction of the first JSON object from model output (prose, ``` fences, chatter).

use serde_json::Value;

/// Most `{` positions tried as the start of the answer's object.
pub const MAX_TRIES: usize = 64;

/// The first JSON object in `text`: the whole text if it is one, else the first balanced
/// `{ … }` span (strings and escapes respected) that parses, among the first [`MAX_TRIES`]
/// opening braces. `None` when there is none.
///
/// ```
/// use kaizen_adapters::llm::extract::first_json_object;
/// let v = first_json_object("Sure! ```json\n{\"a\": {\"b\": \"}\"}}\n``` hope it helps").unwrap();
/// assert_eq!(v["a"]["b"], "}");
/// ```
pub fn first_json_object(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(trimmed) {
        return Some(v);
    }
    let bytes = text.as_bytes();
    let mut start = 0;
    // Each try scans to its closing brace; bounding the tries keeps hostile output
    // (`{{{{…` a quarter of a megabyte long) linear instead of quadratic.
    let mut tries = 0;
    while let Some(off) = text.get(start..).and_then(|t| t.find('{')) {
        tries += 1;
        if tries > MAX_TRIES {
            return None;
        }
        let open = start + off;
        if let Some(close) = balanced_end(bytes, open)
            && let Some(slice) = text.get(open..=close)
            && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(slice)
        {
            return Some(v);
        }
        start = open + 1;
    }
    None
}

/// The index of the `}` closing the `{` at `open`, honouring JSON strings.
fn balanced_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (b == b'}').then_some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pure_prose_and_fences() {
        assert_eq!(first_json_object("{\"a\":1}").unwrap()["a"], 1);
        assert_eq!(
            first_json_object("Here:\n```json\n{\"a\":2}\n```").unwrap()["a"],
            2
        );
        assert_eq!(
            first_json_object("x {not json} then {\"a\":3} y").unwrap()["a"],
            3
        );
        assert_eq!(
            first_json_object("{\"s\":\"a \\\" } b\"}").unwrap()["s"],
            "a \" } b"
        );
        assert!(first_json_object("no json here").is_none());
        assert!(first_json_object("{\"a\": [1, 2").is_none());
        assert!(first_json_object("[1,2]").is_none());
        assert!(first_json_object("}}}{{{").is_none());
    }
}

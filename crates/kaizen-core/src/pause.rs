//! Emergency stop: while paused, nothing is applied (observation, validation and reverts of what
//! is already applied go on).
//!
//! The state is files in the state dir, so an operator with only a shell can stop kaizen
//! (`echo "incident 1234" > .kaizen/PAUSE`) and every process — `kaizen run`, a cron
//! `kaizen cycle`, an embedding host — sees the same thing without holding the state lock:
//! `PAUSE` pauses everything, `PAUSE.<area>` one area. The first line of the file is the why.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The global pause file's name.
pub const PAUSE_FILE: &str = "PAUSE";

/// At most this much of a pause file is read as its reason.
const WHY_MAX: u64 = 1024;

/// One pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// Why (the file's first line; "PAUSE file present" for an empty file).
    pub why: String,
    /// When the file was last written, if the filesystem says.
    pub since: Option<DateTime<Utc>>,
}

/// Every pause in force in a state dir.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pauses {
    /// Everything paused.
    pub global: Option<Pause>,
    /// Areas paused one by one.
    pub areas: BTreeMap<String, Pause>,
}

impl Pauses {
    /// Whether nothing in `area` may be applied now, and why.
    pub fn blocking(&self, area: &str) -> Option<String> {
        if let Some(p) = &self.global {
            return Some(format!("kaizen is paused: {}", p.why));
        }
        self.areas
            .get(area)
            .map(|p| format!("area `{area}` is paused: {}", p.why))
    }

    /// Whether any pause is in force.
    pub fn any(&self) -> bool {
        self.global.is_some() || !self.areas.is_empty()
    }
}

/// A pause could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PauseError {
    /// A pause needs a reason (it is what the next operator reads).
    #[error("a pause needs a reason (--why \"…\")")]
    NoReason,
    /// The area cannot name a file.
    #[error("area {0:?} cannot be paused by name (use letters, digits, `-`, `_`, `.`)")]
    BadArea(String),
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn file_for(state_dir: &Path, area: Option<&str>) -> Result<PathBuf, PauseError> {
    match area {
        None => Ok(state_dir.join(PAUSE_FILE)),
        Some(a) => {
            let ok = !a.is_empty()
                && a.len() <= 64
                && !a.starts_with('.')
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(PauseError::BadArea(a.to_string()));
            }
            Ok(state_dir.join(format!("{PAUSE_FILE}.{a}")))
        }
    }
}

fn read_one(path: &Path) -> Option<Pause> {
    let file = std::fs::File::open(path).ok()?;
    let since = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .map(DateTime::<Utc>::from);
    let mut text = String::new();
    // A pause file that cannot be read as text still pauses (fail closed).
    let _ = file.take(WHY_MAX).read_to_string(&mut text);
    let why = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("PAUSE file present")
        .to_string();
    Some(Pause { why, since })
}

/// The pauses in force in `state_dir` (none if it does not exist).
pub fn read(state_dir: &Path) -> Pauses {
    let mut out = Pauses {
        global: read_one(&state_dir.join(PAUSE_FILE)),
        areas: BTreeMap::new(),
    };
    if let Ok(entries) = std::fs::read_dir(state_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(area) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&format!("{PAUSE_FILE}.")))
            else {
                continue;
            };
            if area.ends_with(".tmp") {
                continue;
            }
            if let Some(p) = read_one(&e.path()) {
                out.areas.insert(area.to_string(), p);
            }
        }
    }
    out
}

/// Pauses everything (`area` = `None`) or one area, writing `why` (atomically: temp + rename).
pub fn pause(state_dir: &Path, area: Option<&str>, why: &str) -> Result<PathBuf, PauseError> {
    let path = file_for(state_dir, area)?;
    let io = |source| PauseError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let tmp = path.with_extension(format!(
        "{}tmp",
        path.extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let why = why.lines().next().unwrap_or("").trim();
    std::fs::write(&tmp, format!("{why}\n")).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Lifts the global pause (`None`) or one area's. Returns whether one was in force.
pub fn resume(state_dir: &Path, area: Option<&str>) -> Result<bool, PauseError> {
    let path = file_for(state_dir, area)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PauseError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_pause_globally_and_per_area() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!read(dir.path()).any());
        pause(dir.path(), Some("cache"), "load test at 14:00\nignored").unwrap();
        let p = read(dir.path());
        assert_eq!(p.global, None);
        assert_eq!(p.areas["cache"].why, "load test at 14:00");
        assert_eq!(
            p.blocking("cache").unwrap(),
            "area `cache` is paused: load test at 14:00"
        );
        assert_eq!(p.blocking("db"), None);
        // An operator with only a shell: an empty PAUSE file stops everything.
        std::fs::write(dir.path().join("PAUSE"), "").unwrap();
        let p = read(dir.path());
        assert_eq!(
            p.blocking("db").unwrap(),
            "kaizen is paused: PAUSE file present"
        );
        assert!(resume(dir.path(), None).unwrap());
        assert!(!resume(dir.path(), None).unwrap());
        assert!(resume(dir.path(), Some("cache")).unwrap());
        assert!(!read(dir.path()).any());
        assert!(matches!(
            pause(dir.path(), Some("../x"), "no"),
            Err(PauseError::BadArea(_))
        ));
    }
}

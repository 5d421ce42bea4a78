//! The lesson store: a directory of YAML files, one lesson per `<id>.yaml`.
//!
//! Reading is forgiving per file (a bad file is reported, the others load); writing is pure: the
//! store computes the `(repo-relative path, content)` pairs of a learn run, and the caller commits
//! them as one commit through `Applier::commit_files` (never counted as an intervention).

use super::LessonChange;
use super::{Lesson, LessonError, new_lesson_from_yaml};
use crate::yaml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest lesson file read (bigger files are reported, not parsed).
pub const MAX_LESSON_BYTES: u64 = 256 * 1024;

/// One lesson file that could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct LessonLoadError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong with it (messages name file, line and field).
    pub error: LessonError,
}

/// A directory of lesson files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonStore {
    dir: PathBuf,
}

impl LessonStore {
    /// The store in `dir` (it need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where lesson `id` lives: `<dir>/<id>.yaml`.
    pub fn path_for(&self, id: &str) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// Loads every `*.yaml` / `*.yml` file, sorted by file name. Bad files (unreadable, invalid,
    /// file name not matching the id, duplicate id) are returned as errors beside the good
    /// lessons. A missing directory holds no lessons. Only an unreadable directory fails.
    pub fn load(&self) -> Result<(Vec<Lesson>, Vec<LessonLoadError>), LessonError> {
        load(&self.dir)
    }

    /// Loads one lesson file, checking that its name matches its id.
    pub fn load_file(path: &Path) -> Result<Lesson, LessonError> {
        let io = |message: String| LessonError::Io {
            file: path.to_path_buf(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
        if meta.len() > MAX_LESSON_BYTES {
            return Err(io(format!(
                "{} bytes is larger than a lesson may be ({MAX_LESSON_BYTES})",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
        let lesson = new_lesson_from_yaml(&text, path)?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != lesson.id {
            return Err(LessonError::Invalid(vec![yaml::semantic_error(
                &text,
                path,
                "id",
                format!(
                    "the id {:?} does not match the file name: rename the file to {} or change the id",
                    lesson.id,
                    file_name(&lesson.id)
                ),
            )]));
        }
        Ok(lesson)
    }
}

/// `<id>.yaml`.
pub fn file_name(id: &str) -> String {
    format!("{id}.yaml")
}

/// See [`LessonStore::load`].
pub fn load(dir: &Path) -> Result<(Vec<Lesson>, Vec<LessonLoadError>), LessonError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => {
            return Err(LessonError::Io {
                file: dir.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !name.starts_with('.')
                && p.extension().is_some_and(|x| x == "yaml" || x == "yml")
                && p.is_file()
        })
        .collect();
    paths.sort();
    let mut lessons: Vec<Lesson> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        match LessonStore::load_file(&path) {
            Ok(lesson) => {
                if let Some(first) = seen.get(&lesson.id) {
                    errors.push(LessonLoadError {
                        file: path.clone(),
                        error: LessonError::Invalid(vec![yaml::YamlError {
                            file: path.clone(),
                            line: None,
                            column: None,
                            field: "id".into(),
                            message: format!(
                                "{} is already defined in {}",
                                lesson.id,
                                first.display()
                            ),
                        }]),
                    });
                    continue;
                }
                seen.insert(lesson.id.clone(), path);
                lessons.push(lesson);
            }
            Err(error) => errors.push(LessonLoadError { file: path, error }),
        }
    }
    Ok((lessons, errors))
}

/// A lesson as its file's content: a header comment, then stable YAML (same lesson → same bytes).
pub fn render(lesson: &Lesson) -> String {
    let body = yaml::to_string(lesson)
        // JSON is YAML too: a lesson always renders to something loadable.
        .or_else(|_| serde_json::to_string_pretty(lesson).map(|s| s + "\n"))
        .unwrap_or_default();
    format!(
        "# kaizen lesson {} (version {}, {}).\n\
         # Fields: see `kaizen lessons show {}`. falsifiable / retired_when are checked on\n\
         # observations when written as conditions, e.g. `latency_ms median_24h outside [150, 400]`.\n{body}",
        lesson.id, lesson.version, lesson.status, lesson.id
    )
}

/// The writes for a learn run: `(repo-relative path, Some(content))` per changed lesson, sorted by
/// path; a later change to the same lesson wins. `lessons_dir` is the lesson directory relative to
/// the repo root (e.g. `lessons`).
pub fn change_writes(lessons_dir: &str, changes: &[LessonChange]) -> Vec<(String, Option<String>)> {
    let dir = lessons_dir.trim_end_matches('/');
    let mut by_path: BTreeMap<String, String> = BTreeMap::new();
    for c in changes {
        let l = c.lesson();
        let path = if dir.is_empty() || dir == "." {
            file_name(&l.id)
        } else {
            format!("{dir}/{}", file_name(&l.id))
        };
        by_path.insert(path, render(l));
    }
    by_path.into_iter().map(|(p, c)| (p, Some(c))).collect()
}

/// The commit message for a learn run's lesson commit.
pub fn commit_message(distiller: &str, changes: &[LessonChange]) -> String {
    let count = |f: fn(&LessonChange) -> bool| changes.iter().filter(|c| f(c)).count();
    let created = count(|c| matches!(c, LessonChange::Create(_)));
    let updated = count(|c| matches!(c, LessonChange::Update(_)));
    let retired = count(|c| matches!(c, LessonChange::Retire(_)));
    let mut msg = format!(
        "kaizen learn: {created} lesson(s) created, {updated} updated, {retired} retired\n\n"
    );
    for c in changes {
        let l = c.lesson();
        let what = match c {
            LessonChange::Create(_) => "create",
            LessonChange::Update(_) => "update",
            LessonChange::Retire(_) => "retire",
        };
        msg.push_str(&format!("- {what} {} (v{})", l.id, l.version));
        if let (LessonChange::Retire(_), Some(r)) = (c, &l.retired_reason) {
            msg.push_str(&format!(": {r}"));
        }
        msg.push('\n');
    }
    msg.push_str(&format!("\nKaizen-Distiller: {distiller}\n"));
    msg
}

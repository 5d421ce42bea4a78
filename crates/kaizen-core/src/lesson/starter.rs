//! The starter library: the lessons in the repository's top-level `lessons/`, compiled into the
//! binary so `kaizen init` can copy them into a target repository without the source tree.

macro_rules! starter {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../../lessons/", $name)))),*]
    };
}

const STARTER: &[(&str, &str)] = starter![
    "L-breaker-failures-age-out.yaml",
    "L-checkpoint-partial-progress.yaml",
    "L-dispatch-filter-starves-category.yaml",
    "L-guard-at-point-of-use.yaml",
    "L-liveness-not-output-mtime.yaml",
    "L-logger-configured-twice.yaml",
];

/// The starter lessons as `(file name, YAML content)`, sorted by file name. Write each to
/// `<lessons dir>/<file name>` (skip files that already exist).
pub fn starter_lessons() -> Vec<(&'static str, &'static str)> {
    STARTER.to_vec()
}

/// The starter library's directory in the kaizen source tree (for tests and development only;
/// use [`starter_lessons`] in the binary).
pub fn starter_library_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lessons")
}

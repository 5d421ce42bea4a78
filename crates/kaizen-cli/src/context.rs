//! What every command needs: how a command fails (exit codes), the config, the engine with its
//! lessons, the state lock. Below `commands`, `lessons`, `audit` and `service`, which all use it
//! (and never each other's helpers), so the dependencies point one way.

use anyhow::anyhow;
use kaizen_adapters::assemble;
use kaizen_core::clock::Clock;
use kaizen_core::config::{Config, ConfigError};
use kaizen_core::engine::Engine;
use kaizen_core::lesson::{self, Lesson};
use kaizen_core::lock::StateLock;
use std::path::Path;
use std::sync::Arc;

/// Exit code when another kaizen process holds the state dir (EX_TEMPFAIL: try again later).
pub const EXIT_BUSY: u8 = 75;

/// How a command failed: exit code 2 for usage/config, [`EXIT_BUSY`] when another kaizen holds the
/// state dir, 1 for other runtime failures.
pub enum Failure {
    /// Bad usage or bad config (exit 2).
    Usage(String),
    /// The state dir is locked by another kaizen process (exit 75): nothing failed, try later.
    Busy(String),
    /// Something failed at run time (exit 1).
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;

/// A runtime failure (exit code 1) from any error.
pub(crate) fn rt<E: std::error::Error + Send + Sync + 'static>(e: E) -> Failure {
    Failure::Runtime(anyhow::Error::new(e))
}

pub(crate) fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

pub(crate) fn load_config(path: &Path) -> Result<Config> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(ConfigError::Io { file, source }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(usage(format!(
                "no config at {} (run `kaizen init` in your repository, or pass --config PATH)",
                file.display()
            )))
        }
        Err(e @ ConfigError::Io { .. }) => Err(Failure::Runtime(anyhow!(e))),
        Err(e @ ConfigError::Invalid(_)) => Err(usage(e.to_string())),
        Err(e) => Err(Failure::Runtime(anyhow!(e))),
    }
}

/// The engine for `config` (exit 2 for config faults such as a bad rules file). Lesson files that
/// cannot be loaded are skipped and recorded as events.
pub(crate) fn engine(config: &Config, clock: Arc<dyn Clock>) -> Result<Engine> {
    let (lessons, errors) = lessons_and_errors(&config.lessons);
    let mut engine = assemble::engine_from_config(config, clock, lessons).map_err(assembly)?;
    assemble::record_lesson_errors(&mut engine, &errors).map_err(rt)?;
    Ok(engine)
}

/// The engine for `kaizen revert` ([`assemble::engine_for_revert`]: no proposers, no lessons).
pub(crate) fn engine_for_revert(config: &Config, clock: Arc<dyn Clock>) -> Result<Engine> {
    assemble::engine_for_revert(config, clock).map_err(assembly)
}

/// An engine that could not be assembled: exit 2 for a fault in the config, else a failure.
fn assembly(e: assemble::AssembleError) -> Failure {
    if e.is_config() {
        usage(e.to_string())
    } else {
        Failure::Runtime(anyhow!(e))
    }
}

pub(crate) fn lock(config: &Config) -> Result<StateLock> {
    lock_within(config, std::time::Duration::ZERO)
}

/// The state-dir lock, waiting up to `wait` for another holder.
pub(crate) fn lock_within(config: &Config, wait: std::time::Duration) -> Result<StateLock> {
    StateLock::acquire_within(&config.state_dir, wait).map_err(|e| match e {
        e @ kaizen_core::lock::LockError::Busy { .. } => Failure::Busy(e.to_string()),
        e => rt(e),
    })
}

/// Lessons in `dir` and the files that could not be loaded (each also reported on stderr).
pub fn lessons_and_errors(dir: &Path) -> (Vec<Lesson>, Vec<lesson::store::LessonLoadError>) {
    match lesson::store::load(dir) {
        Ok((lessons, errors)) => {
            for e in &errors {
                eprintln!("kaizen: skipping lesson file: {e}");
            }
            (lessons, errors)
        }
        Err(e) => {
            eprintln!("kaizen: cannot read lessons in {}: {e}", dir.display());
            (Vec::new(), Vec::new())
        }
    }
}

//! One kaizen process per state dir at a time: an exclusive lock on `<state_dir>/kaizen.lock`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Held while a process works on a state dir; released on drop (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "{path} is held by another kaizen process (a cycle or daemon is running); try again when it finishes"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl StateLock {
    /// Takes the lock without waiting (creating the state dir if needed).
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join("kaizen.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Busy { path }),
            Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io { path, source: e }),
        }
    }

    /// Takes the lock, waiting up to `wait` for another holder to finish (a cron `observe` that
    /// meets a running cycle keeps its sample instead of losing it). Polls every 100 ms.
    pub fn acquire_within(
        state_dir: &Path,
        wait: std::time::Duration,
    ) -> Result<StateLock, LockError> {
        let deadline = std::time::Instant::now().checked_add(wait);
        loop {
            match Self::acquire(state_dir) {
                Err(LockError::Busy { path }) => {
                    let now = std::time::Instant::now();
                    if deadline.is_none_or(|d| now >= d) {
                        return Err(LockError::Busy { path });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        let err = StateLock::acquire_within(dir.path(), std::time::Duration::ZERO).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        drop(first);
        assert!(StateLock::acquire(dir.path()).is_ok());
    }
}

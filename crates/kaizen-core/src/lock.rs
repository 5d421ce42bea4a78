//! One kaizen process per state dir at a time: an exclusive lock on `<state_dir>/kaizen.lock`.
//!
//! The holder writes who it is into the file (`pid 4242 (kaizen run) since …`), so the one that
//! is refused can say who holds it. The OS releases the lock when the holder dies, so a stale
//! file never blocks anyone; its text is only a hint.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while a process works on a state dir; released on drop (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "{path} is held by {} (a cycle, daemon or host runtime is running); try again when it finishes",
        holder.as_deref().unwrap_or("another kaizen process")
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder wrote it (`pid 4242 (kaizen run) since …`).
        holder: Option<String>,
    },
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// At most this much of the lock file is read back as the holder's name.
const HOLDER_MAX: u64 = 256;

impl StateLock {
    /// Takes the lock without waiting (creating the state dir if needed), naming this process
    /// as the holder.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join("kaizen.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                // Only the holder writes, so truncating here never races another writer.
                let who = format!(
                    "pid {} ({}) since {}\n",
                    std::process::id(),
                    process_name(),
                    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
                );
                // Written over the last holder's line, then cut to this one's length: the
                // file keeps its block instead of freeing it and allocating one again (a cron
                // process takes this lock every run; issue 12, bench 1).
                file.rewind()
                    .and_then(|_| file.write_all(who.as_bytes()))
                    .and_then(|_| file.set_len(who.len() as u64))
                    .map_err(io)?;
                Ok(StateLock { _file: file, path })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                Err(LockError::Busy { path, holder })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io { path, source: e }),
        }
    }

    /// Takes the lock, waiting up to `wait` for another holder to finish (a cron `cycle` that
    /// meets a running one, a host starting while a cycle runs). Polls every 100 ms; blocking,
    /// so async callers run it on a blocking thread.
    pub fn acquire_within(
        state_dir: &Path,
        wait: std::time::Duration,
    ) -> Result<StateLock, LockError> {
        let deadline = std::time::Instant::now().checked_add(wait);
        loop {
            match Self::acquire(state_dir) {
                Err(busy @ LockError::Busy { .. }) => {
                    if deadline.is_none_or(|d| std::time::Instant::now() >= d) {
                        return Err(busy);
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

fn process_name() -> String {
    let mut args = std::env::args();
    let exe = args
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "?".into());
    match args.find(|a| !a.starts_with('-')) {
        Some(sub) if exe == "kaizen" => format!("kaizen {sub}"),
        _ => exe,
    }
}

fn read_holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(HOLDER_MAX).read_to_string(&mut text).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        let LockError::Busy { holder, .. } = &err else {
            panic!("{err}")
        };
        let holder = holder.as_deref().unwrap();
        assert!(
            holder.starts_with(&format!("pid {} (", std::process::id())),
            "{holder}"
        );
        assert!(err.to_string().contains(holder), "{err}");
        let err = StateLock::acquire_within(dir.path(), std::time::Duration::ZERO).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        let err = StateLock::acquire_within(dir.path(), std::time::Duration::ZERO).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        drop(first);
        assert!(StateLock::acquire(dir.path()).is_ok());
    }
}

//! One writer per output directory: a run holds an exclusive lock on `DIR/.hashprep.lock` while
//! it writes, and a second run into the same directory is refused with the holder's pid and
//! host instead of failing later on a shard the first one moved.
//!
//! The lock is the operating system's (`flock`): it goes away with its process, however that
//! ends, so a killed run never leaves a stale lock behind. On a network filesystem without
//! `flock` the lock cannot be taken and the run is refused, saying so.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, OutputProblem, Result};

/// The lock file of an output directory.
pub(crate) const LOCK_FILE: &str = ".hashprep.lock";

/// An output directory locked for this process until the value drops.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: File,
}

impl OutputLock {
    /// Locks `dir` (which must exist) for `what` (`tokenize`, ...), recording this process.
    ///
    /// # Errors
    /// Another process holds the lock (the message names its pid, host and command), or the
    /// lock file cannot be created or locked.
    pub fn acquire(dir: &Path, what: &str) -> Result<Self> {
        Self::acquire_file(dir, LOCK_FILE, what)
    }

    /// [`OutputLock::acquire`] with a lock file of another name: one of several writers of
    /// one directory, each of its own part (a task of a shared Reddit spill).
    ///
    /// # Errors
    /// As [`OutputLock::acquire`].
    pub(crate) fn acquire_file(dir: &Path, name: &str, what: &str) -> Result<Self> {
        let path = dir.join(name);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let holder = if holder.is_empty() {
                        "it is starting"
                    } else {
                        holder
                    };
                    return Err(Error::Output {
                        dir: dir.to_owned(),
                        problem: OutputProblem::Locked(holder.to_owned()),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            // A run that finished removed the file between our open and our lock: lock the
            // file that now has the name, or two runs would each hold a lock of their own.
            if !same_file(&file, &path) {
                continue;
            }
            let note = format!("{what}, pid {} on host {}", std::process::id(), host_name());
            file.set_len(0).map_err(|e| Error::io(&path, e))?;
            file.rewind().map_err(|e| Error::io(&path, e))?;
            file.write_all(note.as_bytes())
                .map_err(|e| Error::io(&path, e))?;
            return Ok(Self { path, file });
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked (see `acquire`), so the directory is left as it was.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// A lock shared by the readers of a directory (the rebuild tasks of a shared Reddit spill), so
/// that it is not removed under them: [`ReadLock::remove_dir`] takes it exclusively. Its file
/// stays (a reader that removed it would let a remover lock a new file while others read).
#[derive(Debug)]
pub(crate) struct ReadLock {
    _file: File,
}

/// The file of a directory's [`ReadLock`].
const READ_LOCK_FILE: &str = ".hashprep-readers.lock";

impl ReadLock {
    /// Shares the read lock of `dir`.
    ///
    /// # Errors
    /// The lock file cannot be created or locked (a removal holds it: it says so).
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        let file = Self::open(dir)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Output {
                dir: dir.to_owned(),
                problem: OutputProblem::Locked("it is being removed".into()),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(dir.join(READ_LOCK_FILE), e)),
        }
    }

    /// Removes `dir` unless a reader holds its read lock.
    ///
    /// # Errors
    /// A reader holds it (`in_use` says what for), or the removal fails.
    pub(crate) fn remove_dir(dir: &Path, in_use: OutputProblem) -> Result<()> {
        let file = Self::open(dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Output {
                    dir: dir.to_owned(),
                    problem: in_use,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(dir.join(READ_LOCK_FILE), e))
            }
        }
        remove_files_in_parallel(dir)?;
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    fn open(dir: &Path) -> Result<File> {
        let path = dir.join(READ_LOCK_FILE);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))
    }
}

/// Removes the files of `dir` and of its subdirectories (not deeper) on all cores: unlinking
/// a file frees its blocks and cached pages, which takes a while for the hundreds of large
/// files of a spill.
fn remove_files_in_parallel(dir: &Path) -> Result<()> {
    use rayon::prelude::*;
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
            .collect()
    };
    let mut files = Vec::new();
    for path in list(dir)? {
        if path.is_dir() {
            files.extend(list(&path)?.into_iter().filter(|p| p.is_file()));
        } else {
            files.push(path);
        }
    }
    files
        .par_iter()
        .try_for_each(|file| std::fs::remove_file(file).map_err(|e| Error::io(file, e)))
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// This machine's name, as the kernel or the environment gives it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map_or_else(|| "unknown".into(), |h| h.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_first_and_the_lock_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(dir.path(), "tokenize").unwrap();
        let err = OutputLock::acquire(dir.path(), "tokenize")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("tokenize, pid {} on host", std::process::id())),
            "{err}"
        );
        assert!(
            err.contains("another run is writing this directory"),
            "{err}"
        );
        drop(first);
        assert!(
            !dir.path().join(LOCK_FILE).exists(),
            "removed with the lock"
        );
        let again = OutputLock::acquire(dir.path(), "tokenize").unwrap();
        drop(again);
    }

    #[test]
    fn a_directory_is_not_removed_while_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spill");
        std::fs::create_dir(&dir).unwrap();
        let readers = [
            ReadLock::acquire(&dir).unwrap(),
            ReadLock::acquire(&dir).unwrap(),
        ];
        let err = ReadLock::remove_dir(&dir, OutputProblem::Locked("read".into())).unwrap_err();
        assert!(err.to_string().contains("read"), "{err}");
        assert!(dir.exists());
        drop(readers);
        ReadLock::remove_dir(&dir, OutputProblem::Locked("read".into())).unwrap();
        assert!(!dir.exists());
    }
}

//! The per-job lock: one run per job at a time, shared by the CLI and the agent
//! through a file lock in the state directory (released by the kernel if we die).
//! Everything that writes or deletes under a job's folder on a target takes it:
//! a backup for its whole run (retention included), `coffer prune` for its own.
//! That a lock is held by someone else is a typed error, so callers can decide
//! what to do about it without reading the message.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct JobLock {
    _file: File,
    /// The job it locks: work that needs the lock checks it holds the right one.
    pub job: String,
}

/// Another process holds the job's lock (a backup, or a prune, of that job).
#[derive(Debug, thiserror::Error)]
#[error(
    "job {job} is already running: lock {} is held by pid {holder} (a backup or a prune of this job)",
    path.display()
)]
pub struct LockHeld {
    pub job: String,
    pub path: PathBuf,
    /// As the holder wrote it into the file; may be empty for a moment after it took it.
    pub holder: String,
}

pub fn lock_job(state_dir: &Path, job: &str) -> Result<JobLock> {
    let dir = state_dir.join("locks");
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create state directory {} (set [agent] state_dir)",
            dir.display()
        )
    })?;
    let path = dir.join(format!("{job}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(anyhow::Error::new(LockHeld {
                job: job.to_string(),
                path,
                holder: holder.trim().to_string(),
            }));
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    written.with_context(|| format!("cannot write the pid into lock file {}", path.display()))?;
    Ok(JobLock {
        _file: file,
        job: job.to_string(),
    })
}

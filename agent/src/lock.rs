//! The per-job lock: one run per job at a time, shared by the CLI and the agent
//! through a file lock in the state directory (released by the kernel if we die).

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct JobLock {
    _file: File,
    pub path: PathBuf,
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
            bail!(
                "job {job} is already running (lock {} held by pid {}); wait for it to finish",
                path.display(),
                holder.trim()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(JobLock { _file: file, path })
}

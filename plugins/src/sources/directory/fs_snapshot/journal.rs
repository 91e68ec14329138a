//! The record of every filesystem snapshot a run holds, in
//! `state_dir/snapshots/<job>.<source>.json`, written before a btrfs snapshot is
//! made (after a snapshot command printed its path) and removed once it is
//! released. A run killed outright (SIGKILL, power loss) cannot release what it
//! holds; the next run of the job finds these records and releases them, even if
//! the source was renamed, moved to another path or removed from the config since.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// What releasing one snapshot takes, independent of the config that made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Record {
    /// A read-only btrfs subvolume, deleted with `btrfs subvolume delete`.
    Btrfs { snapshot: PathBuf },
    /// Released by running `release` with the environment the snapshot command had,
    /// plus COFFER_SNAPSHOT_PATH.
    Command {
        release: Vec<String>,
        job: String,
        source: String,
        path: PathBuf,
        snapshot_path: PathBuf,
    },
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshots")
}

/// Job and source names hold no `.` (config/src/names.rs), so `<job>.` is a
/// prefix no other job's records share.
pub(crate) fn path_of(state_dir: &Path, job: &str, source: &str) -> PathBuf {
    dir(state_dir).join(format!("{job}.{source}.json"))
}

/// Writes the record durably (temp file, fsync, rename) before anything is taken.
pub(crate) fn write(file: &Path, record: &Record) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    crate::fs::durable::replace_file(file, &bytes)
}

/// Forgets a released snapshot; a record already gone is fine.
pub(crate) fn remove(file: &Path) -> io::Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The records `job` left: each file with what it says, or why it cannot be read.
pub(crate) fn of_job(state_dir: &Path, job: &str) -> Vec<(PathBuf, Result<Record, String>)> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let prefix = format!("{job}.");
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json"))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|p| {
            let read = std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            (p, read)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_by_job_and_only_by_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let btrfs = Record::Btrfs {
            snapshot: "/srv/.coffer-snapshots/app.files".into(),
        };
        let command = Record::Command {
            release: vec!["drop".into()],
            job: "app".into(),
            source: "db".into(),
            path: "/srv".into(),
            snapshot_path: "/mnt/snap".into(),
        };
        write(&path_of(dir.path(), "app", "files"), &btrfs).expect("write");
        write(&path_of(dir.path(), "app", "db"), &command).expect("write");
        write(&path_of(dir.path(), "app-2", "files"), &btrfs).expect("write");
        let found: Vec<Record> = of_job(dir.path(), "app")
            .into_iter()
            .map(|(_, r)| r.expect("readable"))
            .collect();
        assert_eq!(found, vec![command, btrfs.clone()]);
        remove(&path_of(dir.path(), "app", "files")).expect("remove");
        remove(&path_of(dir.path(), "app", "files")).expect("a second remove is fine");
        assert_eq!(of_job(dir.path(), "app").len(), 1);
        assert_eq!(of_job(dir.path(), "app-2").len(), 1);
    }
}

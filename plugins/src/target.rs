//! Targets: where snapshots are stored, as `object_store` stores so that local
//! directories and S3 look the same to the rest of coffer. Each target also says
//! how its uploads are cut into parts, and how to explain its failures.
//! A local target also knows its directory, because object_store's view of it
//! hides what a killed run leaves there (staging files, empty folders).

use crate::parts::PartPlan;
use coffer_config::{S3Target, TargetKind};
use object_store::local::LocalFileSystem;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub store: Arc<dyn ObjectStore>,
    /// For messages: `local /mnt/backups`, `s3 bucket b prefix p at https://...`.
    pub description: String,
    /// How uploads to this target are cut into parts.
    pub parts: PartPlan,
    s3: Option<S3Target>,
    /// A local target's directory: object stores have no directories, a file
    /// system does, and an aborted upload leaves its snapshot folder behind empty.
    local_root: Option<std::path::PathBuf>,
    /// S3: the same store seen through its multipart API, whose uploads have ids
    /// that can be written down and aborted after a kill (`upload_journal`).
    multipart: Option<Arc<dyn crate::upload_journal::Multipart>>,
    /// S3: where this target's unfinished uploads are written down
    /// (`<state_dir>/uploads/<target>`), once `with_upload_journal` set it.
    journal: Option<std::path::PathBuf>,
    /// `limit_upload`: the bucket uploads through `multipart` pay from.
    throttle: Option<Arc<crate::throttle::Bucket>>,
    /// `prune = "here"` (the default): this host may delete on the target. With
    /// `"elsewhere"` its store refuses every delete (`no_delete`).
    pub prunes_here: bool,
}

/// What a failing request was doing, so that "not found" can be told apart: a
/// missing bucket when writing or listing, a missing object when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write,
    List,
    Read,
}

/// A failed request in words for the operator, and whether another run could help.
#[derive(Debug, Clone)]
pub struct Explained {
    /// `target NAME (description): ` followed by `detail`.
    pub message: String,
    /// What happened and what to check, without the target's name.
    pub detail: String,
    pub retryable: bool,
}

impl Target {
    /// A target over a store built in code (object_store's `InMemory` in tests):
    /// no directory on disk, and errors explained as a plain store's.
    pub fn from_store(
        name: &str,
        store: Arc<dyn ObjectStore>,
        description: &str,
        parts: PartPlan,
    ) -> Target {
        Target {
            name: name.to_string(),
            store,
            description: description.to_string(),
            parts,
            s3: None,
            local_root: None,
            multipart: None,
            journal: None,
            throttle: None,
            prunes_here: true,
        }
    }

    /// Writes this target's multipart uploads down in `state_dir` before they
    /// start (S3 only; a local target's staging files are found on its disk), so
    /// that what a killed run left can be aborted later: `abort_recorded_uploads`.
    pub fn with_upload_journal(mut self, state_dir: &std::path::Path) -> Target {
        let plain = !self.name.is_empty()
            && self.name != "."
            && self.name != ".."
            && !self.name.contains(['/', '\0']);
        if self.multipart.is_some() && plain {
            self.journal = Some(state_dir.join("uploads").join(&self.name));
        }
        self
    }

    /// Starts a multipart upload of `path`. On S3 with a journal, through the
    /// multipart API, its id written down first (`upload_journal`); otherwise
    /// object_store's own upload.
    pub async fn start_upload(
        &self,
        path: &object_store::path::Path,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let (Some(store), Some(journal), Some(s3)) = (&self.multipart, &self.journal, &self.s3)
        else {
            return self.store.put_multipart(path).await;
        };
        let up = crate::upload_journal::start(store.clone(), journal, &s3.bucket, path).await?;
        Ok(match &self.throttle {
            Some(bucket) => crate::throttle::throttled(up, bucket.clone()),
            None => up,
        })
    }

    /// Aborts the uploads of `job` that a killed run of this host left unfinished
    /// on this S3 target, as written down by `start_upload`. Call only with the
    /// job's lock held. Nothing to do on a local target.
    pub async fn abort_recorded_uploads(&self, job: &str) -> crate::upload_journal::Aborted {
        match (&self.multipart, &self.journal, &self.s3) {
            (Some(store), Some(journal), Some(s3)) => {
                crate::upload_journal::abort_recorded(store.as_ref(), journal, &s3.bucket, job)
                    .await
            }
            _ => crate::upload_journal::Aborted::default(),
        }
    }

    /// A stand-in for a target that could not be opened (its directory is missing),
    /// so that a run can report it beside the others and go on with them. It holds
    /// nothing, and the run must never give it anything to write.
    pub fn unopened(t: &coffer_config::Target) -> Target {
        Target::from_store(
            &t.name,
            Arc::new(object_store::memory::InMemory::new()),
            &t.kind.to_string(),
            LOCAL_PARTS,
        )
    }

    /// Removes the folder of `dir` on a local target once it holds nothing (no-op on
    /// object stores, where a folder is only a prefix). Best effort.
    pub fn remove_empty_folder(&self, dir: &object_store::path::Path) {
        if let Some(root) = &self.local_root {
            let _ = std::fs::remove_dir(root.join(dir.as_ref()));
        }
    }

    /// Removes what object_store cannot see in the folder `dir` of a local target:
    /// the staging files `<object>#<n>` of multipart uploads that never completed
    /// (a run killed with -9 leaves them; object_store hides them from listings).
    /// Returns what it removed; nothing on object stores, where an incomplete
    /// multipart upload is no object (a lifecycle rule removes it).
    pub fn remove_leftovers(
        &self,
        dir: &object_store::path::Path,
    ) -> std::io::Result<Vec<std::path::PathBuf>> {
        let Some(root) = &self.local_root else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        // Through handles: a folder swapped for a symlink is not entered.
        for l in crate::leftovers::list(root, dir.as_ref())? {
            crate::leftovers::remove(root, dir.as_ref(), &l.name)?;
            removed.push(root.join(dir.as_ref()).join(&l.name));
        }
        Ok(removed)
    }

    /// The staging files of uploads that never completed in the folder `dir` of a
    /// local target (`leftovers`); none on object stores, where an unfinished
    /// multipart upload is no object and object_store cannot list it.
    pub fn leftovers(
        &self,
        dir: &object_store::path::Path,
    ) -> std::io::Result<Vec<crate::leftovers::Leftover>> {
        match &self.local_root {
            Some(root) => crate::leftovers::list(root, dir.as_ref()),
            None => Ok(Vec::new()),
        }
    }

    /// Removes one staging file `leftovers` listed in `dir`.
    pub fn remove_leftover(
        &self,
        dir: &object_store::path::Path,
        name: &str,
    ) -> std::io::Result<()> {
        match &self.local_root {
            Some(root) => crate::leftovers::remove(root, dir.as_ref(), name),
            None => Ok(()),
        }
    }

    /// Fails when a folder of `dir` on a local target is a symlink (or anything but
    /// a folder): deleting what a listing shows there would delete where it points.
    /// Always fine on object stores, where a folder is only a prefix.
    pub fn refuse_linked_folder(&self, dir: &object_store::path::Path) -> std::io::Result<()> {
        match &self.local_root {
            Some(root) => crate::leftovers::refuse_links(root, dir.as_ref()),
            None => Ok(()),
        }
    }

    /// Whether the folder `dir` is gone from a local target's disk (always true on
    /// object stores, where a folder is only a prefix), so that prune reports only
    /// what it really removed.
    pub fn folder_gone(&self, dir: &object_store::path::Path) -> bool {
        self.local_root
            .as_ref()
            .is_none_or(|root| !root.join(dir.as_ref()).exists())
    }

    /// Names the target and says what to check.
    pub fn explain(&self, during: Op, err: &object_store::Error) -> Explained {
        let (detail, retryable) = match &self.s3 {
            Some(s3) => crate::s3::explain(s3, during, err),
            None => (
                err.to_string(),
                !matches!(err, object_store::Error::NotFound { .. }),
            ),
        };
        Explained {
            message: format!("{}: {detail}", self.label()),
            detail,
            retryable,
        }
    }

    /// `target NAME (description)`, the way every message names a target.
    pub fn label(&self) -> String {
        format!("target {} ({})", self.name, self.description)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target {name} ({description}): {message}")]
    Open {
        name: String,
        description: String,
        message: String,
        retryable: bool,
    },
    /// A local target's directory is not there (and may not be created now): a
    /// problem of the setup, not of the work (exit code 2), that usually goes away
    /// once the disk is mounted.
    #[error("target {name} ({description}): {message}")]
    MissingRoot {
        name: String,
        description: String,
        message: String,
    },
}

impl TargetError {
    pub fn retryable(&self) -> bool {
        match self {
            TargetError::Open { retryable, .. } => *retryable,
            TargetError::MissingRoot { .. } => true,
        }
    }

    pub fn is_missing_root(&self) -> bool {
        matches!(self, TargetError::MissingRoot { .. })
    }
}

/// Local files are written in 2 MiB parts with no limit on their number: the parts
/// land in one staging file, so their size only sets the memory used.
const LOCAL_PARTS: PartPlan = PartPlan {
    part_size: 2 << 20,
    max_parts: u32::MAX,
    parts_in_flight: 2,
};

/// What a command will do with a target. Only a backup may create a local
/// target's directory (with `create = true`): a command that reads must never
/// leave a directory behind, least of all on the filesystem below an unmounted
/// disk, and a missing root tells it nothing but "not mounted" or "wrong path".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

pub fn open_target(t: &coffer_config::Target, access: Access) -> Result<Target, TargetError> {
    let mut target = open_unlimited(t, access)?;
    if let Some(rate) = t.limit_upload {
        let bucket = crate::throttle::bucket_for(&t.name, rate);
        target.store = Arc::new(crate::throttle::Throttled::new(
            target.store,
            bucket.clone(),
        ));
        target.throttle = Some(bucket);
    }
    if t.prune == coffer_config::Prune::Elsewhere {
        target.store = Arc::new(crate::no_delete::NoDelete::new(target.store, &t.name));
        target.prunes_here = false;
    }
    Ok(target)
}

fn open_unlimited(t: &coffer_config::Target, access: Access) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let fail = |message: String, retryable: bool| TargetError::Open {
        name: t.name.clone(),
        description: description.clone(),
        message,
        retryable,
    };
    match &t.kind {
        TargetKind::Local { path, create } => {
            local_root(path, *create, access).map_err(|problem| match problem {
                Root::Missing(message) => TargetError::MissingRoot {
                    name: t.name.clone(),
                    description: description.clone(),
                    message,
                },
                Root::Unusable(message, retryable) => fail(message, retryable),
            })?;
            // object_store's local store creates every folder it writes into: from
            // here on the root is known to be there (or made on purpose).
            let store = LocalFileSystem::new_with_prefix(path)
                .map_err(|e| fail(e.to_string(), false))?
                // A snapshot marker must never point at bytes still in the page cache.
                .with_fsync(true)
                .with_automatic_cleanup(true);
            Ok(Target {
                name: t.name.clone(),
                store: Arc::new(store),
                description,
                parts: LOCAL_PARTS,
                s3: None,
                local_root: Some(path.clone()),
                multipart: None,
                journal: None,
                throttle: None,
                prunes_here: true,
            })
        }
        TargetKind::S3(s3) => {
            let (store, multipart) = crate::s3::open(s3).map_err(|m| fail(m, false))?;
            Ok(Target {
                name: t.name.clone(),
                store,
                description,
                parts: PartPlan {
                    part_size: s3.upload.part_size,
                    max_parts: s3.upload.max_parts,
                    parts_in_flight: s3.upload.parts_in_flight as usize,
                },
                s3: Some(s3.clone()),
                local_root: None,
                multipart: Some(multipart),
                journal: None,
                throttle: None,
                prunes_here: true,
            })
        }
    }
}

/// Why a local target's root cannot be used.
enum Root {
    Missing(String),
    /// The message, and whether a later run could get past it.
    Unusable(String, bool),
}

/// Checks that a local target's root is a directory, creating it only for a
/// backup of a target with `create = true`. A missing root is retryable (see
/// `TargetError::retryable`): its usual cause is a disk or network mount that is
/// not up yet (at boot, an automount, a disk plugged in later), and one more run
/// some minutes later costs only the job's hooks, as nothing has been read when
/// targets are opened.
fn local_root(path: &std::path::Path, create: bool, access: Access) -> Result<(), Root> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Root::Unusable(
            format!(
                "{} is not a directory; set path to the directory the backups go to",
                path.display()
            ),
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match (access, create) {
            (Access::Write, true) => std::fs::create_dir_all(path).map_err(|e| {
                Root::Unusable(
                    format!(
                        "cannot create {}: {e}; check that coffer's user may create it",
                        path.display()
                    ),
                    false,
                )
            }),
            (Access::Read, true) => Err(Root::Missing(format!(
                "{} does not exist; is the backup disk mounted? if no backup was made yet, \
                 the first `coffer backup` creates it (create = true)",
                path.display()
            ))),
            (_, false) => Err(Root::Missing(format!(
                "{} does not exist; is the backup disk mounted? create it, or set create = true",
                path.display()
            ))),
        },
        Err(e) => Err(Root::Unusable(
            format!(
                "cannot use {}: {e}; check that it is mounted and coffer's user may read it",
                path.display()
            ),
            true,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_told_from_objects() {
        for (name, staging) in [
            ("data.tar.zst.age#1", true),
            ("manifest.json.zst.age#42", true),
            ("data.tar.zst.age", false),
            ("snapshot.json", false),
            ("odd#name", false),
            ("#1", false),
            ("x#", false),
            ("x#01", false),
            ("a#b#1", false),
        ] {
            assert_eq!(
                crate::leftovers::staging_object(name).is_some(),
                staging,
                "{name}"
            );
        }
    }

    #[test]
    fn only_a_backup_with_create_makes_a_missing_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("disk").join("coffer");
        for (access, create) in [
            (Access::Read, false),
            (Access::Read, true),
            (Access::Write, false),
        ] {
            match local_root(&root, create, access) {
                Err(Root::Missing(m)) => assert!(
                    m.contains(&root.display().to_string()) && m.contains("mounted"),
                    "{m}"
                ),
                Err(Root::Unusable(m, _)) => panic!("{access:?} {create}: {m}"),
                Ok(()) => panic!("{access:?} {create}: accepted a missing root"),
            }
            assert!(
                !root.exists(),
                "{access:?} {create} created {}",
                root.display()
            );
            assert!(!tmp.path().join("disk").exists());
        }
        assert!(local_root(&root, true, Access::Write).is_ok());
        assert!(root.is_dir());
        // Once it is there, reading needs no permission to create.
        assert!(local_root(&root, false, Access::Read).is_ok());
    }
}

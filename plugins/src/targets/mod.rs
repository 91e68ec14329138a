//! Targets: where snapshots are stored, as `object_store` stores so that local
//! directories and S3 look the same to the rest of coffer. Each target also says
//! how its uploads are cut into parts, and how to explain its failures.
//! A local target also knows its directory, because object_store's view of it
//! hides what a killed run leaves there (staging files, empty folders).
//!
//! One module per target type (`local`, `s3`, `azure`, `gcs`, `webdav`), `registry`
//! that maps a config target to its module, what the remote ones share (`remote`)
//! and what all share (`parts`, `throttle`).

mod azure;
mod gcs;
pub mod leftovers;
mod local;
pub mod no_delete;
pub mod parts;
pub mod registry;
mod remote;
mod s3;
mod sftp;
pub mod throttle;
mod webdav;

pub use registry::open_target;
pub use s3::lock::{LockError, ObjectLock};
pub use s3::upload_journal;

use crate::targets::parts::PartPlan;
use coffer_config::S3Target;
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
    /// S3: the same store seen through its multipart API, whose uploads have ids
    /// that can be written down and aborted after a kill (`upload_journal`).
    multipart: Option<Arc<dyn crate::targets::s3::upload_journal::Multipart>>,
    /// S3: where this target's unfinished uploads are written down
    /// (`<state_dir>/uploads/<target>`), once `with_upload_journal` set it.
    journal: Option<std::path::PathBuf>,
    /// `limit_upload`: the bucket uploads through `multipart` pay from.
    throttle: Option<Arc<crate::targets::throttle::Bucket>>,
    /// `prune = "here"` (the default): this host may delete on the target. With
    /// `"elsewhere"` its store refuses every delete (`no_delete`).
    pub prunes_here: bool,
    /// Azure, GCS, WebDAV: how their failures are put (`remote`).
    explainer: Option<Arc<dyn crate::targets::remote::Explain>>,
    /// WebDAV: uploads are spooled and sent whole, since WebDAV has no multipart
    /// uploads (`webdav::upload`).
    whole_uploads: Option<Arc<crate::targets::webdav::upload::WholeUploads>>,
    /// Local, SFTP, WebDAV: the staging objects of killed writes, which their
    /// stores' listings hide, and the folders of the first two (`leftovers`).
    staging: Option<Arc<dyn crate::targets::leftovers::Staging>>,
    /// S3 with `object_lock`: how what a snapshot references is held (`s3::lock`).
    lock: Option<Arc<ObjectLock>>,
}

/// What a failing request was doing, so that "not found" can be told apart (a
/// missing bucket when writing or listing, a missing object when reading), and
/// a refused delete from other refusals (credentials that may not delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write,
    List,
    Read,
    Delete,
}

/// Why credentials that may not delete get that answer, and what to do: the
/// setting for a backup host whose deletes another host makes.
pub(crate) const DELETE_DENIED: &str = "they may not delete there; if another host prunes this \
     target, set prune = \"elsewhere\" on it here so this host never tries";

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
            multipart: None,
            journal: None,
            throttle: None,
            prunes_here: true,
            explainer: None,
            whole_uploads: None,
            staging: None,
            lock: None,
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
        if let Some(whole) = &self.whole_uploads {
            let up = whole.start(path)?;
            return Ok(match &self.throttle {
                Some(bucket) => crate::targets::throttle::throttled(up, bucket.clone()),
                None => up,
            });
        }
        let (Some(store), Some(journal), Some(s3)) = (&self.multipart, &self.journal, &self.s3)
        else {
            return self.store.put_multipart(path).await;
        };
        let up =
            crate::targets::s3::upload_journal::start(store.clone(), journal, &s3.bucket, path)
                .await?;
        Ok(match &self.throttle {
            Some(bucket) => crate::targets::throttle::throttled(up, bucket.clone()),
            None => up,
        })
    }

    /// Aborts the uploads of `job` that a killed run of this host left unfinished
    /// on this S3 target, as written down by `start_upload`. Call only with the
    /// job's lock held. Nothing to do on a local target.
    pub async fn abort_recorded_uploads(
        &self,
        job: &str,
    ) -> crate::targets::s3::upload_journal::Aborted {
        match (&self.multipart, &self.journal, &self.s3) {
            (Some(store), Some(journal), Some(s3)) => {
                crate::targets::s3::upload_journal::abort_recorded(
                    store.as_ref(),
                    journal,
                    &s3.bucket,
                    job,
                )
                .await
            }
            _ => crate::targets::s3::upload_journal::Aborted::default(),
        }
    }

    /// S3 Object Lock, when the target has `object_lock`: a snapshot's objects are
    /// held until its end plus the lock's days, and nothing held is deleted.
    pub fn object_lock(&self) -> Option<&ObjectLock> {
        self.lock.as_deref()
    }

    /// A stand-in for a target that could not be opened (its directory is missing),
    /// so that a run can report it beside the others and go on with them. It holds
    /// nothing, and the run must never give it anything to write.
    pub fn unopened(t: &coffer_config::Target) -> Target {
        Target::from_store(
            &t.name,
            Arc::new(object_store::memory::InMemory::new()),
            &t.kind.to_string(),
            local::PARTS,
        )
    }

    /// Removes the folder of `dir` once it holds nothing, where folders are real
    /// (local, SFTP; no-op on object stores, where a folder is only a prefix).
    /// Best effort.
    pub fn remove_empty_folder(&self, dir: &object_store::path::Path) {
        if let Some(s) = &self.staging {
            s.remove_empty_folder(dir);
        }
    }

    /// Removes what the store's listings do not show in the folder `dir`: the
    /// staging objects `<object>#<n>` of writes a kill cut short. Returns what it
    /// removed; nothing on object stores, where an incomplete multipart upload is
    /// no object (a lifecycle rule removes it).
    pub fn remove_leftovers(
        &self,
        dir: &object_store::path::Path,
    ) -> std::io::Result<Vec<std::path::PathBuf>> {
        let Some(s) = &self.staging else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for l in s.leftovers(dir)? {
            s.remove_leftover(dir, &l.name)?;
            removed.push(std::path::Path::new(dir.as_ref()).join(&l.name));
        }
        Ok(removed)
    }

    /// The staging objects of writes that never completed in the folder `dir`
    /// (`leftovers`); none on object stores, where an unfinished multipart upload
    /// is no object and object_store cannot list it.
    pub fn leftovers(
        &self,
        dir: &object_store::path::Path,
    ) -> std::io::Result<Vec<crate::targets::leftovers::Leftover>> {
        match &self.staging {
            Some(s) => s.leftovers(dir),
            None => Ok(Vec::new()),
        }
    }

    /// Removes one staging object `leftovers` listed in `dir`.
    pub fn remove_leftover(
        &self,
        dir: &object_store::path::Path,
        name: &str,
    ) -> std::io::Result<()> {
        match &self.staging {
            Some(s) => s.remove_leftover(dir, name),
            None => Ok(()),
        }
    }

    /// Fails when a folder of `dir` is a symlink (or anything but a folder), where
    /// folders are real: deleting what a listing shows there would delete where it
    /// points. Always fine on object stores, where a folder is only a prefix.
    pub fn refuse_linked_folder(&self, dir: &object_store::path::Path) -> std::io::Result<()> {
        match &self.staging {
            Some(s) => s.refuse_links(dir),
            None => Ok(()),
        }
    }

    /// Whether the folder `dir` is gone (always true on object stores, where a
    /// folder is only a prefix), so that prune reports only what it really
    /// removed.
    pub fn folder_gone(&self, dir: &object_store::path::Path) -> bool {
        self.staging.as_ref().is_none_or(|s| s.folder_gone(dir))
    }

    /// Names the target and says what to check.
    pub fn explain(&self, during: Op, err: &object_store::Error) -> Explained {
        let (detail, retryable) = match (&self.s3, &self.explainer) {
            (Some(s3), _) => crate::targets::s3::explain(s3, during, err),
            (None, Some(e)) => e.explain(during, err),
            (None, None) => (
                err.to_string(),
                crate::targets::sftp::retryable(err)
                    .unwrap_or(!matches!(err, object_store::Error::NotFound { .. })),
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
    /// The target is not who it should be, or refuses who coffer is (an SFTP
    /// server's host key that does not match the pinned one, a login refused): a
    /// problem of the setup (exit 2, like a missing root) that no retry fixes.
    #[error("target {name} ({description}): {message}")]
    Setup {
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
            TargetError::Setup { .. } => false,
        }
    }

    /// A problem of the setup rather than of the work (exit 2): a missing root,
    /// or a target that refuses or is refused (`Setup`).
    pub fn is_missing_root(&self) -> bool {
        matches!(
            self,
            TargetError::MissingRoot { .. } | TargetError::Setup { .. }
        )
    }
}

/// What a command will do with a target. Only a backup may create a local
/// target's directory (with `create = true`): a command that reads must never
/// leave a directory behind, least of all on the filesystem below an unmounted
/// disk, and a missing root tells it nothing but "not mounted" or "wrong path".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[cfg(test)]
mod tests {
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
                crate::targets::leftovers::staging_object(name).is_some(),
                staging,
                "{name}"
            );
        }
    }
}

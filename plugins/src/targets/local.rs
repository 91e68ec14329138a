//! The local target: a directory, through object_store's local store, checked
//! (and with `create = true`, made by a backup) before it is used; the directory
//! is kept too, because object_store's view of it hides what a killed run leaves
//! there (see `Target::remove_leftovers`).

use super::registry::Shown;
use super::{Access, Target, TargetError};
use crate::targets::parts::PartPlan;
use object_store::local::LocalFileSystem;
use std::path::Path;
use std::sync::Arc;

/// Local files are written in 2 MiB parts with no limit on their number: the parts
/// land in one staging file, so their size only sets the memory used.
pub(super) const PARTS: PartPlan = PartPlan {
    part_size: 2 << 20,
    max_parts: u32::MAX,
    parts_in_flight: 2,
};

/// Opens the local target `t`, whose directory is `path`.
pub(super) fn open(
    t: &coffer_config::Target,
    path: &Path,
    create: bool,
    access: Access,
) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let fail = |message: String, retryable: bool| TargetError::Open {
        name: t.name.clone(),
        description: description.clone(),
        message,
        retryable,
    };
    local_root(path, create, access).map_err(|problem| match problem {
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
        parts: PARTS,
        s3: None,
        multipart: None,
        journal: None,
        throttle: None,
        prunes_here: true,
        explainer: None,
        whole_uploads: None,
        staging: Some(Arc::new(crate::targets::leftovers::LocalFolders {
            root: path.to_path_buf(),
        })),
        lock: None,
    })
}

/// What `config check` shows of a local target: it opens it to warn about a
/// missing directory (the disk may be mounted later: a warning, not an error).
pub(super) fn shown(create: bool) -> Shown {
    Shown {
        lines: create
            .then(|| "create = true: a backup creates the directory when it is missing".to_string())
            .into_iter()
            .collect(),
        open_to_check: true,
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
fn local_root(path: &Path, create: bool, access: Access) -> Result<(), Root> {
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

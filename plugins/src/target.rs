//! Targets: where snapshots are stored, as `object_store` stores so that local
//! directories and S3 look the same to the rest of coffer. Each target also says
//! how its uploads are cut into parts, and how to explain its failures.

use crate::parts::PartPlan;
use coffer_config::{S3Target, TargetKind};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
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
    /// Removes the folder of `dir` on a local target once it holds nothing (no-op on
    /// object stores, where a folder is only a prefix). Best effort.
    pub fn remove_empty_folder(&self, dir: &object_store::path::Path) {
        if let Some(root) = &self.local_root {
            let _ = std::fs::remove_dir(root.join(dir.as_ref()));
        }
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
}

impl TargetError {
    pub fn retryable(&self) -> bool {
        match self {
            TargetError::Open { retryable, .. } => *retryable,
        }
    }
}

/// Local files are written in 2 MiB parts with no limit on their number: the parts
/// land in one staging file, so their size only sets the memory used.
const LOCAL_PARTS: PartPlan = PartPlan {
    part_size: 2 << 20,
    max_parts: u32::MAX,
    parts_in_flight: 2,
};

pub fn open_target(t: &coffer_config::Target) -> Result<Target, TargetError> {
    let description = t.kind.to_string();
    let fail = |message: String, retryable: bool| TargetError::Open {
        name: t.name.clone(),
        description: description.clone(),
        message,
        retryable,
    };
    match &t.kind {
        TargetKind::Local { path } => {
            std::fs::create_dir_all(path)
                .map_err(|e| fail(format!("cannot create {}: {e}", path.display()), false))?;
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
            })
        }
        TargetKind::S3(s3) => {
            let store = crate::s3::open(s3).map_err(|m| fail(m, false))?;
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
            })
        }
    }
}

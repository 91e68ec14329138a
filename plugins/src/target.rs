//! Targets: where snapshots are stored, as `object_store` stores so that local
//! directories and S3 look the same to the rest of coffer.

use coffer_config::TargetKind;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub store: Arc<dyn ObjectStore>,
    /// For messages: `local /mnt/backups`.
    pub description: String,
    /// Multipart part size for uploads to this target.
    pub part_size: usize,
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
                part_size: 2 << 20,
            })
        }
    }
}

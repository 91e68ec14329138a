//! The one place that maps a config target's type to its module, and what every
//! target gets whatever its type (`limit_upload`). Adding a target type means a
//! module beside `local`, `s3`, `azure`, `gcs` and `webdav` and an arm in each match here
//! (docs/development.md); `tests/one_place.rs` fails when a type is named elsewhere.

use super::{Access, Target, TargetError};
use coffer_config::TargetKind;
use std::sync::Arc;

/// Opens a configured target for what a command will do with it (`Access`).
pub fn open_target(t: &coffer_config::Target, access: Access) -> Result<Target, TargetError> {
    let mut target = match &t.kind {
        TargetKind::Local { path, create } => super::local::open(t, path, *create, access)?,
        TargetKind::S3(s3) => super::s3::open_target(t, s3)?,
        TargetKind::Azure(a) => super::azure::open_target(t, a)?,
        TargetKind::Gcs(g) => super::gcs::open_target(t, g)?,
        TargetKind::Webdav(w) => super::webdav::open_target(t, w)?,
        TargetKind::Sftp(sftp) => super::sftp::open_target(t, sftp, access)?,
    };
    if let Some(rate) = t.limit_upload {
        let bucket = crate::targets::throttle::bucket_for(&t.name, rate);
        target.store = Arc::new(crate::targets::throttle::Throttled::new(
            target.store,
            bucket.clone(),
        ));
        target.throttle = Some(bucket);
    }
    if t.prune == coffer_config::Prune::Elsewhere {
        target.store = Arc::new(super::no_delete::NoDelete::new(target.store, &t.name));
        target.prunes_here = false;
    }
    Ok(target)
}

/// What `coffer config check` shows of a target below its one-line description.
#[derive(Debug, Default)]
pub struct Shown {
    /// Settings that follow from the type, one line each (sizes through the
    /// caller's `bytes`).
    pub lines: Vec<String>,
    /// Whether the check should open the target to read (a local directory that
    /// is missing is a warning there; opening an S3 target asks nothing of it).
    pub open_to_check: bool,
}

/// `coffer config check`'s lines for the target `t`.
pub fn shown(t: &coffer_config::Target, bytes: &dyn Fn(u64) -> String) -> Shown {
    match &t.kind {
        TargetKind::Local { create, .. } => super::local::shown(*create),
        TargetKind::S3(s3) => super::s3::shown(s3, bytes),
        TargetKind::Azure(a) => super::azure::shown(a, bytes),
        TargetKind::Gcs(g) => super::gcs::shown(g, bytes),
        TargetKind::Webdav(w) => super::webdav::shown(w, bytes),
        TargetKind::Sftp(sftp) => super::sftp::shown(sftp),
    }
}

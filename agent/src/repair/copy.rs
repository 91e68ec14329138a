//! Copying one stored object from a target that holds a good copy to one whose
//! copy is damaged or missing. The source is hostile input like any target: its
//! bytes are checked against the signed marker's size and BLAKE3 while they are
//! copied into an unnamed private file in state_dir/tmp (never all in memory),
//! and only a copy that matched is written, through the same multipart upload a
//! backup uses (a local target writes a staging name and renames it at the end,
//! S3 completes the upload only at the end), so the damaged target never holds a
//! half-written object under the real name.

use crate::format::ObjectRecord;
use crate::pipeline::read::{ObjectReader, is_mismatch};
use crate::pipeline::upload::{Part, upload};
use bytes::Bytes;
use coffer_plugins::Target;
use object_store::path::Path as ObjPath;
use std::io::Read;
use std::path::Path;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Why a copy did not happen.
#[derive(Debug)]
pub(super) enum CopyError {
    /// The source's copy is missing or not the marker's: try another source.
    SourceBad(String),
    /// The source could not be read to its end: it proves nothing either way.
    SourceUnreadable(String),
    /// The good copy could not be written to the target (or staged locally).
    Write(String),
}

/// Copies `path` from `from` to `to`, checked against `record` on the way.
pub(super) fn copy_verified(
    rt: &Handle,
    from: &Target,
    to: &Target,
    path: &ObjPath,
    record: &ObjectRecord,
    tmp_dir: &Path,
) -> Result<(), CopyError> {
    let source_err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound || is_mismatch(&e) {
            CopyError::SourceBad(e.to_string())
        } else {
            CopyError::SourceUnreadable(e.to_string())
        }
    };
    let staged = ObjectReader::open(rt, from, path, Some(record))
        .and_then(|r| r.staged(tmp_dir))
        .map_err(source_err)?;
    // A local target's folder that is a symlink would take the write elsewhere.
    if let Some(dir) = parent(path) {
        to.refuse_linked_folder(&dir).map_err(|e| {
            CopyError::Write(format!(
                "target {}: {dir} is not a plain folder ({e}); not writing through it",
                to.name
            ))
        })?;
    }
    write_object(rt, to, path, staged).map_err(|e| match e {
        WriteFailed::Read(e) => {
            CopyError::Write(format!("cannot read the staged copy of {path} back: {e}"))
        }
        WriteFailed::Upload(why) => CopyError::Write(why),
    })
}

/// Why `write_object` wrote nothing under the real name.
#[derive(Debug)]
pub(crate) enum WriteFailed {
    /// Reading the body failed (for a body checked as it is read: a mismatch).
    Read(std::io::Error),
    /// The target refused or the upload stopped; the message names the target.
    Upload(String),
}

pub(crate) fn parent(path: &ObjPath) -> Option<ObjPath> {
    let parts: Vec<_> = path.parts().collect();
    (parts.len() > 1).then(|| ObjPath::from_iter(parts[..parts.len() - 1].iter().cloned()))
}

/// Streams `body` to `path` on `target` with the backup's uploader: 1 MiB reads,
/// a short queue, so memory stays at the target's parts in flight. The upload is
/// completed only once `body` reached its end without error: a body that fails
/// (a copy whose hash does not match, found at its end) leaves nothing under
/// the real name.
pub(crate) fn write_object(
    rt: &Handle,
    target: &Target,
    path: &ObjPath,
    mut body: impl Read,
) -> Result<(), WriteFailed> {
    let (tx, rx) = mpsc::channel(4);
    let task = rt.spawn(upload(target.clone(), path.clone(), rx));
    let mut buf = vec![0u8; 1 << 20];
    let mut read_failed = None;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                read_failed = Some(e);
                break;
            }
        };
        let chunk = Bytes::copy_from_slice(&buf[..n]);
        if rt.block_on(tx.send(Part::Data(chunk))).is_err() {
            // The upload ended early; its own error says why.
            break;
        }
    }
    if read_failed.is_none() {
        let _ = rt.block_on(tx.send(Part::Done));
    }
    // Without `Done` the uploader aborts: nothing is left under the real name.
    drop(tx);
    let uploaded = rt.block_on(task);
    if let Some(e) = read_failed {
        return Err(WriteFailed::Read(e));
    }
    match uploaded {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(WriteFailed::Upload(e.message)),
        Err(e) => Err(WriteFailed::Upload(format!(
            "target {}: the upload of {path} stopped: {e}",
            target.name
        ))),
    }
}

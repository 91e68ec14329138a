//! Writing objects over SFTP the way object_store's local store writes files: into
//! a staging file `<object>#<n>` in the object's folder (folders made as needed),
//! flushed to disk where the server can (`fsync@openssh.com`), then renamed over
//! the object, so nobody ever reads half an object. A multipart upload streams
//! its parts into one staging file at their offsets; abort, or dropping the
//! upload, removes it. A run killed with -9 leaves the staging file, which
//! listings hide and prune removes (`Remote::leftovers`).

use super::connection::{Live, OpError, Remote, status};
use super::{Failure, io, paths};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes per SFTP write or read request: what every server takes in one packet.
pub(super) const CHUNK: usize = 64 << 10;
/// Requests of one transfer in flight at once, so a long link stays busy.
pub(super) const IN_FLIGHT: usize = 16;

/// A staging name for `name` that no other write uses: `<name>#<n>`, `n` decimal
/// from 1 with at most ten digits (what `leftovers::staging_object` recognises).
fn staging_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 24)
        ^ NEXT
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9);
    format!("{name}#{}", mixed % 4_000_000_000 + 1)
}

/// The object `location` and its staging file, as remote paths.
pub(super) struct Names {
    pub object: String,
    pub staging: String,
}

/// Names for writing `location` below `root`, or `None` when it is no plain name.
pub(super) fn names(root: &str, location: &ObjPath) -> Option<Names> {
    let file = location.filename()?;
    let object = paths::remote(root, location)?;
    // The staging name extends the file's name, in the same folder.
    let staging = format!("{object}{}", &staging_name(file)[file.len()..]);
    Some(Names { object, staging })
}

/// Opens (creates, truncates) the staging file for writing, making the folders
/// of `location` below `root` when they are missing. Returns its handle.
pub(super) async fn open_staging(
    live: &Live,
    root: &str,
    location: &ObjPath,
    staging: &str,
) -> Result<String, SftpError> {
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    // Twice: a prune on another host may remove an empty folder between the
    // mkdir and the open.
    for _ in 0..2 {
        match live
            .sftp
            .open(staging, flags, FileAttributes::empty())
            .await
        {
            Ok(h) => return Ok(h.handle),
            Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => {
                for dir in paths::root_folders(root)
                    .into_iter()
                    .chain(paths::parents(root, location))
                {
                    // Already there is fine; anything else shows at the open.
                    let _ = live.sftp.mkdir(dir.as_str(), FileAttributes::empty()).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(live
        .sftp
        .open(staging, flags, FileAttributes::empty())
        .await?
        .handle)
}

/// Writes `data` at `offset` of the open file `handle`, `IN_FLIGHT` requests at once.
pub(super) async fn write_at(
    live: &Live,
    handle: &str,
    offset: u64,
    data: Bytes,
) -> Result<(), SftpError> {
    let pieces = (0..data.len()).step_by(CHUNK).map(|start| {
        let end = (start + CHUNK).min(data.len());
        (offset + start as u64, data.slice(start..end))
    });
    futures::stream::iter(pieces)
        .map(|(at, piece)| async move { live.sftp.write(handle, at, piece.to_vec()).await })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Flushes and closes `handle`, then renames the staging file over the object.
pub(super) async fn finish(live: &Live, handle: String, names: &Names) -> Result<(), SftpError> {
    let flushed = if live.fsync {
        live.sftp.fsync(handle.as_str()).await.map(|_| ())
    } else {
        Ok(())
    };
    let closed = live.sftp.close(handle).await.map(|_| ());
    flushed.and(closed)?;
    rename_over(live, &names.staging, &names.object).await
}

/// Renames `from` to `to`, replacing `to`: atomically with OpenSSH's
/// `posix-rename@openssh.com`; elsewhere SFTP's rename refuses an existing
/// target, so it is removed first (a reader may then briefly find no object).
async fn rename_over(live: &Live, from: &str, to: &str) -> Result<(), SftpError> {
    if live.posix_rename {
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        for s in [from, to] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        return match live.sftp.extended("posix-rename@openssh.com", data).await? {
            Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(s) => Err(SftpError::Status(s)),
            _ => Err(SftpError::UnexpectedPacket),
        };
    }
    match live.sftp.remove(to).await {
        Ok(_) => {}
        Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => {}
        Err(e) => return Err(e),
    }
    live.sftp.rename(from, to).await.map(|_| ())
}

/// Closes `handle` and removes the staging file, ignoring what fails (it is
/// already on a failure path, or a drop).
async fn discard(live: &Live, handle: String, staging: &str) {
    let _ = live.sftp.close(handle).await;
    let _ = live.sftp.remove(staging).await;
}

/// Writes the whole object `location` through a staging file.
pub(super) async fn put(
    live: Arc<Live>,
    root: &str,
    location: &ObjPath,
    data: Bytes,
) -> Result<(), OpError> {
    let names = names(root, location).ok_or_else(|| bad_name(location))?;
    let handle = open_staging(&live, root, location, &names.staging).await?;
    if let Err(e) = write_at(&live, &handle, 0, data).await {
        discard(&live, handle, &names.staging).await;
        return Err(e.into());
    }
    if let Err(e) = finish(&live, handle, &names).await {
        let _ = live.sftp.remove(names.staging.as_str()).await;
        return Err(e.into());
    }
    Ok(())
}

pub(super) fn bad_name(location: &ObjPath) -> OpError {
    OpError::Down(Failure {
        message: format!("{location} is not a name coffer writes"),
        retryable: false,
        setup: false,
    })
}

/// A multipart upload into one staging file on one SFTP session (a handle does
/// not survive a reconnect: a lost connection fails the upload, retryable).
pub(super) struct Upload {
    remote: Arc<Remote>,
    live: Arc<Live>,
    location: ObjPath,
    names: Arc<Names>,
    /// `None` once completed or aborted.
    handle: Option<Arc<String>>,
    /// Where the next part goes.
    offset: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Upload({} on {})",
            self.location,
            self.remote.description()
        )
    }
}

impl Upload {
    pub(super) async fn start(remote: Arc<Remote>, location: &ObjPath) -> Result<Upload, OpError> {
        let live = remote.session().await?;
        let root = remote.root().to_string();
        let names = names(&root, location).ok_or_else(|| bad_name(location))?;
        let (l, loc, staging) = (live.clone(), location.clone(), names.staging.clone());
        let handle =
            io::run(async move { open_staging(&l, &root, &loc, &staging).await }).await??;
        Ok(Upload {
            remote,
            live,
            location: location.clone(),
            names: Arc::new(names),
            handle: Some(Arc::new(handle)),
            offset: 0,
        })
    }

    fn failed(&self, e: OpError) -> object_store::Error {
        super::store::error(&self.remote, &self.location, e)
    }
}

#[async_trait::async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let at = self.offset;
        self.offset += data.content_length() as u64;
        let (remote, location, live) = (
            self.remote.clone(),
            self.location.clone(),
            self.live.clone(),
        );
        let handle = self.handle.clone();
        Box::pin(async move {
            let result = match handle {
                Some(h) => io::run(async move { write_at(&live, &h, at, Bytes::from(data)).await })
                    .await
                    .map_err(OpError::Down)
                    .and_then(|r| r.map_err(OpError::Sftp)),
                None => Err(bad_name(&location)),
            };
            result.map_err(|e| super::store::error(&remote, &location, e))
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let Some(handle) = self.handle.take() else {
            return Err(self.failed(bad_name(&self.location)));
        };
        let handle = Arc::try_unwrap(handle).unwrap_or_else(|h| (*h).clone());
        let (live, names) = (self.live.clone(), self.names.clone());
        let result = io::run(async move {
            let r = finish(&live, handle, &names).await;
            if r.is_err() {
                let _ = live.sftp.remove(names.staging.as_str()).await;
            }
            r
        })
        .await
        .map_err(OpError::Down)
        .and_then(|r| r.map_err(OpError::Sftp));
        result.map_err(|e| self.failed(e))?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        let handle = Arc::try_unwrap(handle).unwrap_or_else(|h| (*h).clone());
        let (live, names) = (self.live.clone(), self.names.clone());
        io::run(async move { discard(&live, handle, &names.staging).await })
            .await
            .map_err(|f| self.failed(OpError::Down(f)))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let handle = Arc::try_unwrap(handle).unwrap_or_else(|h| (*h).clone());
            let (live, names) = (self.live.clone(), self.names.clone());
            io::detach(async move { discard(&live, handle, &names.staging).await });
        }
    }
}

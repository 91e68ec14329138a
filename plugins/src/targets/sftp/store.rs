//! The SFTP target as an `object_store` store: what coffer asks of a store (put,
//! multipart upload, ranged get, head, recursive and one-level listings, delete)
//! mapped onto SFTP requests below the target's folder.
//!
//! Listings never follow a symlink (the server reports names with lstat's view)
//! and leave out what is no object: staging files of uploads, names object_store
//! would spell differently, anything but regular files and folders. Reads look at
//! the name first (lstat) and read only regular files.

use super::connection::{Live, OpError, Remote, read_dir, status};
use super::upload::{self, CHUNK, IN_FLIGHT, Upload};
use super::{Failure, io, paths};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::ops::Range;
use std::sync::Arc;

/// Folders deeper than this below the root are not coffer's.
const MAX_DEPTH: usize = 32;

#[derive(Debug)]
pub(super) struct SftpStore {
    remote: Arc<Remote>,
}

impl SftpStore {
    pub(super) fn new(remote: Arc<Remote>) -> SftpStore {
        SftpStore { remote }
    }

    fn error(&self, location: &ObjPath, e: OpError) -> object_store::Error {
        error(&self.remote, location, e)
    }
}

impl std::fmt::Display for SftpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.remote.description())
    }
}

/// A failed request on `location` as object_store's error: a missing file is
/// `NotFound`, everything else carries a `Failure` saying whether a retry helps.
pub(super) fn error(remote: &Remote, location: &ObjPath, e: OpError) -> object_store::Error {
    let failure = match e {
        OpError::Down(f) => f,
        OpError::Sftp(e) => match e {
            SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile => {
                return object_store::Error::NotFound {
                    path: location.to_string(),
                    source: Box::new(Failure {
                        message: format!("{location} is not on the server"),
                        retryable: false,
                        setup: false,
                    }),
                };
            }
            SftpError::Status(s) if s.status_code == StatusCode::PermissionDenied => Failure {
                message: format!(
                    "the server denied access to {location} below {}: check that the user may \
                     read and write there",
                    remote.root()
                ),
                retryable: false,
                setup: false,
            },
            // A full disk or quota is SSH_FX_FAILURE too: another run may find room.
            SftpError::Status(s) => Failure::transient(format!(
                "the server refused a request on {location}: {} {}",
                s.status_code, s.error_message
            )),
            SftpError::Timeout => Failure::transient(format!(
                "the server did not answer a request on {location} in time"
            )),
            e => Failure::transient(format!("a request on {location} failed: {e}")),
        },
    };
    object_store::Error::Generic {
        store: "sftp",
        source: Box::new(failure),
    }
}

fn meta(location: ObjPath, attrs: &FileAttributes) -> ObjectMeta {
    let mtime = attrs.mtime.unwrap_or(0);
    let size = attrs.size.unwrap_or(0);
    ObjectMeta {
        location,
        last_modified: chrono::DateTime::from_timestamp(i64::from(mtime), 0).unwrap_or_default(),
        size,
        e_tag: Some(format!("{mtime:x}-{size:x}")),
        version: None,
    }
}

/// The attributes of the regular file `remote` (a symlink or folder is no object).
async fn lstat_file(live: &Live, remote: &str) -> Result<FileAttributes, SftpError> {
    let attrs = live.sftp.lstat(remote).await?.attrs;
    if attrs.is_regular() {
        Ok(attrs)
    } else {
        Err(SftpError::Status(russh_sftp::protocol::Status {
            id: 0,
            status_code: StatusCode::NoSuchFile,
            error_message: "not a regular file".to_string(),
            language_tag: String::new(),
        }))
    }
}

/// Reads exactly `len` bytes at `offset` (a server may answer a read with less).
async fn read_exact_at(
    live: &Live,
    handle: &str,
    offset: u64,
    len: usize,
) -> Result<Bytes, SftpError> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let want = (len - out.len()) as u32;
        match live
            .sftp
            .read(handle, offset + out.len() as u64, want)
            .await
        {
            Ok(d) if d.data.is_empty() => break,
            Ok(d) => out.extend_from_slice(&d.data[..d.data.len().min(len - out.len())]),
            Err(e) if status(&e) == Some(StatusCode::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    if out.len() < len {
        return Err(SftpError::UnexpectedBehavior(format!(
            "the file ended {} bytes early (changed while read?)",
            len - out.len()
        )));
    }
    Ok(Bytes::from(out))
}

/// Closes an open file once the stream reading it is done or dropped.
struct OpenFile {
    live: Arc<Live>,
    handle: String,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let (live, handle) = (self.live.clone(), std::mem::take(&mut self.handle));
        io::detach(async move {
            let _ = live.sftp.close(handle).await;
        });
    }
}

/// The bytes of `range` of the open `file`, read `IN_FLIGHT` chunks at a time.
fn read_stream(
    remote: Arc<Remote>,
    location: ObjPath,
    file: Arc<OpenFile>,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes>> {
    let end = range.end;
    let chunks = (range.start..end)
        .step_by(CHUNK)
        .map(move |at| (at, (end - at).min(CHUNK as u64) as usize));
    futures::stream::iter(chunks)
        .map(move |(at, len)| {
            let (file, remote, location) = (file.clone(), remote.clone(), location.clone());
            async move {
                let f = file.clone();
                let read = io::run(async move { read_exact_at(&f.live, &f.handle, at, len).await })
                    .await
                    .map_err(OpError::Down)
                    .and_then(|r| r.map_err(OpError::Sftp));
                drop(file);
                read.map_err(|e| error(&remote, &location, e))
            }
        })
        .buffered(IN_FLIGHT)
        .boxed()
}

/// Every object below the folder `dir` (recursively), as locations below `base`.
async fn walk(live: &Live, root: &str, base: Option<ObjPath>) -> Result<Vec<ObjectMeta>, OpError> {
    let start = base.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut folders = vec![(start, 0usize)];
    while let Some((dir, depth)) = folders.pop() {
        let Some(remote) = paths::remote(root, &dir) else {
            continue;
        };
        let names = match read_dir(&live.sftp, &remote).await {
            Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => continue,
            r => r?,
        };
        for f in names {
            if !paths::listed_name(&f.filename) {
                continue;
            }
            let location = dir.clone().join(f.filename.as_str());
            if f.attrs.is_dir() && depth < MAX_DEPTH {
                folders.push((location, depth + 1));
            } else if f.attrs.is_regular() {
                out.push(meta(location, &f.attrs));
            }
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl ObjectStore for SftpStore {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if opts.mode != PutMode::Overwrite {
            return Err(object_store::Error::NotImplemented {
                operation: "put with a mode other than overwrite".to_string(),
                implementer: "sftp".to_string(),
            });
        }
        let data = Bytes::from(payload);
        let root = self.remote.root().to_string();
        let loc = location.clone();
        self.remote
            .run(move |live| {
                let (root, loc, data) = (root.clone(), loc.clone(), data.clone());
                async move { upload::put(live, &root, &loc, data).await }
            })
            .await
            .map_err(|e| self.error(location, e))?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let up = Upload::start(self.remote.clone(), location)
            .await
            .map_err(|e| self.error(location, e))?;
        Ok(Box::new(up))
    }

    async fn get_opts(&self, location: &ObjPath, options: GetOptions) -> Result<GetResult> {
        let remote_path = paths::remote(self.remote.root(), location)
            .ok_or_else(|| self.error(location, upload::bad_name(location)))?;
        let head = options.head;
        let (attrs, file) = self
            .remote
            .run(move |live| {
                let remote_path = remote_path.clone();
                async move {
                    let attrs = lstat_file(&live, &remote_path).await?;
                    if head {
                        return Ok((attrs, None));
                    }
                    let handle = live
                        .sftp
                        .open(
                            remote_path.as_str(),
                            OpenFlags::READ,
                            FileAttributes::empty(),
                        )
                        .await?
                        .handle;
                    Ok((attrs, Some(Arc::new(OpenFile { live, handle }))))
                }
            })
            .await
            .map_err(|e| self.error(location, e))?;
        let meta = meta(location.clone(), &attrs);
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: "sftp",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        let payload = match file {
            Some(file) => read_stream(self.remote.clone(), location.clone(), file, range.clone()),
            None => futures::stream::empty().boxed(),
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<ObjPath>>,
    ) -> BoxStream<'static, Result<ObjPath>> {
        let remote = self.remote.clone();
        locations
            .and_then(move |location| {
                let remote = remote.clone();
                async move {
                    let root = remote.root().to_string();
                    let loc = location.clone();
                    remote
                        .run(move |live| {
                            let (root, loc) = (root.clone(), loc.clone());
                            async move { delete(&live, &root, &loc).await }
                        })
                        .await
                        .map_err(|e| error(&remote, &location, e))?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&ObjPath>) -> BoxStream<'static, Result<ObjectMeta>> {
        let remote = self.remote.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let root = remote.root().to_string();
            let base = prefix.clone();
            let found = remote
                .run(move |live| {
                    let (root, base) = (root.clone(), base.clone());
                    async move { walk(&live, &root, base).await }
                })
                .await
                .map_err(|e| error(&remote, &prefix.unwrap_or_default(), e));
            futures::stream::iter(match found {
                Ok(all) => all.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjPath>) -> Result<ListResult> {
        let dir = prefix.cloned().unwrap_or_default();
        let Some(remote_dir) = paths::remote(self.remote.root(), &dir) else {
            return Err(self.error(&dir, upload::bad_name(&dir)));
        };
        let names = self
            .remote
            .run(move |live| {
                let remote_dir = remote_dir.clone();
                async move {
                    match read_dir(&live.sftp, &remote_dir).await {
                        Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => Ok(Vec::new()),
                        r => Ok(r?),
                    }
                }
            })
            .await
            .map_err(|e| self.error(&dir, e))?;
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        for f in names {
            if !paths::listed_name(&f.filename) {
                continue;
            }
            let location = dir.clone().join(f.filename.as_str());
            if f.attrs.is_dir() {
                result.common_prefixes.push(location);
            } else if f.attrs.is_regular() {
                result.objects.push(meta(location, &f.attrs));
            }
        }
        Ok(result)
    }

    async fn copy_opts(&self, _from: &ObjPath, _to: &ObjPath, _options: CopyOptions) -> Result<()> {
        // coffer copies between targets by reading and writing, never within one.
        Err(object_store::Error::NotImplemented {
            operation: "copy".to_string(),
            implementer: "sftp".to_string(),
        })
    }
}

/// Deletes the object `location`, then the folders it leaves empty (as
/// object_store's local store does), never the target's own folder.
async fn delete(live: &Live, root: &str, location: &ObjPath) -> Result<(), OpError> {
    let remote = paths::remote(root, location).ok_or_else(|| upload::bad_name(location))?;
    lstat_file(live, &remote).await?;
    live.sftp.remove(remote.as_str()).await?;
    for dir in paths::parents(root, location).iter().rev() {
        if live.sftp.rmdir(dir.as_str()).await.is_err() {
            break;
        }
    }
    Ok(())
}

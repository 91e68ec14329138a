//! A WebDAV target's store as coffer sees it: object_store's HTTP store, with
//! every write sent to a staging name and moved over its object
//! (`upload::WholeUploads::send`), and the staging names a killed write leaves
//! hidden from listings, as object_store's local store hides its own. Those
//! leftovers are found and removed (prune, once they are old) through a second
//! HTTP store that lives on a runtime of its own: the callers are synchronous,
//! some on a thread of coffer's runtime, and a connection must stay served by the
//! runtime that opened it.

use super::upload::WholeUploads;
use crate::targets::leftovers::{Leftover, Staging, staging_object};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use std::future::Future;
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
pub struct Staged {
    inner: Arc<dyn ObjectStore>,
    uploads: Arc<WholeUploads>,
    /// The same folder, for the synchronous leftover calls only (`block`).
    leftover_store: Arc<dyn ObjectStore>,
}

impl Staged {
    pub(super) fn new(
        inner: Arc<dyn ObjectStore>,
        uploads: Arc<WholeUploads>,
        leftover_store: Arc<dyn ObjectStore>,
    ) -> Staged {
        Staged {
            inner,
            uploads,
            leftover_store,
        }
    }
}

/// Its folders are prefixes: only the staging objects are its own.
impl Staging for Staged {
    fn leftovers(&self, dir: &Path) -> std::io::Result<Vec<Leftover>> {
        let store = self.leftover_store.clone();
        let dir = dir.clone();
        let listed = block(async move { store.list_with_delimiter(Some(&dir)).await })?;
        let objects = match listed {
            Ok(l) => l.objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let mut out: Vec<Leftover> = objects
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                let object = staging_object(&name)?.to_string();
                Some(Leftover {
                    name,
                    object,
                    size: m.size,
                    modified: m.last_modified.into(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn remove_leftover(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        if staging_object(name).is_none() || name.contains('/') {
            return Err(std::io::Error::other(format!(
                "{name} is no staging name of a coffer upload"
            )));
        }
        // Parsed, not encoded: the name is the server's, `#` included.
        let path = Path::parse(format!("{dir}/{name}")).map_err(std::io::Error::other)?;
        let store = self.leftover_store.clone();
        match block(async move { store.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Whether `meta` is a staging object, which no listing shows.
fn staging(meta: &ObjectMeta) -> bool {
    meta.location
        .filename()
        .is_some_and(|n| staging_object(n).is_some())
}

/// A listing without its staging objects.
fn without_staging(
    listing: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    listing
        .filter(|m| std::future::ready(!m.as_ref().is_ok_and(staging)))
        .boxed()
}

/// Runs `fut` on the WebDAV targets' own runtime, started on first use and never
/// dropped, and blocks this thread until it is done.
fn block<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> std::io::Result<T> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let rt = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("coffer-webdav")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| std::io::Error::other(format!("cannot start the WebDAV runtime: {e}")))?;
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| std::io::Error::other("a WebDAV request's task failed"))
}

impl std::fmt::Display for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (staged writes)", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Staged {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if opts.mode != PutMode::Overwrite {
            return Err(object_store::Error::NotImplemented {
                operation: "a conditional put on a WebDAV target".into(),
                implementer: "coffer".into(),
            });
        }
        // One buffer, sent again on each attempt (a copy only when in pieces).
        let whole = Bytes::from(payload);
        let len = whole.len() as u64;
        self.uploads
            .send(location, len, || Ok(reqwest::Body::from(whole.clone())))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.uploads.start(location)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        without_staging(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        without_staging(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects.retain(|m| !staging(m));
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

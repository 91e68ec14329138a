//! A WebDAV target's store as coffer sees it: object_store's HTTP store, with
//! every write sent to a staging name and moved over its object
//! (`upload::WholeUploads::send`), and the staging names a killed write leaves
//! hidden from listings, as object_store's local store hides its own. Those
//! leftovers are found and removed (prune, once they are old) through a second
//! HTTP store that lives on a runtime of its own: the callers are synchronous,
//! some on a thread of coffer's runtime, and a connection must stay served by the
//! runtime that opened it.
//!
//! A listing of a whole tree is one PROPFIND with `Depth: infinity` where the
//! server answers it (rclone does). Apache mod_dav refuses it by default
//! (`DavDepthInfinity Off`, RFC 4918's propfind-finite-depth), as SabreDAV-based
//! servers may: there the tree is listed folder by folder with `Depth: 1`, a few
//! folders at a time, and the target remembers to do so from then on.

use super::upload::WholeUploads;
use crate::targets::leftovers::{Leftover, Staging, staging_object};
use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Folders listed at once when a tree is listed folder by folder.
const FOLDERS_IN_FLIGHT: usize = 8;

/// How deep a walk goes at most: coffer's own objects are a few folders down; a
/// server that names ever deeper folders is not followed for ever.
const MAX_DEPTH: usize = 32;

#[derive(Debug)]
pub struct Staged {
    inner: Arc<dyn ObjectStore>,
    uploads: Arc<WholeUploads>,
    /// The same folder, for the synchronous leftover calls only (`block`).
    leftover_store: Arc<dyn ObjectStore>,
    /// Set once the server refused a `Depth: infinity` listing that it
    /// answered folder by folder: trees are walked from then on.
    walk_trees: Arc<AtomicBool>,
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
            walk_trees: Arc::new(AtomicBool::new(false)),
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

/// Every object under `prefix`, listed folder by folder (`Depth: 1`), at most
/// `FOLDERS_IN_FLIGHT` folders at a time, in no particular order (as every
/// store's listing). The server's answers are hostile input: only subfolders
/// of the folder listed are followed, and no deeper than `MAX_DEPTH`.
fn walk(
    store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    struct Walk {
        store: Arc<dyn ObjectStore>,
        folders: VecDeque<Option<Path>>,
        listing: FuturesUnordered<
            futures::future::BoxFuture<'static, (Option<Path>, Result<ListResult>)>,
        >,
        found: VecDeque<ObjectMeta>,
    }
    let start = Walk {
        store,
        folders: VecDeque::from([prefix]),
        listing: FuturesUnordered::new(),
        found: VecDeque::new(),
    };
    futures::stream::try_unfold(start, |mut w| async move {
        loop {
            if let Some(meta) = w.found.pop_front() {
                return Ok(Some((meta, w)));
            }
            while w.listing.len() < FOLDERS_IN_FLIGHT {
                let Some(folder) = w.folders.pop_front() else {
                    break;
                };
                let store = w.store.clone();
                w.listing.push(Box::pin(async move {
                    let listed = store.list_with_delimiter(folder.as_ref()).await;
                    (folder, listed)
                }));
            }
            let Some((folder, listed)) = w.listing.next().await else {
                return Ok(None);
            };
            let listed = listed?;
            let below = |p: &Path| match &folder {
                Some(f) => p != f && p.prefix_matches(f),
                None => true,
            };
            for sub in listed.common_prefixes.into_iter().filter(below) {
                if sub.parts().count() > MAX_DEPTH {
                    return Err(object_store::Error::Generic {
                        store: "WebDAV",
                        source: format!(
                            "the server lists folders more than {MAX_DEPTH} deep ({:.200}); \
                             no coffer target has them",
                            sub.as_ref()
                        )
                        .into(),
                    });
                }
                w.folders.push_back(Some(sub));
            }
            w.found.extend(listed.objects);
        }
    })
    .boxed()
}

/// Whether `e` is the server's refusal (401/403), which a `Depth: infinity`
/// listing meets on a server that does not allow it: the test every remote
/// target's errors are explained by (`remote.rs`).
fn refused(e: &object_store::Error) -> bool {
    crate::targets::s3::denied(e, crate::targets::s3::status_of(e))
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
        let store = self.inner.clone();
        let prefix = prefix.cloned();
        if self.walk_trees.load(Ordering::Relaxed) {
            return without_staging(walk(store, prefix));
        }
        let walk_trees = self.walk_trees.clone();
        let tree = futures::stream::once(async move {
            let mut whole = store.list(prefix.as_ref());
            // object_store's HTTP store sends its one PROPFIND on the first poll.
            let refusal = match whole.next().await {
                Some(Err(e)) if refused(&e) => e,
                first => return Ok(futures::stream::iter(first).chain(whole).boxed()),
            };
            // The depth, or the credentials? The folder alone tells.
            match store.list_with_delimiter(prefix.as_ref()).await {
                Ok(_) => {
                    tracing::debug!(
                        "{store}: the server refuses Depth: infinity listings ({refusal}); \
                         listing folder by folder"
                    );
                    walk_trees.store(true, Ordering::Relaxed);
                    Ok(walk(store, prefix))
                }
                Err(_) => Err(refusal),
            }
        })
        .try_flatten()
        .boxed();
        without_staging(tree)
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

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn a_walk_finds_every_object_under_its_folder_and_nothing_beside_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let under = [
            "app/a.json",
            "app/packs/00/p1",
            "app/packs/00/p2",
            "app/packs/ff/p3",
            "app/s/1/2/3/4/deep",
        ];
        rt.block_on(async {
            for name in under.iter().chain(&["apple/x", "other/app/y"]) {
                store
                    .put(&Path::from(*name), PutPayload::from_static(b"x"))
                    .await
                    .expect("put");
            }
            let mut found: Vec<String> = walk(store.clone(), Some(Path::from("app")))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .expect("walk");
            found.sort();
            assert_eq!(found, under);
            let all: Vec<ObjectMeta> = walk(store, None).try_collect().await.expect("walk");
            assert_eq!(all.len(), under.len() + 2);
        });
    }
}

//! An object store for the pipeline's tests: object_store's `InMemory`, recording
//! what each multipart upload did (part sizes, completions, aborts, parts uploading
//! at once) and failing on demand. Written out by hand because `ObjectStore` is an
//! `async_trait`: each method returns the boxed future that macro would produce.

use coffer_plugins::{PartPlan, Target};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a store fails, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    Never,
    /// `put_multipart` itself fails.
    Start,
    /// The n-th part (1-based) fails; the parts before it succeed.
    Part(usize),
}

/// What the store saw of its multipart uploads.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// Sizes of the parts handed to `put_part`, in order.
    pub parts: Mutex<Vec<usize>>,
    pub completed: AtomicUsize,
    pub aborted: AtomicUsize,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl Log {
    pub fn part_sizes(&self) -> Vec<usize> {
        self.parts.lock().expect("log lock").clone()
    }
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::SeqCst)
    }
    pub fn aborted(&self) -> usize {
        self.aborted.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub(crate) struct Recording {
    pub inner: InMemory,
    fail: Fail,
    /// How long each part takes, so that parts overlap.
    part_delay: Option<Duration>,
    pub log: Arc<Log>,
}

impl std::fmt::Display for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recording({})", self.inner)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "Recording",
        source: format!("injected failure: {what}").into(),
    }
}

impl Recording {
    pub fn new(fail: Fail) -> Arc<Recording> {
        Self::with_delay(fail, None)
    }

    pub fn with_delay(fail: Fail, part_delay: Option<Duration>) -> Arc<Recording> {
        Arc::new(Recording {
            inner: InMemory::new(),
            fail,
            part_delay,
            log: Arc::default(),
        })
    }

    /// A target named `name` over this store.
    pub fn target(self: &Arc<Self>, name: &str, parts: PartPlan) -> Target {
        Target::from_store(name, self.clone(), &format!("memory {name}"), parts)
    }

    /// The bytes stored at `path`, or `None` when there is no such object.
    pub async fn bytes(&self, path: &Path) -> Option<Vec<u8>> {
        match self.inner.get(path).await {
            Ok(got) => Some(got.bytes().await.expect("read stored bytes").to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("cannot read {path}: {e}"),
        }
    }

    /// Stores `bytes` at `path` in one put, as someone tampering with a target would.
    pub async fn replace(&self, path: &Path, bytes: Vec<u8>) {
        self.inner
            .put(path, PutPayload::from(bytes))
            .await
            .expect("put");
    }

    /// Every object's path: nothing may be left behind by an aborted upload.
    pub async fn paths(&self) -> Vec<Path> {
        use futures::TryStreamExt;
        let metas: Vec<ObjectMeta> = self
            .inner
            .list(None)
            .try_collect()
            .await
            .expect("list the store");
        metas.into_iter().map(|m| m.location).collect()
    }
}

#[derive(Debug)]
struct Upload {
    inner: Box<dyn MultipartUpload>,
    fail: Fail,
    part_delay: Option<Duration>,
    log: Arc<Log>,
}

impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let number = {
            let mut parts = self.log.parts.lock().expect("log lock");
            parts.push(data.content_length());
            parts.len()
        };
        let fails = self.fail == Fail::Part(number);
        // Handed over now (InMemory keeps parts in call order), run when polled.
        let put = self.inner.put_part(data);
        let log = self.log.clone();
        let delay = self.part_delay;
        Box::pin(async move {
            let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            log.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let r = if fails {
                Err(injected(&format!("part {number}")))
            } else {
                put.await
            };
            log.in_flight.fetch_sub(1, Ordering::SeqCst);
            r
        })
    }

    fn complete<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> BoxFuture<'async_trait, Result<PutResult>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let r = self.inner.complete().await;
            self.log.completed.fetch_add(1, Ordering::SeqCst);
            r
        })
    }

    fn abort<'life0, 'async_trait>(&'life0 mut self) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.log.aborted.fetch_add(1, Ordering::SeqCst);
            self.inner.abort().await
        })
    }
}

impl ObjectStore for Recording {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFuture<'async_trait, Result<PutResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.inner.put_opts(location, payload, opts).await })
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        opts: PutMultipartOptions,
    ) -> BoxFuture<'async_trait, Result<Box<dyn MultipartUpload>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if self.fail == Fail::Start {
                return Err(injected("put_multipart"));
            }
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(Upload {
                inner,
                fail: self.fail,
                part_delay: self.part_delay,
                log: self.log.clone(),
            }) as Box<dyn MultipartUpload>)
        })
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> BoxFuture<'async_trait, Result<GetResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.inner.get_opts(location, options).await })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> BoxFuture<'async_trait, Result<ListResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.inner.list_with_delimiter(prefix).await })
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: CopyOptions,
    ) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.inner.copy_opts(from, to, options).await })
    }
}

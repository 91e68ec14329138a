//! A target's store that refuses to delete (`prune = "elsewhere"`): the backup
//! host of such a target must never delete there, whatever code path asks (a
//! failed run's clean-up, retention, garbage collection), so that the history it
//! wrote survives the host being taken. Refusing here, below every caller, keeps
//! that true for code written later too; callers that can say it better (a run's
//! retention, `coffer prune`) check `Target::prunes_here` first.

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use std::sync::Arc;

#[derive(Debug)]
pub struct NoDelete {
    inner: Arc<dyn ObjectStore>,
    target: String,
}

impl NoDelete {
    pub fn new(inner: Arc<dyn ObjectStore>, target: &str) -> NoDelete {
        NoDelete {
            inner,
            target: target.to_string(),
        }
    }

    fn refused(&self, path: &Path) -> object_store::Error {
        object_store::Error::PermissionDenied {
            path: path.to_string(),
            source: format!(
                "target {} has prune = \"elsewhere\": this host never deletes there",
                self.target
            )
            .into(),
        }
    }
}

impl std::fmt::Display for NoDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (no delete)", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for NoDelete {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let me = NoDelete {
            inner: self.inner.clone(),
            target: self.target.clone(),
        };
        locations
            .map(move |p| p.and_then(|p| Err(me.refused(&p))))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    // A rename deletes its source name (and may replace what `to` held); coffer
    // never renames through the store.
    async fn rename_opts(&self, from: &Path, _to: &Path, _options: RenameOptions) -> Result<()> {
        Err(self.refused(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn every_delete_is_refused_and_everything_else_passes() {
        let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = NoDelete::new(inner.clone(), "vault");
        let path = Path::from("app/x");
        store
            .put(&path, PutPayload::from_static(b"kept"))
            .await
            .expect("put");
        let err = store.delete(&path).await.expect_err("delete refused");
        assert!(err.to_string().contains("prune = \"elsewhere\""), "{err}");
        let got = inner.get(&path).await.expect("still there").bytes().await;
        assert_eq!(got.expect("bytes").as_ref(), b"kept");
        let listed: Vec<_> = store.list(None).collect().await;
        assert_eq!(listed.len(), 1);
    }
}

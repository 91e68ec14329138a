//! `limit_upload`: a target's upload bandwidth cap, so that a backup leaves the
//! server's uplink to the application it backs up.
//!
//! The store of such a target is wrapped: every write request (a multipart part, a
//! whole small object) first takes its bytes from a token bucket, then goes out. The
//! bucket belongs to the target's name and rate for the whole process, so every
//! upload to that target at the same time (the sources of a run, the jobs of the
//! agent) shares one budget. It is paid before sending: a request of n bytes waits
//! until the bucket has earned them at the rate, so the bytes sent by any moment
//! never exceed rate x time plus the burst (at most `BURST` of the rate, what an
//! idle target saved). A request itself goes out at the network's speed: a part
//! (2 MiB on local targets, `part_size` on S3) is the largest single burst.
//! Reads, lists and deletes are not limited.

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How much of a second's budget an idle target may spend at once.
const BURST: Duration = Duration::from_millis(250);

/// A token bucket kept as the instant its debt is paid off (the bytes granted so
/// far, at the rate): one number, updated under a lock that is never held across
/// an await.
#[derive(Debug)]
pub struct Bucket {
    bytes_per_second: u64,
    paid_until: Mutex<Instant>,
}

impl Bucket {
    pub fn new(bytes_per_second: u64) -> Bucket {
        let now = Instant::now();
        Bucket {
            bytes_per_second: bytes_per_second.max(1),
            // Starts idle, with its burst saved.
            paid_until: Mutex::new(now.checked_sub(BURST).unwrap_or(now)),
        }
    }

    /// The instant from which `n` bytes may be sent, reserved for them now: callers
    /// are served in the order they ask.
    pub fn reserve(&self, n: u64, now: Instant) -> Instant {
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_second as f64);
        // A poisoned lock still holds a valid instant.
        let mut paid = self
            .paid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // An idle bucket has saved at most BURST of time.
        let from = (*paid).max(now.checked_sub(BURST).unwrap_or(now));
        *paid = from + cost;
        *paid
    }

    /// Waits until `n` more bytes are within the rate.
    pub async fn take(&self, n: u64) {
        let at = self.reserve(n, Instant::now());
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The bucket of a target at a rate, the same for every open of that target in
/// this process (a new rate after a config reload gets a new one).
pub fn bucket_for(target: &str, bytes_per_second: u64) -> Arc<Bucket> {
    /// Per target name and rate.
    type Buckets = HashMap<(String, u64), Arc<Bucket>>;
    static BUCKETS: OnceLock<Mutex<Buckets>> = OnceLock::new();
    let mut all = BUCKETS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    all.entry((target.to_string(), bytes_per_second))
        .or_insert_with(|| Arc::new(Bucket::new(bytes_per_second)))
        .clone()
}

/// A store whose writes take their bytes from a bucket first.
#[derive(Debug)]
pub struct Throttled {
    inner: Arc<dyn ObjectStore>,
    bucket: Arc<Bucket>,
}

impl Throttled {
    pub fn new(inner: Arc<dyn ObjectStore>, bucket: Arc<Bucket>) -> Throttled {
        Throttled { inner, bucket }
    }
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (at most {} bytes/s)",
            self.inner, self.bucket.bytes_per_second
        )
    }
}

/// `up`, its parts paid for from `bucket` first (for uploads started outside
/// `Throttled`, through the multipart API: `upload_journal`).
pub(crate) fn throttled(
    up: Box<dyn MultipartUpload>,
    bucket: Arc<Bucket>,
) -> Box<dyn MultipartUpload> {
    Box::new(Upload { inner: up, bucket })
}

#[derive(Debug)]
struct Upload {
    inner: Box<dyn MultipartUpload>,
    bucket: Arc<Bucket>,
}

#[async_trait::async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        // The part is handed to the store now, in order (a store may number parts
        // by call), and sent once its bytes are paid for.
        let n = data.content_length() as u64;
        let at = self.bucket.reserve(n, Instant::now());
        let put = self.inner.put_part(data);
        Box::pin(async move {
            tokio::time::sleep_until(at.into()).await;
            put.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl ObjectStore for Throttled {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.bucket.take(payload.content_length() as u64).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(Upload {
            inner,
            bucket: self.bucket.clone(),
        }))
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
        self.inner.delete_stream(locations)
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

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_busy_bucket_grants_bytes_at_the_rate() {
        let b = Bucket::new(8 * MIB);
        let t0 = Instant::now();
        // Sixteen 2 MiB parts asked at once: the last is granted 32 MiB / 8 MiB/s
        // after the start, less the burst an idle bucket saved.
        let mut last = t0;
        for _ in 0..16 {
            last = b.reserve(2 * MIB, t0);
        }
        assert_eq!(last - t0, Duration::from_secs(4) - BURST);
    }

    #[test]
    fn an_idle_bucket_saves_only_a_bounded_burst() {
        let b = Bucket::new(MIB);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        // After a minute idle, a MiB still costs a second less the burst, not nothing.
        assert_eq!(
            b.reserve(MIB, later) - later,
            Duration::from_secs(1) - BURST
        );
    }

    #[test]
    fn one_target_and_rate_share_one_bucket() {
        let a = bucket_for("throttle-test", 5 * MIB);
        assert!(Arc::ptr_eq(&a, &bucket_for("throttle-test", 5 * MIB)));
        assert!(!Arc::ptr_eq(&a, &bucket_for("throttle-test", 6 * MIB)));
        assert!(!Arc::ptr_eq(&a, &bucket_for("throttle-test-2", 5 * MIB)));
    }
}

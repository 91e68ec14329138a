//! The S3 multipart uploads this host started and has not yet completed or
//! aborted, written down in the state directory before their first part is sent.
//!
//! A run killed with -9 (or a host that lost power) never aborts its uploads:
//! S3 keeps their parts, and bills them, with no object to show for them, and
//! object_store can neither list unfinished uploads nor abort one without its
//! id. So each upload's id goes into a small file here first, and the next run
//! or prune of the job, which holds the job's lock (no upload of that job is then
//! live on this host), aborts what is still written down. Uploads of another
//! host, or of a state directory lost with its host, are not known here: for
//! those the bucket's lifecycle rule for incomplete multipart uploads remains
//! the safety net (docs/configuration.md, "S3 and several targets").
//!
//! Layout: `<state_dir>/uploads/<target>/<job>/<pid>-<nanos>-<n>.json`, one file
//! per upload, holding the bucket, the key (below the target's prefix) and the
//! upload id.

use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{MultipartId, MultipartUpload, PutPayload, PutResult, UploadPart};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A `MultipartStore` that can also be shown (`Target` and the upload derive `Debug`).
pub trait Multipart: MultipartStore + std::fmt::Debug {}
impl<T: MultipartStore + std::fmt::Debug> Multipart for T {}

/// One upload written down.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    bucket: String,
    key: String,
    upload_id: String,
}

/// The folder of `job`'s entries below a target's journal folder; `None` for
/// anything but a job name of the config's grammar.
fn job_dir(journal: &Path, job: &str) -> Option<PathBuf> {
    coffer_config::names::is_name(job).then(|| journal.join(job))
}

/// Writes the entry of an upload just created, synced to disk before any part is
/// sent (a kill right after must still find it). Returns the entry's file.
fn record(journal: &Path, bucket: &str, key: &ObjPath, id: &str) -> std::io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let job = key.parts().next().map(|p| p.as_ref().to_string());
    let dir = job
        .as_deref()
        .and_then(|j| job_dir(journal, j))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{key} names no job"),
            )
        })?;
    std::fs::create_dir_all(&dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let file = dir.join(format!(
        "{}-{nanos}-{}.json",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let entry = Entry {
        bucket: bucket.to_string(),
        key: key.to_string(),
        upload_id: id.to_string(),
    };
    let mut f = std::fs::File::create(&file)?;
    f.write_all(&serde_json::to_vec(&entry).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    Ok(file)
}

/// Starts a multipart upload of `key` through `store` and writes it down in
/// `journal` first; the upload removes its entry once completed or aborted.
pub(crate) async fn start(
    store: Arc<dyn Multipart>,
    journal: &Path,
    bucket: &str,
    key: &ObjPath,
) -> object_store::Result<Box<dyn MultipartUpload>> {
    let id = store.create_multipart(key).await?;
    let entry = match record(journal, bucket, key, &id) {
        Ok(f) => f,
        Err(e) => {
            // Not written down, so not started: nothing may be left unaccounted.
            let _ = store.abort_multipart(key, &id).await;
            return Err(object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "cannot record the upload of {key} in {} (coffer aborts a killed run's \
                     uploads from there): {e}",
                    journal.display()
                )
                .into(),
            });
        }
    };
    Ok(Box::new(Journaled {
        store,
        key: key.clone(),
        id,
        parts: Arc::new(Mutex::new(Vec::new())),
        entry,
    }))
}

/// A multipart upload driven through `MultipartStore`, whose id is known.
#[derive(Debug)]
struct Journaled {
    store: Arc<dyn Multipart>,
    key: ObjPath,
    id: MultipartId,
    /// Each part's id once uploaded, by part index.
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
    entry: PathBuf,
}

impl Journaled {
    fn forget(&self) {
        let _ = std::fs::remove_file(&self.entry);
    }
}

fn poisoned() -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: "the part list of an upload is poisoned".into(),
    }
}

#[async_trait::async_trait]
impl MultipartUpload for Journaled {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let idx = match self.parts.lock() {
            Ok(mut p) => {
                p.push(None);
                p.len() - 1
            }
            Err(_) => return Box::pin(async { Err(poisoned()) }),
        };
        let (store, key, id, parts) = (
            self.store.clone(),
            self.key.clone(),
            self.id.clone(),
            self.parts.clone(),
        );
        Box::pin(async move {
            let part = store.put_part(&key, &id, idx, data).await?;
            let mut p = parts.lock().map_err(|_| poisoned())?;
            p[idx] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts: Option<Vec<PartId>> = self
            .parts
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .cloned()
            .collect();
        let Some(parts) = parts else {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: format!("{}: completed before every part was uploaded", self.key).into(),
            });
        };
        let done = self
            .store
            .complete_multipart(&self.key, &self.id, parts)
            .await?;
        self.forget();
        Ok(done)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.store.abort_multipart(&self.key, &self.id).await?;
        self.forget();
        Ok(())
    }
}

/// How long an upload that cannot be aborted stays written down. S3 answers
/// 404 for an upload it does not know (completed, or aborted by a run killed
/// before it crossed out its entry), and that entry goes at once; other answers
/// (403 for a credential without s3:AbortMultipartUpload, and some servers'
/// answer for an unknown upload) are tried again until then, and then left to
/// the bucket's lifecycle rule.
const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// What aborting the written-down uploads of a job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Aborted {
    /// Keys whose unfinished upload is gone now (aborted, or unknown to the
    /// server: completed just before a kill, or removed by a lifecycle rule).
    pub keys: Vec<String>,
    /// Uploads that could not be aborted, each with why: tried again next time,
    /// or, written down longer than `GIVE_UP_AFTER` ago, left to the bucket's
    /// lifecycle rule.
    pub failed: Vec<String>,
}

/// Aborts every upload of `job` written down in `journal` for this bucket. Call
/// only with the job's lock held: an upload of this host still running would
/// be aborted under its feet.
pub(crate) async fn abort_recorded(
    store: &dyn Multipart,
    journal: &Path,
    bucket: &str,
    job: &str,
) -> Aborted {
    let mut out = Aborted::default();
    let Some(dir) = job_dir(journal, job) else {
        return out;
    };
    let Ok(listing) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = listing
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        // Created but never written: killed in that instant, before it held an
        // id (and so before any part was sent). Nothing to abort.
        if std::fs::metadata(&file).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&file);
            continue;
        }
        let entry: Entry = match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(why) => {
                out.failed.push(format!(
                    "{} cannot be read ({why}); remove it by hand",
                    file.display()
                ));
                continue;
            }
        };
        // Written for another bucket under this target's name: not ours to touch.
        if entry.bucket != bucket {
            continue;
        }
        let key = ObjPath::from(entry.key.as_str());
        // An entry filed under this job for a key of another job is not taken.
        if key.parts().next().is_none_or(|p| p.as_ref() != job) {
            continue;
        }
        match store.abort_multipart(&key, &entry.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                let _ = std::fs::remove_file(&file);
                out.keys.push(entry.key);
            }
            Err(e) => {
                let old = std::fs::metadata(&file)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > GIVE_UP_AFTER);
                let then = if old {
                    let _ = std::fs::remove_file(&file);
                    "no longer tried (written down over 7 days ago): the bucket's lifecycle \
                     rule for incomplete multipart uploads must remove it"
                } else {
                    "tried again by the next run or prune"
                };
                out.failed.push(format!(
                    "the unfinished upload of {} could not be aborted ({e}); {then}",
                    entry.key
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn ids(journal: &Path, job: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(journal.join(job))
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let entry: Entry =
                            serde_json::from_slice(&std::fs::read(e.path()).expect("read"))
                                .expect("entry");
                        entry.upload_id
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    #[tokio::test]
    async fn an_upload_left_open_is_aborted_by_the_next_holder_of_the_lock() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mem = Arc::new(InMemory::new());
        let store: Arc<dyn Multipart> = mem.clone();
        let journal = tmp.path().join("uploads/s3");
        let part = || PutPayload::from_static(b"part");
        // Completed: an object, and nothing left written down.
        let key = ObjPath::from("app/packs/aa.tar.zst.age");
        let mut up = start(store.clone(), &journal, "b", &key)
            .await
            .expect("start");
        up.put_part(part()).await.expect("part");
        up.complete().await.expect("complete");
        assert_eq!(mem.head(&key).await.expect("object").size, 4);
        assert!(ids(&journal, "app").is_empty());
        // Abandoned as a kill would leave it (never aborted), in two jobs.
        let left = ObjPath::from("app/packs/bb.tar.zst.age");
        let mut up = start(store.clone(), &journal, "b", &left)
            .await
            .expect("start");
        up.put_part(part()).await.expect("part");
        drop(up);
        let other = ObjPath::from("other/packs/cc.tar.zst.age");
        drop(
            start(store.clone(), &journal, "b", &other)
                .await
                .expect("start"),
        );
        let (left_id, other_id) = (ids(&journal, "app"), ids(&journal, "other"));
        assert_eq!((left_id.len(), other_id.len()), (1, 1));

        // Another bucket's entries are not this target's.
        let none = abort_recorded(store.as_ref(), &journal, "elsewhere", "app").await;
        assert_eq!(none, Aborted::default());
        let done = abort_recorded(store.as_ref(), &journal, "b", "app").await;
        assert_eq!(done.keys, vec![left.to_string()]);
        assert!(done.failed.is_empty(), "{:?}", done.failed);
        assert!(ids(&journal, "app").is_empty());
        // Aborted on the server; the other job's upload untouched.
        assert!(store.put_part(&left, &left_id[0], 1, part()).await.is_err());
        store
            .put_part(&other, &other_id[0], 0, part())
            .await
            .expect("the other job's upload is still open");
        // Nothing left to do the second time.
        let again = abort_recorded(store.as_ref(), &journal, "b", "app").await;
        assert_eq!(again, Aborted::default());
        // An abort the server refuses keeps the entry, to be tried again.
        store
            .abort_multipart(&other, &other_id[0])
            .await
            .expect("abort");
        let refused = abort_recorded(store.as_ref(), &journal, "b", "other").await;
        assert!(
            refused.keys.is_empty() && refused.failed.len() == 1,
            "{refused:?}"
        );
        assert_eq!(ids(&journal, "other"), other_id);
    }
}

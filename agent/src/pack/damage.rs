//! A damaged pack must never be built upon. When verify or restore finds a pack
//! missing, cut short, or with stored bytes other than those the signed marker
//! binds, the job's local index forgets it at once (every file and content row
//! that points into it), so the next backup reads those files and stores them
//! again in new packs instead of referencing the damaged one from a new snapshot.
//!
//! Only proof counts: the target saying the pack is not there, or the whole pack
//! read to its end with a size or BLAKE3 other than the marker's, twice. A read
//! that fails on the way (network, permissions, a timeout) proves nothing and the
//! index keeps the pack. Forgetting costs at worst a re-upload of what it held.

use crate::format::{ObjectRecord, PackRecord};
use crate::lock::{LockHeld, lock_job};
use crate::pipeline::read::{ObjectReader, is_mismatch};
use anyhow::Result;
use coffer_plugins::Target;
use std::collections::BTreeSet;
use std::path::Path;
use tokio::runtime::Handle;

/// What reading a pack whole against its marker record showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    Intact,
    /// Proven bad: missing, or its stored bytes are not the marker's.
    Bad(String),
    /// Could not be read to the end: no verdict.
    Unreadable(String),
}

/// Reads pack `p` of `job` on `target` whole and compares it with the record.
/// A mismatch is read a second time before it counts, so one garbled transfer
/// never passes for damage.
pub(crate) fn check_stored(rt: &Handle, target: &Target, job: &str, p: &PackRecord) -> Stored {
    check_stored_for(rt, target, job, p, None)
}

/// `check_stored`, the bytes read counted in `work` (a verify's progress).
pub(crate) fn check_stored_for(
    rt: &Handle,
    target: &Target,
    job: &str,
    p: &PackRecord,
    work: Option<&std::sync::Arc<crate::report::Work>>,
) -> Stored {
    // The id comes from a marker: hostile input, checked before it names a path.
    if !super::is_pack_id(&p.id) {
        return Stored::Unreadable(format!(
            "snapshot.json lists {:?}, which is not a pack id",
            coffer_plugins::escape_controls(&p.id)
        ));
    }
    let record = p.as_object();
    check_counted(rt, target, &super::pack_path(job, &p.id), &record, work)
}

/// Reads object `path` on `target` whole and compares it with `record`, as
/// `check_stored` does a pack: a mismatch counts only when read twice. Used by
/// `repair` for a snapshot's own objects (manifest, dumps).
pub(crate) fn check_object(
    rt: &Handle,
    target: &Target,
    path: &object_store::path::Path,
    record: &ObjectRecord,
) -> Stored {
    check_counted(rt, target, path, record, None)
}

fn check_counted(
    rt: &Handle,
    target: &Target,
    path: &object_store::path::Path,
    record: &ObjectRecord,
    work: Option<&std::sync::Arc<crate::report::Work>>,
) -> Stored {
    let first = read_whole(rt, target, path, record, work);
    match first {
        Stored::Bad(_) => match read_whole(rt, target, path, record, work) {
            again @ Stored::Bad(_) => again,
            Stored::Intact => Stored::Unreadable(
                "its stored bytes differed from snapshot.json once and matched when read again"
                    .to_string(),
            ),
            unreadable => unreadable,
        },
        other => other,
    }
}

fn read_whole(
    rt: &Handle,
    target: &Target,
    path: &object_store::path::Path,
    record: &ObjectRecord,
    work: Option<&std::sync::Arc<crate::report::Work>>,
) -> Stored {
    let copied = ObjectReader::open(rt, target, path, Some(record))
        .map(|r| match work {
            Some(w) => r.counting(w),
            None => r,
        })
        .and_then(|mut r| std::io::copy(&mut r, &mut std::io::sink()));
    match copied {
        Ok(_) => Stored::Intact,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || is_mismatch(&e) => {
            Stored::Bad(e.to_string())
        }
        Err(e) => Stored::Unreadable(e.to_string()),
    }
}

/// What the index did with packs proven bad, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forgot {
    /// Packs the index still counted on before.
    pub(crate) packs: usize,
    /// Rows of files of the last snapshot that pointed into them.
    pub(crate) files: u64,
}

impl Forgot {
    pub(crate) fn say(&self, job: &str) -> String {
        format!(
            "the index of job {job} forgot {} damaged or missing pack(s) ({} file(s) of the last backup \
             were stored in them): the next backup reads those files and stores them again",
            self.packs, self.files
        )
    }
}

/// Makes the index of `job` forget `ids` (packs proven bad) at once. `None` when
/// this host has no index for the job (nothing builds on the packs here). Takes
/// the job lock: a backup of the job holds the index's transaction for its whole
/// run, so while one runs this fails and says to run verify again after it.
pub(crate) fn forget(state_dir: &Path, job: &str, ids: &[String]) -> Result<Option<Forgot>> {
    let (ids, file) = (pack_ids(ids), super::index::Index::file(state_dir, job));
    if ids.is_empty() || !file.is_file() {
        return Ok(None);
    }
    let lock = match lock_job(state_dir, job) {
        Ok(l) => l,
        Err(e) if e.is::<LockHeld>() => {
            return Err(e.context(format!(
                "the index {} could not forget {} damaged pack(s) now; run the verify again \
                 once the job's run is over, or the next backup may still reference them",
                file.display(),
                ids.len()
            )));
        }
        Err(e) => return Err(e),
    };
    forget_locked(state_dir, &lock, &ids)
}

/// The pack ids among `ids` (names read from a target are checked first), once each.
fn pack_ids(ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| super::is_pack_id(id))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `forget` for a caller that holds the job's lock already (`repair`).
pub(crate) fn forget_locked(
    state_dir: &Path,
    lock: &crate::lock::JobLock,
    ids: &[String],
) -> Result<Option<Forgot>> {
    let job = lock.job.as_str();
    let (ids, file) = (pack_ids(ids), super::index::Index::file(state_dir, job));
    if ids.is_empty() || !file.is_file() {
        return Ok(None);
    }
    let (mut index, _) = super::index::Index::open(state_dir, job)?;
    let mut packs = 0;
    for id in &ids {
        if index.pack(id)?.is_some() {
            packs += 1;
        }
    }
    let files = index.forget_packs(&ids)?;
    Ok(Some(Forgot { packs, files }))
}

/// Checks the packs `suspects` (named by a failed restore: maybe damage, maybe a
/// network error) whole against `marker`, and makes the index forget those
/// proven bad. Returns what to tell the operator, if anything.
pub(crate) fn check_and_forget(
    rt: &Handle,
    state_dir: &Path,
    target: &Target,
    marker: &crate::format::Marker,
    suspects: &[String],
) -> Option<String> {
    let bad: Vec<String> = suspects
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|id| marker.pack(id))
        .filter(|p| matches!(check_stored(rt, target, &marker.job, p), Stored::Bad(_)))
        .map(|p| p.id.clone())
        .collect();
    match forget(state_dir, &marker.job, &bad) {
        Ok(Some(f)) => Some(f.say(&marker.job)),
        Ok(None) => None,
        Err(e) => Some(format!("{e:#}")),
    }
}

/// The packs a failed read names as the cause (see `tar_view`): candidates for
/// `check_and_forget`, never proof by themselves.
pub(crate) fn suspects(e: &anyhow::Error) -> Vec<String> {
    e.chain()
        .filter_map(|c| c.downcast_ref::<Suspect>())
        .map(|s| s.pack.clone())
        .collect()
}

/// An error reading a pack's content: it names the pack so that the caller can
/// check it (`check_and_forget`). Its text is the error's own.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Suspect {
    pub(crate) pack: String,
    pub(crate) message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_plugins::PartPlan;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    use std::sync::Arc;
    use tokio::runtime::Runtime;

    const JOB: &str = "app";

    fn plan() -> PartPlan {
        PartPlan {
            part_size: 5 << 20,
            max_parts: 10_000,
            parts_in_flight: 1,
        }
    }

    fn id(n: u8) -> String {
        format!("{n:032x}")
    }

    /// A target holding pack `id(1)` with `stored`; its record as written.
    fn target_with(rt: &Runtime, stored: &[u8]) -> (Target, PackRecord) {
        let store = Arc::new(InMemory::new());
        rt.block_on(store.put(
            &super::super::pack_path(JOB, &id(1)),
            PutPayload::from(stored.to_vec()),
        ))
        .expect("put");
        let record = PackRecord {
            id: id(1),
            stored_size: stored.len() as u64,
            blake3: blake3::hash(stored).to_hex().to_string(),
            content_size: 0,
            used: 0,
        };
        let store: Arc<dyn ObjectStore> = store;
        (Target::from_store("mem", store, "memory", plan()), record)
    }

    fn replace(rt: &Runtime, target: &Target, bytes: Option<Vec<u8>>) {
        let path = super::super::pack_path(JOB, &id(1));
        match bytes {
            Some(b) => {
                rt.block_on(target.store.put(&path, PutPayload::from(b)))
                    .expect("put");
            }
            None => rt.block_on(target.store.delete(&path)).expect("delete"),
        }
    }

    #[test]
    fn missing_cut_short_or_flipped_is_bad_and_intact_is_intact() {
        let rt = Runtime::new().expect("runtime");
        let stored = vec![7u8; 100_000];
        let (target, record) = target_with(&rt, &stored);
        assert_eq!(
            check_stored(rt.handle(), &target, JOB, &record),
            Stored::Intact
        );
        let mut flipped = stored.clone();
        flipped[50_000] ^= 1;
        replace(&rt, &target, Some(flipped));
        let got = check_stored(rt.handle(), &target, JOB, &record);
        assert!(
            matches!(&got, Stored::Bad(why) if why.contains("do not match")),
            "{got:?}"
        );
        replace(&rt, &target, Some(stored[..99_000].to_vec()));
        let got = check_stored(rt.handle(), &target, JOB, &record);
        assert!(matches!(&got, Stored::Bad(_)), "{got:?}");
        replace(&rt, &target, None);
        let got = check_stored(rt.handle(), &target, JOB, &record);
        assert!(
            matches!(&got, Stored::Bad(why) if why.contains(&id(1))),
            "{got:?}"
        );
    }

    #[test]
    fn a_target_that_cannot_be_reached_proves_nothing() {
        let rt = Runtime::new().expect("runtime");
        // Nothing listens on port 1 of loopback: every request fails to connect.
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint("http://127.0.0.1:1")
            .with_allow_http(true)
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_retry(object_store::RetryConfig {
                backoff: Default::default(),
                max_retries: 0,
                retry_timeout: std::time::Duration::from_secs(1),
            })
            .build()
            .expect("s3 client");
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        let target = Target::from_store("down", store, "s3 down", plan());
        let record = PackRecord {
            id: id(1),
            stored_size: 10,
            blake3: blake3::hash(b"0123456789").to_hex().to_string(),
            content_size: 0,
            used: 0,
        };
        let got = check_stored(rt.handle(), &target, JOB, &record);
        assert!(matches!(got, Stored::Unreadable(_)), "{got:?}");
    }

    #[test]
    fn an_id_that_is_not_a_pack_id_is_never_used() {
        let rt = Runtime::new().expect("runtime");
        let (target, mut record) = target_with(&rt, b"x");
        record.id = "../../etc/passwd".into();
        let got = check_stored(rt.handle(), &target, JOB, &record);
        assert!(matches!(got, Stored::Unreadable(_)), "{got:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        drop(super::super::index::Index::open(dir.path(), JOB).expect("index"));
        let bad = vec!["x' OR 1=1 --".to_string(), id(0xab).to_uppercase()];
        assert_eq!(forget(dir.path(), JOB, &bad).expect("forget"), None);
    }

    #[test]
    fn forgetting_needs_an_index_and_the_job_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No index on this host: nothing to forget, and none is created.
        assert_eq!(forget(dir.path(), JOB, &[id(1)]).expect("forget"), None);
        assert!(!dir.path().join("index").exists());
        drop(super::super::index::Index::open(dir.path(), JOB).expect("index"));
        let held = lock_job(dir.path(), JOB).expect("lock");
        let err = forget(dir.path(), JOB, &[id(1)]).expect_err("lock held");
        assert!(
            format!("{err:#}").contains("run the verify again"),
            "{err:#}"
        );
        drop(held);
        assert_eq!(
            forget(dir.path(), JOB, &[id(1)]).expect("forget"),
            Some(Forgot { packs: 0, files: 0 })
        );
    }
}

//! The uploader alone: a stream of chunks in, one multipart upload out, cut by the
//! target's part plan.

use super::store::{Fail, Recording};
use crate::pipeline::upload::{Part, UploadError, Uploaded, upload};
use bytes::Bytes;
use coffer_plugins::{PartPlan, Target};
use object_store::path::Path as ObjPath;
use std::time::Duration;
use tokio::sync::mpsc;

fn plan(part_size: u64, max_parts: u32, parts_in_flight: usize) -> PartPlan {
    PartPlan {
        part_size,
        max_parts,
        parts_in_flight,
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn path() -> ObjPath {
    ObjPath::from("job/20240101T000000Z-0a1b/files.tar.zst.age")
}

/// Feeds `bytes` in `chunk`-sized pieces, then `Part::Done` if `done`, else just
/// closes the chain (what a writer dropped mid-object does).
async fn send(
    target: &Target,
    bytes: &[u8],
    chunk: usize,
    done: bool,
) -> Result<Uploaded, UploadError> {
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(upload(target.clone(), path(), rx));
    for piece in bytes.chunks(chunk) {
        // A failed upload drops its end of the chain: stop feeding, as the fan-out does.
        if tx
            .send(Part::Data(Bytes::copy_from_slice(piece)))
            .await
            .is_err()
        {
            break;
        }
    }
    if done {
        let _ = tx.send(Part::Done).await;
    }
    drop(tx);
    task.await.expect("the upload task ran")
}

#[tokio::test]
async fn an_object_of_several_parts_is_stored_whole_in_planned_parts() {
    // Step 4: four parts of 1000, four of 2000, then 4000 (the last one short).
    let store = Recording::new(Fail::Never);
    let target = store.target("t", plan(1000, 40, 2));
    let bytes = data(13_001);
    let up = send(&target, &bytes, 777, true).await.expect("uploaded");
    let sizes = [1000, 1000, 1000, 1000, 2000, 2000, 2000, 2000, 1001];
    assert_eq!(store.log.part_sizes(), sizes);
    assert_eq!(
        (up.parts, up.largest_part, up.bytes),
        (9, 2000, 13_001),
        "{up:?}"
    );
    assert_eq!(store.bytes(&path()).await.as_deref(), Some(&bytes[..]));
    assert_eq!((store.log.completed(), store.log.aborted()), (1, 0));
}

#[tokio::test]
async fn an_object_filling_its_last_part_exactly_has_no_empty_part() {
    let store = Recording::new(Fail::Never);
    let target = store.target("t", plan(1000, 4, 2));
    let bytes = data(3000);
    let up = send(&target, &bytes, 3000, true).await.expect("uploaded");
    assert_eq!(store.log.part_sizes(), [1000, 2000]);
    assert_eq!((up.parts, up.largest_part, up.bytes), (2, 2000, 3000));
    assert_eq!(store.bytes(&path()).await.as_deref(), Some(&bytes[..]));
}

#[tokio::test]
async fn an_empty_object_is_one_empty_part() {
    let store = Recording::new(Fail::Never);
    let target = store.target("t", plan(1000, 4, 2));
    let up = send(&target, &[], 1, true).await.expect("uploaded");
    assert_eq!(store.log.part_sizes(), [0]);
    assert_eq!((up.parts, up.largest_part, up.bytes), (1, 0, 0));
    assert_eq!(store.bytes(&path()).await, Some(Vec::new()));
}

#[tokio::test]
async fn a_chain_closed_without_its_end_aborts_and_leaves_no_object() {
    let store = Recording::new(Fail::Never);
    let target = store.target("t", plan(1000, 4, 2));
    let e = send(&target, &data(2500), 600, false)
        .await
        .expect_err("no end marker: no object");
    assert!(e.abandoned && e.retryable, "{e:?}");
    assert_eq!(e.target, "t");
    assert_eq!((store.log.completed(), store.log.aborted()), (0, 1));
    assert!(store.paths().await.is_empty());
}

#[tokio::test]
async fn an_object_past_the_part_limit_fails_and_is_aborted() {
    // Three parts: 1000 + 2000 + 4000 = 7000 bytes at most.
    let store = Recording::new(Fail::Never);
    let target = store.target("t", plan(1000, 3, 2));
    let up = send(&target, &data(7000), 999, true)
        .await
        .expect("exactly the capacity fits");
    assert_eq!((up.parts, up.largest_part, up.bytes), (3, 4000, 7000));

    let store = Recording::new(Fail::Never);
    let target = store.target("t", plan(1000, 3, 2));
    let e = send(&target, &data(7001), 999, true)
        .await
        .expect_err("one byte too many");
    assert!(!e.retryable && !e.abandoned, "{e:?}");
    assert!(e.message.contains("raise part_size"), "{}", e.message);
    assert_eq!((store.log.completed(), store.log.aborted()), (0, 1));
    assert!(store.paths().await.is_empty());
}

#[tokio::test]
async fn a_failed_part_fails_the_upload_and_aborts_it() {
    let store = Recording::new(Fail::Part(2));
    let target = store.target("t", plan(1000, 10, 1));
    let e = send(&target, &data(5000), 500, true)
        .await
        .expect_err("part 2 failed");
    assert!(!e.abandoned, "{e:?}");
    assert!(
        e.message.contains("target t (memory t)") && e.message.contains("injected failure"),
        "{}",
        e.message
    );
    assert_eq!((store.log.completed(), store.log.aborted()), (0, 1));
    assert!(store.paths().await.is_empty());
}

#[tokio::test]
async fn a_failed_start_is_reported_with_the_target() {
    let store = Recording::new(Fail::Start);
    let target = store.target("t", plan(1000, 10, 1));
    let e = send(&target, &data(100), 100, true)
        .await
        .expect_err("no upload could start");
    assert!(!e.abandoned, "{e:?}");
    assert!(
        e.message.contains("cannot start the upload of") && e.message.contains("target t"),
        "{}",
        e.message
    );
    assert!(store.paths().await.is_empty());
}

#[tokio::test]
async fn no_more_parts_upload_at_once_than_the_plan_allows() {
    // `0` still uploads (one part at a time). Parts take long enough for the
    // uploader to start all it may while the first is still uploading.
    for (in_flight, expect, delay) in [(0, 1, 2), (1, 1, 2), (3, 3, 100)] {
        let store = Recording::with_delay(Fail::Never, Some(Duration::from_millis(delay)));
        let target = store.target("t", plan(1000, 10_000, in_flight));
        let bytes = data(10_000);
        let up = send(&target, &bytes, 1000, true).await.expect("uploaded");
        assert_eq!(up.parts, 10);
        let most = store
            .log
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, expect, "parts_in_flight {in_flight}");
        assert_eq!(store.bytes(&path()).await.as_deref(), Some(&bytes[..]));
    }
}

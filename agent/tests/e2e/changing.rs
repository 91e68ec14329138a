//! Applications keep writing during a backup: a file that changes while it is read
//! is recorded and reported, the run still succeeds, and the snapshot stays
//! internally consistent (verify passes, restore gives the bytes that were stored).

use crate::common::*;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn a_file_written_during_the_backup_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    let busy = src.join("busy.log");
    std::fs::write(&busy, noise(256 << 20, 5)).expect("write");
    std::fs::write(src.join("calm.txt"), b"calm").expect("write");
    let world = World::new(&dir_source("data", &src, ""));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let busy = busy.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&busy)
                .expect("open");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f.seek(SeekFrom::Start((i * 4096) % (256 << 20)))
                    .expect("seek");
                f.write_all(&[b'x'; 4096]).expect("write");
                i += 1;
            }
        })
    };
    let out = world.run(&["backup", "app"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("busy.log: changed while it was read"), "{err}");
    assert!(!err.contains("calm.txt"), "{err}");

    let list = world.ok(&["list", "--job", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert_eq!(v[0]["warnings"]["changed"], 1, "{list}");
    let verified = world.ok(&["verify", "--job", "app"]);
    assert!(verified.contains("ok"), "{verified}");
    let dest = tmp.path().join("r");
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        dest.to_str().expect("utf8"),
    ]);
    assert_eq!(
        std::fs::metadata(dest.join("data/busy.log"))
            .expect("stat")
            .len(),
        256 << 20
    );
}

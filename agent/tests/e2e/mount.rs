//! `coffer mount` with the real FUSE device (issue 26): every trusted snapshot
//! a folder, files with their contents, owners, modes, times, symlinks and hard
//! links as stored, nothing writable, and a file whose pack was damaged refused
//! with an I/O error instead of given out wrong. Needs /dev/fuse and fusermount3
//! (tests/run installs fuse3).

use crate::common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The running `coffer mount`; killed (and so unmounted) if the test fails.
struct Mount(Child);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `coffer mount` of job `app` at `at` and waits until it is mounted.
fn mount(world: &World, at: &Path) -> Mount {
    let child = world
        .command(&["mount", "--job", "app", at.to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mount");
    let mut m = Mount(child);
    let start = Instant::now();
    while !mounted(at) {
        if let Ok(Some(status)) = m.0.try_wait() {
            panic!("coffer mount exited {status} before mounting");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    m
}

/// `umount`, after which the process must end, successfully.
fn unmount(mut m: Mount, at: &Path) {
    let out = std::process::Command::new("umount")
        .arg(at)
        .output()
        .expect("umount");
    assert!(out.status.success(), "{out:?}");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = m.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still running after umount"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "coffer mount exited {status}");
}

fn mounted(at: &Path) -> bool {
    let at = at.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(at.as_str()))
}

#[test]
fn mount_shows_every_snapshot_with_contents_owners_and_modes_and_refuses_a_damaged_file() {
    require_root("mounts with FUSE and sets owners");
    assert!(
        Path::new("/dev/fuse").exists() && Path::new("/usr/bin/fusermount3").exists(),
        "needs /dev/fuse and fusermount3: run tests/run, which installs fuse3"
    );
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    let old = noise(100_000, 1);
    std::fs::write(data.join("a.txt"), &old).expect("write");
    world.write_config(&dir_source("files", &data, ""));
    world.ok(&["backup", "app"]);
    std::thread::sleep(Duration::from_millis(1100));
    let new = noise(120_000, 2);
    std::fs::write(data.join("a.txt"), &new).expect("write");
    std::fs::set_permissions(data.join("a.txt"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    std::os::unix::fs::chown(data.join("a.txt"), Some(1234), Some(5678)).expect("chown");
    let big = noise(3 << 20, 3);
    std::fs::write(data.join("sub/big.bin"), &big).expect("write");
    std::fs::write(data.join("sub/other.bin"), noise(200_000, 4)).expect("write");
    std::fs::write(data.join("empty"), b"").expect("write");
    // Sparse: data, a 2 MiB hole, data, a hole at the end. Stored as its data only;
    // the mount writes each piece at its offset.
    let sparse_piece = noise(8192, 5);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(data.join("sparse")).expect("create");
        f.write_all_at(&sparse_piece, 0).expect("write");
        f.write_all_at(&sparse_piece, 2 << 20).expect("write");
        f.set_len(4 << 20).expect("extend");
    }
    std::os::unix::fs::symlink("a.txt", data.join("link")).expect("symlink");
    std::fs::hard_link(data.join("sub/big.bin"), data.join("sub/hard")).expect("link");
    world.ok(&["backup", "app"]);
    let ids = world.snapshots();
    assert_eq!(ids.len(), 2);

    let mnt = world.path("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let m = mount(&world, &mnt);

    let mut shown: Vec<String> = std::fs::read_dir(&mnt)
        .expect("list root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    shown.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(shown, want);

    let first = mnt.join(&ids[0]).join("files");
    let latest = mnt.join(&ids[1]).join("files");
    assert_eq!(std::fs::read(first.join("a.txt")).expect("read old"), old);
    assert!(!first.join("sub/big.bin").exists());
    assert_eq!(std::fs::read(latest.join("a.txt")).expect("read new"), new);
    let md = std::fs::metadata(latest.join("a.txt")).expect("stat");
    let live = std::fs::metadata(data.join("a.txt")).expect("stat live");
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid(), md.len(), md.mtime()),
        (0o640, 1234, 5678, new.len() as u64, live.mtime())
    );
    assert_eq!(std::fs::read(latest.join("sub/big.bin")).expect("big"), big);
    assert_eq!(
        std::fs::read(latest.join("sub/hard")).expect("hard link"),
        big
    );
    assert_eq!(std::fs::read(latest.join("empty")).expect("empty"), b"");
    assert_eq!(
        std::fs::read(latest.join("sparse")).expect("sparse"),
        std::fs::read(data.join("sparse")).expect("sparse, live")
    );
    assert_eq!(
        std::fs::read_link(latest.join("link")).expect("readlink"),
        Path::new("a.txt")
    );
    let err = std::fs::write(latest.join("a.txt"), b"x").expect_err("read-only");
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");

    unmount(m, &mnt);

    // Damage every pack throughout: mounted again, a file is refused whole (EIO)
    // rather than given out wrong.
    for pack in std::fs::read_dir(world.target().join("app/packs"))
        .expect("packs")
        .map(|e| e.expect("entry").path())
    {
        let mut bytes = std::fs::read(&pack).expect("read pack");
        for b in bytes.iter_mut().step_by(1000) {
            *b ^= 0xff;
        }
        std::fs::write(&pack, bytes).expect("damage pack");
    }
    let m = mount(&world, &mnt);
    let got = std::fs::read(latest.join("sub/other.bin"));
    assert_eq!(
        got.as_ref().map(Vec::len).map_err(|e| e.raw_os_error()),
        Err(Some(nix::libc::EIO))
    );
    unmount(m, &mnt);
}

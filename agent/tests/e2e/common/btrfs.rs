//! A real btrfs filesystem for a test: a sparse image file on a loop device,
//! formatted and mounted in a temporary directory, and taken down again (unmount,
//! detach the loop device) when the guard drops, also while a failing test
//! unwinds. Needs root and btrfs-progs, which tests/run installs.

use super::{require_root, require_tool};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Btrfs {
    dir: tempfile::TempDir,
    loop_dev: Option<String>,
    mounted: bool,
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}; run tests/run"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Btrfs {
    /// A fresh btrfs of 1 GiB (sparse: it takes what is written).
    pub fn new() -> Btrfs {
        require_root("mounts a btrfs filesystem on a loop device");
        for tool in ["losetup", "mkfs.btrfs", "btrfs", "mount", "umount"] {
            require_tool(tool);
        }
        let mut fs = Btrfs {
            dir: tempfile::tempdir().expect("tempdir"),
            loop_dev: None,
            mounted: false,
        };
        let image = fs.dir.path().join("image");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(1 << 30))
            .expect("image file");
        fs.loop_dev = Some(run(
            "losetup",
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&image),
        ));
        run(
            "mkfs.btrfs",
            Command::new("mkfs.btrfs").arg("-q").arg(fs.device()),
        );
        std::fs::create_dir(fs.mnt()).expect("mount point");
        run(
            "mount",
            Command::new("mount").arg(fs.device()).arg(fs.mnt()),
        );
        fs.mounted = true;
        fs
    }

    fn device(&self) -> &str {
        self.loop_dev.as_deref().unwrap_or_default()
    }

    /// Where the filesystem is mounted (its top-level subvolume).
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Makes a subvolume at `rel` under the mount point; returns its path.
    pub fn subvolume(&self, rel: &str) -> PathBuf {
        let path = self.mnt().join(rel);
        run(
            "btrfs subvolume create",
            Command::new("btrfs")
                .args(["subvolume", "create"])
                .arg(&path),
        );
        path
    }

    /// Every subvolume on the filesystem, as `btrfs subvolume list` names them.
    pub fn subvolumes(&self) -> Vec<String> {
        run(
            "btrfs subvolume list",
            Command::new("btrfs")
                .args(["subvolume", "list"])
                .arg(self.mnt()),
        )
        .lines()
        .filter_map(|l| l.split(" path ").nth(1).map(str::to_string))
        .collect()
    }

    /// A read-only snapshot of `subvolume` at `at`, as a run would take it.
    pub fn snapshot(&self, subvolume: &Path, at: &Path) {
        run(
            "btrfs subvolume snapshot",
            Command::new("btrfs")
                .args(["subvolume", "snapshot", "-r"])
                .arg(subvolume)
                .arg(at),
        );
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a coffer a failed test left running may still hold a file open.
            let _ = Command::new("umount").arg("-l").arg(self.mnt()).status();
        }
        if let Some(dev) = &self.loop_dev {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}

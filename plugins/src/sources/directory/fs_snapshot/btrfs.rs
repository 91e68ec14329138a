//! `snapshot = "btrfs"`: a read-only snapshot of the subvolume holding a source's
//! path, at `<subvolume root>/.coffer-snapshots/<job>.<source>`, made and deleted
//! with the `btrfs` command (btrfs-progs). Inside the subvolume because only there
//! is it certainly on the same filesystem (the subvolume root may be a mount
//! point); the directory is created for the run and removed when empty again.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where the snapshots go, inside the subvolume root. A snapshot of the subvolume
/// holds this directory too (empty), so a walk of the whole subvolume skips it.
pub(crate) const DIR: &str = ".coffer-snapshots";

/// The inode of every btrfs subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOLUME_ROOT_INO: u64 = 256;
/// The inode of the empty directory a snapshot holds where the snapshotted
/// subvolume had a nested subvolume (BTRFS_EMPTY_SUBVOL_DIR_OBJECTID).
const NESTED_STUB_INO: u64 = 2;

/// Whether a directory met inside a snapshot stands for a nested subvolume, whose
/// contents no snapshot of its parent holds.
pub(crate) fn is_nested_stub(md: &crate::fs::stat::Stat) -> bool {
    md.is_dir() && md.ino() == NESTED_STUB_INO
}

/// The root of the subvolume holding `path` (absolute, canonical): the highest
/// directory above it on the same device, which must be a subvolume root. Every
/// subvolume has a device number of its own, so that is where it begins.
pub(crate) fn subvolume_root(path: &Path) -> Result<PathBuf, String> {
    let fs = nix::sys::statfs::statfs(path).map_err(|e| format!("cannot statfs it: {e}"))?;
    if fs.filesystem_type() != nix::sys::statfs::BTRFS_SUPER_MAGIC {
        return Err(format!(
            "it is not on btrfs (filesystem type {:#x}); remove `snapshot = \"btrfs\"`, or use \
             snapshot_command and release_command for LVM, ZFS and others",
            fs.filesystem_type().0
        ));
    }
    let dev = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat it: {e}"))?
        .dev();
    let mut root = path;
    while let Some(parent) = root.parent() {
        match std::fs::metadata(parent) {
            Ok(md) if md.dev() == dev => root = parent,
            _ => break,
        }
    }
    let ino = std::fs::metadata(root)
        .map_err(|e| format!("cannot stat {}: {e}", root.display()))?
        .ino();
    if ino != SUBVOLUME_ROOT_INO {
        // A bind mount of a directory inside a subvolume: its root is not visible here.
        return Err(format!(
            "the subvolume holding it is not visible here ({} is not a subvolume root; a bind \
             mount?); point `path` at the subvolume's own mount, or use snapshot_command",
            root.display()
        ));
    }
    Ok(root.to_path_buf())
}

fn run(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = crate::process::child::command("btrfs")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot start btrfs: {e} (install btrfs-progs: apt-get install btrfs-progs)")
        })?;
    if out.status.success() {
        return Ok(());
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Err(format!(
        "`btrfs {}` failed ({}): {}",
        shown.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Makes `snapshot` (in `root/.coffer-snapshots`) a read-only snapshot of `root`.
pub(crate) fn create(root: &Path, snapshot: &Path) -> Result<(), String> {
    let args = [
        "subvolume".as_ref(),
        "snapshot".as_ref(),
        "-r".as_ref(),
        root.as_os_str(),
        snapshot.as_os_str(),
    ];
    // Another job's run may remove the emptied directory between our mkdir and
    // the snapshot: then make it again, a few times.
    let mut tries = 0;
    loop {
        tries += 1;
        if let Some(dir) = snapshot.parent() {
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(format!("cannot create {}: {e}", dir.display()));
                }
                _ => {}
            }
        }
        match run(&args) {
            Ok(()) => return Ok(()),
            Err(_) if tries < 3 && snapshot.parent().is_some_and(|d| !d.exists()) => {}
            Err(e) => {
                remove_dir_if_empty(snapshot);
                return Err(e);
            }
        }
    }
}

/// Deletes `snapshot`; one that is not there is already released.
pub(crate) fn delete(snapshot: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(snapshot) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            remove_dir_if_empty(snapshot);
            return Ok(());
        }
        Ok(md) if md.ino() != SUBVOLUME_ROOT_INO => {
            return Err(format!(
                "{} is not a btrfs subvolume; coffer leaves it alone, look at it and remove it by hand",
                snapshot.display()
            ));
        }
        _ => {}
    }
    run(&[
        "subvolume".as_ref(),
        "delete".as_ref(),
        snapshot.as_os_str(),
    ])?;
    remove_dir_if_empty(snapshot);
    Ok(())
}

/// `.coffer-snapshots` goes once no snapshot is left in it (another source's may be).
fn remove_dir_if_empty(snapshot: &Path) {
    if let Some(dir) = snapshot.parent()
        && dir.file_name() == Some(DIR.as_ref())
    {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The name a job's source gives its snapshot: coffer's, the job's and the source's.
pub(crate) fn snapshot_path(root: &Path, job: &str, source: &str) -> PathBuf {
    root.join(DIR).join(format!("{job}.{source}"))
}

/// For tests and messages: the command that removes a snapshot by hand.
pub(crate) fn delete_command(snapshot: &Path) -> String {
    format!("btrfs subvolume delete {}", snapshot.display())
}

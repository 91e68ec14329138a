//! Whether a restore's directory sources fit where they go, asked before anything
//! is written: the blocks and inodes their entries need against what each
//! destination's filesystem has free.
//!
//! A manifest is small for what it can ask for: 4,000,000 folders compress into a
//! 3.4 MB object and take 16 GB of an ext4 (a block each) and 4,000,000 inodes, and
//! a genuine manifest can be just as dense (a tree unpacked from an archive), so
//! its size cannot tell them apart. What a restore can promise is never to fill a
//! filesystem: a snapshot that does not fit is refused whole, before its first
//! entry, instead of failing on a full disk after an hour, with the disk full.
//!
//! The estimate is a floor: file contents (a sparse file's data only, not its
//! holes), a block per directory (ext4; XFS and btrfs keep small ones in less) and
//! an inode per entry but hard links; not the blocks a small file rounds up to. A
//! filesystem that reports no size (ramfs) or no number of inodes (btrfs) is not
//! asked for it.

use anyhow::{Context, Result};
use coffer_plugins::{EntryKind, FileEntry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the entries of one source need, before the filesystem's block size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub bytes: u64,
    pub dirs: u64,
    pub inodes: u64,
}

impl Need {
    /// A whole source, from the counts kept while its manifest was read.
    pub fn of_log(log: &coffer_plugins::entry_log::EntryLog) -> Need {
        Need {
            bytes: log.bytes().saturating_sub(log.holes()),
            dirs: log.dirs(),
            inodes: log.len().saturating_sub(log.hardlinks()),
        }
    }

    /// The entries a `--path` restore keeps, counted one by one.
    pub fn of_entries(entries: impl Iterator<Item = std::io::Result<FileEntry>>) -> Result<Need> {
        let mut n = Need::default();
        for e in entries {
            let e = e.context("cannot read the manifest's file list")?;
            match e.kind {
                EntryKind::Hardlink => continue,
                EntryKind::Dir => n.dirs += 1,
                EntryKind::File => {
                    let data = match &e.sparse {
                        Some(map) => map.iter().fold(0u64, |n, (_, l)| n.saturating_add(*l)),
                        None => e.size,
                    };
                    n.bytes = n.bytes.saturating_add(data.min(e.size));
                }
                _ => {}
            }
            n.inodes += 1;
        }
        Ok(n)
    }
}

/// A filesystem's free space as statvfs(3) gives it to unprivileged users (root's
/// reserve is what keeps a full disk usable: a restore does not take it).
#[derive(Debug, Clone, Copy)]
struct Free {
    /// `None` when the filesystem reports no size (ramfs grows into memory).
    bytes: Option<u64>,
    block: u64,
    /// `None` when the filesystem has no fixed number of inodes (btrfs).
    inodes: Option<u64>,
}

fn free_at(path: &Path) -> Result<(u64, Free)> {
    // The destination may not exist yet: its nearest existing folder says where
    // it will be.
    let (at, md) = path
        .ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find_map(|a| std::fs::metadata(a).ok().map(|md| (a, md)))
        .with_context(|| format!("cannot find where {} would be", path.display()))?;
    let st = nix::sys::statvfs::statvfs(at)
        .with_context(|| format!("cannot ask how much room {} has", at.display()))?;
    let frag = st.fragment_size().max(1);
    Ok((
        std::os::unix::fs::MetadataExt::dev(&md),
        Free {
            bytes: (st.blocks() > 0).then(|| st.blocks_available().saturating_mul(frag)),
            block: st.block_size().max(512),
            inodes: (st.files() > 0).then(|| st.files_available()),
        },
    ))
}

/// The sources of one restore, gathered by the filesystem they go to.
#[derive(Debug, Default)]
pub struct Room {
    /// Per device: where (the first destination seen), which sources, what they need.
    wanted: BTreeMap<u64, (PathBuf, Vec<String>, Need, Free)>,
}

impl Room {
    /// Source `name` goes to `dest` and needs `need`.
    pub fn add(&mut self, name: &str, dest: &Path, need: Need) -> Result<()> {
        let (dev, free) = free_at(dest)?;
        let slot = self
            .wanted
            .entry(dev)
            .or_insert_with(|| (dest.to_path_buf(), Vec::new(), Need::default(), free));
        slot.1.push(name.to_string());
        slot.2.bytes = slot.2.bytes.saturating_add(need.bytes);
        slot.2.dirs = slot.2.dirs.saturating_add(need.dirs);
        slot.2.inodes = slot.2.inodes.saturating_add(need.inodes);
        Ok(())
    }

    /// Refuses the restore when any filesystem lacks the room its sources need.
    pub fn check(&self, snapshot: &str) -> Result<()> {
        for (dest, names, need, free) in self.wanted.values() {
            let bytes = need
                .bytes
                .saturating_add(need.dirs.saturating_mul(free.block));
            let sources = format!(
                "source{} {}",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            );
            if let Some(free_bytes) = free.bytes
                && bytes > free_bytes
            {
                anyhow::bail!(
                    "snapshot {snapshot}: {sources} need at least {} ({} of file contents and \
                     {} folders) and the filesystem of {} has {} free; nothing was written. \
                     Free space there, or restore elsewhere with --to DIR",
                    crate::units::bytes(bytes),
                    crate::units::bytes(need.bytes),
                    need.dirs,
                    dest.display(),
                    crate::units::bytes(free_bytes)
                );
            }
            if let Some(inodes) = free.inodes
                && need.inodes > inodes
            {
                anyhow::bail!(
                    "snapshot {snapshot}: {sources} need {} inodes (one per file, folder and \
                     link) and the filesystem of {} has {inodes} free; nothing was written. \
                     Restore elsewhere with --to DIR, on a filesystem with more inodes",
                    need.inodes,
                    dest.display()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_need_their_data_a_folder_each_and_an_inode_each_but_links() {
        let mut file = FileEntry::bare("f", EntryKind::File);
        file.size = 1000;
        let mut sparse = FileEntry::bare("s", EntryKind::File);
        sparse.size = 1 << 40;
        sparse.sparse = Some(vec![(0, 10), (1 << 20, 20)]);
        let list = [
            FileEntry::bare(".", EntryKind::Dir),
            FileEntry::bare("d", EntryKind::Dir),
            file,
            sparse,
            FileEntry::bare("h", EntryKind::Hardlink),
            FileEntry::bare("l", EntryKind::Symlink),
        ];
        let need = Need::of_entries(list.into_iter().map(Ok)).expect("need");
        assert_eq!(
            need,
            Need {
                bytes: 1030,
                dirs: 2,
                inodes: 5
            }
        );
    }

    #[test]
    fn a_restore_larger_than_the_free_space_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("not/yet/made");
        let mut room = Room::default();
        room.add("files", &dest, Need::default()).expect("add");
        room.check("S").expect("nothing fits anywhere");
        room.add(
            "more",
            &dest,
            Need {
                bytes: u64::MAX / 2,
                dirs: 0,
                inodes: 1,
            },
        )
        .expect("add");
        let err = room.check("S").expect_err("too large").to_string();
        assert!(
            err.contains("sources files, more") && err.contains("nothing was written"),
            "{err}"
        );
    }
}

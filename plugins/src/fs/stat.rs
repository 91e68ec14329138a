//! What a walk and a read know of an entry: its stat, taken with one `statx`
//! relative to its directory (no handle opened and closed per file, as
//! `std::fs::Metadata` would need: an unchanged run of a million files spent a
//! third of its system time on those) and carrying the inode flags that the same
//! call returns, so that the entry's attributes need no second `statx`.
//! The accessors are named as std's `Metadata` and `MetadataExt` name them.

use crate::fs::inode_flags::{self, InodeFlag};
use rustix::fs::{AtFlags, FileType, StatxAttributes, StatxFlags};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// The stat of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    mode: u32,
    ino: u64,
    dev: u64,
    rdev: u64,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    blocks: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// The immutable and append-only flags, when the call that took the stat
    /// reported them (`statx`); `None` from std's `Metadata`.
    flags: Option<StatxAttributes>,
}

/// What `statx` is asked for: what `stat` returns.
const WANTED: StatxFlags = StatxFlags::BASIC_STATS;

impl Stat {
    /// The stat of `name` in `dir`, never followed.
    pub fn at<Fd: AsFd>(dir: Fd, name: &OsStr) -> io::Result<Stat> {
        match rustix::fs::statx(&dir, name, AtFlags::SYMLINK_NOFOLLOW, WANTED) {
            Ok(st) => Ok(Stat::from_statx(&st)),
            Err(e) if no_statx(e) => {
                let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                Ok(Stat::from_stat(&st))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The stat of an open handle (a file, a directory, an `O_PATH` handle).
    pub fn of<Fd: AsFd>(fd: Fd) -> io::Result<Stat> {
        match rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, WANTED) {
            Ok(st) => Ok(Stat::from_statx(&st)),
            Err(e) if no_statx(e) => Ok(Stat::from_stat(&rustix::fs::fstat(&fd)?)),
            Err(e) => Err(e.into()),
        }
    }

    fn from_statx(st: &rustix::fs::Statx) -> Stat {
        Stat {
            mode: u32::from(st.stx_mode),
            ino: st.stx_ino,
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
            nlink: u64::from(st.stx_nlink),
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: st.stx_size,
            blocks: st.stx_blocks,
            mtime: (st.stx_mtime.tv_sec, i64::from(st.stx_mtime.tv_nsec)),
            ctime: (st.stx_ctime.tv_sec, i64::from(st.stx_ctime.tv_nsec)),
            flags: Some(st.stx_attributes & st.stx_attributes_mask),
        }
    }

    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    fn from_stat(st: &rustix::fs::Stat) -> Stat {
        Stat {
            mode: st.st_mode as u32,
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            rdev: st.st_rdev as u64,
            nlink: st.st_nlink as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
            flags: None,
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }
    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }
    /// As std's `Metadata::len`, which has no `is_empty` either.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.size
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn mode(&self) -> u32 {
        self.mode
    }
    pub fn ino(&self) -> u64 {
        self.ino
    }
    pub fn dev(&self) -> u64 {
        self.dev
    }
    pub fn rdev(&self) -> u64 {
        self.rdev
    }
    pub fn nlink(&self) -> u64 {
        self.nlink
    }
    pub fn uid(&self) -> u32 {
        self.uid
    }
    pub fn gid(&self) -> u32 {
        self.gid
    }
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
    pub fn mtime(&self) -> i64 {
        self.mtime.0
    }
    pub fn mtime_nsec(&self) -> i64 {
        self.mtime.1
    }
    pub fn ctime(&self) -> i64 {
        self.ctime.0
    }
    pub fn ctime_nsec(&self) -> i64 {
        self.ctime.1
    }

    /// The inode flags, when the stat carried them.
    pub fn inode_flags(&self) -> Option<Vec<InodeFlag>> {
        self.flags.map(inode_flags::of_attributes)
    }
}

impl From<&std::fs::Metadata> for Stat {
    fn from(md: &std::fs::Metadata) -> Stat {
        Stat {
            mode: md.mode(),
            ino: md.ino(),
            dev: md.dev(),
            rdev: md.rdev(),
            nlink: md.nlink(),
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            blocks: md.blocks(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
            flags: None,
        }
    }
}

/// Where `statx` is missing or filtered out (old kernels, some seccomp
/// profiles), as std falls back too.
fn no_statx(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    /// Every field std reports is the same through `statx` at a name, through a
    /// handle, and from std's `Metadata`: a walk's stat is compared with a read's.
    #[test]
    fn statx_at_a_name_and_on_a_handle_agree_with_std() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("f");
        std::fs::write(&path, b"hello").expect("write");
        std::os::unix::fs::symlink("f", tmp.path().join("l")).expect("symlink");
        let dir = File::open(tmp.path()).expect("dir");
        for name in ["f", "l"] {
            let std_md = std::fs::symlink_metadata(tmp.path().join(name)).expect("stat");
            let at = Stat::at(&dir, OsStr::new(name)).expect("statx");
            let mut from_std = Stat::from(&std_md);
            from_std.flags = at.flags;
            assert_eq!(at, from_std, "{name}");
        }
        let file = File::open(&path).expect("open");
        let mut of = Stat::of(&file).expect("statx");
        assert_eq!(of.len(), 5);
        assert!(of.is_file() && !of.is_dir() && !of.is_symlink());
        assert!(of.inode_flags().is_some_and(|f| f.is_empty()));
        of.flags = None;
        assert_eq!(of, Stat::from(&std::fs::metadata(&path).expect("stat")));
        assert!(Stat::at(&dir, OsStr::new("l")).expect("statx").is_symlink());
    }
}

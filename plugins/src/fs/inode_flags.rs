//! The immutable and append-only inode flags (`chattr +i`, `chattr +a`): recorded in
//! the manifest and counted in a warning at backup time, but not set by a restore.
//!
//! Setting them is not done because a restore works around them badly: an immutable
//! or append-only file cannot be renamed, linked or removed, so the staging folder
//! could not be swapped into place, and a later `restore --force` could not remove
//! the tree it replaces. Read through `statx` (its attributes field), which needs no
//! open file and so works on directories and symlinks alike, relative to the
//! entry's directory when the walk has it open.

use crate::fs::xattr::On;
use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InodeFlag {
    Immutable,
    AppendOnly,
    /// A flag a later coffer records; shown, never acted on.
    #[serde(other)]
    Other,
}

impl InodeFlag {
    pub fn describe(self) -> &'static str {
        match self {
            InodeFlag::Immutable => "immutable (chattr +i)",
            InodeFlag::AppendOnly => "append-only (chattr +a)",
            InodeFlag::Other => "another flag",
        }
    }
}

/// The flags of the entry at `on`; none when the filesystem does not report them.
pub fn read(on: On<'_>) -> Vec<InodeFlag> {
    let got = match on {
        On::File(f) => rustix::fs::statx(f, "", AtFlags::EMPTY_PATH, StatxFlags::empty()),
        On::Path(p) => rustix::fs::statx(
            rustix::fs::CWD,
            p,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::empty(),
        ),
        On::At { dir, name, .. } => {
            rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::empty())
        }
    };
    let Ok(st) = got else { return Vec::new() };
    of_attributes(st.stx_attributes & st.stx_attributes_mask)
}

/// The flags among `statx`'s attributes (those its mask says it reports).
pub fn of_attributes(set: StatxAttributes) -> Vec<InodeFlag> {
    let mut out = Vec::new();
    if set.contains(StatxAttributes::IMMUTABLE) {
        out.push(InodeFlag::Immutable);
    }
    if set.contains(StatxAttributes::APPEND) {
        out.push(InodeFlag::AppendOnly);
    }
    out
}

/// Counts of flagged entries for a source's warning.
#[derive(Debug, Default)]
pub struct Tally {
    immutable: u64,
    append_only: u64,
}

impl Tally {
    pub fn add(&mut self, flags: &[InodeFlag]) {
        for f in flags {
            match f {
                InodeFlag::Immutable => self.immutable += 1,
                InodeFlag::AppendOnly => self.append_only += 1,
                InodeFlag::Other => {}
            }
        }
    }

    pub fn summary(&self) -> Option<String> {
        if self.immutable + self.append_only == 0 {
            return None;
        }
        Some(format!(
            "{} immutable and {} append-only entries: coffer records these flags but a \
             restore does not set them (set them again with chattr +i / chattr +a)",
            self.immutable, self.append_only
        ))
    }
}

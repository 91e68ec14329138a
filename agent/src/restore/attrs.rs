//! Owners, extended attributes, modes and times of restored entries, applied after
//! all contents are written: children before parents (directories last, so writing
//! into them is never blocked by their final mode), chown before the attributes
//! (chown clears a file capability), the attributes before chmod (setting an ACL
//! sets the mode's group bits: the mode set last is the recorded one) and chmod
//! after chown (chown clears setuid), never following symlinks.

use crate::restore::tree_check::Owners;
use crate::restore::tree_check::expected_mode;
use crate::restore::xattrs::{self, Tally};
use anyhow::{Context, Result};
use coffer_config::RestorePolicy;
use coffer_plugins::ids::IdCache;
use coffer_plugins::xattr::On;
use coffer_plugins::{EntryKind, FileEntry};
use filetime::FileTime;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Sets a regular file's owner, mode and times through its open handle, right
/// after its content is written: no path lookups, nothing to follow.
#[derive(Debug)]
pub struct FileAttrs<'a> {
    policy: &'a RestorePolicy,
    owners: Owners,
    ids: IdCache,
    /// What could not be set, for the source's warnings.
    pub tally: Tally,
}

impl<'a> FileAttrs<'a> {
    pub fn new(policy: &'a RestorePolicy, owners: Owners) -> Self {
        FileAttrs {
            policy,
            owners,
            ids: IdCache::default(),
            tally: Tally::default(),
        }
    }

    /// `e` is the file's manifest entry.
    pub fn apply(&mut self, file: &std::fs::File, e: &FileEntry, shown: &Path) -> Result<()> {
        if let Some((uid, gid)) = owner_of(e, self.policy, self.owners, &mut self.ids) {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {} to {uid}:{gid}", shown.display()))?;
        }
        let mode = expected_mode(e, self.policy);
        xattrs::apply(
            On::File(file),
            shown,
            e,
            mode,
            self.owners,
            &mut self.ids,
            &mut self.tally,
        );
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {} to {mode:04o}", shown.display()))?;
        let t = FileTime::from_unix_time(e.mtime, e.mtime_nsec);
        filetime::set_file_handle_times(file, Some(t), Some(t))
            .with_context(|| format!("cannot set times of {}", shown.display()))?;
        Ok(())
    }
}

fn owner_of(
    e: &FileEntry,
    policy: &RestorePolicy,
    owners: Owners,
    ids: &mut IdCache,
) -> Option<(u32, u32)> {
    match owners {
        Owners::Ignore => None,
        Owners::Numeric => Some((e.uid, e.gid)),
        Owners::ByName => {
            crate::restore::tree_check::expected_owner(e, policy, Owners::ByName, ids)
        }
    }
}

/// Applies attributes of everything but regular files (set by `FileAttrs` while
/// unpacking) under `root`: either every entry but the root (`root_only` false) or
/// only the root entry to `root` itself. Extended attributes that cannot be set
/// go to `tally`.
pub fn apply(
    root: &Path,
    entries: &[FileEntry],
    policy: &RestorePolicy,
    owners: Owners,
    root_only: bool,
    tally: &mut Tally,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut ids = IdCache::default();
    for e in entries.iter().rev() {
        if e.path.is_root() != root_only || matches!(e.kind, EntryKind::Hardlink | EntryKind::File)
        {
            continue;
        }
        let path = if root_only {
            root.to_path_buf()
        } else {
            root.join(e.path.as_path())
        };
        if !root_only && std::fs::symlink_metadata(&path).is_err() {
            continue; // not created (a device node without --devices)
        }
        let owner = match owners {
            Owners::Ignore => None,
            Owners::Numeric => Some((e.uid, e.gid)),
            Owners::ByName => {
                crate::restore::tree_check::expected_owner(e, policy, Owners::ByName, &mut ids)
            }
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {} to {uid}:{gid}", path.display()))?;
        }
        let mode = expected_mode(e, policy);
        xattrs::apply(On::Path(&path), &path, e, mode, owners, &mut ids, tally);
        if e.kind != EntryKind::Symlink {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot chmod {} to {mode:04o}", path.display()))?;
        }
        let t = FileTime::from_unix_time(e.mtime, e.mtime_nsec);
        if let Err(err) = filetime::set_symlink_file_times(&path, t, t) {
            warnings.push(format!("{}: cannot set times: {err}", path.display()));
        }
    }
    Ok(warnings)
}

/// Resolves the policy's user and group once up front, so a typo fails before
/// anything is written rather than after.
pub fn check_policy_owner(policy: &RestorePolicy) -> Result<()> {
    let mut ids = IdCache::default();
    if let Some(o) = &policy.owner {
        if ids.uid(&o.user).is_none() {
            anyhow::bail!(
                "restore owner: no user \"{}\" on this host; create it or change the source's restore.owner",
                o.user
            );
        }
        if let Some(g) = &o.group
            && ids.gid(g).is_none()
        {
            anyhow::bail!(
                "restore owner: no group \"{g}\" on this host; create it or change the source's restore.owner"
            );
        }
    }
    Ok(())
}

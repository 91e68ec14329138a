//! Owners, extended attributes, modes and times of restored entries, applied after
//! all contents are written: children before parents (directories last, so writing
//! into them is never blocked by their final mode), chown before the attributes
//! (chown clears a file capability), the attributes before chmod (setting an ACL
//! sets the mode's group bits: the mode set last is the recorded one) and chmod
//! after chown (chown clears setuid), never following symlinks. Setuid, setgid
//! and sticky bits and capabilities are given only to an entry whose owner, once
//! chowned (or as created, when owners are left alone), is the recorded one
//! (`privileges`).

use crate::restore::dir_cursor::{DirCursor, at_path};
use crate::restore::privileges::{self, OwnerIs};
use crate::restore::tree_check::Owners;
use crate::restore::tree_check::expected_mode;
use crate::restore::xattrs::{self, Tally};
use anyhow::{Context, Result};
use coffer_config::RestorePolicy;
use coffer_plugins::ids::IdCache;
use coffer_plugins::xattr::On;
use coffer_plugins::{EntryKind, FileEntry};
use filetime::FileTime;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, Mode, UtimensatFlags, fchmodat, fstatat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::fchownat;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
        let owner = owner_of(e, self.policy, self.owners, &mut self.ids);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {} to {uid}:{gid}", shown.display()))?;
        }
        let owner_is = decide(
            e,
            (self.policy, self.owners, owner),
            || file.metadata().map(|m| (m.uid(), m.gid())),
            (&mut self.ids, &mut self.tally),
        )
        .with_context(|| format!("cannot read the owner of {}", shown.display()))?;
        let mode = expected_mode(e, self.policy, owner_is);
        xattrs::apply(
            On::File(file),
            shown,
            e,
            (mode, owner_is),
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

/// Whether `e` keeps its recorded setuid/setgid/sticky bits and capability: it is
/// owned by `owner` after chown, or, when owners are left alone (`None`), by what
/// `stat` reads. Notes in `tally` what it loses. Only entries with something at
/// stake are looked at.
fn decide(
    e: &FileEntry,
    (policy, owners, owner): (&RestorePolicy, Owners, Option<(u32, u32)>),
    stat: impl FnOnce() -> std::io::Result<(u32, u32)>,
    (ids, tally): (&mut IdCache, &mut Tally),
) -> std::io::Result<OwnerIs> {
    let at_stake = privileges::at_stake(e, policy);
    if at_stake.is_empty() {
        return Ok(OwnerIs::Recorded);
    }
    let now = match owner {
        Some(owner) => owner,
        None => stat()?,
    };
    let owner_is = privileges::owner_is(e, now, owners, ids);
    if owner_is == OwnerIs::Other {
        tally.dropped.note(e, &at_stake);
    }
    Ok(owner_is)
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
/// unpacking) and the root under `root`, given children before their directories
/// (`Others::rev`). Entries are reached relative to their parent's handle
/// (`dir_cursor`), so any depth works. Extended attributes that cannot be set go
/// to `tally`.
pub fn apply(
    root: &Path,
    entries: impl Iterator<Item = Result<FileEntry>>,
    policy: &RestorePolicy,
    owners: Owners,
    tally: &mut Tally,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut ids = IdCache::default();
    let mut cursor =
        DirCursor::open(root).with_context(|| format!("cannot open {}", root.display()))?;
    for e in entries {
        let e = e?;
        if e.path.is_root() || matches!(e.kind, EntryKind::Hardlink | EntryKind::File) {
            continue;
        }
        let owner = owner_of(&e, policy, owners, &mut ids);
        let t = FileTime::from_unix_time(e.mtime, e.mtime_nsec);
        let rel = e.path.as_path();
        let (parent, name) = (
            rel.parent().unwrap_or(Path::new("")),
            rel.file_name().unwrap_or(rel.as_os_str()),
        );
        cursor.enter(parent, false).map_err(anyhow::Error::msg)?;
        let dir = cursor.dir();
        let path = cursor.shown(name);
        let Ok(st) = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue; // not created (a device node without --devices)
        };
        if let Some((uid, gid)) = owner {
            fchownat(
                dir,
                name,
                Some(uid.into()),
                Some(gid.into()),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("cannot chown {} to {uid}:{gid}", path.display()))?;
        }
        let owner_is = decide(
            &e,
            (policy, owners, owner),
            || Ok((st.st_uid, st.st_gid)),
            (&mut ids, tally),
        )?;
        let mode = expected_mode(&e, policy, owner_is);
        let on = at_path(dir, name, &path);
        xattrs::apply(
            On::Path(&on),
            &path,
            &e,
            (mode, owner_is),
            owners,
            &mut ids,
            tally,
        );
        if e.kind != EntryKind::Symlink {
            // Not a symlink (checked above, in coffer's own staging folder): chmod
            // does not follow anything.
            fchmodat(
                dir,
                name,
                Mode::from_bits_truncate(mode),
                FchmodatFlags::FollowSymlink,
            )
            .with_context(|| format!("cannot chmod {} to {mode:04o}", path.display()))?;
        }
        let ts = TimeSpec::new(t.unix_seconds(), i64::from(t.nanoseconds()));
        if let Err(err) = utimensat(dir, name, &ts, &ts, UtimensatFlags::NoFollowSymlink) {
            warnings.push(format!("{}: cannot set times: {err}", path.display()));
        }
    }
    Ok(warnings)
}

/// Applies the source root's entry (`.`), when the snapshot has one, to `root`.
pub fn apply_root(
    root: &Path,
    entry: Option<&FileEntry>,
    policy: &RestorePolicy,
    owners: Owners,
    tally: &mut Tally,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let Some(e) = entry else {
        return Ok(warnings);
    };
    let mut ids = IdCache::default();
    let owner = owner_of(e, policy, owners, &mut ids);
    let t = FileTime::from_unix_time(e.mtime, e.mtime_nsec);
    apply_to_root(
        root,
        e,
        (policy, owner, owners),
        t,
        (&mut ids, tally),
        &mut warnings,
    )?;
    Ok(warnings)
}

/// The root entry's attributes, set on `root` itself.
fn apply_to_root(
    root: &Path,
    e: &FileEntry,
    (policy, owner, owners): (&RestorePolicy, Option<(u32, u32)>, Owners),
    t: FileTime,
    (ids, tally): (&mut IdCache, &mut Tally),
    warnings: &mut Vec<String>,
) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(root, Some(uid), Some(gid))
            .with_context(|| format!("cannot chown {} to {uid}:{gid}", root.display()))?;
    }
    let owner_is = decide(
        e,
        (policy, owners, owner),
        || std::fs::symlink_metadata(root).map(|m| (m.uid(), m.gid())),
        (ids, tally),
    )
    .with_context(|| format!("cannot read the owner of {}", root.display()))?;
    let mode = expected_mode(e, policy, owner_is);
    xattrs::apply(
        On::Path(root),
        root,
        e,
        (mode, owner_is),
        owners,
        ids,
        tally,
    );
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {} to {mode:04o}", root.display()))?;
    if let Err(err) = filetime::set_symlink_file_times(root, t, t) {
        warnings.push(format!("{}: cannot set times: {err}", root.display()));
    }
    Ok(())
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

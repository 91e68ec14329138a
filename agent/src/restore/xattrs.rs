//! Extended attributes of restored entries (user.*, POSIX ACLs, file capabilities):
//! what each entry should carry, set by restore and compared by `check`.
//!
//! Values come from the manifest (signed, and checked when read), never from the
//! archive's `SCHILY.*` records, which are there for other tar readers. An access
//! ACL is not set byte for byte: its owner, mask and other entries are the mode's
//! bits, so it gets the mode the entry ends up with (a `file_mode` policy changes
//! both), and the users and groups it names get this host's ids for their names,
//! as owners do. A file capability is expected only on an entry owned by its
//! recorded owner (`privileges`). `expected` computes that once for both sides.
//!
//! Restore sets exactly the expected set: a name the manifest does not list is
//! removed, which undoes an ACL inherited from a default ACL above the destination.
//! What the destination refuses does not fail the restore: it is counted and said
//! once per source, and `check` does not call an attribute the filesystem cannot
//! hold an inconsistency (it says so in a note).

use crate::restore::privileges::{self, OwnerIs};
use crate::restore::tree_check::Owners;
use coffer_plugins::ids::IdCache;
use coffer_plugins::inode_flags::InodeFlag;
use coffer_plugins::xattr::{self, On};
use coffer_plugins::{FileEntry, acl};
use std::collections::BTreeMap;
use std::path::Path;

/// The attributes `e` should carry once its mode is `mode` and it is owned as
/// `owner_is` says (a capability needs the recorded owner: `privileges`).
pub fn expected(
    e: &FileEntry,
    mode: u32,
    owners: Owners,
    owner_is: OwnerIs,
    ids: &mut IdCache,
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (name, value) in &e.xattrs {
        if !privileges::keeps_capability(name, owner_is) {
            continue;
        }
        let access = name == xattr::ACCESS_ACL;
        if !access && name != xattr::DEFAULT_ACL {
            out.insert(name.clone(), value.0.clone());
            continue;
        }
        // Not an ACL the kernel would take: set as it is, and let it refuse.
        let Some(mut entries) = acl::parse(&value.0) else {
            out.insert(name.clone(), value.0.clone());
            continue;
        };
        if owners != Owners::Numeric {
            acl::remap(&mut entries, |tag, id| {
                let name = acl::name_key(tag, id).and_then(|k| e.acl_names.get(&k));
                let local = match (tag, name) {
                    (acl::USER, Some(n)) => ids.uid(n),
                    (acl::GROUP, Some(n)) => ids.gid(n),
                    _ => None,
                };
                local.unwrap_or(id)
            });
        }
        if access {
            acl::with_mode(&mut entries, mode);
            // The kernel keeps no ACL that says no more than the mode.
            if acl::is_minimal(&entries) {
                continue;
            }
        }
        out.insert(name.clone(), acl::encode(&entries));
    }
    out
}

/// An attribute as a message shows it: ACLs as text, anything else by its size.
pub fn describe(name: &str, value: &[u8]) -> String {
    match acl::parse(value) {
        Some(entries) if name == xattr::ACCESS_ACL || name == xattr::DEFAULT_ACL => {
            acl::to_text(&entries, |_, _| None)
                .trim_end()
                .replace('\n', ",")
        }
        _ => format!("{} bytes", value.len()),
    }
}

/// What a restore of one source could not set, said once at the end.
#[derive(Debug, Default)]
pub struct Tally {
    /// Attributes refused because the filesystem has none of that kind, by kind.
    unsupported: BTreeMap<&'static str, u64>,
    /// Other refusals: how many, and the first few with their reasons.
    failed: u64,
    examples: Vec<String>,
    /// Entries recorded with flags a restore does not set.
    flagged: u64,
    flagged_examples: Vec<String>,
    /// Entries that lost setuid/setgid/sticky bits or a capability to another owner.
    pub dropped: privileges::Dropped,
}

const EXAMPLES: usize = 3;

fn kind(name: &str) -> &'static str {
    match name {
        xattr::ACCESS_ACL | xattr::DEFAULT_ACL => "POSIX ACLs",
        xattr::CAPABILITY => "file capabilities",
        _ => "user attributes",
    }
}

impl Tally {
    fn failed(&mut self, shown: &Path, what: &str, name: &str, err: &std::io::Error) {
        if xattr::unsupported(err) {
            *self.unsupported.entry(kind(name)).or_default() += 1;
            return;
        }
        self.failed += 1;
        if self.examples.len() < EXAMPLES {
            self.examples
                .push(format!("{what} {name} on {}: {err}", shown.display()));
        }
    }

    /// Notes an entry's flags, which a restore does not set.
    pub fn flags(&mut self, e: &FileEntry) {
        if e.flags.is_empty() {
            return;
        }
        self.flagged += 1;
        if self.flagged_examples.len() < EXAMPLES {
            let flags: Vec<&str> = e.flags.iter().map(|f| InodeFlag::describe(*f)).collect();
            self.flagged_examples
                .push(format!("{} ({})", e.path, flags.join(", ")));
        }
    }

    /// The source's warnings: one line per kind of problem.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.unsupported.is_empty() {
            let kinds: Vec<String> = self
                .unsupported
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            out.push(format!(
                "extended attributes NOT restored, the destination's filesystem does not \
                 support them: {} (ext4, XFS, btrfs and tmpfs keep them)",
                kinds.join(", ")
            ));
        }
        if self.failed > 0 {
            out.push(format!(
                "{} extended attributes could not be set or removed, e.g. {}",
                self.failed,
                self.examples.join("; ")
            ));
        }
        if self.flagged > 0 {
            out.push(format!(
                "{} entries had the immutable or append-only flag at backup time; a restore \
                 does not set these flags (chattr +i / +a), e.g. {}",
                self.flagged,
                self.flagged_examples.join(", ")
            ));
        }
        out.extend(self.dropped.warning());
        out
    }
}

/// Gives the entry at `on` exactly the attributes `expected` says, before its final
/// mode is set (and after its owner: chown clears a file capability).
pub fn apply(
    on: On<'_>,
    shown: &Path,
    e: &FileEntry,
    (mode, owner_is): (u32, OwnerIs),
    owners: Owners,
    ids: &mut IdCache,
    tally: &mut Tally,
) {
    tally.flags(e);
    let want = expected(e, mode, owners, owner_is, ids);
    match xattr::list_kept(on) {
        Ok(present) => {
            for name in present.iter().filter(|n| !want.contains_key(*n)) {
                if let Err(err) = xattr::remove(on, name)
                    && !xattr::absent(&err)
                {
                    tally.failed(shown, "cannot remove", name, &err);
                }
            }
        }
        Err(err) => tally.failed(shown, "cannot list", "attributes", &err),
    }
    for (name, value) in &want {
        if let Err(err) = xattr::set(on, name, value) {
            tally.failed(shown, "cannot set", name, &err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_plugins::EntryKind;
    use coffer_plugins::acl::{GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, entry};
    use coffer_plugins::xattr::Value;

    fn file_with(xattrs: &[(&str, Vec<u8>)], names: &[(&str, &str)]) -> FileEntry {
        FileEntry {
            mode: 0o660,
            xattrs: xattrs
                .iter()
                .map(|(n, v)| (n.to_string(), Value(v.clone())))
                .collect(),
            acl_names: names
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..FileEntry::bare("f", EntryKind::File)
        }
    }

    #[test]
    fn the_expected_acl_follows_the_final_mode_and_names() {
        let acl = acl::encode(&[
            entry(USER_OBJ, 6, None),
            entry(USER, 6, Some(4242)),
            entry(GROUP_OBJ, 4, None),
            entry(MASK, 6, None),
            entry(OTHER, 0, None),
        ]);
        let e = file_with(
            &[(xattr::ACCESS_ACL, acl.clone()), ("user.a", b"b".to_vec())],
            &[("user:4242", "root")],
        );
        let mut ids = IdCache::default();
        // Recorded mode, numeric owners: exactly what was read.
        let same = expected(&e, 0o660, Owners::Numeric, OwnerIs::Recorded, &mut ids);
        assert_eq!(same.get(xattr::ACCESS_ACL), Some(&acl));
        assert_eq!(same.get("user.a").map(Vec::as_slice), Some(&b"b"[..]));
        // A 0640 policy narrows the mask, not the owning group; the name maps.
        let got = expected(&e, 0o640, Owners::ByName, OwnerIs::Recorded, &mut ids);
        let entries = acl::parse(&got[xattr::ACCESS_ACL]).expect("acl");
        assert_eq!(entries[1], entry(USER, 6, Some(0)), "root's id here");
        assert_eq!(entries[2], entry(GROUP_OBJ, 4, None));
        assert_eq!(entries[3], entry(MASK, 4, None));
        // An ACL that says no more than the mode is not kept by the kernel.
        let minimal = acl::encode(&[
            entry(USER_OBJ, 6, None),
            entry(GROUP_OBJ, 4, None),
            entry(OTHER, 4, None),
        ]);
        let e = file_with(&[(xattr::ACCESS_ACL, minimal)], &[]);
        assert!(expected(&e, 0o600, Owners::ByName, OwnerIs::Recorded, &mut ids).is_empty());
    }
}

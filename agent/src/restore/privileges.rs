//! Setuid, setgid and sticky bits and file capabilities: what a restored entry may
//! keep of them. They hand whoever runs a file its owner's (or group's) privileges,
//! so they mean something only together with that owner: a user who can `chmod u+s`
//! their own binary must not get it back setuid root after `--owner skip`, or
//! setuid for an owner policy's user. So an entry keeps them only when its owner and
//! group on disk are exactly the recorded ones; otherwise setuid and setgid are
//! cleared, so is sticky on anything but a directory, and a capability is not set.
//! The decision looks at the owner the entry actually has (after chown, or as
//! created when owners are not restored), so the restore and `check` (which sees
//! only the disk) always agree, whoever runs them. libarchive (bsdtar) does much the
//! same: it restores setuid only where the uid on disk is the archive's, setgid only
//! where the gid is. GNU tar as root keeps the bits even with `--no-same-owner`
//! (tried: 1.34), and without `--same-permissions` clears them everywhere.
//!
//! A directory keeps its sticky bit whatever its owner: there it only stops users
//! from removing each other's files (a folder like /tmp), it grants nothing, and
//! clearing it would open a shared folder to deletion by everyone who can write
//! there. Its setgid bit (new entries take its group) is cleared like a file's: it
//! would let anyone who can write there make files of a group they are not in.
//! Modes a source's restore policy sets (`file_mode`, `dir_mode`) come from the
//! config, not from the snapshot, and are kept as written.

use crate::restore::tree_check::Owners;
use coffer_config::RestorePolicy;
use coffer_plugins::ids::IdCache;
use coffer_plugins::xattr;
use coffer_plugins::{EntryKind, FileEntry};

/// Whether an entry's owner and group on disk are the recorded ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerIs {
    /// Exactly the recorded owner and group: every recorded bit and capability is kept.
    Recorded,
    /// Anything else: setuid, setgid (and sticky on non-directories) are cleared and
    /// a capability is not set.
    Other,
}

const SETUID: u32 = 0o4000;
const SETGID: u32 = 0o2000;
const STICKY: u32 = 0o1000;

/// The mode bits an entry of `kind` keeps only with its recorded owner.
fn owner_bits(kind: EntryKind) -> u32 {
    match kind {
        EntryKind::Dir => SETUID | SETGID,
        _ => SETUID | SETGID | STICKY,
    }
}

/// Whether the mode `e` ends up with comes from the snapshot (no policy mode for
/// its kind), so its recorded bits are what is restored.
fn recorded_mode_applies(e: &FileEntry, policy: &RestorePolicy) -> bool {
    match e.kind {
        EntryKind::Dir => policy.dir_mode.is_none(),
        EntryKind::File | EntryKind::Hardlink => policy.file_mode.is_none(),
        _ => true,
    }
}

/// `e`'s recorded mode as it is restored for an owner that `owner_is`.
pub fn recorded_mode(e: &FileEntry, owner_is: OwnerIs) -> u32 {
    match owner_is {
        OwnerIs::Recorded => e.mode,
        OwnerIs::Other => e.mode & !owner_bits(e.kind),
    }
}

/// Whether a file's capability is set for an owner that `owner_is`.
pub fn keeps_capability(name: &str, owner_is: OwnerIs) -> bool {
    name != xattr::CAPABILITY || owner_is == OwnerIs::Recorded
}

/// What `e` would lose with another owner than its recorded one: "setuid",
/// "setgid", "sticky", "capability". Empty for nearly every entry, which then need
/// no owner lookup at all.
pub fn at_stake(e: &FileEntry, policy: &RestorePolicy) -> Vec<&'static str> {
    let mut out = Vec::new();
    if recorded_mode_applies(e, policy) {
        let bits = e.mode & owner_bits(e.kind);
        for (bit, name) in [(SETUID, "setuid"), (SETGID, "setgid"), (STICKY, "sticky")] {
            if bits & bit != 0 {
                out.push(name);
            }
        }
    }
    if e.xattrs.contains_key(xattr::CAPABILITY) {
        out.push("capability");
    }
    out
}

/// The ids of the owner and group `e` was recorded with, as this host knows them:
/// the recorded numeric ids with `--owner numeric` or where no name was recorded,
/// else the ids of the recorded names. `None` when a recorded name does not exist
/// here: the recorded id then belongs to another account of this host, or none.
fn recorded_owner(e: &FileEntry, owners: Owners, ids: &mut IdCache) -> Option<(u32, u32)> {
    if owners == Owners::Numeric {
        return Some((e.uid, e.gid));
    }
    let uid = match &e.user {
        Some(name) => ids.uid(name)?,
        None => e.uid,
    };
    let gid = match &e.group {
        Some(name) => ids.gid(name)?,
        None => e.gid,
    };
    Some((uid, gid))
}

/// Whether `e`, owned by `now` (uid, gid) on disk, has its recorded owner.
pub fn owner_is(e: &FileEntry, now: (u32, u32), owners: Owners, ids: &mut IdCache) -> OwnerIs {
    match recorded_owner(e, owners, ids) {
        Some(recorded) if recorded == now => OwnerIs::Recorded,
        _ => OwnerIs::Other,
    }
}

/// The entries of one source that lost bits or capabilities, said once at the end.
#[derive(Debug, Default)]
pub struct Dropped {
    count: u64,
    examples: Vec<String>,
}

/// How many entries a warning names; the rest are counted.
const NAMED: usize = 10;

impl Dropped {
    /// Notes that `e` lost `what` (from `at_stake`).
    pub fn note(&mut self, e: &FileEntry, what: &[&str]) {
        self.count += 1;
        if self.examples.len() < NAMED {
            self.examples
                .push(format!("{} ({})", e.path, what.join(", ")));
        }
    }

    /// The warning, when anything was dropped.
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let more = match self.count - self.examples.len() as u64 {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        Some(format!(
            "{} entries restored WITHOUT their setuid/setgid/sticky bits or file capabilities, \
             which come back only with the recorded owner and group, and these entries' owner \
             here is another (--owner skip, an owner policy, a restore not as root, or a \
             recorded user or group this host lacks): {}{more}; to keep them, restore as root \
             with the recorded owners",
            self.count,
            self.examples.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_config::OwnerSpec;

    fn entry(kind: EntryKind, mode: u32) -> FileEntry {
        FileEntry {
            mode,
            uid: 4242,
            gid: 4243,
            ..FileEntry::bare("x", kind)
        }
    }

    #[test]
    fn only_the_recorded_owner_keeps_the_bits() {
        let mut ids = IdCache::default();
        let f = entry(EntryKind::File, 0o7755);
        let recorded = owner_is(&f, (4242, 4243), Owners::ByName, &mut ids);
        assert_eq!(recorded, OwnerIs::Recorded);
        assert_eq!(recorded_mode(&f, recorded), 0o7755);
        for other in [(0, 4243), (4242, 0), (0, 0)] {
            let is = owner_is(&f, other, Owners::Ignore, &mut ids);
            assert_eq!(is, OwnerIs::Other, "{other:?}");
            assert_eq!(recorded_mode(&f, is), 0o755);
        }
        // A directory keeps its sticky bit; hard links are files.
        assert_eq!(
            recorded_mode(&entry(EntryKind::Dir, 0o7777), OwnerIs::Other),
            0o1777
        );
        assert_eq!(
            recorded_mode(&entry(EntryKind::Hardlink, 0o4755), OwnerIs::Other),
            0o755
        );
    }

    #[test]
    fn a_recorded_name_is_the_owner_and_an_unknown_one_is_not() {
        let mut ids = IdCache::default();
        // "root" is 0 on every host, whatever id the backup host gave it.
        let mut f = entry(EntryKind::File, 0o4755);
        f.user = Some("root".into());
        f.group = Some("root".into());
        assert_eq!(
            owner_is(&f, (0, 0), Owners::ByName, &mut ids),
            OwnerIs::Recorded
        );
        // ...but --owner numeric means the ids.
        assert_eq!(
            owner_is(&f, (0, 0), Owners::Numeric, &mut ids),
            OwnerIs::Other
        );
        assert_eq!(
            owner_is(&f, (4242, 4243), Owners::Numeric, &mut ids),
            OwnerIs::Recorded
        );
        // A name this host lacks: its id is someone else here, or no one.
        f.user = Some("coffer-no-such-user".into());
        assert_eq!(
            owner_is(&f, (4242, 0), Owners::ByName, &mut ids),
            OwnerIs::Other
        );
    }

    #[test]
    fn a_policy_mode_is_not_at_stake_but_a_capability_is() {
        let mut f = entry(EntryKind::File, 0o6755);
        let none = RestorePolicy::default();
        assert_eq!(at_stake(&f, &none), ["setuid", "setgid"]);
        let policy = RestorePolicy {
            owner: Some(OwnerSpec {
                user: "root".into(),
                group: None,
            }),
            file_mode: Some(0o4750),
            dir_mode: None,
        };
        assert!(at_stake(&f, &policy).is_empty());
        f.xattrs.insert(
            xattr::CAPABILITY.to_string(),
            coffer_plugins::xattr::Value(vec![1]),
        );
        assert_eq!(at_stake(&f, &policy), ["capability"]);
        assert!(at_stake(&entry(EntryKind::Dir, 0o1777), &none).is_empty());
        assert!(!keeps_capability(xattr::CAPABILITY, OwnerIs::Other));
        assert!(keeps_capability("user.a", OwnerIs::Other));
    }

    #[test]
    fn the_warning_names_a_few_and_counts_the_rest() {
        let mut d = Dropped::default();
        assert_eq!(d.warning(), None);
        for i in 0..12 {
            let e = FileEntry::bare(&format!("bin/t{i}"), EntryKind::File);
            d.note(&e, &["setuid"]);
        }
        let w = d.warning().expect("a warning");
        assert!(w.starts_with("12 entries restored WITHOUT"), "{w}");
        assert!(w.contains("bin/t0 (setuid), bin/t1 (setuid)"), "{w}");
        assert!(w.contains("bin/t9 (setuid) and 2 more"), "{w}");
        assert!(!w.contains("bin/t10"), "{w}");
    }
}

//! The extended-attribute side of a tree check: user.*, POSIX ACLs and file
//! capabilities on disk against what the manifest recorded (see `xattrs`).

use super::privileges::OwnerIs;
use super::tree_check::{Expectations, TreeReport, expected_mode};
use coffer_plugins::FileEntry;
use coffer_plugins::ids::IdCache;
use coffer_plugins::xattr::{self, On};
use std::path::Path;

/// Compares entries' extended attributes, with one value buffer for all.
pub(super) struct XattrCheck {
    value: Vec<u8>,
    /// Attributes the filesystem cannot hold: noted once, not inconsistencies.
    pub(super) unsupported: u64,
}

impl Default for XattrCheck {
    fn default() -> Self {
        XattrCheck {
            value: vec![0u8; xattr::MAX_VALUE],
            unsupported: 0,
        }
    }
}

impl XattrCheck {
    /// A hard link's attributes are its first name's and are compared there.
    /// `owner_is`: whether the entry's owner on disk is the recorded one (a
    /// capability is expected only then).
    pub(super) fn compare(
        &mut self,
        report: &mut TreeReport,
        (path, shown): (&Path, &str),
        want: &FileEntry,
        exp: &Expectations<'_>,
        owner_is: OwnerIs,
        ids: &mut IdCache,
    ) {
        let on = On::Path(path);
        let mode = expected_mode(want, exp.policy, owner_is);
        let expected = super::xattrs::expected(want, mode, exp.owners, owner_is, ids);
        for (name, value) in &expected {
            match xattr::get(on, name, &mut self.value) {
                Ok(n) if self.value[..n] == value[..] => {}
                Ok(n) => report.xattrs.push(format!(
                    "{shown}: {name} is {}, expected {}",
                    super::xattrs::describe(name, &self.value[..n]),
                    super::xattrs::describe(name, value)
                )),
                Err(e) if xattr::absent(&e) => {
                    report.xattrs.push(format!("{shown}: {name} missing"));
                }
                Err(e) if xattr::unsupported(&e) => self.unsupported += 1,
                Err(e) => report
                    .notes
                    .push(format!("{shown}: cannot read {name}: {e}")),
            }
        }
        match xattr::list_kept(on) {
            Ok(present) => {
                for name in present.iter().filter(|n| !expected.contains_key(*n)) {
                    let recorded_cap =
                        name == xattr::CAPABILITY && want.xattrs.contains_key(name.as_str());
                    let why = match recorded_cap {
                        // Recorded, but not for the owner it has now.
                        true => {
                            "is set, but a file capability is kept only with the recorded \
                             owner and group"
                        }
                        false => "is not in the snapshot",
                    };
                    report.xattrs.push(format!("{shown}: {name} {why}"));
                }
            }
            Err(e) => report
                .notes
                .push(format!("{shown}: cannot list extended attributes: {e}")),
        }
    }
}

//! What a backup records of a walked entry beyond its stat: the kept extended
//! attributes, the names of the users and groups its ACLs name, and its inode flags.
//! One per walk, so that what is not kept is counted per source and reported in one
//! warning each, not one per file.

use crate::fs::ids::NameCache;
use crate::fs::inode_flags::{self, InodeFlag, Tally};
use crate::fs::xattr::{self, On, Reader};
use crate::tree::entry::{EntryKind, FileEntry};
use crate::{acl, xattr::Xattrs};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default)]
pub struct EntryAttrs {
    xattrs: Reader,
    flags: Tally,
}

/// The names of the ids named in the entry's ACLs, where this host knows them.
fn acl_names(xattrs: &Xattrs, names: &mut NameCache) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for which in [xattr::ACCESS_ACL, xattr::DEFAULT_ACL] {
        let Some(entries) = xattrs.get(which).and_then(|v| acl::parse(&v.0)) else {
            continue;
        };
        for e in entries {
            let name = match e.tag {
                acl::USER => names.user(e.id),
                acl::GROUP => names.group(e.id),
                _ => None,
            };
            if let (Some(key), Some(name)) = (acl::name_key(e.tag, e.id), name) {
                out.insert(key, name);
            }
        }
    }
    out
}

impl EntryAttrs {
    /// Fills `e`'s attributes from the entry at `on` (its open file, or its path,
    /// never followed), its flags from `known_flags` when its stat carried them.
    /// `shown` names it in warnings.
    pub fn fill(
        &mut self,
        e: &mut FileEntry,
        on: On<'_>,
        shown: &Path,
        names: &mut NameCache,
        warnings: &mut Vec<String>,
        known_flags: Option<Vec<InodeFlag>>,
    ) {
        if e.kind == EntryKind::Hardlink {
            return;
        }
        e.xattrs = self.xattrs.read(on, shown, warnings);
        e.acl_names = acl_names(&e.xattrs, names);
        // The walk's `statx` carries them; only a stat from std needs a call.
        e.flags = known_flags.unwrap_or_else(|| inode_flags::read(on));
        self.flags.add(&e.flags);
    }

    /// The source's warnings about what was not kept.
    pub fn summary(&self) -> Vec<String> {
        self.xattrs
            .summary()
            .into_iter()
            .chain(self.flags.summary())
            .collect()
    }
}

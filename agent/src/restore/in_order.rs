//! A manifest's entries merged beside a walk (of a tree on disk, or of an
//! archive), both in walk order, so that comparing them needs no map of paths and
//! memory does not grow with the number of files. Used by `check`, restore's
//! check and deep verify.

use anyhow::Context as _;
use coffer_plugins::FileEntry;
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Where a relative path comes in the walk: depth first, each directory's entries
/// sorted by name bytes, the root (`.`) first. Comparing paths component by
/// component gives exactly that order, which is also the manifest's.
pub(crate) fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    Path::new(OsStr::from_bytes(a)).cmp(Path::new(OsStr::from_bytes(b)))
}

/// A manifest's entries, consumed in walk order beside a walk of a tree or an archive:
/// `find` returns the entry at a path when the manifest has one, and hands every
/// entry passed on the way (which the walk did not meet) to `missing`.
pub struct InOrder<I> {
    entries: I,
    next: Option<FileEntry>,
}

impl<I: Iterator<Item = std::io::Result<FileEntry>>> InOrder<I> {
    pub fn new(entries: I) -> anyhow::Result<Self> {
        let mut me = InOrder {
            entries,
            next: None,
        };
        me.advance()?;
        Ok(me)
    }

    /// Takes the current entry and reads the next one.
    fn advance(&mut self) -> anyhow::Result<Option<FileEntry>> {
        let next = self
            .entries
            .next()
            .transpose()
            .context("cannot read the manifest's file list")?;
        Ok(std::mem::replace(&mut self.next, next))
    }

    pub fn find(
        &mut self,
        key: &[u8],
        mut missing: impl FnMut(FileEntry),
    ) -> anyhow::Result<Option<FileEntry>> {
        while self
            .next
            .as_ref()
            .is_some_and(|w| walk_order(w.path.as_bytes(), key) == Ordering::Less)
        {
            self.advance()?.into_iter().for_each(&mut missing);
        }
        if self.next.as_ref().is_some_and(|w| w.path.as_bytes() == key) {
            return self.advance();
        }
        Ok(None)
    }

    /// Hands the entries the walk never reached to `missing`.
    pub fn rest(mut self, mut missing: impl FnMut(FileEntry)) -> anyhow::Result<()> {
        while let Some(w) = self.advance()? {
            missing(w);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_plugins::EntryKind;

    #[test]
    fn walk_order_is_depth_first_by_name_bytes() {
        let mut paths: Vec<&[u8]> = vec![b"b", b"a.c", b"a/z", b".", b"a", b"a/b/c", b"a/b", b"A"];
        paths.sort_by(|x, y| walk_order(x, y));
        let want: Vec<&[u8]> = vec![b".", b"A", b"a", b"a/b", b"a/b/c", b"a/z", b"a.c", b"b"];
        assert_eq!(paths, want);
    }

    #[test]
    fn in_order_finds_entries_and_reports_the_ones_passed() {
        let entry = |p: &str| FileEntry::bare(p, EntryKind::File);
        let list = [".", "a", "a/b", "a/c", "b", "c"].map(entry);
        let mut m = InOrder::new(list.iter().cloned().map(Ok)).expect("new");
        let mut missing = Vec::new();
        let found = |m: &mut InOrder<_>, key: &str, missing: &mut Vec<String>| {
            m.find(key.as_bytes(), |w| missing.push(w.path.to_string()))
                .expect("find")
                .map(|w| w.path.to_string())
        };
        assert_eq!(found(&mut m, ".", &mut missing).as_deref(), Some("."));
        // a and a/b were never walked: both are passed when a/c is found.
        assert_eq!(found(&mut m, "a/c", &mut missing).as_deref(), Some("a/c"));
        // An extra path between two listed ones finds nothing and passes nothing.
        assert_eq!(found(&mut m, "a/d", &mut missing), None);
        assert_eq!(missing, ["a", "a/b"]);
        m.rest(|w| missing.push(w.path.to_string())).expect("rest");
        assert_eq!(missing, ["a", "a/b", "b", "c"]);
    }
}

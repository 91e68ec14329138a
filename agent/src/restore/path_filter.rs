//! `restore --path GLOB`: which entries of a source a partial restore writes.
//!
//! A pattern is matched against the path inside the source (`uploads/2024/a.pdf`);
//! a folder that matches brings everything under it. A pattern whose first part
//! names a restored directory source (`storage/uploads/2024/a.pdf`, the form `ls`
//! and `find` print) applies to that source only, with the rest as the path inside
//! it (and, in case the source has a folder of its own name, as given too). The folders above a match
//! come too (without them the file has nowhere to go), and so does the first name
//! of a matching hard link, which the link is made from. Deciding that needs the
//! whole list once before the restore reads it again: one pass over the manifest's
//! entries (on disk), keeping only the names of the folders and first names needed.

use anyhow::{Result, anyhow};
use coffer_plugins::{EntryKind, FileEntry};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug)]
pub(crate) struct PathFilter {
    globs: GlobSet,
    /// Folders above a match, and first names of matching hard links.
    also: HashSet<Vec<u8>>,
    /// Entries that match (for the summary).
    pub(crate) matched: u64,
}

impl PathFilter {
    /// The filter of source `source` among the restored directory sources
    /// `sources`: the patterns that apply to it (see the module comment); `None`
    /// when none does.
    pub(crate) fn for_source(
        patterns: &[String],
        source: &str,
        sources: &[&str],
    ) -> Result<Option<PathFilter>> {
        let mut mine = Vec::new();
        for p in patterns {
            let bare = bare(p);
            let (head, rest) = bare.split_once('/').unwrap_or((bare, ""));
            if !sources.contains(&head) {
                mine.push(p.clone());
            } else if head == source {
                // `storage` alone: the whole source.
                let rest = bare_end(rest);
                mine.push(if rest.is_empty() {
                    "**".into()
                } else {
                    rest.into()
                });
                mine.push(p.clone());
            }
        }
        if mine.is_empty() {
            return Ok(None);
        }
        PathFilter::new(&mine).map(Some)
    }

    /// Patterns as given on the command line; a leading `./` or `/` is dropped.
    pub(crate) fn new(patterns: &[String]) -> Result<PathFilter> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let p = bare_end(bare(p));
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| crate::exit::usage(format!("--path {p}: {e}")))?;
            b.add(glob);
        }
        Ok(PathFilter {
            globs: b
                .build()
                .map_err(|e| anyhow!("cannot build the --path patterns: {e}"))?,
            also: HashSet::new(),
            matched: 0,
        })
    }

    /// Whether `path` or a folder above it matches a pattern.
    fn hits(&self, path: &[u8]) -> bool {
        let mut p = Some(Path::new(OsStr::from_bytes(path)));
        while let Some(at) = p {
            if at.as_os_str().is_empty() {
                break;
            }
            if self.globs.is_match(at) {
                return true;
            }
            p = at.parent();
        }
        false
    }

    /// The pass over every entry before the restore.
    pub(crate) fn learn(
        &mut self,
        entries: impl Iterator<Item = std::io::Result<FileEntry>>,
    ) -> Result<()> {
        for e in entries {
            let e = e?;
            if e.path.is_root() || !self.hits(e.path.as_bytes()) {
                continue;
            }
            self.matched += 1;
            self.above(e.path.as_bytes());
            if e.kind == EntryKind::Hardlink
                && let Some(first) = &e.link
                && !self.hits(first.as_bytes())
            {
                self.also.insert(first.as_bytes().to_vec());
                self.above(first.as_bytes());
            }
        }
        Ok(())
    }

    fn above(&mut self, path: &[u8]) {
        let mut p = Path::new(OsStr::from_bytes(path)).parent();
        while let Some(at) = p {
            if at.as_os_str().is_empty() || !self.also.insert(at.as_os_str().as_bytes().to_vec()) {
                break;
            }
            p = at.parent();
        }
    }

    /// Whether the restore writes `e` (after `learn`).
    pub(crate) fn keeps(&self, e: &FileEntry) -> bool {
        let path = e.path.as_bytes();
        e.path.is_root() || self.also.contains(path) || self.hits(path)
    }
}

/// A pattern without its leading `./` and `/`.
fn bare(p: &str) -> &str {
    let mut p = p;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            return p;
        }
    }
}

/// A pattern without a trailing `/` (`dir3/` names the folder `dir3`).
fn bare_end(p: &str) -> &str {
    p.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_plugins::RawPath;

    fn entry(path: &str, kind: EntryKind, link: Option<&str>) -> FileEntry {
        FileEntry {
            link: link.map(|l| RawPath::from_bytes(l.as_bytes())),
            ..FileEntry::bare(path, kind)
        }
    }

    #[test]
    fn a_match_brings_its_folders_and_a_matched_folder_its_contents() {
        use EntryKind::*;
        let all = vec![
            entry(".", Dir, None),
            entry("a", Dir, None),
            entry("a/b", Dir, None),
            entry("a/b/x.pdf", File, None),
            entry("a/b/y.txt", File, None),
            entry("c", Dir, None),
            entry("c/d", File, None),
            entry("e", File, None),
            entry("f/link", Hardlink, Some("e")),
        ];
        let mut f = PathFilter::new(&["a/*/*.pdf".into(), "c".into(), "./f/link".into()])
            .expect("patterns");
        f.learn(all.iter().cloned().map(Ok)).expect("learn");
        let kept: Vec<&str> = all
            .iter()
            .filter(|e| f.keeps(e))
            .map(|e| std::str::from_utf8(e.path.as_bytes()).expect("utf-8"))
            .collect();
        assert_eq!(
            kept,
            vec![".", "a", "a/b", "a/b/x.pdf", "c", "c/d", "e", "f/link"]
        );
        assert_eq!(f.matched, 4);
    }

    #[test]
    fn a_source_named_first_narrows_the_pattern_to_that_source() {
        use EntryKind::*;
        let all = [
            entry(".", Dir, None),
            entry("dir3", Dir, None),
            entry("dir3/sub", Dir, None),
            entry("dir3/sub/note.md", File, None),
            entry("dir3/other.md", File, None),
        ];
        let kept = |f: &mut PathFilter| -> Vec<String> {
            f.learn(all.iter().cloned().map(Ok)).expect("learn");
            all.iter()
                .filter(|e| f.keeps(e))
                .map(|e| String::from_utf8_lossy(e.path.as_bytes()).into_owned())
                .collect()
        };
        let sources = ["storage", "media"];
        let want = vec![".", "dir3", "dir3/sub", "dir3/sub/note.md"];
        for p in [
            "storage/dir3/sub/note.md",
            "/storage/dir3/sub/*.md",
            "dir3/sub/note.md",
        ] {
            let mut f = PathFilter::for_source(&[p.into()], "storage", &sources)
                .expect("pattern")
                .expect("applies to storage");
            assert_eq!(kept(&mut f), want, "{p}");
        }
        // Another source's pattern is not this one's.
        assert!(
            PathFilter::for_source(&["media/dir3".into()], "storage", &sources)
                .expect("pattern")
                .is_none()
        );
        // The source alone: all of it.
        let mut f = PathFilter::for_source(&["storage/".into()], "storage", &sources)
            .expect("pattern")
            .expect("applies");
        assert_eq!(kept(&mut f).len(), all.len());
    }

    #[test]
    fn a_star_does_not_cross_folders() {
        let mut f = PathFilter::new(&["*.pdf".into()]).expect("pattern");
        let all = [
            entry("x.pdf", EntryKind::File, None),
            entry("a/y.pdf", EntryKind::File, None),
        ];
        f.learn(all.iter().cloned().map(Ok)).expect("learn");
        assert!(f.keeps(&all[0]));
        assert!(!f.keeps(&all[1]));
    }
}

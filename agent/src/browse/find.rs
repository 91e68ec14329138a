//! Which snapshots hold a file, when the question is "when did this file go
//! missing" or "which backup still has last week's version". Every snapshot of
//! the job on the target is read once, oldest first, its file list streamed from
//! the scratch file (memory does not grow with the tree or the number of
//! snapshots). A snapshot that cannot be read (damaged, not signed by a trusted
//! key) is handed to the sink and skipped: one bad snapshot must not hide what
//! the others hold; the summary counts it.

use super::Snapshots;
use crate::exit::usage;
use crate::format::{Manifest, Marker};
use anyhow::{Context, Result};
use coffer_config::{Job, SourceType};
use coffer_plugins::{FileEntry, RawPath, escape_controls};
use globset::{GlobBuilder, GlobMatcher};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// PATTERN, and what it is matched against.
pub(crate) struct Pattern {
    glob: GlobMatcher,
    /// With a `/`: the path inside the source; without: the file name at any depth
    /// (restic's `find` does the same).
    whole_path: bool,
}

impl Pattern {
    pub(crate) fn new(pattern: &str) -> Result<Pattern> {
        let whole_path = pattern.contains('/');
        let p = if whole_path {
            pattern
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/')
        } else {
            pattern
        };
        if p.is_empty() {
            return Err(usage(format!(
                "pattern {pattern:?} matches nothing: give a file name or a path inside the source"
            )));
        }
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| usage(format!("pattern {}: {e}", escape_controls(pattern))))?
            .compile_matcher();
        Ok(Pattern { glob, whole_path })
    }

    fn matches(&self, path: &RawPath) -> bool {
        if path.is_root() {
            return false;
        }
        let path = Path::new(OsStr::from_bytes(path.as_bytes()));
        if self.whole_path {
            self.glob.is_match(path)
        } else {
            path.file_name()
                .is_some_and(|name| self.glob.is_match(Path::new(name)))
        }
    }
}

/// What the sink is handed, in the order found.
pub(crate) enum Found<'a> {
    /// An entry matching the pattern, in source `source` of snapshot `snapshot`.
    Match {
        snapshot: &'a str,
        source: &'a str,
        entry: &'a FileEntry,
    },
    /// A snapshot that could not be read (or only in part), and why; skipped.
    Unreadable {
        snapshot: &'a str,
        error: &'a anyhow::Error,
    },
}

/// What a search counted.
pub(crate) struct Summary {
    pub matches: u64,
    /// Snapshots with at least one match.
    pub snapshots_matched: u64,
    pub snapshots: u64,
    pub unreadable: u64,
}

/// Searches every snapshot of `job` for `pattern` (in one source when `source`
/// is given), handing each match and each unreadable snapshot to `sink`. A
/// source neither the config nor any snapshot read knows is bad usage.
pub(crate) fn find(
    snaps: &Snapshots<'_>,
    job: &Job,
    pattern: &Pattern,
    source: Option<&str>,
    mut sink: impl FnMut(Found<'_>) -> Result<()>,
) -> Result<Summary> {
    let markers = snaps.markers()?;
    // A source no longer in the config can still be in old snapshots.
    let mut source_seen = source.is_none_or(|s| job.sources.iter().any(|c| c.name == *s));
    let (mut matches, mut matched, mut unreadable) = (0u64, 0u64, 0u64);
    for marker in &markers {
        // Matches handed over before a list turned out damaged still count.
        let mut n = 0;
        let read = match snaps.trust.refusal(marker) {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => snaps.read(marker).and_then(|manifest| {
                source_seen |= source.is_some_and(|s| manifest.source(s).is_some());
                search(&manifest, marker, pattern, source, &mut sink, &mut n)
            }),
        };
        if n > 0 {
            matches += n;
            matched += 1;
        }
        if let Err(e) = read {
            unreadable += 1;
            sink(Found::Unreadable {
                snapshot: &marker.id,
                error: &e,
            })?;
        }
    }
    if !source_seen && let Some(s) = source {
        return Err(usage(format!(
            "job {} has no source \"{s}\", and no snapshot read holds one",
            job.name
        )));
    }
    Ok(Summary {
        matches,
        snapshots_matched: matched,
        snapshots: markers.len() as u64,
        unreadable,
    })
}

/// Hands the matches in one snapshot to `sink`, counting them in `n`.
fn search(
    manifest: &Manifest,
    marker: &Marker,
    pattern: &Pattern,
    source: Option<&str>,
    sink: &mut impl FnMut(Found<'_>) -> Result<()>,
    n: &mut u64,
) -> Result<()> {
    for src in manifest
        .sources
        .iter()
        .filter(|s| s.kind == SourceType::Directory)
        .filter(|s| source.is_none_or(|n| *n == s.name))
    {
        let list = src
            .entries
            .iter()
            .with_context(|| format!("cannot read the file list of source {}", src.name))?;
        for e in list {
            let e: FileEntry =
                e.with_context(|| format!("cannot read the file list of source {}", src.name))?;
            if !pattern.matches(&e.path) {
                continue;
            }
            *n += 1;
            sink(Found::Match {
                snapshot: &marker.id,
                source: &src.name,
                entry: &e,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RawPath {
        RawPath::from_bytes(s.as_bytes())
    }

    #[test]
    fn a_name_pattern_matches_at_any_depth_a_path_pattern_from_the_source() {
        let name = Pattern::new("*.pdf").expect("pattern");
        assert!(name.matches(&p("a.pdf")));
        assert!(name.matches(&p("x/y/z.pdf")));
        assert!(!name.matches(&p("x.pdf/y")));
        assert!(!name.matches(&p(".")));
        let path = Pattern::new("docs/*.txt").expect("pattern");
        assert!(path.matches(&p("docs/a.txt")));
        // `*` does not cross `/`.
        assert!(!path.matches(&p("docs/sub/a.txt")));
        assert!(!path.matches(&p("x/docs/a.txt")));
        assert!(
            Pattern::new("/docs/a.txt")
                .expect("pattern")
                .matches(&p("docs/a.txt"))
        );
        assert!(
            Pattern::new("docs/**/a.txt")
                .expect("pattern")
                .matches(&p("docs/x/y/a.txt"))
        );
        let weird = Pattern::new("a\n*").expect("pattern");
        assert!(weird.matches(&p("d/a\nerror: x")));
    }

    #[test]
    fn bad_patterns_are_bad_usage() {
        for bad in ["[", "/", "a/{b"] {
            let err = Pattern::new(bad).err().expect("refused");
            assert!(
                err.chain().any(|c| c.is::<crate::exit::UsageError>()),
                "{bad}: {err:#}"
            );
        }
    }
}

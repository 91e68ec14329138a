//! `coffer find`: which snapshots hold a file, when the question is "when did this
//! file go missing" or "which backup still has last week's version". Every
//! snapshot of the job on the target is read once, oldest first, its file list
//! streamed from the scratch file (memory does not grow with the tree or the
//! number of snapshots). A snapshot that cannot be read (damaged, not signed by a
//! trusted key) is reported and skipped: one bad snapshot must not hide what the
//! others hold; the exit code says so at the end.

use crate::cli::entries::{EntryJson, Out, link_suffix, mode_string, mtime, shown_path};
use crate::cli::{FindArgs, Reader, job as find_job, open_reader, read_manifest, trust_of};
use crate::exit::{self, usage};
use crate::format::{Manifest, Marker};
use anyhow::{Context, Result};
use coffer_config::{Config, SourceType};
use coffer_plugins::{FileEntry, RawPath, escape_controls};
use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tokio::runtime::Handle;

/// PATTERN, and what it is matched against.
struct Pattern {
    glob: GlobMatcher,
    /// With a `/`: the path inside the source; without: the file name at any depth
    /// (restic's `find` does the same).
    whole_path: bool,
}

impl Pattern {
    fn new(pattern: &str) -> Result<Pattern> {
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

#[derive(Serialize)]
struct MatchJson<'a> {
    record: &'static str,
    snapshot: &'a str,
    #[serde(flatten)]
    entry: EntryJson<'a>,
}

#[derive(Serialize)]
#[serde(tag = "record", rename_all = "lowercase")]
enum Record<'a> {
    Unreadable {
        snapshot: &'a str,
        error: String,
    },
    Summary {
        matches: u64,
        snapshots_matched: u64,
        snapshots: u64,
        unreadable: u64,
    },
}

pub fn run(rt: &Handle, cfg: &Config, args: &FindArgs) -> Result<u8> {
    let job = find_job(cfg, &args.from.job)?;
    let pattern = Pattern::new(&args.pattern)?;
    let Reader { target, ids } = open_reader(
        cfg,
        job,
        "find",
        args.from.target.as_deref(),
        args.from.identity.as_deref(),
    )?;
    let trust = trust_of(cfg, &args.from.trust);
    let markers = crate::repo::snapshots(rt, &target, &job.name)?;
    crate::repo::vet_signers(&trust, &markers, &job.name, &target.name)?;
    // A source no longer in the config can still be in old snapshots.
    let mut source_seen = args
        .source
        .as_ref()
        .is_none_or(|s| job.sources.iter().any(|c| c.name == *s));
    let mut out = Out::new();
    let (mut matches, mut matched, mut unreadable) = (0u64, 0u64, 0u64);
    for marker in &markers {
        // Matches printed before a list turned out damaged still count.
        let mut n = 0;
        let read = match trust.refusal(marker) {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => read_manifest(rt, cfg, &target, &ids, marker).and_then(|manifest| {
                source_seen |= args
                    .source
                    .as_ref()
                    .is_some_and(|s| manifest.source(s).is_some());
                search(&manifest, marker, &pattern, args, &mut out, &mut n)
            }),
        };
        if n > 0 {
            matches += n;
            matched += 1;
        }
        if let Err(e) = read {
            unreadable += 1;
            out.flush()?;
            eprintln!(
                "error: snapshot {} on target {}: {e:#}; skipped",
                marker.id, target.name
            );
            if args.json {
                out.json(&Record::Unreadable {
                    snapshot: &marker.id,
                    error: format!("{e:#}"),
                })?;
            }
        }
    }
    if !source_seen && let Some(s) = &args.source {
        out.flush()?;
        return Err(usage(format!(
            "job {} has no source \"{s}\", and no snapshot read holds one",
            job.name
        )));
    }
    let total = markers.len() as u64;
    if args.json {
        out.json(&Record::Summary {
            matches,
            snapshots_matched: matched,
            snapshots: total,
            unreadable,
        })?;
    } else {
        out.line(format_args!(
            "{}{}",
            summary(matches, matched, total),
            match unreadable {
                0 => String::new(),
                n => format!(" ({n} could not be read)"),
            }
        ))?;
    }
    out.flush()?;
    Ok(if unreadable == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// Prints the matches in one snapshot, counting them in `n`.
fn search(
    manifest: &Manifest,
    marker: &Marker,
    pattern: &Pattern,
    args: &FindArgs,
    out: &mut Out,
    n: &mut u64,
) -> Result<()> {
    for src in manifest
        .sources
        .iter()
        .filter(|s| s.kind == SourceType::Directory)
        .filter(|s| args.source.as_ref().is_none_or(|n| *n == s.name))
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
            if args.json {
                out.json(&MatchJson {
                    record: "match",
                    snapshot: &marker.id,
                    entry: EntryJson::of(&src.name, &e),
                })?;
            } else {
                out.line(format_args!(
                    "{} {} {:>12} {} {}{}",
                    marker.id,
                    mode_string(e.kind, e.mode),
                    e.size,
                    mtime(e.mtime),
                    shown_path(&src.name, &e.path),
                    link_suffix(&e)
                ))?;
            }
        }
    }
    Ok(())
}

/// "3 matches in 2 of 5 snapshots".
fn summary(matches: u64, matched: u64, total: u64) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    format!(
        "{} in {matched} of {}",
        plural(matches, "match", "matches"),
        plural(total, "snapshot", "snapshots")
    )
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

    #[test]
    fn the_summary_counts_in_words() {
        assert_eq!(summary(0, 0, 0), "0 matches in 0 of 0 snapshots");
        assert_eq!(summary(1, 1, 1), "1 match in 1 of 1 snapshot");
        assert_eq!(summary(5, 2, 3), "5 matches in 2 of 3 snapshots");
    }
}

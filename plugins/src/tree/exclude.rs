//! Exclude patterns with gitignore's everyday meaning, because that is what operators
//! already write: `*.tmp` matches a name at any depth, `cache/` matches directories
//! only, and a pattern with a `/` inside (`var/cache`, `/tmp`) is anchored at the root.
//!
//! And tag files, as restic and borg have them: a directory holding a file named in
//! `exclude_if_present`, or a `CACHEDIR.TAG` with the Cache Directory Tagging
//! signature (`exclude_caches`), keeps itself and its tag files in the backup and
//! nothing else (restic's rule: the folder and the tag are kept, so a restore
//! shows why it is empty). Both formats and `coffer check` walk with `walk_ahead`,
//! which asks `tags_in` once per directory it lists. A tag is looked at relative to
//! the open directory and never through a symlink: a symlink named like a tag
//! counts as present (as restic's `lstat` does) but a `CACHEDIR.TAG` is read only
//! when it is a regular file itself.

use globset::{Glob, GlobBuilder, GlobMatcher};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    dir_only: bool,
    anchored: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Excludes {
    rules: Vec<Rule>,
    /// `exclude_if_present`: names whose presence excludes a directory's contents.
    tags: Vec<OsString>,
    /// `exclude_caches`: a signed `CACHEDIR.TAG` does too.
    caches: bool,
}

/// The Cache Directory Tagging file and the bytes it must start with
/// (https://bford.info/cachedir/).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes, globset::Error> {
        let mut rules = Vec::new();
        for raw in patterns {
            let dir_only = raw.ends_with('/');
            let p = raw.trim_end_matches('/');
            let anchored = p.contains('/');
            let p = p.trim_start_matches('/');
            let glob: Glob = GlobBuilder::new(p).literal_separator(true).build()?;
            rules.push(Rule {
                matcher: glob.compile_matcher(),
                dir_only,
                anchored,
            });
        }
        Ok(Excludes {
            rules,
            tags: Vec::new(),
            caches: false,
        })
    }

    /// A directory source's patterns and tag files, as configured.
    pub fn for_source(cfg: &coffer_config::DirectorySource) -> Result<Excludes, globset::Error> {
        Ok(Excludes::new(&cfg.exclude)?.with_tags(&cfg.exclude_if_present, cfg.exclude_caches))
    }

    pub fn with_tags(mut self, if_present: &[String], caches: bool) -> Excludes {
        self.tags = if_present.iter().map(OsString::from).collect();
        self.caches = caches;
        self
    }

    /// Whether any tag file is configured (else `tags_in` never finds one).
    pub fn has_tags(&self) -> bool {
        self.caches || !self.tags.is_empty()
    }

    /// Of the entries `names` listed in the open directory `dir`, the tag files
    /// that exclude the rest of its contents; empty when none does. Only these
    /// names stay in the walk then.
    pub fn tags_in<'n>(
        &self,
        dir: &OwnedFd,
        names: impl Iterator<Item = (&'n OsStr, FileType)>,
    ) -> Vec<OsString> {
        if !self.has_tags() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for (name, hint) in names {
            let named = self.tags.iter().any(|t| t == name);
            let cache = self.caches && name == CACHEDIR_TAG;
            if !named && !cache {
                continue;
            }
            let kind = match hint {
                FileType::Unknown => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(_) => continue,
                },
                known => known,
            };
            // A directory of that name marks nothing: it is walked as any other.
            if kind == FileType::Directory {
                continue;
            }
            if named || (kind == FileType::RegularFile && signed_cache_tag(dir, name)) {
                found.push(name.to_os_string());
            }
        }
        found
    }

    /// For `walkdir`'s `filter_entry`: whether the walk of `root` should visit `e`
    /// (the root itself always; excluded directories are pruned with their contents).
    pub fn admits(&self, root: &std::path::Path, e: &walkdir::DirEntry) -> bool {
        e.depth() == 0
            || e.path()
                .strip_prefix(root)
                .is_ok_and(|rel| !self.excluded(rel, e.file_type().is_dir()))
    }

    /// `rel` is the path relative to the source root, `/`-separated.
    pub fn excluded(&self, rel: &std::path::Path, is_dir: bool) -> bool {
        let name = rel.file_name().map(std::path::Path::new);
        self.rules.iter().any(|r| {
            if r.dir_only && !is_dir {
                return false;
            }
            if r.anchored {
                r.matcher.is_match(rel)
            } else {
                name.is_some_and(|n| r.matcher.is_match(n))
            }
        })
    }
}

/// Whether `name` in `dir` is a regular file (reached without following a
/// symlink, opened without blocking on a FIFO put in its place) that starts with
/// the signature. Any failure to read it means it is not a tag: the directory is
/// then backed up, which is the safe side.
fn signed_cache_tag(dir: &OwnedFd, name: &OsStr) -> bool {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    if !rustix::fs::fstat(&fd)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
    {
        return false;
    }
    let mut buf = [0u8; CACHEDIR_SIGNATURE.len()];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(&fd, &mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    buf == CACHEDIR_SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ex(p: &[&str]) -> Excludes {
        Excludes::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("patterns")
    }

    #[test]
    fn name_patterns_match_at_any_depth() {
        let e = ex(&["*.tmp"]);
        assert!(e.excluded(Path::new("a.tmp"), false));
        assert!(e.excluded(Path::new("x/y/a.tmp"), false));
        assert!(!e.excluded(Path::new("x/a.tmp.keep"), false));
    }

    #[test]
    fn trailing_slash_means_directories_only() {
        let e = ex(&["cache/"]);
        assert!(e.excluded(Path::new("cache"), true));
        assert!(e.excluded(Path::new("a/cache"), true));
        assert!(!e.excluded(Path::new("cache"), false));
    }

    fn tags(dir: &std::path::Path, ex: &Excludes) -> Vec<String> {
        let fd = crate::fs::open_at::open_dir(rustix::fs::CWD, dir.as_os_str()).expect("open");
        let names: Vec<OsString> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        let mut found: Vec<String> = ex
            .tags_in(
                &fd,
                names.iter().map(|n| (n.as_os_str(), FileType::Unknown)),
            )
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn cache_tags_need_the_signature_and_are_never_read_through_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ex = Excludes::default().with_tags(&[".nobackup".into()], true);
        let d = |n: &str| {
            let p = tmp.path().join(n);
            std::fs::create_dir(&p).expect("mkdir");
            p
        };
        let good = d("good");
        std::fs::write(
            good.join(CACHEDIR_TAG),
            [CACHEDIR_SIGNATURE, b"\n# made by x\n"].concat(),
        )
        .expect("write");
        assert_eq!(tags(&good, &ex), [CACHEDIR_TAG]);
        let wrong = d("wrong");
        std::fs::write(
            wrong.join(CACHEDIR_TAG),
            b"Signature: 8a477f597d28d172789f06886806bc56\n",
        )
        .expect("write");
        assert!(tags(&wrong, &ex).is_empty());
        let short = d("short");
        std::fs::write(short.join(CACHEDIR_TAG), &CACHEDIR_SIGNATURE[..20]).expect("write");
        assert!(tags(&short, &ex).is_empty());
        let linked = d("linked");
        std::os::unix::fs::symlink(good.join(CACHEDIR_TAG), linked.join(CACHEDIR_TAG))
            .expect("symlink");
        assert!(tags(&linked, &ex).is_empty());
        // Presence is enough for exclude_if_present, also of a symlink (not followed).
        let marked = d("marked");
        std::os::unix::fs::symlink("/nonexistent", marked.join(".nobackup")).expect("symlink");
        assert_eq!(tags(&marked, &ex), [".nobackup"]);
        let dir_named = d("dir_named");
        std::fs::create_dir(dir_named.join(".nobackup")).expect("mkdir");
        assert!(tags(&dir_named, &ex).is_empty());
        // Not configured: nothing is a tag.
        assert!(tags(&good, &Excludes::default()).is_empty());
    }

    #[test]
    fn inner_slash_anchors_at_root() {
        let e = ex(&["var/cache", "/top"]);
        assert!(e.excluded(Path::new("var/cache"), true));
        assert!(!e.excluded(Path::new("x/var/cache"), true));
        assert!(e.excluded(Path::new("top"), false));
        assert!(!e.excluded(Path::new("a/top"), false));
    }
}

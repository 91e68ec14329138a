//! Exclude patterns with gitignore's everyday meaning, because that is what operators
//! already write: `*.tmp` matches a name at any depth, `cache/` matches directories
//! only, and a pattern with a `/` inside (`var/cache`, `/tmp`) is anchored at the root.

use globset::{Glob, GlobBuilder, GlobMatcher};

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    dir_only: bool,
    anchored: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Excludes {
    rules: Vec<Rule>,
}

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
        Ok(Excludes { rules })
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

    #[test]
    fn inner_slash_anchors_at_root() {
        let e = ex(&["var/cache", "/top"]);
        assert!(e.excluded(Path::new("var/cache"), true));
        assert!(!e.excluded(Path::new("x/var/cache"), true));
        assert!(e.excluded(Path::new("top"), false));
        assert!(!e.excluded(Path::new("a/top"), false));
    }
}

//! `coffer ls`: what a snapshot holds, entry by entry, without restoring it: a
//! restore of a large tree to learn whether one file is in it costs hours, the
//! manifest alone has the answer. The file list is read from its scratch file
//! in walk order and printed as it comes, so memory does not grow with the tree;
//! with a PATH the read stops once the walk has passed that subtree.

use crate::cli::entries::{
    EntryJson, Ordered, Out, directory_sources, link_suffix, mode_string, mtime, owner, shown_path,
};
use crate::cli::{LsArgs, Opened, Wanted, job as find_job, open_snapshot};
use crate::exit::{self, usage};
use crate::format::SourceManifest;
use crate::restore::in_order::walk_order;
use anyhow::{Context, Result};
use coffer_config::Config;
use std::cmp::Ordering;
use std::os::unix::ffi::OsStrExt;
use tokio::runtime::Handle;

pub fn run(rt: &Handle, cfg: &Config, args: &LsArgs) -> Result<u8> {
    let job = find_job(cfg, &args.from.job)?;
    let Opened {
        marker, manifest, ..
    } = open_snapshot(
        rt,
        cfg,
        job,
        &Wanted {
            command: "ls",
            target: args.from.target.as_deref(),
            identity: args.from.identity.as_deref(),
            snapshot: &args.snapshot,
            trust: &args.from.trust,
        },
    )?;
    let all = directory_sources(&manifest, args.source.as_deref())?;
    let (sources, under) = match &args.path {
        None => (all, b".".to_vec()),
        Some(p) => resolve(all, args.source.is_some(), p.as_os_str().as_bytes()),
    };
    let mut out = Out::new();
    let mut shown = 0u64;
    for src in sources {
        let what = format!("source {} of snapshot {}", src.name, marker.id);
        let list = src
            .entries
            .iter()
            .with_context(|| format!("cannot read the file list of {what}"))?;
        for e in Ordered::new(list, what) {
            let e = e?;
            if !is_under(e.path.as_bytes(), &under) {
                // The subtree is one run of the walk: once past it, nothing more
                // of this source can be in it.
                if walk_order(e.path.as_bytes(), &under) == Ordering::Greater {
                    break;
                }
                continue;
            }
            shown += 1;
            if args.json {
                out.json(&EntryJson::of(&src.name, &e))?;
            } else {
                out.line(format_args!(
                    "{} {:<17} {:>12} {} {}{}",
                    mode_string(e.kind, e.mode),
                    owner(&e),
                    e.size,
                    mtime(e.mtime),
                    shown_path(&src.name, &e.path),
                    link_suffix(&e)
                ))?;
            }
        }
    }
    out.flush()?;
    if shown == 0
        && let Some(p) = &args.path
    {
        return Err(usage(format!(
            "snapshot {} holds no {} in {}",
            marker.id,
            coffer_plugins::escape_controls(&p.to_string_lossy()),
            args.source.as_deref().map_or_else(
                || "any directory source".to_string(),
                |s| format!("source {s}")
            )
        )));
    }
    Ok(exit::OK)
}

/// Which sources PATH is in, and PATH inside them. `<source>/<path>` names a
/// source when its first part is one of the snapshot's directory sources (and no
/// `--source` was given); otherwise PATH is looked for in every source listed.
fn resolve<'m>(
    sources: Vec<&'m SourceManifest>,
    source_given: bool,
    path: &[u8],
) -> (Vec<&'m SourceManifest>, Vec<u8>) {
    let path = normalize(path);
    if !source_given {
        let (head, rest) = match path.iter().position(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..], &b""[..]),
        };
        if let Some(src) = sources.iter().find(|s| s.name.as_bytes() == head) {
            return (vec![*src], normalize(rest));
        }
    }
    (sources, path)
}

/// PATH as a manifest spells it: no leading `/` or `./`, no trailing `/`; the
/// source's root is `.`.
fn normalize(mut p: &[u8]) -> Vec<u8> {
    loop {
        if let Some(rest) = p.strip_prefix(b"/") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix(b"./") {
            p = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = p.strip_suffix(b"/") {
        p = rest;
    }
    if p.is_empty() {
        b".".to_vec()
    } else {
        p.to_vec()
    }
}

/// `path` is `under` itself or inside it.
fn is_under(path: &[u8], under: &[u8]) -> bool {
    under == b"."
        || path == under
        || (path.starts_with(under) && path.get(under.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_as_the_manifest_spells_them() {
        assert_eq!(normalize(b"/uploads/2024/"), b"uploads/2024");
        assert_eq!(normalize(b"./a"), b"a");
        assert_eq!(normalize(b"."), b".");
        assert_eq!(normalize(b"/"), b".");
        assert_eq!(normalize(b""), b".");
    }

    #[test]
    fn a_subtree_is_the_entry_and_what_is_under_it() {
        assert!(is_under(b"docs", b"docs"));
        assert!(is_under(b"docs/a", b"docs"));
        assert!(!is_under(b"docs.txt", b"docs"));
        assert!(!is_under(b"docs-old/a", b"docs"));
        assert!(!is_under(b"doc", b"docs"));
        assert!(is_under(b".", b"."));
        assert!(is_under(b"anything/at/all", b"."));
    }
}

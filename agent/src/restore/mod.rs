//! Restoring one directory source: unpack into a staging folder inside the
//! destination, match it against the manifest, apply owners and modes, then swap it
//! into place (swap.rs: journalled, so a crash leaves the old or the new contents
//! once the next restore has recovered). Until the swap the destination's existing
//! contents are not touched, so a failed restore leaves them as they were.

pub(crate) mod attrs;
pub(crate) mod database;
pub(crate) mod db_check;
pub(crate) mod dest_root;
pub(crate) mod dir_cursor;
pub mod extract;
pub(crate) mod in_order;
pub(crate) mod job;
pub(crate) mod others;
pub(crate) mod path_filter;
mod plan;
pub(crate) mod privileges;
mod remove_tree;
pub(crate) mod room;
pub(crate) mod swap;
pub mod tar_guard;
pub(crate) mod tree_check;
mod xattr_check;
pub(crate) mod xattrs;

use crate::format::{Marker, SourceManifest, object_path};
use crate::keys::Identities;
use crate::pipeline::read::{ObjectReader, Pumped, decrypt};
use crate::report::Told;
use crate::restore::tree_check::{Content, Expectations, Owners, TreeReport, check_tree};
use anyhow::{Context, Result, anyhow, bail};
use coffer_config::RestorePolicy;
use coffer_plugins::{FileEntry, Target};
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;

#[derive(Debug)]
pub(crate) struct SourceRestore<'a> {
    pub source: &'a SourceManifest,
    /// The destination as the operator knows it (messages, the database check).
    pub dest: PathBuf,
    /// The same, reached and held by handle (`dest_root`).
    pub root: dest_root::DestRoot,
    pub policy: RestorePolicy,
    pub owners: Owners,
    pub force: bool,
    pub devices: bool,
    /// Only the entries this keeps (`restore --path`); every entry when `None`.
    pub keep: crate::pack::tar_view::Keep<'a>,
    /// Bytes read from the target for a packed source.
    pub fetched: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Where scratch files go (the state directory's `tmp`).
    pub tmp_dir: PathBuf,
}

/// The entries of `source` that `keep` keeps.
pub(crate) fn kept<'a>(
    source: &'a SourceManifest,
    keep: crate::pack::tar_view::Keep<'a>,
) -> Result<impl Iterator<Item = std::io::Result<FileEntry>> + 'a> {
    Ok(source.entries.iter()?.filter(move |e| match (e, keep) {
        (Ok(e), Some(k)) => k.keeps(e),
        _ => true,
    }))
}

/// The packs holding the contents of `source`'s entries that `keep` keeps.
pub(crate) fn packs_needed(
    source: &SourceManifest,
    keep: crate::pack::tar_view::Keep<'_>,
) -> Result<std::collections::BTreeSet<String>> {
    let mut packs = std::collections::BTreeSet::new();
    for e in kept(source, keep)? {
        packs.extend(e?.packs().into_iter().map(str::to_string));
    }
    Ok(packs)
}

/// Whether `dir` exists with anything in it.
pub(crate) fn non_empty(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} exists and is not a directory", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Whether `dir` holds anything but coffer's own bookkeeping entries.
fn has_contents(dir: &Path) -> Result<bool> {
    for item in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let item = item.with_context(|| format!("cannot read {}", dir.display()))?;
        if !swap::is_own(&item.file_name()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Restores one source; returns the post-restore check and warnings.
pub(crate) fn restore_source(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    r: &SourceRestore<'_>,
    told: Told<'_>,
) -> Result<(TreeReport, Vec<String>)> {
    let open = r.root.open()?;
    let (mut report, warnings) =
        restore_into(rt, target, marker, ids, r, (&open, told)).map_err(|e| open.unproc_err(e))?;
    report.path = r.dest.display().to_string();
    let warnings = warnings.iter().map(|w| open.unproc(w)).collect();
    open.still_in_place()?;
    Ok((report, warnings))
}

/// `restore_source` into the opened destination, reached only through
/// `open.work()`.
fn restore_into(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    r: &SourceRestore<'_>,
    (open, told): (&dest_root::OpenDest, Told<'_>),
) -> Result<(TreeReport, Vec<String>)> {
    let dest = &open.work().to_path_buf();
    let record = match r.source.packed {
        true => None,
        false => Some(marker.object(&r.source.object).ok_or_else(|| {
            anyhow!("snapshot {} lists no object {}", marker.id, r.source.object)
        })?),
    };
    // Held until the new contents are in place and checked: a second restore into
    // the same place would otherwise take this one's staging folder for debris.
    let lock = swap::DestLock::take(dest, told.work)?;
    for line in swap::recover_locked(&lock)? {
        told.report
            .notice(&format!("recovered: {}", open.unproc(&line)));
    }
    let staging = dest.join(swap::staging_name(&marker.id));
    std::fs::create_dir(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;

    told.work.set_phase("unpacking");
    // Phase times go to the debug log (COFFER_LOG=coffer=debug): where a slow restore
    // spends its time is otherwise guesswork.
    let mut clock = std::time::Instant::now();
    let mut lap = |what: &str| {
        tracing::debug!(source = %r.source.name, "restore: {what} in {:.2} s", clock.elapsed().as_secs_f64());
        clock = std::time::Instant::now();
    };
    let mut tally = xattrs::Tally::default();
    let unpacked = (|| -> Result<(Vec<String>, Option<FileEntry>)> {
        let mut file_attrs = attrs::FileAttrs::new(&r.policy, r.owners);
        let mut unpack = |plain: &mut dyn std::io::Read| {
            extract::extract(
                plain,
                &staging,
                r.devices,
                kept(r.source, r.keep)?,
                &mut |f, want, shown| file_attrs.apply(f, want, shown),
                &r.tmp_dir,
            )
        };
        let extracted = match record {
            Some(record) => {
                let path = object_path(&marker.job, &marker.id, &r.source.object);
                let reader =
                    ObjectReader::open(rt, target, &path, Some(record))?.counting(told.work);
                unpack(&mut Pumped::spawn(decrypt(reader, ids)?)?)?
            }
            None => {
                let view = crate::pack::tar_view::PackedView {
                    rt,
                    target,
                    marker,
                    ids,
                    fetched: r.fetched.clone(),
                };
                crate::pack::tar_view::with_tar(&view, r.source, r.keep, unpack)?
            }
        };
        let mut warnings = extracted.warnings;
        let mut others = extracted.others;
        tally = std::mem::take(&mut file_attrs.tally);
        warnings.extend(attrs::apply(
            &staging,
            others.rev()?,
            &r.policy,
            r.owners,
            &mut tally,
        )?);
        Ok((warnings, others.root))
    })();
    let (mut warnings, root) = match unpacked {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.context(format!(
                "restore of source {} into {} failed; its contents were not changed",
                r.source.name,
                dest.display()
            )));
        }
    };

    // The new contents are complete: only now replace the old ones. A destination
    // that was empty goes through the same journalled swap, so that a crash halfway
    // never leaves half a snapshot looking like a finished restore.
    if !r.force && has_contents(dest)? {
        let _ = std::fs::remove_dir_all(&staging);
        bail!(
            "{} was filled by something else during the restore; nothing was changed \
             (pass --force to replace its contents)",
            dest.display()
        );
    }
    lap("unpacked");
    let committed = swap::swap_in(&lock, &marker.id)?;
    lap("swapped");
    // Given before the old tree is removed, so a crash during that slow removal
    // leaves the root's owner and mode right; its times are set again afterwards,
    // since removing the old folder touches the root.
    warnings.extend(attrs::apply_root(
        dest,
        root.as_ref(),
        &r.policy,
        r.owners,
        &mut tally,
    )?);
    committed.finish()?;
    let mut again = xattrs::Tally::default();
    attrs::apply_root(dest, root.as_ref(), &r.policy, r.owners, &mut again)?;
    warnings.extend(tally.warnings());
    lap("removed the old contents");

    told.work.set_phase("checking");
    let owners = r.owners;
    let report = check_tree(
        &r.source.name,
        dest,
        kept(r.source, r.keep)?,
        &Expectations {
            policy: &r.policy,
            owners,
            content: Content::SizeOnly,
            excludes: None,
        },
    );
    lap("checked");
    Ok((report?, warnings))
}

//! Restoring one directory source: unpack into a staging folder inside the
//! destination, match it against the manifest, apply owners and modes, then move it
//! into place. Until the last step the destination's existing contents are not
//! touched, so a failed restore leaves them as they were.

pub mod attrs;
pub mod database;
pub mod extract;
pub mod tar_guard;

use crate::format::{Marker, SourceManifest, object_path};
use crate::keys::Identities;
use crate::reader::{ObjectReader, Pumped, decrypt};
use crate::tree_check::{Content, Expectations, Owners, TreeReport, check_tree};
use anyhow::{Context, Result, anyhow, bail};
use attrs::OwnerPlan;
use coffer_config::RestorePolicy;
use coffer_plugins::{FileEntry, Target};
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;

#[derive(Debug)]
pub struct SourceRestore<'a> {
    pub source: &'a SourceManifest,
    pub dest: PathBuf,
    pub policy: RestorePolicy,
    pub owners: OwnerPlan,
    pub force: bool,
    pub devices: bool,
}

/// Whether `dir` exists with anything in it.
pub fn non_empty(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} exists and is not a directory", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(path)?;
    if md.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Restores one source; returns the post-restore check and warnings.
pub fn restore_source(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    r: &SourceRestore<'_>,
) -> Result<(TreeReport, Vec<String>)> {
    let dest = &r.dest;
    let record = marker
        .object(&r.source.object)
        .ok_or_else(|| anyhow!("snapshot {} lists no object {}", marker.id, r.source.object))?;
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let staging = dest.join(format!(".coffer-restore-{}", marker.id));
    if staging.exists() {
        // Left by an interrupted restore of this same snapshot.
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove stale {}", staging.display()))?;
    }
    std::fs::create_dir(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;

    let unpacked = (|| -> Result<(Vec<String>, Vec<FileEntry>)> {
        let path = object_path(&marker.job, &marker.id, &r.source.object);
        let reader = ObjectReader::open(rt, target, &path, Some(record))?;
        let plain = Pumped::spawn(decrypt(reader, ids)?)?;
        let mut file_attrs = attrs::FileAttrs::new(&r.policy, r.owners);
        let extracted = extract::extract(
            plain,
            &staging,
            r.devices,
            r.source.entries.iter()?,
            &mut |f, want, shown| file_attrs.apply(f, want, shown),
        )?;
        let mut warnings = extracted.warnings;
        warnings.extend(attrs::apply(
            &staging,
            &extracted.others,
            &r.policy,
            r.owners,
            false,
        )?);
        Ok((warnings, extracted.others))
    })();
    let (mut warnings, others) = match unpacked {
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

    // The new contents are complete: only now replace the old ones.
    let staging_name = staging.file_name().map(|n| n.to_os_string());
    if r.force {
        for item in std::fs::read_dir(dest)? {
            let item = item?;
            if Some(item.file_name()) != staging_name {
                remove_any(&item.path())
                    .with_context(|| format!("cannot remove {}", item.path().display()))?;
            }
        }
    }
    for item in std::fs::read_dir(&staging)? {
        let item = item?;
        let to = dest.join(item.file_name());
        std::fs::rename(item.path(), &to)
            .with_context(|| format!("cannot move {} into place", to.display()))?;
    }
    std::fs::remove_dir(&staging)
        .with_context(|| format!("cannot remove {}", staging.display()))?;
    warnings.extend(attrs::apply(dest, &others, &r.policy, r.owners, true)?);

    let owners = match r.owners {
        OwnerPlan::Skip | OwnerPlan::NotRoot => Owners::Ignore,
        OwnerPlan::Numeric => Owners::Numeric,
        OwnerPlan::ByName => Owners::ByName,
    };
    let report = check_tree(
        &r.source.name,
        dest,
        r.source.entries.iter()?,
        &Expectations {
            policy: &r.policy,
            owners,
            content: Content::SizeOnly,
            excludes: None,
        },
    );
    Ok((report?, warnings))
}

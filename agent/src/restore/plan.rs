//! Planning a restore before anything is written: which sources of the snapshot
//! are restored (`--source`, `--path`), where each goes (`--to`, the job's
//! config, or a signed snapshot's origin for a job without sources), and every
//! destination validated (no symlink on the way, empty unless forced, an
//! interrupted earlier restore recovered, owners resolvable, room enough). A
//! refused restore has changed nothing.

use super::attrs::check_policy_owner;
use super::database::{DbRestore, plan_stream, refuse_existing};
use super::dest_root::DestRoot;
use super::job::RestoreRequest;
use super::path_filter::PathFilter;
use super::tree_check::Owners;
use super::{SourceRestore, non_empty};
use crate::exit::usage;
use crate::format::{Marker, SourceManifest};
use crate::report::Report;
use anyhow::Result;
use coffer_config::{Config, Job, SourceKind, SourceType};
use coffer_plugins::SourceContext;
use std::collections::BTreeMap;
use tokio::runtime::Handle;

/// `--path`: for each directory source it keeps something of, what it keeps.
pub(crate) type Filters = BTreeMap<String, PathFilter>;

/// The sources of `manifest` the request restores, and the `--path` filters,
/// learnt in one pass over each directory source's entries.
pub(crate) fn choose<'m>(
    req: &RestoreRequest,
    marker: &Marker,
    manifest: &'m crate::format::Manifest,
) -> Result<(Vec<&'m SourceManifest>, Filters)> {
    for s in &req.sources {
        if manifest.source(s).is_none() {
            let have: Vec<&str> = manifest.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(usage(format!(
                "snapshot {} has no source \"{s}\"; it has: {}",
                marker.id,
                have.join(", ")
            )));
        }
    }
    let chosen: Vec<&SourceManifest> = manifest
        .sources
        .iter()
        .filter(|s| req.sources.is_empty() || req.sources.contains(&s.name))
        .collect();
    if req.db_url.is_some()
        && chosen
            .iter()
            .filter(|s| s.kind.is_server_database())
            .count()
            != 1
    {
        return Err(usage(
            "--db-url needs exactly one postgres or mysql source among those restored (pick it with --source)",
        ));
    }
    if !req.paths.is_empty() && req.to.is_none() {
        return Err(usage(
            "--path restores part of a source: it needs --to DIR (restoring part of a source \
             into its live folder would replace the whole folder with that part)",
        ));
    }
    let mut filters = Filters::new();
    if !req.paths.is_empty() {
        let dir_sources: Vec<&SourceManifest> = chosen
            .iter()
            .copied()
            .filter(|s| s.kind == SourceType::Directory)
            .collect();
        let names: Vec<&str> = dir_sources.iter().map(|s| s.name.as_str()).collect();
        for src in dir_sources.iter() {
            // `storage/uploads/a.pdf` (as ls and find print) is source storage's.
            let Some(mut f) = PathFilter::for_source(&req.paths, &src.name, &names)? else {
                continue;
            };
            if !src.packed {
                return Err(usage(format!(
                    "snapshot {} stores source {} in format 1, one archive that is read whole: \
                     --path needs a format-2 snapshot; restore the whole source with --to DIR",
                    marker.id, src.name
                )));
            }
            f.learn(src.entries.iter()?)?;
            if f.matched > 0 {
                filters.insert(src.name.clone(), f);
            }
        }
        if filters.is_empty() {
            return Err(usage(format!(
                "no file or folder in snapshot {} matches --path {}",
                marker.id,
                req.paths.join(" --path ")
            )));
        }
    }
    let chosen = chosen
        .into_iter()
        .filter(|s| req.paths.is_empty() || filters.contains_key(&s.name))
        .collect();
    Ok((chosen, filters))
}

/// What a restore does, each destination validated: directory sources and
/// stream (database, file) sources.
pub(crate) struct Plan<'a> {
    pub dirs: Vec<SourceRestore<'a>>,
    pub dbs: Vec<DbRestore<'a>>,
}

/// Where the job, the snapshot and the request put things.
pub(crate) struct Context<'a> {
    pub rt: &'a Handle,
    pub cfg: &'a Config,
    pub job: &'a Job,
    pub marker: &'a Marker,
    pub is_root: bool,
}

/// Plans and validates every destination of `chosen` before anything is written.
pub(crate) fn plan<'a>(
    at: &Context<'_>,
    req: &RestoreRequest,
    chosen: &[&'a SourceManifest],
    filters: &'a Filters,
    report: &dyn Report,
) -> Result<Plan<'a>> {
    let (job, marker) = (at.job, at.marker);
    let configured = |name: &str| job.sources.iter().find(|s| s.name == name);
    let ctx = SourceContext::for_job(at.rt, &at.cfg.agent.state_dir, &job.name);
    let mut plan = Plan {
        dirs: Vec::new(),
        dbs: Vec::new(),
    };
    for &src in chosen {
        let source = configured(&src.name);
        let kind = source.map(|s| &s.kind);
        let mut policy = kind.map(SourceKind::restore_policy).unwrap_or_default();
        if src.kind == SourceType::Directory {
            let dest = match (&req.to, kind.and_then(SourceKind::directory), kind) {
                (Some(dir), _, _) => dir.join(&src.name),
                (None, Some(d), _) => d.path.clone(),
                (None, None, None) if job.restore_only() => {
                    let origin = origin_of(marker, src)?;
                    let path = coffer_plugins::registry::origin_path(origin).ok_or_else(|| {
                        usage(format!(
                            "source {} is not in this job's config and snapshot {} took it from \
                             {}, which is not an absolute path: pass --to DIR",
                            src.name,
                            marker.id,
                            coffer_plugins::escape_controls(origin)
                        ))
                    })?;
                    say_from_origin(report, marker, src);
                    path
                }
                // Configured as another type (or not at all, in a job that backs up).
                (None, None, _) => {
                    return Err(usage(format!(
                        "source {} is no longer a directory source in the config; pass --to DIR to restore it elsewhere",
                        src.name
                    )));
                }
            };
            // Reached by handle: a symlink at the destination (or an untrusted one
            // on the way) is refused here, before anything is written.
            let root = DestRoot::plan(&dest)?;
            // An earlier restore killed mid-swap is completed or rolled back first,
            // so the emptiness test below sees real contents, not coffer's debris.
            if let Some(work) = root.existing() {
                super::swap::recover(&work, &dest, report)?;
            }
            if root.existing().map(|w| non_empty(&w)).transpose()? == Some(true) && !req.force {
                return Err(usage(format!(
                    "{} is not empty; restore elsewhere with --to DIR, or pass --force to replace its contents \
                     (they are removed only after the snapshot is completely unpacked and matched)",
                    dest.display()
                )));
            }
            // Not root: chown is not possible, and owners are not compared.
            let owners = match req.owner {
                _ if !at.is_root => Owners::Ignore,
                Some(o) => o,
                None => Owners::ByName,
            };
            // `--owner` overrides the policy's owner, not its modes.
            if req.owner.is_some() {
                policy.owner = None;
            }
            if owners == Owners::ByName {
                check_policy_owner(&policy)
                    .map_err(|e| usage(format!("source {}: {e:#}", src.name)))?;
            }
            plan.dirs.push(SourceRestore {
                source: src,
                dest,
                root,
                policy,
                owners,
                force: req.force,
                devices: req.devices,
                keep: filters.get(&src.name),
                fetched: Default::default(),
                tmp_dir: at.cfg.agent.state_dir.join("tmp"),
            });
        } else {
            let signed = matches!(marker.seal, crate::format::seal::Seal::Signed(_));
            let stream_req = coffer_plugins::RestoreRequest {
                db_url: req.db_url.as_deref(),
                facts: &src.facts,
                signed,
                clean: req.clean,
                can_chown: at.is_root,
                snapshot: &marker.id,
                policy,
            };
            // A job without sources (a new host) puts each source back where the
            // signed snapshot says it came from, unless --to or --db-url say
            // elsewhere; a job that configures sources never guesses.
            let from_origin = match source {
                None if job.restore_only() && req.to.is_none() && req.db_url.is_none() => {
                    coffer_plugins::registry::at_origin(
                        src.kind,
                        &src.name,
                        origin_of(marker, src)?,
                    )
                }
                _ => None,
            };
            if from_origin.is_some() {
                say_from_origin(report, marker, src);
            }
            let restore = plan_stream(
                req.db_url.as_deref(),
                req.to.as_deref(),
                src,
                source.or(from_origin.as_ref()),
                &stream_req,
                &ctx,
            )?;
            refuse_existing(restore.as_ref(), req.force)?;
            plan.dbs.push(DbRestore {
                source: src,
                restore,
            });
        }
    }
    // Never fill a filesystem: what the directory sources need is asked for up front.
    let mut room = super::room::Room::default();
    for d in &plan.dirs {
        let need = match d.keep {
            None => super::room::Need::of_log(&d.source.entries),
            Some(_) => super::room::Need::of_entries(super::kept(d.source, d.keep)?)?,
        };
        room.add(&d.source.name, &d.dest, need)?;
    }
    room.check(&marker.id)?;
    if plan.dirs.is_empty() && plan.dbs.is_empty() {
        return Err(usage(format!(
            "nothing to restore from snapshot {}",
            marker.id
        )));
    }
    Ok(plan)
}

/// Where a source that this job does not configure came from, which is where a
/// restore without `--to` puts it back: the snapshot's word, taken only when a
/// trusted key signed it (with `--allow-unsigned`, anyone may have written it).
fn origin_of<'a>(marker: &Marker, src: &'a SourceManifest) -> Result<&'a str> {
    if !matches!(marker.seal, crate::format::seal::Seal::Signed(_)) {
        return Err(usage(format!(
            "source {} is not in this job's config and snapshot {} is not signed, so where it \
             came from ({}) is anyone's word: pass --to DIR",
            src.name,
            marker.id,
            coffer_plugins::escape_controls(&src.origin)
        )));
    }
    Ok(&src.origin)
}

/// Announces, before anything is written, that `src` goes back to its origin.
fn say_from_origin(report: &dyn Report, marker: &Marker, src: &SourceManifest) {
    report.line(&format!(
        "source {} is not in this job's config: restoring it where snapshot {} took it from, {}",
        src.name,
        marker.id,
        coffer_plugins::escape_controls(&src.origin)
    ));
}

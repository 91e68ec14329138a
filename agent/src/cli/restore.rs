//! `coffer restore`: puts a snapshot's sources back (directories with owners and
//! modes, databases through their tools, files atomically), checks the result
//! (files against the manifest, database against its files), then runs the job's
//! after_restore hooks. Every destination is validated before anything is written,
//! so a refused restore changes nothing.

use crate::cli::{Opened, job as find_job, open_snapshot, print_json};
use crate::cli::{OwnerMode, RestoreArgs};
use crate::exit::{self, usage};
use crate::format::SourceManifest;
use crate::hooks::run_hooks;
use crate::restore::attrs::check_policy_owner;
use crate::restore::database::{DbRestore, plan_stream, refuse_existing, restore_database};
use crate::restore::db_check::{self, DbCheckReport};
use crate::restore::dest_root::DestRoot;
use crate::restore::path_filter::PathFilter;
use crate::restore::tree_check::Owners;
use crate::restore::{SourceRestore, non_empty, restore_source};
use anyhow::Result;
use coffer_config::{Config, Job, SourceKind};
use coffer_plugins::{RestoreRequest, SourceContext};
use serde::Serialize;
use tokio::runtime::Handle;

#[derive(Serialize)]
struct Output {
    job: String,
    snapshot: String,
    target: String,
    sources: Vec<crate::restore::tree_check::TreeReport>,
    databases: Vec<DbSummary>,
    db_check: Option<DbCheckReport>,
    warnings: Vec<String>,
    consistent: bool,
    /// Bytes read from the target for packed (format-2) sources.
    fetched_bytes: u64,
}

#[derive(Serialize)]
struct DbSummary {
    source: String,
    restored_to: String,
    facts: std::collections::BTreeMap<String, String>,
}

fn owners_of(args: &RestoreArgs, is_root: bool) -> Owners {
    match args.owner {
        // Not root: chown is not possible, and owners are not compared.
        _ if !is_root => Owners::Ignore,
        Some(OwnerMode::Skip) => Owners::Ignore,
        Some(OwnerMode::Numeric) => Owners::Numeric,
        Some(OwnerMode::Preserve) | None => Owners::ByName,
    }
}

pub fn run(rt: &Handle, cfg: &Config, args: &RestoreArgs) -> Result<u8> {
    let job = find_job(cfg, &args.job)?;
    let Opened {
        target,
        ids,
        marker,
        manifest,
    } = open_snapshot(
        rt,
        cfg,
        job,
        &crate::cli::Wanted {
            command: "restore",
            target: args.target.as_deref(),
            identity: args.identity.as_deref(),
            snapshot: &args.snapshot,
            trust: &args.trust,
        },
    )?;
    // A restore hashes sparse files whole, holes included: refused before anything
    // is written when they declare more than a backup writes.
    crate::format::untrusted::check_holes(&manifest).map_err(|why| {
        anyhow::anyhow!(
            "snapshot {} on target {}: {why}; nothing was written: it was not written by \
             coffer, restore another snapshot",
            marker.id,
            target.name
        )
    })?;
    for s in &args.sources {
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
        .filter(|s| args.sources.is_empty() || args.sources.contains(&s.name))
        .collect();
    if args.db_url.is_some()
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
    if !args.paths.is_empty() && args.to.is_none() {
        return Err(usage(
            "--path restores part of a source: it needs --to DIR (restoring part of a source \
             into its live folder would replace the whole folder with that part)",
        ));
    }
    // `--path`: which entries each directory source restores, learnt in one pass.
    let mut filters = std::collections::BTreeMap::new();
    if !args.paths.is_empty() {
        let dir_sources: Vec<&SourceManifest> = chosen
            .iter()
            .copied()
            .filter(|s| s.kind == coffer_config::SourceType::Directory)
            .collect();
        let names: Vec<&str> = dir_sources.iter().map(|s| s.name.as_str()).collect();
        for src in dir_sources.iter() {
            // `storage/uploads/a.pdf` (as ls and find print) is source storage's.
            let Some(mut f) = PathFilter::for_source(&args.paths, &src.name, &names)? else {
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
                args.paths.join(" --path ")
            )));
        }
    }
    let chosen: Vec<&SourceManifest> = chosen
        .into_iter()
        .filter(|s| args.paths.is_empty() || filters.contains_key(&s.name))
        .collect();
    let is_root = nix::unistd::geteuid().is_root();
    let configured = |name: &str| job.sources.iter().find(|s| s.name == name);
    let ctx = SourceContext::for_job(rt, &cfg.agent.state_dir, &job.name);

    // Plan and validate everything before writing anything.
    let mut dirs = Vec::new();
    let mut dbs = Vec::new();
    for src in &chosen {
        let source = configured(&src.name);
        let kind = source.map(|s| &s.kind);
        let mut policy = kind.map(SourceKind::restore_policy).unwrap_or_default();
        if src.kind == coffer_config::SourceType::Directory {
            let dest = match (&args.to, kind) {
                (Some(dir), _) => dir.join(&src.name),
                (None, Some(SourceKind::Directory(d))) => d.path.clone(),
                (None, None) if job.restore_only() => {
                    let origin = origin_of(&marker, src)?;
                    let path = coffer_plugins::registry::origin_path(origin).ok_or_else(|| {
                        usage(format!(
                            "source {} is not in this job's config and snapshot {} took it from \
                             {}, which is not an absolute path: pass --to DIR",
                            src.name,
                            marker.id,
                            coffer_plugins::escape_controls(origin)
                        ))
                    })?;
                    say_from_origin(args.json, &marker, src);
                    path
                }
                _ => {
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
                crate::restore::swap::recover(&work, &dest)?;
            }
            if root.existing().map(|w| non_empty(&w)).transpose()? == Some(true) && !args.force {
                return Err(usage(format!(
                    "{} is not empty; restore elsewhere with --to DIR, or pass --force to replace its contents \
                     (they are removed only after the snapshot is completely unpacked and matched)",
                    dest.display()
                )));
            }
            let owners = owners_of(args, is_root);
            // `--owner` overrides the policy's owner, not its modes.
            if args.owner.is_some() {
                policy.owner = None;
            }
            if owners == Owners::ByName {
                check_policy_owner(&policy)
                    .map_err(|e| usage(format!("source {}: {e:#}", src.name)))?;
            }
            dirs.push(SourceRestore {
                source: src,
                dest,
                root,
                policy,
                owners,
                force: args.force,
                devices: args.devices,
                keep: filters.get(&src.name),
                fetched: Default::default(),
                tmp_dir: cfg.agent.state_dir.join("tmp"),
            });
        } else {
            let signed = matches!(marker.seal, crate::format::seal::Seal::Signed(_));
            let req = RestoreRequest {
                db_url: args.db_url.as_deref(),
                facts: &src.facts,
                signed,
                clean: args.clean,
                can_chown: is_root,
                snapshot: &marker.id,
                policy,
            };
            // A job without sources (a new host) puts each source back where the
            // signed snapshot says it came from, unless --to or --db-url say
            // elsewhere; a job that configures sources never guesses.
            let from_origin = match source {
                None if job.restore_only() && args.to.is_none() && args.db_url.is_none() => {
                    coffer_plugins::registry::at_origin(
                        src.kind,
                        &src.name,
                        origin_of(&marker, src)?,
                    )
                }
                _ => None,
            };
            if from_origin.is_some() {
                say_from_origin(args.json, &marker, src);
            }
            let restore = plan_stream(
                args.db_url.as_deref(),
                args.to.as_deref(),
                src,
                source.or(from_origin.as_ref()),
                &req,
                &ctx,
            )?;
            refuse_existing(restore.as_ref(), args.force)?;
            dbs.push(DbRestore {
                source: src,
                restore,
            });
        }
    }
    // Never fill a filesystem: what the directory sources need is asked for up front.
    let mut room = crate::restore::room::Room::default();
    for d in &dirs {
        let need = match d.keep {
            None => crate::restore::room::Need::of_log(&d.source.entries),
            Some(_) => {
                crate::restore::room::Need::of_entries(crate::restore::kept(d.source, d.keep)?)?
            }
        };
        room.add(&d.source.name, &d.dest, need)?;
    }
    room.check(&marker.id)?;
    if dirs.is_empty() && dbs.is_empty() {
        return Err(usage(format!(
            "nothing to restore from snapshot {}",
            marker.id
        )));
    }

    let mut warnings = Vec::new();
    if !is_root && !dirs.is_empty() {
        warnings.push("not running as root: owners are not restored and not checked".to_string());
    }
    for s in &manifest.sources {
        if args.json {
            break;
        }
        // What is left out is said, so a database's schema version is never
        // taken for a database restored.
        if !chosen.iter().any(|c| c.name == s.name) {
            crate::say!(
                "source {} ({}): not restored ({})",
                s.name,
                s.kind,
                if !args.sources.is_empty() && !args.sources.contains(&s.name) {
                    "not named by --source"
                } else if s.kind != coffer_config::SourceType::Directory {
                    "--path restores files and folders of directory sources only"
                } else {
                    "no file or folder of it matches --path"
                }
            );
        } else if let Some(v) = s.facts.get("schema_version") {
            crate::say!(
                "source {}: schema version {} at backup time",
                s.name,
                coffer_plugins::escape_controls(v)
            );
        }
    }
    let tmp_dir = cfg.agent.state_dir.join("tmp");
    // What the restore reads: the chosen objects whole, and of the packs its files
    // are in, the ranges it needs; their whole size is the most it reads, so with
    // packs the total is an estimate (the bar may end short of it).
    let objects: u64 = chosen
        .iter()
        .filter_map(|s| marker.object(&s.object))
        .map(|o| o.stored_size)
        .fold(0, u64::saturating_add);
    let mut packs = std::collections::BTreeSet::new();
    let shown = crate::progress::wanted(args.json);
    for d in dirs.iter().filter(|d| shown && d.source.packed) {
        // One more pass over the entries, only for a display.
        packs.extend(crate::restore::packs_needed(d.source, d.keep)?);
    }
    let total = packs
        .iter()
        .filter_map(|p| marker.pack(p))
        .map(|p| p.stored_size)
        .fold(objects, u64::saturating_add);
    let estimated = !packs.is_empty();
    let base = crate::progress::STORED_READ.load(std::sync::atomic::Ordering::Relaxed);
    let bar = shown.then(|| {
        let total = crate::progress::Total {
            bytes: total,
            files: None,
            estimated,
        };
        crate::progress::Follow::start("restore", &marker.id, Some(total), move || {
            (
                crate::progress::STORED_READ.load(std::sync::atomic::Ordering::Relaxed) - base,
                0,
            )
        })
    });
    let mut databases = Vec::new();
    for plan in &dbs {
        let w = restore_database(rt, &target, &marker, &ids, &tmp_dir, plan)?;
        warnings.extend(
            w.into_iter()
                .map(|w| format!("source {}: {w}", plan.source.name)),
        );
        if !args.json {
            crate::say!(
                "restored source {} ({}) of snapshot {} into {}",
                plan.source.name,
                plan.source.kind,
                marker.id,
                plan.restore.describe()
            );
        }
        databases.push(DbSummary {
            source: plan.source.name.clone(),
            restored_to: plan.restore.describe(),
            facts: plan.source.facts.clone(),
        });
    }
    let mut reports = Vec::new();
    for plan in &dirs {
        let (report, w) = match restore_source(rt, &target, &marker, &ids, plan) {
            Ok(done) => done,
            Err(e) => {
                // A pack named by the failure is read whole: proven damaged or
                // missing, the index forgets it, so the next backup stores its
                // files again rather than build on it.
                let suspects = crate::pack::damage::suspects(&e);
                if let Some(note) = crate::pack::damage::check_and_forget(
                    rt,
                    &cfg.agent.state_dir,
                    &target,
                    &marker,
                    &suspects,
                ) {
                    eprintln!("{}", coffer_plugins::escape_controls(&note));
                }
                return Err(e);
            }
        };
        warnings.extend(
            w.into_iter()
                .map(|w| format!("source {}: {w}", plan.source.name)),
        );
        if !args.json {
            crate::say!(
                "restored source {} of snapshot {} into {}",
                plan.source.name,
                marker.id,
                plan.dest.display()
            );
        }
        reports.push(report);
    }
    drop(bar);
    let fetched: u64 = dirs
        .iter()
        .map(|d| d.fetched.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    if !args.json && dirs.iter().any(|d| d.source.packed) {
        crate::say!(
            "read {} from target {} for the packed sources",
            crate::units::bytes(fetched),
            target.name
        );
    }
    let db_check = restored_db_check(rt, job, &dirs, &dbs, &mut warnings)?;

    let consistent = reports.iter().all(|r| r.consistent())
        && db_check.as_ref().is_none_or(DbCheckReport::consistent);
    if args.json {
        print_json(&Output {
            job: job.name.clone(),
            snapshot: marker.id.clone(),
            target: target.name.clone(),
            sources: reports,
            databases,
            db_check,
            warnings: warnings.clone(),
            consistent,
            fetched_bytes: fetched,
        })?;
    } else {
        for w in &warnings {
            eprintln!("warning: {}", coffer_plugins::escape_controls(w));
        }
        for r in &reports {
            r.print();
        }
        if let Some(c) = &db_check {
            c.print();
        }
    }
    if !consistent {
        if !job.after_restore.is_empty() && args.to.is_none() && !args.no_hooks {
            say_hooks_skipped(job, &marker.id);
        }
        return Ok(exit::INCONSISTENT);
    }
    if !job.after_restore.is_empty() {
        if args.to.is_some() || args.no_hooks {
            eprintln!(
                "after_restore hooks not run ({})",
                if args.no_hooks {
                    "--no-hooks"
                } else {
                    "restored with --to"
                }
            );
        } else {
            run_hooks(
                "after_restore",
                &job.after_restore,
                &[("COFFER_JOB", &job.name), ("COFFER_SNAPSHOT", &marker.id)],
            )?;
        }
    }
    Ok(exit::OK)
}

/// A restore that did not check out runs no `after_restore` hook (it would start
/// the application on data that does not agree with itself): says so, which ones
/// and how to run them once the operator has decided the state is acceptable.
fn say_hooks_skipped(job: &Job, snapshot: &str) {
    eprintln!(
        "error: the restored data is INCONSISTENT (see above), so these after_restore hooks of job {} were NOT run:",
        job.name
    );
    for h in &job.after_restore {
        eprintln!("  {h}");
    }
    eprintln!(
        "once you accept the restored state, run them yourself, with COFFER_JOB={} COFFER_SNAPSHOT={snapshot} in their environment",
        job.name
    );
}

/// The job's database check on what was just restored, when both sides were.
fn restored_db_check(
    rt: &Handle,
    job: &Job,
    dirs: &[SourceRestore<'_>],
    dbs: &[DbRestore<'_>],
    warnings: &mut Vec<String>,
) -> Result<Option<DbCheckReport>> {
    let Some(check) = &job.check else {
        return Ok(None);
    };
    let files = dirs.iter().find(|d| d.source.name == check.files);
    let db = dbs.iter().find(|d| d.source.name == check.source);
    let (Some(files), Some(db)) = (files, db) else {
        return Ok(None);
    };
    let Some(target) = db.restore.endpoint() else {
        warnings.push(format!(
            "database check not run: {} was written as a file; restore it into a database with --db-url to check it",
            db.source.name
        ));
        return Ok(None);
    };
    Ok(Some(db_check::check(
        rt,
        check,
        &target,
        &files.dest,
        None,
    )?))
}

/// Where a source that this job does not configure came from, which is where a
/// restore without `--to` puts it back: the snapshot's word, taken only when a
/// trusted key signed it (with `--allow-unsigned`, anyone may have written it).
fn origin_of<'a>(marker: &crate::format::Marker, src: &'a SourceManifest) -> Result<&'a str> {
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
fn say_from_origin(json: bool, marker: &crate::format::Marker, src: &SourceManifest) {
    if !json {
        crate::say!(
            "source {} is not in this job's config: restoring it where snapshot {} took it from, {}",
            src.name,
            marker.id,
            coffer_plugins::escape_controls(&src.origin)
        );
    }
}

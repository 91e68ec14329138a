//! Restore's domain entry point, the counterpart of `run::run_job`: what the user
//! asked (`RestoreRequest`) in, a typed outcome (`Restored`) out, everything said
//! on the way through the caller's `Report`. It opens the snapshot, plans and
//! validates every destination before writing (`plan`), restores databases and
//! directories (journalled swap), checks the result (files against the manifest,
//! the job's database check), and keeps the after_restore rule: hooks run only
//! after a consistent restore into the live places (`Restored::after_restore`,
//! called once the caller has shown the outcome). The CLI only parses, prints and
//! picks the exit code; the service or an API can do the same without a terminal.

use super::database::{DbRestore, restore_database};
use super::db_check::{self, DbCheckReport};
use super::plan::{Context, Plan, choose, plan};
use super::tree_check::{Owners, TreeReport};
use super::{SourceRestore, restore_source};
use crate::format::Marker;
use crate::report::{Report, Told, Total, Work};
use anyhow::Result;
use coffer_config::{Config, HookCommand, Job};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use tokio::runtime::Handle;

/// What the user asked a restore to do.
pub(crate) struct RestoreRequest {
    pub job: String,
    /// A snapshot id, or `latest`.
    pub snapshot: String,
    /// The target to read (the job's first when `None`).
    pub target: Option<String>,
    /// The private identity file (the configured one when `None`).
    pub identity: Option<PathBuf>,
    /// Which signers' snapshots are accepted.
    pub trust: crate::format::seal::Trust,
    /// Only these sources (all when empty).
    pub sources: Vec<String>,
    /// Into this folder rather than the live places.
    pub to: Option<PathBuf>,
    /// Only these files and folders of directory sources (needs `to`).
    pub paths: Vec<String>,
    /// Replace what the destinations hold.
    pub force: bool,
    /// How owners are set; `None`: by name, as the source's policy says.
    pub owner: Option<Owners>,
    pub devices: bool,
    pub db_url: Option<String>,
    pub clean: bool,
    /// Never run after_restore hooks.
    pub no_hooks: bool,
}

/// What a restore did and found; its JSON is `coffer restore --json`'s.
#[derive(Serialize)]
pub(crate) struct Restored {
    pub job: String,
    pub snapshot: String,
    pub target: String,
    pub sources: Vec<TreeReport>,
    pub databases: Vec<DbSummary>,
    pub db_check: Option<DbCheckReport>,
    pub warnings: Vec<String>,
    pub consistent: bool,
    /// Bytes read from the target for packed (format-2) sources.
    pub fetched_bytes: u64,
    /// The job's after_restore hooks and why they would not run.
    #[serde(skip)]
    after: AfterRestore,
}

#[derive(Serialize)]
pub(crate) struct DbSummary {
    pub source: String,
    pub restored_to: String,
    pub facts: std::collections::BTreeMap<String, String>,
}

/// The after_restore rule's inputs.
struct AfterRestore {
    hooks: Vec<HookCommand>,
    /// `--no-hooks` or `--to`: restored somewhere the hooks do not look.
    not_live: Option<&'static str>,
}

/// Restores what `req` asks; says on the way what a person would want to know
/// (sources left out, each source restored, bytes read) through `report`, which
/// also follows the progress.
pub(crate) fn restore(
    rt: &Handle,
    cfg: &Config,
    req: &RestoreRequest,
    report: &dyn Report,
) -> Result<Restored> {
    let job = crate::open::job(cfg, &req.job)?;
    let crate::open::Opened {
        target,
        ids,
        marker,
        manifest,
    } = crate::open::open_snapshot(
        rt,
        cfg,
        job,
        &crate::open::Wanted {
            command: "restore",
            target: req.target.as_deref(),
            identity: req.identity.as_deref(),
            snapshot: &req.snapshot,
            trust: &req.trust,
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
    let (chosen, filters) = choose(req, &marker, &manifest)?;
    let is_root = nix::unistd::geteuid().is_root();
    let at = Context {
        rt,
        cfg,
        job,
        marker: &marker,
        is_root,
    };
    let Plan { dirs, dbs } = plan(&at, req, &chosen, &filters, report)?;

    let mut warnings = Vec::new();
    if !is_root && !dirs.is_empty() {
        warnings.push("not running as root: owners are not restored and not checked".to_string());
    }
    for s in &manifest.sources {
        // What is left out is said, so a database's schema version is never
        // taken for a database restored.
        if !chosen.iter().any(|c| c.name == s.name) {
            report.line(&format!(
                "source {} ({}): not restored ({})",
                s.name,
                s.kind,
                if !req.sources.is_empty() && !req.sources.contains(&s.name) {
                    "not named by --source"
                } else if s.kind != coffer_config::SourceType::Directory {
                    "--path restores files and folders of directory sources only"
                } else {
                    "no file or folder of it matches --path"
                }
            ));
        } else if let Some(v) = s.facts.get("schema_version") {
            report.line(&format!(
                "source {}: schema version {} at backup time",
                s.name,
                coffer_plugins::escape_controls(v)
            ));
        }
    }
    let work = Work::new(
        "restore",
        &marker.id,
        Some(total(&marker, &chosen, &dirs, report)?),
    );
    for d in &dirs {
        work.count_also(d.fetched.clone());
    }
    let shown = report.start(work.clone());
    let told = Told {
        work: &work,
        report,
    };
    let tmp_dir = cfg.agent.state_dir.join("tmp");
    let mut databases = Vec::new();
    for plan in &dbs {
        let w = restore_database(rt, &target, &marker, &ids, &tmp_dir, plan, &work)?;
        warnings.extend(
            w.into_iter()
                .map(|w| format!("source {}: {w}", plan.source.name)),
        );
        report.line(&format!(
            "restored source {} ({}) of snapshot {} into {}",
            plan.source.name,
            plan.source.kind,
            marker.id,
            plan.restore.describe()
        ));
        databases.push(DbSummary {
            source: plan.source.name.clone(),
            restored_to: plan.restore.describe(),
            facts: plan.source.facts.clone(),
        });
    }
    let mut reports = Vec::new();
    for plan in &dirs {
        let (tree, w) = match restore_source(rt, &target, &marker, &ids, plan, told) {
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
                    report.notice(&coffer_plugins::escape_controls(&note));
                }
                return Err(e);
            }
        };
        warnings.extend(
            w.into_iter()
                .map(|w| format!("source {}: {w}", plan.source.name)),
        );
        report.line(&format!(
            "restored source {} of snapshot {} into {}",
            plan.source.name,
            marker.id,
            plan.dest.display()
        ));
        reports.push(tree);
    }
    drop(shown);
    let fetched: u64 = dirs.iter().map(|d| d.fetched.load(Ordering::Relaxed)).sum();
    if dirs.iter().any(|d| d.source.packed) {
        report.line(&format!(
            "read {} from target {} for the packed sources",
            crate::units::bytes(fetched),
            target.name
        ));
    }
    let db_check = restored_db_check(rt, job, &dirs, &dbs, &mut warnings)?;
    let consistent = reports.iter().all(|r| r.consistent())
        && db_check.as_ref().is_none_or(DbCheckReport::consistent);
    Ok(Restored {
        job: job.name.clone(),
        snapshot: marker.id.clone(),
        target: target.name.clone(),
        sources: reports,
        databases,
        db_check,
        warnings,
        consistent,
        fetched_bytes: fetched,
        after: AfterRestore {
            hooks: job.after_restore.clone(),
            not_live: match (req.no_hooks, req.to.is_some()) {
                (true, _) => Some("--no-hooks"),
                (false, true) => Some("restored with --to"),
                (false, false) => None,
            },
        },
    })
}

/// What the restore reads: the chosen objects whole, and of the packs its files
/// are in, the ranges it needs; their whole size is the most it reads, so with
/// packs the total is an estimate (the display may end short of it). The packs
/// are listed (one more pass over the entries) only for a display.
fn total(
    marker: &Marker,
    chosen: &[&crate::format::SourceManifest],
    dirs: &[SourceRestore<'_>],
    report: &dyn Report,
) -> Result<Total> {
    let objects: u64 = chosen
        .iter()
        .map(|s| match &s.chunked {
            Some(c) => c.size,
            None => marker.object(&s.object).map_or(0, |o| o.stored_size),
        })
        .fold(0, u64::saturating_add);
    let mut packs = std::collections::BTreeSet::new();
    for d in dirs.iter().filter(|d| report.follows() && d.source.packed) {
        packs.extend(super::packs_needed(d.source, d.keep)?);
    }
    let bytes = packs
        .iter()
        .filter_map(|p| marker.pack(p))
        .map(|p| p.stored_size)
        .fold(objects, u64::saturating_add);
    Ok(Total {
        bytes,
        files: None,
        estimated: !packs.is_empty(),
    })
}

impl Restored {
    /// The after_restore rule, once the caller has shown the outcome: a restore
    /// that did not check out runs no hook (it would start the application on
    /// data that does not agree with itself) and says which ones and how to run
    /// them by hand; one into other places (`--to`) or with `--no-hooks` says why
    /// none ran; a consistent one into the live places runs them.
    pub(crate) fn after_restore(&self, report: &dyn Report) -> Result<()> {
        let hooks = &self.after.hooks;
        if hooks.is_empty() {
            return Ok(());
        }
        match (self.consistent, self.after.not_live) {
            (false, Some(_)) => {}
            (false, None) => {
                report.notice(&format!(
                    "error: the restored data is INCONSISTENT (see above), so these \
                     after_restore hooks of job {} were NOT run:",
                    self.job
                ));
                for h in hooks {
                    report.notice(&format!("  {h}"));
                }
                report.notice(&format!(
                    "once you accept the restored state, run them yourself, with COFFER_JOB={} \
                     COFFER_SNAPSHOT={} in their environment",
                    self.job, self.snapshot
                ));
            }
            (true, Some(why)) => report.notice(&format!("after_restore hooks not run ({why})")),
            (true, None) => crate::hooks::run_hooks(
                "after_restore",
                hooks,
                &[
                    ("COFFER_JOB", &self.job),
                    ("COFFER_SNAPSHOT", &self.snapshot),
                ],
                report,
            )?,
        }
        Ok(())
    }
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

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;

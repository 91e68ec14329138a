//! Subcommand dispatch and the small lookups every subcommand shares.

mod args;
mod backup;
mod check;
mod completions;
mod config_check;
mod config_warnings;
mod copy;
mod diff;
mod dry_run;
mod entries;
mod find;
mod keygen;
mod list;
mod ls;
mod man;
mod man_config;
mod man_sections;
mod mount;
mod prune;
mod repair;
mod restore;
mod roff;
mod stats;
mod status;
mod verify;

pub use args::*;
// main sets the log format before any hook runs.
pub use crate::hooks::log_as_json;
// And how progress is shown, before any work starts.
pub use crate::progress::set_mode as set_progress_mode;

use crate::exit::usage;
use crate::repo::read_target;
use anyhow::Result;
use coffer_config::{Config, Job};
use coffer_plugins::Target;
use tokio::runtime::Handle;

pub fn run(cli: Cli, rt: &Handle) -> Result<u8> {
    match &cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Config(ConfigCommand::Check) => config_check::run(&load(&cli)?),
        Command::Backup(a) => backup::run(rt, &load(&cli)?, &cli.config, a),
        Command::List(a) => list::run(rt, &load(&cli)?, a),
        Command::Status(a) => status::run(&load(&cli)?, a),
        Command::Stats(a) => stats::run(rt, &load(&cli)?, a),
        Command::Restore(a) => restore::run(rt, &load(&cli)?, a),
        Command::Verify(a) => verify::run(rt, &load(&cli)?, a),
        Command::Check(a) => check::run(rt, &load(&cli)?, a),
        Command::Prune(a) => prune::run(rt, &load(&cli)?, a),
        Command::Repair(a) => repair::run(rt, &load(&cli)?, a),
        Command::Copy(a) => copy::run(rt, &load(&cli)?, a),
        Command::Ls(a) => ls::run(rt, &load(&cli)?, a),
        Command::Find(a) => find::run(rt, &load(&cli)?, a),
        Command::Diff(a) => diff::run(rt, &load(&cli)?, a),
        Command::Agent => crate::service::run(rt, &cli.config),
        Command::Completions { shell } => completions::run(*shell),
        Command::CompleteJobs => completions::jobs(&cli.config),
        Command::Mount(a) => mount::run(rt, &load(&cli)?, a),
        Command::Man(a) => man::run(a),
    }
}

fn load(cli: &Cli) -> Result<Config> {
    Ok(coffer_config::load(&cli.config)?)
}

pub(crate) fn job<'a>(cfg: &'a Config, name: &str) -> Result<&'a Job> {
    cfg.jobs.get(name).ok_or_else(|| {
        let known: Vec<&str> = cfg.jobs.keys().map(String::as_str).collect();
        usage(format!(
            "no job \"{name}\" in {}; jobs: {}",
            cfg.file.display(),
            known.join(", ")
        ))
    })
}

/// The jobs `--job` and `--target` pick (every job without them): an unknown job
/// or target is a usage error naming it; with `--target`, only the jobs that ship
/// to it.
pub(crate) fn jobs_for<'a>(
    cfg: &'a Config,
    job: Option<&str>,
    target: Option<&str>,
) -> Result<Vec<&'a Job>> {
    if let Some(t) = target
        && !cfg.targets.contains_key(t)
    {
        return Err(usage(format!(
            "no target \"{t}\" in {}",
            cfg.file.display()
        )));
    }
    let jobs = match job {
        Some(j) => vec![self::job(cfg, j)?],
        None => cfg.jobs.values().collect(),
    };
    Ok(jobs
        .into_iter()
        .filter(|j| target.is_none_or(|t| j.targets.iter().any(|n| n == t)))
        .collect())
}

/// What restore and check start from: the target, the identity, the chosen
/// snapshot's marker and its decrypted manifest.
pub(crate) struct Opened {
    pub target: Target,
    pub ids: crate::keys::Identities,
    pub marker: crate::format::Marker,
    pub manifest: crate::format::Manifest,
}

/// Which snapshot a reading command asked for, from its flags.
pub(crate) struct Wanted<'a> {
    pub command: &'a str,
    pub target: Option<&'a str>,
    pub identity: Option<&'a std::path::Path>,
    pub snapshot: &'a str,
    pub trust: &'a crate::cli::TrustArgs,
}

pub(crate) fn open_snapshot(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    wanted: &Wanted<'_>,
) -> Result<Opened> {
    let Wanted {
        command,
        target,
        identity,
        snapshot,
        trust,
    } = *wanted;
    let Reader { target, ids } = open_reader(cfg, job, command, target, identity)?;
    let trust = trust_of(cfg, trust);
    let markers = crate::repo::snapshots(rt, &target, &job.name)?;
    crate::repo::vet_signers(&trust, &markers, &job.name, &target.name)?;
    let marker = crate::repo::pick_trusted(markers, snapshot, &job.name, &target.name, &trust)?;
    // A snapshot for other keys is not damage: say so, with the identity tried.
    let manifest = read_manifest(rt, cfg, &target, &ids, &marker).map_err(|e| {
        match (
            crate::key_match::not_for_identity(&e),
            crate::keys::identity_path(identity, &cfg.encryption),
        ) {
            (Some(n), Some(file)) => usage(format!(
                "snapshot {} on target {}: {}",
                marker.id,
                target.name,
                n.with_file(file)
            )),
            _ => e,
        }
    })?;
    Ok(Opened {
        target,
        ids,
        marker,
        manifest,
    })
}

/// What a command that decrypts manifests holds before it picks snapshots: the
/// target it reads and the private identity.
pub(crate) struct Reader {
    pub target: Target,
    pub ids: crate::keys::Identities,
}

/// `--target` (default: the job's first) and `--identity` (default: the configured
/// identity_file), both checked before anything is read.
pub(crate) fn open_reader(
    cfg: &Config,
    job: &Job,
    command: &str,
    target: Option<&str>,
    identity: Option<&std::path::Path>,
) -> Result<Reader> {
    let target = read_target(cfg, job, target)?;
    let id_file = crate::keys::identity_path(identity, &cfg.encryption).ok_or_else(|| {
        usage(format!(
            "{command} reads the encrypted manifest and needs the private identity: \
             pass --identity FILE or set [encryption] identity_file"
        ))
    })?;
    let ids = crate::keys::identities(id_file).map_err(|e| usage(format!("{e:#}")))?;
    Ok(Reader { target, ids })
}

/// A snapshot's manifest, its file lists kept in scratch files in the state
/// directory (never in memory).
pub(crate) fn read_manifest(
    rt: &Handle,
    cfg: &Config,
    target: &Target,
    ids: &crate::keys::Identities,
    marker: &crate::format::Marker,
) -> Result<crate::format::Manifest> {
    let tmp_dir = cfg.agent.state_dir.join("tmp");
    crate::repo::read_manifest(rt, target, marker, ids, &tmp_dir)
}

/// The snapshots a reading command accepts: the config's signers, this host's own
/// key, and the command line's.
pub(crate) fn trust_of(cfg: &Config, args: &crate::cli::TrustArgs) -> crate::format::seal::Trust {
    crate::format::seal::Trust::new(&cfg.encryption, &args.trust_signers, args.allow_unsigned)
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    crate::say!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

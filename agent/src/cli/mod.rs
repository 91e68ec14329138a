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
pub(crate) mod output;
pub(crate) mod progress;
mod prune;
mod repair;
mod report;
mod restore;
mod roff;
mod stats;
mod status;
mod verify;

pub use args::*;
// main sets the log format before any hook runs.
pub use crate::hooks::log_as_json;
// And how progress is shown, before any work starts.
pub use progress::set_mode as set_progress_mode;

use crate::exit::usage;
use anyhow::Result;
use coffer_config::{Config, Job};
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

pub(crate) use crate::open::job;

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

// Opening a snapshot is the domain's (`crate::open`); commands name it from here.
pub(crate) use crate::open::{Opened, Reader, open_reader};

/// Which snapshot a reading command asked for, from its flags.
pub(crate) struct Wanted<'a> {
    pub command: &'a str,
    pub target: Option<&'a str>,
    pub identity: Option<&'a std::path::Path>,
    pub snapshot: &'a str,
    pub trust: &'a crate::cli::TrustArgs,
}

/// `crate::open::open_snapshot` with the trust the flags give.
pub(crate) fn open_snapshot(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    wanted: &Wanted<'_>,
) -> Result<Opened> {
    let trust = trust_of(cfg, wanted.trust);
    crate::open::open_snapshot(
        rt,
        cfg,
        job,
        &crate::open::Wanted {
            command: wanted.command,
            target: wanted.target,
            identity: wanted.identity,
            snapshot: wanted.snapshot,
            trust: &trust,
        },
    )
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

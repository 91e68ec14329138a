//! Opening one snapshot for reading, as restore, check and the browsing commands
//! start: the target and the private identity (checked before anything is
//! read), the trusted marker picked, its manifest decrypted. Domain code: the CLI
//! turns its flags into a `Wanted`, the service or an API would do the same.

use crate::exit::usage;
use crate::repo::read_target;
use anyhow::Result;
use coffer_config::{Config, Job};
use coffer_plugins::Target;
use tokio::runtime::Handle;

/// The job named `name` in `cfg`; unknown: a usage error listing the jobs.
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

/// What restore and check start from: the target, the identity, the chosen
/// snapshot's marker and its decrypted manifest.
pub(crate) struct Opened {
    pub target: Target,
    pub ids: crate::keys::Identities,
    pub marker: crate::format::Marker,
    pub manifest: crate::format::Manifest,
}

/// Which snapshot a reading command asked for, and whose signatures it trusts.
pub(crate) struct Wanted<'a> {
    pub command: &'a str,
    pub target: Option<&'a str>,
    pub identity: Option<&'a std::path::Path>,
    pub snapshot: &'a str,
    pub trust: &'a crate::format::seal::Trust,
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
    let markers = crate::repo::snapshots(rt, &target, &job.name)?;
    crate::repo::vet_signers(trust, &markers, &job.name, &target.name)?;
    let marker = crate::repo::pick_trusted(markers, snapshot, &job.name, &target.name, trust)?;
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

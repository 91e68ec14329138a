//! Verifying stored snapshots, for `coffer verify` and the service's verify schedule.
//!
//! Without an identity it re-reads every object and compares size and BLAKE3 with
//! `snapshot.json` (what a host holding only public keys can do). With one it also
//! decrypts and decompresses, and checks every file's size and BLAKE3 against the
//! manifest, writing nothing to disk. The mode is recorded with the outcome: only
//! a deep verify sets the deep success time. A snapshot that is not encrypted to
//! the identity given is reported as such, never as damaged. A pack proven
//! damaged or missing (in either mode) is forgotten by the job's local index at
//! once, so the next backup stores its files again (`pack::damage`).

mod archive;
pub(crate) mod job;

use crate::exit::usage;
use crate::format::{Manifest, Marker, object_path};
use crate::keys::{self, Identities};
use crate::pipeline::read::{ObjectReader, Pumped, decrypt};
use crate::repo;
use crate::repo::targets_of;
use crate::report::Work;
use anyhow::{Result, bail};
use archive::check_archive;
use coffer_config::Config;
use coffer_plugins::Target;
use serde::Serialize;
use std::sync::Arc;
use tokio::runtime::Handle;

/// What a verify read: only the stored bytes (any host), or also the decrypted
/// contents (a host with the identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    Stored,
    Deep,
}

impl VerifyMode {
    /// As in the status file and the `mode` label of the verify metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Stored => "stored",
            VerifyMode::Deep => "deep",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    /// Which job: `coffer verify` without `--job` reports every job in one list.
    pub job: String,
    pub target: String,
    pub snapshot: String,
    pub mode: VerifyMode,
    pub ok: bool,
    /// Set when the snapshot is not for the identity given: not damage, and not
    /// verified either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_for_identity: Option<crate::key_match::NotForIdentity>,
    pub objects: usize,
    pub files: usize,
    pub problems: Vec<String>,
    /// Packs of this snapshot proven damaged or missing on this target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_packs: Vec<String>,
}

/// A verify's verdicts, and what the local index did about packs proven bad.
#[derive(Debug)]
pub struct Verified {
    pub verdicts: Vec<Verdict>,
    /// For the operator: the index forgot packs (or could not).
    pub index: Option<String>,
}

/// Verifies snapshots of `job` (`which`: an id, `latest` or `all`) on its targets
/// (or `only`), deep when identities are given; records the outcome in the job's
/// status (the `coffer_verify_*` metrics). Used by `coffer verify` and the agent.
pub fn verify_job(
    rt: &Handle,
    cfg: &Config,
    job: &coffer_config::Job,
    only: Option<&str>,
    which: &str,
    ids: Option<&Identities>,
) -> Result<Verified> {
    let trust = crate::format::seal::Trust::new(&cfg.encryption, &[], false);
    let work = Work::new("verify", &job.name, None);
    verify_job_trusting(rt, cfg, (job, only, which), ids, &trust, &work)
}

/// `verify_job` with the signers the command line adds, counting what it reads
/// in `work`. A snapshot that `trust` refuses is a problem in either mode; deep
/// mode never decrypts it.
pub fn verify_job_trusting(
    rt: &Handle,
    cfg: &Config,
    (job, only, which): (&coffer_config::Job, Option<&str>, &str),
    ids: Option<&Identities>,
    trust: &crate::format::seal::Trust,
    work: &Arc<Work>,
) -> Result<Verified> {
    let targets = targets_of(cfg, job, only, coffer_plugins::Access::Read)?;
    let mut verdicts = Vec::new();
    let mut planned = 0u64;
    for target in &targets {
        let all = repo::snapshots(rt, target, &job.name)?;
        repo::vet_signers(trust, &all, &job.name, &target.name)?;
        let chosen: Vec<Marker> = match which {
            "all" => all,
            which => vec![repo::pick_trusted(
                all,
                which,
                &job.name,
                &target.name,
                trust,
            )?],
        };
        planned = chosen
            .iter()
            .map(|m| planned_read(m, ids.is_some()))
            .fold(planned, u64::saturating_add);
        work.set_total(planned, ids.is_some());
        for marker in chosen {
            let mut v = Verdict {
                job: job.name.clone(),
                target: target.name.clone(),
                snapshot: marker.id.clone(),
                mode: if ids.is_some() {
                    VerifyMode::Deep
                } else {
                    VerifyMode::Stored
                },
                ok: true,
                not_for_identity: None,
                objects: 0,
                files: 0,
                problems: Vec::new(),
                bad_packs: Vec::new(),
            };
            let result = match (trust.refusal(&marker), ids) {
                (Some(why), _) => {
                    v.problems.push(why);
                    Ok(())
                }
                (None, None) => stored(rt, target, &marker, &mut v, work),
                (None, Some(ids)) => deep(
                    rt,
                    target,
                    (&marker, ids),
                    &cfg.agent.state_dir,
                    &mut v,
                    work,
                ),
            };
            if let Err(e) = result {
                match crate::key_match::not_for_identity(&e) {
                    Some(n) => v.not_for_identity = Some(n.clone()),
                    None => v.problems.push(format!("{e:#}")),
                }
            }
            // Object Lock: every object the snapshot needs is held as long as it.
            if let (None, Some(lock)) = (trust.refusal(&marker), target.object_lock()) {
                let short = crate::retention::held::short_holds(rt, lock, &job.name, &marker);
                v.problems.extend(short);
            }
            v.ok = v.problems.is_empty() && v.not_for_identity.is_none();
            verdicts.push(v);
        }
    }
    let ok = verdicts.iter().all(|v| v.ok);
    let mode = if ids.is_some() {
        VerifyMode::Deep
    } else {
        VerifyMode::Stored
    };
    // A stored-bytes verify proves the bytes are there, not that they decrypt:
    // it never counts as a deep one (the metrics tell the two apart).
    let recorded = crate::status::update(&cfg.agent.state_dir, &job.name, |s| {
        let now = crate::status::now();
        s.last_verify = Some(now);
        s.last_verify_mode = Some(mode.into());
        s.last_verify_ok = Some(ok);
        if ok {
            match mode {
                VerifyMode::Deep => s.last_deep_verify_success = Some(now),
                VerifyMode::Stored => s.last_stored_verify_success = Some(now),
            }
        }
    });
    if let Err(e) = recorded {
        tracing::warn!("cannot record the verify status of job {}: {e:#}", job.name);
    }
    // Only packs of trusted markers were read, so a planted marker cannot make
    // the index forget anything.
    let bad: Vec<String> = verdicts
        .iter()
        .flat_map(|v| v.bad_packs.iter().cloned())
        .collect();
    let index = match crate::pack::damage::forget(&cfg.agent.state_dir, &job.name, &bad) {
        Ok(forgot) => forgot.map(|f| f.say(&job.name)),
        Err(e) => Some(format!("{e:#}")),
    };
    Ok(Verified { verdicts, index })
}

/// The identities to verify with: `--identity`, else the configured file when it
/// exists (deep mode); none means stored-bytes mode.
pub fn identities_for(
    cfg: &Config,
    cli: Option<&std::path::Path>,
    stored_only: bool,
) -> Result<Option<Identities>> {
    if stored_only {
        return Ok(None);
    }
    match keys::identity_path(cli, &cfg.encryption) {
        Some(f) if f.exists() || cli.is_some() => Ok(Some(
            keys::identities(f).map_err(|e| usage(format!("{e:#}")))?,
        )),
        _ => Ok(None),
    }
}

fn stored(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    v: &mut Verdict,
    work: &Arc<Work>,
) -> Result<()> {
    for o in &marker.objects {
        let path = object_path(&marker.job, &marker.id, &o.key);
        let copied = ObjectReader::open(rt, target, &path, Some(o))
            .map(|r| r.counting(work))
            .and_then(|mut r| std::io::copy(&mut r, &mut std::io::sink()));
        if let Err(e) = copied {
            v.problems.push(e.to_string());
        }
        v.objects += 1;
    }
    stored_packs(rt, target, marker, v, work);
    Ok(())
}

/// What verifying `marker` reads: its objects and packs, and in deep mode the
/// packed files rebuilt from the packs again (at most the packs once more: an
/// estimate).
fn planned_read(marker: &Marker, deep: bool) -> u64 {
    let packs = marker
        .packs
        .iter()
        .map(|p| p.stored_size)
        .fold(0, u64::saturating_add);
    marker
        .stored_size()
        .saturating_add(if deep { packs } else { 0 })
}

/// Every pack the marker lists, read whole and checked against its stored size
/// and BLAKE3: a target that lacks one (it missed runs, someone deleted it) fails,
/// and one proven bad is noted for the index to forget.
fn stored_packs(rt: &Handle, target: &Target, marker: &Marker, v: &mut Verdict, work: &Arc<Work>) {
    use crate::pack::damage::{Stored, check_stored_for};
    for p in &marker.packs {
        match check_stored_for(rt, target, &marker.job, p, Some(work)) {
            Stored::Intact => {}
            Stored::Bad(why) => {
                v.problems.push(why);
                v.bad_packs.push(p.id.clone());
            }
            Stored::Unreadable(why) => v.problems.push(why),
        }
        v.objects += 1;
    }
}

fn deep(
    rt: &Handle,
    target: &Target,
    (marker, ids): (&Marker, &Identities),
    state_dir: &std::path::Path,
    v: &mut Verdict,
    work: &Arc<Work>,
) -> Result<()> {
    let manifest: Manifest = repo::read_manifest(rt, target, marker, ids, &state_dir.join("tmp"))?;
    v.objects += 1;
    // Every file is hashed whole, sparse files' holes too: declared holes beyond
    // what a backup writes would keep the CPU busy for hours.
    crate::format::untrusted::check_holes(&manifest).map_err(|why| {
        anyhow::anyhow!(
            "snapshot {} on target {}: {why}; not verified: it was not written by coffer",
            marker.id,
            target.name
        )
    })?;
    // Packed sources: every pack's stored bytes, then every file rebuilt from the
    // packs and checked against the manifest, as an archive would be.
    if manifest
        .sources
        .iter()
        .any(|s| s.packed || s.chunked.is_some())
    {
        stored_packs(rt, target, marker, v, work);
    }
    // Chunked streams (dumps): every chunk fetched and checked, then the whole.
    for s in manifest.sources.iter() {
        let Some(chunked) = &s.chunked else { continue };
        let fetched = Arc::new(std::sync::atomic::AtomicU64::new(0));
        work.count_also(fetched.clone());
        let packs = crate::pack::read::PackReader::of_target(rt, target, &marker.job, ids, fetched);
        let label = format!("snapshot {}, source {}", marker.id, s.name);
        let mut stream = crate::pack::chunk_stream::ChunkStream::new(packs, marker, chunked, label);
        if let Err(e) = std::io::copy(&mut stream, &mut std::io::sink()) {
            v.problems.push(e.to_string());
        }
    }
    for s in manifest.sources.iter().filter(|s| s.packed) {
        let fetched = Arc::new(std::sync::atomic::AtomicU64::new(0));
        work.count_also(fetched.clone());
        let view = crate::pack::tar_view::PackedView {
            rt,
            target,
            marker,
            ids,
            fetched,
        };
        let checked =
            crate::pack::tar_view::with_tar(&view, s, None, |plain| check_archive(plain, s, v));
        if let Err(e) = checked {
            v.problems.push(format!("{e:#}"));
        }
    }
    for o in marker.objects.iter().filter(|o| o.source.is_some()) {
        let src = o.source.as_deref().and_then(|s| manifest.source(s));
        let path = object_path(&marker.job, &marker.id, &o.key);
        let checked = ObjectReader::open(rt, target, &path, Some(o))
            .and_then(|reader| decrypt(reader.counting(work), ids))
            .and_then(Pumped::spawn)
            .map_err(anyhow::Error::from)
            .and_then(|mut plain| match src {
                Some(s) if s.kind == coffer_config::SourceType::Directory => {
                    check_archive(&mut plain, s, v)
                }
                _ => {
                    let n = std::io::copy(&mut plain, &mut std::io::sink())?;
                    if n != o.plaintext_size {
                        bail!(
                            "{path}: {n} plaintext bytes, snapshot.json says {}",
                            o.plaintext_size
                        );
                    }
                    Ok(())
                }
            });
        if let Err(e) = checked {
            v.problems.push(format!("{e:#}"));
        }
        v.objects += 1;
    }
    Ok(())
}

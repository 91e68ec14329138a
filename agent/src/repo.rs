//! Reading what a target holds: which snapshots exist (those with a commit marker),
//! their markers, and their manifests; and which targets of a job to open.

use crate::exit::usage;
use crate::format::id::is_id;
use crate::format::untrusted::{
    ENTRIES_ALLOWED_ANYWAY, JsonGuard, MAX_ENTRIES_PER_STORED_BYTE, MAX_MARKER_BYTES,
    MIN_ENTRY_JSON_BYTES, check_manifest, max_entries,
};
use crate::format::{MANIFEST, MARKER, Manifest, Marker, object_path};
use crate::keys::Identities;
use crate::pipeline::read::{ObjectReader, decrypt};
use anyhow::{Context, Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::entry_log::spill_into_at_most;
use coffer_plugins::{Access, Op, Target, open_target};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use tokio::runtime::Handle;

/// Committed snapshots of `job` on `target`, in the order they finished (the first
/// finished first: `Marker::cmp_finished`). Folders without a marker (a run that
/// crashed or is still running) are not snapshots.
pub fn snapshots(rt: &Handle, target: &Target, job: &str) -> Result<Vec<Marker>> {
    let listing = rt
        .block_on(target.store.list_with_delimiter(Some(&ObjPath::from(job))))
        .map_err(|e| {
            anyhow!(
                "cannot list job {job}: {}",
                target.explain(Op::List, &e).message
            )
        })?;
    let mut out = Vec::new();
    for dir in &listing.common_prefixes {
        let Some(id) = dir.filename().filter(|f| is_id(f)) else {
            continue;
        };
        let path = object_path(job, id, MARKER);
        match rt.block_on(read_marker_bytes(target, &path)) {
            Ok(Some(bytes)) => {
                // A folder anyone could have planted: report it and carry on, so one
                // bad marker cannot stop list, prune or a backup's retention.
                match crate::format::seal::open(&bytes)
                    .and_then(|m| crate::format::untrusted::check_marker(&m, job, id).map(|()| m))
                {
                    Ok(marker) => out.push(marker),
                    Err(why) => tracing::warn!(
                        "ignoring {path} on target {}: {}",
                        target.name,
                        coffer_plugins::escape_controls(&why)
                    ),
                }
            }
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(Marker::cmp_finished);
    Ok(out)
}

/// A marker's bytes, `None` when there is none; never more than a marker can be.
pub(crate) async fn read_marker_bytes(target: &Target, path: &ObjPath) -> Result<Option<Vec<u8>>> {
    let got = match target.store.get(path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => {
            return Err(anyhow!(
                "cannot read {path}: {}",
                target.explain(Op::Read, &e).message
            ));
        }
    };
    if got.meta.size > MAX_MARKER_BYTES {
        tracing::warn!(
            "ignoring {path} on target {}: {} bytes is larger than any snapshot marker",
            target.name,
            got.meta.size
        );
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            anyhow!(
                "cannot read {path}: {}",
                target.explain(Op::Read, &e).message
            )
        })?;
        if (out.len() + chunk.len()) as u64 > MAX_MARKER_BYTES {
            tracing::warn!(
                "ignoring {path} on target {}: larger than any snapshot marker",
                target.name
            );
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// The keys `--trust-signer` adds, checked against the job's snapshots on
/// `target` before any is read: one that signed none is a usage error naming who
/// did, each other one is announced with what it signed.
pub fn vet_signers(
    trust: &crate::format::seal::Trust,
    markers: &[Marker],
    job: &str,
    target: &str,
) -> Result<()> {
    let notices = crate::format::signers::vet_given(trust, markers, job, target)
        .map_err(|e| anyhow!(crate::exit::UsageError(e)))?;
    for n in notices {
        // At warn: the CLI shows warnings, and trusting a key is worth seeing.
        tracing::warn!("{n}");
    }
    Ok(())
}

/// `latest` (the one that finished last) or an exact id.
pub fn pick(markers: Vec<Marker>, which: &str, job: &str, target: &str) -> Result<Marker> {
    let found = if which == "latest" {
        markers.into_iter().max_by(Marker::cmp_finished)
    } else {
        markers.into_iter().find(|m| m.id == which)
    };
    found.ok_or_else(|| {
        anyhow!(crate::exit::UsageError(format!(
            "no snapshot {which} of job {job} on target {target}; `coffer list --job {job}` shows what exists"
        )))
    })
}

/// Like `pick`, among the snapshots `trust` accepts: `latest` is the accepted one
/// that finished last (refused ones that claim to have finished later are
/// reported; their time is unproven, so it decides nothing), an exact id that is
/// refused is an error that says what to do.
pub fn pick_trusted(
    mut markers: Vec<Marker>,
    which: &str,
    job: &str,
    target: &str,
    trust: &crate::format::seal::Trust,
) -> Result<Marker> {
    if which != "latest" {
        let m = pick(markers, which, job, target)?;
        if let Some(why) = trust.refusal(&m) {
            return Err(anyhow!(crate::exit::UsageError(why)));
        }
        return Ok(m);
    }
    markers.sort_by(|a, b| b.cmp_finished(a));
    let Some(at) = markers.iter().position(|m| trust.refusal(m).is_none()) else {
        return Err(anyhow!(crate::exit::UsageError(if markers.is_empty() {
            format!(
                "no snapshot latest of job {job} on target {target}; `coffer list --job {job}` shows what exists"
            )
        } else {
            format!(
                "no accepted snapshot of job {job} on target {target}: none of its {} is signed \
                 by a key this host trusts. They are signed by:{}\nIf one of these is the key of \
                 the host that made the backups (compare it with the `public:` line of that \
                 host's signing key file, or with what its first backup logged), add it to \
                 [encryption] trusted_signers or pass --trust-signer KEY; --allow-unsigned \
                 accepts unsigned snapshots",
                crate::units::count(markers.len() as u64, "snapshot"),
                crate::format::signers::listing(&markers, trust)
            )
        })));
    };
    // Refused ones that claim to have finished later: one notice, not one each.
    if at > 0 {
        let ids: Vec<&str> = markers[..at].iter().map(|m| m.id.as_str()).collect();
        let shown = if ids.len() > 5 {
            format!("{} and {} more", ids[..5].join(", "), ids.len() - 5)
        } else {
            ids.join(", ")
        };
        tracing::warn!(
            "target {target}: skipping snapshot {shown}: they claim to have finished later than \
             {}, but no key this host trusts signed them:{}",
            markers[at].id,
            crate::format::signers::listing(&markers[..at], trust)
        );
    }
    Ok(markers.swap_remove(at))
}

pub fn read_manifest(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    tmp_dir: &std::path::Path,
) -> Result<Manifest> {
    let path = object_path(&marker.job, &marker.id, MANIFEST);
    // The file list goes to a scratch file in the state directory, not to memory,
    // and holds no more entries than a manifest of its size can.
    let (source, max, why): (Box<dyn std::io::Read + '_>, u64, String) = match &marker.manifest {
        Some(chunks) => {
            let packs = crate::pack::read::PackReader::of_target(
                rt,
                target,
                &marker.job,
                ids,
                Default::default(),
            );
            let label = format!("snapshot {}: the manifest", marker.id);
            let max = (chunks.size / MIN_ENTRY_JSON_BYTES).saturating_add(ENTRIES_ALLOWED_ANYWAY);
            let why = format!(
                "snapshot {}: its manifest of {} bytes lists more than {max} file entries, \
                 more than {MIN_ENTRY_JSON_BYTES} bytes each can, so it was not written by \
                 coffer: restore another snapshot",
                marker.id, chunks.size
            );
            let mut stream =
                crate::pack::chunk_stream::ChunkStream::manifest(packs, marker, chunks, label);
            stream.start()?;
            (Box::new(stream), max, why)
        }
        None => {
            let record = marker
                .object(MANIFEST)
                .ok_or_else(|| anyhow!("snapshot {} has no manifest in its marker", marker.id))?;
            let reader = ObjectReader::open(rt, target, &path, Some(record))?;
            let max = max_entries(record.stored_size);
            let why = format!(
                "snapshot {}: its manifest of {} stored bytes lists more than {max} file entries; \
                 coffer's manifests hold at most {MAX_ENTRIES_PER_STORED_BYTE} per stored byte \
                 (the densest real ones 1.25), so it was not written by coffer: restore \
                 another snapshot",
                marker.id, record.stored_size
            );
            (Box::new(decrypt(reader, ids)?), max, why)
        }
    };
    // serde_json reads a byte at a time: without a buffer every byte was a call
    // through the decryption stack (0.4 s for 100,000 files).
    let mut plain = std::io::BufReader::with_capacity(256 << 10, JsonGuard::new(source));
    let manifest: Manifest =
        spill_into_at_most(tmp_dir, max, why, || serde_json::from_reader(&mut plain))
            .with_context(|| {
                format!("{path} on target {}: cannot read the manifest", target.name)
            })?;
    // Read to the end so the stored bytes are checked against the marker.
    std::io::copy(&mut plain, &mut std::io::sink())?;
    check_manifest(&manifest, marker).map_err(|why| {
        anyhow!(
            "{path} on target {}: {}; the snapshot was tampered with",
            target.name,
            coffer_plugins::escape_controls(&why)
        )
    })?;
    Ok(manifest)
}

/// The job's targets, or just `--target` (which must be one of them), opened for
/// `access`: only a backup (`Access::Write`) may create a local target's directory.
pub fn targets_of(
    cfg: &Config,
    job: &Job,
    only: Option<&str>,
    access: Access,
) -> Result<Vec<Target>> {
    let names: Vec<&String> = match only {
        Some(t) if job.targets.iter().any(|n| n == t) => {
            job.targets.iter().filter(|n| *n == t).collect()
        }
        Some(t) => {
            return Err(usage(format!(
                "job {} has no target \"{t}\"; its targets: {}",
                job.name,
                job.targets.join(", ")
            )));
        }
        None => job.targets.iter().collect(),
    };
    names
        .into_iter()
        .map(|n| {
            let t = cfg
                .targets
                .get(n)
                .ok_or_else(|| usage(format!("target {n} is not defined")))?;
            // Prune aborts the S3 uploads a killed run left, as written down here.
            Ok(open_target(t, access)?.with_upload_journal(&cfg.agent.state_dir))
        })
        .collect()
}

/// One target to read from: `--target`, else the job's first.
pub fn read_target(cfg: &Config, job: &Job, only: Option<&str>) -> Result<Target> {
    let mut all = targets_of(
        cfg,
        job,
        only.or(job.targets.first().map(String::as_str)),
        Access::Read,
    )?;
    all.pop()
        .ok_or_else(|| usage(format!("job {} has no targets", job.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::seal::{Seal, Trust};

    fn marker(id: &str, finished_at: &str, seal: Seal) -> Marker {
        let json = serde_json::json!({
            "format": 2, "id": id, "job": "app", "host": "h", "coffer_version": "0",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": finished_at,
            "skew_seconds": 0.0, "objects": [],
        });
        let mut m: Marker = serde_json::from_value(json).expect("marker");
        m.seal = seal;
        m
    }

    fn trust(signer: &coffer_config::Signer) -> Trust {
        let enc = coffer_config::Encryption {
            recipients: Vec::new(),
            identity_file: None,
            create_identity_if_missing: false,
            signing_key: "/nonexistent/signing.key".into(),
            trusted_signers: vec![*signer],
        };
        Trust::new(&enc, &[], false)
    }

    #[test]
    fn latest_is_the_one_that_finished_last_then_the_highest_id() {
        // Ids of earlier versions: one second, random digits in no order.
        let s = Seal::Unsigned;
        let ms = [
            marker(
                "20260101T000000Z-ffff",
                "2026-01-01T00:00:00.100Z",
                s.clone(),
            ),
            marker(
                "20260101T000000Z-8000",
                "2026-01-01T00:00:00.900Z",
                s.clone(),
            ),
            marker(
                "20260101T000000Z-0001",
                "2026-01-01T00:00:00.500Z",
                s.clone(),
            ),
        ];
        let latest = pick(ms.to_vec(), "latest", "app", "t").expect("a latest");
        assert_eq!(latest.id, "20260101T000000Z-8000");
        // Equal times (copies of one marker): the id decides.
        let tied = vec![
            marker("20260101T000000Z-0002", "2026-01-01T00:00:01Z", s.clone()),
            marker("20260101T000000Z-0001", "2026-01-01T00:00:01Z", s),
        ];
        assert_eq!(
            pick(tied, "latest", "app", "t").expect("a latest").id,
            "20260101T000000Z-0002"
        );
    }

    #[test]
    fn an_untrusted_marker_claiming_a_later_time_is_never_the_trusted_latest() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let ours = coffer_config::Signer(key.verifying_key());
        let stranger =
            coffer_config::Signer(ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key());
        let ms = vec![
            marker(
                "20260101T000000Z-0001",
                "2026-01-01T00:00:00.2Z",
                Seal::Signed(ours),
            ),
            marker(
                "20260101T000000Z-0002",
                "2026-01-01T00:00:00.1Z",
                Seal::Signed(ours),
            ),
            marker(
                "20000101T000000Z-0003",
                "2999-01-01T00:00:00Z",
                Seal::Unsigned,
            ),
            marker(
                "20000101T000000Z-0004",
                "2999-01-01T00:00:00Z",
                Seal::Signed(stranger),
            ),
        ];
        let got = pick_trusted(ms.clone(), "latest", "app", "t", &trust(&ours)).expect("latest");
        assert_eq!(got.id, "20260101T000000Z-0001");
        // Without trust (list's view) the claim is what orders.
        assert_eq!(
            pick(ms, "latest", "app", "t").expect("latest").id,
            "20000101T000000Z-0004"
        );
    }
}

//! What a job takes on one target, for `coffer stats`: snapshots, packs and
//! objects and their stored bytes, what no kept snapshot uses (`dead`, the
//! estimate prune and the metrics use: `pack::gc::waste`) and the packs no marker
//! references (what prune deletes once older than `incomplete_after`). All of it
//! from the signed markers, without the private key; with the identity also the
//! logical size (the files' sizes in the manifests) and the dedup ratio.
//!
//! A target is anyone's who can write to it: only markers signed by a trusted key
//! count (as for restore and verify), sizes are summed without overflow, and a
//! manifest is read through `repo::read_manifest`, which checks it against its
//! marker and bounds what it may hold.

use crate::format::seal::Trust;
use crate::format::{Manifest, Marker};
use crate::keys::Identities;
use crate::pack::gc::Listed;
use anyhow::Result;
use coffer_config::{Config, Job, SourceType};
use coffer_plugins::Target;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use tokio::runtime::Handle;

/// One job on one target.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct TargetStats {
    pub job: String,
    pub target: String,
    /// Snapshots signed by a trusted key: the only ones counted below.
    pub snapshots: u64,
    /// Snapshots on the target that no trusted key signed, left out.
    pub untrusted_snapshots: u64,
    /// Packs the counted snapshots reference (each once), and their stored bytes.
    pub packs: u64,
    pub pack_bytes: u64,
    /// The snapshots' own objects (manifests, database dumps, format-1 archives).
    pub objects: u64,
    pub object_bytes: u64,
    /// `pack_bytes + object_bytes`.
    pub stored_bytes: u64,
    /// Stored bytes of referenced packs that no counted snapshot uses (an
    /// estimate, as prune and `coffer_repository_dead_bytes` make it).
    pub dead_bytes: u64,
    /// Packs in the job's `packs/` that no marker references (a run in progress,
    /// or garbage prune deletes once older than `incomplete_after`).
    pub unreferenced_packs: u64,
    pub unreferenced_bytes: u64,
    /// With the identity: what the snapshots hold, decrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical: Option<Logical>,
}

/// The files' sizes (and dumps' sizes) the manifests list.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct Logical {
    /// The newest counted snapshot, and what it holds.
    pub newest_snapshot: Option<String>,
    pub newest_bytes: u64,
    /// What all counted snapshots hold together (a file in two counts twice).
    pub all_bytes: u64,
    /// `all_bytes / stored_bytes`; `None` when nothing is stored.
    pub dedup_ratio: Option<f64>,
}

/// The job on `target`: its markers read and those `trust` refuses left out; the
/// manifests read too when `ids` is given.
pub(crate) fn of_target(
    rt: &Handle,
    cfg: &Config,
    job: &Job,
    target: &Target,
    trust: &Trust,
    ids: Option<&Identities>,
) -> Result<TargetStats> {
    let all = crate::repo::snapshots(rt, target, &job.name)?;
    crate::repo::vet_signers(trust, &all, &job.name, &target.name)?;
    let listed = crate::pack::gc::list_packs(rt, target, &job.name)?;
    let (trusted, refused): (Vec<Marker>, Vec<Marker>) =
        all.into_iter().partition(|m| trust.refusal(m).is_none());
    let mut stats = stored(&trusted, &refused, &listed, job.repack_unused);
    stats.job = job.name.clone();
    stats.target = target.name.clone();
    if let Some(ids) = ids {
        stats.logical = Some(logical(rt, cfg, target, ids, &trusted, stats.stored_bytes)?);
    }
    Ok(stats)
}

/// The numbers the markers give: `trusted` counted, `refused` only holding their
/// packs (prune keeps what any marker references), `listed` the packs there are.
pub(crate) fn stored(
    trusted: &[Marker],
    refused: &[Marker],
    listed: &BTreeMap<String, Listed>,
    repack_unused: f64,
) -> TargetStats {
    // A pack shared by snapshots is stored once: its size once, the largest any
    // trusted marker gives (as `waste` takes it).
    let mut packs: BTreeMap<&str, u64> = BTreeMap::new();
    for p in trusted.iter().flat_map(|m| &m.packs) {
        let size = packs.entry(p.id.as_str()).or_default();
        *size = (*size).max(p.stored_size);
    }
    let pack_bytes = packs.values().copied().fold(0, u64::saturating_add);
    let objects = trusted.iter().flat_map(|m| &m.objects);
    let object_bytes = objects
        .clone()
        .map(|o| o.stored_size)
        .fold(0, u64::saturating_add);
    let referenced: BTreeSet<&str> = trusted
        .iter()
        .chain(refused)
        .flat_map(|m| m.packs.iter().map(|p| p.id.as_str()))
        .collect();
    let unreferenced: Vec<&Listed> = listed
        .iter()
        .filter(|(id, _)| !referenced.contains(id.as_str()))
        .map(|(_, l)| l)
        .collect();
    TargetStats {
        snapshots: trusted.len() as u64,
        untrusted_snapshots: refused.len() as u64,
        packs: packs.len() as u64,
        pack_bytes,
        objects: objects.count() as u64,
        object_bytes,
        stored_bytes: pack_bytes.saturating_add(object_bytes),
        dead_bytes: crate::pack::gc::waste(trusted, repack_unused).0,
        unreferenced_packs: unreferenced.len() as u64,
        unreferenced_bytes: unreferenced
            .iter()
            .map(|l| l.size)
            .fold(0, u64::saturating_add),
        ..TargetStats::default()
    }
}

/// Every trusted snapshot's manifest read, its sizes summed.
fn logical(
    rt: &Handle,
    cfg: &Config,
    target: &Target,
    ids: &Identities,
    trusted: &[Marker],
    stored_bytes: u64,
) -> Result<Logical> {
    let mut out = Logical::default();
    // File lists go to scratch files where ls and restore put theirs.
    let tmp_dir = cfg.agent.state_dir.join("tmp");
    // `repo::snapshots` gives them in the order they finished: the last is newest.
    for marker in trusted {
        let manifest = crate::repo::read_manifest(rt, target, marker, ids, &tmp_dir)?;
        let size = logical_size(&manifest);
        out.all_bytes = out.all_bytes.saturating_add(size);
        out.newest_snapshot = Some(marker.id.clone());
        out.newest_bytes = size;
    }
    out.dedup_ratio = (stored_bytes > 0).then(|| out.all_bytes as f64 / stored_bytes as f64);
    Ok(out)
}

/// What a snapshot holds: a directory source's files' sizes (as a restore writes
/// them), a database source's dump.
pub(crate) fn logical_size(manifest: &Manifest) -> u64 {
    manifest
        .sources
        .iter()
        .map(|s| {
            if s.kind == SourceType::Directory {
                s.entries.bytes()
            } else if let Some(c) = &s.chunked {
                c.size
            } else {
                manifest
                    .objects
                    .iter()
                    .find(|o| o.key == s.object)
                    .map_or(0, |o| o.plaintext_size)
            }
        })
        .fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(id: &str, packs: &[(&str, u64)], objects: &[u64]) -> Marker {
        let json = serde_json::json!({
            "format": 2, "id": id, "job": "app", "host": "h", "coffer_version": "0",
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
            "skew_seconds": 0.0,
            "objects": objects.iter().enumerate().map(|(i, size)| serde_json::json!({
                "key": format!("o{i}"), "plaintext_size": 1, "stored_size": size,
                "blake3": "0".repeat(64),
            })).collect::<Vec<_>>(),
            "packs": packs.iter().map(|(id, size)| serde_json::json!({
                "id": id, "stored_size": size, "blake3": "0".repeat(64),
                "content_size": 100, "used": 50,
            })).collect::<Vec<_>>(),
        });
        serde_json::from_value(json).expect("marker")
    }

    fn listed(ids: &[(&str, u64)]) -> BTreeMap<String, Listed> {
        ids.iter()
            .map(|(id, size)| {
                (
                    id.to_string(),
                    Listed {
                        size: *size,
                        modified: chrono::Utc::now(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_shared_pack_counts_once_and_refused_markers_count_nothing_but_hold_their_packs() {
        let (a, b, c, d) = (
            "a".repeat(32),
            "b".repeat(32),
            "c".repeat(32),
            "d".repeat(32),
        );
        let trusted = [
            marker("s1", &[(&a, 1000), (&b, 400)], &[30]),
            marker("s2", &[(&a, 1000)], &[40, 7]),
        ];
        let refused = [marker("s3", &[(&c, 5000)], &[99])];
        let on_target = listed(&[(&a, 1000), (&b, 400), (&c, 5000), (&d, 123)]);
        let s = stored(&trusted, &refused, &on_target, 0.5);
        assert_eq!((s.snapshots, s.untrusted_snapshots), (2, 1));
        assert_eq!((s.packs, s.pack_bytes), (2, 1400));
        assert_eq!((s.objects, s.object_bytes), (3, 77));
        assert_eq!(s.stored_bytes, 1477);
        // Each pack: half of its content used by the most any snapshot uses.
        assert_eq!(s.dead_bytes, 500 + 200);
        assert_eq!((s.unreferenced_packs, s.unreferenced_bytes), (1, 123));
    }

    #[test]
    fn sizes_a_hostile_marker_gives_saturate() {
        let (a, b) = ("a".repeat(32), "b".repeat(32));
        let trusted = [marker("s1", &[(&a, u64::MAX), (&b, u64::MAX)], &[u64::MAX])];
        let s = stored(&trusted, &[], &BTreeMap::new(), 0.5);
        assert_eq!((s.pack_bytes, s.stored_bytes), (u64::MAX, u64::MAX));
    }
}

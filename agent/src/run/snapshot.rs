//! The snapshot itself: open the sources, freeze and stream them, build the
//! manifest and the signed marker, and commit per target.

use super::RunStatus;
use super::commit::{objects_in_place, preflight, remove_partial, write_manifest};
use super::report::{JobRun, ObjectUpload, SourceRun, TargetRun};
use super::stream::{PUBLIC_FACTS, stream_sources};
use crate::format::id::new_id;
use crate::format::{
    FormatVersion, MANIFEST, MARKER, Manifest, Marker, ObjectBinding, ObjectRecord, SourceManifest,
    WarningCounts, object_path,
};
use crate::keys;
use crate::repo::targets_of;
use anyhow::{Result, anyhow};
use coffer_config::{Config, Job};
use coffer_plugins::{Op, Source, SourceContext, Target, open_source};
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// The snapshot itself: freeze, stream, commit per target.
pub(super) fn take_snapshot(rt: &Handle, cfg: &Config, job: &Job) -> Result<JobRun> {
    let started = OffsetDateTime::now_utc();
    let id = new_id(started);
    let recipients = Arc::new(keys::recipients(&cfg.encryption)?);
    let signing_key = crate::format::seal::host_key(&cfg.encryption)?;
    let targets = targets_of(cfg, job, None)?;
    let ctx = SourceContext {
        rt: rt.clone(),
        tmp_dir: cfg.agent.state_dir.join("tmp"),
    };
    let sources: Vec<Box<dyn Source>> = job
        .sources
        .iter()
        .map(|s| open_source(s, &ctx))
        .collect::<Result<_, _>>()?;

    let mut run = JobRun {
        job: job.name.clone(),
        snapshot: id.clone(),
        status: RunStatus::Failed,
        error: None,
        duration_seconds: 0.0,
        skew_seconds: 0.0,
        sources: Vec::new(),
        targets: targets
            .iter()
            .map(|t| TargetRun {
                name: t.name.clone(),
                description: t.description.clone(),
                committed: false,
                error: None,
                uploads: Vec::new(),
            })
            .collect(),
        warnings: Vec::new(),
        hook_errors: Vec::new(),
    };
    // Nothing of a failed run may remain that could look like a snapshot.
    let failed = |mut run: JobRun, written: &[Target], e: anyhow::Error| {
        let e = if crate::cancel::requested() {
            e.context("stopped by a signal; uploads aborted")
        } else {
            e
        };
        remove_partial(rt, written, &job.name, &id);
        run.error = Some(format!("{e:#}"));
        run.duration_seconds = (OffsetDateTime::now_utc() - started).as_seconds_f64();
        run
    };

    // Fail fast: a target that cannot even be listed (wrong credentials, no bucket,
    // server down) gets no uploads, and when no target is left no source is read.
    let mut target_ok = preflight(rt, &targets, &job.name);
    let reachable: Vec<usize> = (0..targets.len())
        .filter(|i| target_ok[*i].is_none())
        .collect();
    if reachable.is_empty() {
        let why: Vec<String> = target_ok.iter().flatten().cloned().collect();
        for (t, e) in run.targets.iter_mut().zip(&target_ok) {
            t.error = e.clone();
        }
        let e = anyhow!("no target can be written: {}", why.join("; "));
        return Ok(failed(run, &[], e));
    }
    let streaming: Vec<Target> = reachable.iter().map(|i| targets[*i].clone()).collect();
    let streamed = match stream_sources(rt, job, &id, sources, &streaming, &recipients) {
        Ok(s) => s,
        Err(e) => return Ok(failed(run, &streaming, e)),
    };

    // A target commits only if it holds every source object.
    for s in &streamed {
        for (k, r) in s.finished.targets.iter().enumerate() {
            let i = reachable[k];
            match r {
                Ok(up) => run.targets[i].uploads.push(ObjectUpload {
                    key: s.key.clone(),
                    upload: *up,
                }),
                Err(e) if target_ok[i].is_none() => target_ok[i] = Some(e.to_string()),
                Err(_) => {}
            }
        }
    }
    let instants: Vec<OffsetDateTime> = streamed.iter().map(|s| s.instant).collect();
    let skew = match (instants.iter().min(), instants.iter().max()) {
        (Some(a), Some(b)) => (*b - *a).as_seconds_f64(),
        _ => 0.0,
    };
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut objects = Vec::new();
    let mut totals = WarningCounts::default();
    let mut sources_manifest = Vec::new();
    for s in streamed {
        let o = &s.outcome;
        totals.changed += o.changed;
        totals.vanished += o.vanished;
        totals.skipped += o.skipped;
        run.warnings
            .extend(o.warnings.iter().map(|w| format!("source {}: {w}", s.name)));
        run.sources.push(SourceRun {
            name: s.name.clone(),
            files: o.entries.files() as usize,
            bytes_read: o.bytes_read,
            plaintext_size: s.finished.plaintext_size,
            stored_size: s.finished.stored_size,
        });
        objects.push(ObjectRecord {
            key: s.key.clone(),
            source: Some(s.name.clone()),
            plaintext_size: s.finished.plaintext_size,
            stored_size: s.finished.stored_size,
            blake3: s.finished.blake3.clone(),
            facts: s
                .outcome
                .facts
                .iter()
                .filter(|(k, _)| PUBLIC_FACTS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        sources_manifest.push(SourceManifest {
            name: s.name,
            kind: s.kind,
            object: s.key,
            origin: s.origin,
            consistency_instant: s.instant,
            facts: s.outcome.facts,
            bytes_read: s.outcome.bytes_read,
            warnings: WarningCounts {
                changed: s.outcome.changed,
                vanished: s.outcome.vanished,
                skipped: s.outcome.skipped,
            },
            entries: s.outcome.entries,
        });
    }
    let manifest = Manifest {
        format: FormatVersion::V1,
        snapshot: id.clone(),
        job: job.name.clone(),
        host: host.clone(),
        started_at: started,
        skew_seconds: skew,
        sources: sources_manifest,
        objects: objects
            .iter()
            .map(|o| ObjectBinding {
                key: o.key.clone(),
                plaintext_size: o.plaintext_size,
                stored_size: o.stored_size,
                blake3: o.blake3.clone(),
            })
            .collect(),
    };

    let live: Vec<usize> = (0..targets.len())
        .filter(|i| target_ok[*i].is_none())
        .collect();
    let live_targets: Vec<Target> = live.iter().map(|i| targets[*i].clone()).collect();
    let manifest_result = write_manifest(rt, &live_targets, job, &id, &manifest, &recipients);
    let manifest_fin = match manifest_result {
        Ok(f) => f,
        Err(e) => return Ok(failed(run, &streaming, e)),
    };
    for (k, r) in manifest_fin.targets.iter().enumerate() {
        match r {
            Ok(up) => run.targets[live[k]].uploads.push(ObjectUpload {
                key: MANIFEST.to_string(),
                upload: *up,
            }),
            Err(e) => target_ok[live[k]] = Some(e.to_string()),
        }
    }
    objects.push(ObjectRecord {
        key: MANIFEST.to_string(),
        source: None,
        plaintext_size: manifest_fin.plaintext_size,
        stored_size: manifest_fin.stored_size,
        blake3: manifest_fin.blake3.clone(),
        facts: BTreeMap::new(),
    });
    let marker = Marker {
        format: FormatVersion::V1,
        id: id.clone(),
        job: job.name.clone(),
        host,
        coffer_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started,
        finished_at: OffsetDateTime::now_utc(),
        skew_seconds: skew,
        objects,
        warnings: totals,
        seal: crate::format::seal::Seal::Signed(signing_key.public),
    };
    if crate::cancel::requested() {
        return Ok(failed(run, &streaming, anyhow!("no snapshot committed")));
    }

    // The commit, per target: a target gets the signed marker only if it holds
    // every object the marker lists, with the size written.
    let marker_bytes = crate::format::seal::seal(&marker, &signing_key)?;
    let marker_path = object_path(&job.name, &id, MARKER);
    let checked = objects_in_place(rt, &targets, &target_ok, &job.name, &id, &marker.objects);
    for (i, t) in targets.iter().enumerate() {
        if target_ok[i].is_some() {
            continue;
        }
        if let Some(why) = &checked[i] {
            target_ok[i] = Some(format!("not committed: {why}"));
            continue;
        }
        let written = rt.block_on(
            t.store
                .put(&marker_path, PutPayload::from(marker_bytes.clone())),
        );
        if let Err(e) = written {
            let x = t.explain(Op::Write, &e);
            target_ok[i] = Some(format!("cannot write {marker_path}: {}", x.message));
        }
    }
    let mut committed = 0;
    for (i, t) in targets.iter().enumerate() {
        match &target_ok[i] {
            None => {
                run.targets[i].committed = true;
                committed += 1;
            }
            Some(e) => {
                run.targets[i].error = Some(e.clone());
                if reachable.contains(&i) {
                    remove_partial(rt, std::slice::from_ref(t), &job.name, &id);
                }
            }
        }
    }
    run.skew_seconds = skew;
    run.status = if committed == targets.len() {
        RunStatus::Success
    } else if committed > 0 {
        RunStatus::Partial
    } else {
        RunStatus::Failed
    };
    if committed == 0 {
        let why: Vec<String> = run
            .targets
            .iter()
            .filter_map(|t| Some(format!("target {}: {}", t.name, t.error.as_deref()?)))
            .collect();
        run.error = Some(format!(
            "no target accepted the snapshot: {}",
            why.join("; ")
        ));
    }
    run.duration_seconds = (OffsetDateTime::now_utc() - started).as_seconds_f64();
    Ok(run)
}

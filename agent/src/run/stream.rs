//! Freezing and streaming a run's sources: every source freezes behind the gate,
//! then all stream in parallel, each through its own pipeline to every target.
//! A source that fails stops the others; the error reported is the root cause,
//! told from its echoes by type.

use super::check_answer::CheckAnswer;
use super::context::RunContext;
use super::gate::Gate;
use super::packs::RunPacks;
use super::retry::AllTargetsFailed;
use crate::format::{object_path, source_key};
use crate::pack::write::Packed;
use crate::pipeline::{Finished, ObjectWriter};
use anyhow::{Context, Result, anyhow};
use coffer_plugins::{Source, SourceOutcome, Target};
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

/// One source's result inside the run.
pub(super) struct Streamed {
    pub(super) name: String,
    pub(super) kind: coffer_config::SourceType,
    pub(super) key: String,
    pub(super) origin: String,
    pub(super) instant: OffsetDateTime,
    /// How long after `instant` the state read could still change: 0 when it was
    /// fixed at the instant, else the read's duration.
    pub(super) window_seconds: f64,
    /// Whether its state was fixed at its instant (a filesystem snapshot, an
    /// exported database snapshot), not read live.
    pub(super) frozen: bool,
    pub(super) outcome: SourceOutcome,
    /// For a source object: the object. For a packed source: its new packs
    /// summed up (sizes, and per target whether it holds all of them).
    pub(super) finished: Finished,
    /// Format 2: the packs the source wrote and references.
    pub(super) packed: Option<Packed>,
    /// Format 2, a stream source: its chunks (in `packed`'s packs).
    pub(super) chunked: Option<crate::format::ChunkedStream>,
}

/// Facts safe and useful to show without the private key (`list`).
pub(super) const PUBLIC_FACTS: [&str; 2] = ["server_version", "schema_version"];

/// A source that was not read because another one failed: an echo of the root
/// cause, never reported as the cause itself.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: not read because another source failed")]
struct NotRead {
    source_name: String,
}

/// A source whose stream was stopped because another source had already failed
/// (its pipeline refuses writes then): an echo too, whatever error it surfaced as.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: stopped because another source failed ({cause})")]
struct Stopped {
    source_name: String,
    cause: String,
}

/// What a panicking thread said, for the error that replaces it.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// How long after `instant` the state a source streamed could still change: until
/// the moment it says (files completed from elsewhere), else 0 when it was fixed
/// at the instant, else the read's duration.
fn window_of(
    src: &dyn Source,
    outcome: &SourceOutcome,
    instant: OffsetDateTime,
    read_end: OffsetDateTime,
) -> f64 {
    let end = match outcome.window_end {
        Some(end) => end,
        None if src.frozen_at_instant() => return 0.0,
        None => read_end,
    };
    (end - instant).as_seconds_f64().max(0.0)
}

/// A frozen source streamed in format 2, into packs: a directory writes its new
/// files' contents itself; any other source's stream (a database dump, ...) is cut
/// into chunks on the way, so that a dump that changed a little stores what
/// changed. The packs it wrote, finished or not, go to the run's packs, which
/// delete them if the run commits nowhere.
fn stream_in_packs(
    ctx: &RunContext,
    packs: &RunPacks,
    mut src: Box<dyn Source>,
    frozen_at: OffsetDateTime,
) -> Result<Streamed> {
    let name = src.name().to_string();
    let directory = src.packs();
    let key = if directory {
        String::new()
    } else {
        source_key(&name, src.extension())
    };
    let mut writer = packs
        .writer(ctx, &name)
        .with_context(|| format!("source {name}: cannot start the pack writer"))?;
    let read = if directory {
        src.stream_packed(&mut writer, ctx.progress)
            .map(|outcome| (outcome, None))
            .map_err(anyhow::Error::from)
    } else {
        let mut chunked = coffer_plugins::chunked::ChunkedWriter::new(&mut writer);
        src.stream(&mut chunked, ctx.progress)
            .map_err(anyhow::Error::from)
            .and_then(|outcome| match chunked.finish() {
                Ok(c) => Ok((outcome, Some(c))),
                Err(e) => Err(anyhow!("source {name}: cannot write its chunks: {e}")),
            })
    };
    let read_end = OffsetDateTime::now_utc();
    let done = read.and_then(|(outcome, c)| {
        if let Some(c) = &c {
            writer.stream_stored(&c.chunks.chunks, c.chunks.new);
        }
        match writer.finish() {
            Ok(packed) => Ok((outcome, c, packed)),
            Err(e) => Err(anyhow!("source {name}: cannot write its packs: {e}")),
        }
    });
    let (outcome, c, packed) = match done {
        Ok(done) => done,
        Err(e) => {
            let another_failed = ctx.failed.swap(true, Ordering::SeqCst);
            let (ids, own) = writer.abandon();
            packs.wrote(ids);
            return Err(root_cause(name, e, own, ctx.targets.len(), another_failed));
        }
    };
    packs.wrote(packed.written.iter().map(|w| w.info.id.clone()));
    let instant = outcome.instant.unwrap_or(frozen_at);
    let window_seconds = window_of(src.as_ref(), &outcome, instant, read_end);
    let finished = packs_finished(ctx.targets, &packed);
    Ok(Streamed {
        name,
        kind: src.kind(),
        key,
        origin: src.origin(),
        instant,
        window_seconds,
        frozen: src.frozen_at_instant(),
        outcome,
        finished,
        packed: Some(packed),
        chunked: c.map(|c| crate::format::ChunkedStream {
            size: c.size,
            blake3: c.blake3,
            chunks: c.chunks.chunks,
        }),
    })
}

/// A frozen source streamed as one object (format 1, or a database dump).
fn stream_object(
    ctx: &RunContext,
    mut src: Box<dyn Source>,
    frozen_at: OffsetDateTime,
) -> Result<Streamed> {
    let name = src.name().to_string();
    let key = source_key(&name, src.extension());
    let path = object_path(&ctx.job.name, ctx.id, &key);
    let mut writer = ObjectWriter::start(
        ctx.rt,
        ctx.targets,
        &path,
        ctx.recipients.clone(),
        ctx.job.compression,
        ctx.failed.clone(),
    )
    .with_context(|| format!("source {name}: cannot start the pipeline"))?;
    let read = src.stream(&mut writer, ctx.progress);
    let read_end = OffsetDateTime::now_utc();
    let outcome = match read {
        Ok(o) => o,
        Err(e) => {
            let another_failed = ctx.failed.swap(true, Ordering::SeqCst);
            let own = writer.abandon();
            return Err(root_cause(
                name,
                e.into(),
                own,
                ctx.targets.len(),
                another_failed,
            ));
        }
    };
    // Every target may fail only as the object ends (an upload refused at its
    // start): their own reasons go to the report as when it fails mid-stream.
    let finished = writer.finish_or_failures().map_err(|u| {
        let another_failed = ctx.failed.swap(true, Ordering::SeqCst);
        let e = if another_failed {
            anyhow!("{}", u.error)
        } else {
            anyhow!("source {name}: {}", u.error)
        };
        root_cause(
            name.clone(),
            e,
            u.failures,
            ctx.targets.len(),
            another_failed,
        )
    })?;
    let instant = outcome.instant.unwrap_or(frozen_at);
    let window_seconds = window_of(src.as_ref(), &outcome, instant, read_end);
    Ok(Streamed {
        name,
        kind: src.kind(),
        key,
        origin: src.origin(),
        instant,
        window_seconds,
        frozen: src.frozen_at_instant(),
        outcome,
        finished,
        packed: None,
        chunked: None,
    })
}

/// The error a source that stopped reading reports: when every target failed,
/// they are the cause, not the source's "cannot write"; when another source had
/// failed first, an echo of it.
fn root_cause(
    name: String,
    e: anyhow::Error,
    own: Vec<crate::pipeline::write::UploadError>,
    targets: usize,
    another_failed: bool,
) -> anyhow::Error {
    if !own.is_empty() && own.len() == targets {
        return AllTargetsFailed {
            source_name: name,
            failures: own,
        }
        .into();
    }
    if another_failed {
        return Stopped {
            source_name: name,
            cause: e.to_string(),
        }
        .into();
    }
    e
}

/// A packed source's new packs as one result per target: a target holds the
/// source only if it holds every new pack.
pub(super) fn packs_finished(targets: &[Target], packed: &Packed) -> Finished {
    let mut per_target: Vec<
        Result<crate::pipeline::Uploaded, crate::pipeline::write::UploadError>,
    > = targets
        .iter()
        .map(|_| Ok(crate::pipeline::Uploaded::default()))
        .collect();
    for w in &packed.written {
        for (sum, got) in per_target.iter_mut().zip(&w.targets) {
            match (sum.as_mut(), got) {
                (Ok(total), Ok(up)) => {
                    total.parts += up.parts;
                    total.largest_part = total.largest_part.max(up.largest_part);
                    total.bytes += up.bytes;
                }
                (Ok(_), Err(e)) => *sum = Err(e.clone()),
                (Err(_), _) => {}
            }
        }
    }
    Finished {
        plaintext_size: packed.written.iter().map(|w| w.plaintext_size).sum(),
        stored_size: packed.written.iter().map(|w| w.info.stored_size).sum(),
        blake3: String::new(),
        targets: per_target,
    }
}

/// Freeze all sources behind a barrier, then stream them in parallel.
pub(super) fn stream_sources(
    ctx: &RunContext,
    sources: Vec<Box<dyn Source>>,
) -> Result<Vec<Streamed>> {
    let job = ctx.job;
    let gate = Gate::new(sources.len());
    // The order of the instants: applications write an upload before they commit
    // the row that names it, so a database frozen before the files can reference
    // nothing the files lack. Every other source (a database, Redis, SQLite, a
    // command) freezes first; directories (a filesystem snapshot, or the start of a
    // live walk) as soon as all of those have, a few milliseconds later.
    let is_first = |s: &dyn Source| s.kind() != coffer_config::SourceType::Directory;
    let firsts = Gate::new(sources.iter().filter(|s| is_first(s.as_ref())).count());
    // Before any instant, every source prepares: databases first (connecting and
    // opening a transaction take milliseconds; done at the instant, they would be
    // skew), then directories (btrfs, for the check's files: an earlier snapshot,
    // which holds the files of rows deleted between the instants). The databases'
    // instants then follow the earlier snapshot by one statement each.
    let firsts_ready = Gate::new(sources.iter().filter(|s| is_first(s.as_ref())).count());
    let prepared = Gate::new(sources.iter().filter(|s| !is_first(s.as_ref())).count());
    // The check's answer, from its database to its directory before they stream,
    // when the job has both.
    let check_pair = job.check.as_ref().filter(|c| {
        let has = |n: &str| sources.iter().any(|s| s.name() == n);
        has(&c.source) && has(&c.files)
    });
    let answer = CheckAnswer::default();
    let failed = &ctx.failed;
    let results: Vec<Result<Streamed>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .into_iter()
            .map(|mut src| {
                let gate = &gate;
                let firsts = &firsts;
                let prepared = &prepared;
                let firsts_ready = &firsts_ready;
                let first = is_first(src.as_ref());
                let giver = check_pair
                    .filter(|c| c.source == src.name())
                    .map(|_| answer.giver());
                let taker = check_pair
                    .filter(|c| c.files == src.name())
                    .map(|_| &answer);
                let name = src.name().to_string();
                let handle = scope.spawn(move || -> Result<Streamed> {
                    let pass = gate.pass();
                    let early = first.then(|| firsts.pass());
                    // A failed preparation fails the run at the gate below; the
                    // others still go through theirs, so that no one waits forever.
                    // Each pass is taken before anything that could panic: one
                    // dropped unused arrives as failed.
                    let ready = if first {
                        let mine = firsts_ready.pass();
                        let ready = src.prepare(false);
                        mine.arrive(ready.is_ok());
                        prepared.wait_open();
                        ready
                    } else {
                        let mine = prepared.pass();
                        firsts_ready.wait_open();
                        let ready = src.prepare(taker.is_some());
                        mine.arrive(ready.is_ok());
                        // A failed database fails the run at the gate below; the
                        // directory still freezes, so that its release is the usual one.
                        firsts.wait_open();
                        ready
                    };
                    let frozen = ready.and_then(|()| src.freeze());
                    if let Some(early) = early {
                        early.arrive(frozen.is_ok());
                    }
                    let all_frozen = pass.wait(frozen.is_ok());
                    let released = OffsetDateTime::now_utc();
                    if !all_frozen {
                        failed.store(true, Ordering::SeqCst);
                    }
                    let frozen = frozen?;
                    if !all_frozen {
                        return Err(NotRead {
                            source_name: src.name().to_string(),
                        }
                        .into());
                    }
                    let frozen_at = frozen.unwrap_or(released);
                    if let Some(giver) = giver {
                        giver.give(src.answer_check().and_then(Result::ok));
                    }
                    if let Some(list) = taker.and_then(CheckAnswer::wait) {
                        src.complete_from_check(&list);
                    }
                    match ctx.packs {
                        Some(packs) => stream_in_packs(ctx, packs, src, frozen_at),
                        None => stream_object(ctx, src, frozen_at),
                    }
                });
                (name, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                h.join().unwrap_or_else(|payload| {
                    failed.store(true, Ordering::SeqCst);
                    Err(anyhow!(
                        "source {name}: coffer failed (a panic: {}); please report this",
                        panic_message(payload.as_ref())
                    ))
                })
            })
            .collect()
    });
    // Report the root cause, not the "another source failed" echoes.
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(s) => ok.push(s),
            Err(e) => errors.push(e),
        }
    }
    if let Some(first) = errors
        .iter()
        .position(|e| !e.is::<NotRead>() && !e.is::<Stopped>())
        .or(if errors.is_empty() { None } else { Some(0) })
    {
        // The packs the sources wrote are the run's packs' to delete.
        return Err(errors.swap_remove(first));
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_told_from_its_cause_by_type() {
        let echo: anyhow::Error = NotRead {
            source_name: "files".into(),
        }
        .into();
        let cause = anyhow!("source db: pg_dump failed because another source failed");
        assert!(echo.is::<NotRead>());
        assert!(!cause.is::<NotRead>(), "a cause that reads like an echo");
        let stopped: anyhow::Error = Stopped {
            source_name: "files".into(),
            cause: "run cancelled".into(),
        }
        .into();
        assert!(stopped.is::<Stopped>() && !cause.is::<Stopped>());
    }
}

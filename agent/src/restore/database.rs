//! Restoring a source that is one stream (a database dump, an SQLite copy, a
//! Redis RDB, a command's output, or any of them as a file with `--to`): the
//! object is read, checked against the signed marker and decrypted here; what
//! happens to the plaintext is the source's own `Restore`, planned from its type
//! in coffer-plugins.

use crate::exit::usage;
use crate::format::{Marker, SourceManifest, object_path};
use crate::keys::Identities;
use crate::pipeline::read::{HoldBack, ObjectReader, Pumped, decrypt};
use anyhow::{Context, Result, anyhow, bail};
use coffer_plugins::{
    Restore, RestoreRequest, SourceContext, Target, open_source, restore_as_file,
};
use std::io::Seek;
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;

/// One planned restore of a stream source.
#[derive(Debug)]
pub struct DbRestore<'a> {
    pub source: &'a SourceManifest,
    pub restore: Box<dyn Restore>,
}

/// Restores one stream source; returns warnings.
pub fn restore_database(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    tmp_dir: &Path,
    r: &DbRestore<'_>,
    work: &std::sync::Arc<crate::report::Work>,
) -> Result<Vec<String>> {
    if let Some(chunked) = &r.source.chunked {
        let from = (rt, target, marker, ids);
        return restore_chunked(from, tmp_dir, r, chunked, work);
    }
    let record = marker
        .object(&r.source.object)
        .ok_or_else(|| anyhow!("snapshot {} lists no object {}", marker.id, r.source.object))?;
    let path = object_path(&marker.job, &marker.id, &r.source.object);
    let reader = ObjectReader::open(rt, target, &path, Some(record))?.counting(work);
    let name = &r.source.name;
    let mut plain: Box<dyn std::io::Read> = if r.restore.waits_for_the_end() {
        // A file renamed into place only after the last byte: it can be written
        // while the stream is checked, as long as the end is held back until then.
        let verified = reader.verified_flag();
        let label = reader.label().to_string();
        Box::new(HoldBack::from_parts(
            Pumped::spawn(decrypt(reader, ids)?)?,
            verified,
            label,
        ))
    } else {
        // A program runs what it reads as it reads it (`.shell` in sqlite3, a
        // DELETE before pg_restore's commit, anything in a restore_command): not
        // one byte reaches it before the whole object matched the signed marker.
        let staged = reader
            .staged(tmp_dir)
            .with_context(|| format!("source {name}: the dump was not restored"))?;
        Box::new(Pumped::spawn(decrypt(staged, ids)?)?)
    };
    let warnings = r.restore.restore(&mut plain)?;
    // Read to the end so the stored bytes are checked against snapshot.json.
    std::io::copy(&mut plain, &mut std::io::sink()).with_context(|| format!("source {name}"))?;
    Ok(warnings)
}

/// A stream source stored as chunks (format 2), each checked before any of its
/// bytes go on (`ChunkStream`): no forged byte can reach a restore. A file (that
/// waits for the end) is written as the chunks arrive, its last MiB held back
/// until the whole stream matched. A program gets the stream only once all of it
/// matched, from a staging file in `tmp_dir`: checked chunks cannot be forged, but
/// a stream cut short by a damaged pack can still be a genuine prefix, and the
/// mysql client runs a dump's `DROP TABLE` as soon as it reads it.
fn restore_chunked(
    (rt, target, marker, ids): (&Handle, &Target, &Marker, &Identities),
    tmp_dir: &Path,
    r: &DbRestore<'_>,
    chunked: &crate::format::ChunkedStream,
    work: &std::sync::Arc<crate::report::Work>,
) -> Result<Vec<String>> {
    let name = &r.source.name;
    let fetched = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    work.count_also(fetched.clone());
    let packs = crate::pack::read::PackReader::of_target(rt, target, &marker.job, ids, fetched);
    let label = format!("snapshot {}, source {name}", marker.id);
    let mut stream =
        crate::pack::chunk_stream::ChunkStream::new(packs, marker, chunked, label.clone());
    let verified = stream.verified_flag();
    let mut plain: Box<dyn std::io::Read + '_> = if r.restore.waits_for_the_end() {
        Box::new(HoldBack::from_parts(stream, verified, label))
    } else {
        let mut staged = tempfile::tempfile_in(tmp_dir)
            .with_context(|| format!("cannot make a staging file in {}", tmp_dir.display()))?;
        std::io::copy(&mut stream, &mut staged)
            .with_context(|| format!("source {name}: the dump was not restored"))?;
        staged.seek(std::io::SeekFrom::Start(0))?;
        Box::new(staged)
    };
    let warnings = r.restore.restore(&mut plain)?;
    std::io::copy(&mut plain, &mut std::io::sink()).with_context(|| format!("source {name}"))?;
    Ok(warnings)
}

/// The file a non-directory source is written to with `--to DIR`.
pub fn to_file(dir: &Path, source: &SourceManifest) -> PathBuf {
    let ext = source
        .object
        .strip_prefix(&format!("{}.", source.name))
        .and_then(|r| r.strip_suffix(".zst.age"))
        .unwrap_or("bin");
    dir.join(format!("{}.{ext}", source.name))
}

/// Refuses before anything is written when a single file would be replaced silently.
pub fn refuse_existing(restore: &dyn Restore, force: bool) -> Result<()> {
    if let Some(p) = restore.existing_file()
        && !force
    {
        bail!(crate::exit::UsageError(format!(
            "{} exists; pass --force to replace it (it is replaced only once the restored copy is complete{})",
            p.display(),
            if restore.endpoint().is_some() {
                " and passes integrity_check"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// How a stream source goes back, from the config and the flags: `--db-url` for
/// a server database, else `--to DIR` as a file, else the configured source's own
/// restore. Every refusal here is a usage error, before anything is written.
pub(crate) fn plan_stream(
    db_url: Option<&str>,
    to: Option<&Path>,
    src: &SourceManifest,
    configured: Option<&coffer_config::Source>,
    req: &RestoreRequest<'_>,
    ctx: &SourceContext,
) -> Result<Box<dyn Restore>> {
    let as_usage = |e: coffer_plugins::SourceError| usage(e.to_string());
    let same_type = configured.filter(|c| c.kind.source_type() == src.kind);
    if let Some(url) = db_url
        && src.kind.is_server_database()
    {
        let parsed = url::Url::parse(url).map_err(|e| usage(format!("--db-url: {e}")))?;
        if parsed.password().is_some() {
            return Err(usage(
                "--db-url must not contain a password (it would be visible to other users in the process list); \
                 the source's password_file or password_env is used",
            ));
        }
        let elsewhere;
        let source = match same_type {
            Some(c) => c,
            None => {
                elsewhere = coffer_plugins::registry::database_at(src.kind, &src.name, url)
                    .ok_or_else(|| {
                        usage(format!("--db-url: {} is no server database", src.name))
                    })?;
                &elsewhere
            }
        };
        return open_source(source, ctx)
            .and_then(|s| s.plan_restore(req))
            .map_err(as_usage);
    }
    if let Some(dir) = to {
        return Ok(restore_as_file(
            src.kind,
            &src.name,
            to_file(dir, src),
            req,
            ctx,
        ));
    }
    let source = same_type.ok_or_else(|| {
        usage(format!(
            "source {} ({}) is not configured as such in this job; pass --to DIR to get its dump as a file",
            src.name, src.kind
        ))
    })?;
    open_source(source, ctx)
        .and_then(|s| s.plan_restore(req))
        .map_err(as_usage)
}

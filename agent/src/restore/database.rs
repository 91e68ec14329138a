//! Restoring the non-directory sources: databases through their own tools, and
//! single files (SQLite, Redis RDB, or any dump written with `--to`) atomically:
//! written beside the destination, checked, fsynced, then renamed over it.

use crate::format::{Marker, SourceManifest, object_path};
use crate::keys::Identities;
use crate::pipeline::read::{HoldBack, ObjectReader, Pumped, decrypt};
use anyhow::{Context, Result, anyhow, bail};
use coffer_config::{CommandSource, RestorePolicy, Secret};
use coffer_plugins::Target;
use coffer_plugins::ids::IdCache;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;

/// Where a database source goes.
#[derive(Debug, Clone)]
pub enum DbDest {
    /// The plain dump as a file (`--to`).
    File(PathBuf),
    Postgres {
        url: String,
        password: Option<Secret>,
    },
    Mysql {
        url: String,
        password: Option<Secret>,
    },
    /// Replace this SQLite file.
    Sqlite(PathBuf),
    /// Put the RDB here (Redis reads it when it starts).
    Redis(PathBuf),
    Command(CommandSource),
}

impl DbDest {
    pub fn describe(&self) -> String {
        match self {
            DbDest::File(p) | DbDest::Sqlite(p) | DbDest::Redis(p) => p.display().to_string(),
            DbDest::Postgres { url, .. } | DbDest::Mysql { url, .. } => url.clone(),
            DbDest::Command(c) => c
                .restore_command
                .as_ref()
                .map(|c| c.join(" "))
                .unwrap_or_default(),
        }
    }

    /// Single files that exist are only replaced when asked.
    pub fn existing_file(&self) -> Option<&Path> {
        match self {
            DbDest::File(p) | DbDest::Sqlite(p) | DbDest::Redis(p) => {
                p.exists().then_some(p.as_path())
            }
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct DbRestore<'a> {
    pub source: &'a SourceManifest,
    pub dest: DbDest,
    /// Owner and mode of a restored file (SQLite, RDB).
    pub policy: RestorePolicy,
    pub clean: bool,
    pub can_chown: bool,
}

/// Restores one database source; returns warnings.
pub fn restore_database(
    rt: &Handle,
    target: &Target,
    marker: &Marker,
    ids: &Identities,
    tmp_dir: &Path,
    r: &DbRestore<'_>,
) -> Result<Vec<String>> {
    let record = marker
        .object(&r.source.object)
        .ok_or_else(|| anyhow!("snapshot {} lists no object {}", marker.id, r.source.object))?;
    let path = object_path(&marker.job, &marker.id, &r.source.object);
    let reader = ObjectReader::open(rt, target, &path, Some(record))?;
    let verified = reader.verified_flag();
    let label = reader.label().to_string();
    let mut plain = HoldBack::from_parts(Pumped::spawn(decrypt(reader, ids)?)?, verified, label);
    let name = &r.source.name;
    let mut warnings = Vec::new();
    match &r.dest {
        DbDest::File(p) => place_file(
            p,
            &mut plain,
            &marker.id,
            None,
            &r.policy,
            r.can_chown,
            &mut warnings,
        )?,
        DbDest::Sqlite(p) => {
            let check = |tmp: &Path| {
                coffer_plugins::sqlite::integrity_check(rt, tmp)
                    .map_err(|e| anyhow!("restored copy of {name} is damaged: {e}"))
            };
            place_file(
                p,
                &mut plain,
                &marker.id,
                Some(&check),
                &r.policy,
                r.can_chown,
                &mut warnings,
            )?;
            warnings.push(format!(
                "{} replaced: restart the application so that it opens the restored file",
                p.display()
            ));
        }
        DbDest::Redis(p) => {
            let mut policy = r.policy.clone();
            // As the Kadi4Mat manual does by hand: redis:redis, 0660.
            if policy.owner.is_none() && IdCache::default().uid("redis").is_some() {
                policy.owner = Some(coffer_config::OwnerSpec {
                    user: "redis".into(),
                    group: Some("redis".into()),
                });
            }
            policy.file_mode = policy.file_mode.or(Some(0o660));
            place_file(
                p,
                &mut plain,
                &marker.id,
                None,
                &policy,
                r.can_chown,
                &mut warnings,
            )?;
            warnings.push(format!(
                "{} is in place: Redis loads it when it (re)starts",
                p.display()
            ));
        }
        DbDest::Postgres { url, password } => {
            warnings.extend(coffer_plugins::postgres::restore(
                name,
                rt,
                url,
                password.as_ref(),
                &r.source.facts,
                r.clean,
                &mut plain,
            )?);
        }
        DbDest::Mysql { url, password } => {
            // The mysql client runs each statement as it reads it (autocommit, and DDL
            // commits anyway): the dump is staged in an unnamed private file and checked
            // against the marker before the first statement reaches the server.
            let mut staged = stage(&mut plain, tmp_dir).with_context(|| {
                format!(
                    "source {name}: cannot stage the dump in {}",
                    tmp_dir.display()
                )
            })?;
            let log =
                coffer_plugins::mysql::restore(name, url, password.as_ref(), tmp_dir, &mut staged)?;
            if !log.is_empty() {
                warnings.push(log);
            }
        }
        DbDest::Command(c) => {
            let log = coffer_plugins::command::restore(name, c, &mut plain)?;
            if !log.is_empty() {
                warnings.push(log);
            }
        }
    }
    // Read to the end so the stored bytes are checked against snapshot.json.
    std::io::copy(&mut plain, &mut std::io::sink()).with_context(|| format!("source {name}"))?;
    Ok(warnings)
}

/// Copies `input` (to its verified end) into an unnamed 0600 file in `dir`, rewound.
fn stage(input: &mut dyn Read, dir: &Path) -> Result<std::fs::File> {
    use std::io::Seek;
    std::fs::create_dir_all(dir)?;
    let mut f = tempfile::tempfile_in(dir)?;
    std::io::copy(input, &mut f)?;
    f.rewind()?;
    Ok(f)
}

/// Validates a restored file before it replaces anything (SQLite's integrity_check).
type FileCheck<'a> = dyn Fn(&Path) -> Result<()> + 'a;

/// Writes `input` to a temporary file beside `dest`, runs `check` on it, gives it
/// the owner and mode (policy, else those of the file it replaces), fsyncs and
/// renames it over `dest`. A failure leaves `dest` as it was.
fn place_file(
    dest: &Path,
    input: &mut dyn Read,
    id: &str,
    check: Option<&FileCheck<'_>>,
    policy: &RestorePolicy,
    can_chown: bool,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.coffer-restore-{id}"));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        f.sync_all()?;
        drop(f);
        if let Some(check) = check {
            check(&tmp)?;
        }
        let old = std::fs::metadata(dest).ok();
        let mut ids = IdCache::default();
        let owner = match (&policy.owner, &old) {
            (Some(o), _) => {
                let uid = ids
                    .uid(&o.user)
                    .ok_or_else(|| anyhow!("no user {} on this host", o.user))?;
                let gid = match &o.group {
                    Some(g) => Some(
                        ids.gid(g)
                            .ok_or_else(|| anyhow!("no group {g} on this host"))?,
                    ),
                    None => None,
                };
                Some((uid, gid))
            }
            (None, Some(m)) => Some((m.uid(), Some(m.gid()))),
            (None, None) => None,
        };
        if let Some((uid, gid)) = owner {
            if can_chown {
                std::os::unix::fs::chown(&tmp, Some(uid), gid)
                    .with_context(|| format!("cannot chown {}", tmp.display()))?;
            } else {
                warnings.push(format!(
                    "not root: {} keeps the restoring user as owner",
                    dest.display()
                ));
            }
        }
        let mode = policy
            .file_mode
            .or(old.map(|m| m.mode() & 0o7777))
            .unwrap_or(0o600);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, dest)
            .with_context(|| format!("cannot move the restored file to {}", dest.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
pub fn refuse_existing(dest: &DbDest, force: bool) -> Result<()> {
    if let Some(p) = dest.existing_file()
        && !force
    {
        bail!(crate::exit::UsageError(format!(
            "{} exists; pass --force to replace it (it is replaced only once the restored copy is complete{})",
            p.display(),
            if matches!(dest, DbDest::Sqlite(_)) {
                " and passes integrity_check"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

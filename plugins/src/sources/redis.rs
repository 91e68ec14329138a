//! The Redis source: `BGSAVE`, wait until that save has finished and succeeded,
//! then ship the RDB it wrote. The file is opened right after the save, so a later
//! save (which renames a new file into place) cannot change what is read.
//! The URL is shown only through `display_url`; the password travels apart.

use crate::fs::ids::IdCache;
use crate::sources::kind::{DryRun, Kind};
use crate::sources::restore::{FileRestore, Restore, RestoreRequest};
use crate::sources::source::{
    Progress, Source, SourceContext, SourceError, SourceOutcome, copy_file,
};
use coffer_config::RedisSource as Config;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

pub struct RedisSource {
    name: String,
    cfg: Config,
    /// The connection that started the save, kept to wait for it when streaming.
    con: Option<(redis::Connection, Instant)>,
    facts: BTreeMap<String, String>,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// How long a BGSAVE may take before the run gives up.
const SAVE_TIMEOUT: Duration = Duration::from_secs(3600);

impl RedisSource {
    pub fn new(name: String, cfg: Config) -> Self {
        RedisSource {
            name,
            cfg,
            con: None,
            facts: BTreeMap::new(),
        }
    }

    fn err(&self, message: String, retryable: bool) -> SourceError {
        SourceError::Database {
            name: self.name.clone(),
            message,
            retryable,
        }
    }
}

/// Connects with the password kept out of the URL the operator sees.
pub fn connect(
    url: &str,
    password: Option<&coffer_config::Secret>,
) -> Result<redis::Connection, String> {
    let mut info: redis::ConnectionInfo =
        redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| e.to_string())?;
    if let Some(p) = password {
        let settings = info.redis_settings().clone().set_password(p.expose());
        info = info.set_redis_settings(settings);
    }
    let client = redis::Client::open(info).map_err(|e| e.to_string())?;
    client
        .get_connection_with_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
}

/// The extension of this type's stream (`<source>.rdb.zst.age`), for
/// `Source::extension` and `registry::fixed_extension`.
pub(crate) const EXTENSION: &str = "rdb";

/// A redis source as configured (see `sources::kind`).
pub(crate) struct Configured<'a>(pub &'a Config);

impl Kind for Configured<'_> {
    fn open(&self, name: &str, _ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(RedisSource::new(name.to_string(), self.0.clone())))
    }
    fn dry_run(&self) -> DryRun {
        DryRun {
            reads: "the RDB of a BGSAVE on",
            ..DryRun::default()
        }
    }
    fn needed_paths(&self) -> Vec<(&'static str, &Path)> {
        self.0
            .rdb_path
            .iter()
            .map(|p| ("rdb_path", p.as_path()))
            .collect()
    }
}

impl Source for RedisSource {
    fn origin(&self) -> String {
        coffer_config::display_url(&self.cfg.url)
    }
    /// Puts the RDB where Redis reads it when it starts: `rdb_path`, else where
    /// it was on the backed-up host (a path read from the snapshot, so only from
    /// a signed one). Owned by redis:redis, 0660, as the Kadi4Mat manual does by
    /// hand, unless the policy says otherwise.
    fn plan_restore(&self, req: &RestoreRequest<'_>) -> Result<Box<dyn Restore>, SourceError> {
        let path = self
            .cfg
            .rdb_path
            .clone()
            .or_else(|| {
                req.signed
                    .then(|| req.facts.get("rdb_path").map(PathBuf::from))
                    .flatten()
            })
            .ok_or_else(|| SourceError::Invalid {
                name: self.name.clone(),
                message: "set rdb_path, or pass --to DIR".into(),
            })?;
        let mut file = FileRestore::plain(&self.name, path.clone(), req);
        if file.policy.owner.is_none() && IdCache::default().uid("redis").is_some() {
            file.policy.owner = Some(coffer_config::OwnerSpec {
                user: "redis".into(),
                group: Some("redis".into()),
            });
        }
        file.policy.file_mode = file.policy.file_mode.or(Some(0o660));
        file.note = Some(format!(
            "{} is in place: Redis loads it when it (re)starts",
            path.display()
        ));
        Ok(Box::new(file))
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> coffer_config::SourceType {
        coffer_config::SourceType::Redis
    }
    fn extension(&self) -> &str {
        EXTENSION
    }

    /// Fixed at the instant: the RDB is what the forked BGSAVE saw.
    fn frozen_at_instant(&self) -> bool {
        true
    }
    /// Starts the save: the RDB is the data as of the fork, which is the instant.
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        let url = self.cfg.url.clone();
        let mut con = connect(&url, self.cfg.password.as_ref()).map_err(|e| {
            let shown = coffer_config::display_url(&url);
            self.err(format!("cannot connect to {shown}: {e}"), true)
        })?;
        let started = Instant::now();
        // A save already running would make ours fail: wait for it first.
        let instant = loop {
            let info =
                text(query(&mut con, &["INFO", "persistence"]).map_err(|e| self.err(e, true))?);
            if info_field(&info, "rdb_bgsave_in_progress").as_deref() != Some("1") {
                match query(&mut con, &["BGSAVE"]) {
                    Ok(_) => break OffsetDateTime::now_utc(),
                    Err(e) if e.contains("already in progress") => {}
                    Err(e) => return Err(self.err(format!("BGSAVE failed: {e}"), true)),
                }
            }
            if started.elapsed() > SAVE_TIMEOUT {
                return Err(self.err(
                    "a running BGSAVE did not finish within an hour".into(),
                    true,
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.con = Some((con, started));
        Ok(Some(instant))
    }

    /// Waits for the save (in parallel with the other sources), then ships the file
    /// it wrote, opened at once so that a later save cannot change it.
    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        let (mut con, started) = self.con.take().ok_or_else(|| SourceError::Invalid {
            name: self.name.clone(),
            message: "stream before freeze".into(),
        })?;
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let info =
                text(query(&mut con, &["INFO", "persistence"]).map_err(|e| self.err(e, true))?);
            if info_field(&info, "rdb_bgsave_in_progress").as_deref() == Some("0") {
                if info_field(&info, "rdb_last_bgsave_status").as_deref() != Some("ok") {
                    return Err(self.err(
                        "BGSAVE failed (rdb_last_bgsave_status is not ok; see the Redis log)"
                            .into(),
                        true,
                    ));
                }
                break;
            }
            if started.elapsed() > SAVE_TIMEOUT {
                return Err(self.err("BGSAVE did not finish within an hour".into(), true));
            }
        }
        let path = match &self.cfg.rdb_path {
            Some(p) => p.clone(),
            None => {
                let dir = config_get(&mut con, "dir")
                    .map_err(|e| self.err(format!("{e}; set rdb_path"), false))?;
                let file = config_get(&mut con, "dbfilename")
                    .map_err(|e| self.err(format!("{e}; set rdb_path"), false))?;
                PathBuf::from(dir).join(file)
            }
        };
        let mut facts = std::mem::take(&mut self.facts);
        let info = text(query(&mut con, &["INFO", "server"]).map_err(|e| self.err(e, true))?);
        if let Some(v) = info_field(&info, "redis_version") {
            facts.insert("server_version".into(), v);
        }
        facts.insert("rdb_path".into(), path.display().to_string());
        let total = copy_file(&self.name, &path, out, progress)?;
        Ok(SourceOutcome {
            bytes_read: total,
            facts,
            ..SourceOutcome::default()
        })
    }
}

fn query(con: &mut redis::Connection, args: &[&str]) -> Result<redis::Value, String> {
    let (name, rest) = args.split_first().ok_or("an empty Redis command")?;
    let mut c = redis::cmd(name);
    for a in rest {
        c.arg(*a);
    }
    c.query(con).map_err(|e| e.to_string())
}

fn text(v: redis::Value) -> String {
    redis::from_redis_value::<String>(v).unwrap_or_default()
}

fn config_get(con: &mut redis::Connection, key: &str) -> Result<String, String> {
    let v: Vec<String> =
        redis::from_redis_value(query(con, &["CONFIG", "GET", key])?).map_err(|e| e.to_string())?;
    v.get(1)
        .cloned()
        .ok_or_else(|| format!("CONFIG GET {key} returned nothing"))
}

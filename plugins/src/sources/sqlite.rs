//! The SQLite source: an online, consistent copy made with SQLite's online backup
//! while the application keeps writing (never a raw copy of a live file, which can
//! catch a half-applied transaction), streamed from a private scratch file.
//!
//! The backup copies the database page by page, all pages in one step (so within
//! one read transaction), and keeps the source's page layout: a night's changes
//! touch only the chunks holding the pages they changed. `VACUUM INTO`, used
//! before, rebuilt the file, so one deleted row moved every row after it and the
//! whole copy was stored again.

use crate::sources::dbquery::version_fact;
use crate::sources::dbquery::{Endpoint, connect, describe};
use crate::sources::kind::{DryRun, Kind};
use crate::sources::restore::{FileRestore, Restore, RestoreRequest};
use crate::sources::source::{
    Progress, Source, SourceContext, SourceError, SourceOutcome, copy_file,
};
use coffer_config::SqliteSource as Config;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use time::OffsetDateTime;

#[derive(Debug)]
pub struct SqliteSource {
    name: String,
    cfg: Config,
    ctx: SourceContext,
    copy: Option<tempfile::TempDir>,
    /// The job's check query, run on the consistent copy.
    check_query: Option<String>,
    /// Its answer, when the run asked for it before streaming (`answer_check`).
    answered: Option<Result<Vec<crate::sources::dbquery::Referenced>, String>>,
}

impl SqliteSource {
    pub fn new(name: String, cfg: Config, ctx: SourceContext) -> Self {
        SqliteSource {
            name,
            cfg,
            ctx,
            copy: None,
            check_query: None,
            answered: None,
        }
    }

    fn err(&self, what: &str, e: &sqlx::Error) -> SourceError {
        let (msg, retryable) = describe(e);
        SourceError::Database {
            name: self.name.clone(),
            message: format!("{what} {}: {msg}", self.cfg.path.display()),
            retryable,
        }
    }
}

const COPY_NAME: &str = "copy.sqlite";

/// How long the copy waits for a writer's lock before it gives up (retryable),
/// as long as sqlx's connections wait.
const BUSY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Copies the database at `from` to a new file `to` with the online backup, all
/// pages in one step: one read transaction, the source's pages as they are. The
/// error, and whether another run could get past it (a lock held too long).
fn page_copy(from: &Path, to: &Path) -> Result<(), (rusqlite::Error, bool)> {
    use rusqlite::OpenFlags;
    use rusqlite::backup::{Backup, StepResult};
    let fail = |e| (e, false);
    let src = rusqlite::Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    src.busy_timeout(BUSY_FOR).map_err(fail)?;
    let mut dst = rusqlite::Connection::open(to).map_err(fail)?;
    let backup = Backup::new(&src, &mut dst).map_err(fail)?;
    let started = std::time::Instant::now();
    loop {
        match backup.step(-1).map_err(fail)? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked if started.elapsed() < BUSY_FOR => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            StepResult::Busy | StepResult::Locked => {
                return Err((
                    rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some(format!(
                            "the database stayed locked by a writer for {}s",
                            BUSY_FOR.as_secs()
                        )),
                    ),
                    true,
                ));
            }
            // All pages in one step: there is no "more"; anything else, again.
            _ => {}
        }
    }
}

/// The extension of this type's stream (`<source>.sqlite.zst.age`), for
/// `Source::extension` and `registry::fixed_extension`.
pub(crate) const EXTENSION: &str = "sqlite";

/// A sqlite source as configured (see `sources::kind`).
pub(crate) struct Configured<'a>(pub &'a Config);

impl Kind for Configured<'_> {
    fn open(&self, name: &str, ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(SqliteSource::new(
            name.to_string(),
            self.0.clone(),
            ctx.clone(),
        )))
    }
    fn dry_run(&self) -> DryRun {
        DryRun {
            reads: "an online copy (SQLite backup API) of",
            bytes_now: std::fs::metadata(&self.0.path).ok().map(|md| md.len()),
            note: None,
        }
    }
    fn needed_paths(&self) -> Vec<(&'static str, &Path)> {
        vec![("path", self.0.path.as_path())]
    }
}

impl Source for SqliteSource {
    fn origin(&self) -> String {
        self.cfg.path.display().to_string()
    }
    fn check_in_snapshot(&mut self, query: &str) -> bool {
        self.check_query = Some(query.to_string());
        true
    }
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        Some(Endpoint::Sqlite {
            path: &self.cfg.path,
        })
    }
    /// Replaces the configured file, once the restored copy passes integrity_check.
    fn plan_restore(&self, req: &RestoreRequest<'_>) -> Result<Box<dyn Restore>, SourceError> {
        let rt = self.ctx.rt.clone();
        let mut file = FileRestore::plain(&self.name, self.cfg.path.clone(), req);
        file.check = Some(Box::new(move |copy: &Path| integrity_check(&rt, copy)));
        file.note = Some(format!(
            "{} replaced: restart the application so that it opens the restored file",
            self.cfg.path.display()
        ));
        file.is_sqlite = true;
        Ok(Box::new(file))
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> coffer_config::SourceType {
        coffer_config::SourceType::Sqlite
    }
    fn extension(&self) -> &str {
        EXTENSION
    }

    /// Fixed at the instant: the copy reads one transaction.
    fn frozen_at_instant(&self) -> bool {
        true
    }
    /// Checks the file and makes the copy: its instant must come before the
    /// directories' (they freeze once this returns), or a row committed in between
    /// could name a file the directories' instant lacks ("The order of the two
    /// instants" in docs/consistency.md). The directories wait for the copy; the skew says
    /// how long it took.
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        // A missing file is the usual mistake (a wrong path, a volume not mounted):
        // said as such, not as "is not a file".
        let path = self.cfg.path.display();
        let problem = match std::fs::metadata(&self.cfg.path) {
            Ok(m) if m.is_file() => None,
            Ok(_) => Some(format!(
                "{path} is not a file: `path` is the database file itself (e.g. /var/lib/app/app.db)"
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "the database file {path} does not exist: is the path right, is its volume mounted?"
            )),
            Err(e) => Some(format!("cannot read the database file {path}: {e}")),
        };
        if let Some(message) = problem {
            return Err(SourceError::Invalid {
                name: self.name.clone(),
                message,
            });
        }
        std::fs::create_dir_all(&self.ctx.tmp_dir).map_err(|err| SourceError::Io {
            name: self.name.clone(),
            path: self.ctx.tmp_dir.clone(),
            err,
        })?;
        let dir = tempfile::Builder::new()
            .prefix("sqlite-")
            .tempdir_in(&self.ctx.tmp_dir)
            .map_err(|err| SourceError::Io {
                name: self.name.clone(),
                path: self.ctx.tmp_dir.clone(),
                err,
            })?;
        let path = dir.path().join(COPY_NAME);
        let instant = OffsetDateTime::now_utc();
        page_copy(&self.cfg.path, &path).map_err(|(e, retryable)| SourceError::Database {
            name: self.name.clone(),
            message: format!("cannot copy {}: {e}", self.cfg.path.display()),
            retryable,
        })?;
        self.copy = Some(dir);
        Ok(Some(instant))
    }

    /// On the copy, which is the instant backed up.
    fn answer_check(&mut self) -> Option<Result<Vec<crate::sources::dbquery::Referenced>, String>> {
        let query = self.check_query.clone()?;
        let dir = self.copy.as_ref()?;
        let path = dir.path().join(COPY_NAME);
        let copied = Endpoint::Sqlite { path: &path };
        let answer = self.ctx.rt.block_on(async {
            let mut db = connect(&copied).await.map_err(|e| e.to_string())?;
            let referenced = crate::sources::dbquery::referenced_on(&mut db, &query)
                .await
                .map_err(|e| e.to_string());
            db.close().await;
            referenced
        });
        self.answered = Some(answer.clone());
        Some(answer)
    }

    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        let dir = self.copy.take().ok_or_else(|| SourceError::Invalid {
            name: self.name.clone(),
            message: "stream before freeze".into(),
        })?;
        let path = dir.path().join(COPY_NAME);
        let answered = self.answered.take();
        let check_query = self.check_query.clone().filter(|_| answered.is_none());
        let mut facts = BTreeMap::new();
        let mut warnings = Vec::new();
        let copied = Endpoint::Sqlite { path: &path };
        let referenced = self
            .ctx
            .rt
            .block_on(async {
                let mut db = connect(&copied).await?;
                if let Some(v) = db.scalar("SELECT sqlite_version()").await? {
                    facts.insert("sqlite_version".to_string(), v);
                }
                if let Some(q) = &self.cfg.version_query {
                    version_fact(&mut db, q, &mut facts, &mut warnings).await?;
                }
                // The copy is one instant of the database: the check query there
                // sees what was backed up.
                let referenced = match &check_query {
                    Some(q) => Some(
                        crate::sources::dbquery::referenced_on(&mut db, q)
                            .await
                            .map_err(|e| e.to_string()),
                    ),
                    None => None,
                };
                db.close().await;
                Ok::<_, sqlx::Error>(referenced)
            })
            .map_err(|e| self.err("cannot read the copy of", &e))?;
        let total = copy_file(&self.name, &path, out, progress)?;
        Ok(SourceOutcome {
            bytes_read: total,
            facts,
            warnings,
            referenced: answered.or(referenced),
            ..SourceOutcome::default()
        })
    }
}

/// `PRAGMA integrity_check` on a restored copy before it replaces anything.
pub fn integrity_check(rt: &tokio::runtime::Handle, path: &Path) -> Result<(), String> {
    let result = rt.block_on(async {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(rows)
    });
    match result {
        Ok(rows) if rows == ["ok"] => Ok(()),
        Ok(rows) => Err(format!("integrity_check: {}", rows.join("; "))),
        Err(e) => Err(e.to_string()),
    }
}

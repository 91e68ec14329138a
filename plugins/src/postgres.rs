//! The PostgreSQL source, frozen at one instant.
//!
//! `freeze` opens a `REPEATABLE READ READ ONLY` transaction, exports its snapshot
//! and keeps the transaction open; `stream` runs `pg_dump --snapshot=<id> -Fc`, so
//! the dump shows the database exactly as it was when the snapshot was exported,
//! however long the dump takes and whatever the other sources do meanwhile. The
//! password reaches pg_dump only through `PGPASSWORD` in its environment, which is
//! otherwise scrubbed (`child::scrub_env`); URLs are shown only through
//! `display_url`.

use crate::child::{command, feed_stdin, refuse_credentials, stream_stdout};
use crate::dbquery::{Db, Endpoint, connect, describe};
use crate::restore::{Restore, RestoreRequest};
use crate::source::{Progress, Source, SourceContext, SourceError, SourceOutcome};
use coffer_config::{DatabaseSource as Config, Secret, display_url};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use time::OffsetDateTime;

#[derive(Debug)]
pub struct PostgresSource {
    name: String,
    cfg: Config,
    ctx: SourceContext,
    /// The transaction holding the exported snapshot, and the snapshot's id.
    held: Option<(Db, String)>,
    facts: BTreeMap<String, String>,
    warnings: Vec<String>,
}

impl PostgresSource {
    pub fn new(name: String, cfg: Config, ctx: SourceContext) -> Self {
        PostgresSource {
            name,
            cfg,
            ctx,
            held: None,
            facts: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    fn db_err(&self, what: &str, e: &sqlx::Error) -> SourceError {
        let (msg, retryable) = describe(e);
        SourceError::Database {
            name: self.name.clone(),
            message: format!("{what} ({}): {msg}", display_url(&self.cfg.url)),
            retryable,
        }
    }
}

/// A client tool's version line, e.g. "pg_dump (PostgreSQL) 15.18" -> "15.18".
pub fn tool_version(program: &str) -> Option<String> {
    let out = command(program).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .map(str::to_string)
}

/// Gives pg_dump or pg_restore the password sqlx connected with: the configured
/// one, or else PGPASSWORD from coffer's own environment (sqlx reads it too), which
/// the scrubbed environment no longer passes on by itself.
fn pg_password(cmd: &mut Command, configured: Option<&Secret>) {
    match configured {
        Some(p) => {
            cmd.env("PGPASSWORD", p.expose());
        }
        None => {
            if let Some(v) = std::env::var_os("PGPASSWORD") {
                cmd.env("PGPASSWORD", v);
            }
        }
    }
}

/// The major version of a PostgreSQL version string ("15.18 (Debian ...)" -> 15).
pub fn major(version: &str) -> Option<u32> {
    version.split(['.', ' ']).next()?.parse().ok()
}

impl Source for PostgresSource {
    fn origin(&self) -> String {
        display_url(&self.cfg.url)
    }
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        Some(Endpoint::Postgres {
            url: &self.cfg.url,
            password: self.cfg.password.as_ref(),
        })
    }
    /// Into the configured database, or the one `--db-url` names (with the
    /// configured password: a URL on the command line never carries one).
    fn plan_restore(&self, req: &RestoreRequest<'_>) -> Result<Box<dyn Restore>, SourceError> {
        Ok(Box::new(PgRestore {
            name: self.name.clone(),
            rt: self.ctx.rt.clone(),
            url: req.db_url.unwrap_or(&self.cfg.url).to_string(),
            password: self.cfg.password.clone(),
            facts: req.facts.clone(),
            clean: req.clean,
        }))
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> coffer_config::SourceType {
        coffer_config::SourceType::Postgres
    }
    fn extension(&self) -> &str {
        "dump"
    }

    /// Fixed at the instant: the dump reads the exported snapshot.
    fn frozen_at_instant(&self) -> bool {
        true
    }
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        let target = Endpoint::Postgres {
            url: &self.cfg.url,
            password: self.cfg.password.as_ref(),
        };
        let rt = self.ctx.rt.clone();
        let mut facts = BTreeMap::new();
        let mut warnings = Vec::new();
        // Everything slow happens before the snapshot is exported: the other sources
        // wait at the barrier until this returns, so the work after the export is skew.
        if let Some(v) = tool_version("pg_dump") {
            facts.insert("pg_dump_version".into(), v);
        }
        let result = rt.block_on(async {
            let mut db = connect(&target).await.map_err(|e| ("cannot connect", e))?;
            if let Some(v) = db
                .scalar("SHOW server_version")
                .await
                .map_err(|e| ("SHOW server_version", e))?
            {
                facts.insert("server_version".into(), v);
            }
            db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| ("cannot open the snapshot transaction", e))?;
            let snapshot = db
                .scalar("SELECT pg_export_snapshot()")
                .await
                .map_err(|e| ("cannot export a snapshot", e))?
                .unwrap_or_default();
            let instant = OffsetDateTime::now_utc();
            if let Some(q) = &self.cfg.version_query {
                // Inside the snapshot: the version of exactly the data dumped.
                crate::dbquery::version_fact(&mut db, q, &mut facts, &mut warnings)
                    .await
                    .map_err(|e| ("version_query failed", e))?;
            }
            Ok::<_, (&str, sqlx::Error)>((db, snapshot, instant))
        });
        let (db, snapshot, instant) = result.map_err(|(what, e)| self.db_err(what, &e))?;
        self.facts = facts;
        self.warnings = warnings;
        self.held = Some((db, snapshot));
        Ok(Some(instant))
    }

    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        let (db, snapshot) = self.held.take().ok_or_else(|| SourceError::Invalid {
            name: self.name.clone(),
            message: "stream before freeze".into(),
        })?;
        // The URL goes on pg_dump's command line: it must hold no credential.
        let checked = refuse_credentials(&self.name, &self.cfg.url);
        let mut cmd = command("pg_dump");
        // zstd compresses the stream better and faster than pg_dump's zlib would.
        cmd.arg("--format=custom")
            .arg("--compress=0")
            .arg(format!("--snapshot={snapshot}"))
            .arg("--no-password")
            .arg(format!("--dbname={}", self.cfg.url));
        pg_password(&mut cmd, self.cfg.password.as_ref());
        let dumped = checked.and_then(|()| stream_stdout(&self.name, &mut cmd, out, progress));
        // The snapshot was needed until pg_dump had imported it; end it either way.
        self.ctx.rt.block_on(async move {
            let mut db = db;
            let _ = db.execute("COMMIT").await;
            db.close().await;
        });
        let bytes = dumped?;
        Ok(SourceOutcome {
            bytes_read: bytes,
            facts: std::mem::take(&mut self.facts),
            warnings: std::mem::take(&mut self.warnings),
            ..SourceOutcome::default()
        })
    }
}

/// Restores a custom-format dump with pg_restore, in one transaction so that a
/// failure changes nothing. Returns warnings (version differences) and pg_restore's output.
pub fn restore(
    name: &str,
    rt: &tokio::runtime::Handle,
    url: &str,
    password: Option<&Secret>,
    recorded: &BTreeMap<String, String>,
    clean: bool,
    input: &mut dyn Read,
) -> Result<Vec<String>, SourceError> {
    refuse_credentials(name, url)?;
    let mut warnings = Vec::new();
    let target = Endpoint::Postgres { url, password };
    let server = rt.block_on(async {
        let mut db = connect(&target).await?;
        let v = db.scalar("SHOW server_version").await;
        db.close().await;
        v
    });
    let server = server.map_err(|e| {
        let (msg, retryable) = describe(&e);
        SourceError::Database {
            name: name.to_string(),
            message: format!("cannot connect to {}: {msg}", display_url(url)),
            retryable,
        }
    })?;
    if let (Some(from), Some(to)) = (recorded.get("server_version"), server.as_deref())
        && major(from) != major(to)
    {
        warnings.push(format!("dumped from PostgreSQL {from}, restoring into {to}: check the application's upgrade notes"));
    }
    if let (Some(dumped_with), Some(restorer)) =
        (recorded.get("pg_dump_version"), tool_version("pg_restore"))
        && major(&restorer) < major(dumped_with)
    {
        warnings.push(format!(
            "pg_restore {restorer} is older than the pg_dump {dumped_with} that made this dump; install a newer client if it fails"
        ));
    }
    let mut cmd = command("pg_restore");
    cmd.arg("--no-password")
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .arg(format!("--dbname={url}"));
    if clean {
        cmd.arg("--clean").arg("--if-exists");
    }
    pg_password(&mut cmd, password);
    let log = feed_stdin(name, &mut cmd, input).map_err(|e| match e {
        SourceError::Dump { name, program, detail } if !clean && detail.contains("already exists") => SourceError::Dump {
            name,
            program,
            detail: format!("{detail}; the database is not empty: restore with --clean to replace its objects, or into an empty database with --db-url"),
        },
        other => other,
    })?;
    if !log.is_empty() {
        warnings.push(format!("pg_restore: {log}"));
    }
    Ok(warnings)
}

/// A planned pg_restore into a server database.
#[derive(Debug)]
struct PgRestore {
    name: String,
    rt: tokio::runtime::Handle,
    url: String,
    password: Option<Secret>,
    facts: BTreeMap<String, String>,
    clean: bool,
}

impl Restore for PgRestore {
    fn describe(&self) -> String {
        self.url.clone()
    }
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        Some(Endpoint::Postgres {
            url: &self.url,
            password: self.password.as_ref(),
        })
    }
    fn restore(&self, input: &mut dyn Read) -> Result<Vec<String>, SourceError> {
        restore(
            &self.name,
            &self.rt,
            &self.url,
            self.password.as_ref(),
            &self.facts,
            self.clean,
            input,
        )
    }
}

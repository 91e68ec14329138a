//! The PostgreSQL source, frozen at one instant.
//!
//! `prepare` connects and opens a `REPEATABLE READ READ ONLY` transaction; `freeze`
//! exports its snapshot (one statement: the instant) and keeps the transaction
//! open; `stream` runs `pg_dump --snapshot=<id> -Fc`, so the dump shows the
//! database exactly as it was when the snapshot was exported, however long the
//! dump takes and whatever the other sources do meanwhile. The
//! password reaches pg_dump only through `PGPASSWORD` in its environment, which is
//! otherwise scrubbed (`child::scrub_env`); URLs are shown only through
//! `display_url`.

pub mod auth;
pub(crate) mod create;
mod restore;

use crate::process::child::{command, refuse_credentials, stream_stdout};
use crate::sources::dbquery::{Db, Endpoint, connect, describe};
use crate::sources::kind::{DryRun, Kind};
use crate::sources::restore::{Restore, RestoreRequest};
use crate::sources::source::{Progress, Source, SourceContext, SourceError, SourceOutcome};
use coffer_config::{DatabaseSource as Config, Secret, display_url};
use restore::PgRestore;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use time::OffsetDateTime;

#[derive(Debug)]
pub struct PostgresSource {
    name: String,
    cfg: Config,
    ctx: SourceContext,
    /// The transaction `prepare` opened, before its snapshot is taken.
    opened: Option<Db>,
    /// The transaction holding the exported snapshot, and the snapshot's id.
    held: Option<(Db, String)>,
    facts: BTreeMap<String, String>,
    warnings: Vec<String>,
    /// The job's check query, run in the exported snapshot's transaction.
    check_query: Option<String>,
    /// Its answer, when the run asked for it before streaming (`answer_check`).
    answered: Option<Result<Vec<crate::sources::dbquery::Referenced>, String>>,
}

impl PostgresSource {
    pub fn new(name: String, cfg: Config, ctx: SourceContext) -> Self {
        PostgresSource {
            name,
            cfg,
            ctx,
            opened: None,
            held: None,
            facts: BTreeMap::new(),
            warnings: Vec::new(),
            check_query: None,
            answered: None,
        }
    }

    /// Connects, records the facts that need no snapshot, and opens the snapshot's
    /// transaction. Its snapshot is taken by its first statement, not by BEGIN.
    fn open(&mut self) -> Result<Db, SourceError> {
        let target = Endpoint::Postgres {
            url: &self.cfg.url,
            password: self.cfg.password.as_ref(),
        };
        let mut facts = BTreeMap::new();
        if let Some(v) = tool_version("pg_dump") {
            facts.insert("pg_dump_version".into(), v);
        }
        let result = self.ctx.rt.block_on(async {
            let mut db = connect(&target).await.map_err(|e| ("cannot connect", e))?;
            if let Some(v) = db
                .scalar("SHOW server_version")
                .await
                .map_err(|e| ("SHOW server_version", e))?
            {
                facts.insert("server_version".into(), v);
            }
            if let Some(owner) = db
                .scalar(
                    "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database \
                     WHERE datname = current_database()",
                )
                .await
                .map_err(|e| ("cannot read the database's owner", e))?
            {
                facts.insert("database_owner".into(), owner);
            }
            db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| ("cannot open the snapshot transaction", e))?;
            Ok::<_, (&str, sqlx::Error)>(db)
        });
        let db = result.map_err(|(what, e)| self.db_err(what, &e))?;
        self.facts = facts;
        Ok(db)
    }

    fn db_err(&self, what: &str, e: &sqlx::Error) -> SourceError {
        let (_, retryable) = describe(e);
        // The server's words, and for a refused login what to check (pg_auth).
        let msg = crate::sources::postgres::auth::explain(e, &self.cfg.url);
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
    version_in(&String::from_utf8_lossy(&out.stdout))
}

/// The version in a `--version` line: the first word that starts with a digit.
/// "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" gives "15.18"; the last
/// word would be the distribution's "15.18-0+deb12u1)".
fn version_in(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .map(|w| w.trim_end_matches([')', ',']).to_string())
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

/// The extension of this type's stream (`<source>.dump.zst.age`), for
/// `Source::extension` and `registry::fixed_extension`.
pub(crate) const EXTENSION: &str = "dump";

/// A postgres source as configured (see `sources::kind`).
pub(crate) struct Configured<'a>(pub &'a Config);

impl Kind for Configured<'_> {
    fn open(&self, name: &str, ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(PostgresSource::new(
            name.to_string(),
            self.0.clone(),
            ctx.clone(),
        )))
    }
    fn dry_run(&self) -> DryRun {
        DryRun {
            reads: "a pg_dump (custom format) of",
            ..DryRun::default()
        }
    }
    fn needed_paths(&self) -> Vec<(&'static str, &Path)> {
        Vec::new()
    }
}

impl Source for PostgresSource {
    fn origin(&self) -> String {
        display_url(&self.cfg.url)
    }
    fn check_in_snapshot(&mut self, query: &str) -> bool {
        self.check_query = Some(query.to_string());
        true
    }
    /// In the transaction that exported the snapshot: the same answer the check
    /// would get after the dump, early enough for the files to be completed.
    fn answer_check(&mut self) -> Option<Result<Vec<crate::sources::dbquery::Referenced>, String>> {
        let query = self.check_query.clone()?;
        let (db, _) = self.held.as_mut()?;
        let answer = self.ctx.rt.block_on(async {
            crate::sources::dbquery::referenced_on(db, &query)
                .await
                .map_err(|e| crate::sources::postgres::create::server_message(&e))
        });
        self.answered = Some(answer.clone());
        Some(answer)
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
            // A role named by the snapshot owns the new database only if the
            // snapshot is signed: an unsigned one could name any role here.
            owner: req
                .signed
                .then(|| req.facts.get("database_owner").cloned())
                .flatten(),
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
        EXTENSION
    }

    /// Fixed at the instant: the dump reads the exported snapshot.
    fn frozen_at_instant(&self) -> bool {
        true
    }
    /// Everything slow, before the instant: the other sources' instants wait for
    /// this one's, so connecting (and asking for facts) then would be skew.
    fn prepare(&mut self, _for_check: bool) -> Result<(), SourceError> {
        if self.opened.is_none() {
            let db = self.open()?;
            self.opened = Some(db);
        }
        Ok(())
    }
    /// The instant: one statement in the transaction `prepare` opened.
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        let db = match self.opened.take() {
            Some(db) => db,
            None => self.open()?,
        };
        let mut facts = std::mem::take(&mut self.facts);
        let mut warnings = Vec::new();
        let result = self.ctx.rt.block_on(async {
            let mut db = db;
            let snapshot = db
                .scalar("SELECT pg_export_snapshot()")
                .await
                .map_err(|e| ("cannot export a snapshot", e))?
                .unwrap_or_default();
            let instant = OffsetDateTime::now_utc();
            if let Some(q) = &self.cfg.version_query {
                // Inside the snapshot: the version of exactly the data dumped.
                crate::sources::dbquery::version_fact(&mut db, q, &mut facts, &mut warnings)
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
        // The snapshot was needed until pg_dump had imported it; the check query
        // runs in the same transaction, so it sees exactly the data dumped. End it
        // either way.
        let answered = self.answered.take();
        let check = self
            .check_query
            .clone()
            .filter(|_| dumped.is_ok() && answered.is_none());
        let referenced = self.ctx.rt.block_on(async move {
            let mut db = db;
            let referenced = match &check {
                Some(q) => Some(
                    crate::sources::dbquery::referenced_on(&mut db, q)
                        .await
                        .map_err(|e| crate::sources::postgres::create::server_message(&e)),
                ),
                None => None,
            };
            let _ = db.execute("COMMIT").await;
            db.close().await;
            referenced
        });
        let bytes = dumped?;
        Ok(SourceOutcome {
            referenced: answered.or(referenced),
            bytes_read: bytes,
            facts: std::mem::take(&mut self.facts),
            warnings: std::mem::take(&mut self.warnings),
            ..SourceOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_tools_not_the_distributions() {
        let debian = "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n";
        assert_eq!(version_in(debian).as_deref(), Some("15.18"));
        assert_eq!(major("15.18"), Some(15));
        assert_eq!(
            version_in("pg_restore (PostgreSQL) 17.2\n").as_deref(),
            Some("17.2")
        );
        assert_eq!(version_in("pg_dump (PostgreSQL)\n"), None);
    }
}

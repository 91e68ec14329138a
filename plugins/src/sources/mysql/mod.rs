//! The MySQL / MariaDB source: `mysqldump --single-transaction` (or `mariadb-dump`),
//! which reads every InnoDB table from one consistent snapshot taken as it starts;
//! that start is recorded as the source's instant. Credentials go to the client in
//! a private option file (`--defaults-extra-file`, mode 0600), never in arguments;
//! the client's environment is scrubbed of secrets (`child::scrub_env`) and URLs
//! are shown only through `display_url`.

pub mod auth;
use crate::process::child::{command, feed_stdin, refuse_credentials, stream_stdout};
use crate::sources::dbquery::version_fact;
use crate::sources::dbquery::{Endpoint, connect, describe};
use crate::sources::kind::{DryRun, Kind};
use crate::sources::restore::{Restore, RestoreRequest};
use crate::sources::source::{Progress, Source, SourceContext, SourceError, SourceOutcome};
use coffer_config::{DatabaseSource as Config, Secret, display_url};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use time::OffsetDateTime;

#[derive(Debug)]
pub struct MysqlSource {
    name: String,
    cfg: Config,
    ctx: SourceContext,
    facts: BTreeMap<String, String>,
    warnings: Vec<String>,
}

impl MysqlSource {
    pub fn new(name: String, cfg: Config, ctx: SourceContext) -> Self {
        MysqlSource {
            name,
            cfg,
            ctx,
            facts: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

/// The first of `names` found on PATH (MariaDB renamed its tools).
fn first_on_path(names: &[&'static str]) -> &'static str {
    for n in names {
        if std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(n).is_file()))
        {
            return n;
        }
    }
    names[names.len() - 1]
}

/// A private client option file with host, port, user and password.
pub fn option_file(
    name: &str,
    url: &str,
    password: Option<&Secret>,
    dir: &std::path::Path,
) -> Result<(tempfile::NamedTempFile, String), SourceError> {
    let bad = |m: String| SourceError::Invalid {
        name: name.to_string(),
        message: m,
    };
    let u = url::Url::parse(url)
        .map_err(|e| bad(format!("{}: not a valid URL: {e}", display_url(url))))?;
    let db = u.path().trim_start_matches('/').to_string();
    if db.is_empty() {
        return Err(bad(format!(
            "{}: the URL must name the database (mysql://user@host:3306/DBNAME)",
            display_url(url)
        )));
    }
    let mut text = String::from("[client]\n");
    text.push_str(&format!("host={}\n", u.host_str().unwrap_or("localhost")));
    text.push_str(&format!("port={}\n", u.port().unwrap_or(3306)));
    if !u.username().is_empty() {
        text.push_str(&format!("user={}\n", percent_decode(u.username())));
    }
    if let Some(p) = password {
        // Quoted so that '#' and spaces survive; backslash and quote escaped.
        let escaped = p.expose().replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("password=\"{escaped}\"\n"));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
    // NamedTempFile is created with mode 0600.
    let mut f = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
        bad(format!(
            "cannot create a private file in {}: {e}",
            dir.display()
        ))
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.flush())
        .map_err(|e| bad(format!("cannot write the client option file: {e}")))?;
    Ok((f, db))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The extension of this type's stream (`<source>.sql.zst.age`), for
/// `Source::extension` and `registry::fixed_extension`.
pub(crate) const EXTENSION: &str = "sql";

/// A mysql source as configured (see `sources::kind`).
pub(crate) struct Configured<'a>(pub &'a Config);

impl Kind for Configured<'_> {
    fn open(&self, name: &str, ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(MysqlSource::new(
            name.to_string(),
            self.0.clone(),
            ctx.clone(),
        )))
    }
    fn dry_run(&self) -> DryRun {
        DryRun {
            reads: "a mysqldump --single-transaction of",
            ..DryRun::default()
        }
    }
    fn needed_paths(&self) -> Vec<(&'static str, &Path)> {
        Vec::new()
    }
}

impl Source for MysqlSource {
    fn origin(&self) -> String {
        display_url(&self.cfg.url)
    }
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        Some(Endpoint::Mysql {
            url: &self.cfg.url,
            password: self.cfg.password.as_ref(),
        })
    }
    /// Into the configured database, or the one `--db-url` names (with the
    /// configured password: a URL on the command line never carries one).
    fn plan_restore(&self, req: &RestoreRequest<'_>) -> Result<Box<dyn Restore>, SourceError> {
        Ok(Box::new(MyRestore {
            name: self.name.clone(),
            url: req.db_url.unwrap_or(&self.cfg.url).to_string(),
            password: self.cfg.password.clone(),
            tmp_dir: self.ctx.tmp_dir.clone(),
        }))
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> coffer_config::SourceType {
        coffer_config::SourceType::Mysql
    }
    fn extension(&self) -> &str {
        EXTENSION
    }

    /// Fixed at the instant: the dump reads one consistent-snapshot transaction.
    fn frozen_at_instant(&self) -> bool {
        true
    }
    fn freeze(&mut self) -> Result<Option<OffsetDateTime>, SourceError> {
        // Facts first: connecting early also fails fast on a wrong password.
        let target = Endpoint::Mysql {
            url: &self.cfg.url,
            password: self.cfg.password.as_ref(),
        };
        let mut facts = BTreeMap::new();
        let mut warnings = Vec::new();
        let r = self.ctx.rt.block_on(async {
            let mut db = connect(&target).await?;
            if let Some(v) = db.scalar("SELECT VERSION()").await? {
                facts.insert("server_version".to_string(), v);
            }
            if let Some(q) = &self.cfg.version_query {
                version_fact(&mut db, q, &mut facts, &mut warnings).await?;
            }
            db.close().await;
            Ok::<_, sqlx::Error>(())
        });
        r.map_err(|e| {
            let (_, retryable) = describe(&e);
            // A refused login says what to check (a missing user or a password).
            let msg = crate::sources::mysql::auth::explain(&e, &self.cfg.url);
            SourceError::Database {
                name: self.name.clone(),
                message: format!("{}: {msg}", display_url(&self.cfg.url)),
                retryable,
            }
        })?;
        self.facts = facts;
        self.warnings = warnings;
        Ok(None)
    }

    fn stream(
        &mut self,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<SourceOutcome, SourceError> {
        refuse_credentials(&self.name, &self.cfg.url)?;
        let (opts, db) = option_file(
            &self.name,
            &self.cfg.url,
            self.cfg.password.as_ref(),
            &self.ctx.tmp_dir,
        )?;
        let program = first_on_path(&["mariadb-dump", "mysqldump"]);
        let mut cmd = command(program);
        cmd.arg(format!("--defaults-extra-file={}", opts.path().display()))
            .args([
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--quick",
                "--hex-blob",
            ])
            .arg("--default-character-set=utf8mb4")
            .arg(&db);
        let instant = OffsetDateTime::now_utc();
        let bytes = stream_stdout(&self.name, &mut cmd, out, progress)?;
        drop(opts);
        let mut facts = std::mem::take(&mut self.facts);
        facts.insert("dump_tool".into(), program.into());
        Ok(SourceOutcome {
            bytes_read: bytes,
            instant: Some(instant),
            facts,
            warnings: std::mem::take(&mut self.warnings),
            ..SourceOutcome::default()
        })
    }
}

/// Feeds an SQL dump to the `mariadb`/`mysql` client.
pub fn restore(
    name: &str,
    url: &str,
    password: Option<&Secret>,
    tmp_dir: &std::path::Path,
    input: &mut dyn Read,
) -> Result<String, SourceError> {
    refuse_credentials(name, url)?;
    let (opts, db) = option_file(name, url, password, tmp_dir)?;
    let mut cmd = command(first_on_path(&["mariadb", "mysql"]));
    cmd.arg(format!("--defaults-extra-file={}", opts.path().display()))
        .arg(&db);
    feed_stdin(name, &mut cmd, input)
}

/// A planned restore through the `mariadb`/`mysql` client.
#[derive(Debug)]
struct MyRestore {
    name: String,
    url: String,
    password: Option<Secret>,
    tmp_dir: std::path::PathBuf,
}

impl Restore for MyRestore {
    fn describe(&self) -> String {
        self.url.clone()
    }
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        Some(Endpoint::Mysql {
            url: &self.url,
            password: self.password.as_ref(),
        })
    }
    fn restore(&self, input: &mut dyn Read) -> Result<Vec<String>, SourceError> {
        let log = restore(
            &self.name,
            &self.url,
            self.password.as_ref(),
            &self.tmp_dir,
            input,
        )?;
        Ok(if log.is_empty() {
            Vec::new()
        } else {
            vec![log]
        })
    }
}

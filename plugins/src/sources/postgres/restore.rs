//! pg_restore of a custom-format dump into a server database: the database made
//! when it is missing, versions compared, one transaction so that a failure
//! changes nothing. Apart from the source because restoring shares nothing with
//! freezing and dumping but the password and the version helpers.

use super::{major, pg_password, tool_version};
use crate::process::child::{command, feed_stdin, refuse_credentials};
use crate::sources::dbquery::{Endpoint, connect, describe};
use crate::sources::restore::Restore;
use crate::sources::source::SourceError;
use coffer_config::{Secret, display_url};
use std::collections::BTreeMap;
use std::io::Read;

/// Restores a custom-format dump with pg_restore, in one transaction so that a
/// failure changes nothing. Returns warnings (version differences) and pg_restore's output.
fn restore(r: &PgRestore, input: &mut dyn Read) -> Result<Vec<String>, SourceError> {
    let (name, rt, url, clean) = (r.name.as_str(), &r.rt, r.url.as_str(), r.clean);
    let (password, recorded, owner) = (r.password.as_ref(), &r.facts, r.owner.as_deref());
    refuse_credentials(name, url)?;
    let mut warnings = Vec::new();
    let target = Endpoint::Postgres { url, password };
    let cannot_connect = |e: &sqlx::Error| {
        let (_, retryable) = describe(e);
        SourceError::Database {
            name: name.to_string(),
            message: format!(
                "cannot connect to {}: {}",
                display_url(url),
                crate::sources::postgres::auth::explain(e, url)
            ),
            retryable,
        }
    };
    let mut first = rt.block_on(connect(&target));
    if let Err(e) = &first
        && crate::sources::postgres::create::is_missing_database(e)
    {
        let created = rt
            .block_on(crate::sources::postgres::create::create_database(
                url, password, owner,
            ))
            .map_err(|message| SourceError::Invalid {
                name: name.to_string(),
                message,
            })?;
        warnings.push(created);
        first = rt.block_on(connect(&target));
    }
    let mut db = first.map_err(|e| cannot_connect(&e))?;
    let server = rt.block_on(async {
        let v = db.scalar("SHOW server_version").await;
        db.close().await;
        v
    });
    let server = server.map_err(|e| cannot_connect(&e))?;
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
pub(super) struct PgRestore {
    pub(super) name: String,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) url: String,
    pub(super) password: Option<Secret>,
    pub(super) facts: BTreeMap<String, String>,
    pub(super) owner: Option<String>,
    pub(super) clean: bool,
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
        restore(self, input)
    }
}

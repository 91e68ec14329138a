//! Restoring PostgreSQL onto a new server, where the database does not exist yet
//! (the usual case after losing a host). The database is created first, owned by
//! the role that owned it when it was dumped (recorded as the fact
//! `database_owner`, trusted only from a signed snapshot, and only when that role
//! exists here), else by the user of the URL. When it cannot be created (no
//! CREATEDB right), the error gives the exact command to run.
//!
//! The server's "does not exist" is recognised by its SQLSTATE (3D000), never by
//! its text, and messages are the server's own message without sqlx's wrapping.

use crate::sources::dbquery::{Db, Endpoint, connect};
use coffer_config::{Secret, display_url};

/// SQLSTATE invalid_catalog_name: the database named in the connection is missing.
const MISSING_DATABASE: &str = "3D000";

/// True when connecting failed because the database does not exist.
pub(crate) fn is_missing_database(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == MISSING_DATABASE)
}

/// The server's own words for a failure, without the driver's prefix.
pub(crate) fn server_message(e: &sqlx::Error) -> String {
    e.as_database_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// An identifier quoted for SQL: CREATE DATABASE takes no parameters.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Where a URL points: the database, the user, and host:port for messages.
struct Place {
    database: String,
    user: Option<String>,
    host: String,
    port: u16,
    maintenance_url: String,
}

fn place(url: &str) -> Result<Place, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("{}: {e}", display_url(url)))?;
    let database = percent_encoding::percent_decode_str(parsed.path().trim_start_matches('/'))
        .decode_utf8_lossy()
        .into_owned();
    if database.is_empty() {
        return Err(format!("{} names no database", display_url(url)));
    }
    let user = Some(parsed.username()).filter(|u| !u.is_empty()).map(|u| {
        percent_encoding::percent_decode_str(u)
            .decode_utf8_lossy()
            .into_owned()
    });
    let host = parsed.host_str().unwrap_or("localhost").to_string();
    let port = parsed.port().unwrap_or(5432);
    parsed.set_path("/postgres");
    Ok(Place {
        database,
        user,
        host,
        port,
        maintenance_url: parsed.to_string(),
    })
}

/// Creates the database `url` names; returns what was done, for the operator.
/// `owner` is the recorded owner when the snapshot is signed.
pub(crate) async fn create_database(
    url: &str,
    password: Option<&Secret>,
    owner: Option<&str>,
) -> Result<String, String> {
    let p = place(url)?;
    let command = |owner: &str| createdb_command(&p, owner);
    let fallback = p.user.clone().unwrap_or_else(|| "postgres".into());
    let mut db = connect(&Endpoint::Postgres {
        url: &p.maintenance_url,
        password,
    })
    .await
    .map_err(|e| {
        format!(
            "database {} does not exist on {}:{}, and coffer cannot reach the postgres database there to create it ({}); create it with {} and restore again",
            p.database,
            p.host,
            p.port,
            crate::sources::postgres::auth::explain(&e, &p.maintenance_url),
            command(owner.unwrap_or(&fallback))
        )
    })?;
    let Db::Pg(conn) = &mut db else {
        return Err("not a PostgreSQL connection".into());
    };
    let recorded = match owner {
        Some(o) => {
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1")
                .bind(o)
                .fetch_optional(&mut *conn)
                .await
                .ok()
                .flatten()
                .map(|_| o.to_string())
        }
        None => None,
    };
    let owner = recorded.clone().unwrap_or(fallback);
    let sql = format!(
        "CREATE DATABASE {} OWNER {}",
        quote(&p.database),
        quote(&owner)
    );
    let created = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await;
    db.close().await;
    match created {
        Ok(_) => Ok(format!(
            "database {} did not exist on {}:{}: created it, owned by {owner}{}",
            p.database,
            p.host,
            p.port,
            if recorded.is_some() {
                " as when it was dumped"
            } else {
                ""
            }
        )),
        Err(e) => Err(format!(
            "database {} does not exist on {}:{} and coffer could not create it ({}); create it with {} and restore again",
            p.database,
            p.host,
            p.port,
            server_message(&e),
            command(&owner)
        )),
    }
}

/// How to create the database as PostgreSQL's superuser without being asked for a
/// password (`createdb -h 127.0.0.1` asks for postgres's, which a new host's
/// operator rarely has): on the database's own host as the postgres system user
/// over the local socket (peer authentication, Debian's default for it); from
/// another host over TCP with `-w`, which fails instead of asking, postgres's
/// password coming from PGPASSWORD or ~/.pgpass as coffer's own does.
fn createdb_command(p: &Place, owner: &str) -> String {
    let port = if p.port == 5432 {
        String::new()
    } else {
        format!("-p {} ", p.port)
    };
    let (owner, database) = (shell_word(owner), shell_word(&p.database));
    if matches!(p.host.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]") {
        format!(
            "`sudo -u postgres createdb {port}-O {owner} {database}` on this host (over the local socket: no password asked)"
        )
    } else {
        format!(
            "`createdb -h {} -p {} -U postgres -w -O {owner} {database}` (postgres's password in PGPASSWORD or ~/.pgpass; -w fails instead of asking), or `sudo -u postgres createdb {port}-O {owner} {database}` on {0}",
            shell_word(&p.host),
            p.port
        )
    }
}

/// A word as a POSIX shell reads it back, for the command in a message.
pub(crate) fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_words_are_quoted() {
        assert_eq!(quote("kinto"), "\"kinto\"");
        assert_eq!(quote("a\"; DROP"), "\"a\"\"; DROP\"");
        assert_eq!(shell_word("kinto_db"), "kinto_db");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn the_suggested_createdb_asks_for_no_password() {
        let local = place("postgres://restorer@127.0.0.1:5433/kinto_other").expect("a URL");
        assert_eq!(
            createdb_command(&local, "kinto"),
            "`sudo -u postgres createdb -p 5433 -O kinto kinto_other` on this host (over the local socket: no password asked)"
        );
        let default_port = place("postgres://kadi@localhost/kadi").expect("a URL");
        assert!(
            createdb_command(&default_port, "kadi")
                .starts_with("`sudo -u postgres createdb -O kadi kadi`"),
            "{}",
            createdb_command(&default_port, "kadi")
        );
        let remote = place("postgres://kinto@db.example:5432/kinto").expect("a URL");
        let said = createdb_command(&remote, "it's");
        assert!(
            said.starts_with(
                "`createdb -h db.example -p 5432 -U postgres -w -O 'it'\\''s' kinto` (postgres's password in PGPASSWORD"
            ),
            "{said}"
        );
        assert!(
            said.ends_with("`sudo -u postgres createdb -O 'it'\\''s' kinto` on db.example"),
            "{said}"
        );
    }

    #[test]
    fn the_place_of_a_url() {
        let p = place("postgres://kinto@db.example:5433/kinto%20prod").expect("a URL");
        assert_eq!(p.database, "kinto prod");
        assert_eq!(p.user.as_deref(), Some("kinto"));
        assert_eq!((p.host.as_str(), p.port), ("db.example", 5433));
        assert_eq!(
            p.maintenance_url,
            "postgres://kinto@db.example:5433/postgres"
        );
        assert!(place("postgres://kinto@db.example/").is_err());
    }
}

//! Restoring PostgreSQL onto a new server, where the database does not exist yet
//! (the usual case after losing a host). The database is created first, owned by
//! the role that owned it when it was dumped (recorded as the fact
//! `database_owner`, trusted only from a signed snapshot, and only when that role
//! exists here), else by the user of the URL. When it cannot be created (no
//! CREATEDB right), the error gives the exact command to run.
//!
//! The server's "does not exist" is recognised by its SQLSTATE (3D000), never by
//! its text, and messages are the server's own message without sqlx's wrapping.

use crate::dbquery::{Db, Endpoint, connect};
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
    let command = |owner: &str| {
        format!(
            "createdb -h {} -p {} -U postgres -O {} {}",
            p.host,
            p.port,
            shell_word(owner),
            shell_word(&p.database)
        )
    };
    let fallback = p.user.clone().unwrap_or_else(|| "postgres".into());
    let mut db = connect(&Endpoint::Postgres {
        url: &p.maintenance_url,
        password,
    })
    .await
    .map_err(|e| {
        format!(
            "database {} does not exist on {}:{}, and coffer cannot reach the postgres database there to create it ({}); create it with `{}` and restore again",
            p.database,
            p.host,
            p.port,
            server_message(&e),
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
            "database {} does not exist on {}:{} and coffer could not create it ({}); create it with `{}` and restore again",
            p.database,
            p.host,
            p.port,
            server_message(&e),
            command(&owner)
        )),
    }
}

/// A word as a POSIX shell reads it back, for the command in a message.
fn shell_word(w: &str) -> String {
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

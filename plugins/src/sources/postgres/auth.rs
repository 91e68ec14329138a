//! What to say when PostgreSQL refuses a login. The server answers a wrong
//! password and a role that does not exist with the same words ("password
//! authentication failed for user ...", SQLSTATE 28P01), on purpose, so that a
//! client cannot probe which roles exist. On a new host the missing role is the
//! usual cause (the application's users not created yet), so coffer names both
//! possibilities, the user it logged in as, and how to tell them apart. The
//! password is never part of the message.

use crate::sources::dbquery::Endpoint;
use crate::sources::postgres::create::shell_word;
use std::str::FromStr;

/// SQLSTATE invalid_password: a refused password, or a role that does not exist.
const INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE invalid_authorization_specification: e.g. "role ... does not exist"
/// under `trust`/`peer`, or no pg_hba.conf entry.
const INVALID_AUTHORIZATION: &str = "28000";

/// The server's own words for `e`, followed by what to check when it is a refused
/// login to PostgreSQL at `url`.
pub(crate) fn explain(e: &sqlx::Error, url: &str) -> String {
    let said = crate::sources::postgres::create::server_message(e);
    match login_hint(e, url) {
        Some(hint) => format!("{said}; {hint}"),
        None => said,
    }
}

/// The same for any endpoint: PostgreSQL's and MySQL/MariaDB's refused logins
/// get a hint (`my_auth` for the latter).
pub fn explain_at(e: &sqlx::Error, at: &Endpoint<'_>) -> String {
    match at {
        Endpoint::Postgres { url, .. } => explain(e, url),
        Endpoint::Mysql { url, .. } => crate::sources::mysql::auth::explain(e, url),
        Endpoint::Sqlite { .. } => e.to_string(),
    }
}

/// What to check after a refused login, or None for any other error.
fn login_hint(e: &sqlx::Error, url: &str) -> Option<String> {
    let code = e.as_database_error()?.code()?;
    // The user sqlx logged in as: the URL's, else PGUSER, else the system user.
    let user = sqlx::postgres::PgConnectOptions::from_str(url)
        .map(|o| o.get_username().to_string())
        .unwrap_or_else(|_| "?".into());
    let du = shell_word(&format!("\\du {user}"));
    match code.as_ref() {
        INVALID_PASSWORD => Some(format!(
            "PostgreSQL says this both when the password is wrong and when role {user} does not exist: \
             see whether it exists with `sudo -u postgres psql -c {du}` on the database host \
             (create it with `sudo -u postgres createuser --pwprompt {}`), \
             else check the password coffer sends (password_file, password_env or PGPASSWORD)",
            shell_word(&user)
        )),
        INVALID_AUTHORIZATION => Some(format!(
            "see whether role {user} exists with `sudo -u postgres psql -c {du}` on the database host, \
             and whether pg_hba.conf lets it in from this host"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_errors_get_no_hint() {
        let e = sqlx::Error::PoolTimedOut;
        assert_eq!(login_hint(&e, "postgres://kinto@localhost/kinto"), None);
        assert_eq!(
            explain(&e, "postgres://kinto@localhost/kinto"),
            e.to_string()
        );
    }
}

//! What to say when MySQL or MariaDB refuses a login. Like PostgreSQL (see
//! `pg_auth`), the server answers a wrong password and a user that does not
//! exist (for the host the client comes from) with the same words, "Access
//! denied for user 'u'@'h'", on purpose, so that a client cannot probe which
//! accounts exist: error 1045, or 1698 from MariaDB for a user it does not know
//! (the tests' MariaDB 11 says 1698 for one, 1045 for a wrong password). On a new host the missing
//! user is the usual cause, so coffer names both possibilities, the user it
//! logged in as, and how to tell them apart. The password is never part of it.

use crate::sources::postgres::create::shell_word;
use std::str::FromStr;

/// ER_ACCESS_DENIED_ERROR: a refused password, or no account for this user at
/// the host the server sees the client come from.
const ACCESS_DENIED: u16 = 1045;
/// ER_ACCESS_DENIED_NO_PASSWORD_ERROR: MariaDB's answer for an unknown user, and
/// for one that logs in another way than by password (unix_socket).
const ACCESS_DENIED_NO_PASSWORD: u16 = 1698;

/// The server's error `e`, followed by what to check when it is a refused login
/// to MySQL/MariaDB at `url` (a URL without password, as the config keeps it).
pub fn explain(e: &sqlx::Error, url: &str) -> String {
    let said = e.to_string();
    match login_hint(e, url) {
        Some(hint) => format!("{said}; {hint}"),
        None => said,
    }
}

/// What to check after a refused login, or None for any other error.
fn login_hint(e: &sqlx::Error, url: &str) -> Option<String> {
    let number = e
        .as_database_error()?
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()?
        .number();
    if number != ACCESS_DENIED && number != ACCESS_DENIED_NO_PASSWORD {
        return None;
    }
    let url = url.replacen("mariadb://", "mysql://", 1);
    let user = sqlx::mysql::MySqlConnectOptions::from_str(&url)
        .map(|o| o.get_username().to_string())
        .unwrap_or_else(|_| "?".into());
    Some(hint_for(&user, number == ACCESS_DENIED_NO_PASSWORD))
}

/// The hint for `user`; `socket` for error 1698, which an account that logs in
/// by unix_socket gets too.
fn hint_for(user: &str, socket: bool) -> String {
    let shown = crate::tree::entry::escape_controls(user);
    format!(
        "MySQL and MariaDB say this both when the password is wrong and when user {shown} \
         does not exist (for the host coffer connects from{}): see whether it exists with `{}` \
         on the database host (create it with CREATE USER and GRANT it what the source reads), \
         else check the password coffer sends (password_file or password_env)",
        if socket {
            "; or when it logs in by unix_socket, not by password"
        } else {
            ""
        },
        lookup(user)
    )
}

/// The shell command that lists the accounts of `user`, quoted for SQL and the
/// shell whatever the name holds.
fn lookup(user: &str) -> String {
    let literal = user.replace('\\', "\\\\").replace('\'', "''");
    let sql = format!("SELECT user, host FROM mysql.user WHERE user='{literal}'");
    let plain = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if plain {
        format!("sudo mysql -e \"{sql}\"")
    } else {
        format!(
            "sudo mysql -e {}",
            crate::tree::entry::escape_controls(&shell_word(&sql))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_errors_get_no_hint() {
        let e = sqlx::Error::PoolTimedOut;
        assert_eq!(login_hint(&e, "mysql://kinto@localhost/kinto"), None);
        assert_eq!(explain(&e, "mysql://kinto@localhost/kinto"), e.to_string());
    }

    #[test]
    fn the_lookup_names_the_user_quoted_for_sql_and_shell() {
        assert_eq!(
            lookup("kinto"),
            "sudo mysql -e \"SELECT user, host FROM mysql.user WHERE user='kinto'\""
        );
        // A quote cannot end the SQL string nor the shell word.
        assert_eq!(
            lookup("o'brien $x"),
            "sudo mysql -e 'SELECT user, host FROM mysql.user WHERE user='\\''o'\\'''\\''brien $x'\\'''"
        );
        let hint = hint_for("ghost", false);
        assert!(hint.contains("user ghost does not exist"), "{hint}");
        assert!(hint.contains("password is wrong"), "{hint}");
        assert!(!hint.contains("unix_socket"), "{hint}");
        assert!(hint_for("ghost", true).contains("unix_socket"));
    }
}

//! Connection URLs are secret-bearing values: this is the one place that knows
//! where a URL can carry a credential, takes it out when the config is loaded, and
//! makes the form of a URL that may be shown (config check, manifest origin, errors,
//! status file, HTTP API) or put on a child's command line.
//!
//! Where credentials hide, after what the clients coffer drives accept:
//! - the user info (`postgres://app:PASSWORD@db/app`, `redis://:PASSWORD@host`);
//! - query parameters: libpq and sqlx-postgres read `password`; MySQL connectors and
//!   tools use `password`, `password1` (the first factor), and spellings such as
//!   `pass`, `pwd`, `passwd` exist in the wild (redis-rs reads `pass` on sockets).
//!
//! A connection password found there is moved into the source's `Secret`, as the
//! user-info one always was: refusing would break configs that worked, and once
//! moved it travels the same safe way as `password_file` (PGPASSWORD, a private
//! option file). Credentials that coffer cannot hand over safely are refused with
//! a config error naming the parameter: libpq's `sslpassword` (no environment
//! variable exists for it, so it could only reach pg_dump on its command line),
//! MySQL's second and third factors `password2`/`password3` (not supported), and
//! any other parameter whose name looks like a credential (`*pass*`, `*pwd*`,
//! `*secret*`, `*token*`): sqlx logs unknown parameters with their values, and
//! pg_dump would see them in its arguments. `passfile` is a path, not a secret,
//! and stays. Query values are percent-decoded the way libpq does it (`%XX` only;
//! a `+` is a plus sign).

use crate::types::Secret;

/// What one query parameter is, as far as secrets go.
enum Param {
    /// The connection password: moved into the source's secret.
    Password,
    /// A credential coffer cannot pass on safely: the config is refused.
    Refused(&'static str),
    /// Anything else: kept, shown, passed on.
    Plain,
}

fn classify(key: &str) -> Param {
    // `ssl-password`, `SSL_Password` and `sslpassword` are one key to a reader.
    let k: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    match k.as_str() {
        "password" | "password1" | "pass" | "pwd" | "passwd" => Param::Password,
        "passfile" => Param::Plain,
        "sslpassword" => Param::Refused(
            "it is the passphrase of the client key, which pg_dump could only get on its command line, \
             where any local user can read it; use a client key without a passphrase, readable only by coffer's user",
        ),
        "password2" | "password3" => Param::Refused(
            "it is a second or third authentication factor, which coffer does not support; \
             give the database user a single password (password_file)",
        ),
        _ if ["pass", "pwd", "secret", "token"]
            .iter()
            .any(|w| k.contains(w)) =>
        {
            Param::Refused(
                "it looks like a credential, and whatever stays in a URL is shown in messages and \
                 passed on command lines; coffer takes passwords from password_file or password_env",
            )
        }
        _ => Param::Plain,
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The raw `key=value` pairs of a query, each with its decoded key.
fn pairs(query: &str) -> impl Iterator<Item = (&str, String, &str)> {
    query.split('&').filter(|s| !s.is_empty()).map(|seg| {
        let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
        (seg, decode(k), v)
    })
}

/// Takes every credential out of `url`: the password it carried (and where, for
/// messages), or a message naming the parameter that cannot be accepted. The
/// message never holds a value.
pub(crate) fn take_password(url: &mut url::Url) -> Result<Option<(Secret, String)>, String> {
    let mut found: Vec<(String, String)> = Vec::new();
    if let Some(p) = url.password() {
        found.push((decode(p), "the password in the user info".to_string()));
    }
    let mut kept = Vec::new();
    if let Some(query) = url.query() {
        for (raw, key, value) in pairs(query) {
            match classify(&key) {
                Param::Password => {
                    found.push((decode(value), format!("query parameter `{key}`")));
                }
                Param::Refused(why) => {
                    return Err(format!(
                        "query parameter `{key}` cannot be accepted: {why}; remove it from the URL"
                    ));
                }
                Param::Plain => kept.push(raw.to_string()),
            }
        }
    }
    if found.len() > 1 {
        let places: Vec<&str> = found.iter().map(|(_, w)| w.as_str()).collect();
        return Err(format!(
            "the URL gives a password {} times ({}); give it once, or better in password_file",
            found.len(),
            places.join(", ")
        ));
    }
    if url.password().is_some() {
        // Only fails for URLs that cannot have a user info, which had no password then.
        let _ = url.set_password(None);
    }
    let query = kept.join("&");
    url.set_query((!query.is_empty()).then_some(query.as_str()));
    Ok(found.pop().map(|(p, w)| (Secret::new(p), w)))
}

/// Where `raw` carries a credential (user info password, password-like query
/// parameters), described without the values; empty when it carries none.
pub fn url_credentials(raw: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(raw) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if url.password().is_some() {
        found.push("a password in the user info".to_string());
    }
    for (_, key, _) in pairs(url.query().unwrap_or("")) {
        if !matches!(classify(&key), Param::Plain) {
            found.push(format!("query parameter `{key}`"));
        }
    }
    found
}

/// The form of a URL that may be shown or passed to a child: without a password
/// in the user info and without any credential query parameter. A URL that does
/// not parse is not shown at all, since where its secrets are cannot be told.
pub fn display_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "(a URL that does not parse; not shown)".to_string();
    };
    if url.password().is_some() {
        let _ = url.set_password(None);
    }
    if let Some(query) = url.query().map(str::to_string) {
        let kept: Vec<&str> = pairs(&query)
            .filter(|(_, key, _)| matches!(classify(key), Param::Plain))
            .map(|(raw, _, _)| raw)
            .collect();
        let kept = kept.join("&");
        url.set_query((!kept.is_empty()).then_some(kept.as_str()));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (URL as written, URL kept and shown, password taken out of it)
    const MOVED: &[(&str, &str, Option<&str>)] = &[
        ("postgres://app@db/app", "postgres://app@db/app", None),
        (
            "postgres://app:s3cret@db:5432/app",
            "postgres://app@db:5432/app",
            Some("s3cret"),
        ),
        (
            "postgres://app:p%40ss%2Fw%3Ard@db/app",
            "postgres://app@db/app",
            Some("p@ss/w:rd"),
        ),
        (
            "postgres://app@db/app?password=s3cret",
            "postgres://app@db/app",
            Some("s3cret"),
        ),
        (
            "postgresql://db/app?user=app&password=a%26b%3Dc+d&sslmode=require",
            "postgresql://db/app?user=app&sslmode=require",
            Some("a&b=c+d"),
        ),
        (
            "postgres://app@db/app?sslmode=verify-full&PassWord=x&application_name=coffer",
            "postgres://app@db/app?sslmode=verify-full&application_name=coffer",
            Some("x"),
        ),
        (
            "postgres://app@db/app?passfile=/etc/coffer/pgpass",
            "postgres://app@db/app?passfile=/etc/coffer/pgpass",
            None,
        ),
        (
            "postgres://app@db/app?options=-c%20search_path%3Dkadi",
            "postgres://app@db/app?options=-c%20search_path%3Dkadi",
            None,
        ),
        (
            "mysql://app@db:3306/app?password=s3cret",
            "mysql://app@db:3306/app",
            Some("s3cret"),
        ),
        (
            "mariadb://app@db/app?ssl-mode=REQUIRED&password1=s3cret",
            "mariadb://app@db/app?ssl-mode=REQUIRED",
            Some("s3cret"),
        ),
        (
            "mysql://app@db/app?pwd=s3cret",
            "mysql://app@db/app",
            Some("s3cret"),
        ),
        (
            "mysql://app@db/app?pass=s3cret",
            "mysql://app@db/app",
            Some("s3cret"),
        ),
        (
            "redis://:s3cret@cache:6379/",
            "redis://cache:6379/",
            Some("s3cret"),
        ),
        (
            "redis://default:s3cret@cache:6379/2",
            "redis://default@cache:6379/2",
            Some("s3cret"),
        ),
        (
            "redis://cache:6379/?pass=s3cret&protocol=resp3",
            "redis://cache:6379/?protocol=resp3",
            Some("s3cret"),
        ),
    ];

    #[test]
    fn passwords_are_moved_out_of_every_place_in_a_url() {
        for (raw, kept, password) in MOVED {
            let mut url = url::Url::parse(raw).expect("test URL parses");
            let taken = take_password(&mut url).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(url.as_str(), *kept, "{raw}");
            assert_eq!(taken.as_ref().map(|(s, _)| s.expose()), *password, "{raw}");
            // The shown form is the same, from the URL as written and as kept.
            assert_eq!(display_url(raw), *kept, "{raw}");
            assert_eq!(display_url(kept), *kept, "{raw}");
            assert_eq!(url_credentials(raw).is_empty(), password.is_none(), "{raw}");
            assert!(url_credentials(kept).is_empty(), "{raw}");
        }
    }

    /// (URL, what the message must name)
    const REFUSED: &[(&str, &str)] = &[
        ("postgres://app@db/app?sslpassword=s3cret", "`sslpassword`"),
        (
            "postgres://app@db/app?ssl_password=s3cret",
            "`ssl_password`",
        ),
        ("mysql://app@db/app?password2=s3cret", "`password2`"),
        ("mysql://app@db/app?password3=s3cret", "`password3`"),
        ("postgres://app@db/app?api_token=s3cret", "`api_token`"),
        (
            "postgres://app@db/app?client_secret=s3cret",
            "`client_secret`",
        ),
        (
            "postgres://app:s3cret@db/app?password=s3cret",
            "user info, query parameter `password`",
        ),
        (
            "mysql://app@db/app?password=s3cret&pwd=s3cret",
            "query parameter `password`, query parameter `pwd`",
        ),
    ];

    #[test]
    fn credentials_that_cannot_be_passed_on_are_refused_without_their_value() {
        for (raw, names) in REFUSED {
            let mut url = url::Url::parse(raw).expect("test URL parses");
            let e = take_password(&mut url)
                .err()
                .unwrap_or_else(|| panic!("{raw} accepted"));
            assert!(e.contains(names), "{raw}: {e}");
            assert!(
                !e.contains("s3cret"),
                "{raw}: the message holds the value: {e}"
            );
            let shown = display_url(raw);
            assert!(!shown.contains("s3cret"), "{raw} shown as {shown}");
            assert!(!url_credentials(raw).is_empty(), "{raw}");
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_not_shown() {
        let shown = display_url("postgres://app:s3cret@db:notaport/app");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}

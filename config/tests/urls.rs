//! Passwords in connection URLs, through the whole loader: a password in the user
//! info or the query ends up in the source's secret and nowhere in its URL; a
//! credential that cannot be passed on safely, or a second password, is a config
//! error that names the file, the line and the key but never the value.

use coffer_config::{ConfigError, SourceKind, load_str};
use std::path::Path;

const RECIPIENT: &str = "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf";
const SECRET: &str = "Hunter2-in-the-url";

fn config(kind: &str, url: &str, extra: &str) -> String {
    format!(
        "[encryption]\nrecipients = [\"{RECIPIENT}\"]\n\n[targets.local]\ntype = \"local\"\npath = \"/b\"\n\n\
         [jobs.app]\ntargets = [\"local\"]\n\n[[jobs.app.sources]]\nname = \"db\"\ntype = \"{kind}\"\nurl = \"{url}\"\n{extra}"
    )
}

/// (source type, URL as written, URL the source keeps)
const MOVED: &[(&str, &str, &str)] = &[
    (
        "postgres",
        "postgres://app:Hunter2-in-the-url@db/app",
        "postgres://app@db/app",
    ),
    (
        "postgres",
        "postgres://app@db/app?sslmode=require&password=Hunter2-in-the-url",
        "postgres://app@db/app?sslmode=require",
    ),
    (
        "mysql",
        "mysql://app@db:3306/app?password=Hunter2-in-the-url",
        "mysql://app@db:3306/app",
    ),
    (
        "mysql",
        "mariadb://app@db/app?password1=Hunter2-in-the-url&charset=utf8mb4",
        "mariadb://app@db/app?charset=utf8mb4",
    ),
    (
        "redis",
        "redis://:Hunter2-in-the-url@cache:6379/",
        "redis://cache:6379/",
    ),
];

#[test]
fn a_password_anywhere_in_the_url_becomes_the_sources_secret() {
    for (kind, url, kept) in MOVED {
        let text = config(kind, url, "");
        let c = load_str(&text, Path::new("t.toml"), Path::new("/"))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let (shown, password) = match &c.jobs["app"].sources[0].kind {
            SourceKind::Postgres(d) | SourceKind::Mysql(d) => (&d.url, &d.password),
            SourceKind::Redis(r) => (&r.url, &r.password),
            other => panic!("{url}: a {} source", other.type_name()),
        };
        assert_eq!(shown, kept, "{url}");
        assert_eq!(password.as_ref().map(|p| p.expose()), Some(SECRET), "{url}");
        assert!(!format!("{c:?}").contains(SECRET), "{url}: Debug shows it");
    }
}

fn refused(text: &str) -> String {
    match load_str(text, Path::new("t.toml"), Path::new("/")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e @ ConfigError::Invalid(_)) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn credentials_that_cannot_be_passed_on_are_refused_by_file_line_and_key() {
    for (url, names) in [
        (
            "postgres://app@db/app?sslpassword=Hunter2-in-the-url",
            "`sslpassword`",
        ),
        (
            "mysql://app@db/app?password2=Hunter2-in-the-url",
            "`password2`",
        ),
        (
            "postgres://app:Hunter2-in-the-url@db/app?password=Hunter2-in-the-url",
            "password 2 times",
        ),
    ] {
        let kind = if url.starts_with("mysql") {
            "mysql"
        } else {
            "postgres"
        };
        let e = refused(&config(kind, url, ""));
        assert!(
            e.starts_with("t.toml:14:1: jobs.app.sources[0].url: "),
            "{e}"
        );
        assert!(e.contains(names), "{e}");
        assert!(!e.contains(SECRET), "the message shows the secret: {e}");
    }
}

#[test]
fn a_password_in_the_url_and_in_password_file_is_refused() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), "other\n").expect("write");
    let e = refused(&config(
        "postgres",
        "postgres://app@db/app?password=Hunter2-in-the-url",
        &format!("password_file = \"{}\"\n", file.path().display()),
    ));
    assert!(e.contains("jobs.app.sources[0].url"), "{e}");
    assert!(e.contains("query parameter `password`"), "{e}");
    assert!(e.contains("password_file is set too"), "{e}");
    assert!(!e.contains(SECRET), "{e}");
}

#[test]
fn password_env_names_are_kept_out_of_children_even_after_a_reload() {
    // A name no other test uses, and never set: setting it would need `unsafe`.
    let var = "COFFER_URLS_TEST_PASSWORD_ENV";
    let c = load_str(
        &config(
            "postgres",
            "postgres://app@db/app",
            &format!("password_env = \"{var}\"\n"),
        ),
        Path::new("t.toml"),
        Path::new("/"),
    );
    // Unset in this process: the config is refused, but the name is still known.
    assert!(c.is_err());
    let names = coffer_config::secret_env_names();
    assert!(names.iter().any(|n| n == var), "{names:?}");
    assert!(
        names.iter().any(|n| n == "AWS_SECRET_ACCESS_KEY"),
        "{names:?}"
    );
}

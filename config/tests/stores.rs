//! The `azure`, `gcs` and `webdav` target tables: what loads, what is refused
//! with a message naming the key, and secrets that never reach a message.

use coffer_config::{AzureCredentials, TargetKind, load_str};
use std::path::Path;

const HEAD: &str = "[encryption]\nrecipients = [\"age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf\"]\n\n";

/// A job with a local target of its own, so that the tables under test stand alone.
const JOB: &str = "[targets.disk]\ntype = \"local\"\npath = \"/backups\"\n\n[jobs.j]\ntargets = [\"disk\"]\n\n\
                   [[jobs.j.sources]]\nname = \"f\"\ntype = \"directory\"\npath = \"/srv\"\n\n";

fn load(table: &str) -> Result<coffer_config::Config, String> {
    load_str(
        &format!("{HEAD}{JOB}{table}"),
        Path::new("c.toml"),
        Path::new("/"),
    )
    .map_err(|e| e.to_string())
}

fn secret(dir: &Path, name: &str, value: &str) -> String {
    let f = dir.join(name);
    std::fs::write(&f, format!("{value}\n")).expect("write");
    f.display().to_string()
}

#[test]
fn the_three_types_load_with_their_secrets_read_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = secret(dir.path(), "key", "a2V5");
    let json = secret(dir.path(), "sa.json", "{}");
    let pw = secret(dir.path(), "pw", "hunter2");
    let c = load(&format!(
        "[targets.az]\ntype = \"azure\"\naccount = \"acme1\"\ncontainer = \"coffer\"\nprefix = \"/h1/\"\n\
         account_key_file = \"{key}\"\n\n\
         [targets.g]\ntype = \"gcs\"\nbucket = \"acme_b\"\nservice_account_file = \"{json}\"\n\n\
         [targets.d]\ntype = \"webdav\"\nurl = \"https://dav.example.com/a b/\"\nuser = \"me\"\npassword_file = \"{pw}\"\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    match &c.targets["az"].kind {
        TargetKind::Azure(a) => {
            assert_eq!(a.prefix.as_deref(), Some("h1"));
            assert!(
                matches!(&a.credentials, Some(AzureCredentials::AccountKey { key, .. }) if key.expose() == "a2V5")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.targets["az"].kind.to_string(),
        "azure container coffer prefix h1 in account acme1"
    );
    assert_eq!(c.targets["g"].kind.to_string(), "gcs bucket acme_b");
    match &c.targets["d"].kind {
        TargetKind::Webdav(w) => {
            assert_eq!(w.url, "https://dav.example.com/a b");
            assert_eq!(
                w.password.as_ref().map(|(p, _)| p.expose()),
                Some("hunter2")
            );
        }
        other => panic!("{other:?}"),
    }
    // Debug never shows a secret.
    let debug = format!("{:?}", c.targets);
    assert!(
        !debug.contains("hunter2") && !debug.contains("a2V5"),
        "{debug}"
    );
}

#[test]
fn keys_of_other_types_are_refused_naming_their_owners() {
    for (table, key, owners) in [
        (
            "type = \"s3\"\nbucket = \"abc\"\ncontainer = \"c1c\"",
            "container",
            "azure",
        ),
        (
            "type = \"local\"\npath = \"/x\"\nurl = \"https://a\"",
            "url",
            "webdav",
        ),
        (
            "type = \"azure\"\naccount = \"abc\"\ncontainer = \"abc\"\nregion = \"x\"",
            "region",
            "s3",
        ),
        (
            "type = \"gcs\"\nbucket = \"abc\"\nendpoint = \"https://a\"",
            "endpoint",
            "s3, azure",
        ),
        (
            "type = \"webdav\"\nurl = \"https://a\"\npath = \"/x\"",
            "path",
            "local",
        ),
    ] {
        let e = load(&format!("[targets.t]\n{table}\n")).expect_err(table);
        assert!(
            e.contains(&format!("targets.t.{key}"))
                && e.contains(&format!("only these types have it: {owners}")),
            "{table}: {e}"
        );
    }
}

#[test]
fn mistakes_are_named_and_secrets_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = secret(dir.path(), "key", "k");
    let sas = secret(dir.path(), "sas", "sv=1&sig=2");
    for (table, want) in [
        (
            format!("type = \"azure\"\naccount = \"abc\"\ncontainer = \"abc\"\naccount_key_file = \"{key}\"\nsas_token_file = \"{sas}\""),
            "either `account_key_file` or `sas_token_file`",
        ),
        (
            "type = \"azure\"\naccount = \"Acme\"\ncontainer = \"a--b\"".to_string(),
            "not a storage account name",
        ),
        (
            "type = \"azure\"\naccount = \"abc\"\ncontainer = \"abc\"\nendpoint = \"http://127.0.0.1:1/abc\"".to_string(),
            "allow_http = true",
        ),
        ("type = \"azure\"\ncontainer = \"abc\"".to_string(), "needs `account"),
        ("type = \"gcs\"".to_string(), "needs `bucket"),
        ("type = \"webdav\"\nurl = \"http://dav\"".to_string(), "allow_http = true"),
        ("type = \"webdav\"\nurl = \"ftp://dav\"".to_string(), "not an http(s) URL"),
        (
            "type = \"webdav\"\nurl = \"https://me:topsecret@dav/x\"".to_string(),
            "holds a user or password",
        ),
        (
            format!("type = \"webdav\"\nurl = \"https://dav\"\npassword_file = \"{key}\""),
            "needs `user` too",
        ),
        (
            "type = \"webdav\"\nurl = \"https://dav\"\nuser = \"me\"\npassword_file = \"/nonexistent/pw\"".to_string(),
            "cannot read /nonexistent/pw",
        ),
    ] {
        let e = load(&format!("[targets.t]\n{table}\n")).expect_err(&table);
        assert!(e.contains(want), "{table}: {e}");
        assert!(!e.contains("topsecret") && !e.contains("sig=2"), "{e}");
    }
}

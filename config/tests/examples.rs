//! The shipped example configs stay valid: they are what operators copy.
//!
//! The reference (`coffer.toml`) keeps a printed recipient, the example key, so it
//! documents the syntax; loading it unchanged is refused with exactly the error
//! that says to make a key, and with the operator's own key in its place it is
//! valid. A placeholder that does not parse would only say "not a valid recipient".

use coffer_config::{ConfigError, EXAMPLE_KEYS, SourceKind, load_str};
use std::path::Path;

/// A recipient standing for the operator's own key (its identity was discarded).
const OWN_KEY: &str = "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf";

/// The example with every example key replaced by `OWN_KEY`, as an operator edits it.
fn own_key(text: &str) -> String {
    EXAMPLE_KEYS
        .iter()
        .fold(text.to_string(), |t, k| t.replace(k, OWN_KEY))
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads an example whose recipients and database password are files in /etc/coffer,
/// with those files made in a temporary directory (the password is "s3cret").
fn with_secret_files(name: &str, password_file: &str) -> coffer_config::Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let recipients = dir.path().join("recipients.txt");
    std::fs::write(
        &recipients,
        "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf\n",
    )
    .expect("write");
    let password = dir.path().join("pw");
    std::fs::write(&password, "s3cret\n").expect("write");
    let text = own_key(&example(name))
        .replace(
            "/etc/coffer/recipients.txt",
            &recipients.display().to_string(),
        )
        .replace(password_file, &password.display().to_string());
    load_str(&text, Path::new(name), Path::new("/")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn quickstart_and_reference_examples_validate() {
    for name in ["quickstart.toml", "coffer.toml"] {
        if let Err(e) = load_str(
            &own_key(&example(name)),
            Path::new(name),
            Path::new("/repo"),
        ) {
            panic!("{name}:\n{e}");
        }
    }
    // The quick start makes its own key: it loads as shipped.
    let name = "quickstart.toml";
    if let Err(e) = load_str(&example(name), Path::new(name), Path::new("/repo")) {
        panic!("{name}:\n{e}");
    }
}

/// Copied unchanged, the reference is refused with one problem: the example key,
/// with its file, line and key, and what to do.
#[test]
fn the_reference_as_shipped_is_refused_for_its_example_key() {
    let text = example("coffer.toml");
    let line = text
        .lines()
        .position(|l| l.starts_with("recipients = [\"age1"))
        .expect("the reference shows a recipient")
        + 1;
    match load_str(&text, Path::new("coffer.toml"), Path::new("/repo")) {
        Err(ConfigError::Invalid(problems)) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            let p = &problems[0];
            assert_eq!(p.line.map(|(l, _)| l), Some(line), "{p}");
            assert_eq!(p.key, "encryption.recipients[0]", "{p}");
            assert!(
                p.message.contains(EXAMPLE_KEYS[0]) && p.message.contains("coffer keygen"),
                "{p}"
            );
        }
        other => panic!("the example key was not refused: {other:?}"),
    }
}

/// Every recipient written in an example (but the quick start, which makes its
/// own) is a known example key: a new example cannot bring a key that loads.
#[test]
fn every_key_printed_in_the_examples_is_a_refused_example_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "quickstart.toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if word.starts_with("age1") && word.len() == 62 {
                assert!(
                    EXAMPLE_KEYS.contains(&word),
                    "{}: {word} is not in EXAMPLE_KEYS",
                    path.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no example shows a recipient any more");
}

#[test]
fn kadi_example_validates_once_its_secret_files_exist() {
    let cfg = with_secret_files("kadi.toml", "/etc/coffer/kadi-db-password");
    let job = &cfg.jobs["kadi"];
    let kinds: Vec<&str> = job.sources.iter().map(|s| s.kind.type_name()).collect();
    assert_eq!(kinds, ["postgres", "directory", "directory", "redis"]);
    assert_eq!(job.after_restore.len(), 2);
    assert!(job.check.is_some());
    match &job.sources[0].kind {
        SourceKind::Postgres(d) => {
            assert_eq!(d.password.as_ref().map(|s| s.expose()), Some("s3cret"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn storagebox_example_validates_as_an_sftp_target_on_port_23() {
    let cfg = with_secret_files("storagebox.toml", "/etc/coffer/no-password-here");
    let target = &cfg.targets["box"];
    match &target.kind {
        coffer_config::TargetKind::Sftp(s) => {
            assert_eq!(
                (s.port, s.user.as_str(), s.path.as_str()),
                (23, "u123456", "coffer")
            );
            assert_eq!(
                s.host_key,
                coffer_config::HostKeyPin::KnownHosts("/etc/coffer/storagebox_known_hosts".into())
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.jobs["files"].targets, ["box"]);
}

#[test]
fn kinto_example_validates_once_its_secret_files_exist() {
    let cfg = with_secret_files("kinto.toml", "/etc/coffer/kinto-db-password");
    let job = &cfg.jobs["kinto"];
    let kinds: Vec<&str> = job.sources.iter().map(|s| s.kind.type_name()).collect();
    assert_eq!(kinds, ["postgres", "directory"]);
    let check = job.check.as_ref().expect("a check");
    assert_eq!(
        (check.source.as_str(), check.files.as_str()),
        ("db", "attachments")
    );
    assert!(check.query.contains("data->'attachment'->>'location'"));
    assert_eq!(check.orphans, coffer_config::Orphans::Warn);
    match &job.sources[0].kind {
        SourceKind::Postgres(d) => assert_eq!(
            d.version_query.as_deref(),
            Some("SELECT value FROM metadata WHERE name = 'storage_schema_version'")
        ),
        other => panic!("{other:?}"),
    }
}

/// The reference shows the two snapshot forms commented out (a host may have
/// neither): each, uncommented, must load as what it documents.
#[test]
fn the_documented_snapshot_keys_load_when_uncommented() {
    let text = own_key(&example("coffer.toml"));
    let storage = |text: &str| {
        let cfg = load_str(text, Path::new("coffer.toml"), Path::new("/repo"))
            .unwrap_or_else(|e| panic!("{e}"));
        let src = cfg.jobs["kadi"]
            .sources
            .iter()
            .find(|s| s.name == "storage")
            .map(|s| s.kind.clone());
        match src {
            Some(SourceKind::Directory(d)) => d.snapshot,
            other => panic!("{other:?}"),
        }
    };
    let btrfs = text.replacen("# snapshot = \"btrfs\"", "snapshot = \"btrfs\"", 1);
    assert_ne!(btrfs, text, "the reference no longer shows `snapshot`");
    assert_eq!(storage(&btrfs), Some(coffer_config::FsSnapshot::Btrfs));
    let commands = text
        .replacen("# snapshot_command = ", "snapshot_command = ", 1)
        .replacen("# release_command = ", "release_command = ", 1);
    assert!(matches!(
        storage(&commands),
        Some(coffer_config::FsSnapshot::Command { .. })
    ));
}

/// The provider examples (`targets-*.toml`) load, with the operator's own key and
/// their secret files made, and each target is of the type its file is about.
#[test]
fn the_provider_examples_load_once_their_secret_files_exist() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("targets-") && n.ends_with(".toml"))
        .collect();
    names.sort();
    let want = [
        ("targets-aws-s3.toml", vec!["s3"]),
        ("targets-azure.toml", vec!["azure"]),
        ("targets-backblaze-b2.toml", vec!["s3"]),
        ("targets-gcs.toml", vec!["gcs"]),
        ("targets-minio-garage.toml", vec!["s3", "s3"]),
        ("targets-webdav.toml", vec!["webdav"]),
    ];
    assert_eq!(
        names,
        want.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>()
    );
    let secrets = tempfile::tempdir().expect("tempdir");
    for (name, types) in want {
        let mut text = own_key(&example(name));
        // Every /etc/coffer/... file the example names, made with a secret in it.
        while let Some(at) = text.find("\"/etc/coffer/") {
            let end = at + 1 + text[at + 1..].find('"').expect("a closing quote");
            let file = secrets.path().join(format!("secret{at}"));
            std::fs::write(&file, "s3cret\n").expect("write");
            text.replace_range(at + 1..end, &file.display().to_string());
        }
        let cfg = load_str(&text, Path::new(name), Path::new("/"))
            .unwrap_or_else(|e| panic!("{name}:\n{e}"));
        let kinds: Vec<String> = cfg
            .targets
            .values()
            .map(|t| {
                t.kind
                    .to_string()
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(kinds, types, "{name}");
        // As shipped, each is refused only for the example key.
        match load_str(&example(name), Path::new(name), Path::new("/")) {
            Err(ConfigError::Invalid(problems)) => assert!(
                problems.iter().any(|p| p.key == "encryption.recipients[0]"),
                "{name}: {problems:?}"
            ),
            other => panic!("{name} loaded with the example key: {other:?}"),
        }
    }
}

//! The shipped example configs stay valid: they are what operators copy.

use coffer_config::{SourceKind, load_str};
use std::path::Path;

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
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n",
    )
    .expect("write");
    let password = dir.path().join("pw");
    std::fs::write(&password, "s3cret\n").expect("write");
    let text = example(name)
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
        if let Err(e) = load_str(&example(name), Path::new(name), Path::new("/repo")) {
            panic!("{name}:\n{e}");
        }
    }
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
    let text = example("coffer.toml");
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

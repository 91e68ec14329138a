//! S3 target settings: defaults, the secret read from its file (and never shown),
//! and every mistake named with its file, line and key.

use coffer_config::{ConfigError, TargetKind, load_str};
use std::path::Path;

const RECIPIENT: &str = "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf";

/// A config whose job ships to `[targets.off]`, an s3 target with `target` as its keys.
fn with_s3(target: &str) -> String {
    format!(
        "[encryption]\nrecipients = [\"{RECIPIENT}\"]\n\n[targets.off]\ntype = \"s3\"\n{target}\n\n\
         [jobs.kadi]\ntargets = [\"off\"]\n\n[[jobs.kadi.sources]]\nname = \"storage\"\ntype = \"directory\"\npath = \"/s\"\n"
    )
}

fn errors(text: &str) -> String {
    match load_str(text, Path::new("test.toml"), Path::new("/base")) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e @ ConfigError::Invalid(_)) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

fn s3_of(text: &str) -> coffer_config::S3Target {
    let c = load_str(text, Path::new("t.toml"), Path::new("/base")).expect("valid");
    match &c.targets["off"].kind {
        TargetKind::S3(s3) => s3.clone(),
        other => panic!("not s3: {other}"),
    }
}

#[test]
fn defaults_and_a_trimmed_prefix() {
    let s3 = s3_of(&with_s3("bucket = \"backups\"\nprefix = \"/hosts/kadi/\""));
    assert_eq!(s3.bucket, "backups");
    assert_eq!(s3.prefix.as_deref(), Some("hosts/kadi"));
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.endpoint, None);
    assert!(!s3.allow_http);
    assert!(s3.credentials.is_none());
    assert_eq!(s3.upload.part_size, 16 << 20);
    assert_eq!(s3.upload.max_parts, 10_000);
    assert_eq!(s3.upload.parts_in_flight, 2);
    assert_eq!(s3.max_retries, 10);
}

#[test]
fn sizes_as_text_or_bytes() {
    let s3 = s3_of(&with_s3(
        "bucket = \"backups\"\npart_size = \"64 MiB\"\nmax_parts = 1000\nparts_in_flight = 4\nretry_timeout = \"90s\"",
    ));
    assert_eq!(s3.upload.part_size, 64 << 20);
    assert_eq!(s3.upload.max_parts, 1000);
    assert_eq!(s3.upload.parts_in_flight, 4);
    assert_eq!(s3.retry_timeout.as_secs(), 90);
    let s3 = s3_of(&with_s3("bucket = \"backups\"\npart_size = 8388608"));
    assert_eq!(s3.upload.part_size, 8 << 20);
}

#[test]
fn the_secret_is_read_from_its_file_and_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("secret");
    std::fs::write(&f, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n").expect("write");
    let text = with_s3(&format!(
        "bucket = \"backups\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key_file = \"{}\"",
        f.display()
    ));
    let c = load_str(&text, Path::new("t.toml"), Path::new("/base")).expect("valid");
    let TargetKind::S3(s3) = &c.targets["off"].kind else {
        panic!("not s3")
    };
    let creds = s3.credentials.as_ref().expect("credentials");
    assert_eq!(creds.access_key_id, "AKIDEXAMPLE");
    assert_eq!(
        creds.secret_access_key.expose(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    let shown = format!("{c:?} {}", c.targets["off"].kind);
    assert!(!shown.contains("EXAMPLEKEY"), "secret shown: {shown}");
}

#[test]
fn mistakes_name_line_and_key() {
    let cases = [
        ("prefix = \"x\"", 4, "targets.off", "needs `bucket"),
        (
            "bucket = \"Bad_Bucket\"",
            6,
            "targets.off.bucket",
            "is not a bucket name",
        ),
        (
            "bucket = \"b-1\"\nprefix = \"a/../b\"",
            7,
            "targets.off.prefix",
            "not a usable prefix",
        ),
        (
            "bucket = \"b-1\"\npart_size = \"4MiB\"",
            7,
            "targets.off.part_size",
            "use 5MiB to 5GiB",
        ),
        (
            "bucket = \"b-1\"\npart_size = \"16 MiBs\"",
            7,
            "targets.off.part_size",
            "is not a size",
        ),
        (
            "bucket = \"b-1\"\nmax_parts = 20000",
            7,
            "targets.off.max_parts",
            "use 1 to 10000",
        ),
        (
            "bucket = \"b-1\"\nparts_in_flight = 0",
            7,
            "targets.off.parts_in_flight",
            "use 1 to 32",
        ),
        (
            "bucket = \"b-1\"\nretry_timeout = \"soon\"",
            7,
            "targets.off.retry_timeout",
            "not a duration",
        ),
        (
            "bucket = \"b-1\"\nendpoint = \"http://127.0.0.1:9000\"",
            7,
            "targets.off.endpoint",
            "allow_http = true",
        ),
        (
            "bucket = \"b-1\"\nendpoint = \"minio:9000\"",
            7,
            "targets.off.endpoint",
            "not an endpoint URL",
        ),
        (
            "bucket = \"b-1\"\naccess_key_id = \"AK\"",
            7,
            "targets.off.access_key_id",
            "secret_access_key_file",
        ),
        (
            "bucket = \"b-1\"\npath = \"/x\"",
            7,
            "targets.off.path",
            "has no path",
        ),
        (
            "bucket = \"b-1\"\nsecret_access_key = \"inline\"",
            7,
            "",
            "unknown key `secret_access_key`: did you mean `secret_access_key_file`?",
        ),
    ];
    for (keys, line, key, msg) in cases {
        let e = errors(&with_s3(keys));
        assert!(e.contains(&format!("test.toml:{line}:")), "{keys}: {e}");
        assert!(e.contains(key), "{keys}: {e}");
        assert!(e.contains(msg), "{keys}: {e}");
    }
}

#[test]
fn an_unreadable_secret_file_is_named_not_shown() {
    let e = errors(&with_s3(
        "bucket = \"b-1\"\naccess_key_id = \"AK\"\nsecret_access_key_file = \"/nonexistent/coffer/s3-secret\"",
    ));
    assert!(e.contains("test.toml:8:"), "{e}");
    assert!(e.contains("targets.off.secret_access_key_file"), "{e}");
    assert!(
        e.contains("cannot read /nonexistent/coffer/s3-secret"),
        "{e}"
    );
    // The target exists, it is only wrong: no echo about it being undefined.
    assert!(!e.contains("not defined"), "{e}");
}

#[test]
fn s3_keys_on_a_local_target_are_refused() {
    let text = with_s3("bucket = \"b-1\"").replace(
        "[jobs.kadi]",
        "[targets.disk]\ntype = \"local\"\npath = \"/b\"\npart_size = \"8MiB\"\n\n[jobs.kadi]",
    );
    let e = errors(&text);
    assert!(e.contains("test.toml:11:"), "{e}");
    assert!(e.contains("targets.disk.part_size"), "{e}");
    assert!(e.contains("only an s3 target has this key"), "{e}");
}

#[test]
fn create_on_an_s3_target_is_refused() {
    let e = errors(&with_s3("bucket = \"b-1\"\ncreate = true"));
    assert!(e.contains("test.toml:7:"), "{e}");
    assert!(e.contains("targets.off.create"), "{e}");
    assert!(e.contains("only a local target has this key"), "{e}");
}

#[test]
fn object_lock_is_read_and_each_mistake_named_with_its_key() {
    let s3 = s3_of(&with_s3(
        "bucket = \"backups\"\nobject_lock = { mode = \"compliance\", days = 30 }",
    ));
    let lock = s3.object_lock.expect("object_lock");
    assert_eq!(lock.mode, coffer_config::LockMode::Compliance);
    assert_eq!(lock.days, 30);
    assert!(
        s3_of(&with_s3("bucket = \"backups\""))
            .object_lock
            .is_none()
    );

    let e = errors(&with_s3(
        "bucket = \"backups\"\nobject_lock = { mode = \"strict\", days = 30 }",
    ));
    assert!(
        e.contains("targets.off.object_lock.mode") && e.contains("\"strict\" is not a lock mode"),
        "{e}"
    );
    let e = errors(&with_s3(
        "bucket = \"backups\"\nobject_lock = { mode = \"governance\", days = 0 }",
    ));
    assert!(
        e.contains("targets.off.object_lock.days") && e.contains("1..=36500"),
        "{e}"
    );
    let e = errors(&with_s3(
        "bucket = \"backups\"\nobject_lock = { mode = \"governance\" }",
    ));
    assert!(
        e.contains("targets.off.object_lock") && e.contains("needs `days = N`"),
        "{e}"
    );
    let e = errors(&with_s3(
        "bucket = \"backups\"\nobject_lock = { mode = \"governance\", days = 3, years = 1 }",
    ));
    assert!(e.contains("years"), "{e}");
    // Only S3 has Object Lock.
    let text = with_s3("bucket = \"backups\"").replace(
        "type = \"s3\"\nbucket = \"backups\"",
        "type = \"local\"\npath = \"/b\"\nobject_lock = { mode = \"governance\", days = 3 }",
    );
    let e = errors(&text);
    assert!(
        e.contains("targets.off.object_lock") && e.contains("s3"),
        "{e}"
    );
}

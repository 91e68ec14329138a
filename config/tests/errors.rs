//! Config validation: every problem names the file, line and key.

use coffer_config::{ConfigError, load_str};
use std::path::Path;

const RECIPIENT: &str = "age12e2ma5eqx5585k755cmgeh6vmfzjfc5smtg9yh353lgcs28nu3dqe2fxrf";

fn errors(text: &str) -> String {
    match load_str(text, Path::new("test.toml"), Path::new("/base")) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e @ ConfigError::Invalid(_)) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

fn base(extra: &str) -> String {
    format!(
        "[encryption]\nrecipients = [\"{RECIPIENT}\"]\n\n[targets.local]\ntype = \"local\"\npath = \"/b\"\n\n[jobs.kadi]\ntargets = [\"local\"]\n\n[[jobs.kadi.sources]]\nname = \"storage\"\ntype = \"directory\"\npath = \"/s\"\n{extra}"
    )
}

#[test]
fn a_valid_config_resolves_relative_paths() {
    let text = base("").replace("\"/b\"", "\"backups\"");
    let c = load_str(&text, Path::new("t.toml"), Path::new("/base")).expect("valid");
    let job = &c.jobs["kadi"];
    assert_eq!(job.targets, vec!["local".to_string()]);
    assert_eq!(job.compression.level, 3);
    match &c.targets["local"].kind {
        coffer_config::TargetKind::Local { path, .. } => {
            assert_eq!(path, Path::new("/base/backups"))
        }
        other => panic!("not a local target: {other}"),
    }
}

#[test]
fn unknown_key_names_line() {
    let e = errors(&base("colour = \"blue\"\n"));
    assert!(e.starts_with("test.toml:15:"), "{e}");
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn undefined_target_names_line_and_key() {
    let e = errors(&base("").replace(
        "targets = [\"local\"]",
        "targets = [\"local\", \"offsite\"]",
    ));
    assert!(e.contains("test.toml:9:"), "{e}");
    assert!(e.contains("jobs.kadi.targets[1]"), "{e}");
    assert!(e.contains("\"offsite\" is not defined"), "{e}");
}

#[test]
fn bad_mode_names_line_and_key() {
    let e = errors(&base(
        "restore = { owner = \"kadi:www-data\", dir_mode = \"0759\" }\n",
    ));
    assert!(e.contains("test.toml:15:"), "{e}");
    assert!(e.contains("jobs.kadi.sources[0].restore.dir_mode"), "{e}");
    assert!(e.contains("\"0759\" is not an octal mode"), "{e}");
}

#[test]
fn unreadable_recipients_file_names_key_and_path() {
    let text = base("").replace(
        &format!("recipients = [\"{RECIPIENT}\"]"),
        "recipients_file = \"/nonexistent/coffer/recipients.txt\"",
    );
    let e = errors(&text);
    assert!(e.contains("test.toml:2:"), "{e}");
    assert!(e.contains("encryption.recipients_file"), "{e}");
    assert!(e.contains("/nonexistent/coffer/recipients.txt"), "{e}");
}

#[test]
fn recipients_file_bad_line_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("r.txt");
    std::fs::write(&f, format!("# team keys\n{RECIPIENT}\nnot-a-key\n")).expect("write");
    let text = base("").replace(
        &format!("recipients = [\"{RECIPIENT}\"]"),
        &format!("recipients_file = \"{}\"", f.display()),
    );
    let e = errors(&text);
    assert!(e.contains(&format!("{}:3:", f.display())), "{e}");
}

#[test]
fn private_key_as_recipient_is_refused_without_echo() {
    let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
    let e = errors(&base("").replace(RECIPIENT, secret));
    assert!(e.contains("private age identity"), "{e}");
    assert!(!e.contains(secret), "secret echoed: {e}");
}

#[test]
fn several_problems_are_reported_together() {
    let e = errors(
        &base("restore = { file_mode = \"rw\" }\n")
            .replace("level = 3", "")
            .replace(
                "targets = [\"local\"]",
                "targets = [\"nowhere\"]\ncompression = { level = 42 }",
            ),
    );
    assert!(e.contains("\"nowhere\" is not defined"), "{e}");
    assert!(e.contains("level 42 is out of range"), "{e}");
    assert!(e.contains("\"rw\" is not an octal mode"), "{e}");
}

#[test]
fn a_password_in_the_url_is_taken_out_of_it() {
    let text = base("").replace(
        "[[jobs.kadi.sources]]",
        "[[jobs.kadi.sources]]\nname = \"db\"\ntype = \"postgres\"\nurl = \"postgres://kadi:p%40ss@db:5432/kadi\"\n\n[[jobs.kadi.sources]]",
    );
    let c = load_str(&text, Path::new("t.toml"), Path::new("/")).expect("valid");
    match &c.jobs["kadi"].sources[0].kind {
        coffer_config::SourceKind::Postgres(d) => {
            assert_eq!(d.url, "postgres://kadi@db:5432/kadi");
            assert_eq!(d.password.as_ref().map(|p| p.expose()), Some("p@ss"));
            assert!(
                !format!("{d:?}").contains("p@ss"),
                "Debug shows the password"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_of_another_source_type_and_bad_checks_are_named() {
    let e = errors(&base(
        "url = \"postgres://x@y/z\"\n[jobs.kadi.check]\nsource = \"storage\"\nfiles = \"nope\"\nquery = \"SELECT 1\"\n",
    ));
    assert!(
        e.contains("jobs.kadi.sources[0].url: `url` does not apply to a directory source"),
        "{e}"
    );
    assert!(e.contains("jobs.kadi.check.source"), "{e}");
    assert!(e.contains("jobs.kadi.check.files"), "{e}");
}

#[test]
fn a_filesystem_snapshot_is_one_of_two_forms_and_names_its_key() {
    let ok = |extra: &str| {
        let c = load_str(&base(extra), Path::new("t.toml"), Path::new("/base")).expect("valid");
        match &c.jobs["kadi"].sources[0].kind {
            coffer_config::SourceKind::Directory(d) => d.snapshot.clone(),
            other => panic!("not a directory: {other:?}"),
        }
    };
    assert_eq!(
        ok("snapshot = \"btrfs\"\n"),
        Some(coffer_config::FsSnapshot::Btrfs)
    );
    assert_eq!(
        ok("snapshot_command = [\"snap\", \"make\"]\nrelease_command = [\"snap\", \"drop\"]\n"),
        Some(coffer_config::FsSnapshot::Command {
            create: vec!["snap".into(), "make".into()],
            release: vec!["snap".into(), "drop".into()],
        })
    );
    assert_eq!(ok(""), None);

    let e = errors(&base("snapshot = \"zfs\"\n"));
    assert!(e.contains("test.toml:15:"), "{e}");
    assert!(
        e.contains("jobs.kadi.sources[0].snapshot: unknown snapshot kind \"zfs\""),
        "{e}"
    );
    assert!(e.contains("snapshot_command"), "{e}");

    let e = errors(&base(
        "snapshot = \"btrfs\"\nsnapshot_command = [\"a\"]\nrelease_command = [\"b\"]\n",
    ));
    assert!(e.contains("jobs.kadi.sources[0].snapshot: "), "{e}");
    assert!(e.contains("keep one"), "{e}");

    let e = errors(&base("snapshot_command = [\"a\"]\n"));
    assert!(
        e.contains(
            "jobs.kadi.sources[0].snapshot_command: a snapshot_command needs a release_command"
        ),
        "{e}"
    );
    let e = errors(&base("release_command = [\"b\"]\n"));
    assert!(e.contains("jobs.kadi.sources[0].release_command: "), "{e}");
    let e = errors(&base("snapshot_command = []\nrelease_command = [\"b\"]\n"));
    assert!(
        e.contains("jobs.kadi.sources[0].snapshot_command: `snapshot_command` is empty"),
        "{e}"
    );

    let e = errors(&format!(
        "{}\n[[jobs.kadi.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"/d.sqlite\"\nsnapshot = \"btrfs\"\n",
        base("")
    ));
    assert!(
        e.contains("jobs.kadi.sources[1].snapshot: `snapshot` does not apply to a sqlite source"),
        "{e}"
    );
}

/// A value of the wrong type names its key and says what it takes in words, not
/// serde's "expected u32".
#[test]
fn a_value_of_the_wrong_type_names_its_key_and_line() {
    let e = errors(&base("").replace(
        "[jobs.kadi]\ntargets = [\"local\"]\n",
        "[jobs.kadi]\ntargets = [\"local\"]\nretention = { keep_last = \"two\" }\n",
    ));
    assert!(e.contains("jobs.kadi.retention.keep_last"), "{e}");
    assert!(e.contains("test.toml:10:"), "{e}");
    assert!(
        e.contains("expected a whole number from 0 to 4294967295 (a number, without quotes)"),
        "{e}"
    );
    assert!(!e.contains("u32"), "{e}");
}

/// The example key is refused where it is written: in the config (its line and
/// key) and in a recipients file (that file's line), each time saying what to do.
#[test]
fn the_example_key_is_refused_with_file_and_line() {
    let example = coffer_config::EXAMPLE_KEYS[0];
    let e = errors(&base("").replace(RECIPIENT, example));
    assert!(e.starts_with("test.toml:2:"), "{e}");
    assert!(e.contains("encryption.recipients[0]"), "{e}");
    assert!(e.contains(example) && e.contains("coffer keygen"), "{e}");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("recipients.txt");
    std::fs::write(&file, format!("# ours\n{RECIPIENT}\n{example}\n")).expect("write");
    let e = errors(&base("").replace(
        &format!("recipients = [\"{RECIPIENT}\"]"),
        &format!("recipients_file = \"{}\"", file.display()),
    ));
    assert!(
        e.contains(&format!("{}:3: {example}", file.display())),
        "{e}"
    );
    assert!(e.contains("coffer keygen"), "{e}");
}

fn local_target(text: &str) -> (std::path::PathBuf, bool) {
    let c = load_str(text, Path::new("t.toml"), Path::new("/base")).expect("valid");
    match &c.targets["local"].kind {
        coffer_config::TargetKind::Local { path, create } => (path.clone(), *create),
        other => panic!("not a local target: {other}"),
    }
}

#[test]
fn a_local_target_is_not_created_unless_the_config_says_so() {
    assert_eq!(local_target(&base("")), ("/b".into(), false));
    let create = base("").replace("path = \"/b\"\n", "path = \"/b\"\ncreate = true\n");
    assert_eq!(local_target(&create), ("/b".into(), true));
    let explicit = base("").replace("path = \"/b\"\n", "path = \"/b\"\ncreate = false\n");
    assert_eq!(local_target(&explicit), ("/b".into(), false));
}

#[test]
fn create_must_be_a_boolean() {
    let e = errors(&base("").replace("path = \"/b\"\n", "path = \"/b\"\ncreate = \"yes\"\n"));
    assert!(e.contains("test.toml:7:"), "{e}");
    assert!(e.contains("targets.local.create"), "{e}");
}

#[test]
fn a_mistyped_key_gets_the_key_it_was_meant_to_be() {
    let e = errors(&base("exclued = [\"*.tmp\"]\n"));
    assert!(e.contains("test.toml:15:"), "{e}");
    assert!(e.contains("jobs.kadi.sources[0].exclued"), "{e}");
    assert!(e.contains("did you mean `exclude`?"), "{e}");
}

#[test]
fn a_command_line_where_an_argv_array_goes_is_refused_with_the_array() {
    let command = |c: &str| {
        base("").replace(
            "type = \"directory\"\npath = \"/s\"\n",
            &format!("type = \"command\"\ncommand = {c}\n"),
        )
    };
    let e = errors(&command("\"pg_dump --format=custom app\""));
    assert!(e.contains("jobs.kadi.sources[0].command"), "{e}");
    assert!(e.contains("one word per element"), "{e}");
    let e = errors(&command("[\"pg_dump --format=custom app\"]"));
    assert!(e.contains("jobs.kadi.sources[0].command"), "{e}");
    assert!(
        e.contains("write [\"pg_dump\", \"--format=custom\", \"app\"]"),
        "{e}"
    );
    let ok = command("[\"pg_dump\", \"--format=custom\", \"app\"]");
    load_str(&ok, Path::new("t.toml"), Path::new("/base")).expect("an argv array is valid");
}

#[test]
fn an_argv_array_where_hook_lines_go_is_refused_with_the_line() {
    let hooks = |h: &str| {
        base("").replace(
            "targets = [\"local\"]\n",
            &format!("targets = [\"local\"]\nbefore = {h}\n"),
        )
    };
    let e = errors(&hooks("[\"systemctl\", \"stop\", \"kadi\"]"));
    assert!(e.contains("jobs.kadi.before"), "{e}");
    assert!(e.contains("write [\"systemctl stop kadi\"]"), "{e}");
    let e = errors(&hooks("\"systemctl stop kadi\""));
    assert!(e.contains("a list of command lines"), "{e}");
    // Several one-word commands that exist are a valid list.
    load_str(
        &hooks("[\"sync\", \"true\"]"),
        Path::new("t.toml"),
        Path::new("/base"),
    )
    .expect("two programs");
}

#[test]
fn relative_paths_are_listed_as_written() {
    let text = base("")
        .replace("\"/b\"", "\"backups\"")
        .replace("\"/s\"", "\"data\"");
    let c = load_str(&text, Path::new("t.toml"), Path::new("/base")).expect("valid");
    let written: Vec<String> = c
        .relative_paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(written, ["backups", "data"]);
    let c = load_str(&base(""), Path::new("t.toml"), Path::new("/base")).expect("valid");
    assert!(c.relative_paths.is_empty());
}

/// A new host after a disaster: a job that names only its target, and an identity
/// instead of recipients.
const RESTORE_ONLY: &str = "[encryption]\nidentity_file = \"/etc/coffer/identity.txt\"\n\n[targets.offsite]\ntype = \"local\"\npath = \"/b\"\n\n[jobs.kadi]\ntargets = [\"offsite\"]\n";

#[test]
fn a_job_without_sources_restores_and_needs_no_recipients_but_no_schedule() {
    let c = load_str(RESTORE_ONLY, Path::new("t.toml"), Path::new("/")).expect("valid");
    assert!(c.jobs["kadi"].restore_only());
    assert!(c.encryption.recipients.is_empty());
    let e = errors(&format!("{RESTORE_ONLY}schedule = \"0 3 * * *\"\n"));
    assert!(
        e.contains("test.toml:10:") && e.contains("jobs.kadi.schedule"),
        "{e}"
    );
    assert!(e.contains("job kadi has no [[jobs.kadi.sources]]"), "{e}");
    // A job that backs up still needs recipients to encrypt to.
    let both = format!(
        "{RESTORE_ONLY}\n[jobs.app]\ntargets = [\"offsite\"]\n[[jobs.app.sources]]\nname = \"s\"\ntype = \"directory\"\npath = \"/s\"\n"
    );
    assert!(errors(&both).contains("no recipients"), "{}", errors(&both));
}

/// An unknown key in a source is offered the keys of that source's type only,
/// not every type's (one flat struct holds them all).
#[test]
fn an_unknown_key_in_a_source_lists_that_types_keys() {
    let e = errors(&format!(
        "{}\n[[jobs.kadi.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"/d.sqlite\"\ncolour = \"red\"\n",
        base("")
    ));
    assert!(e.contains("jobs.kadi.sources[1].colour"), "{e}");
    assert!(
        e.contains("allowed here: `name`, `type`, `path`, `restore`, `version_query`"),
        "{e}"
    );
    assert!(!e.contains("`url`") && !e.contains("`exclude`"), "{e}");
    // A typo still finds its key.
    let e = errors(&base("exclued = [\"*.tmp\"]\n"));
    assert!(e.contains("did you mean `exclude`?"), "{e}");
}

//! The domain never prints: a backup, a restore (with its after_restore rule) and
//! a verify through the domain entry points with the `Quiet` reporter leave
//! nothing on stdout or stderr. Tests in one binary share fds 1 and 2 (and
//! libtest captures only `print!`), so the work runs in a child process of its
//! own (this test binary again, this test only) whose fds 1 and 2 go to a file.

use super::*;
use crate::report::Quiet;
use std::path::Path;
use std::process::Command;

/// Set in the child: the directory the parent prepared.
const CHILD: &str = "COFFER_QUIET_TEST_DIR";

#[test]
fn backup_restore_and_verify_with_the_quiet_reporter_print_nothing() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return in_child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    prepare(dir.path());
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "restore::job::tests::backup_restore_and_verify_with_the_quiet_reporter_print_nothing",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .expect("run the child");
    let said = std::fs::read(dir.path().join("said")).unwrap_or_default();
    assert!(
        out.status.success(),
        "child failed: {out:?}\nwhat it said: {}",
        String::from_utf8_lossy(&said)
    );
    // The filter matched and the work ran to its end.
    assert!(dir.path().join("done").exists(), "{out:?}");
    assert!(
        said.is_empty(),
        "the domain printed: {}",
        String::from_utf8_lossy(&said)
    );
}

/// A config with a local target, a directory source, an SQLite source and
/// hooks that would announce themselves.
fn prepare(dir: &Path) {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("a.txt"), b"a file\n").expect("write");
    std::fs::write(data.join("sub/b.bin"), vec![7u8; 100_000]).expect("write");
    let db = dir.join("app.db");
    let made = Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .status()
        .expect("sqlite3 (package sqlite3) is needed by this test");
    assert!(made.success());
    std::fs::create_dir_all(dir.join("backups")).expect("target dir");
    let recipient =
        crate::keys::write_new_identity(&dir.join("identity.txt")).expect("an identity");
    let text = format!(
        "[agent]\nstate_dir = \"{d}/state\"\n\n\
         [encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{d}/identity.txt\"\n\n\
         [targets.local]\ntype = \"local\"\npath = \"{d}/backups\"\n\n\
         [jobs.app]\ntargets = [\"local\"]\nbefore = [\"true\"]\nafter_restore = [\"true\"]\n\n\
         [[jobs.app.sources]]\nname = \"files\"\ntype = \"directory\"\npath = \"{d}/data\"\n\n\
         [[jobs.app.sources]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"{d}/app.db\"\n",
        d = dir.display()
    );
    std::fs::write(dir.join("coffer.toml"), text).expect("config");
}

fn in_child(dir: &Path) {
    use nix::unistd::{dup, dup2_stderr, dup2_stdout};
    let cfg = coffer_config::load(&dir.join("coffer.toml")).expect("the config loads");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let said = std::fs::File::create(dir.join("said")).expect("said");
    let kept = (
        dup(std::io::stdout()).expect("dup"),
        dup(std::io::stderr()).expect("dup"),
    );
    dup2_stdout(&said).expect("dup2");
    dup2_stderr(&said).expect("dup2");

    let job = &cfg.jobs["app"];
    let run = crate::run::run_job(rt.handle(), &cfg, job, &Quiet).expect("backup");
    assert_eq!(run.status, crate::run::RunStatus::Success, "{run:?}");
    let req = RestoreRequest {
        job: "app".into(),
        snapshot: "latest".into(),
        target: None,
        identity: None,
        trust: crate::format::seal::Trust::new(&cfg.encryption, &[], false),
        sources: Vec::new(),
        to: Some(dir.join("restored")),
        paths: Vec::new(),
        force: false,
        owner: None,
        devices: false,
        db_url: None,
        clean: false,
        no_hooks: false,
    };
    let done = restore(rt.handle(), &cfg, &req, &Quiet).expect("restore");
    assert!(done.consistent, "{:?}", done.warnings);
    done.after_restore(&Quiet).expect("after_restore");
    let verified = crate::verify::job::verify(
        rt.handle(),
        &cfg,
        &crate::verify::job::VerifyRequest {
            job: Some("app".into()),
            target: None,
            snapshot: "latest".into(),
            identity: None,
            stored_only: false,
            trust: crate::format::seal::Trust::new(&cfg.encryption, &[], false),
        },
        &Quiet,
    )
    .expect("verify");
    for (_, v) in &verified.jobs {
        let v = v.as_ref().expect("verified");
        assert!(v.verdicts.iter().all(|v| v.ok), "{:?}", v.verdicts);
    }

    dup2_stdout(&kept.0).expect("dup2 back");
    dup2_stderr(&kept.1).expect("dup2 back");
    assert_eq!(
        std::fs::read_to_string(dir.join("restored/files/a.txt")).expect("restored"),
        "a file\n"
    );
    std::fs::write(dir.join("done"), b"").expect("done");
}

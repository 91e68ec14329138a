//! Backups that can never be restored, refused before they are made, and objects
//! for other keys named as such: `config check` and `backup` compare the identity
//! on this host with the recipients, the example key is refused, `verify` and
//! `restore` with another identity say so instead of "damaged", and a stored-bytes
//! verify never counts as a deep one.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A second identity, not among the world's recipients.
fn other_identity(world: &World) -> PathBuf {
    let file = world.path("other-identity.txt");
    let out = std::process::Command::new(coffer_bin())
        .args(["keygen", "--output"])
        .arg(&file)
        .output()
        .expect("run coffer keygen");
    assert!(out.status.success(), "{}", stderr(&out));
    file
}

fn world_with_data() -> (World, PathBuf) {
    let world = World::new("");
    let data = world.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f.txt"), b"restore me").expect("write");
    // The hook leaves a mark when a run got as far as its hooks.
    let mark = world.path("hook-ran");
    world.write_config(&format!(
        "before = [\"touch {}\"]\n{}",
        mark.display(),
        dir_source("data", &data, "")
    ));
    (world, mark)
}

fn use_identity(world: &World, file: &Path) {
    let text = std::fs::read_to_string(&world.config).expect("config");
    let text = text.replace(
        &format!("identity_file = \"{}\"", world.identity.display()),
        &format!("identity_file = \"{}\"", file.display()),
    );
    std::fs::write(&world.config, text).expect("config");
}

#[test]
fn config_check_and_backup_refuse_an_identity_that_is_no_recipient() {
    let (world, mark) = world_with_data();
    let ok = world.ok(&["config", "check"]);
    assert!(ok.contains("matches recipient 1"), "{ok}");

    let other = other_identity(&world);
    use_identity(&world, &other);
    for args in [&["config", "check"][..], &["backup", "app"][..]] {
        let out = world.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&other.display().to_string()),
            "{args:?}: {err}"
        );
        assert!(err.contains(&world.recipient), "{args:?}: {err}");
        assert!(
            err.contains("none of the 1 configured recipient"),
            "{args:?}: {err}"
        );
        assert!(err.contains("[encryption] recipients"), "{args:?}: {err}");
        assert!(!err.contains("AGE-SECRET-KEY"), "{args:?}: {err}");
    }
    // Refused before anything ran: no hook, no snapshot.
    assert!(!mark.exists(), "the before hook ran");
    assert!(world.snapshots().is_empty());

    // Off this host, the identity cannot be checked, and nothing is refused.
    std::fs::remove_file(&other).expect("rm");
    let ok = world.ok(&["config", "check"]);
    assert!(ok.contains("is not on this host"), "{ok}");
    world.ok(&["backup", "app"]);
    assert_eq!(world.snapshots().len(), 1);
    assert!(mark.exists());
}

#[test]
fn the_example_key_is_refused_with_its_line() {
    let (world, _) = world_with_data();
    let example = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let text = std::fs::read_to_string(&world.config).expect("config");
    let line = text
        .lines()
        .position(|l| l.starts_with("recipients = "))
        .expect("recipients")
        + 1;
    std::fs::write(&world.config, text.replace(&world.recipient, example)).expect("config");
    for args in [&["config", "check"][..], &["backup", "app"][..]] {
        let out = world.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&format!("coffer.toml:{line}:")), "{err}");
        assert!(
            err.contains(example) && err.contains("coffer keygen"),
            "{err}"
        );
    }
}

#[test]
fn verify_and_restore_with_another_identity_say_it_is_not_theirs() {
    let (world, _) = world_with_data();
    let snap = world.backup();
    let other = other_identity(&world);
    let other_arg = other.display().to_string();

    let out = world.run(&["verify", "--job", "app", "--identity", &other_arg]);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{said}{}", stderr(&out));
    assert!(
        said.contains(&format!("not encrypted to this identity ({other_arg})")),
        "{said}"
    );
    assert!(
        said.contains("1 recipient (1 X25519), none of them this identity"),
        "{said}"
    );
    assert!(!said.contains("DAMAGED"), "{said}");

    let to = world.path("restored");
    let out = world.run(&[
        "restore",
        "--job",
        "app",
        "--identity",
        &other_arg,
        "--to",
        &to.display().to_string(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&snap), "{err}");
    assert!(
        err.contains(&format!("not encrypted to this identity ({other_arg})")),
        "{err}"
    );

    // The right identity still verifies, deeply.
    let ok = world.ok(&["verify", "--job", "app"]);
    assert!(ok.contains(": ok (") && ok.contains("deep"), "{ok}");
}

#[test]
fn a_stored_bytes_verify_says_so_and_is_not_recorded_as_deep() {
    let (world, _) = world_with_data();
    world.backup();
    let status = || -> serde_json::Value {
        let text = std::fs::read_to_string(world.path("state/status/app.json")).expect("status");
        serde_json::from_str(&text).expect("status json")
    };
    let out = world.ok(&["verify", "--job", "app", "--stored-only"]);
    assert!(out.contains("stored bytes only"), "{out}");
    assert!(!out.contains("deep"), "{out}");
    // The identity is there: the output must not claim there is none.
    assert!(out.contains("as --stored-only asks"), "{out}");
    assert!(!out.contains("no identity"), "{out}");
    let s = status();
    assert_eq!(s["last_verify_mode"], "stored", "{s}");
    assert!(s["last_stored_verify_success"].is_f64(), "{s}");
    assert!(s["last_deep_verify_success"].is_null(), "{s}");

    // Without the identity on the host, verify falls back to stored bytes too.
    std::fs::rename(&world.identity, world.path("elsewhere.txt")).expect("mv");
    let out = world.ok(&["verify", "--job", "app"]);
    assert!(out.contains("stored bytes only: no identity"), "{out}");
    assert!(status()["last_deep_verify_success"].is_null());

    std::fs::rename(world.path("elsewhere.txt"), &world.identity).expect("mv");
    let out = world.ok(&["verify", "--job", "app"]);
    assert!(out.contains("deep"), "{out}");
    let s = status();
    assert_eq!(s["last_verify_mode"], "deep", "{s}");
    assert!(s["last_deep_verify_success"].is_f64(), "{s}");
}

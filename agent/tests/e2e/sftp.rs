//! SFTP targets against a real OpenSSH server (sshd on loopback, chrooted and
//! SFTP-only like a storage box): backup, list, verify and restore through the
//! CLI, format 1 and 2; an object of several parts; a host key that is not the
//! pinned one refused before anything is uploaded (exit 2); and a run killed
//! with -9 mid-upload, whose staging file listings ignore and prune removes; a
//! connection the server dropped under an open target, opened again.

use crate::common::read_gate::ReadGate;
use crate::common::s3::{files_under, same_files};
use crate::common::sshd::SshServer;
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: usize = 1 << 20;

fn make_tree(root: &Path, big: usize) {
    std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
    std::fs::write(root.join("hello.txt"), b"hello sftp\n").expect("write");
    std::fs::write(root.join("a/b/nested.txt"), b"nested\n").expect("write");
    std::fs::write(root.join("a/empty"), b"").expect("write");
    std::fs::write(root.join("a/noise.bin"), noise(big, 11)).expect("write");
}

/// A world whose job `app` writes only to the SFTP target `box` (folder
/// `/data/backups` in the server's chroot), the host key pinned by known_hosts.
fn sftp_world(server: &SshServer, jobkeys: &str, src: &Path) -> World {
    let sources = format!("{jobkeys}{}", dir_source("data", src, ""));
    let world = World::new(&sources);
    let known = world.path("known_hosts");
    server.known_hosts(&known);
    let target = server.target_toml(
        "box",
        "backups",
        &format!("known_hosts = \"{}\"", known.display()),
    );
    world.write_config_with(&target, &["box"], &sources);
    world
}

fn restore_to(world: &World, to: &Path) {
    world.ok(&[
        "restore",
        "--job",
        "app",
        "--to",
        to.to_str().expect("utf8"),
    ]);
}

#[test]
fn backup_list_verify_restore_through_sftp_in_several_parts() {
    let server = SshServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    // 20 MiB of noise: format 1's archive goes up in 8 MiB parts.
    make_tree(&src, 20 * MIB);
    let world = sftp_world(&server, FORMAT_1, &src);

    let out = world.ok(&["backup", "app", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("backup json");
    let run = &v[0];
    assert_eq!(run["status"], "success", "{run}");
    let id = run["snapshot"].as_str().expect("id").to_string();
    let up = &run["targets"][0]["uploads"][0];
    assert_eq!(up["key"], "data.tar.zst.age", "{run}");
    assert_eq!(up["parts"], 3, "{run}");

    // What the server holds: the snapshot's objects, no staging file.
    let stored = server.chroot().join("data/backups");
    let want: Vec<String> = ["data.tar.zst.age", "manifest.json.zst.age", "snapshot.json"]
        .iter()
        .map(|k| format!("app/{id}/{k}"))
        .collect();
    assert_eq!(files_under(&stored), want, "{}", server.logged());

    assert_eq!(world.snapshots(), vec![id.clone()]);
    let out = world.ok(&["verify", "--job", "app"]);
    assert!(out.contains("decrypted"), "{out}");
    let to = tmp.path().join("restored");
    restore_to(&world, &to);
    same_files(&src, &to.join("data"));
}

#[test]
fn format_2_packs_round_trip_and_a_second_run_stores_only_what_changed() {
    let server = SshServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, 12 * MIB);
    // Host key pinned by its fingerprint this time.
    let sources = format!("pack_size = \"4MiB\"\n{}", dir_source("data", &src, ""));
    let world = World::new(&sources);
    let pin = format!("host_key_fingerprint = \"{}\"", server.fingerprint());
    world.write_config_with(&server.target_toml("box", "fmt2", &pin), &["box"], &sources);
    let first = world.backup();
    std::fs::write(src.join("later.txt"), b"a new file\n").expect("write");
    let second = world.backup();
    assert_eq!(world.snapshots(), vec![first, second]);
    let packs = server.chroot().join("data/fmt2/app/packs");
    let stored = files_under(&packs);
    assert!(stored.len() >= 3, "{stored:?}");
    assert!(stored.iter().all(|n| !n.contains('#')), "{stored:?}");
    world.ok(&["verify", "--job", "app"]);
    let to = tmp.path().join("restored");
    restore_to(&world, &to);
    same_files(&src, &to.join("data"));
}

#[test]
fn a_host_key_that_is_not_the_pinned_one_is_refused_before_any_upload() {
    let server = SshServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    make_tree(&src, MIB);
    let sources = dir_source("data", &src, "");
    let world = World::new(&sources);
    // The fingerprint of another server's key.
    let other = tmp.path().join("other");
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        other.display()
    ));
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(other.with_extension("pub"))
        .output()
        .expect("ssh-keygen -lf");
    let wrong = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .expect("a fingerprint")
        .to_string();
    assert_ne!(wrong, server.fingerprint());
    world.write_config_with(
        &server.target_toml(
            "box",
            "backups",
            &format!("host_key_fingerprint = \"{wrong}\""),
        ),
        &["box"],
        &sources,
    );
    for args in [&["backup", "app"][..], &["list", "--job", "app"][..]] {
        let out = world.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("target box")
                && err.contains("127.0.0.1")
                && err.contains(&wrong)
                && err.contains(&server.fingerprint())
                && err.contains("ssh-keyscan")
                && err.contains("ssh-keygen -lf"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        files_under(&server.chroot().join("data")),
        Vec::<String>::new(),
        "something was uploaded"
    );
    // Not pinned at all: refused at load, with how to pin it.
    world.write_config_with(
        &server.target_toml("box", "backups", ""),
        &["box"],
        &sources,
    );
    let out = world.run(&["backup", "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ssh-keyscan") && err.contains("targets.box"),
        "{err}"
    );
}

/// The staging files `<object>#<n>` in `packs/` of job `app` below `root`.
fn pack_staging(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("app/packs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains('#'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_run_killed_mid_upload_leaves_a_staging_file_that_is_ignored_then_pruned() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = SshServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("first.bin"), noise(3 * MIB, 1)).expect("write");
    // Packs larger than a part (8 MiB), so a pack's staging file is on the
    // server while the file that fills it is still being read.
    let world = sftp_world(&server, "pack_size = \"32MiB\"\n", &src);
    world.backup();
    let stored: PathBuf = server.chroot().join("data/backups");
    assert!(pack_staging(&stored).is_empty());

    // The second run's new file is held mid-read once a pack is being staged on
    // the server, so the kill lands while that pack is half written.
    let big = src.join("second.bin");
    std::fs::write(&big, noise(28 * MIB, 2)).expect("write");
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let gate = {
        let (release, root) = (release.clone(), stored.clone());
        ReadGate::new(&big, move |n| {
            // Reads are 8 MiB. Before the fourth, 24 MiB were read and at least
            // 16 MiB written on (the chunker and the zstd workers hold back at most
            // 8), so a part is on its way: its staging file may only lag under
            // load, so wait for it there. Earlier reads hold only if it is there.
            let asked = std::time::Instant::now();
            while pack_staging(&root).is_empty() {
                if n < 4 || asked.elapsed() > Duration::from_secs(60) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = held_tx.send(());
            while !release.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut child = world.spawn_silent(&["backup", "app"]);
    let held = held_rx.recv_timeout(Duration::from_secs(120));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    release.store(true, Ordering::Relaxed);
    gate.finish();
    assert!(held.is_ok(), "the backup never staged a pack on the server");
    let staged = pack_staging(&stored);
    assert!(!staged.is_empty(), "the killed run left no staging file");

    // Listings ignore it: the next run, list and verify go on as if it were not there.
    assert_eq!(world.snapshots().len(), 1, "the killed run committed");
    world.backup();
    assert_eq!(world.snapshots().len(), 2);
    world.ok(&["verify", "--job", "app"]);
    assert!(staged.iter().all(|s| pack_staging(&stored).contains(s)));

    // Past the grace period (24h) prune removes it, and says so.
    sh(&format!(
        "find {} -exec touch -h -d '3 days ago' {{}} +",
        stored.display()
    ));
    let out = world.ok(&["prune", "--job", "app", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v[0]["staging_removed"].as_array().map(Vec::len),
        Some(staged.len()),
        "{out}"
    );
    assert_eq!(pack_staging(&stored), Vec::<String>::new(), "{out}");
    world.ok(&["verify", "--job", "app"]);
    let to = tmp.path().join("restored");
    restore_to(&world, &to);
    same_files(&src, &to.join("data"));
}

/// A connection dropped under an open target (the server ended the session, a
/// NAT forgot it, an idle timeout) is opened again at the next request: the
/// caller sees no error, and the requests after it run on a new session.
#[test]
fn a_dropped_connection_is_opened_again_at_the_next_request() {
    use object_store::ObjectStoreExt;
    use object_store::path::Path as ObjPath;
    let server = SshServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let pin = format!("host_key_fingerprint = \"{}\"", server.fingerprint());
    let t = crate::conformance::open(
        dir.path(),
        "sftp",
        &server.target_toml("sftp", "reconnect", &pin),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (one, two) = (ObjPath::from("a/one"), ObjPath::from("a/two"));
    rt.block_on(t.store.put(&one, b"one".to_vec().into()))
        .expect("put before the drop");
    let before = server.sessions();
    assert!(!before.is_empty(), "no SSH session open after a request");

    server.drop_sessions();
    let got = rt
        .block_on(async { t.store.get(&one).await?.bytes().await })
        .expect("get after the drop");
    assert_eq!(&got[..], b"one");
    rt.block_on(t.store.put(&two, b"two".to_vec().into()))
        .expect("put after the drop");
    let after = server.sessions();
    assert!(
        !after.is_empty() && after.iter().all(|p| !before.contains(p)),
        "not a new session: {before:?} then {after:?}"
    );
    assert_eq!(
        std::fs::read(server.chroot().join("data/reconnect/a/two")).expect("on the server"),
        b"two"
    );
}
